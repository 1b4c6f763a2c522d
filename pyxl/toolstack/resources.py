"""libxl's calls on a running domain's resources, over the simulated host:
memory targets (libxl_mem.c), vCPUs online and their affinity
(libxl_domain.c libxl_set_vcpuonline, libxl_sched.c libxl_set_vcpuaffinity),
scheduler parameters (libxl_sched.c), CPU pools (libxl_cpupool.c), sysrq and
Xen's debug keys.  Each function takes the HostState and holds its lock.
"""

from __future__ import annotations

from pyxl.hypervisor import sched
from pyxl.hypervisor.domain import DOMID_FIRST_RESERVED, Domain
from pyxl.toolstack import devices
from pyxl.toolstack.errors import Fault

LIBXL_MIN_DOM0_MEM = 128 * 1024      # libxl_internal.h


def _dp(domid: int) -> str:
    """libxl__logv's domain prefix (libxl_domid_valid_guest)."""
    return "Domain %d:" % domid if 0 < domid < DOMID_FIRST_RESERVED else ""


def _read_int(st, path: str) -> int | None:
    v = devices.read(st.xs, path)
    return int(v) if v is not None and v.isdigit() else None


def current_memkb(st, dom: Domain) -> int:
    """libxl_dominfo.current_memkb: what the domain holds (tot_pages) --
    what it was built with until its balloon driver has moved."""
    kb = st.hv.memory_kb(dom.domid)
    return dom.target_memkb if kb is None else kb


# -- memory ------------------------------------------------------------------
def _dom0_memory(st, base: str) -> None:
    """libxl__fill_dom0_memory_info: dom0's target and static-max from its
    domain info, when nobody has written them yet."""
    d0 = st.table.domains[0]
    if _read_int(st, base + "/memory/target") is None:
        st.xs.write(base + "/memory/target", str(current_memkb(st, d0)))
    if _read_int(st, base + "/memory/static-max") is None:
        st.xs.write(base + "/memory/static-max", str(d0.max_memkb))


def set_memory_target(st, dom_q: str, memkb: int, mem: str) -> None:
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


def set_max_memory(st, dom_q: str, memkb: int, mem: str) -> None:
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


# -- vcpus -------------------------------------------------------------------
def vcpu_list(st, doms: list[str] | None) -> dict:
    """libxl_list_vcpu for each domain (all of them without `doms`)."""
    with st.lock:
        targets = st.table.sorted() if doms is None else [st.resolve(q) for q in doms]
        return {"nr_cpus": st.host.nr_cpus,
                "domains": [[d.domid, d.name, sched.vcpu_rows(d, st.host)] for d in targets]}


def set_vcpus_online(st, dom_q: str, n: int) -> None:
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


def set_vcpu_affinity(st, dom_q: str, vcpu: int, hard: list[int] | None,
                      soft: list[int] | None) -> None:
    """libxl_set_vcpuaffinity (vcpu >= 0) or _all (vcpu -1), as Xen's
    vcpu_affinity_domctl takes it: no such vcpu, or a hard affinity with no
    online CPU of the domain's pool, is -EINVAL; what is kept is the mask
    restricted to the host's CPUs."""
    with st.lock:
        dom = st.resolve(dom_q)
        domid = dom.domid
        what = ("Could not set affinity for vcpu `%d'." % vcpu if vcpu >= 0
                else "Could not set affinity.")
        pool = sched.pool_by_id(st.host, dom.cpupool) or sched.pools(st.host)[0]
        if vcpu >= dom.vcpus or (hard is not None
                                 and not set(hard) & set(pool["cpus"])):
            raise Fault("VCPU_PIN_FAILED", dp=_dp(domid), xl=what)
        nr = st.host.nr_cpus
        for v in (range(dom.vcpus) if vcpu < 0 else (vcpu,)):
            old_hard, old_soft = sched.affinity(dom, v, nr)
            h = old_hard if hard is None else sorted(c for c in set(hard) if c < nr)
            s = old_soft if soft is None else sorted(c for c in set(soft) if c < nr)
            dom.affinity[str(v)] = [h, s]
        st.save()


# -- the scheduler -----------------------------------------------------------
def _pool(st, q: str | None) -> dict:
    if q is None:
        return sched.pools(st.host)[0]
    p = sched.pool_of_qualifier(st.host, q)
    if p is None:
        raise Fault("UNKNOWN_CPUPOOL", pool=q)
    return p


def sched_domains(st, pool: str | None) -> list[dict]:
    """libxl_list_cpupool and libxl_list_domain, for sched_domain_output:
    each pool with its scheduler, parameters and domains' weight and cap."""
    with st.lock:
        only = _pool(st, pool) if pool is not None else None
        out = []
        for p in sched.pools(st.host):
            if only is not None and p is not only:
                continue
            doms = [[d.domid, d.name, d.sched_weight, d.sched_cap]
                    for d in st.table.sorted() if d.cpupool == p["poolid"]]
            out.append(dict(p, domains=doms))
        return out


def sched_domain_get(st, dom_q: str) -> dict:
    """libxl_domain_sched_params_get: the domain's pool's scheduler, and its params."""
    with st.lock:
        dom = st.resolve(dom_q)
        p = _pool(st, str(dom.cpupool))
        return {"sched": p["sched"], "domid": dom.domid, "name": dom.name,
                "weight": dom.sched_weight, "cap": dom.sched_cap}


def sched_domain_set(st, dom_q: str, want: str, weight: int | None, cap: int | None) -> None:
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


def sched_pool_params(st, pool: str | None, want: str, params: dict) -> dict | None:
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
def send_sysrq(st, dom_q: str, key: str) -> None:
    """libxl_send_sysrq: control/sysrq = the key, for the guest's manage.c."""
    with st.lock:
        dom = st.resolve(dom_q)
        st.xs.write("/local/domain/%d/control/sysrq" % dom.domid, key)


def send_debug_keys(st, keys: str) -> None:
    """libxl_send_debug_keys: XEN_SYSCTL_debug_keys, each key handled in
    turn; the handlers write the hypervisor's console."""
    from pyxl.hypervisor import keyhandler

    with st.lock:
        doms = st.table.sorted()
        keyhandler.handle_keys(keys, doms, st.hypervisor_log)
