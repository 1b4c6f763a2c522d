"""A domain's core file as libxenguest's xc_domain_dumpcore writes it
(tools/libs/guest/xg_core.c, xg_core.h): an ELF64 ET_CORE file whose
sections are .shstrtab, .note.Xen (the DUMPCORE notes: none, header,
xen_version, format_version), .xen_p2m (pfn -> gmfn pairs) and .xen_pages
(the pages, page aligned).

A domain of the simulated host is a process, not guest-physical memory:
it has no pages to dump, so its core says so (xch_nr_pages 0, empty p2m and
pages); the notes name its vcpus and the hypervisor as Xen's do.
"""

from __future__ import annotations

import struct

from pyxl.hypervisor.host import XEN_EXTRA, XEN_MAJOR, XEN_MINOR

XC_CORE_MAGIC = 0xF00FEBED                  # xenctrl.h (PV; _HVM is ...EE)
XEN_ELFNOTE_DUMPCORE_NONE = 0x2000000       # public/elfnote.h
XEN_ELFNOTE_DUMPCORE_HEADER = 0x2000001
XEN_ELFNOTE_DUMPCORE_XEN_VERSION = 0x2000002
XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION = 0x2000003
FORMAT_VERSION_CURRENT = (0 << 32) | 1      # XEN_DUMPCORE_FORMAT_VERSION(0, 1)
PAGE_SIZE = 4096
ET_CORE, EM_X86_64, EV_CURRENT = 4, 62, 1
SHT_PROGBITS, SHT_STRTAB, SHT_NOTE = 1, 3, 7
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")


def _note(kind: int, desc: bytes) -> bytes:
    """struct elfnote: namesz, descsz, type, name "Xen\\0" (8-byte aligned)."""
    return struct.pack("<III4s", 4, len(desc), kind, b"Xen\0") + desc


def _xen_version() -> bytes:
    """xen_dumpcore_elfnote_xen_version_desc: major, minor, extraversion[16],
    compile_info (compiler[64] compile_by[16] compile_domain[32]
    compile_date[32]), capabilities[1024], changeset[64],
    platform_parameters (virt_start), pagesize."""
    return (struct.pack("<QQ", XEN_MAJOR, XEN_MINOR)
            + XEN_EXTRA.encode().ljust(16, b"\0")
            + b"pyxl (simulated hypervisor)".ljust(64, b"\0") + b"pyxl".ljust(16, b"\0")
            + b"".ljust(32, b"\0") + b"".ljust(32, b"\0")
            + b"xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64".ljust(1024, b"\0")
            + b"".ljust(64, b"\0")
            + struct.pack("<QQ", 0xFFFF800000000000, PAGE_SIZE))


def core_image(nr_vcpus: int) -> bytes:
    """The whole core file of a domain with `nr_vcpus` vcpus and no pages."""
    notes = (_note(XEN_ELFNOTE_DUMPCORE_NONE, b"")
             + _note(XEN_ELFNOTE_DUMPCORE_HEADER,
                     struct.pack("<QQQQ", XC_CORE_MAGIC, nr_vcpus, 0, PAGE_SIZE))
             + _note(XEN_ELFNOTE_DUMPCORE_XEN_VERSION, _xen_version())
             + _note(XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION,
                     struct.pack("<Q", FORMAT_VERSION_CURRENT)))
    names = [b"", b".shstrtab", b".note.Xen", b".xen_p2m", b".xen_pages"]
    strtab = b"\0".join(names) + b"\0"
    offs = {}
    pos = 0
    for n in names:
        offs[n] = pos
        pos += len(n) + 1
    nsec = len(names)
    data_start = _EHDR.size + nsec * _SHDR.size
    strtab_off = data_start
    notes_off = strtab_off + len(strtab)
    notes_off += -notes_off % 8
    p2m_off = notes_off + len(notes)
    p2m_off += -p2m_off % 8
    pages_off = p2m_off + -p2m_off % PAGE_SIZE
    shdrs = [
        _SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        _SHDR.pack(offs[b".shstrtab"], SHT_STRTAB, 0, 0, strtab_off, len(strtab), 0, 0, 1, 0),
        _SHDR.pack(offs[b".note.Xen"], SHT_NOTE, 0, 0, notes_off, len(notes), 0, 0, 8, 0),
        _SHDR.pack(offs[b".xen_p2m"], SHT_PROGBITS, 0, 0, p2m_off, 0, 0, 0, 8, 16),
        _SHDR.pack(offs[b".xen_pages"], SHT_PROGBITS, 0, 0, pages_off, 0, 0, 0, PAGE_SIZE,
                   PAGE_SIZE),
    ]
    ident = b"\x7fELF" + bytes([2, 1, EV_CURRENT, 0]) + bytes(8)
    ehdr = _EHDR.pack(ident, ET_CORE, EM_X86_64, EV_CURRENT, 0, 0, _EHDR.size, 0,
                      _EHDR.size, 56, 0, _SHDR.size, nsec, 1)
    out = bytearray(ehdr + b"".join(shdrs))
    out += strtab
    out += bytes(notes_off - len(out)) + notes
    out += bytes(pages_off - len(out))
    return bytes(out)
