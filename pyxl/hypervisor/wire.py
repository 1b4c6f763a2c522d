"""The wire between a domain process and the hypervisor services in the daemon.

Transport: one AF_UNIX SOCK_SEQPACKET socket per domain (message boundaries
and passed descriptors stay together). Each message is one frame:

    u16 op | u16 flags | u32 req_id | u32 tx_id | args...

big-endian; each arg is `u32 length + bytes`; integers travel as decimal
ASCII (as xenstore does). Descriptors (grant pages) ride along as SCM_RIGHTS.
Requests carry a non-zero req_id and get exactly one reply with the same
req_id: the same op on success, `XS_ERROR` with (errno name, message) on
failure. `FLAG_ONEWAY` requests (console output) get no reply. Pushed events
(watch fired, event channel pending, console input) have req_id 0.

xenstore ops keep xenstored's numbers (xs_wire.h); the other hypercalls
live above 0x100. A connection starts with HELLO: the client sends its wire
version, the server answers with its version and the domain's domid (which
the server knows from the socket; a domain cannot choose it).

This module is shared by both ends and must stay cheap to import.
"""

from __future__ import annotations

import _socket as socket   # the C module: socket.py's enum tables cost ~270 kB per domain
import array
import os
import struct

WIRE_VERSION = 1

# xs_wire.h numbers
XS_DIRECTORY = 1
XS_READ = 2
XS_GET_PERMS = 3
XS_WATCH = 4
XS_UNWATCH = 5
XS_TRANSACTION_START = 6
XS_TRANSACTION_END = 7
XS_GET_DOMAIN_PATH = 10
XS_WRITE = 11
XS_MKDIR = 12
XS_RM = 13
XS_SET_PERMS = 14
XS_WATCH_EVENT = 15
XS_ERROR = 16

HELLO = 0x100
EVTCHN_ALLOC_UNBOUND = 0x200
EVTCHN_BIND_INTERDOMAIN = 0x201
EVTCHN_SEND = 0x202
EVTCHN_CLOSE = 0x203
EVTCHN_STATUS = 0x204
EVTCHN_EVENT = 0x280          # pushed: a port became pending
GNT_GRANT = 0x300
GNT_END_ACCESS = 0x301
GNT_MAP = 0x302
GNT_UNMAP = 0x303
CONSOLE_WRITE = 0x400          # one-way: domain output
CONSOLE_INPUT = 0x480          # pushed: input for the domain

FLAG_ONEWAY = 1

_HDR = struct.Struct(">HHII")
_LEN = struct.Struct(">I")
MAX_FDS = 4
MAX_FRAME = 64 * 1024 + 256    # console chunks are at most 64 KiB
CONSOLE_CHUNK = 64 * 1024


class WireError(Exception):
    """A malformed frame: the peer is broken or hostile; drop the connection."""


class Frame:
    __slots__ = ("op", "flags", "req_id", "tx_id", "args", "fds")

    def __init__(self, op: int, args=(), req_id: int = 0, tx_id: int = 0, flags: int = 0,
                 fds=()):
        self.op, self.flags, self.req_id, self.tx_id = op, flags, req_id, tx_id
        self.args = [a if isinstance(a, bytes) else
                     (str(a).encode() if isinstance(a, (int, str)) else bytes(a)) for a in args]
        self.fds = list(fds)

    def __repr__(self) -> str:
        return (f"Frame(op={self.op:#x}, req={self.req_id}, tx={self.tx_id}, "
                f"args={self.args!r}, fds={self.fds})")

    def encode(self) -> bytes:
        parts = [_HDR.pack(self.op, self.flags, self.req_id, self.tx_id)]
        for a in self.args:
            parts.append(_LEN.pack(len(a)))
            parts.append(a)
        data = b"".join(parts)
        if len(data) > MAX_FRAME:
            raise WireError(f"frame of {len(data)} bytes exceeds {MAX_FRAME}")
        return data

    @classmethod
    def decode(cls, data: bytes, fds=()) -> "Frame":
        if len(data) < _HDR.size:
            raise WireError("short frame")
        op, flags, req_id, tx_id = _HDR.unpack_from(data)
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

    # argument helpers (raise WireError on junk so the server can answer EINVAL)
    def int(self, i: int) -> int:
        try:
            return int(self.args[i])
        except (IndexError, ValueError):
            raise WireError(f"argument {i} is not an integer") from None

    def str(self, i: int) -> str:
        try:
            return self.args[i].decode("ascii")
        except (IndexError, UnicodeDecodeError):
            raise WireError(f"argument {i} is not text") from None


def socketpair():
    """(hypervisor end, domain end) as _socket objects, both close-on-exec;
    pass the domain end on with pass_fds. (Hypervisor.connect_domain makes
    the same pair with socket.socket objects for the daemon.)"""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send_frame(sock, frame: Frame, nowait: bool = False) -> None:
    """Send one frame (atomically: SOCK_SEQPACKET). With nowait, raise
    BlockingIOError instead of waiting for room in the peer's buffer."""
    data = frame.encode()
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", frame.fds))] if frame.fds else []
    sock.sendmsg([data], anc, socket.MSG_DONTWAIT if nowait else 0)


def recv_frame(sock) -> Frame | None:
    """The next frame, or None at EOF. Passed descriptors end up in .fds
    (the receiver owns them)."""
    data, anc, msg_flags, _ = sock.recvmsg(MAX_FRAME, socket.CMSG_SPACE(MAX_FDS * 4))
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(payload[:len(payload) - len(payload) % a.itemsize])
            fds.extend(a)
    if not data and not fds:
        return None
    if msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise WireError("oversized frame")
    try:
        return Frame.decode(data, fds)
    except WireError:
        for fd in fds:
            os.close(fd)
        raise
