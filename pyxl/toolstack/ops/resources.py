"""The daemon's operations on domains' resources: memory, vCPUs, the
scheduler and CPU pools, sysrq and the hypervisor's debug keys.  The work is
pyxl.toolstack.resources' (libxl's calls); these rows name its arguments."""

from __future__ import annotations

from pyxl.toolstack import resources as R
from pyxl.toolstack.ops import Op, libxl_json

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from pyxl.toolstack.daemon import Daemon


def _mem_set(d: Daemon, a: dict[str, Any]) -> Any:
    R.set_memory_target(d.state, a["dom"], int(a["memkb"]), a["mem"])


def _mem_max(d: Daemon, a: dict[str, Any]) -> Any:
    R.set_max_memory(d.state, a["dom"], int(a["memkb"]), a["mem"])


def _vcpu_list(d: Daemon, a: dict[str, Any]) -> Any:
    return R.vcpu_list(d.state, a.get("doms"))


def _vcpu_set(d: Daemon, a: dict[str, Any]) -> Any:
    R.set_vcpus_online(d.state, a["dom"], int(a["n"]))


def _vcpu_pin(d: Daemon, a: dict[str, Any]) -> Any:
    R.set_vcpu_affinity(d.state, a["dom"], int(a["vcpu"]), a.get("hard"), a.get("soft"))


def _sched_list(d: Daemon, a: dict[str, Any]) -> Any:
    return R.sched_domains(d.state, a.get("pool"))


def _sched_get(d: Daemon, a: dict[str, Any]) -> Any:
    return R.sched_domain_get(d.state, a["dom"])


def _sched_set(d: Daemon, a: dict[str, Any]) -> Any:
    R.sched_domain_set(d.state, a["dom"], a["sched"], a.get("weight"), a.get("cap"))


def _sched_pool(d: Daemon, a: dict[str, Any]) -> Any:
    return R.sched_pool_params(d.state, a.get("pool"), a["sched"], a.get("params") or {})


def _sysrq(d: Daemon, a: dict[str, Any]) -> Any:
    R.send_sysrq(d.state, a["dom"], a["key"])


def _debug_keys(d: Daemon, a: dict[str, Any]) -> Any:
    R.send_debug_keys(d.state, a["keys"])


def _cpupool_list(d: Daemon, a: dict[str, Any]) -> Any:
    return R.cpupool_list(d.state)


def _cpupool_create(d: Daemon, a: dict[str, Any]) -> Any:
    return R.cpupool_create(d.state, a["name"], a.get("sched"), list(a.get("cpus") or []))


def _cpupool_destroy(d: Daemon, a: dict[str, Any]) -> Any:
    return R.cpupool_destroy(d.state, a["pool"])


def _cpupool_rename(d: Daemon, a: dict[str, Any]) -> Any:
    R.cpupool_rename(d.state, a["pool"], a["name"])


def _cpupool_cpus(d: Daemon, a: dict[str, Any]) -> Any:
    return R.cpupool_cpus(d.state, a["pool"], list(a["cpus"]), bool(a["add"]))


def _cpupool_migrate(d: Daemon, a: dict[str, Any]) -> Any:
    R.cpupool_migrate(d.state, a["dom"], a["pool"])


def _cpupool_numa_split(d: Daemon, a: dict[str, Any]) -> Any:
    return R.cpupool_numa_split(d.state)


def _config_update(d: Daemon, a: dict[str, Any]) -> Any:
    R.store_config(d.state, a["dom"], libxl_json("config_update", a["config"]),
                   a.get("config_file", ""),
                   a.get("config_text", ""))


OPS: dict[str, Op] = {
    "mem_set": Op(_mem_set, ("dom", "memkb", "mem")),
    "mem_max": Op(_mem_max, ("dom", "memkb", "mem")),
    "vcpu_list": Op(_vcpu_list, optional=("doms",)),
    "vcpu_set": Op(_vcpu_set, ("dom", "n")),
    "vcpu_pin": Op(_vcpu_pin, ("dom", "vcpu"), ("hard", "soft")),
    "sched_list": Op(_sched_list, optional=("pool",)),
    "sched_get": Op(_sched_get, ("dom",)),
    "sched_set": Op(_sched_set, ("dom", "sched"), ("weight", "cap")),
    "sched_pool": Op(_sched_pool, ("sched",), ("pool", "params")),
    "sysrq": Op(_sysrq, ("dom", "key")),
    "debug_keys": Op(_debug_keys, ("keys",)),
    "config_update": Op(_config_update, ("dom", "config"), ("config_file", "config_text")),
    "cpupool_list": Op(_cpupool_list),
    "cpupool_create": Op(_cpupool_create, ("name",), ("sched", "cpus")),
    "cpupool_destroy": Op(_cpupool_destroy, ("pool",)),
    "cpupool_rename": Op(_cpupool_rename, ("pool", "name")),
    "cpupool_cpus": Op(_cpupool_cpus, ("pool", "cpus", "add")),
    "cpupool_migrate": Op(_cpupool_migrate, ("dom", "pool")),
    "cpupool_numa_split": Op(_cpupool_numa_split),
}
