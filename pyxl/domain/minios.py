"""What pyxl's stub domains share with mini-os: its console output rules.

mini-os's console_print turns every "\\n" into "\\r\\n" on the PV console
ring, and call_main echoes the argument vector it built from the domain's
command line (`"main" "a" "b" `).  Stub-domain code writes through a
`printk` made here so every line reaches the console the same way.

A stub domain's main loop prints a handful of lines per request; inside
`printk.held()` they are kept and go out as one console write when the
block ends -- after the reply has gone, and after those of the requests
that follow within CONSOLE_LINGER -- instead of one hypervisor message
each on the request's path; they are kept as printed and made console
bytes (CRLF, UTF-8) only then, off the path too.  The lines, their order
and their bytes are the same.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

if TYPE_CHECKING:
    from pyxl.domain.process import Domain
    from pyxl.domain.xen import XenInterface


# A stub domain's console lines over a run of requests (each arriving
# within CONSOLE_LINGER seconds of the previous answer) go out together,
# once the run ends or CONSOLE_RUN bytes are kept: one console write (a
# wake-up of the hypervisor process) per run rather than per request.
CONSOLE_LINGER = 0.002
CONSOLE_RUN = 16384


class Printk:
    """A thread-safe printk over a domain's console_write(bytes)."""

    def __init__(self, console_write: Callable[[bytes], object]):
        self._write = console_write
        self._lock = threading.Lock()
        self._held = 0
        self._kept: list[str] = []      # lines held, made console bytes when written
        self._kept_len = 0

    def __call__(self, text: str) -> None:
        with self._lock:
            if self._held:
                self._kept.append(text)
                self._kept_len += len(text)
            else:
                self._write(_console_bytes(text))

    def kept(self) -> int:
        """How many characters held() is keeping."""
        return self._kept_len

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep every line printed (by any thread) until the outermost
        held() block ends, then write them at once."""
        with self._lock:
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1
                if not self._held and self._kept:
                    # made console bytes in one go: the same bytes as line by
                    # line, unless a "\r" ends one line and a "\n" starts
                    # the next (one line end if joined first, two apart)
                    text = "".join(self._kept)
                    data = b"".join(map(_console_bytes, self._kept)) if "\r" in text \
                        else _console_bytes(text)
                    self._kept.clear()
                    self._kept_len = 0
                    self._write(data)


def _console_bytes(text: str) -> bytes:
    """What console_print puts on the ring for `text`: each "\\n" as "\\r\\n"
    (replaced in the UTF-8 bytes, where a "\\n" is only ever that byte:
    cheaper than in the str)."""
    data = text.encode("utf-8", "replace")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    return data.replace(b"\n", b"\r\n")


def make_printk(console_write: Callable[[bytes], object]) -> Printk:
    return Printk(console_write)


def argv_of(cmdline: str) -> list[str]:
    """mini-os splits the command line on spaces (quotes honoured) and puts
    "main" in front."""
    try:
        args = shlex.split(cmdline or "")
    except ValueError:
        args = (cmdline or "").split()
    return ["main"] + args


def echo_args(printk: Printk, argv: list[str]) -> None:
    printk("".join('"%s" ' % a for a in argv) + "\n")


VBD_HDA = 768          # hda: the disk both vTPM stub domains use


class BlkInfo:
    """What mini-os's init_blkfront reports: the fd blkback handed over,
    its size, and whether it may be written."""

    def __init__(self, fd: int, sectors: int, readonly: bool):
        self.fd, self.sectors, self.readonly = fd, sectors, readonly


def init_blkfront(dom: Domain, printk: Printk) -> BlkInfo | None:
    """mini-os init_blkfront("device/vbd/768"): the banner, then the info.
    The disk is read-only when the backend's `mode` node does not start
    with 'w' (blkfront.c: `if (*c == 'w') mode = O_RDWR else O_RDONLY`) or
    when blkback opened the image read-only."""
    block = dom.block
    fd = block.get("hda", block.get(str(VBD_HDA), block.get("xvda")))
    if fd is None:
        return None
    node = "device/vbd/%d" % VBD_HDA
    printk("******************* BLKFRONT for %s **********\n\n\n" % node)
    backend = dom.xen.read_str(node + "/backend", default="") or \
        "/local/domain/0/backend/vbd/%d/%d" % (dom.domid, VBD_HDA)
    printk("backend at %s\n" % backend)
    sectors = os.fstat(fd).st_size // 512
    printk("%u sectors of %u bytes\n" % (sectors, 512))
    printk("**************************\n")
    try:
        mode = dom.xen.read_str(backend + "/mode", default="") or ""
    except OSError:                  # no such backend (a test host without blkback)
        mode = ""
    readonly = (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
                or (mode != "" and not mode.startswith("w")))
    return BlkInfo(fd, sectors, readonly)


def disk_is_blank(fd: int) -> bool:
    """True when every byte of the disk is zero (a fresh `dd if=/dev/zero`).
    Each megabyte is compared with zeros (a memcmp), not counted byte by
    byte: a first boot reads the whole image."""
    size, off, chunk = os.fstat(fd).st_size, 0, 1 << 20
    zero = bytes(chunk)
    while off < size:
        data = os.pread(fd, min(chunk, size - off), off)
        if not data:
            break
        if data != (zero if len(data) == chunk else bytes(len(data))):
            return False
        off += len(data)
    return True


SHUTDOWN_REASONS = {"poweroff": 0, "reboot": 1}
SHUTDOWN_CRASH = 3


def start_shutdown_thread(xen: XenInterface, printk: Printk,
                          app_shutdown: Callable[[int], object] | None = None) -> threading.Thread:
    """mini-os shutdown_thread: wait for the toolstack's control/shutdown
    request, clear it, print `Shutting down (<req>)`, hand the reason to
    app_shutdown -- whose default (the seed stub domains keep it) only prints
    `Shutdown requested: <n>`: the domain keeps running, which is why the
    guide says the manager must be destroyed.  One request is handled.
    libxl creates the node empty; only a written request counts here."""
    path = "control/shutdown"

    def run() -> None:
        import time
        # the watch outlives a daemon restart: the domain's resume registers
        # it again, and a request made meanwhile waits for the resume
        try:
            xen.watch(path, "minios-shutdown")
            while True:
                value = xen.read_str(path, default="")
                if value:
                    xen.unwatch(path, "minios-shutdown")
                    xen.write(path, "")
                    break
                xen.read_watch(None, token="minios-shutdown")
                if xen.closed:
                    time.sleep(0.1)        # until the domain is resumed
        except OSError:
            return
        printk("Shutting down (%s)\n" % value)
        reason = SHUTDOWN_REASONS.get(value, SHUTDOWN_CRASH)
        if app_shutdown is not None:
            app_shutdown(reason)
        else:
            printk("Shutdown requested: %d\n" % reason)

    t = threading.Thread(target=run, name="shutdown", daemon=True)
    t.start()
    return t


BOOT_DELAY_ENV = "PYXL_MINIOS_BOOT_DELAY"     # the seed's main() sleeps 2 s before anything


class App(Protocol):
    """A stub domain's application (vtpm-stubdom's, vtpmmgr-stubdom's)."""

    def main(self, argv: list[str]) -> int: ...


def run_app(dom: Domain, app_class: Callable[[Domain, Printk], App]) -> None:
    """What mini-os does around a stub domain's main(): echo its arguments,
    watch control/shutdown, sleep, run main, and end the domain with its
    result (a non-zero return crashes the domain, as Do_exit does)."""
    import time

    printk = make_printk(dom.console_write)
    argv = argv_of(dom.cmdline)
    echo_args(printk, argv)
    start_shutdown_thread(dom.xen, printk)
    time.sleep(float(os.environ.get(BOOT_DELAY_ENV, "2")))
    ret = app_class(dom, printk).main(argv)
    printk("main returned %d\n" % ret)
    if ret != 0:
        printk("Do_exit called!\n")
        dom.shutdown(3)              # SHUTDOWN_crash
    dom.shutdown(0)
