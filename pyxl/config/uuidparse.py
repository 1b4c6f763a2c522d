"""libuuid's uuid_parse, which xl uses for uuid= and vtpm uuid=."""

from __future__ import annotations

import uuid as _uuid

_HEX = set("0123456789abcdefABCDEF")


def parse_uuid(s: str) -> _uuid.UUID | None:
    """-> uuid.UUID, or None when libuuid would reject `s`."""
    if len(s) != 36:
        return None
    for i, ch in enumerate(s):
        if i in (8, 13, 18, 23):
            if ch != "-":
                return None
        elif ch not in _HEX:
            return None
    return _uuid.UUID(s)
