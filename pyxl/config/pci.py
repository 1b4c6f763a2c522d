"""pci= specifications and rdm= (libxlu_pci.c), as Xen 4.17 parses them.

PCI_SPEC_STRING: "[DDDD:]BB:DD.F[@VSLOT][,key=value...]" or key=value items
only (bdf=, vslot=, permissive=, msitranslate=, seize=, power_mgmt=,
rdm_policy=, name=); exactly one of a BDF and name= must be present.
"""

from __future__ import annotations

from typing import Callable

from pyxl.config.cstr import atoi, scan_hex_uint
from pyxl.config.model import (PCI_FUNC_ALL, UNINITIALISED, DevicePci, RdmReservePolicy,
                               RdmReserveStrategy)

ERROR_FAIL = -3
ERROR_INVAL = -6
_XDIGITS = set("0123456789abcdefABCDEF")


def _scan_fixed(s: str, fmt_seps: list[str]) -> tuple[list[int], int | None]:
    """sscanf("%x<sep>%x<sep>...") -> (values, end_or_None): stops at the
    first mismatch, like sscanf; end is None when the final literal failed."""
    vals: list[int] = []
    i = 0
    for k, sep in enumerate(fmt_seps):
        r = scan_hex_uint(s, i)
        if r is None:
            return vals, None
        v, i = r
        vals.append(v)
        if s[i:i + 1] != sep:
            return vals, None
        i += 1
    return vals, i


class _NoFunction(Exception):
    """"BB:DD" not followed by '.': xl's sscanf then leaves %n unset and
    parse_bdf jumps by an uninitialised offset (a crash, or a rejection
    without a message); pyxl rejects the spec."""


def parse_bdf(pci: DevicePci, s: str) -> int | None:
    """parse_bdf -> end offset, or None (ERROR_INVAL)."""
    colons = 0
    for ch in s:
        if ch in _XDIGITS:
            continue
        if ch == ":":
            colons += 1
            continue
        break
    if colons == 1:
        domain = 0
        vals, end = _scan_fixed(s, [":", "."])
        if len(vals) != 2:
            return None
        if end is None:
            raise _NoFunction()
        bus, dev = vals
    elif colons == 2:
        vals, end = _scan_fixed(s, [":", ":", "."])
        if len(vals) != 3:
            return None
        if end is None:
            raise _NoFunction()
        domain, bus, dev = vals
    else:
        return None
    if domain > 0xFFFF or bus > 0xFF or dev > 0x1F:
        return None
    if s[end:end + 1] == "*":
        pci.vfunc_mask = PCI_FUNC_ALL
        func = 0
        end += 1
    else:
        r = scan_hex_uint(s, end)
        if r is None:
            return None
        func, end = r
        if func > 7:
            return None
        pci.vfunc_mask = 1
    pci.domain, pci.bus, pci.dev, pci.func = domain, bus, dev, func
    return end


def _parse_vslot(s: str, i: int = 0) -> tuple[int, int] | None:
    r = scan_hex_uint(s, i)
    if r is None or r[0] > 0x1F:
        return None
    return r[0] << 3, r[1]


def parse_pci(pci: DevicePci, spec: str, say_partial: Callable[[str], None]) -> int:
    """xlu_pci_parse_spec_string: fills `pci`, returns 0 or a libxl error
    code (the caller exits with -code).  Messages without a newline go to
    `say_partial`, as libxlu prints them."""
    try:
        return _parse_pci(pci, spec, say_partial)
    except _NoFunction:
        return ERROR_INVAL


def _parse_pci(pci: DevicePci, spec: str, say_partial: Callable[[str], None]) -> int:
    ptr = 0
    bdf_present = name_present = False
    end = parse_bdf(pci, spec)
    if end is not None:
        bdf_present = True
        ptr = end
        if spec[ptr:ptr + 1] == "@":
            r = _parse_vslot(spec, ptr + 1)
            if r is None:
                return ERROR_INVAL
            pci.vdevfn, ptr = r
        if spec[ptr:ptr + 1] == ",":
            ptr += 1
        elif ptr < len(spec):
            return ERROR_INVAL
    while ptr < len(spec):
        eq = spec.find("=", ptr)
        if eq < 0:
            return ERROR_INVAL
        key = spec[ptr:eq]
        comma = spec.find(",", eq + 1)
        if comma < 0:
            val, ptr = spec[eq + 1:], len(spec)
        else:
            val, ptr = spec[eq + 1:comma], comma + 1
        ret = 0
        if key == "bdf":
            if parse_bdf(pci, val) is None:
                ret = ERROR_INVAL
            else:
                bdf_present = True
        elif key == "vslot":
            r = _parse_vslot(val)
            if r is None:
                ret = ERROR_INVAL
            else:
                pci.vdevfn = r[0]
        elif key == "permissive":
            pci.permissive = atoi(val) != 0
        elif key == "msitranslate":
            pci.msitranslate = atoi(val) != 0
        elif key == "seize":
            pci.seize = atoi(val) != 0
        elif key == "power_mgmt":
            pci.power_mgmt = atoi(val) != 0
        elif key == "rdm_policy":
            p = RdmReservePolicy.from_string(val)
            if p is None:
                say_partial("Unknown RDM policy: %s" % val)
                ret = ERROR_FAIL
            else:
                pci.rdm_policy = p
        elif key == "name":
            name_present = True
            pci.name = val
        else:
            say_partial("Unknown PCI_SPEC_STRING option: %s" % key)
            ret = ERROR_INVAL
        if ret:
            return ret
    if bdf_present == name_present:
        return ERROR_INVAL
    return 0


def parse_rdm(s: str, say_partial: Callable[[str], None]) -> tuple[int, int] | None:
    """xlu_rdm_parse -> (strategy, policy) on success, None on failure.
    xl parses into an uninitialised local, so a field the string does not set
    is UNINITIALISED; and a valid policy= is (wrongly) treated as a failure."""
    strategy = policy = UNINITIALISED
    state = "type"
    buf = s + "\0"
    tok = 0
    ptr = 0
    while ptr < len(buf):
        ch = buf[ptr]
        if state == "type":
            if ch == "=":
                word = buf[tok:ptr]
                if word == "strategy":
                    state = "strategy"
                elif word == "policy":
                    state = "policy"
                else:
                    say_partial("Unknown RDM state option: %s" % word)
                    return None
                tok = ptr + 1
        elif state == "strategy":
            if ch in ("\0", ","):
                state = "type" if ch == "," else "terminal"
                word = buf[tok:ptr]
                if word == "host":
                    strategy = RdmReserveStrategy.HOST
                else:
                    say_partial("Unknown RDM strategy option: %s" % word)
                    return None
                tok = ptr + 1
        elif state == "policy":
            if ch in (",", "\0"):
                state = "type" if ch == "," else "terminal"
                word = buf[tok:ptr]
                p = RdmReservePolicy.from_string(word)
                if p is not None:
                    return None
                say_partial("Unknown RDM policy: %s" % word)
                tok = ptr + 1
        ptr += 1
    if tok != ptr or state != "terminal":
        return None
    return strategy, policy
