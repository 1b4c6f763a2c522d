"""The control protocol between pyxl commands and the daemon.

A Unix stream socket (0600 under the run dir).  Messages are JSON objects,
one per line.  The first exchange is a versioned handshake:

    client: {"hello": "pyxl-control", "version": 1}
    daemon: {"hello": "pyxl-control", "version": 1, "pid": N, "root": "/..."}
       or : {"ok": false, "fault": "VERSION_MISMATCH", ...} and the daemon hangs up

then requests and replies alternate:

    client: {"op": "list", "args": {...}}
    daemon: {"ok": true, "result": ...}   or   {"ok": false, "fault": NAME, "code": N, "args": {...}}

A few ops (console, wait) switch the connection to a stream afterwards: the
console op turns it into a raw byte pipe to the domain's console.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    import _socket


MAGIC = "pyxl-control"
VERSION = 1
MAX_LINE = 16 << 20   # a create request carries a whole libxl config


class ProtocolError(Exception):
    pass


class Channel:
    """Line-framed JSON over a connected socket (either end)."""

    def __init__(self, sock: _socket.socket):
        self.sock = sock
        self.buf = b""

    def send(self, obj: object) -> None:
        self.sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def recv(self) -> Any:
        """The next message, or None at EOF."""
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise ProtocolError("message too long")
            chunk = self.sock.recv(65536)
            if not chunk:
                if self.buf:
                    raise ProtocolError("truncated message")
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError as e:
            raise ProtocolError("bad JSON: %s" % e) from None

    def take_buffered(self) -> bytes:
        """Bytes already read past the last message (used when switching to raw)."""
        b, self.buf = self.buf, b""
        return b

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
