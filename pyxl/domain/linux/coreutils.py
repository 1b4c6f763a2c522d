"""The coreutils programs the guest's shell has built in: cat, ls, rm,
mkdir, as coreutils 9.1 behaves in the C locale (its messages, exit
statuses, `ls` laid out in columns on a terminal and one name a line
elsewhere).  Each is `fn(sh, args, io) -> status`, `sh` the running shell
(its working directory and the guest's files), `io` its streams.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from pyxl.domain.linux.fs import GuestTree

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from pyxl.domain.linux.shell import Io, Shell

LS_WIDTH = 80                          # the console's columns


def _usage(io: Io, prog: str, msg: str) -> int:
    io.error("%s: %s" % (prog, msg))
    io.error("Try '%s --help' for more information." % prog)
    return 1


def _options(args: list[str], allowed: str, prog: str, io: Io) -> tuple[set[str], list[str]] | None:
    """Short options of a coreutils program: (set of letters, operands), or
    None after printing the usage error."""
    opts: set[str] = set()
    operands = []
    done = False
    for a in args:
        if done or a == "-" or not a.startswith("-"):
            operands.append(a)
        elif a == "--":
            done = True
        else:
            for c in a[1:]:
                if c not in allowed:
                    _usage(io, prog, "invalid option -- '%s'" % c)
                    return None
                opts.add(c)
    return opts, operands


def b_cat(sh: Shell, args: list[str], io: Io) -> int:
    parsed = _options(args, "u", "cat", io)
    if parsed is None:
        return 1
    _, files = parsed
    status = 0
    for f in files or ["-"]:
        if f == "-":
            io.out.write(io.stdin or b"")
            continue
        if sh.is_dir(f):
            io.error("cat: %s: Is a directory" % f)
            status = 1
            continue
        try:
            io.out.write(sh.read_path(f))
        except OSError as e:
            io.error("cat: %s: %s" % (f, e.strerror))
            status = 1
    return status


def b_ls(sh: Shell, args: list[str], io: Io) -> int:
    parsed = _options(args, "aA1dl", "ls", io)
    if parsed is None:
        return 2
    opts, operands = parsed
    status = 0
    files, dirs = [], []
    for op in operands or ["."]:
        if not sh.exists(op):
            io.error("ls: cannot access '%s': No such file or directory" % op)
            status = 2
        elif sh.is_dir(op) and "d" not in opts:
            dirs.append(op)
        else:
            files.append(op)
    blocks: list[tuple[str | None, list[str]]] = []
    if files:
        blocks.append((None, sorted(files)))
    for d in sorted(dirs):
        names = sh.listing(sh.tree.resolve(sh.cwd, d)) or []
        if "a" in opts:
            names = names + [".", ".."]
        elif "A" not in opts:
            names = [n for n in names if not n.startswith(".")]
        blocks.append((d, sorted(names)))
    header = len(operands) > 1 or status != 0
    for k, (where, names) in enumerate(blocks):
        if k:
            io.print("\n")
        if where is not None and header:
            io.print("%s:\n" % where)
        if "l" in opts:
            io.print(_long(sh, where, names))
        elif names:
            io.print(_columns(names) if io.out.tty and "1" not in opts else "\n".join(names) + "\n")
    return status


def _long(sh: Shell, d: str | None, names: list[str]) -> str:
    """ls -l as coreutils prints it in the C locale; `total` for a directory
    (1024-byte blocks, rounded up).  Everything in the tree is root's; a
    simulated file is a read-only 4096-byte one, as sysfs shows its files."""
    rows, blocks = [], 0
    now = time.time()
    for name in names:
        gpath = sh.tree.resolve(sh.cwd, name if d is None else d + "/" + name)
        try:
            if GuestTree.is_virtual(gpath):
                raise OSError(errno.ENOENT, "simulated")
            st = sh.tree.stat(gpath)
            mode, nlink, size, mtime = st.st_mode, st.st_nlink, st.st_size, st.st_mtime
            blocks += st.st_blocks
        except OSError:
            isdir = sh.is_dir(gpath)
            mode = (stat.S_IFDIR | 0o555) if isdir else (stat.S_IFREG | 0o444)
            nlink, size, mtime = (2 if isdir else 1), (0 if isdir else 4096), now
        when = time.localtime(mtime)
        recent = now - 6 * 30.436875 * 86400 < mtime <= now + 1
        date = time.strftime("%b %e %H:%M" if recent else "%b %e  %Y", when)
        rows.append((stat.filemode(mode), str(nlink), str(size), date, name))
    wl = max((len(r[1]) for r in rows), default=0)
    ws = max((len(r[2]) for r in rows), default=0)
    out = "total %d\n" % -(-blocks // 2) if d is not None else ""
    for m, nl, sz, date, name in rows:
        out += "%s %s root root %s %s %s\n" % (m, nl.rjust(wl), sz.rjust(ws), date, name)
    return out


def _columns(names: list[str]) -> str:
    """ls -C for an 80-column terminal, as coreutils' ls.c lays it out
    (calculate_columns, print_many_per_line): the most columns whose widths
    (the longest name + 2, at least 3; the last column without the 2) stay
    under the line length, filled down then across, padded with tabs to
    8-column tab stops where a tab fits (indent)."""
    n = len(names)
    cols = 1
    for c in range(min(LS_WIDTH // 3, n), 1, -1):
        rows = -(-n // c)
        widths = [3] * c
        for k, name in enumerate(names):
            idx = k // rows
            widths[idx] = max(widths[idx], len(name) + (0 if idx == c - 1 else 2))
        if sum(widths) < LS_WIDTH:
            cols = c
            break
    rows = -(-n // cols)
    widths = [0] * cols
    for k, name in enumerate(names):
        idx = k // rows
        widths[idx] = max(widths[idx], len(name) + (0 if idx == cols - 1 else 2))
    out = []
    for r in range(rows):
        pos, k, col = 0, r, 0
        while True:
            out.append(names[k])
            end, width = pos + len(names[k]), widths[col]
            col += 1
            k += rows
            if k >= n:
                break
            while end < pos + width:
                if (pos + width) // 8 > (end + 1) // 8:
                    out.append("\t")
                    end += 8 - end % 8
                else:
                    out.append(" ")
                    end += 1
            pos += width
        out.append("\n")
    return "".join(out)


def b_rm(sh: Shell, args: list[str], io: Io) -> int:
    parsed = _options(args, "frRiv", "rm", io)
    if parsed is None:
        return 1
    opts, operands = parsed
    force, recursive = "f" in opts, bool(opts & {"r", "R"})
    if not operands:
        return 0 if force else _usage(io, "rm", "missing operand")
    status = 0
    for op in operands:
        gpath = sh.tree.resolve(sh.cwd, op)
        if recursive and os.path.basename(op.rstrip("/")) in (".", ".."):
            io.error("rm: refusing to remove '.' or '..' directory: skipping '%s'" % op)
            status = 1
            continue
        if recursive and gpath == "/":
            io.error("rm: it is dangerous to operate recursively on '/'")
            io.error("rm: use --no-preserve-root to override this failsafe")
            status = 1
            continue
        if GuestTree.is_virtual(gpath):
            if sh.exists(op):
                io.error("rm: cannot remove '%s': Permission denied" % op)
                status = 1
            elif not force:
                io.error("rm: cannot remove '%s': No such file or directory" % op)
                status = 1
            continue
        try:
            sh.tree.remove(gpath, recursive)
        except OSError as e:
            if force and e.errno == errno.ENOENT:
                continue
            io.error("rm: cannot remove '%s': %s" % (op, e.strerror))
            status = 1
    return status


def b_mkdir(sh: Shell, args: list[str], io: Io) -> int:
    parsed = _options(args, "p", "mkdir", io)
    if parsed is None:
        return 1
    opts, operands = parsed
    if not operands:
        return _usage(io, "mkdir", "missing operand")
    status = 0
    for op in operands:
        gpath = sh.tree.resolve(sh.cwd, op)
        todo = [gpath]
        if "p" in opts:
            todo = ["/" + "/".join(gpath.strip("/").split("/")[:k + 1])
                    for k in range(gpath.count("/"))]
        for g in todo:
            if GuestTree.is_virtual(g) or g == "/":
                if "p" in opts and sh.is_dir(g):
                    continue
                io.error("mkdir: cannot create directory '%s': %s" % (op, os.strerror(
                    errno.EEXIST if sh.exists(g) else errno.EACCES)))
                status = 1
                break
            try:
                sh.tree.mkdir(g)
            except OSError as e:
                if "p" in opts and e.errno == errno.EEXIST and sh.tree.is_dir(g):
                    continue
                io.error("mkdir: cannot create directory '%s': %s" % (op, e.strerror))
                status = 1
                break
    return status


COMMANDS = {"cat": b_cat, "ls": b_ls, "rm": b_rm, "mkdir": b_mkdir}
