"""`pyxl console [-t pv|serial] [-n N] <Domain>` (xl_console.c + xenconsole)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional


from pyxl.cli._common import typer, faults, need_args


@faults
def console(
    type_: Annotated[Optional[str], typer.Option("-t", metavar="<type>",
                                                 help="console type, pv , serial or vuart")] = None,
    num: Annotated[int, typer.Option("-n", metavar="<number>", help="console number")] = 0,
    domain: Annotated[Optional[str], typer.Argument(metavar="Domain", show_default=False)] = None,
):
    if type_ is not None and type_ not in ("pv", "serial"):
        print("console type supported are: pv, serial", file=sys.stderr)
        return 2
    if not need_args("console", [domain] if domain else [], 1):
        return 2
    if num != 0:
        print("Unable to attach console", file=sys.stderr)
        return 1
    from pyxl.toolstack import conclient

    return conclient.attach(domain)
