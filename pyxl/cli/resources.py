"""`pyxl mem-set | mem-max | vcpu-list | vcpu-set | vcpu-pin | sched-credit |
sched-credit2 | sched-rtds | sysrq | debug-keys` (xl_mem.c, xl_vcpu.c, xl_sched.c,
xl_misc.c).  Argument checks and output formats are xl's; the work is the
daemon's (pyxl.toolstack.resources, libxl's calls).

Handlers take (opts, args) as def_getopt left them."""

from __future__ import annotations

import sys

from pyxl.cli._common import call, faults
from pyxl.cli.info import node_bitmap as print_bitmap      # xl_utils.c print_bitmap

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from pyxl.cli.xlopt import Opts
    from pyxl.config.host import HostInfo

INT_MAX = (1 << 31) - 1
LONG_MAX = (1 << 63) - 1


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()


def _strtol(s: str) -> tuple[int, int]:
    """strtol(s, &end, 10): (value, characters used); saturating as glibc does."""
    from pyxl.config.cstr import strtoul

    t = s.lstrip(" \t\n\v\f\r")
    sign = -1 if t[:1] == "-" else 1
    body = t[1:] if t[:1] in "+-" else t
    v, used = strtoul(body, 10)
    if not used or not body[:1].isdigit():
        return 0, 0
    v = min(v, LONG_MAX + (sign < 0))
    return sign * v, len(s) - len(t) + (len(t) - len(body)) + used


def parse_mem_size_kb(mem: str) -> int:
    """xl_parse.c parse_mem_size_kb: a number with an optional unit
    (b, k, m -- the default --, g, t); -1 when invalid."""
    kb, used = _strtol(mem)
    rest = mem[used:]
    if len(rest) > 1:
        return -1
    unit = rest.lower()
    shift = {"t": 30, "g": 20, "": 10, "m": 10, "k": 0}
    if unit in shift:
        kb <<= shift[unit]
    elif unit == "b":
        kb >>= 10
    else:
        return -1
    return kb


# -- memory ------------------------------------------------------------------
def _memory(op: str, args: list[str]) -> int:
    dom, mem = args[0], args[1]
    kb = parse_mem_size_kb(mem)
    if kb == -1:
        _err("invalid memory size: %s\n" % mem)
        return 1
    call(op, dom=dom, memkb=kb, mem=mem)
    return 0


@faults
def mem_set(opts: Opts | None, args: list[str]) -> int:
    """main_memset / set_memory_target."""
    return _memory("mem_set", args)


@faults
def mem_max(opts: Opts | None, args: list[str]) -> int:
    """main_memmax / set_memory_max."""
    return _memory("mem_max", args)


# -- vcpus -------------------------------------------------------------------
def _vcpu_line(domid: int, name: str, v: dict, nr_cpus: int) -> str:
    """print_vcpuinfo."""
    line = "%-32s %5u %5u" % (name, domid, v["vcpuid"])
    if not v["online"]:
        line += "%5c %3c%cp " % ("-", "-", "-")
    else:
        line += "%5u %3c%c- " % (v["cpu"], "r" if v["running"] else "-",
                                 "b" if v["blocked"] else "-")
    line += "%9.1f  " % _c_float(v["time_ns"] / 1e9)
    return line + print_bitmap(v["hard"], nr_cpus) + " / " + print_bitmap(v["soft"], nr_cpus)


def _c_float(x: float) -> float:
    """(float) in C: single precision."""
    import struct

    return struct.unpack("f", struct.pack("f", x))[0]


@faults
def vcpu_list(opts: Opts | None, args: list[str]) -> int:
    """main_vcpulist / vcpulist: the header, then every vcpu of the given
    domains (all domains without any)."""
    res = call("vcpu_list", doms=list(args) if args else None)
    out = ["%-32s %5s %5s %5s %5s %9s %s" % ("Name", "ID", "VCPU", "CPU", "State", "Time(s)",
                                             "Affinity (Hard / Soft)")]
    for domid, name, rows in res["domains"]:
        out += [_vcpu_line(domid, name, v, res["nr_cpus"]) for v in rows]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


@faults
def vcpu_set(opts: Opts | None, args: list[str]) -> int:
    """main_vcpuset / vcpuset: strtoul, then (unless -i) no more vCPUs than
    the host has pCPUs beyond those already online."""
    from pyxl.config.cstr import strtoul
    from pyxl.toolstack.errors import Fault

    check_host = not any(o == "i" for o, _ in opts or ())
    dom, text = args[0], args[1]
    n, used = strtoul(text, 10)
    if not used or n > INT_MAX:
        _err("Error: Invalid argument.\n")
        return 1
    if check_host:
        try:
            info = call("vcpu_list", doms=[dom])
        except Fault as f:
            if f.name == "NO_SUCH_DOMID":
                return 1            # libxl_domain_info failed: vcpuset returns 1, silently
            raise
        host_cpus = info["nr_cpus"]
        online = sum(1 for v in info["domains"][0][2] if v["online"])
        if n > online and n > host_cpus:
            _err("You are overcommmitting! You have %d physical CPUs and want %d vCPUs!"
                 " Aborting, use --ignore-host to continue\n" % (host_cpus, n))
            return 1
    call("vcpu_set", dom=dom, n=n)
    return 0


def _cpumap(spec: str) -> tuple[tuple[list[int] | None, str | None], HostInfo]:
    """parse_cpurange into a host-sized bitmap; (cpus, None) or (None, error)."""
    from pyxl.config.cpumap import parse_cpurange
    from pyxl.config.host import DEFAULT_HOST
    from pyxl.config.model import Bitmap

    host = DEFAULT_HOST
    info = dict(tuple(kv) for kv in call("info")["lines"])
    host = type(host)(int(info["nr_cpus"]), int(info["nr_nodes"]), host.memory_kb)
    bm = Bitmap.cpus(host)
    err = parse_cpurange(spec, bm, host)
    return (None, err) if err else (sorted(bm), None), host


@faults
def vcpu_pin(opts: Opts | None, args: list[str]) -> int:
    """main_vcpupin: the vcpu (a number or "all"), hard and optional soft
    affinity ("-" leaves one alone); with -N only the cpumaps are printed."""
    from pyxl.cli.main import Globals
    from pyxl.toolstack.errors import Fault

    force = any(o == "f" for o, _ in opts or ())
    ignore_masks = any(o == "i" for o, _ in opts or ())
    dom, vcpu_s, hard_s = args[0], args[1], args[2]
    soft_s = args[3] if len(args) > 3 else None
    vcpu, used = _strtol(vcpu_s)
    if not used or vcpu < 0:
        if vcpu_s != "all":
            _err("Error: Invalid argument %s as VCPU.\n" % vcpu_s)
            return 1
        if force:
            _err("Error: --force and 'all' as VCPU not allowed.\n")
            return 1
        vcpu = -1
    hard = soft = None
    nr_cpus = 0
    if hard_s != "-":
        (hard, err), host = _cpumap(hard_s)
        if err:
            _err(err + "\n")
            return 1
        nr_cpus = host.nr_cpus
    if soft_s is not None and soft_s != "-":
        (soft, err), host = _cpumap(soft_s)
        if err:
            _err(err + "\n")
            return 1
        nr_cpus = host.nr_cpus
    if Globals.dryrun:
        if not nr_cpus:
            nr_cpus = int(dict(tuple(kv) for kv in call("info")["lines"])["nr_cpus"])
        line = "cpumap: " + (print_bitmap(hard, nr_cpus) if hard is not None else "-")
        if soft is not None:
            line += " " + print_bitmap(soft, nr_cpus)
        sys.stdout.write(line + "\n")
        return 0
    try:
        call("vcpu_pin", dom=dom, vcpu=vcpu, hard=hard, soft=soft)
    except Fault as f:
        if f.name != "NO_SUCH_DOMID" or (vcpu == -1 and (hard is None or ignore_masks)):
            raise
        if hard is not None and not ignore_masks:
            _err("Could not get domain info\n")     # libxl_domain_info, for the global masks
            return 1
        # libxl__set_vcpuaffinity (libxl_sched.c): XEN_DOMCTL_setvcpuaffinity is ESRCH
        _err("libxl: error: libxl_sched.c:62:libxl__set_vcpuaffinity: Domain %d:"
             "Setting vcpu affinity: No such process\n" % _domid(dom))
        _err("Could not set affinity for vcpu `%d'.\n" % vcpu)
        return 1
    return 0


def _domid(dom: str) -> int:
    """find_domain's domid for a number (libxl_domain_qualifier_to_domid:
    strtoul, stored into a uint32_t)."""
    return min(int(dom), 2**64 - 1) & 0xFFFFFFFF


# -- the scheduler -----------------------------------------------------------
def _opts(opts: Opts | None) -> dict[str, list[Any]]:
    """getopt's results by option letter (long options come as their letter)."""
    out: dict[str, list[Any]] = {}
    for o, a in opts or ():
        out.setdefault("-%s" % o, []).append(a)
    return out


def _c_strtol(s: str) -> int:
    """strtol(optarg, NULL, 10) stored in an int."""
    v = _strtol(s)[0]
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def _dom_header() -> str:
    return "%-33s %4s %6s %4s\n" % ("Name", "ID", "Weight", "Cap")


def _pool_line(sched: str, p: dict | None, name: str) -> str:
    if p is None:
        return "Cpupool %s: [sched params unavailable]\n" % name
    if sched == "credit":
        return ("Cpupool %s: tslice=%dms ratelimit=%dus migration-delay=%dus\n"
                % (name, p["tslice_ms"], p["ratelimit_us"], p["migr_delay_us"]))
    return "Cpupool %s: ratelimit=%dus\n" % (name, p["ratelimit_us"])


# libxl_sched_credit{,2}_params_get on a pool of another scheduler: Xen's
# sched_adjust_global is -EINVAL (libxl_sched.c LOGE, the Debian build's lines)
_PARAMS_GET_FAILS = {
    "credit": "libxl: error: libxl_sched.c:287:libxl_sched_credit_params_get: getting Credit"
              " scheduler parameters: Invalid argument\n",
    "credit2": "libxl: error: libxl_sched.c:362:libxl_sched_credit2_params_get: getting"
               " Credit2 scheduler parameters: Invalid argument\n",
}


def _pool_output(sched: str, pool: str | None, name: str) -> None:
    """sched_credit{,2}_pool_output."""
    p = call("sched_pool", sched=sched, pool=pool)
    if p is None:
        _err(_PARAMS_GET_FAILS[sched])
    sys.stdout.write(_pool_line(sched, p, name))


def _domain_output(sched: str, dom: str) -> int:
    """sched_credit{,2}_domain_output for one domain, after its header."""
    from pyxl.toolstack.errors import Fault

    sys.stdout.write(_dom_header())
    sys.stdout.flush()
    info = call("sched_get", dom=dom)
    if info["sched"] != sched:
        raise Fault("SCHED_WRONG", got=info["sched"], want=sched)
    sys.stdout.write("%-33s %4d %6d %4d\n" % (info["name"], info["domid"], info["weight"],
                                              info["cap"]))
    return 0


def _all_output(sched: str, pool: str | None) -> int:
    """sched_domain_output: each pool run by this scheduler, its params and
    its domains."""
    out = ""
    for p in call("sched_list", pool=pool):
        if p["sched"] != sched:
            continue
        if sched == "rtds":
            out += "Cpupool %s: sched=RTDS\n" % p["name"]
            out += "%-33s %4s %9s %9s %10s\n" % ("Name", "ID", "Period", "Budget", "Extratime")
            continue
        out += _pool_line(sched, p, p["name"]) + _dom_header()
        for domid, name, weight, cap in p["domains"]:
            out += "%-33s %4d %6d %4d\n" % (name, domid, weight, cap)
    sys.stdout.write(out)
    return 0


def _credit(sched: str, opts: Opts | None) -> int:
    """main_sched_credit / main_sched_credit2."""
    o = _opts(opts)
    dom = o.get("-d", [None])[-1]
    pool = o.get("-p", [None])[-1]
    opt_s = "-s" in o
    weight = _c_strtol(o["-w"][-1]) if "-w" in o else None
    cap = _c_strtol(o["-c"][-1]) if "-c" in o else None
    params = {}
    for flag, key in (("-t", "tslice_ms"), ("-r", "ratelimit_us"), ("-m", "migr_delay_us")):
        if flag in o:
            params[key] = _c_strtol(o[flag][-1])
    domain_opts = dom is not None or weight is not None or cap is not None
    if sched == "credit":
        if (pool or opt_s) and domain_opts:
            _err("Specifying a cpupool or schedparam is not allowed with domain options.\n")
            return 1
    elif pool and domain_opts:
        _err("Specifying a cpupool is not allowed with other options.\n")
        return 1
    if dom is None and (weight is not None or cap is not None):
        _err("Must specify a domain.\n")
        return 1
    if sched == "credit" and not opt_s and params:
        _err("Must specify schedparam to set schedule parameter values.\n")
        return 1
    if opt_s:
        poolq = pool if pool is not None else "0"
        name = call("sched_list", pool=poolq)[0]["name"]      # or: unknown cpupool 'X'
        if not params:
            _pool_output(sched, poolq, name)
            return 0
        if sched == "credit" and call("sched_pool", sched=sched, pool=poolq) is None:
            _err(_PARAMS_GET_FAILS[sched] + "libxl_sched_credit_params_get failed.\n")
            return 1
        call("sched_pool", sched=sched, pool=poolq, params=params)
        return 0
    if dom is None:
        return _all_output(sched, pool)
    if weight is None and cap is None:
        return _domain_output(sched, dom)
    call("sched_set", dom=dom, sched=sched, weight=weight, cap=cap)
    return 0


@faults
def sched_credit(opts: Opts | None, args: list[str]) -> int:
    return _credit("credit", opts)


@faults
def sched_credit2(opts: Opts | None, args: list[str]) -> int:
    return _credit("credit2", opts)


@faults
def sched_rtds(opts: Opts | None, args: list[str]) -> int:
    """main_sched_rtds, on a host whose pools none run RTDS: listing shows
    no pool; a domain's parameters are another scheduler's."""
    from pyxl.toolstack.errors import Fault

    o = _opts(opts)
    dom = o.get("-d", [None])[-1]
    pool = o.get("-c", [None])[-1]
    if dom is None:
        return _all_output("rtds", pool)
    sys.stdout.write("%-33s %4s %9s %9s %10s\n" % ("Name", "ID", "Period", "Budget",
                                                   "Extratime"))
    sys.stdout.flush()
    info = call("sched_get", dom=dom)
    raise Fault("SCHED_WRONG", got=info["sched"], want="rtds")


# -- sysrq -------------------------------------------------------------------
@faults
def sysrq(opts: Opts | None, args: list[str]) -> int:
    """main_sysrq: one letter, written to the guest's control/sysrq."""
    from pyxl.cli.main import print_help

    dom, key = args[0], args[1]
    if len(key) != 1:
        _err("Invalid sysrq.\n\n")
        print_help("sysrq")
        return 1
    call("sysrq", dom=dom, key=key)
    return 0


@faults
def debug_keys(opts: Opts | None, args: list[str]) -> int:
    """main_debug_keys: the keys go to Xen; their output is in `dmesg`."""
    call("debug_keys", keys=args[0])
    return 0


@faults
def dump_core(opts: Opts | None, args: list[str]) -> int:
    """main_dump_core / libxl_domain_core_dump / xc_domain_dumpcore: the
    file is opened (created 0600) by xl itself, then the core written
    (pyxl.toolstack.dumpcore); a file that cannot be opened is libxenguest's
    PERROR, libxl's LOGED and xl's line."""
    import errno as _errno
    import os

    from pyxl.toolstack.dumpcore import core_image

    dom = call("list", dom=args[0])[0]
    path = args[1]
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as e:
        code = e.errno or _errno.EIO
        err = os.strerror(code)
        dp = "Domain %d:" % dom["domid"] if dom["domid"] else ""
        _err("xc: error: Could not open corefile %s (%d = %s): Internal error\n"
             "libxl: error: libxl_domain.c:603:libxl_domain_core_dump: %sCore dumping domain"
             " to %s: %s\ncore dump failed (rc=-3)\n" % (path, code, err, dp, path, err))
        return 1
    try:
        data = core_image(dom["vcpus"])
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
    return 0
