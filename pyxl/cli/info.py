"""`pyxl list | info | domid | domname | uptime | dmesg` (xl_info.c)."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Optional


from pyxl.cli._common import typer, call, faults, need_args

LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)"


def yajl(obj, indent: int = 0) -> str:
    """libxl's yajl_gen with beautify: 4-space indent, empty maps as "{\\n\\n}"."""
    import json

    pad = "    " * (indent + 1)
    end = "    " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{\n\n" + end + "}"
        items = ",\n".join(pad + json.dumps(k) + ": " + yajl(v, indent + 1) for k, v in obj.items())
        return "{\n" + items + "\n" + end + "}"
    if isinstance(obj, list):
        if not obj:
            return "[\n\n" + end + "]"
        return "[\n" + ",\n".join(pad + yajl(v, indent + 1) for v in obj) + "\n" + end + "]"
    return json.dumps(obj)


@faults
def list_(
    long: Annotated[bool, typer.Option("-l", "--long", help="Output all VM details")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose",
                                          help="Prints out UUIDs and security context")] = False,
    context: Annotated[bool, typer.Option("-Z", "--context", help="Prints out security context")] = False,
    cpupool: Annotated[bool, typer.Option("-c", "--cpupool", help="Prints the cpupool the domain is in")] = False,
    numa: Annotated[bool, typer.Option("-n", "--numa", help="Prints out NUMA node affinity")] = False,
    domain: Annotated[Optional[list[str]], typer.Argument(help="Domain", show_default=False)] = None,
):
    domain = domain or []
    if len(domain) > 1:
        from pyxl.cli.main import print_help

        print_help("list")
        return 1
    from pyxl.toolstack.errors import Fault

    try:
        if long:
            doms = call("list", dom=domain[0] if domain else None, long=True)
        else:
            doms = [dict(zip(("domid", "name", "mem", "vcpus", "state", "cpu_time", "uuid",
                              "reason"), row))
                    for row in call("list", dom=domain[0] if domain else None, rows=True)]
    except Fault as f:
        if f.name == "NO_SUCH_DOMID":
            print("Error: Domain '%s' does not exist." % domain[0], file=sys.stderr)
            return 1
        raise
    if long:
        # libxl has no stored configuration for dom0: xl skips it
        print(yajl([{"domid": d["domid"], "config": d.get("config") or {}} for d in doms
                    if d["domid"] != 0]))
        return 0
    out = [LIST_HEADER + ("   UUID                            Reason-Code\tSecurity Label" if verbose
                          else "   Security Label" if context else "")
           + ("         Cpupool" if cpupool else "") + (" NODE Affinity" if numa else "")]
    for d in doms:
        row = "%-40s %5d %5d %5d     %s  %8.1f" % (d["name"], d["domid"], d["mem"], d["vcpus"],
                                                  d["state"], d["cpu_time"])
        if verbose:
            row += " " + d["uuid"]
            row += " %8x" % d["reason"] if d["reason"] is not None else " %8s" % "-"
        if verbose or context:
            row += " %16s" % "-"
        if cpupool:
            row += "%16s" % "Pool-0"       # the simulated host has one cpupool
        if numa:
            # no NUMA placement is simulated: every domain may use every node
            row += " " + node_bitmap(range(HOST_NODES), HOST_NODES)
        out.append(row)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


HOST_NODES = 1


def node_bitmap(nodes, nr_nodes: int) -> str:
    """xl's print_bitmap: "all", "none", or ranges such as "0-1,3"."""
    nodes = set(nodes)
    if nodes >= set(range(nr_nodes)):
        return "all"
    runs, i = [], 0
    while i < nr_nodes:
        if i in nodes:
            j = i
            while j + 1 < nr_nodes and j + 1 in nodes:
                j += 1
            runs.append("%d" % i if i == j else "%d-%d" % (i, j))
            i = j + 1
        else:
            i += 1
    return ",".join(runs) or "none"


@faults
def info(
    numa: Annotated[bool, typer.Option("-n", "--numa", help="List host NUMA topology information")] = False,
):
    res = call("info")
    lines = ["%-23s: %s" % (k, v) for k, v in res["lines"]]
    print("\n".join(lines))
    return 0


@faults
def domid(name: Annotated[Optional[str], typer.Argument(metavar="DomainName", show_default=False)] = None):
    if not need_args("domid", [name] if name else [], 1):
        return 2
    from pyxl.toolstack.errors import Fault

    doms = [d for d in call("list") if d["name"] == name]
    if not doms:
        raise Fault("DOMID_OF_NAME", name=name)
    print(doms[0]["domid"])
    return 0


@faults
def domname(domid: Annotated[Optional[str], typer.Argument(metavar="DomainId", show_default=False)] = None):
    if not need_args("domname", [domid] if domid else [], 1):
        return 2
    from pyxl.toolstack.errors import Fault

    digits = ""
    s = domid.strip()
    sign = s[:1] if s[:1] in "+-" else ""
    for ch in s[len(sign):]:
        if not ch.isdigit():
            break
        digits += ch
    if not digits:
        raise Fault("NOT_A_DOMID")
    n = int(sign + digits) & 0xFFFFFFFF     # strtol into a uint32_t
    doms = [d for d in call("list") if d["domid"] == n]
    if not doms:
        raise Fault("DOMNAME_OF_ID", domid=n)
    print(doms[0]["name"])
    return 0


def uptime_str(secs: float, short: bool) -> str:
    up = int(secs)
    day, up = divmod(up, 86400)
    hour, up = divmod(up, 3600)
    minute, sec = divmod(up, 60)
    prefix = "%d days, " % day if day > 1 else "%d day, " % day if day == 1 else ""
    if short:
        return prefix + "%2d:%02d" % (hour, minute)
    return prefix + "%2d:%02d:%02d" % (hour, minute, sec)


@faults
def uptime(
    short: Annotated[bool, typer.Option("-s", help="Short format")] = False,
    domain: Annotated[Optional[list[str]], typer.Argument(help="Domain", show_default=False)] = None,
):
    doms_all = call("list")
    if domain:
        from pyxl.toolstack.errors import Fault

        chosen = []
        for q in domain:
            hit = [d for d in doms_all if (q.isdigit() and d["domid"] == int(q)) or d["name"] == q]
            if not hit and not q.isdigit():
                raise Fault("INVALID_DOMAIN", dom=q)
            chosen += hit
    else:
        chosen = doms_all
    if not short:
        print("%-33s %4s %s" % ("Name", "ID", "Uptime"))
    now = time.localtime()
    for d in chosen:
        secs = d["uptime"]
        if d["domid"] == 0:
            try:
                with open("/proc/uptime") as f:
                    secs = float(f.read().split()[0])
            except OSError:
                pass
        if short:
            print(" %s up %s, %s (%d)" % (time.strftime("%H:%M:%S", now), uptime_str(secs, True),
                                          d["name"], d["domid"]))
        else:
            print("%-33s %4d %s" % (d["name"], d["domid"], uptime_str(secs, False)))
    return 0


@faults
def dmesg(clear: Annotated[bool, typer.Option("-c", "--clear",
                                              help="Clear dmesg buffer as well as printing it")] = False):
    sys.stdout.write(call("dmesg", clear=clear))
    return 0
