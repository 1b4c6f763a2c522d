"""xenconsole: attach the terminal to a domain's console.

The terminal goes raw; bytes flow both ways until Ctrl-] (0x1d, xenconsole's
DEFAULT_ESCAPE_CHARACTER) arrives as a single read, or the domain goes away
(the daemon hangs up).  Output that arrived while nobody was attached comes
first, as from xenconsoled's pty.
"""

from __future__ import annotations

import os
import select
import sys

from pyxl.toolstack.client import Client
from pyxl.toolstack.errors import Fault

ESCAPE = 0x1d


def attach(dom: str, client: Client | None = None) -> int:
    c = client or Client().connect()
    ch = c.channel()
    try:
        ch.send({"op": "console", "args": {"dom": dom}})
        reply = ch.recv()
    except OSError as e:
        raise Fault("REFUSED", path=c.paths.control_socket, reason=str(e)) from None
    if reply is None:
        raise Fault("CONSOLE_UNAVAILABLE")
    if not reply.get("ok"):
        raise Fault.from_wire(reply)
    sock = ch.sock
    first = ch.take_buffered()
    out = sys.stdout.fileno()
    inp = sys.stdin.fileno()
    if first:
        os.write(out, first)
    old = None
    if os.isatty(inp):
        import termios
        import tty

        old = termios.tcgetattr(inp)
        tty.setraw(inp)
    try:
        while True:
            rl, _, _ = select.select([sock, inp], [], [])
            if sock in rl:
                data = sock.recv(65536)
                if not data:
                    break            # the domain is gone
                _write_all(out, data)
            if inp in rl:
                data = os.read(inp, 1024)
                if not data:
                    break            # stdin closed: xenconsole exits too
                if data == bytes([ESCAPE]):
                    break
                sock.sendall(data)
    finally:
        if old is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, old)
        sock.close()
    return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
