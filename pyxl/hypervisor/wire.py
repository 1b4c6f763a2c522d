"""The wire between a domain process and the hypervisor services in the daemon.

Transport: one connected AF_UNIX socket per domain, SOCK_SEQPACKET
(preferred: one frame per message) or SOCK_STREAM (frames are read by their
length prefix). Each frame:

    u32 length-of-rest | u16 op | u8 flags | u8 nfds | u32 req_id | u32 tx_id | args...

big-endian; each arg is `u32 length + bytes`; integers travel as decimal
ASCII (as xenstore does). `nfds` descriptors (grant pages, event channel
sockets) ride along as SCM_RIGHTS on the frame's first byte. Requests carry
a non-zero req_id and get exactly one reply with the same req_id: the same
op on success,
`XS_ERROR` with (errno name, message) on failure. `FLAG_ONEWAY` requests
(the console's kick) get no reply. Pushed events (watch fired, event channel
pending, a bound event channel's own socket, console input on the ring
page, console ring room) have req_id 0.

xenstore ops keep xenstored's numbers (xs_wire.h); the other hypercalls
(`HvOp`) live above 0x100.  The hypervisor serves every op from one table
(pyxl.hypervisor.services.OPS), which checks its arguments. A connection starts with HELLO: the client sends its wire
version and its console ring page (pyxl.hypervisor.xencons), the server
answers with its version and the domain's domid (which the server knows
from the socket; a domain cannot choose it).

This module is shared by both ends and must stay cheap to import.
"""

from __future__ import annotations

import _socket as socket   # the C module: socket.py's enum tables cost ~270 kB per domain
import array
import os
import struct
from enum import IntEnum

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Iterable, Sequence

WIRE_VERSION = 5          # 3: direct event channels (EVTCHN_BOUND); 4: the console ring page; 5: console input on it

# xenstore ops keep xenstored's numbers (one home: xs_wire)
from .xs_wire import XsType  # noqa: E402

XS_DIRECTORY = XsType.DIRECTORY
XS_READ = XsType.READ
XS_GET_PERMS = XsType.GET_PERMS
XS_WATCH = XsType.WATCH
XS_UNWATCH = XsType.UNWATCH
XS_TRANSACTION_START = XsType.TRANSACTION_START
XS_TRANSACTION_END = XsType.TRANSACTION_END
XS_GET_DOMAIN_PATH = XsType.GET_DOMAIN_PATH
XS_WRITE = XsType.WRITE
XS_MKDIR = XsType.MKDIR
XS_RM = XsType.RM
XS_SET_PERMS = XsType.SET_PERMS
XS_WATCH_EVENT = XsType.WATCH_EVENT
XS_ERROR = XsType.ERROR



class HvOp(IntEnum):
    """The wire's own operations, above xenstored's types."""

    HELLO = 0x100
    EVTCHN_ALLOC_UNBOUND = 0x200
    EVTCHN_BIND_INTERDOMAIN = 0x201
    EVTCHN_SEND = 0x202
    EVTCHN_CLOSE = 0x203
    EVTCHN_STATUS = 0x204
    EVTCHN_EVENT = 0x280          # pushed: a port became pending
    EVTCHN_BOUND = 0x281          # pushed: a port's own socket to its peer (evtchn.py)
    GNT_GRANT = 0x300
    GNT_END_ACCESS = 0x301
    GNT_MAP = 0x302
    GNT_UNMAP = 0x303
    CONSOLE_KICK = 0x401          # one-way: new output on the console ring; 1: waiting for room
    CONSOLE_INPUT = 0x480         # pushed: input on the console ring; 1: more waits for room
    CONSOLE_ROOM = 0x481          # pushed: the console ring was emptied (after a kick waiting for room)
    MMIO_READ = 0x500             # iomem access: addr, width, count -> data
    MMIO_WRITE = 0x501            # iomem access: addr, width, data
    MEMORY_RESERVATION = 0x600    # XENMEM_{increase,decrease}_reservation: kB -> kB granted


HELLO = HvOp.HELLO
EVTCHN_ALLOC_UNBOUND = HvOp.EVTCHN_ALLOC_UNBOUND
EVTCHN_BIND_INTERDOMAIN = HvOp.EVTCHN_BIND_INTERDOMAIN
EVTCHN_SEND = HvOp.EVTCHN_SEND
EVTCHN_CLOSE = HvOp.EVTCHN_CLOSE
EVTCHN_STATUS = HvOp.EVTCHN_STATUS
EVTCHN_EVENT = HvOp.EVTCHN_EVENT
EVTCHN_BOUND = HvOp.EVTCHN_BOUND
GNT_GRANT = HvOp.GNT_GRANT
GNT_END_ACCESS = HvOp.GNT_END_ACCESS
GNT_MAP = HvOp.GNT_MAP
GNT_UNMAP = HvOp.GNT_UNMAP
CONSOLE_KICK = HvOp.CONSOLE_KICK
CONSOLE_INPUT = HvOp.CONSOLE_INPUT
CONSOLE_ROOM = HvOp.CONSOLE_ROOM
MMIO_READ = HvOp.MMIO_READ
MMIO_WRITE = HvOp.MMIO_WRITE
MEMORY_RESERVATION = HvOp.MEMORY_RESERVATION

FLAG_ONEWAY = 1

_HDR = struct.Struct(">HBBII")     # op, flags, nfds, req_id, tx_id
_LEN = struct.Struct(">I")
MAX_FDS = 4
# descriptors received (grant pages, event channel sockets) are close-on-exec,
# as every descriptor Python opens is (PEP 446): none leaks into a program
# a domain runs
_CLOEXEC = socket.MSG_CMSG_CLOEXEC
MAX_FRAME = 64 * 1024 + 256    # 64 KiB of arguments and the header


class WireError(Exception):
    """A malformed frame: the peer is broken or hostile; drop the connection."""


class Frame:
    __slots__ = ("op", "flags", "req_id", "tx_id", "args", "fds")

    def __init__(self, op: int, args: Iterable[bytes | bytearray | str | int] = (), req_id: int = 0,
                 tx_id: int = 0, flags: int = 0, fds: Iterable[int] = ()):
        self.op, self.flags, self.req_id, self.tx_id = op, flags, req_id, tx_id
        self.args = [a if isinstance(a, bytes) else
                     (str(a).encode() if isinstance(a, (int, str)) else bytes(a)) for a in args]
        self.fds = list(fds)

    def __repr__(self) -> str:
        return (f"Frame(op={self.op:#x}, req={self.req_id}, tx={self.tx_id}, "
                f"args={self.args!r}, fds={self.fds})")

    def encode(self) -> bytes:
        """The frame with its length prefix."""
        if len(self.fds) > MAX_FDS:
            raise WireError(f"at most {MAX_FDS} descriptors per frame")
        parts = [b"", _HDR.pack(self.op, self.flags, len(self.fds), self.req_id, self.tx_id)]
        for a in self.args:
            parts.append(_LEN.pack(len(a)))
            parts.append(a)
        body = b"".join(parts)
        if len(body) > MAX_FRAME:
            raise WireError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
        return _LEN.pack(len(body)) + body

    @classmethod
    def decode(cls, data: bytes, fds: Sequence[int] = ()) -> Frame:
        """Decode a frame body (without the length prefix)."""
        if len(data) < _HDR.size:
            raise WireError("short frame")
        op, flags, nfds, req_id, tx_id = _HDR.unpack_from(data)
        if nfds != len(fds):
            raise WireError(f"frame announces {nfds} descriptors, {len(fds)} came")
        args = []
        off = _HDR.size
        while off < len(data):
            if off + 4 > len(data):
                raise WireError("truncated argument length")
            (n,) = _LEN.unpack_from(data, off)
            off += 4
            if off + n > len(data):
                raise WireError("truncated argument")
            args.append(data[off:off + n])
            off += n
        f = cls(op, (), req_id, tx_id, flags, fds)
        f.args = args
        return f


def socketpair() -> tuple[socket.socket, socket.socket]:
    """(hypervisor end, domain end) as _socket objects, both close-on-exec;
    pass the domain end on with pass_fds. (Hypervisor.connect_domain makes
    the same pair with socket.socket objects for the daemon.)"""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def _take_fds(anc: list[tuple[int, int, bytes]], into: list[int]) -> bool:
    """Collect SCM_RIGHTS descriptors; False if something else came."""
    ok = True
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(payload[:len(payload) - len(payload) % a.itemsize])
            into.extend(a)
        else:
            ok = False
    return ok


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Channel:
    """Frames over one socket, either type. Not thread-safe by itself: one
    sender at a time and one receiver at a time (they may overlap)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.stream = int(sock.type) != socket.SOCK_SEQPACKET
        self._fds: list[int] = []      # stream: descriptors read ahead of their frame

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, frame: Frame, nowait: bool = False) -> bytes | None:
        """Send one frame. With nowait, raise BlockingIOError if the peer's
        buffer is full; on a stream socket a partial send returns the unsent
        tail, which the caller must send (sendall) before anything else."""
        data = frame.encode()
        anc = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", frame.fds))]
               if frame.fds else [])
        n = self.sock.sendmsg([data], anc, socket.MSG_DONTWAIT if nowait else 0)
        if n < len(data):
            if nowait:
                return data[n:]
            self.sock.sendall(data[n:])
        return None

    def recv(self) -> Frame | None:
        """The next frame, or None at EOF. Passed descriptors end up in
        .fds and belong to the caller. Raises WireError on junk."""
        if not self.stream:
            data, anc, flags, _ = self.sock.recvmsg(MAX_FRAME + 4,
                                                    socket.CMSG_SPACE(MAX_FDS * 4), _CLOEXEC)
            fds: list[int] = []
            ok = _take_fds(anc, fds)
            if not data and not fds:
                return None
            if not ok or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(data) < 4 \
                    or _LEN.unpack_from(data)[0] != len(data) - 4:
                _close_all(fds)
                raise WireError("malformed message")
            try:
                return Frame.decode(data[4:], fds)
            except WireError:
                _close_all(fds)
                raise
        head = self._exact(4, at_start=True)
        if not head:
            return None
        (n,) = _LEN.unpack(head)
        if n > MAX_FRAME or n < _HDR.size:
            raise WireError(f"frame length {n}")
        body = self._exact(n)
        nfds = body[3]
        if nfds > len(self._fds):
            raise WireError("descriptors missing")
        fds, self._fds = self._fds[:nfds], self._fds[nfds:]
        try:
            return Frame.decode(body, fds)
        except WireError:
            _close_all(fds)
            raise

    def _exact(self, n: int, at_start: bool = False) -> bytes:
        """`n` (> 0) bytes; b"" if the peer closed before a frame (at_start)."""
        buf = b""
        while len(buf) < n:
            data, anc, flags, _ = self.sock.recvmsg(n - len(buf),
                                                    socket.CMSG_SPACE(MAX_FDS * 4), _CLOEXEC)
            ok = _take_fds(anc, self._fds)
            if not ok or flags & socket.MSG_CTRUNC:
                raise WireError("descriptors lost")
            if not data:
                if at_start and not buf:
                    return b""
                raise WireError("connection closed inside a frame")
            buf += data
        return buf

    def close(self) -> None:
        _close_all(self._fds)
        self._fds = []
