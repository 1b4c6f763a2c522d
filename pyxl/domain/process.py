"""The body of a domain: the process the daemon starts for each domain.

    python -S -c "...main()" pyxl-domain domid=N spec-fd=M

The spec (pyxl.domain.spec: read from an inherited fd, never from the
command line) says who the domain is (domid, name, uuid, memory, vcpus),
which kernel it boots, where its console ring is, and which inherited fd is
its one connection to the hypervisor's services.  The kernel file chooses
what runs: the vTPM stub-domain images get pyxl's stub domains
(pyxl/domain/vtpm, pyxl/domain/vtpmmgr), anything else boots the simulated
PV Linux guest.

A domain ends the way a Xen guest does: SCHEDOP_shutdown with a reason, which
here is the process's exit status (64 + reason) plus a status file for a
daemon that is no longer its parent.  Any other death is a crash.
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    import _socket
    from typing import Callable, Iterator, TypeVar

    _T = TypeVar("_T")

    from pyxl.domain.xen import XenInterface

EXIT_SHUTDOWN_BASE = 64

# kernel image name -> runtime module (import path, function)
KERNELS = (
    ("vtpmmgr-stubdom", "pyxl.domain.vtpmmgr", "boot"),
    ("vtpm-stubdom", "pyxl.domain.vtpm", "boot"),
    ("pv-grub", "pyxl.domain.pvgrub", "boot"),
)
LINUX = ("pyxl.domain.linux.guest", "boot")


class Domain:
    """What a kernel runtime gets: identity, console, hypervisor access.

    `xen` is the domain's XenInterface.  If the hypervisor connection breaks
    (the daemon was killed), `reconnect()` dials the host's xenbus socket
    until a new daemon takes the domain back; the daemon knows it by its pid.
    """

    # a TPM 2.0 guest's measured-boot event log, left by pv-grub's
    # measurement (pyxl.domain.pvgrub) for the kernel (pyxl.domain.linux.guest)
    tpm_event_log: bytes | None

    def __init__(self, spec: dict):
        self.spec = spec
        self.domid = spec["domid"]
        self.name = spec["name"]
        self.uuid = spec["uuid"]
        self.kernel = spec.get("kernel", "")
        self.cmdline = spec.get("cmdline", "")
        self.memkb = spec.get("memkb", 0)
        self.vcpus = spec.get("vcpus", 1)
        self.disks = spec.get("disks", [])
        # vdev -> file descriptor of the image blkback opened for this domain
        self.block = {k: int(v) for k, v in (spec.get("block") or {}).items()}
        self.status_path = spec.get("status")
        self.xenbus_path: str = spec["xenbus"]     # spec.make always sets it
        from pyxl.domain.xen import XenInterface

        self._XenInterface = XenInterface
        import threading

        self._reconnect_lock = threading.Lock()
        try:
            self.xen = XenInterface.from_fd(spec["hv_fd"])
        except OSError as e:
            if getattr(e, "name", None) != "EPIPE":
                raise
            # the daemon that started us died before answering our HELLO:
            # the next one adopts us (or, not knowing us, tells us to go)
            self.xen = self._dial(lambda s: XenInterface(s, domid=self.domid))
        self.generation = 0
        self._resume_handlers: list = []

    def reconnect(self, broken: XenInterface | None = None) -> bool:
        """Dial the host's xenbus socket until a new daemon takes the domain
        back, then resume: the same XenInterface carries on over the new
        connection (its watches registered again) and every resume handler
        runs, in registration order, in this thread.  Returns at once if
        the connection is up (another thread already resumed it)."""
        # this thread's calls (resume's own, the handlers') must not wait
        # for a resume: it is the one that would do it
        self.xen.no_wait(True)
        try:
            with self._reconnect_lock:
                if not self.xen.closed:
                    return True           # another thread already did it
                self._dial(self.xen.resume)
                self.generation += 1
                handlers = list(self._resume_handlers)
            for fn in handlers:
                try:
                    fn()
                except OSError:
                    if self.xen.closed:   # the new daemon went away too: the watchdog retries
                        break
        finally:
            self.xen.no_wait(False)
        return True

    def _dial(self, hello: Callable[[_socket.socket], _T]) -> _T:
        """Connect to the host's xenbus socket and run hello(sock) on it,
        retrying until a daemon answers.  A daemon that does not know this
        process (a create that never completed: its domain was never
        recorded) answers ESRCH, and the process ends: nothing of a
        half-made domain lingers."""
        import time
        import _socket

        delay = 0.05
        while True:
            s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
            try:
                s.connect(self.xenbus_path)
                return hello(s)
            except OSError as e:
                s.close()
                if getattr(e, "name", None) == "ESRCH":
                    os._exit(1)       # not a domain of this host
            if not os.path.isdir(os.path.dirname(self.xenbus_path)):
                os._exit(1)       # the host itself is gone (its root was removed)
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def on_resume(self, fn: Callable[[], object]) -> None:
        """Run fn() after every reconnection (a frontend's or backend's
        xenbus resume handler)."""
        self._resume_handlers.append(fn)

    def watch_events(self, token: str | tuple[str, ...]) -> Iterator[tuple[str, str]]:
        """The watch events carrying `token` (xenwatch_thread's loop), for
        ever: a break of the hypervisor connection is waited out -- the
        domain resumed, its watches registered again (xs_resume) -- and
        the loop goes on as if nothing had happened."""
        xen = self.xen
        while True:
            ev = xen.read_watch(timeout=None, token=token)
            if ev is not None:
                yield ev
            elif xen.closed:
                self.reconnect(xen)      # until the domain is resumed

    def keep_connected(self) -> None:
        """A thread that resumes the domain once its hypervisor connection
        broke (noticed by whichever thread reads the socket), so the
        drivers come back even while nothing else calls reconnect().  From
        then on a call made during a break waits for the resume instead of
        failing (XenInterface.resumable), as a xenstore request waits on
        its ring for xenstored."""
        import threading

        self.xen.resumable = True

        def run() -> None:
            while True:
                self.xen.broken.wait()
                if self.xen.detached:
                    return            # closed on purpose, not lost
                self.reconnect(self.xen)
        threading.Thread(target=run, name="xenbus-resume", daemon=True).start()

    # -- the console: its ring page (XenInterface.console_write) -----------
    def console_write(self, data: bytes | str) -> None:
        """Output on the console ring.  What the daemon has not taken yet
        stays on the ring page, across a daemon restart; what the ring has
        no room for waits, bounded, in front of it."""
        self.xen.console_write(data)

    def console_read(self, timeout: float | None = None) -> bytes | None:
        """Input typed on the console; None on timeout.  Survives a daemon restart."""
        while True:
            xen = self.xen
            data = xen.console_read(timeout)
            if data != b"":
                return data
            self.reconnect(xen)

    def shutdown(self, reason: int) -> None:
        """SCHEDOP_shutdown: the domain stops running for good (its console
        output first: what is on the ring page the daemon takes even after
        the process has gone, what waits in front of it would be lost)."""
        self.xen.console_flush()
        if self.status_path:
            from pyxl.fsutil import atomic_write

            try:
                atomic_write(self.status_path, b"%d\n" % reason)
            except OSError:
                pass
        os._exit(EXIT_SHUTDOWN_BASE + reason)

    def crash(self, code: int = 1) -> None:
        self.xen.console_flush()
        os._exit(code)


def runtime_for(kernel: str) -> tuple[str, str]:
    base = os.path.basename(kernel)
    for needle, mod, fn in KERNELS:
        if needle in base:
            return mod, fn
    return LINUX


def main(argv: list[str] | None = None) -> None:
    from pyxl.domain import spec as domspec

    argv = sys.argv if argv is None else argv
    try:
        spec = domspec.load(argv[1:])
    except domspec.SpecError as e:
        sys.stderr.write("pyxl-domain: %s\n" % e)
        os._exit(1)
    if spec.get("paused"):
        os.kill(os.getpid(), signal.SIGSTOP)   # created paused: not one instruction yet
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    dom = Domain(spec)
    dom.keep_connected()
    modname, fn = runtime_for(dom.kernel)
    import importlib

    try:
        mod = importlib.import_module(modname)
    except ImportError as e:
        dom.console_write("pyxl: no runtime for kernel %s (%s)\r\n" % (dom.kernel, e))
        dom.crash(1)
    getattr(mod, fn)(dom)
    dom.shutdown(0)


if __name__ == "__main__":
    main()
