"""The (simulated) host a config is parsed for.

xl sizes CPU bitmaps from the host (libxl_get_max_cpus, rounded up to whole
bytes) and resolves `nodes:N` through the host's CPU topology, so parsing is
host-dependent.  The defaults match the xl oracle's fake host and the
simulated Xen host: 2 pCPUs, 1 NUMA node, 16 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostInfo:
    nr_cpus: int = 2
    nr_nodes: int = 1
    memory_kb: int = 16 << 20

    def node_of_cpu(self, cpu: int) -> int:
        return cpu % self.nr_nodes

    def cpus_of_node(self, node: int) -> list[int]:
        return [c for c in range(self.nr_cpus) if self.node_of_cpu(c) == node]


DEFAULT_HOST = HostInfo()
