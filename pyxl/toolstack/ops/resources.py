"""The daemon's operations on domains' resources: memory, vCPUs, the
scheduler, CPU pools, and the hypervisor's debugging hooks."""

from __future__ import annotations

from pyxl.toolstack.ops import Op

OPS: dict[str, Op] = {}
