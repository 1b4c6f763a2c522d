"""What Xen's scheduler knows: CPU pools over the host's CPUs, each with its
scheduler and that scheduler's parameters, and each domain's vCPUs (which
are up, where they may run, what they have used).

Xen 4.17's default scheduler is credit2 (xen/common/Kconfig
SCHED_CREDIT2_DEFAULT); Pool-0 (cpupool0, id 0) holds every CPU at boot.
The pools live in the Host record (`Host.pools`), so they persist with it.
"""

from __future__ import annotations

from enum import Enum

from pyxl.hypervisor.domain import Domain

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from pyxl.hypervisor.host import Host


class Scheduler(str, Enum):
    """libxl_scheduler, by the names libxl_scheduler_to_string gives."""
    CREDIT = "credit"
    CREDIT2 = "credit2"
    ARINC653 = "arinc653"
    RTDS = "rtds"
    NULL = "null"


DEFAULT_SCHEDULER = Scheduler.CREDIT2
POOL0 = "Pool-0"
# xen/include/public/sysctl.h XEN_SYSCTL_SCHED_RATELIMIT_{MAX,MIN}; sched_ratelimit_us
# defaults to SCHED_DEFAULT_RATELIMIT_US (xen/common/sched/private.h)
RATELIMIT_MIN, RATELIMIT_MAX, RATELIMIT_DEFAULT = 100, 500000, 1000
# credit: CSCHED_DEFAULT_TSLICE_MS, vcpu_migration_delay_us default 0
CREDIT_TSLICE_DEFAULT = 30
WEIGHT_MIN, WEIGHT_MAX = 1, 65535       # credit2: csched2_dom_cntl's range
DEFAULT_WEIGHT = 256                    # CSCHED2_DEFAULT_WEIGHT (credit's too), no cap


def pools(host: Host) -> list[dict]:
    """The host's pools, Pool-0 made at first use (cpupool_init)."""
    if not host.pools:
        host.pools.append(new_pool(0, POOL0, DEFAULT_SCHEDULER, list(range(host.nr_cpus))))
    return host.pools


def new_pool(poolid: int, name: str, sched: Scheduler, cpus: list[int]) -> dict:
    return {"poolid": poolid, "name": name, "sched": sched.value, "cpus": sorted(cpus),
            "ratelimit_us": RATELIMIT_DEFAULT, "tslice_ms": CREDIT_TSLICE_DEFAULT,
            "migr_delay_us": 0}


def pool_by_id(host: Host, poolid: int) -> dict | None:
    for p in pools(host):
        if p["poolid"] == poolid:
            return p
    return None


def pool_by_name(host: Host, name: str) -> dict | None:
    for p in pools(host):
        if p["name"] == name:
            return p
    return None


def pool_of_qualifier(host: Host, q: str) -> dict | None:
    """libxl_cpupool_qualifier_to_cpupoolid: all digits is an id, else a name."""
    if q.isdigit():
        return pool_by_id(host, int(q))
    return pool_by_name(host, q)


def free_cpus(host: Host) -> list[int]:
    used = {c for p in pools(host) for c in p["cpus"]}
    return [c for c in range(host.nr_cpus) if c not in used]


def next_poolid(host: Host) -> int:
    """cpupool_create with CPUPOOLID_NONE: the first id above every pool's."""
    return max(p["poolid"] for p in pools(host)) + 1


def weight_cap(dom: Domain) -> tuple[int, int]:
    """The domain's weight and cap: as set since, else as its configuration
    made them (libxl__sched_set_params at build), else the scheduler's default."""
    made = ((dom.config.get("b_info") or {}).get("sched_params") or {}) if dom.config else {}
    w = dom.sched_weight if dom.sched_weight is not None else made.get("weight", -1)
    c = dom.sched_cap if dom.sched_cap is not None else made.get("cap", -1)
    return (DEFAULT_WEIGHT if w in (None, -1) else int(w)), (0 if c in (None, -1) else int(c))


# -- vcpus -------------------------------------------------------------------
def online(dom: Domain) -> list[int]:
    return list(range(dom.vcpus)) if dom.vcpus_online is None else list(dom.vcpus_online)


def affinity(dom: Domain, vcpu: int, nr_cpus: int) -> tuple[list[int], list[int]]:
    """(hard, soft): every CPU unless pinned (sched_init_vcpu: cpumask_all)."""
    every = list(range(nr_cpus))
    hs = dom.affinity.get(str(vcpu))
    if hs is None:
        return every, every
    return list(hs[0]), list(hs[1])


def effective_hard(dom: Domain, vcpu: int, host: Host) -> list[int]:
    """The pCPUs the vcpu may run on: its hard affinity within its domain's
    pool's CPUs, as Xen's schedulers take it (cpumask_and of
    unit->cpu_hard_affinity and cpupool_domain_master_cpumask).  Xen keeps
    that never empty: vcpu_set_hard_affinity refuses a mask without a CPU
    of the pool (-EINVAL), sched_move_domain resets the affinity to all,
    and cpu_disable_scheduler breaks an affinity a CPU's removal leaves
    empty ("Breaking affinity", back to all); should it be empty all the
    same, the pool's CPUs, as a broken affinity gives."""
    pool = pool_by_id(host, dom.cpupool) or pools(host)[0]
    hard = set(affinity(dom, vcpu, host.nr_cpus)[0])
    return [c for c in pool["cpus"] if c in hard] or list(pool["cpus"])


def placement(dom: Domain, host: Host) -> list[int]:
    """The pCPUs the domain's process may run on: the union of its online
    vcpus' effective hard affinities (pyxl.hypervisor.placement maps them
    to real CPUs)."""
    return sorted({c for v in online(dom) for c in effective_hard(dom, v, host)})


def break_affinity(dom: Domain, pool: dict, cpu: int, nr_cpus: int) -> None:
    """cpu_disable_scheduler, `cpu` leaving the domain's `pool`: a vcpu
    whose hard affinity held `cpu` and no CPU the pool still has is given
    every CPU ("Breaking affinity for %pv"); its soft affinity stays."""
    for v in range(dom.vcpus):
        hard, soft = affinity(dom, v, nr_cpus)
        if cpu in hard and not set(hard) & set(pool["cpus"]):
            dom.affinity[str(v)] = [list(range(nr_cpus)), soft]


def vcpu_rows(dom: Domain, host: Host) -> list[dict]:
    """XEN_DOMCTL_getvcpuinfo for each vcpu (libxl_list_vcpu): online, the
    CPU it runs on (the first its hard affinity allows in its pool, spread
    by vcpu id), running/blocked from the domain's state, and its share of
    the domain's CPU time (ns)."""
    up = set(online(dom))
    state, cpu_s = dom.snapshot()
    pool = pool_by_id(host, dom.cpupool) or pools(host)[0]
    rows = []
    for v in range(dom.vcpus):
        hard, soft = affinity(dom, v, host.nr_cpus)
        where = [c for c in hard if c in pool["cpus"]] or pool["cpus"] or [0]
        rows.append({"vcpuid": v, "online": v in up, "cpu": where[v % len(where)],
                     "running": v in up and state[0] == "r",
                     "blocked": v in up and state[1] == "b",
                     "time_ns": int(cpu_s * 1e9 / max(len(up), 1)) if v in up else 0,
                     "hard": hard, "soft": soft})
    return rows
