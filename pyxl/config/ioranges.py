"""ioports=, irqs= and iomem= list items (xl_parse.c parse_config_data).

Each list has its own number syntax: ioports are hex (strtoul base 16),
irqs strict decimal, iomem "%lx,%lx[@%lx]" via sscanf.  Errors exit 1.
"""

from __future__ import annotations

from typing import Callable

from pyxl.config.cstr import scan_hex_u64, strtoul
from pyxl.config.errors import ConfigError
from pyxl.config.model import IoportRange, IomemRange

UINT32_MAX = (1 << 32) - 1


def parse_ioport(buf: str, say: Callable[[str], None]) -> IoportRange:
    ul, ep = strtoul(buf, 16)
    if ep == 0:
        raise ConfigError("xl: Invalid argument parsing ioport: %s" % buf)
    if ul >= UINT32_MAX:
        raise ConfigError("xl: ioport %x too big" % ul)
    start = end = ul
    if buf[ep:ep + 1] == "-":
        rest = buf[ep + 1:]
        ul, ep2 = strtoul(rest, 16)
        # (start > end compares the start with itself: never true)
        if ep2 == 0 or ep2 != len(rest):
            raise ConfigError("xl: Invalid argument parsing ioport: %s" % buf)
        if ul >= UINT32_MAX:
            raise ConfigError("xl: ioport %x too big" % ul)
        end = ul
    elif ep != len(buf):
        say("xl: Invalid argument parsing ioport: %s" % buf)
    return IoportRange(first=start, number=(end - start + 1) & UINT32_MAX)


def parse_irq(buf: str) -> int:
    ul, ep = strtoul(buf, 10)
    if ep == 0 or ep != len(buf):
        raise ConfigError("xl: Invalid argument parsing irq: %s" % buf)
    if ul >= UINT32_MAX:
        raise ConfigError("xl: irq %x too big" % ul)
    return ul


def parse_iomem(buf: str) -> IomemRange:
    """sscanf(buf, "%lx,%lx%n@%lx%n") and the `buf[used] != '\\0'` check."""
    bad = ConfigError("xl: Invalid argument parsing iomem: %s" % buf)
    r = scan_hex_u64(buf, 0)
    if r is None:
        raise bad
    start, i = r
    if buf[i:i + 1] != ",":
        raise bad
    r = scan_hex_u64(buf, i + 1)
    if r is None:
        raise bad
    number, used = r
    rng = IomemRange(start=start, number=number)
    if buf[used:used + 1] == "@":
        r = scan_hex_u64(buf, used + 1)
        if r is not None:
            rng.gfn, used = r
    if used != len(buf):
        raise bad
    return rng
