"""The hypervisor's domain table: domids, states, memory accounting.

A domain here is the hypervisor's view of one guest: an id, a uuid, memory
and vcpus it was given, and its run state.  The process that *is* the guest
is started by the toolstack's daemon (pyxl.toolstack); this table records its
pid and reads its run state and CPU time from the OS, as Xen's scheduler
would know them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyxl.hypervisor.host import Host

DOMID_FIRST_RESERVED = 0x7FF0
# vCPU limits of Xen 4.17 on x86 (arch_sanitise_domain_config): HVM and PVH
# guests public/hvm/hvm_info_table.h HVM_MAX_VCPUS; PV guests MAX_VIRT_CPUS,
# asm/config.h GDT_LDT_MBYTES << (20 - GDT_LDT_VCPU_VA_SHIFT) = 1024 << 3
HVM_MAX_VCPUS = 128
MAX_VIRT_CPUS = 8192
MAX_GUEST_CMDLINE = 1024   # public/xen.h: start_info's cmd_line, NUL included

# SHUTDOWN_* reason codes (xen/include/public/sched.h)
SHUTDOWN_POWEROFF = 0
SHUTDOWN_REBOOT = 1
SHUTDOWN_SUSPEND = 2
SHUTDOWN_CRASH = 3
SHUTDOWN_WATCHDOG = 4
SHUTDOWN_SOFT_RESET = 5
REASON_CHARS = {SHUTDOWN_POWEROFF: "-", SHUTDOWN_REBOOT: "r", SHUTDOWN_SUSPEND: "s",
                SHUTDOWN_CRASH: "c", SHUTDOWN_WATCHDOG: "w", SHUTDOWN_SOFT_RESET: "S"}
REASON_NAMES = {SHUTDOWN_POWEROFF: "poweroff", SHUTDOWN_REBOOT: "reboot",
                SHUTDOWN_SUSPEND: "suspend", SHUTDOWN_CRASH: "crash",
                SHUTDOWN_WATCHDOG: "watchdog", SHUTDOWN_SOFT_RESET: "soft_reset"}

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Domain:
    domid: int
    name: str
    uuid: str
    max_memkb: int
    target_memkb: int
    vcpus: int = 1
    pid: int = 0
    pid_start: int = 0              # /proc/<pid>/stat start time: pid reuse guard
    created: float = field(default_factory=time.time)
    paused: bool = False
    shutdown_reason: int | None = None   # set once the guest has shut down
    dying: bool = False
    cpu_time_done: float = 0.0      # CPU seconds of processes this domain has finished with
    kernel: str = ""
    config: dict = field(default_factory=dict)     # libxl_domain_config JSON
    config_text: str = ""
    config_file: str = ""
    stubdom: bool = False
    monitored: bool = True          # xl create without -e: on_* actions are carried out
    # the scheduler's view (pyxl.hypervisor.sched): which vcpus are up, where
    # each may run, its weight and cap, its CPU pool
    vcpus_online: list | None = None    # vcpu ids brought up; None: all of them
    affinity: dict = field(default_factory=dict)   # str(vcpu) -> [hard cpus, soft cpus]
    sched_weight: int | None = None     # None: as made (pyxl.hypervisor.sched.weight_cap)
    sched_cap: int | None = None
    cpupool: int = 0
    # xl config-update's "xl" userdata: the configuration (JSON, text, file)
    # the domain is rebuilt from at its next reboot; None: none stored
    updated_config: list | None = None
    # What outlives the toolstack on Xen but lives in the daemon here, kept
    # so a restarted daemon finds it again (None: as built, from max_memkb
    # and target_memkb): Xen's d->tot_pages once the balloon has moved and
    # d->max_pages once XEN_DOMCTL_max_mem has set it; the toolstack's
    # memory/target and memory/static-max once mem-set / mem-max wrote them
    tot_kb: int | None = None
    xen_max_kb: int | None = None
    mem_target_kb: int | None = None
    mem_static_max_kb: int | None = None

    @property
    def is_dom0(self) -> bool:
        return self.domid == 0

    def proc_stat(self) -> list[str] | None:
        if not self.pid:
            return None
        try:        # os-level calls: `pyxl list` reads this for every domain
            fd = os.open("/proc/%d/stat" % self.pid, os.O_RDONLY)
            try:
                data = os.read(fd, 4096).decode()
            finally:
                os.close(fd)
        except OSError:
            return None
        # comm may hold spaces/parens: split after the last ')'
        rest = data[data.rindex(")") + 2:].split()
        if self.pid_start and int(rest[19]) != self.pid_start:
            return None   # the pid now belongs to someone else
        return rest

    def alive(self) -> bool:
        st = self.proc_stat()
        return st is not None and st[0] != "Z"

    def cpu_time(self, st: list[str] | None = None) -> float:
        if self.is_dom0:
            t = os.times()
            return t.user + t.system + t.children_user + t.children_system
        if st is None:
            st = self.proc_stat()
        if st is None:
            return self.cpu_time_done
        return self.cpu_time_done + (int(st[11]) + int(st[12])) / _CLK_TCK

    def snapshot(self) -> tuple[str, float]:
        """(state letters, CPU seconds) from one read of /proc/<pid>/stat."""
        st = None if self.is_dom0 else self.proc_stat()
        return self.state_chars(st), self.cpu_time(st)

    def state_chars(self, st: list[str] | None = None) -> str:
        running = blocked = False
        if self.is_dom0:
            running = True
        elif self.shutdown_reason is None and not self.dying:
            if st is None:
                st = self.proc_stat()
            if st is not None:
                running = st[0] == "R"
                blocked = st[0] in "SDI"
        s = ("r" if running and not self.paused else "-")
        s += "b" if blocked and not self.paused else "-"
        s += "p" if self.paused else "-"
        s += "s" if self.shutdown_reason is not None else "-"
        s += REASON_CHARS.get(self.shutdown_reason, "-") if self.shutdown_reason is not None else "-"
        s += "d" if self.dying else "-"
        return s

    def uptime(self) -> float:
        return max(0.0, time.time() - self.created)

    def to_dict(self) -> dict:
        # shallow (no asdict deep copy): the state file is rewritten on every change
        return {f: getattr(self, f) for f in _FIELDS}

    @classmethod
    def from_dict(cls, d: dict) -> "Domain":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


_FIELDS = tuple(Domain.__dataclass_fields__)


def guest_cmdline(cmdline: str) -> str:
    """What a PV guest finds in start_info: the domain builder's strncpy of
    the command line into MAX_GUEST_CMDLINE bytes, the last one NUL
    (xg_dom_x86.c start_info_x86_64)."""
    raw = cmdline.encode()
    if len(raw) < MAX_GUEST_CMDLINE:
        return cmdline
    return raw[:MAX_GUEST_CMDLINE - 1].decode(errors="ignore")


def pid_start_time(pid: int) -> int:
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode()
        return int(data[data.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


class DomainTable:
    """Domains by id, domid allocation and memory accounting.

    Domids are handed out as Xen's domctl does: counting up from the last one
    allocated and wrapping below DOMID_FIRST_RESERVED, so a destroyed
    domain's id is not reused at once.
    """

    def __init__(self, host: Host):
        self.host = host
        self.domains: dict[int, Domain] = {}
        self.last_domid = 0
        self.domains[0] = Domain(0, "Domain-0", "00000000-0000-0000-0000-000000000000",
                                 host.dom0_memory_mb * 1024, host.dom0_memory_mb * 1024,
                                 vcpus=host.nr_cpus, pid=os.getpid())

    def allocate_domid(self) -> int:
        d = self.last_domid
        for _ in range(DOMID_FIRST_RESERVED):
            d = d + 1 if d + 1 < DOMID_FIRST_RESERVED else 1
            if d not in self.domains:
                self.last_domid = d
                return d
        raise RuntimeError("out of domids")

    def free_kb(self, held: Callable[[Domain], int]) -> int:
        """libxl_get_physinfo's free_pages as Xen counts them
        (page_alloc.c total_avail_pages less outstanding claims, of which
        the simulated host has none): the host's memory less what every
        domain, dom0 included, holds now -- HELD(domain), its tot_pages in
        KiB, which follows its balloon -- not what it may grow to."""
        return self.host.domain_pool_kb() - sum(held(d) for d in self.domains.values())

    def by_name(self, name: str) -> Domain | None:
        for d in self.domains.values():
            if d.name == name:
                return d
        return None

    def sorted(self) -> list[Domain]:
        return [self.domains[k] for k in sorted(self.domains)]

    def to_dict(self) -> dict:
        return {"last_domid": self.last_domid,
                "domains": [d.to_dict() for d in self.sorted() if not d.is_dom0]}

    def load(self, d: dict) -> None:
        self.last_domid = d.get("last_domid", 0)
        for dd in d.get("domains", []):
            dom = Domain.from_dict(dd)
            self.domains[dom.domid] = dom
