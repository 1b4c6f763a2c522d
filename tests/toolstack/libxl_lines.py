"""The `file.c:LINE` positions compiled into the suite's peer, Debian bookworm's
xen 4.17.5+72-g01140da4e8-1 (libxenlight.so.4.17, libxenguest.so.4.17).

libxl's LOG* macros pass `__FILE__, __LINE__, __func__` to libxl__log(ctx,
level, errno, file, line, func, domid, fmt, ...) (libxl_internal.h), so the
line of each message is an immediate loaded into the fifth argument register
(%r8d) next to the `lea` of its format string; xc_dom_panic passes
`__FILE__, __LINE__` to xc_dom_panic_func(xch, file, line, err, fmt, ...)
(xenguest.h), the line in %edx.  Reading them from the binary catches what the
upstream source alone cannot: Debian's patches shift libxl_create.c by two
lines (upstream stable-4.17 at 01140da4e8 has "cannot make domain" at 1294,
the Debian build prints 1296).
"""

from __future__ import annotations

import functools
import re
import subprocess

LIBXL = "/usr/lib/x86_64-linux-gnu/libxenlight.so.4.17"
LIBXENGUEST = "/usr/lib/x86_64-linux-gnu/libxenguest.so.4.17"


@functools.lru_cache(maxsize=None)
def _disassembly(lib: str) -> tuple[bytes, list[str]]:
    data = open(lib, "rb").read()
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", lib], check=True,
                          capture_output=True, text=True).stdout
    return data, text.splitlines()


def _rodata_vma_minus_offset(lib: str) -> int:
    out = subprocess.run(["objdump", "-h", lib], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 6 and f[1] == ".rodata":
            return int(f[3], 16) - int(f[5], 16)
    raise LookupError(".rodata")


def lines_of(fmt: str, lib: str = LIBXL, reg: str = "%r8d") -> set[int]:
    """Every line number passed with the format string FMT (one per call site)."""
    data, dis = _disassembly(lib)
    delta = _rodata_vma_minus_offset(lib)
    found = set()
    for m in re.finditer(re.escape(fmt.encode() + b"\0"), data):
        mark = "# %x " % (m.start() + delta)
        for i, insn in enumerate(dis):
            if mark not in insn or "lea " not in insn:
                continue
            start = i                          # the call sequence around the lea
            while start > i - 40 and "call" not in dis[start - 1]:
                start -= 1
            end = i
            while "call" not in dis[end]:
                end += 1
            near = []                          # the load nearest the lea is its own
            for j in range(start, end):
                hit = re.search(r"mov\s+\$0x([0-9a-f]+),%s$" % re.escape(reg), dis[j])
                if hit:
                    near.append((abs(j - i), int(hit.group(1), 16)))
            if near:
                found.add(min(near)[1])
    if not found:
        raise LookupError("%r not found in %s" % (fmt, lib))
    return found


def line_of(fmt: str, lib: str = LIBXL, reg: str = "%r8d") -> int:
    (line,) = lines_of(fmt, lib, reg)
    return line


def destroyed_again(domid: int | None) -> list[str]:
    """What a create that failed after libxl__domain_make logs last.
    libxl_create.c domcreate_complete destroys guest_domid and
    domain_create_cb hands it to xl, whose create_domain (xl_vmcontrol.c
    error_out) destroys it again if libxl_domid_valid_guest: libxl_domain.c
    libxl__destroy_domid finds no such domain, then domain_destroy_callback
    and domain_destroy_cb report the failure.  domid None: Xen made no
    domain (guest_domid is INVALID_DOMID, logged without "Domain N:"), so
    libxl's own destroy is the one that fails, reported by
    domcreate_destruction_cb, and xl destroys nothing more."""
    def at(fmt: str, file: str, func: str) -> str:
        prefix = "" if domid is None else "Domain %d:" % domid
        return "libxl: error: %s:%d:%s: %s%s" % (file, line_of(fmt), func, prefix, fmt)
    lines = [at("Non-existant domain", "libxl_domain.c", "libxl__destroy_domid"),
             at("Unable to destroy guest", "libxl_domain.c", "domain_destroy_callback")]
    if domid is None:
        return lines + [at("unable to destroy domain following failed creation",
                           "libxl_create.c", "domcreate_destruction_cb")]
    return lines + [at("Destruction of domain failed", "libxl_domain.c", "domain_destroy_cb")]
