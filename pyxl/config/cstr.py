"""C library string conversions, as xl's code sees them (glibc semantics).

strtoul/strtol/strtoull with their quirks: leading whitespace, optional sign
(a '-' negates in unsigned arithmetic), base 0 prefixes, saturation on
overflow (ULONG_MAX / LONG_MIN / LONG_MAX with ERANGE), and the end offset
(0 when nothing was converted).  atoi, sscanf("%x") and strtok are here too.
"""

from __future__ import annotations

import threading

ERANGE = 34

ULONG_MAX = (1 << 64) - 1
LONG_MAX = (1 << 63) - 1
LONG_MIN = -(1 << 63)

_SPACE = " \t\n\v\f\r"


class _Errno(threading.local):
    value = 0


_errno = _Errno()


def get_errno() -> int:
    """C's errno as far as xl's parsing can see it: set to ERANGE by an
    overflowing conversion here and never cleared by a successful one (xl's
    vif rate check reads a stale ERANGE, so this matters)."""
    return _errno.value


def set_errno(value: int) -> None:
    _errno.value = value


def _overflow() -> None:
    _errno.value = ERANGE


def _digits(s: str, i: int, base: int) -> tuple[int, int, bool]:
    val = 0
    start = i
    while i < len(s):
        c = s[i]
        if "0" <= c <= "9":
            d = ord(c) - 48
        elif "a" <= c.lower() <= "z":
            d = ord(c.lower()) - 87
        else:
            break
        if d >= base:
            break
        val = val * base + d
        i += 1
    return val, i, i > start


def _parse(s: str, base: int) -> tuple[int, bool, int, bool]:
    """-> (magnitude, negative, end, ok)"""
    i = 0
    while i < len(s) and s[i] in _SPACE:
        i += 1
    neg = False
    if i < len(s) and s[i] in "+-":
        neg = s[i] == "-"
        i += 1
    if base in (0, 16) and s[i:i + 2].lower() == "0x":
        val, j, ok = _digits(s, i + 2, 16)
        if ok:
            return val, neg, j, True
        # "0x" with no hex digit: the "0" is the number
        return 0, neg, i + 1, True
    if base == 0:
        base = 8 if s[i:i + 1] == "0" else 10
    val, j, ok = _digits(s, i, base)
    if not ok:
        return 0, False, 0, False
    return val, neg, j, True


def strtoul(s: str, base: int = 10) -> tuple[int, int]:
    """-> (value, end); value wraps like C for '-', saturates at ULONG_MAX.
    `end` is 0 when no digits were found."""
    val, neg, end, ok = _parse(s, base)
    if not ok:
        return 0, 0
    if val > ULONG_MAX:
        _overflow()
        return ULONG_MAX, end
    if neg:
        val = (-val) & ULONG_MAX
    return val, end


def strtoul_erange(s: str, base: int = 10) -> tuple[int, int, bool]:
    """strtoul plus whether it overflowed (errno == ERANGE)."""
    val, neg, end, ok = _parse(s, base)
    if not ok:
        return 0, 0, False
    if val > ULONG_MAX:
        _overflow()
        return ULONG_MAX, end, True
    if neg:
        val = (-val) & ULONG_MAX
    return val, end, False


def strtol(s: str, base: int = 10) -> tuple[int, int, bool]:
    """-> (value, end, erange)"""
    val, neg, end, ok = _parse(s, base)
    if not ok:
        return 0, 0, False
    if neg:
        val = -val
    if val > LONG_MAX:
        _overflow()
        return LONG_MAX, end, True
    if val < LONG_MIN:
        _overflow()
        return LONG_MIN, end, True
    return val, end, False


def atoi(s: str) -> int:
    """atoi: strtol base 10 truncated to a C int."""
    val, _, _ = strtol(s, 10)
    val &= 0xFFFFFFFF
    return val - (1 << 32) if val >= 1 << 31 else val


def strtok(s: str, delims: str) -> list[str]:
    """All tokens strtok(3) would return: runs of delimiters vanish."""
    out: list[str] = []
    cur: list[str] = []
    for ch in s:
        if ch in delims:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def scan_hex_uint(s: str, i: int = 0) -> tuple[int, int] | None:
    """sscanf("%x%n") at s[i:]: skips blanks, optional sign and 0x; the value
    is truncated to 32 bits.  -> (value, end) or None."""
    val, neg, end, ok = _parse(s[i:], 16)
    if not ok:
        return None
    if val > ULONG_MAX:
        _overflow()
        val = ULONG_MAX
    if neg:
        val = -val
    return val & 0xFFFFFFFF, i + end


def scan_hex_u64(s: str, i: int = 0) -> tuple[int, int] | None:
    """sscanf("%" SCNx64) at s[i:]: like scan_hex_uint, 64-bit (saturating)."""
    val, neg, end, ok = _parse(s[i:], 16)
    if not ok:
        return None
    if val > ULONG_MAX:
        _overflow()
        val = ULONG_MAX
    elif neg:
        val = (-val) & ULONG_MAX
    return val, i + end


def wrap_int(v: int) -> int:
    """Store into a C int (32-bit, two's complement)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def wrap_u32(v: int) -> int:
    return v & 0xFFFFFFFF


def wrap_u64(v: int) -> int:
    return v & ((1 << 64) - 1)
