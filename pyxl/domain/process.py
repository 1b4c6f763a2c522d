"""The body of a domain: the process the daemon starts for each domain.

    python -S -c "...main()" pyxl-domain '<json spec>'

The spec says who the domain is (domid, name, uuid, memory, vcpus), which
kernel it boots, where its console ring is, and which inherited fd is its one
connection to the hypervisor's services.  The kernel file chooses what runs:
the vTPM stub-domain images get pyxl's stub domains (a later layer), anything
else boots the simulated PV Linux guest.

A domain ends the way a Xen guest does: SCHEDOP_shutdown with a reason, which
here is the process's exit status (64 + reason) plus a status file for a
daemon that is no longer its parent.  Any other death is a crash.
"""

from __future__ import annotations

import json
import os
import signal
import sys

EXIT_SHUTDOWN_BASE = 64

# kernel image name -> runtime module (import path, function)
KERNELS = (
    ("vtpmmgr-stubdom", "pyxl.domain.vtpmmgr", "boot"),
    ("vtpm-stubdom", "pyxl.domain.vtpm", "boot"),
    ("pv-grub", "pyxl.domain.pvgrub", "boot"),
)
LINUX = ("pyxl.domain.linux.guest", "boot")


class Console:
    """The domain's side of its console ring (see pyxl.toolstack.consoled)."""

    def __init__(self, out_path: str, in_path: str):
        # read-write opens: neither end ever sees EOF/EPIPE when the other goes away
        self.out_fd = os.open(out_path, os.O_RDWR)
        self.in_fd = os.open(in_path, os.O_RDWR)

    def write(self, data) -> None:
        if isinstance(data, str):
            data = data.encode()
        view = memoryview(data)
        while view:
            n = os.write(self.out_fd, view)
            view = view[n:]

    def read(self, n: int = 4096) -> bytes:
        return os.read(self.in_fd, n)

    def fileno(self) -> int:
        return self.in_fd


class Domain:
    """What a kernel runtime gets: identity, console, hypervisor access."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.domid = spec["domid"]
        self.name = spec["name"]
        self.uuid = spec["uuid"]
        self.kernel = spec.get("kernel", "")
        self.cmdline = spec.get("cmdline", "")
        self.memkb = spec.get("memkb", 0)
        self.vcpus = spec.get("vcpus", 1)
        self.console = Console(spec["console_out"], spec["console_in"])
        self.status_path = spec.get("status")
        self._xen = None
        self.hv_fd = spec.get("hv_fd")

    @property
    def xen(self):
        """The domain's hypercall interface (pyxl.domain.xen), or None on a
        host without the hypervisor services."""
        if self._xen is None and self.hv_fd is not None:
            try:
                from pyxl.domain.xen import XenInterface
            except ImportError:
                self.hv_fd = None
                return None
            import socket

            self._xen = XenInterface(socket.socket(fileno=self.hv_fd), self.domid)
        return self._xen

    def shutdown(self, reason: int) -> None:
        """SCHEDOP_shutdown: the domain stops running for good."""
        if self.status_path:
            try:
                with open(self.status_path + ".tmp", "w") as f:
                    f.write("%d\n" % reason)
                os.replace(self.status_path + ".tmp", self.status_path)
            except OSError:
                pass
        os._exit(EXIT_SHUTDOWN_BASE + reason)

    def crash(self, code: int = 1) -> None:
        os._exit(code)


def runtime_for(kernel: str):
    base = os.path.basename(kernel)
    for needle, mod, fn in KERNELS:
        if needle in base:
            return mod, fn
    return LINUX


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv if argv is None else argv
    spec = json.loads(argv[-1])
    if spec.get("paused"):
        os.kill(os.getpid(), signal.SIGSTOP)   # created paused: not one instruction yet
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    dom = Domain(spec)
    modname, fn = runtime_for(dom.kernel)
    import importlib

    try:
        mod = importlib.import_module(modname)
    except ImportError as e:
        dom.console.write("pyxl: no runtime for kernel %s (%s)\r\n" % (dom.kernel, e))
        dom.crash(1)
    getattr(mod, fn)(dom)
    dom.shutdown(0)


if __name__ == "__main__":
    main()
