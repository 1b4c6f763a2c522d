"""`pyxl console [-t pv|serial] [-n N] <Domain>` (xl_console.c + xenconsole)."""

from __future__ import annotations

import sys

from pyxl.cli._common import faults


@faults
def console(opts: None, args: list[str]) -> int:
    """main_console (xl_console.c): -t is checked as getopt returns it."""
    from pyxl.cli import table, xlopt

    chosen: dict[str, str | int | None] = {"t": None, "n": 0}

    def each(opt: str | int, optarg: str | None) -> None:
        if opt == "t":
            if optarg not in ("pv", "serial", "vuart"):
                print("console type supported are: pv, serial, vuart", file=sys.stderr)
                raise xlopt.Exit(1)
            chosen["t"] = optarg
        else:
            assert optarg is not None     # "n:": getopt fails without the argument
            chosen["n"] = _atoi(optarg)

    _, rest = xlopt.def_getopt(table.BY_NAME["console"], args, each=each)
    domain = rest[0]
    if chosen["n"] != 0 or chosen["t"] == "vuart":   # only console 0, pv or serial, exists
        print("Unable to attach console", file=sys.stderr)
        return 1
    from pyxl.toolstack import conclient

    return conclient.attach(domain)


def _atoi(text: str) -> int:
    """C's atoi: leading blanks, a sign, digits; 0 when there are none."""
    import re

    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0
