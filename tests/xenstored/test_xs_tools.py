"""Xen's own xenstore tools (Debian's xenstore-utils, Xen 4.17) against the
simulated host's xenstored socket, and `pyxl xenstore-*` against the real
tools: the same stdout, stderr and exit status, byte for byte, for the same
operations on the same tree."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios

import pytest

pytestmark = pytest.mark.peer("xenstore-utils")

# Values as a guest or a tool might leave them: quotes, escapes, tabs,
# control characters, non-ASCII, long ones (the 80-column cut).
VALUES = {
    "quote": b'say "hi"',
    "tab": b"a\tb\\c\nd\re",
    "ctl": b"\x01\x07\x08\x1b\x7f end",
    "utf8": "caf\u00e9 \u2603".encode(),
    "long": b"0123456789" * 12,
    "nul": b"before\0after",
    "empty": b"",
    "a_rather_long_node_name_that_does_not_fit_in_eighty_columns_when_indented_deeply": b"v",
}


def fill(host, base: str) -> None:
    """Write VALUES below `base` with the real xenstore-write (raw)."""
    for k, v in VALUES.items():
        if b"\0" in v:
            continue                       # a command line cannot carry a nul
        p = host.real("write", "-R", base + "/" + k, v)
        assert p.returncode == 0, p.stderr
    # the nul-carrying value: \000 through the escape decoder
    p = host.real("write", base + "/nul", "before\\000after")
    assert p.returncode == 0, p.stderr
    p = host.real("write", base + "/deep/er/and/deeper/still/further/down/the/tree/"
                  + "a_rather_long_node_name_that_does_not_fit_in_eighty_columns", "x" * 40)
    assert p.returncode == 0, p.stderr


def same(host, tool: str, *args, input=None):
    real = host.real(tool, *args, input=input)
    ours = host.ours(tool, *args, input=input)
    assert (ours.returncode, ours.stdout, ours.stderr) == \
        (real.returncode, real.stdout, real.stderr), (tool, args)
    return real


def same_merged(host, tool: str, *args):
    """As `same`, with stderr and stdout on one pipe: stdio buffering decides
    the order (an error before the block-buffered output)."""
    kw = {"stderr": subprocess.STDOUT}
    real = host.real(tool, *args, **kw)
    ours = host.ours(tool, *args, **kw)
    assert (ours.returncode, ours.stdout) == (real.returncode, real.stdout), (tool, args)


def test_real_tools_see_the_guest(xs_host):
    """Xen's xenstore-ls and xenstore-read, unmodified, read the host's
    xenstore: the guest's home as libxl lays it out."""
    p = xs_host.real("read", "/local/domain/1/name")
    assert (p.returncode, p.stdout) == (0, b"vm\n"), p.stderr
    p = xs_host.real("ls", "-f", "/local/domain/1")
    assert p.returncode == 0, p.stderr
    assert b'/local/domain/1/domid = "1"\n' in p.stdout
    p = xs_host.real("list", "/local/domain")
    assert p.stdout.split() == [b"0", b"1"]


def test_ls_matches(xs_host):
    base = "/test/ls"
    fill(xs_host, base)
    same(xs_host, "ls")                                   # the whole tree, guest included
    same(xs_host, "ls", "-p")
    for args in (["-f"], ["-p"], ["-f", "-p"], ["--flat", "--prefix"], ["--fl"], ["-s"]):
        same(xs_host, "ls", *args, base)
    same(xs_host, "ls", "/local/domain/1", base)          # several paths
    same(xs_host, "ls", base, "/nope", base)              # an error after some output
    same_merged(xs_host, "ls", base, "/nope")
    same_merged(xs_host, "read", base + "/quote", base + "/tab", "/nope")
    same(xs_host, "ls", "/nope")
    same(xs_host, "ls", "-p", "/local/domain/1/device")
    same(xs_host, "ls", "local/domain/0")                 # relative: dom0's home
    same(xs_host, "ls", "/bad//path")
    for args in (["-h"], ["-z", base], ["-R"], ["--zzz"], ["--r"]):
        same(xs_host, "ls", *args)
    # glibc getopt_long's other messages, and its GNU ordering (options after
    # operands; several errors in one command line, each reported)
    for args in (["--flat=1", base], [base, "-f"], ["-zy", base], ["--pre", base, "-x"],
                 ["-n"], ["--number"], ["--number=", base], ["--raw=x", "-q", base]):
        same(xs_host, "ls", *args)
    same(xs_host, "watch", "-n")
    same(xs_host, "watch", "--number")
    same(xs_host, "read", base + "/quote", "-p", "--", "-R")


def test_read_matches(xs_host):
    base = "/test/read"
    fill(xs_host, base)
    for k in VALUES:
        same(xs_host, "read", base + "/" + k)
        same(xs_host, "read", "-R", base + "/" + k)
    same(xs_host, "read", "-p", base + "/quote", base + "/tab")
    same(xs_host, "read", base + "/quote", "/nope", base + "/tab")   # stops at the error
    same(xs_host, "read", "/nope")
    same(xs_host, "read", "name")                                   # relative
    same(xs_host, "read", "/bad path")
    same(xs_host, "read")
    same(xs_host, "read", "-f", base + "/quote")
    same(xs_host, "read", "--raw", base + "/utf8", "--", "-p")


ESCAPES = ["plain", "tab\\there", "\\x41\\x4a\\x4", "\\101\\7\\777", "\\q\\\"", "end\\",
           "\\x", "\\xZZ", "\\x 4", "\\x-1", "\\x0x41", "\\x0", "a\\n\\r\\\\b", "\u00e9\\xc3\\xa9",
           "\\x+4", "\\x 41", "\\x\t\n7f", "\\xA\\x", "\\0", "\\08", "\\400", "\\0x", "\\x0X7"]


@pytest.mark.parametrize("spec", ESCAPES)
def test_write_decodes_as_xenstore_write(xs_host, spec):
    """xenstore-write's unsanitise_value: what lands in the store is the same."""
    path = "/test/write/v"
    stored = []
    for run in (xs_host.real, xs_host.ours):
        xs_host.real("rm", path)
        p = run("write", path, spec)
        assert p.returncode == 0, p.stderr
        stored.append(xs_host.real("read", "-R", path).stdout)
    assert stored[0] == stored[1], spec


def test_write_errors_match(xs_host):
    same(xs_host, "write", "/test/werr/a")                 # odd: usage
    same(xs_host, "write")
    same(xs_host, "write", "/bad path", "x")
    same(xs_host, "write", "/test/werr/a", "1", "/test/werr/b", "2")   # in one transaction
    same(xs_host, "write", "/test/werr/a", "1", "/bad path", "2")
    same(xs_host, "write", "/test/werr/" + "x" * 4100, "1")           # over the limits
    same(xs_host, "write", "-R", "/test/werr/r", "\\x41")
    assert xs_host.real("read", "/test/werr/r").stdout == b"\\\\x41\n"
    same(xs_host, "write", "-p", "/test/werr/a", "1")


def test_rm_list_exists_match(xs_host):
    base = "/test/rm"
    fill(xs_host, base)
    same(xs_host, "list", base)
    same(xs_host, "list", "-p", base, base + "/deep")
    same(xs_host, "list", "/nope")
    same(xs_host, "list")
    for paths in ([base + "/quote"], [base + "/quote", "/nope"], ["/nope"], []):
        same(xs_host, "exists", *paths)
    same(xs_host, "rm", base + "/missing")                 # its parent exists: fine
    same(xs_host, "rm", "/nope/missing")                   # no parent: an error
    same(xs_host, "rm", "/bad path")
    same(xs_host, "rm")
    # -t removes empty valueless parents, up the tree
    for run in (xs_host.real, xs_host.ours):
        assert xs_host.real("write", base + "/t1/a/b/c", "1").returncode == 0
        assert xs_host.real("write", base + "/t1/keep", "1").returncode == 0
        p = run("rm", "-t", base + "/t1/a/b/c")
        assert p.returncode == 0, p.stderr
        assert xs_host.real("list", base + "/t1").stdout == b"keep\n"
        xs_host.real("rm", base + "/t1")


def test_chmod_matches(xs_host):
    base = "/test/chmod"
    listings = []
    for run in (xs_host.real, xs_host.ours):
        xs_host.real("rm", base)
        assert xs_host.real("write", base + "/a/b/c", "1").returncode == 0
        for args in ([base + "/a/b", "r1", "b2"], ["-r", base + "/a", "n0", "r1"],
                     ["-u", base + "/a/b/c", "w3"], [base + "/a", "r01", "bx"]):
            p = run("chmod", *args)
            assert p.returncode == 0, p.stderr
        listing = xs_host.real("ls", "-f", "-p", base)
        assert listing.returncode == 0
        listings.append(listing.stdout)
    assert listings[1] == listings[0]
    assert b"(w3)" in listings[0] and b"(r1,b0)" in listings[0]
    same(xs_host, "chmod", base + "/a", "x1")             # invalid mode letter
    same(xs_host, "chmod", base + "/a")                   # no modes: EINVAL
    same(xs_host, "chmod", "/nope/x", "r0")
    same(xs_host, "chmod", "-u", "rel/path", "r0")
    same(xs_host, "chmod")
    same(xs_host, "ls", "-p", base)


def _watch(host, run, path: str) -> bytes:
    """`xenstore-watch -n 2 path` while one write happens below it."""
    argv = (["xenstore-watch"] if run == "real" else host.pyxl_cmd + ["xenstore-watch"])
    env = dict(host.env, XENSTORED_PATH=host.socket)
    p = subprocess.Popen(argv + ["-n", "2", path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    first = p.stdout.readline()             # the initial event: the watch is in place
    assert host.real("write", path + "/x", "1").returncode == 0
    out, err = p.communicate(timeout=30)
    return p.returncode, first + out, err


def test_watch_matches(xs_host):
    base = "/test/watch"
    assert xs_host.real("write", base, "").returncode == 0
    real = _watch(xs_host, "real", base)
    ours = _watch(xs_host, "ours", base)
    assert real == (0, (base + "\n" + base + "/x\n").encode(), b"")
    assert ours == real
    same(xs_host, "watch")
    same(xs_host, "watch", "-p", base)
    same(xs_host, "watch", "-n")


def _on_tty(argv, env, cols: int) -> bytes:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    p = subprocess.Popen(argv, stdout=slave, stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 30)
        if not r:
            break
        try:
            data = os.read(master, 65536)
        except OSError:             # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
    p.wait(timeout=30)
    os.close(master)
    return out


def test_ls_on_a_terminal_uses_its_width(xs_host):
    """On a terminal the cut is at its width - 2 (TIOCGWINSZ), even with -f."""
    base = "/test/tty"
    fill(xs_host, base)
    env = dict(xs_host.env, XENSTORED_PATH=xs_host.socket)
    for cols in (40, 120):
        for flags in ([], ["-f"], ["-p"]):
            real = _on_tty(["xenstore-ls", *flags, base], env, cols)
            ours = _on_tty(xs_host.pyxl_cmd + ["xenstore-ls", *flags, base], env, cols)
            assert ours == real, (cols, flags)
            assert real


def test_non_root_cannot_connect(xs_host):
    """The socket is root's alone: its directory 0700, the socket 0600."""
    d = os.path.dirname(xs_host.socket)
    assert os.stat(d).st_mode & 0o777 == 0o700
    assert os.stat(xs_host.socket).st_mode & 0o777 == 0o600
    p = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                        "env", "XENSTORED_PATH=" + xs_host.socket, "xenstore-read", "/local"],
                       capture_output=True, timeout=30)
    assert p.returncode == 1
    assert p.stderr == b"xenstore-read: xs_open: Permission denied\n"


def test_transaction_conflict_gets_eagain(xs_host):
    """A transaction whose read node changed underneath it fails with
    EAGAIN at commit, over the daemon's socket (a raw wire client)."""
    from pyxl.toolstack.xsclient import XsClient

    a, b = XsClient.open(xs_host.socket), XsClient.open(xs_host.socket)
    try:
        a.write("/test/tx/n", b"0")
        tx = a.transaction_start()
        assert a.read("/test/tx/n", tx) == b"0"
        a.write("/test/tx/n", b"1", tx)
        b.write("/test/tx/n", b"2")
        with pytest.raises(OSError) as e:
            a.transaction_end(tx, abort=False)
        assert e.value.errno == __import__("errno").EAGAIN
        assert xs_host.real("read", "/test/tx/n").stdout == b"2\n"
    finally:
        a.close()
        b.close()


def test_long_child_lists_come_in_parts(xs_host):
    """A child list over the 4096-byte payload limit: XS_DIRECTORY answers
    E2BIG and libxenstore reads it with XS_DIRECTORY_PART."""
    from pyxl.toolstack.xsclient import XsClient

    base = "/test/big"
    names = ["child-%04d-%s" % (i, "x" * 40) for i in range(150)]
    c = XsClient.open(xs_host.socket)
    try:
        tx = c.transaction_start()
        for n in names:
            c.write(base + "/" + n, b"")
        c.transaction_end(tx, abort=False)
    finally:
        c.close()
    real = same(xs_host, "list", base)
    assert real.stdout.decode().split() == names
    same(xs_host, "ls", "-p", base)


def test_a_closed_pipe_ends_both_by_sigpipe(xs_host):
    """`xenstore-ls | head -1`: once the reader is gone the C tool dies of
    SIGPIPE at its next write; so does pyxl's."""
    from pyxl.toolstack.xsclient import XsClient

    base = "/test/pipe"
    c = XsClient.open(xs_host.socket)
    try:
        tx = c.transaction_start()
        for i in range(3000):                   # far more than a pipe holds
            c.write("%s/n%d" % (base, i), b"v" * 60)
        c.transaction_end(tx, abort=False)
    finally:
        c.close()
    codes = []
    for argv in (["xenstore-ls", base], xs_host.pyxl_cmd + ["xenstore-ls", base]):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(xs_host.env, XENSTORED_PATH=xs_host.socket))
        assert p.stdout.readline() == b'n0 = "' + b"v" * 60 + b'"\n'
        p.stdout.close()
        p.wait(timeout=30)
        codes.append((p.returncode, p.stderr.read()))
    assert codes[1] == codes[0] == (-13, b"")
