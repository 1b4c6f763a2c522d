"""`pyxl list | vm-list | info | domid | domname | claims | uptime | dmesg | top`
(xl_info.c).  Handlers take (opts, args) as def_getopt left them."""

from __future__ import annotations

import sys
import time

from pyxl.cli._common import call, faults

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Iterable

    from pyxl.cli.xlopt import Opts
    from pyxl.config.libxl_json import Tree

LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)"


@faults
def list_(opts: Opts, domain: list[str]) -> int:
    """main_list."""
    flags = {k for k, _ in opts}
    long, verbose, context, cpupool, numa = (f in flags for f in "lvZcn")
    if len(domain) > 1:
        from pyxl.cli.main import print_help

        print_help("list")
        return 1
    from pyxl.toolstack.errors import Fault

    try:
        if long:
            doms = call("list", dom=domain[0] if domain else None, long=True)
        else:
            doms = _rows(domain[0] if domain else None)
    except Fault as f:
        if f.name == "NO_SUCH_DOMID":
            print("Error: Domain '%s' does not exist." % domain[0], file=sys.stderr)
            return 1
        raise
    if long:
        sys.stdout.write(list_domains_details(doms))
        return 0
    sys.stdout.write(list_domains(doms, verbose, context, False, numa, cpupool))
    return 0


def list_domains_details(doms: list[dict]) -> str:
    """xl_info.c list_domains_details: a JSON array of {"domid", "config"},
    each config as libxl_retrieve_domain_configuration gives it, rendered by
    libxl's generator and written with puts()."""
    from pyxl.config.libxl_json import _int, render

    entries: list[Tree] = [{"domid": _int(d["domid"]), "config": retrieved_config(d)} for d in doms]
    return render(entries) + "\n"


def retrieved_config(d: dict[str, Any]) -> Tree:
    """libxl_retrieve_domain_configuration (libxl_domain.c): the configuration
    stored when the domain was made -- for Domain-0 the stub that
    xen-init-dom0 stores (tools/helpers/init-dom-json.c gen_stub_json_config:
    type pv and nothing else) -- then, in retrieve_domain_configuration_end,
    the live name and uuid, the vCPUs online in xenstore, the memory target
    and static-max, and the scheduler's parameters
    (libxl_domain_sched_params_get).  A stored guest configuration went
    through libxl__domain_build_info_setdefault first: max_vcpus at least 1,
    and arch_x86.msr_relaxed false (libxl_x86.c
    libxl__arch_domain_build_info_setdefault)."""
    import json

    from pyxl.config import model as M
    from pyxl.config.libxl_json import idl_order, json_tree, struct_tree

    stored = json.loads(json.dumps(d.get("config") or {})) if d["domid"] != 0 else {}
    try:
        dtype = M.DomainType[str((stored.get("c_info") or {}).get("type", "pv")).upper()]
    except KeyError:
        dtype = M.DomainType.PV
    # libxl_domain_config_from_json: every field not in the text keeps its default
    blank = M.DomainConfig()
    blank.c_info.type = dtype
    blank.b_info.init_type(dtype)
    cfg = _merge(_plain(struct_tree(blank)), stored)
    if d["domid"] != 0:
        b = cfg["b_info"]
        b["max_vcpus"] = b.get("max_vcpus") or 1
        b["arch_x86"].setdefault("msr_relaxed", "False")
    c = cfg.setdefault("c_info", {})
    c["name"] = d["name"]
    if d["uuid"].strip("0-"):
        c["uuid"] = d["uuid"]
    else:
        c.pop("uuid", None)                 # a nil uuid is the default: not printed
    b = cfg.setdefault("b_info", {})
    max_vcpus = b.get("max_vcpus", 0)
    live = d["live"]
    b["avail_vcpus"] = [v for v in live["vcpus_online"] if v < max_vcpus]
    b["max_memkb"] = live["static_max_kb"]
    b["target_memkb"] = live["target_memkb"]
    b["sched_params"] = {"sched": live["sched"], "weight": live["weight"], "cap": live["cap"]}
    cfg["c_info"] = idl_order(c, M.DomainCreateInfo)
    cfg["b_info"] = idl_order(b, M.DomainBuildInfo)
    return json_tree(idl_order(cfg, M.DomainConfig))


def _merge(base: dict, over: dict) -> dict:
    """OVER's values on BASE, object by object; BASE's order first."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def _plain(tree: Tree) -> Any:
    """A rendered tree back to plain values (Raw scalars parsed as JSON)."""
    import json

    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_plain(v) for v in tree]
    return json.loads(tree)


def list_domains(doms: list[dict], verbose: bool, context: bool, claim: bool, numa: bool,
                 cpupool: bool) -> str:
    """xl_info.c list_domains."""
    out = [LIST_HEADER + ("   UUID                            Reason-Code\tSecurity Label" if verbose
                          else "   Security Label" if context else "")
           + ("  Claimed" if claim else "")
           + ("         Cpupool" if cpupool else "") + (" NODE Affinity" if numa else "")]
    for d in doms:
        row = "%-40s %5d %5d %5d     %s  %8.1f" % (d["name"], d["domid"], d["mem"], d["vcpus"],
                                                  d["state"], d["cpu_time"])
        if verbose:
            row += " " + d["uuid"]
            row += " %8x" % d["reason"] if d["reason"] is not None else " %8s" % "-"
        if claim:
            row += " %5d" % 0              # nothing is ever claimed on the simulated host
        if verbose or context:
            row += " %16s" % "-"
        if cpupool:
            row += "%16s" % d["cpupool"]   # libxl_cpupoolid_to_name
        if numa:
            # no NUMA placement is simulated: every domain may use every node
            row += " " + node_bitmap(range(HOST_NODES), HOST_NODES)
        out.append(row)
    return "\n".join(out) + "\n"


def _rows(dom: str | None = None) -> list[dict]:
    return [dict(zip(("domid", "name", "mem", "vcpus", "state", "cpu_time", "uuid", "reason",
                      "cpupool"), row))
            for row in call("list", dom=dom, rows=True)]


@faults
def claims(opts: Opts, args: list[str]) -> int:
    """main_claims: list_domains with the Claimed column (claim_mode is on)."""
    sys.stdout.write(list_domains(_rows(), False, False, True, False, False))
    return 0


@faults
def vm_list(opts: Opts, args: list[str]) -> int:
    """main_vm_list / libxl_list_vm: every domain that is not a device-model
    stub domain (none on the simulated host has a "target"), dom0 included."""
    out = ["UUID                                  ID    name"]
    for d in _rows():
        out.append("%s  %d    %-30s" % (d["uuid"], d["domid"], d["name"]))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def top(opts: Opts, args: list[str]) -> int:
    """main_top: system("xentop"), its wait status returned as main's value."""
    import os

    sys.stdout.flush()
    return os.system("xentop") & 0xFF


HOST_NODES = 1


def node_bitmap(nodes: Iterable[int], nr_nodes: int) -> str:
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


def info_text(lines: list[tuple[str, str]], nr_cpus: int, numa: bool,
              name: str | None) -> str:
    """print_info (xl_info.c): the node and physical blocks, with -n the CPU and
    device topology and the NUMA nodes, then the Xen block.  NAME (the
    argument, when there is no -n) keeps the values of the lines whose text
    starts with it, as maybe_printf does."""
    split = next(i for i, (k, _) in enumerate(lines) if k == "xen_major")
    out = []

    def maybe(k: str, v: str) -> None:
        text = "%-23s: %s" % (k, v) if v or k != "virt_caps" else "%-23s:" % k
        if name is None:
            out.append(text + "\n")
        else:
            colon = text.find(":")
            if text.startswith(name) and text[colon + 1:colon + 2] == " ":
                out.append(text[colon + 2:] + "\n")

    for k, v in lines[:split]:
        maybe(k, v)
    if numa:
        val = dict(lines)
        out.append("cpu_topology           :\ncpu:    core    socket     node\n")
        for cpu in range(nr_cpus):          # one socket, one node, a core per CPU
            out.append("%3d:    %4d     %4d     %4d\n" % (cpu, cpu, 0, 0))
        out.append("device topology        :\ndevice           node\n")
        out.append("No device topology data available\n")   # no PCI devices
        out.append("numa_info              :\nnode:    memsize    memfree    distances\n")
        out.append("%4d:    %6d     %6d      %d\n" % (0, int(val["total_memory"]),
                                                    int(val["free_memory"]), 10))
    for k, v in lines[split:]:
        maybe(k, v)
    return "".join(out)


@faults
def info(opts: Opts, args: list[str]) -> int:
    """main_info: -n adds the topology blocks; otherwise an argument filters."""
    numa = bool(opts)
    res = call("info")
    lines = [tuple(kv) for kv in res["lines"]]
    nr_cpus = int(dict(lines)["nr_cpus"])
    sys.stdout.write(info_text(lines, nr_cpus, numa, args[0] if args and not numa else None))
    return 0


@faults
def domid(opts: Opts, args: list[str]) -> int:
    name = args[0]
    from pyxl.toolstack.errors import Fault

    doms = [d for d in call("list") if d["name"] == name]
    if not doms:
        raise Fault("DOMID_OF_NAME", name=name)
    print(doms[0]["domid"])
    return 0


@faults
def domname(opts: Opts, args: list[str]) -> int:
    domid = args[0]
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
def uptime(opts: Opts, domain: list[str]) -> int:
    short = bool(opts)
    doms_all = call("list")
    if domain:
        from pyxl.toolstack.errors import Fault

        chosen = []
        for q in domain:
            hit = [d for d in doms_all if (q.isdigit() and d["domid"] == int(q)) or d["name"] == q]
            if not hit and not q.isdigit():
                raise Fault("INVALID_DOMAIN", dom=q)
            # a number that names no domain: print_domU_uptime's
            # libxl_vm_get_start_time finds no <vm>/start_time, logs, no row
            chosen += hit or [{"domid": min(int(q), 2**64 - 1) & 0xFFFFFFFF, "missing": True}]
    else:
        chosen = doms_all
    if not short:
        print("%-33s %4s %s" % ("Name", "ID", "Uptime"))
    now = time.localtime()
    for d in chosen:
        if d.get("missing"):
            sys.stdout.flush()
            sys.stderr.write("libxl: error: libxl_domain.c:2231:libxl_vm_get_start_time: "
                             "Domain %d:Can't get start time of domain\n" % d["domid"])
            continue
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
def dmesg(opts: Opts, args: list[str]) -> int:
    sys.stdout.write(call("dmesg", clear=bool(opts)))
    return 0


@faults
def sharing(opts: Opts, args: list[str]) -> int:
    """main_sharing (xl_mem.c): no page sharing on the simulated host, 0 shared."""
    from pyxl.toolstack.errors import Fault

    if len(args) > 1:
        from pyxl.cli.main import print_help

        print_help("sharing")
        return 1
    try:
        doms = _rows(args[0] if args else None)
    except Fault as f:
        if f.name == "NO_SUCH_DOMID":
            print("Error: Domain '%s' does not exist." % args[0], file=sys.stderr)
            return 1
        raise
    out = ["Name                                        ID   Mem Shared"]
    for d in doms:
        out.append("%-40s %5d %5d  %5d" % (d["name"], d["domid"], d["mem"], 0))
    sys.stdout.write("\n".join(out) + "\n")
    return 0
