"""libxl_cpuid_parse_config (Xen 4.17.7): one "NAME=VALUE" of cpuid="host,...".

Each flag becomes a slice of a 32-character register filter ("x" = host
value, "0"/"1" = forced, "k"/"s" = keep) in a leaf entry shared with the
xend list form, or a character of a 64-character MSR filter.  Return codes
are libxl's (xl prints them): 1 no "=", 2 unknown name, 3 bad value.  As in
libxl the leaf/MSR entry is created before the value is checked, so a bad
value still leaves an (unfilled) entry behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyxl.config import cpuid_names as N
from pyxl.config.cstr import strtoul

if TYPE_CHECKING:
    from pyxl.config.model import CpuidPolicy

_REGS = ("eax", "ebx", "ecx", "edx")


def find_leaf(policy: CpuidPolicy, leaf: int, subleaf: int | None) -> dict:
    """cpuid_find_match: the entry for (leaf, subleaf), appended if new."""
    for e in policy.cpuid:
        if e["leaf"] == leaf and e.get("subleaf") == subleaf:
            return e
    entry = {"leaf": leaf, "subleaf": subleaf}
    policy.cpuid.append(entry)
    return entry


def _find_msr(policy: CpuidPolicy, index: int) -> dict:
    for e in policy.msr:
        if e["index"] == index:
            return e
    entry = {"index": index, "policy": "x" * 64}
    policy.msr.append(entry)
    return entry


def _cpuid_add(policy: CpuidPolicy, name: str, leaf: int, subleaf: int | None, reg: str,
               bit: int, length: int, val: str) -> int:
    entry = find_leaf(policy, leaf, subleaf)
    num, end = strtoul(val, 0)
    if end:
        flags = ["01"[(num >> i) & 1] for i in range(length)][::-1]
    elif val[:1] in ("x", "k", "s"):
        flags = [val[0]] * length
    else:
        return 3
    res = list(entry.get(reg) or "x" * 32)
    if name == "family":
        # the family is split between base (bits 8-11) and extended (20-27)
        if num < 16:
            res[20:24] = flags[4:8]
            res[4:12] = "00000000"
        else:
            num -= 15
            res[20:24] = "1111"
            for i in range(7):  # flags[0] keeps the top bit written above
                flags[7 - i] = "01"[num & 1]
                num >>= 1
            res[4:12] = flags[:8]
    elif name == "model":
        # high nibble: extended model (bits 16-19); low nibble: bits 4-7
        res[12:16] = flags[0:4]
        res[24:28] = flags[4:8]
    else:
        start = 32 - length - bit
        res[start:start + length] = flags
    entry[reg] = "".join(res)
    return 0


def _msr_add(policy: CpuidPolicy, index: int, bit: int, val: str) -> int:
    entry = _find_msr(policy, index)
    if len(val) != 1 or val not in "01xks":
        return 3
    pol = entry["policy"]
    # xc_msr has no deprecated 's': it is stored as 'k'
    entry["policy"] = pol[:63 - bit] + ("k" if val == "s" else val) + pol[64 - bit:]
    return 0


def parse_config(policy: CpuidPolicy, s: str) -> int:
    """One NAME=VALUE item; 0 on success, else libxl's error number."""
    sep = s.find("=")
    if sep < 0:
        return 1
    name, val = s[:sep], s[sep + 1:]
    legacy = N.LEGACY.get(name)
    if legacy is not None:
        return _cpuid_add(policy, name, *legacy, val)
    fbit = N.FEATURES.get(name)
    if fbit is None:
        return 2
    word = N.WORDS[fbit // 32]
    if len(word) == 4:
        _, leaf, subleaf, reg = word
        return _cpuid_add(policy, name, leaf, subleaf, reg, fbit % 32, 1, val)
    _, index, high = word
    return _msr_add(policy, index, fbit % 32 + (32 if high else 0), val)


ERRORS = {1: 'missing "=" in key=value', 2: "unknown CPUID flag name",
          3: "illegal CPUID value (must be: [0|1|x|k|s])"}
