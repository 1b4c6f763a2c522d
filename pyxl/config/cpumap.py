"""CPU ranges: xl_parse.c parse_cpurange / update_cpumap_range / parse_range.

"0-3,^2,node:0,all" style strings, applied to a libxl bitmap sized for the
host.  Errors are returned as xl's message text (the caller exits 1).
"""

from __future__ import annotations

from pyxl.config.cstr import strtoul
from pyxl.config.host import HostInfo
from pyxl.config.model import Bitmap

ULONG_MAX = (1 << 64) - 1


def parse_range(s: str) -> tuple[int, int] | None:
    """parse_range(): "A" or "A-B" (base 10, no junk); None when invalid."""
    a, end = strtoul(s, 10)
    if end == 0 or a == ULONG_MAX:
        return None
    b = a
    if end < len(s) and s[end] == "-":
        rest = s[end + 1:]
        b, e2 = strtoul(rest, 10)
        if e2 == 0 or b == ULONG_MAX or b < a:
            return None
        end = end + 1 + e2
    if end != len(s):
        return None
    return a, b


def _update(item: str, cpumap: Bitmap, host: HostInfo) -> str | None:
    is_not = item.startswith("^")
    if is_not:
        item = item[1:]
    is_nodes = False
    for p in ("node:", "nodes:"):
        if item.startswith(p):
            item = item[len(p):]
            is_nodes = True
            break
    if item == "all":
        if is_not:
            return 'Can\'t combine "^" and "all".'
        cpumap.set_any()
        return None
    r = parse_range(item)
    if r is None:
        return "Invalid pcpu range: %s." % item
    a, b = r
    # node numbers go through a node bitmap (nr_nodes rounded up to 8 bits)
    node_bits = (host.nr_nodes + 7) // 8 * 8
    if b - a > 1 << 16:               # xl would loop for ages; bits beyond the map are no-ops
        b = a + max(cpumap.nbits, node_bits) + 1 if a < max(cpumap.nbits, node_bits) else a
    i = a
    while i <= b:
        if is_nodes:
            cpus = host.cpus_of_node(i) if i < node_bits else []
            for c in cpus:
                if c < node_bits:
                    (cpumap.reset if is_not else cpumap.set)(c)
        else:
            (cpumap.reset if is_not else cpumap.set)(i)
        i += 1
    return None


def parse_cpurange(spec: str, cpumap: Bitmap, host: HostInfo) -> str | None:
    """Apply every comma-separated item (strtok: empty items vanish)."""
    for item in spec.split(","):
        if not item:
            continue
        err = _update(item, cpumap, host)
        if err:
            return err
    return None
