"""`pyxl xenstore-ls | -read | -write | -rm`: dom0's view of the host's
xenstore, for debugging (the xenstore-* tools of Xen's tools/xenstore)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional


from pyxl.cli._common import typer, call, faults, need_args


def _xs(op: str, **args):
    from pyxl.toolstack.errors import Fault

    try:
        return call("xenstore", xsop=op, **args), None
    except Fault as f:
        if f.name == "XENSTORE":
            return None, f.args_
        raise


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@faults
def xenstore_ls(
    full: Annotated[bool, typer.Option("-f", help="Print full paths")] = False,
    perms: Annotated[bool, typer.Option("-p", help="Print permissions")] = False,
    path: Annotated[Optional[str], typer.Argument(metavar="path", show_default=False)] = None,
):
    rows, err = _xs("ls", path=path or "/")
    if err:
        print("xenstore-ls: xs_directory (%s): %s" % (path, err.get("reason")), file=sys.stderr)
        return 1
    for depth, name, value, prm, full_path in rows:
        line = (full_path if full else " " * depth + name) + " = " + _quote(value)
        if perms:
            line += "  (" + ",".join(prm) + ")"
        print(line)
    return 0


@faults
def xenstore_read(paths: Annotated[Optional[list[str]], typer.Argument(metavar="PATH...", show_default=False)] = None):
    paths = paths or []
    if not need_args("xenstore-read", paths, 1):
        return 2
    for p in paths:
        vals, err = _xs("read", paths=[p])
        if err:
            print("xenstore-read: couldn't read path %s" % p, file=sys.stderr)
            return 1
        print(vals[0])
    return 0


@faults
def xenstore_write(args: Annotated[Optional[list[str]], typer.Argument(metavar="PATH VALUE...",
                                                                       show_default=False)] = None):
    args = args or []
    if len(args) < 2 or len(args) % 2:
        print("Usage: pyxl xenstore-write <path> <value> [<path> <value>]...", file=sys.stderr)
        return 2
    pairs = [[args[i], args[i + 1]] for i in range(0, len(args), 2)]
    for p, v in pairs:
        _, err = _xs("write", pairs=[[p, v]])
        if err:
            print("xenstore-write: could not write path %s" % p, file=sys.stderr)
            return 1
    return 0


@faults
def xenstore_rm(paths: Annotated[Optional[list[str]], typer.Argument(metavar="PATH...", show_default=False)] = None):
    paths = paths or []
    if not need_args("xenstore-rm", paths, 1):
        return 2
    for p in paths:
        _, err = _xs("rm", paths=[p])
        if err:
            print("xenstore-rm: could not remove path %s" % p, file=sys.stderr)
            return 1
    return 0
