"""`pyxl console [-t pv|serial|vuart] [-n N] <Domain>` (xl_console.c + xenconsole)."""

from __future__ import annotations

import sys

from pyxl.cli._common import faults


@faults
def console(opts: None, args: list[str]) -> int:
    """main_console (xl_console.c): -t is checked as getopt returns it."""
    from pyxl.cli import table, xlopt

    kind: str | None = None
    num = 0

    def each(opt: str | int, optarg: str | None) -> None:
        nonlocal kind, num
        if opt == "t":
            if optarg not in ("pv", "serial", "vuart"):
                print("console type supported are: pv, serial, vuart", file=sys.stderr)
                raise xlopt.Exit(1)
            kind = optarg
        else:
            assert optarg is not None     # "n:": getopt fails without the argument
            num = _atoi(optarg)

    _, rest = xlopt.def_getopt(table.BY_NAME["console"], args, each=each)
    domain = rest[0]
    from pyxl.cli._common import call
    from pyxl.toolstack.errors import Fault

    try:                                    # find_domain
        domid = call("list", dom=domain)[0]["domid"]
        exists = True
    except Fault as f:
        if f.name != "NO_SUCH_DOMID":
            raise
        domid, exists = min(int(domain), 2**64 - 1) & 0xFFFFFFFF, False
    if kind is None:
        # libxl_primary_console_exec: -n is not used; the domain's type picks console 0
        if not exists:
            raise Fault("CONSOLE_NO_DOMAIN", domid=domid)
        num = 0
    return _xenconsole(domid, kind or "pv", num)


def _xenconsole(domid: int, kind: str, num: int) -> int:
    """What xenconsole DOMID --num NUM --type KIND (tools/console/client/main.c)
    does: a serial console it cannot find is taken as the PV one; the tty of a
    PV console 0 is the domain's console; Domain-0 is refused; then it waits
    up to 5 seconds (get_pty_fd) for the tty to appear in xenstore.  The
    simulated host gives each domain its console 0 and nothing else."""
    import time

    from pyxl.cli._common import call
    from pyxl.toolstack import conclient
    from pyxl.toolstack.errors import Fault

    if kind == "serial":
        kind = "pv"
    if domid == 0:
        raise Fault("CONSOLE_DOM0")
    deadline = time.monotonic() + 5
    while True:
        if kind == "pv" and num == 0:
            try:
                call("list", dom=str(domid))
            except Fault as f:
                if f.name != "NO_SUCH_DOMID":
                    raise
            else:
                return conclient.attach(str(domid))
        left = deadline - time.monotonic()
        if left <= 0:
            raise Fault("CONSOLE_NO_TTY")
        time.sleep(min(left, 0.1))          # xenconsole's select() on the tty's watch


def _atoi(text: str) -> int:
    """C's atoi: leading blanks, a sign, digits; 0 when there are none."""
    import re

    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0
