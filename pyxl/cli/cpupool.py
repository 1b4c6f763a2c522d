"""`pyxl cpupool-list` (xl_cpupool.c): the simulated host has one CPU pool,
Pool-0, holding every CPU and every domain, scheduled by the host's scheduler."""

from __future__ import annotations

import sys

from pyxl.cli._common import call, faults

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts

POOL0 = "Pool-0"


@faults
def cpupool_list(opts: Opts, args: list[str]) -> int:
    """main_cpupoollist: -c lists the pool's CPUs instead of the summary."""
    cpus = bool(opts)
    if args and args[0] != POOL0:          # libxl_name_to_cpupoolid fails
        print("Pool '%s' does not exist" % args[0], file=sys.stderr)
        return 1
    info = dict(tuple(kv) for kv in call("info")["lines"])
    n_cpus = int(info["nr_cpus"])
    out = "%-19s" % "Name" + ("CPU list\n" if cpus else "CPUs   Sched     Active   Domain count\n")
    out += "%-19s" % POOL0
    if cpus:
        out += ",".join(str(c) for c in range(n_cpus))
    else:
        out += "%3d %9s       y       %4d" % (n_cpus, info["xen_scheduler"], len(call("list")))
    sys.stdout.write(out + "\n")
    return 0
