"""The guest's own network stack: a Linux network namespace private to one
simulated guest.

A real guest has its own network stack, so what its userland listens on --
tcsd's port, the TCP device tcsd is given as /dev/tpm0 -- is reachable from
inside that guest only.  The simulated guest's userland is the host's real
programs, so it gets the same from Linux: a network namespace with nothing
but `lo`, up.

unshare(CLONE_NEWNET) moves only the calling thread, and a multi-threaded
process may do it (CLONE_NEWUSER it may not).  So one thread of the guest
process, started on first use, moves into a new namespace and does
everything the guest's userland does with the network: every socket it
opens and every program it starts (their fork inherits the thread's
namespace) is inside; the rest of the domain process (its AF_UNIX
hypervisor connection) is untouched.  The namespace lives as long as
something in it does and goes with the guest process and its programs.

Only a process with CAP_SYS_ADMIN over the namespace -- root -- can setns()
into it; other local users have no way in: the namespace has no route to
the host's.  Creating it needs root too (an unprivileged process would need
a user namespace, which a threaded process cannot create), so without root
the guest has no network and `call` raises NoNetwork: there is no fallback
to a listener in the host's namespace.

    net = GuestNetwork()
    sock = net.call(make_listener)      # runs on the namespace's thread
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import queue
import socket
import struct
import threading

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable, ParamSpec, TypeVar

    _P = ParamSpec("_P")
    _T = TypeVar("_T")

# Linux ABI: <linux/sched.h>, <linux/sockios.h>, <net/if.h>
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP = 0x1
IFREQ = struct.Struct("16sH22x")         # struct ifreq: ifr_name, ifr_flags (40 bytes)


class NoNetwork(OSError):
    """The guest's network namespace could not be created."""


def _unshare_net() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise NoNetwork(e, "unshare(CLONE_NEWNET): %s%s" % (
            os.strerror(e), " (a guest's private network needs root)" if e == errno.EPERM else ""))


def _loopback_up() -> None:
    """`ip link set lo up`: SIOCSIFFLAGS with IFF_UP on lo."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = IFREQ.unpack(fcntl.ioctl(s, SIOCGIFFLAGS, IFREQ.pack(b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, IFREQ.pack(b"lo", flags | IFF_UP))


class GuestNetwork:
    """One guest's network namespace and the thread that lives in it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.error: NoNetwork | None = None
        self.up = threading.Event()

    def call(self, fn: Callable[_P, _T], *args: _P.args, **kw: _P.kwargs) -> _T:
        """fn(*args, **kw) run inside the guest's network namespace; its
        result or exception.  Raises NoNetwork if there is no namespace."""
        self._start()
        if self.error is not None:
            raise self.error
        if threading.current_thread() is self.thread:
            return fn(*args, **kw)
        done = threading.Event()
        box: list = []
        self.jobs.put((fn, args, kw, box, done))
        done.wait()
        ok, value = box
        if ok:
            return value
        raise value

    def _start(self) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="guest-net", daemon=True)
                self.thread.start()
        self.up.wait()

    def _run(self) -> None:
        try:
            _unshare_net()
            _loopback_up()
        except NoNetwork as e:
            self.error = e
        except OSError as e:
            self.error = NoNetwork(e.errno, "loopback of the guest's network: %s" % e.strerror)
        self.up.set()
        if self.error is not None:
            return
        while True:
            fn, args, kw, box, done = self.jobs.get()
            try:
                box[:] = [True, fn(*args, **kw)]
            except BaseException as e:          # handed to the caller, raised there
                box[:] = [False, e]
            done.set()
