"""A xenstore client over xenstored's socket, as libxenstore's (tools/libs/store/xs.c).

Blocking, one request at a time, no reader thread: a reply is the next
message that is not a WATCH_EVENT; events that arrive meanwhile are kept
for `read_watch`.  Errors raise OSError with the errno libxenstore would set
(`get_error` over the `xsd_errors` names; EBADF for a reply of the wrong
type or a closed connection; E2BIG for a request over the payload limit).
"""

from __future__ import annotations

import collections
import errno as _errno
import os
import _socket as socket   # socket.py (enums, selectors) costs start-up on every command

from pyxl.hypervisor import xs_wire
from pyxl.hypervisor.xs_wire import XENSTORE_PAYLOAD_MAX, XsType

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.toolstack.paths import Paths

XBT_NULL = 0


def socket_path(paths: Paths) -> str:
    """Where the host's xenstored listens (pyxl.hypervisor.xenstored)."""
    return os.path.join(paths.xenstored_dir, xs_wire.SOCKET_NAME)


class XsClient:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.events: collections.deque[tuple[bytes, bytes]] = collections.deque()

    @classmethod
    def open(cls, path: str) -> "XsClient":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            if len(os.fsencode(path)) < 108:
                s.connect(path)
            else:                   # past AF_UNIX's limit: through the directory's descriptor
                d = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_CLOEXEC)
                try:
                    s.connect("/proc/self/fd/%d/%s" % (d, os.path.basename(path)))
                finally:
                    os.close(d)
        except OSError:
            s.close()
            raise
        return cls(s)

    def close(self) -> None:
        self.sock.close()

    # -- the message exchange (xs_talkv) ---------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            data = self.sock.recv(n - len(buf))
            if not data:
                raise OSError(_errno.EBADF, os.strerror(_errno.EBADF))  # "It closed fd on us"
            buf += data
        return bytes(buf)

    def _read_message(self) -> tuple[int, bytes]:
        kind, _req, _tx, length = xs_wire.HEADER.unpack(self._recv_exact(xs_wire.HEADER.size))
        return kind, self._recv_exact(length) if length else b""

    def talk(self, kind: XsType, parts: list[bytes], tx: int = XBT_NULL) -> bytes:
        payload = b"".join(parts)
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            raise OSError(_errno.E2BIG, os.strerror(_errno.E2BIG))
        self.sock.sendall(xs_wire.pack(kind, payload, 0, tx))
        while True:
            rkind, body = self._read_message()
            if rkind != XsType.WATCH_EVENT:
                break
            self._queue_event(body)
        if rkind == XsType.ERROR:
            err = xs_wire.error_number(body.split(b"\0", 1)[0])
            raise OSError(err, os.strerror(err))
        if rkind != kind:
            raise OSError(_errno.EBADF, os.strerror(_errno.EBADF))
        return body

    def _queue_event(self, body: bytes) -> None:
        vec = xs_wire.strings(body)
        if len(vec) >= 2:
            self.events.append((vec[xs_wire.XS_WATCH_PATH], vec[xs_wire.XS_WATCH_TOKEN]))

    @staticmethod
    def _z(text: str | bytes) -> bytes:
        return (os.fsencode(text) if isinstance(text, str) else bytes(text)) + b"\0"

    # -- operations --------------------------------------------------------------
    def read(self, path: str | bytes, tx: int = XBT_NULL) -> bytes:
        return self.talk(XsType.READ, [self._z(path)], tx)

    def write(self, path: str | bytes, value: bytes, tx: int = XBT_NULL) -> None:
        self.talk(XsType.WRITE, [self._z(path), value], tx)

    def mkdir(self, path: str | bytes, tx: int = XBT_NULL) -> None:
        self.talk(XsType.MKDIR, [self._z(path)], tx)

    def rm(self, path: str | bytes, tx: int = XBT_NULL) -> None:
        self.talk(XsType.RM, [self._z(path)], tx)

    def directory(self, path: str | bytes, tx: int = XBT_NULL) -> list[bytes]:
        """xs_directory: XS_DIRECTORY, and XS_DIRECTORY_PART when the list is
        too long for one reply (E2BIG)."""
        try:
            body = self.talk(XsType.DIRECTORY, [self._z(path)], tx)
        except OSError as e:
            if e.errno != _errno.E2BIG:
                raise
            return self._directory_part(path, tx)
        return xs_wire.strings(body)

    def _directory_part(self, path: str | bytes, tx: int) -> list[bytes]:
        gen = None
        strings = b""
        while True:
            try:
                result = self.talk(XsType.DIRECTORY_PART,
                                   [self._z(path), b"%d\0" % len(strings)], tx)
            except OSError as e:
                if e.errno == _errno.ENOSYS:
                    raise OSError(_errno.E2BIG, os.strerror(_errno.E2BIG)) from None
                raise
            this_gen, _, part = result.partition(b"\0")
            if gen is not None and this_gen != gen:
                gen, strings = None, b""          # the node changed: start again
                continue
            gen = this_gen
            strings += part
            if len(strings) <= 1 or strings[-2:-1] == b"\0":
                break
        if len(strings) > 1:
            strings = strings[:-1]
        return xs_wire.strings(strings) if strings not in (b"", b"\0") else []

    def get_perms(self, path: str | bytes, tx: int = XBT_NULL) -> list[bytes]:
        return xs_wire.strings(self.talk(XsType.GET_PERMS, [self._z(path)], tx))

    def set_perms(self, path: str | bytes, perms: list[bytes], tx: int = XBT_NULL) -> None:
        self.talk(XsType.SET_PERMS, [self._z(path)] + [p + b"\0" for p in perms], tx)

    def transaction_start(self) -> int:
        return int(self.talk(XsType.TRANSACTION_START, [b"\0"]).split(b"\0", 1)[0])

    def transaction_end(self, tx: int, abort: bool) -> None:
        self.talk(XsType.TRANSACTION_END, [b"F\0" if abort else b"T\0"], tx)

    def watch(self, path: str | bytes, token: str | bytes) -> None:
        self.talk(XsType.WATCH, [self._z(path), self._z(token)])

    def read_watch(self) -> tuple[bytes, bytes]:
        """The next watch event (path, token), waiting for it."""
        while not self.events:
            kind, body = self._read_message()
            if kind == XsType.WATCH_EVENT:
                self._queue_event(body)
        return self.events.popleft()
