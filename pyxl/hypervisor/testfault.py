"""Test-only fault points of the daemon (the daemon-restart tests): the
daemon SIGKILLs itself at an exact instant, so a test can see what its
domains do when it dies there.  Unset, nothing is read.

PYXL_TEST_FAULT_AT=<spec>, or =file:<file> whose content is the spec (read
at each fault point; empty: none yet), for a test to arm the hook at an
instant of its choosing rather than at the daemon's start.  Specs:

request:<domain name>:<path>
    on reading that domain's request whose first argument is <path> (a
    xenstore request's path as the domain wrote it; a register access's
    address, in decimal), leaving it unanswered (services.py).
console:<domain name>
    on reading that domain's console kick, before taking what its console
    ring holds (services.py): output the domain wrote and the daemon
    never took.
tpm:<ordinal>
    when the host's hardware TPM is started (STS.tpmGo) on a command with
    that ordinal (TPM 1.2) or command code (TPM 2.0), in decimal, before
    the chip runs it: the command its driver waits for is in flight
    (tis.py).

Two are fired by a domain, which SIGKILLs its daemon (the peer of its
hypervisor connection) at an instant of a frontend's TPM request in
tpmback (pyxl/domain/drivers/tpmback.py), <domid> being the frontend's:
serve:<domid>:<ordinal>
    when tpmback hands its server that frontend's request with that
    ordinal (TPM 1.2) or command code (TPM 2.0), in decimal; the server
    gets it once the domain has resumed on the next daemon, so its answer
    comes after the ring it came on died.
answered:<domid>:<ordinal>
    once tpmback has written the answer to such a request on its ring,
    before it notifies the frontend.

One is fired by a frontend domain, <domid> its own (the Linux guest's
/dev/tpm0, pyxl/domain/linux/tpm.py; mini-os tpmfront, as pv-grub or
vtpm-stubdom uses it, pyxl/domain/drivers/tpmfront.py):
away:<domid>:<ordinal>
    as it takes a command with that ordinal or command code; once the
    domain has seen its hypervisor connection break, the file spec is
    emptied (the test then knows the command is one sent while the daemon
    is away) and the command goes on.

One holds the daemon's toolstack instead of killing anything:
hold:vtpm-backend-connected
    when it has committed a vTPM's directories (vtpm-attach, or create
    of a domain with a vtpm), it waits until that device's backend is
    Connected before it starts waiting for the backend to come up
    (pyxl/toolstack/devices.py wait_vtpm_backend): the backend has then
    gone on past InitWait, its frontend being already Initialised (a
    guest with xen-tpmfront loaded, a stub domain's tpmfront), as it may
    when the toolstack's wait starts late.

Other values are the toolstack's own (pyxl/toolstack/spawn.py).

One is fired by vtpmmgr-stubdom, which SIGKILLs itself (armed through a
file):
vtpmmgr:table-written
    as it registers a new vTPM, once the new uuid table is on its disk
    and before the table's key block is (pyxl/domain/vtpmmgr/storage.py).
"""

from __future__ import annotations

import _socket
import os
import signal
import struct

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Protocol

    class _Connection(Protocol):       # a domain's XenInterface, as away() uses it
        domid: int
        sock: _socket.socket

        def read_watch(self, timeout: float | None = None,
                       token: str | tuple[str, ...] | None = None) -> tuple[str, str] | None: ...

_ENV = os.environ.get("PYXL_TEST_FAULT_AT", "")
_FILE = _ENV[len("file:"):] if _ENV.startswith("file:") else ""
# a fault point here may fire
ARMED = _ENV.startswith(("file:", "request:", "console:", "tpm:", "serve:", "answered:", "away:",
                         "hold:"))


def spec() -> str:
    """The spec armed now ("" if none)."""
    if not _FILE:
        return _ENV
    try:
        with open(_FILE) as f:
            return f.read().strip()
    except OSError:
        return ""


def at(point: str) -> None:
    """Die here if `point` is the spec armed now."""
    if spec() == point:
        os.kill(os.getpid(), signal.SIGKILL)


def away(xen: _Connection, request: bytes) -> None:
    """The away: point of a frontend taking `request`, `xen` its domain's
    hypervisor connection: the daemon SIGKILLed; once the domain has seen
    the break (reading its connection, as any of its waits does), the file
    spec emptied."""
    if spec() != "away:%d:%d" % (xen.domid, int.from_bytes(request[6:10], "big")):
        return
    kill_peer(xen.sock)
    xen.read_watch(10, token="testfault")       # no such watch: until the connection closes
    if _FILE:
        # emptied where the test made it: never created, never through a link
        os.close(os.open(_FILE, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC))


def kill_peer(sock: _socket.socket) -> None:
    """SIGKILL the process at the other end of a unix socket (a domain's
    connection: its daemon).  _socket, not socket: domains import little."""
    pid = struct.unpack("3i", sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED,
                                              struct.calcsize("3i")))[0]
    os.kill(pid, signal.SIGKILL)
