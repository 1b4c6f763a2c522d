"""The simulated physical host: its size and the facts `xl info` shows.

Sizes come from the same HostInfo the config layer sizes CPU bitmaps with
(2 pCPUs, 1 node, 16 GiB by default), so `pyxl create -n` and the running
host agree.  PYXL_HOST_MEMORY (MiB) and PYXL_HOST_CPUS resize a host.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Mapping

from pyxl.config.host import HostInfo as _ConfigHostInfo

XEN_MAJOR, XEN_MINOR, XEN_EXTRA = 4, 17, ".7"
PAGE_KB = 4
DOM0_MEMORY_MB = 1024          # dom0_mem=1024M,max:1024M on the Xen command line
XEN_RESERVED_MB = 80           # what the hypervisor keeps for itself (heap, frametable)


def _default_size() -> tuple[int, int, int]:
    h = _ConfigHostInfo()
    return h.nr_cpus, h.nr_nodes, h.memory_kb // 1024


@dataclass
class Host:
    nr_cpus: int = 2
    nr_nodes: int = 1
    total_memory_mb: int = 16384
    dom0_memory_mb: int = DOM0_MEMORY_MB
    hostname: str = ""
    pools: list = field(default_factory=list)     # CPU pools (pyxl.hypervisor.sched)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Host:
        cpus, nodes, mem = _default_size()
        cpus = int(environ.get("PYXL_HOST_CPUS", cpus))
        mem = int(environ.get("PYXL_HOST_MEMORY", mem))
        dom0 = min(DOM0_MEMORY_MB, max(mem // 4, 64))
        return cls(cpus, nodes, mem, dom0, platform.node() or "localhost")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Host":
        return cls(**d)

    def domain_pool_kb(self) -> int:
        """Memory the domains, dom0 included, can be given: the host's less
        what Xen keeps for itself."""
        return (self.total_memory_mb - XEN_RESERVED_MB) * 1024

    def info_lines(self, free_kb: int, sched: str = "credit2") -> list[tuple[str, str]]:
        """`xl info`'s fields in xl's order (xl_info.c output_*)."""
        u = platform.uname()
        mhz = 2400
        return [
            ("host", self.hostname),
            ("release", u.release),
            ("version", u.version),
            ("machine", u.machine),
            ("nr_cpus", str(self.nr_cpus)),
            ("max_cpu_id", str(self.nr_cpus - 1)),
            ("nr_nodes", str(self.nr_nodes)),
            ("cores_per_socket", str(self.nr_cpus)),
            ("threads_per_core", "1"),
            ("cpu_mhz", "%d.%03d" % (mhz, 0)),
            ("hw_caps", "bfebfbff:77fafbff:2c100800:00000121:0000000f:009c6fbf:00000000:00000100"),
            ("virt_caps", "pv"),
            ("total_memory", str(self.total_memory_mb)),
            ("free_memory", str(free_kb // 1024)),
            ("sharing_freed_memory", "0"),
            ("sharing_used_memory", "0"),
            ("outstanding_claims", "0"),
            ("free_cpus", "0"),
            ("xen_major", str(XEN_MAJOR)),
            ("xen_minor", str(XEN_MINOR)),
            ("xen_extra", XEN_EXTRA),
            ("xen_version", "%d.%d%s" % (XEN_MAJOR, XEN_MINOR, XEN_EXTRA)),
            ("xen_caps", "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"),
            ("xen_scheduler", sched),
            ("xen_pagesize", "4096"),
            ("platform_params", "virt_start=0xffff800000000000"),
            ("xen_changeset", ""),
            ("xen_commandline", "placeholder dom0_mem=%dM,max:%dM"
             % (self.dom0_memory_mb, self.dom0_memory_mb)),
            ("cc_compiler", "pyxl (simulated hypervisor)"),
            ("cc_compile_by", "pyxl"),
            ("cc_compile_domain", ""),
            ("cc_compile_date", ""),
            ("build_id", ""),
            ("xend_config_format", "4"),
        ]
