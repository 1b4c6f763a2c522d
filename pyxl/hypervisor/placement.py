"""Where a domain's process runs on the real machine.

On Xen a vCPU runs on the physical CPUs its hard affinity and its pool
allow (pyxl.hypervisor.sched.placement).  Here a domain is a process, so
that set of simulated pCPUs is mapped to real CPUs (`real_cpus`) and given
to every thread of the process with sched_setaffinity(2) (`apply`).  Soft
affinity, a preference Xen's scheduler weighs, has no Linux equivalent and
stays the scheduler's bookkeeping only.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Sequence


def usable_cpus() -> list[int]:
    """The real CPUs the calling process may run on, in order: what the
    simulated host's pCPUs are mapped onto (read once, at the daemon's
    start, so that pinning a domain never changes the mapping)."""
    return sorted(os.sched_getaffinity(0))


def real_cpus(pcpus: Iterable[int], usable: Sequence[int]) -> set[int]:
    """Simulated pCPU p runs on the p-th of the `usable` real CPUs, modulo
    their number when the simulated host has more pCPUs than that.  The one
    home of this mapping: the daemon places domains with it, and tests
    derive what to expect from it."""
    return {usable[p % len(usable)] for p in pcpus}


def apply(pid: int, cpus: set[int], log: Callable[[str], None]) -> None:
    """sched_setaffinity(2) on every thread of `pid` and of the processes
    it has started (a guest's own programs are the guest too): the leader
    first (what it starts from then on inherits its mask), then each task
    in /proc/<pid>/task and each child in /proc/<pid>/task/<tid>/children,
    again until no new one appears (one made meanwhile by a task not yet
    moved).  A failure -- the process just ended, a cpuset that forbids the
    CPUs -- is logged and otherwise ignored: the domain keeps running where
    it was."""
    done: set[int] = set()
    todo = [pid]
    while todo:
        for tid in todo:
            done.add(tid)
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError as e:
                if tid == pid or e.errno != errno.ESRCH:     # a thread that ended: no matter
                    log("pid %d: cannot run it on CPUs %s: %s"
                        % (tid, ",".join(map(str, sorted(cpus))), e.strerror or e))
                    if tid == pid:
                        return
        todo = sorted(_tasks(pid) - done)


def _tasks(pid: int) -> set[int]:
    """The threads of `pid` and of its descendants, as /proc lists them now."""
    found: set[int] = set()
    procs = [pid]
    while procs:
        p = procs.pop()
        try:
            tids = [int(t) for t in os.listdir("/proc/%d/task" % p)]
        except OSError:
            continue                                         # ended meanwhile
        found.update(tids)
        for t in tids:
            try:
                with open("/proc/%d/task/%d/children" % (p, t)) as f:
                    procs.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return found
