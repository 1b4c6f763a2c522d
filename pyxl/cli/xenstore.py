"""`pyxl xenstore-ls | -read | -write | -rm | -list | -exists | -chmod | -watch`:
Xen's xenstore tools (tools/xenstore/xenstore_client.c, Xen 4.17), talking
xenstored's wire protocol to the host's xenstored socket
(run/pyxl/xenstored/socket) as Debian's xenstore-utils do, with the same
options (GNU getopt_long), output, messages and exit statuses.

The handlers take their command line as it is (their table rows have no
getopt string): xenstore_client.c parses it itself, and `-h` is its usage
error, not pyxl's help.
"""

from __future__ import annotations

import errno as _errno
import os
import sys
from enum import Enum
from typing import TYPE_CHECKING, Callable, Iterator, NoReturn

if TYPE_CHECKING:
    from pyxl.toolstack.xsclient import XsClient

MAX_PATH_LEN = 256
STRING_MAX = 3072 + 1024          # XENSTORE_ABS_PATH_MAX + 1024
TAG = b' = "..."'
INT_MAX = 2 ** 31 - 1


class Mode(Enum):
    CHMOD = "chmod"
    EXISTS = "exists"
    LIST = "list"
    LS = "ls"
    READ = "read"
    RM = "rm"
    WRITE = "write"
    WATCH = "watch"


class Exit(Exception):
    def __init__(self, code: int):
        self.code = code


class Tool:
    """One run of xenstore-<mode>: its stdout/stderr and the C program's state."""

    def __init__(self, mode: Mode, prog: str):
        self.mode = mode
        self.prog = prog                      # argv[0] and program_invocation_short_name
        # stdio's stdout: line-buffered on a terminal, else a buffer of the
        # descriptor's block size (whatever PYTHONUNBUFFERED says), so an
        # error message and the output interleave on one pipe as the C tool's
        self.line_buffered = os.isatty(1)
        try:
            blksize = os.fstat(1).st_blksize or 4096
        except OSError:
            blksize = 4096
        self.out = open(1, "wb", buffering=blksize, closefd=False)
        self.output: list[bytes] = []         # output()/output_raw(): printed at the end
        self.operands: list[str] = []         # the arguments getopt_long left
        self.xs: XsClient | None = None       # open from xs_open() until the end

    # err.h
    def warnx(self, msg: str) -> None:
        sys.stderr.write("%s: %s\n" % (self.prog, msg))
        sys.stderr.flush()

    def warn(self, msg: str, e: OSError) -> None:
        """warn(3): `msg` and the text of errno (EIO for an error without one)."""
        self.warnx("%s: %s" % (msg, os.strerror(e.errno or _errno.EIO)))

    def errx(self, msg: str) -> NoReturn:
        self.warnx(msg)
        raise Exit(1)

    def err(self, msg: str, e: OSError) -> NoReturn:
        self.warn(msg, e)
        raise Exit(1)

    def usage(self) -> NoReturn:
        p, m = self.prog, self.mode
        self.errx({
            Mode.READ: "Usage: %s [-h] [-p] [-s] [-R] key [...]",
            Mode.WRITE: "Usage: %s [-h] [-s] [-R] key value [...]",
            Mode.RM: "Usage: %s [-h] [-s] [-t] key [...]",
            Mode.EXISTS: "Usage: %s [-h] [-p] [-s] key [...]",
            Mode.LIST: "Usage: %s [-h] [-p] [-s] key [...]",
            Mode.LS: "Usage: %s [-h] [-f] [-p] [-s] [path]",
            Mode.CHMOD: "Usage: %s [-h] [-u] [-r] [-s] key <mode [modes...]>",
            Mode.WATCH: "Usage: %s [-h] [-n NR] key",
        }[m] % p)


# -- sanitise_value / unsanitise_value (tools/xenstore/xs_lib.c) -------------
def sanitise_value(val: bytes) -> bytes:
    out = bytearray()
    for c in val:
        if 0x20 <= c <= 0x7E and c != 0x5C:
            out.append(c)
        elif c == 0x09:
            out += b"\\t"
        elif c == 0x0A:
            out += b"\\n"
        elif c == 0x0D:
            out += b"\\r"
        elif c == 0x5C:
            out += b"\\\\"
        elif c < 0o10:
            out += b"\\%03o" % c
        else:
            out += b"\\x%02x" % c
    return bytes(out)


_SPACE = b" \t\n\v\f\r"
_HEX = b"0123456789abcdefABCDEF"


def _scan_uint(s: bytes, i: int, width: int, base: int) -> tuple[int, int] | None:
    """sscanf(s + i, "%<width>x" / "%<width>o"): (value, characters used) or
    None; blanks are skipped first and do not count against the width."""
    j = i
    while j < len(s) and s[j] in _SPACE:
        j += 1
    left, neg = width, False
    if left and j < len(s) and s[j] in b"+-":
        neg = s[j] == 0x2D
        j += 1
        left -= 1
    digits = _HEX if base == 16 else b"01234567"
    if base == 16 and left and j < len(s) and s[j] == 0x30:
        # "0x" prefix: glibc reads it within the width
        if left >= 2 and j + 1 < len(s) and s[j + 1] in b"xX":
            k = j + 2
            if left > 2 and k < len(s) and s[k] in digits:
                j, left = k, left - 2
            else:
                return (0, k - i)  # "0x" alone reads as 0
    value, got = 0, 0
    while left and j < len(s) and s[j] in digits:
        value = value * base + int(chr(s[j]), base)
        j += 1
        left -= 1
        got += 1
    if not got:
        return None
    if neg:
        value = -value
    return value & 0xFFFFFFFF, j - i


def unsanitise_value(text: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        i += 1
        if c == 0x5C:
            c = text[i] if i < len(text) else 0
            i += 1
            if c == 0x74:
                c = 0x09
            elif c == 0x6E:
                c = 0x0A
            elif c == 0x72:
                c = 0x0D
            elif c == 0x5C:
                pass
            elif c == 0x78:                   # \x: sscanf "%2x"
                got = _scan_uint(text, i, 2, 16)
                if got is not None:
                    c, n = got
                    i += n
            elif 0x30 <= c <= 0x37:           # \0..\7: sscanf "%3o"
                i -= 1
                got = _scan_uint(text, i, 3, 8)
                assert got is not None        # text[i] is an octal digit
                c, n = got
                i += n
            elif c == 0:                      # a final backslash: a nul byte
                i -= 1
        out.append(c & 0xFF)
    return bytes(out)


# -- getopt_long("hfspturn:R"), GNU style: options anywhere, "--" ends them ---
SHORT = "hfspturn:R"
LONG = (("help", 0, "h"), ("flat", 0, "f"), ("prefix", 0, "p"), ("tidy", 0, "t"),
        ("upto", 0, "u"), ("recurse", 0, "r"), ("number", 1, "n"), ("raw", 0, "R"))


def getopt_long(tool: Tool, argv: list[str]) -> Iterator[tuple[str, str | None]]:
    """Yield (option, argument) in order ('?' for an error, reported as
    glibc does: xenstore_client.c leaves opterr at 1 and the ordering at
    GNU's default); afterwards `tool.operands` holds the other arguments."""
    from pyxl.cli.xlopt import GetoptError, scan

    for got in scan(argv, SHORT, LONG, tool.operands, permute=True, prog=tool.prog):
        if isinstance(got, GetoptError):
            yield "?", None
        else:
            yield str(got[0]), got[1]


def _atoi(text: str) -> int:
    from pyxl.hypervisor.xs_wire import atoi

    return atoi(os.fsencode(text))


# -- the modes (perform() and its helpers) -----------------------------------
class Run:
    def __init__(self, tool: Tool, opts: dict, xs: XsClient):
        self.t = tool
        self.xs = xs
        self.o = opts
        self.max_width = opts["max_width"]
        self.desired_width = opts["desired_width"]
        self.show_whole_path = opts["show_whole_path"]

    def do_ls(self, path: bytes, depth: int, show_perms: bool) -> None:
        t, xs, out = self.t, self.xs, self.t.out
        try:
            names = xs.directory(path)
        except OSError as e:
            if depth and e.errno == _errno.ENOENT:
                return                  # a node disappeared while recursing
            t.err("xs_directory (%s)" % os.fsdecode(path), e)
        tag = len(TAG)
        for name in names:
            newpath = path + (b"" if path.endswith(b"/") else b"/") + name
            too_long = len(newpath) >= STRING_MAX
            newpath = newpath[:STRING_MAX - 1]
            linewid = 0
            if self.show_whole_path:
                out.write(newpath)
            else:
                out.write(b" " * depth)
                linewid = depth
                prec = self.max_width - tag - linewid
                shown = name if prec < 0 else name[:prec]
                out.write(shown)
                linewid += len(shown)
            val = None
            if not too_long:
                try:
                    val = xs.read(newpath)
                except OSError:
                    val = None
            if val is None:
                out.write(b":\n")
            else:
                s = sanitise_value(val)
                if self.max_width >= 0 and self.max_width < linewid + len(val) + tag:
                    prec = self.max_width - tag - linewid
                    out.write(b' = "' + (s if prec < 0 else s[:prec]) + b'\\..."')
                else:
                    text = b' = "' + s + b'"'
                    out.write(text)
                    linewid += len(text)
                    if show_perms:
                        out.write(b" ")
                        linewid += 1
                        stop = min(self.desired_width, self.max_width)
                        while linewid < stop:
                            out.write(b"." if linewid & 1 else b" ")
                            linewid += 1
            if show_perms:
                try:
                    perms = xs.get_perms(newpath)
                except OSError as e:
                    t.warn("\ncould not access permissions for %s" % os.fsdecode(name), e)
                else:
                    out.write(b"  (" + b",".join(perms) + b")")
            out.write(b"\n")
            if t.line_buffered:
                out.flush()
            self.do_ls(newpath, depth + 1, show_perms)

    def do_rm(self, path: bytes, xth: int) -> bool:
        try:
            self.xs.rm(path, xth)
            return False
        except OSError:
            self.t.warnx("could not remove path %s" % os.fsdecode(path))
            return True

    def do_chmod(self, path: bytes, perms: list[bytes], upto: bool, recurse: bool,
                 xth: int) -> None:
        t = self.t
        if not path:
            return
        try:
            self.xs.set_perms(path, perms, xth)
        except OSError as e:
            t.err("Error occurred setting permissions on '%s'" % os.fsdecode(path), e)
        if upto:
            cut = path.rfind(b"/")
            if cut < 0:
                t.errx("Unable to locate path separator '/' in '%s'" % os.fsdecode(path))
            self.do_chmod(path[:cut], perms, True, False, xth)
        if recurse:
            try:
                children = self.xs.directory(path, xth)
            except OSError:
                children = []
            for c in children:
                self.do_chmod((path + b"/" + c)[:MAX_PATH_LEN - 1], perms, False, True, xth)

    def perform(self, args: list[bytes], xth: int) -> int:
        t, o, mode = self.t, self.o, self.t.mode
        xs = self.xs
        if mode is Mode.LS and not args:
            args = [b"/"]
        i = 0
        while i < len(args):
            if mode is Mode.READ:
                try:
                    val = xs.read(args[i], xth)
                except OSError:
                    t.warnx("couldn't read path %s" % os.fsdecode(args[i]))
                    return 1
                if o["prefix"]:
                    t.output.append(args[i] + b": ")
                t.output.append(val if o["raw"] else sanitise_value(val) + b"\n")
                i += 1
            elif mode is Mode.WRITE:
                spec = args[i + 1]
                val = spec if o["raw"] else unsanitise_value(spec)
                try:
                    xs.write(args[i], val, xth)
                except OSError:
                    t.warnx("could not write path %s" % os.fsdecode(args[i]))
                    return 1
                i += 2
            elif mode is Mode.RM:
                path = args[i]
                if o["tidy"]:
                    while True:
                        if self.do_rm(path, xth):
                            return 1
                        cut = path.rfind(b"/")
                        if cut < 0:
                            break
                        path = path[:cut]
                        try:
                            val = xs.read(path, xth)
                        except OSError:
                            break
                        if val:
                            break
                        try:
                            if xs.directory(path, xth):
                                break
                        except OSError:
                            break
                elif self.do_rm(path, xth):
                    return 1
                i += 1
            elif mode is Mode.EXISTS:
                try:
                    xs.read(args[i], xth)
                except OSError:
                    return 1
                i += 1
            elif mode is Mode.LIST:
                try:
                    names = xs.directory(args[i], xth)
                except OSError:
                    t.warnx("could not list path %s" % os.fsdecode(args[i]))
                    return 1
                for n in names:
                    if o["prefix"]:
                        t.output.append(args[i] + b"/")
                    t.output.append(n + b"\n")
                i += 1
            elif mode is Mode.LS:
                self.do_ls(args[i], 0, o["prefix"])
                i += 1
            elif mode is Mode.CHMOD:
                path = args[i]
                perms = []
                for spec in args[i + 1:]:
                    letter = spec[:1]
                    if letter not in (b"n", b"r", b"w", b"b"):
                        t.errx("Invalid permission specification: '%s'"
                               % (os.fsdecode(letter) if letter else "\0"))
                    perms.append(letter + b"%d" % _atoi(os.fsdecode(spec[1:])))
                self.do_chmod(path, perms, o["upto"], o["recurse"], xth)
                i = len(args)
            elif mode is Mode.WATCH:
                for w in args[i:]:
                    try:
                        xs.watch(w, w)
                    except OSError:
                        t.errx("Unable to add watch on %s\n" % os.fsdecode(w))
                i = len(args)
                count = 0
                while o["nr_watches"] == -1 or count < o["nr_watches"]:
                    try:
                        path, _token = xs.read_watch()
                    except OSError:      # xs_read_watch() == NULL: nothing more will come
                        if o["nr_watches"] == -1:
                            break
                        count += 1
                        continue
                    t.out.write(path + b"\n")
                    t.out.flush()
                    count += 1
        return 0


def _terminal_columns() -> int | None:
    import fcntl
    import struct
    import termios

    try:
        ws = fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    return struct.unpack("HHHH", ws)[1]


def _open() -> XsClient:
    """xs_open: the host's xenstored socket, starting the host's daemon if
    none is running (as every pyxl command does)."""
    from pyxl.toolstack.client import Client
    from pyxl.toolstack.paths import Paths
    from pyxl.toolstack.xsclient import XsClient, socket_path

    paths = Paths.from_env()
    path = socket_path(paths)
    try:
        return XsClient.open(path)
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    Client(paths).connect().close()
    return XsClient.open(path)


def _die_of_sigpipe() -> None:
    """The reader went away: the C tool dies of SIGPIPE at its next write,
    and so does this one (Python ignores the signal and sees EPIPE)."""
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)


def run(mode: Mode, argv: list[str]) -> int:
    """main() of xenstore_client.c for one mode."""
    tool = Tool(mode, "xenstore-" + mode.value)
    try:
        return _main(tool, argv)
    except Exit as e:
        return e.code
    except BrokenPipeError:
        _die_of_sigpipe()
        return 0
    finally:
        try:
            tool.out.flush()
        except BrokenPipeError:
            _die_of_sigpipe()
        if tool.xs is not None:
            tool.xs.close()


def _main(tool: Tool, argv: list[str]) -> int:
    mode = tool.mode
    o = {"prefix": False, "tidy": False, "upto": False, "recurse": False, "nr_watches": -1,
         "raw": False, "max_width": 80, "desired_width": 60, "show_whole_path": False}
    for ch, arg in getopt_long(tool, argv):
        if ch == "h":
            tool.usage()
        elif ch == "f":
            if mode is not Mode.LS:
                tool.usage()
            o.update(max_width=INT_MAX // 2, desired_width=0, show_whole_path=True)
        elif ch == "p":
            if mode not in (Mode.READ, Mode.LIST, Mode.LS):
                tool.usage()
            o["prefix"] = True
        elif ch in ("t", "u", "r", "n", "R"):
            allowed = {"t": (Mode.RM,), "u": (Mode.CHMOD,), "r": (Mode.CHMOD,),
                       "n": (Mode.WATCH,), "R": (Mode.READ, Mode.WRITE)}[ch]
            if mode not in allowed:
                tool.usage()
            key = {"t": "tidy", "u": "upto", "r": "recurse", "n": "nr_watches", "R": "raw"}[ch]
            if ch == "n":
                assert arg is not None    # getopt_long yields "?" when it is missing
                o[key] = _atoi(arg)
            else:
                o[key] = True
        # "s" and getopt's "?" are accepted and ignored, as the C switch does
    args = [os.fsencode(a) for a in tool.operands]
    if mode is not Mode.LS:
        if mode is Mode.WRITE and len(args) % 2 == 1:
            tool.usage()
        if not args:
            tool.usage()
    if mode is Mode.READ:
        transaction = len(args) > 1
    elif mode is Mode.WRITE:
        transaction = len(args) > 2
    else:
        transaction = mode not in (Mode.LS, Mode.WATCH)
    if mode is Mode.LS:
        cols = _terminal_columns()
        if cols is not None:
            o["max_width"] = cols - 2
    try:
        xs = tool.xs = _open()
    except OSError as e:
        tool.err("xs_open", e)
    runner = Run(tool, o, xs)
    while True:
        xth = 0
        if transaction:
            try:
                xth = xs.transaction_start()
            except OSError:
                tool.errx("couldn't start transaction")
        ret = runner.perform(args, xth)
        if transaction:
            try:
                xs.transaction_end(xth, bool(ret))
            except OSError as e:
                if ret == 0 and e.errno == _errno.EAGAIN:
                    tool.output = []
                    continue
                tool.errx("couldn't end transaction")
        break
    if tool.output:
        tool.out.write(b"".join(tool.output))
    return ret


# -- the command table's handlers --------------------------------------------
def _handler(mode: Mode) -> Callable[[None, list[str]], int]:
    def handler(opts: None, args: list[str]) -> int:
        """The table's row has no getopt string: the arguments come as they
        are, for xenstore_client.c's own getopt_long."""
        return run(mode, args)
    handler.__name__ = "xenstore_" + mode.value
    return handler


xenstore_ls = _handler(Mode.LS)
xenstore_read = _handler(Mode.READ)
xenstore_write = _handler(Mode.WRITE)
xenstore_rm = _handler(Mode.RM)
xenstore_list = _handler(Mode.LIST)
xenstore_exists = _handler(Mode.EXISTS)
xenstore_chmod = _handler(Mode.CHMOD)
xenstore_watch = _handler(Mode.WATCH)
