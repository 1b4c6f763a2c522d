"""`pyxl cpupool-*` (xl_cpupool.c): CPU pools over the simulated host's CPUs.
Pool-0 holds every CPU and domain at boot, scheduled by credit2; the pools
themselves are the daemon's (pyxl.toolstack.resources)."""

from __future__ import annotations

import os
import sys

from pyxl.cli._common import call, faults

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()


@faults
def cpupool_list(opts: Opts, args: list[str]) -> int:
    """main_cpupoollist: -c lists the pool's CPUs instead of the summary; a
    pool argument is a name (libxl_name_to_cpupoolid)."""
    cpus = bool(opts)
    pools = call("cpupool_list")
    if args:
        pools = [p for p in pools if p["name"] == args[0]]
        if not pools:
            _err("Pool '%s' does not exist\n" % args[0])
            return 1
    out = "%-19s" % "Name" + ("CPU list\n" if cpus else "CPUs   Sched     Active   Domain count\n")
    for p in pools:
        out += "%-19s" % p["name"]
        if cpus:
            out += ",".join(str(c) for c in p["cpus"])
        else:
            out += "%3d %9s       y       %4d" % (len(p["cpus"]), p["sched"], p["n_dom"])
        out += "\n"
    sys.stdout.write(out)
    return 0


def _cpumap(spec: str) -> tuple[list[int] | None, str | None]:
    from pyxl.cli.resources import _cpumap as cpumap

    (cpus, err), _ = cpumap(spec)
    return cpus, err


@faults
def cpupool_create(opts: Opts | None, args: list[str]) -> int:
    """main_cpupoolcreate: a config file and/or key=value arguments (name,
    sched, cpus as a list or a range string, nodes); a summary, then the
    pool (not with -n)."""
    from pyxl.cli.main import Globals, print_help
    from pyxl.config import cfgfile
    from pyxl.config.cstr import atoi
    from pyxl.hypervisor.sched import Scheduler

    dryrun = Globals.dryrun
    filename = None
    for o, a in opts or ():
        if o == "f":
            filename = a
        elif o == "n":
            dryrun = True
    extra = ""
    for a in args:
        if "=" in a:
            extra += "\n" + a
        elif filename is None:
            filename = a
        else:
            print_help("cpupool-create")
            return 1
    data = b""
    if filename is not None:
        try:
            with open(filename, "rb") as f:
                data = f.read()
        except OSError as e:
            from pyxl.fsutil import strerror

            _err("Failed to read config file: %s: %s\n" % (filename, strerror(e)))
            return 1
    src = filename if filename is not None else "command line"
    if extra:
        data += (extra + "\n").encode("utf-8", "surrogateescape")
    try:
        cfg = cfgfile.parse(data, src)
    except cfgfile.ConfigParseError as e:
        for line in e.lines:
            _err(line + "\n")
        _err("Failed to parse config file: %s\n" % os.strerror(22))
        return 1
    name = cfg.get_string("name", True)
    if name is None:
        if filename is None:
            _err("Missing cpupool name!\n")
            return 1
        name = os.path.basename(filename)
    pools = call("cpupool_list")
    if any(p["name"] == name for p in pools):
        _err('Pool name "%s" already exists\n' % name)
        return 1
    sched = cfg.get_string("sched", True)
    if sched is not None:
        if sched not in {s.value for s in Scheduler}:
            _err("Unknown scheduler\n")
            return 1
    used = {c for p in pools for c in p["cpus"]}
    info = dict(tuple(kv) for kv in call("info")["lines"])
    nr_cpus, nr_nodes = int(info["nr_cpus"]), int(info["nr_nodes"])
    free = [c for c in range(nr_cpus) if c not in used]
    cpus: list[int] = []
    nodes = cfg.get_list("nodes", True)
    cpu_list = cfg.get_list("cpus", True) if nodes is None else None
    if nodes is not None:
        for i in range(nodes.count):
            item = nodes.get_item(i)
            if item is None:
                break
            n = atoi(item)
            cpus += [c for c in free if c % nr_nodes == n and c not in cpus]
        if not cpus:
            _err("no free cpu found\n")
            return 1
    elif cpu_list is not None:
        for i in range(cpu_list.count):
            item = cpu_list.get_item(i)
            if item is None:
                break
            c = atoi(item)
            if c < 0 or c not in free:
                _err("cpu %d illegal or not free\n" % c)
                return 1
            cpus.append(c)
    elif (cpus_spec := cfg.get_string("cpus", True)) is not None:
        got, err = _cpumap(cpus_spec)
        if err:
            _err(err + "\n")
            return 1
        assert got is not None          # _cpumap: (cpus, None) or (None, error)
        for c in got:
            if c not in free:
                _err("cpu %d illegal or not free\n" % c)
                return 1
        cpus = got
    print('Using config file "%s"' % src)
    print("cpupool name:   %s" % name)
    print("scheduler:      %s" % (sched or info["xen_scheduler"]))
    print("number of cpus: %d" % len(cpus))
    sys.stdout.flush()
    if dryrun:
        return 0
    res = call("cpupool_create", name=name, sched=sched, cpus=cpus)
    if "error" in res:
        _err(res["error"] + "\n")
        return 1
    return 0


@faults
def cpupool_destroy(opts: Opts | None, args: list[str]) -> int:
    """main_cpupooldestroy."""
    if not call("cpupool_destroy", pool=args[0]):
        _err("Can't destroy cpupool '%s'\n" % args[0])
        return 1
    return 0


@faults
def cpupool_rename(opts: Opts | None, args: list[str]) -> int:
    """main_cpupoolrename."""
    call("cpupool_rename", pool=args[0], name=args[1])
    return 0


def _cpus_op(args: list[str], add: bool) -> int:
    pool, spec = args[0], args[1]
    cpus, err = _cpumap(spec)
    if err:
        _err(err + "\n")
        return 1
    errs = call("cpupool_cpus", pool=pool, cpus=cpus, add=add)
    for line in errs:
        _err(line + "\n")
    if errs:
        if add:
            _err("some cpus may not have been added to %s\n" % pool)
        else:
            _err("Some cpus may have not or only partially been removed from '%s'.\n"
                 "If a cpu can't be added to another cpupool, add it to '%s' again and retry.\n"
                 % (pool, pool))
    return 0


@faults
def cpupool_cpu_add(opts: Opts | None, args: list[str]) -> int:
    """main_cpupoolcpuadd: the range is parsed first, then the pool looked up."""
    return _cpus_op(args, True)


@faults
def cpupool_cpu_remove(opts: Opts | None, args: list[str]) -> int:
    """main_cpupoolcpuremove."""
    return _cpus_op(args, False)


@faults
def cpupool_migrate(opts: Opts | None, args: list[str]) -> int:
    """main_cpupoolmigrate."""
    call("cpupool_migrate", dom=args[0], pool=args[1])
    return 0


@faults
def cpupool_numa_split(opts: Opts | None, args: list[str]) -> int:
    """main_cpupoolnumasplit."""
    err = call("cpupool_numa_split")
    if err:
        _err(err + "\n")
        return 1
    return 0
