"""libxl's calls on a running domain's resources, over the simulated host:
memory targets (libxl_mem.c), vCPUs online and their affinity
(libxl_domain.c libxl_set_vcpuonline, libxl_sched.c libxl_set_vcpuaffinity),
scheduler parameters (libxl_sched.c), CPU pools (libxl_cpupool.c), sysrq and
Xen's debug keys.  Each function takes the HostState and holds its lock.
What changes where a domain's vCPUs may run also moves its process
(`place`).
"""

from __future__ import annotations

from pyxl.hypervisor import placement, sched
from pyxl.hypervisor.domain import DOMID_FIRST_RESERVED, Domain
from pyxl.toolstack import devices
from pyxl.toolstack.errors import Fault

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from pyxl.toolstack.hostd import HostState

LIBXL_MIN_DOM0_MEM = 128 * 1024      # libxl_internal.h


def _dp(domid: int) -> str:
    """libxl__logv's domain prefix (libxl_domid_valid_guest)."""
    return "Domain %d:" % domid if 0 < domid < DOMID_FIRST_RESERVED else ""


def _read_int(st: HostState, path: str) -> int | None:
    v = devices.read(st.xs, path)
    return int(v) if v is not None and v.isdigit() else None


def current_memkb(st: HostState, dom: Domain) -> int:
    """libxl_dominfo.current_memkb: what the domain holds (tot_pages) --
    what it was built with until its balloon driver has moved."""
    kb = st.hv.memory_kb(dom.domid)
    return dom.target_memkb if kb is None else kb


def free_memory_kb(st: HostState) -> int:
    """libxl_get_physinfo's free memory: the host's less what each domain
    holds (current_memkb), so a guest's balloon gives back to the host."""
    return st.table.free_kb(lambda d: current_memkb(st, d))


# -- memory ------------------------------------------------------------------
def _dom0_memory(st: HostState, base: str) -> None:
    """libxl__fill_dom0_memory_info: dom0's target and static-max from its
    domain info, when nobody has written them yet."""
    d0 = st.table.domains[0]
    if _read_int(st, base + "/memory/target") is None:
        st.xs.write(base + "/memory/target", str(current_memkb(st, d0)))
    if _read_int(st, base + "/memory/static-max") is None:
        st.xs.write(base + "/memory/static-max", str(d0.max_memkb))


def set_memory_target(st: HostState, dom_q: str, memkb: int, mem: str) -> None:
    """libxl_set_memory_target(ctx, domid, memkb, relative=0, enforce=1):
    the new target (less videoram) may not exceed static-max, dom0's not go
    below LIBXL_MIN_DOM0_MEM; Xen's maxmem becomes the target, then
    memory/target and /vm/<uuid>/memory are written.  The guest's balloon
    driver, watching memory/target, does the rest."""
    with st.lock:
        dom = st.resolve(dom_q)
        domid = dom.domid
        base = "/local/domain/%d" % domid
        if domid == 0:
            _dom0_memory(st, base)
        static_max = _read_int(st, base + "/memory/static-max")
        videoram = _read_int(st, base + "/memory/videoram") or 0
        new = memkb - videoram
        if static_max is not None and new > static_max:
            raise Fault("MEM_ABOVE_STATIC_MAX", dp=_dp(domid), domid=domid, mem=mem)
        if domid == 0 and new < LIBXL_MIN_DOM0_MEM:
            raise Fault("MEM_DOM0_MIN", kb=new % (1 << 64), domid=domid, mem=mem)
        st.hv.set_max_mem(domid, new + videoram)
        st.xs.write(base + "/memory/target", str(new))
        st.xs.write("/vm/%s/memory" % dom.uuid, str(new // 1024))
        if domid == 0:                   # dom0's balloon is the daemon's own
            st.hv.memory_reserve(0, new)
            return
        dom.xen_max_kb, dom.mem_target_kb = new + videoram, new     # for a restarted daemon
        st.save()


def set_max_memory(st: HostState, dom_q: str, memkb: int, mem: str) -> None:
    """libxl_domain_setmaxmem: not below the current target; Xen's maxmem,
    then memory/static-max."""
    with st.lock:
        dom = st.resolve(dom_q)
        domid = dom.domid
        base = "/local/domain/%d" % domid
        if domid == 0:
            _dom0_memory(st, base)
        target = _read_int(st, base + "/memory/target")
        if target is not None and memkb < target:
            raise Fault("MEM_MAX_BELOW_TARGET", dp=_dp(domid), domid=domid, mem=mem)
        st.hv.set_max_mem(domid, memkb)
        st.xs.write(base + "/memory/static-max", str(memkb))
        if domid != 0:
            dom.xen_max_kb, dom.mem_static_max_kb = memkb, memkb     # for a restarted daemon
            st.save()


# -- vcpus -------------------------------------------------------------------
def place(st: HostState, dom: Domain) -> None:
    """Run the domain's process where its online vcpus may run
    (sched.placement, mapped to the CPUs the daemon was started with).
    Dom0's process is the daemon itself: it stays where it is.  A failure
    is the daemon log's, never the command's (placement.apply)."""
    if dom.is_dom0 or not dom.pid or dom.proc_stat() is None:
        return
    cpus = placement.real_cpus(sched.placement(dom, st.host), st.usable_cpus)
    placement.apply(dom.pid, cpus, lambda msg: st.log("domain %d (%s): %s"
                                                       % (dom.domid, dom.name, msg)))


def vcpu_list(st: HostState, doms: list[str] | None) -> dict:
    """libxl_list_vcpu for each domain (all of them without `doms`)."""
    with st.lock:
        targets = st.table.sorted() if doms is None else [st.resolve(q) for q in doms]
        return {"nr_cpus": st.host.nr_cpus,
                "domains": [[d.domid, d.name, sched.vcpu_rows(d, st.host)] for d in targets]}


def set_vcpus_online(st: HostState, dom_q: str, n: int) -> None:
    """libxl_set_vcpuonline for a PV domain: 1..max vcpus; each
    cpu/N/availability becomes "online" or "offline" (libxl__set_vcpuonline_xenstore)."""
    with st.lock:
        dom = st.resolve(dom_q)
        domid = dom.domid
        if n == 0:
            raise Fault("VCPU_SET_ZERO", dp=_dp(domid), domid=domid)
        if n > dom.vcpus:
            raise Fault("VCPU_SET_ABOVE_MAX", dp=_dp(domid), domid=domid, n=n, max=dom.vcpus)
        if domid != 0:
            for i in range(dom.vcpus):
                st.xs.write("/local/domain/%d/cpu/%d/availability" % (domid, i),
                            "online" if i < n else "offline")
        dom.vcpus_online = None if n == dom.vcpus else list(range(n))
        st.save()
        place(st, dom)


def set_vcpu_affinity(st: HostState, dom_q: str, vcpu: int, hard: list[int] | None,
                      soft: list[int] | None) -> None:
    """libxl_set_vcpuaffinity (vcpu >= 0) or _all (vcpu -1), as Xen's
    vcpu_affinity_domctl takes it: no such vcpu, or a hard affinity with no
    online CPU of the domain's pool, is -EINVAL; what is kept is the mask
    restricted to the host's CPUs."""
    with st.lock:
        dom = st.resolve(dom_q)
        domid = dom.domid
        if not set_affinity_locked(st, dom, vcpu, hard, soft):
            what = ("Could not set affinity for vcpu `%d'." % vcpu if vcpu >= 0
                    else "Could not set affinity.")
            raise Fault("VCPU_PIN_FAILED", dp=_dp(domid), xl=what)
        st.save()
        place(st, dom)


def set_affinity_locked(st: HostState, dom: Domain, vcpu: int, hard: list[int] | None,
                        soft: list[int] | None) -> bool:
    """vcpu_affinity_domctl's XEN_DOMCTL_setvcpuaffinity on one vcpu (all
    of them for -1), without saving or placing: False (-EINVAL) for a vcpu
    the domain lacks or a hard affinity with no CPU of its pool."""
    pool = sched.pool_by_id(st.host, dom.cpupool) or sched.pools(st.host)[0]
    if vcpu >= dom.vcpus or (hard is not None and not set(hard) & set(pool["cpus"])):
        return False
    nr = st.host.nr_cpus
    for v in (range(dom.vcpus) if vcpu < 0 else (vcpu,)):
        old_hard, old_soft = sched.affinity(dom, v, nr)
        h = old_hard if hard is None else sorted(c for c in set(hard) if c < nr)
        s = old_soft if soft is None else sorted(c for c in set(soft) if c < nr)
        dom.affinity[str(v)] = [h, s]
    return True


# -- the scheduler -----------------------------------------------------------
def _pool(st: HostState, q: str | None) -> dict:
    if q is None:
        return sched.pools(st.host)[0]
    p = sched.pool_of_qualifier(st.host, q)
    if p is None:
        raise Fault("UNKNOWN_CPUPOOL", pool=q)
    return p


def sched_domains(st: HostState, pool: str | None) -> list[dict]:
    """libxl_list_cpupool and libxl_list_domain, for sched_domain_output:
    each pool with its scheduler, parameters and domains' weight and cap."""
    with st.lock:
        only = _pool(st, pool) if pool is not None else None
        out = []
        for p in sched.pools(st.host):
            if only is not None and p is not only:
                continue
            doms = [[d.domid, d.name, *sched.weight_cap(d)]
                    for d in st.table.sorted() if d.cpupool == p["poolid"]]
            out.append(dict(p, domains=doms))
        return out


def sched_domain_get(st: HostState, dom_q: str) -> dict:
    """libxl_domain_sched_params_get: the domain's pool's scheduler, and its params."""
    with st.lock:
        dom = st.resolve(dom_q)
        p = _pool(st, str(dom.cpupool))
        weight, cap = sched.weight_cap(dom)
        return {"sched": p["sched"], "domid": dom.domid, "name": dom.name,
                "weight": weight, "cap": cap}


def sched_domain_set(st: HostState, dom_q: str, want: str, weight: int | None, cap: int | None) -> None:
    """libxl_domain_sched_params_set -> sched_credit2_domain_set (credit
    likewise): weight 1..65535, cap 0..100 per vcpu."""
    with st.lock:
        dom = st.resolve(dom_q)
        domid = dom.domid
        p = _pool(st, str(dom.cpupool))
        if p["sched"] != want:
            raise Fault("SCHED_WRONG", got=p["sched"], want=want)
        if weight is not None and not sched.WEIGHT_MIN <= weight <= sched.WEIGHT_MAX:
            raise Fault("SCHED_WEIGHT_RANGE", dp=_dp(domid))
        if cap is not None and not 0 <= cap <= dom.vcpus * 100:
            raise Fault("SCHED_CAP_RANGE", dp=_dp(domid), top=dom.vcpus * 100)
        if weight is not None:
            dom.sched_weight = weight
        if cap is not None:
            dom.sched_cap = cap
        st.save()


def sched_pool_params(st: HostState, pool: str | None, want: str, params: dict) -> dict | None:
    """libxl_sched_{credit,credit2}_params_get/_set on a pool: its scheduler
    must be the one asked (Xen's sched_adjust_global: -EINVAL); None then."""
    with st.lock:
        p = _pool(st, pool)
        if p["sched"] != want:
            return None
        if params:
            r = params.get("ratelimit_us")
            if r is not None and r != 0 and not sched.RATELIMIT_MIN <= r <= sched.RATELIMIT_MAX:
                raise Fault("SCHED_RATELIMIT_RANGE", sched=want)
            for k in ("ratelimit_us", "tslice_ms", "migr_delay_us"):
                if params.get(k) is not None:
                    p[k] = params[k]
            st.save()
        return {k: p[k] for k in ("name", "ratelimit_us", "tslice_ms", "migr_delay_us")}


# -- sysrq, debug keys --------------------------------------------------------
def send_sysrq(st: HostState, dom_q: str, key: str) -> None:
    """libxl_send_sysrq (libxl.c): control/sysrq = the key, for the guest's
    manage.c.  The path is xs_get_domain_path's for whatever domid xl found
    (find_domain takes any number), and the write is unchecked: for a
    number that names no domain the key lands under that path and xl
    succeeds."""
    if not isinstance(key, str) or len(key) != 1:      # main_sysrq: one letter
        raise Fault("BAD_REQUEST", reason="sysrq: one key, not %r" % (key,))
    with st.lock:
        try:
            domid = st.resolve(dom_q).domid
        except Fault as f:
            if f.name != "NO_SUCH_DOMID":
                raise
            domid = min(int(dom_q), 2**64 - 1) & 0xFFFFFFFF
        st.xs.write("/local/domain/%d/control/sysrq" % domid, key)


def send_debug_keys(st: HostState, keys: str) -> None:
    """libxl_send_debug_keys: XEN_SYSCTL_debug_keys, each key handled in
    turn; the handlers write the hypervisor's console."""
    from pyxl.hypervisor import keyhandler

    with st.lock:
        doms = st.table.sorted()
        keyhandler.handle_keys(keys, doms, st.hypervisor_log)


# -- CPU pools (libxl_cpupool.c over Xen's cpupool.c) -------------------------
def _pool_q(st: HostState, q: str) -> dict:
    """libxl_cpupool_qualifier_to_cpupoolid + libxl_cpupoolid_is_valid."""
    p = sched.pool_of_qualifier(st.host, q)
    if p is None:
        raise Fault("UNKNOWN_CPUPOOL", pool=q)
    return p


def _write_pool(st: HostState, p: dict) -> None:
    """/local/pool/<id>/name (libxl_cpupool_create, _rename): where
    libxl_cpupoolid_to_name reads it."""
    st.xs.write("/local/pool/%d/name" % p["poolid"], p["name"])


def cpupool_list(st: HostState) -> list[dict]:
    """libxl_list_cpupool: each pool with its CPUs, scheduler and domain count."""
    with st.lock:
        doms = st.table.sorted()
        return [dict(p, n_dom=sum(1 for d in doms if d.cpupool == p["poolid"]))
                for p in sched.pools(st.host)]


def cpupool_create(st: HostState, name: str, sched_name: str | None, cpus: list[int]) -> dict:
    """main_cpupoolcreate's checks that ask libxl (the name unused, the
    CPUs free), then libxl_cpupool_create: a new pool, its CPUs moved in."""
    with st.lock:
        if sched.pool_by_name(st.host, name) is not None:
            return {"error": 'Pool name "%s" already exists' % name}
        s = sched.Scheduler(sched_name) if sched_name else sched.DEFAULT_SCHEDULER
        free = sched.free_cpus(st.host)
        for c in cpus:
            if c not in free:
                return {"error": "cpu %d illegal or not free" % c}
        p = sched.new_pool(sched.next_poolid(st.host), name, s, cpus)
        st.host.pools.append(p)
        _write_pool(st, p)
        st.save()
        return {"poolid": p["poolid"], "sched": s.value, "n_cpus": len(cpus)}


def cpupool_destroy(st: HostState, q: str) -> bool:
    """libxl_cpupool_destroy: not while it holds domains (ERROR_INVAL), and
    never Pool-0; its CPUs become free."""
    with st.lock:
        p = _pool_q(st, q)
        if p["poolid"] == 0 or any(d.cpupool == p["poolid"] for d in st.table.sorted()):
            return False
        st.host.pools.remove(p)
        devices.remove_paths(st.xs, ["/local/pool/%d" % p["poolid"]])
        st.save()
        return True


def cpupool_rename(st: HostState, q: str, name: str) -> None:
    """libxl_cpupool_rename: the name in xenstore, nothing checked."""
    with st.lock:
        p = _pool_q(st, q)
        p["name"] = name
        _write_pool(st, p)
        st.save()


def cpupool_cpus(st: HostState, q: str, cpus: list[int], add: bool) -> list[str]:
    """libxl_cpupool_cpuadd_cpumap / _cpuremove_cpumap: CPU by CPU, as
    Xen's XEN_SYSCTL_CPUPOOL_OP_ADDCPU/RMCPU take them; the libxl messages
    of those that failed are returned (xl then adds its own line)."""
    import errno as _errno
    import os as _os

    with st.lock:
        p = _pool_q(st, q)
        errs = []
        for c in cpus:
            if add:
                if c >= st.host.nr_cpus:
                    e = _errno.EINVAL
                elif c not in sched.free_cpus(st.host):
                    e = _errno.ENODEV
                else:
                    p["cpus"] = sorted(p["cpus"] + [c])
                    continue
                errs.append("libxl: error: libxl_cpupool.c:302:libxl_cpupool_cpuadd: Error moving"
                            " cpu %d to cpupool: %s" % (c, _os.strerror(e)))
            else:
                if c >= st.host.nr_cpus:
                    e = _errno.EINVAL
                elif c not in p["cpus"]:
                    e = _errno.EADDRNOTAVAIL
                elif len(p["cpus"]) == 1 and any(d.cpupool == p["poolid"]
                                                  for d in st.table.sorted()):
                    e = _errno.EBUSY
                else:
                    p["cpus"] = [x for x in p["cpus"] if x != c]
                    for d in _in_pool(st, p):
                        sched.break_affinity(d, p, c, st.host.nr_cpus)
                    continue
                errs.append("libxl: error: libxl_cpupool.c:365:libxl_cpupool_cpuremove: Error"
                            " removing cpu %d from cpupool: %s" % (c, _os.strerror(e)))
        st.save()
        for d in _in_pool(st, p):
            place(st, d)
        return errs


def _in_pool(st: HostState, p: dict) -> list[Domain]:
    return [d for d in st.table.sorted() if d.cpupool == p["poolid"]]


def cpupool_migrate(st: HostState, dom_q: str, q: str) -> None:
    """main_cpupoolmigrate: the domain must exist ("unknown domain"), the
    pool too; libxl_cpupool_movedomain then fails on a pool without CPUs
    (Xen: -ENOENT; LOGEVD with xc's -1 prints no errno text)."""
    with st.lock:
        try:
            dom = st.resolve(dom_q)
        except Fault:
            raise Fault("UNKNOWN_DOMAIN_CPUPOOL", dom=dom_q) from None
        p = _pool_q(st, q)
        if not p["cpus"]:
            raise Fault("CPUPOOL_MOVE_FAILED", dp=_dp(dom.domid))
        dom.cpupool = p["poolid"]
        dom.affinity = {}       # sched_move_domain: hard and soft affinity all CPUs
        st.save()
        place(st, dom)


def cpupool_numa_split(st: HostState) -> str | None:
    """main_cpupoolnumasplit: only while Pool-0 is the only pool; Pool-0
    keeps the first node's CPUs as Pool-node<N>, every other node gets a
    Pool-node<N> of its own with the host's scheduler."""
    with st.lock:
        pools = sched.pools(st.host)
        if len(pools) > 1:
            return "splitting not possible, already cpupools in use"
        h = st.host
        node_of = {c: c % h.nr_nodes for c in range(h.nr_cpus)}
        p0 = pools[0]
        first = node_of[0]
        gone = [c for c in p0["cpus"] if node_of[c] != first]
        p0["cpus"] = [c for c in range(h.nr_cpus) if node_of[c] == first]
        for c in gone:                  # libxl_cpupool_cpuremove, CPU by CPU
            for d in _in_pool(st, p0):
                sched.break_affinity(d, p0, c, h.nr_cpus)
        p0["name"] = "Pool-node%d" % first
        _write_pool(st, p0)
        for node in sorted(set(node_of.values()) - {first}):
            p = sched.new_pool(sched.next_poolid(h), "Pool-node%d" % node,
                               sched.Scheduler(p0["sched"]),
                               [c for c in range(h.nr_cpus) if node_of[c] == node])
            h.pools.append(p)
            _write_pool(st, p)
        st.save()
        for d in _in_pool(st, p0):
            place(st, d)
        return None


def store_config(st: HostState, dom_q: str, config: dict, config_file: str, config_text: str) -> None:
    """libxl_userdata_store(ctx, domid, "xl", ...) for config-update: kept
    with the domain until its next rebuild (reload_domain_config)."""
    with st.lock:
        dom = st.resolve(dom_q)
        dom.updated_config = [config, config_file, config_text]
        st.save()


def live_config(st: HostState, dom: Domain) -> dict:
    """What libxl_retrieve_domain_configuration reads from the running
    domain (retrieve_domain_configuration_end): the vcpus online, the memory
    target and static-max in xenstore, and the scheduler's parameters."""
    base = "/local/domain/%d" % dom.domid
    pool = sched.pool_by_id(st.host, dom.cpupool) or sched.pools(st.host)[0]
    weight, cap = sched.weight_cap(dom)
    target = _read_int(st, base + "/memory/target")
    static_max = _read_int(st, base + "/memory/static-max")
    return {"vcpus_online": sched.online(dom),
            "target_memkb": dom.target_memkb if target is None else target,
            "static_max_kb": dom.max_memkb if static_max is None else static_max,
            "sched": pool["sched"], "weight": weight, "cap": cap}
