"""Reading a restore or migration stream past xl's header, as libxl and its
restore helper read it (libxl_stream_read.c; libxl-save-helper running
xc_domain_restore, xg_sr_restore.c), with the messages they print.

The formats are Xen's docs/specs/libxl-migration-stream.pandoc and
libxc-migration-stream.pandoc.  libxl reads through its datacopier
(libxl_aoutils.c datacopier_readable), which takes an end of file as the
end of the read: a short header or record is checked with the bytes it got,
the rest of the buffer zero.  libxc's read_exact (xc_private.c) fails at an
end of file with errno 0.

The simulated host has no memory for a domain: a stream that carries a
libxc record of a saved guest's memory or vCPU state (the first a real Xen
host's save sends is X86_PV_INFO), or libxl's END record before libxc's
part (a domain left without any), is refused at that record (Refused), in
one line."""

from __future__ import annotations

import os
import struct
import sys

# libxl_sr_stream_format.h
RESTORE_STREAM_IDENT = 0x4C6962786C466D74       # "LibxlFmt"
RESTORE_STREAM_VERSION = 2
RESTORE_OPT_BIG_ENDIAN = 1 << 0
REC_ALIGN_ORDER = 3
REC_TYPE_END = 0
REC_TYPE_LIBXC_CONTEXT = 1
REC_TYPE_EMULATOR_XENSTORE_DATA = 2
REC_TYPE_EMULATOR_CONTEXT = 3
REC_TYPE_CHECKPOINT_END = 4
REC_TYPE_CHECKPOINT_STATE = 5
_LIBXL_HDR = struct.Struct(">QII")              # ident, version, options (big-endian)
_LIBXL_RHDR = struct.Struct("=II")              # type, length

# xg_sr_stream_format.h (libxc's image header, domain header, records)
IHDR_MARKER = 0xFFFFFFFFFFFFFFFF
IHDR_ID = 0x58454E46                            # "XENF"
IHDR_VERSION = 3
IHDR_OPT_LITTLE_ENDIAN = 0
IHDR_OPT_BIG_ENDIAN = 1 << 0
DHDR_TYPE_X86_PV = 1
DHDR_TYPE_X86_HVM = 2
XC_PAGE_SHIFT = 12
XC_REC_LENGTH_MAX = 128 << 20
XC_REC_TYPE_OPTIONAL = 0x80000000
XC_REC_TYPE_VERIFY = 0x0D
XC_REC_TYPE_CHECKPOINT = 0x0E
# the records each restore handles: xg_sr_restore.c process_record (END,
# PAGE_DATA, STATIC_DATA_END), x86_pv_process_record, x86_hvm_process_record
_COMMON_RECORDS = frozenset((0x00, 0x01, 0x10))
_PV_RECORDS = frozenset((0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0C, 0x11, 0x12))
_HVM_RECORDS = frozenset((0x08, 0x09, 0x0A, 0x11, 0x12))
_IHDR = struct.Struct("<Q")                     # marker, then >IIH id, version, options
_IHDR_REST = struct.Struct(">IIH6x")
_DHDR = struct.Struct("=IHHII")                 # type, page_shift, reserved, major, minor
_XC_RHDR = struct.Struct("=II")

# xg_sr_common.c dhdr_types, mandatory_rec_types
_DHDR_TYPES = {DHDR_TYPE_X86_PV: "x86 PV", DHDR_TYPE_X86_HVM: "x86 HVM"}
_XC_REC_TYPES = ("End", "Page data", "x86 PV info", "x86 PV P2M frames", "x86 PV vcpu basic",
                 "x86 PV vcpu extended", "x86 PV vcpu xsave", "Shared info", "x86 TSC info",
                 "HVM context", "HVM params", "Toolstack", "x86 PV vcpu msrs", "Verify",
                 "Checkpoint", "Checkpoint dirty pfn list", "Static data end",
                 "x86 CPUID policy", "x86 MSR policy")

# libxl_types.idl libxl_error
ERROR_FAIL = -3

# where libxl logs (Debian's libxenlight 4.17: tests/toolstack/test_libxl_positions.py)
POS_IDENT = "libxl_stream_read.c:340:stream_header_done"
POS_VERSION = "libxl_stream_read.c:347:stream_header_done"
POS_BIG_ENDIAN = "libxl_stream_read.c:353:stream_header_done"
POS_EMU_XENSTORE = "libxl_stream_read.c:589:process_record"
POS_EMU_CONTEXT = "libxl_stream_read.c:617:process_record"
POS_CHECKPOINT_END = "libxl_stream_read.c:627:process_record"
POS_CHECKPOINT_STATE = "libxl_stream_read.c:636:process_record"
POS_UNRECOGNISED = "libxl_stream_read.c:646:process_record"
POS_RESTORE_DONE = "libxl_stream_read.c:850:libxl__xc_domain_restore_done"


class Refused(Exception):
    """The stream needs what the simulated host lacks (the line to print)."""


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()


def _log(pos: str, msg: str) -> None:
    """libxl's LOG(ERROR, ...): no domain in the prefix."""
    _err("libxl: error: %s: %s\n" % (pos, msg))


def _xc(level: str, msg: str) -> None:
    """libxc's IPRINTF / ERROR (xc_private.c xc_reportv): errors carry
    XC_INTERNAL_ERROR's description."""
    _err("xc: %s: %s%s\n" % (level, msg, ": Internal error" if level == "error" else ""))


def _read_upto(fd: int, n: int) -> bytes:
    """read(2) until N bytes or the end of the stream."""
    data = b""
    while len(data) < n:
        try:
            chunk = os.read(fd, min(n - len(data), 1 << 16))
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    return data


def _skip(fd: int, n: int) -> int:
    """Read and drop N bytes (a record body nobody keeps); -> bytes read."""
    got = 0
    while got < n:
        try:
            chunk = os.read(fd, min(n - got, 1 << 16))
        except InterruptedError:
            continue
        if not chunk:
            break
        got += len(chunk)
    return got


def _roundup(n: int, order: int) -> int:
    return (n + (1 << order) - 1) & ~((1 << order) - 1)


def _rec_type_to_str(rtype: int) -> str:
    if not rtype & XC_REC_TYPE_OPTIONAL and rtype < len(_XC_REC_TYPES):
        return _XC_REC_TYPES[rtype]
    return "Reserved"


def stream_read(fd: int, hvm: bool) -> int:
    """libxl__stream_read_start and its callbacks for a plain (not
    checkpointed) stream: the header (stream_header_done), then records
    (record_header_done, record_body_done, process_record).  -> the
    stream's rc as domcreate_stream_done gets it; raises Refused."""
    raw = _read_upto(fd, _LIBXL_HDR.size)
    ident, version, options = _LIBXL_HDR.unpack(raw + bytes(_LIBXL_HDR.size - len(raw)))
    if ident != RESTORE_STREAM_IDENT:
        _log(POS_IDENT, "Invalid ident: expected 0x%016x, got 0x%016x"
             % (RESTORE_STREAM_IDENT, ident))
        return ERROR_FAIL
    if version != RESTORE_STREAM_VERSION:
        _log(POS_VERSION, "Unexpected Version: expected %d, got %d"
             % (RESTORE_STREAM_VERSION, version))
        return ERROR_FAIL
    if options & RESTORE_OPT_BIG_ENDIAN:
        _log(POS_BIG_ENDIAN, "Unable to handle big endian streams")
        return ERROR_FAIL
    while True:
        raw = _read_upto(fd, _LIBXL_RHDR.size)
        rtype, length = _LIBXL_RHDR.unpack(raw + bytes(_LIBXL_RHDR.size - len(raw)))
        if length:
            _skip(fd, _roundup(length, REC_ALIGN_ORDER))
        if rtype == REC_TYPE_END:
            raise Refused("the stream ends before the domain's memory image")
        if rtype == REC_TYPE_LIBXC_CONTEXT:
            retval, errnoval = xc_domain_restore(fd, hvm)
            # libxl__xc_domain_restore_done: LOGEV(ERROR, errnoval, ...)
            _log(POS_RESTORE_DONE, "restoring domain: %s" % os.strerror(errnoval))
            return ERROR_FAIL
        if rtype == REC_TYPE_EMULATOR_XENSTORE_DATA and not hvm:
            _log(POS_EMU_XENSTORE, "Received a xenstore emulator record when none was expected")
        elif rtype == REC_TYPE_EMULATOR_CONTEXT and not hvm:
            _log(POS_EMU_CONTEXT, "Received an emulator context record when none was expected")
        elif rtype == REC_TYPE_CHECKPOINT_END:
            _log(POS_CHECKPOINT_END, "Unexpected CHECKPOINT_END record in stream")
        elif rtype == REC_TYPE_CHECKPOINT_STATE:
            _log(POS_CHECKPOINT_STATE, "Unexpected CHECKPOINT_STATE record in stream")
        elif rtype in (REC_TYPE_EMULATOR_XENSTORE_DATA, REC_TYPE_EMULATOR_CONTEXT):
            raise Refused("an HVM domain's device model state cannot be loaded")
        else:
            _log(POS_UNRECOGNISED, "Unrecognised record 0x%08x" % rtype)
        return ERROR_FAIL


def _read_exact(fd: int, n: int) -> bytes | None:
    """read_exact (xc_private.c): None at an end of file (errno 0)."""
    data = _read_upto(fd, n)
    return data if len(data) == n else None


def xc_domain_restore(fd: int, hvm: bool) -> tuple[int, int]:
    """The helper's xc_domain_restore (xg_sr_restore.c): read_headers, then
    restore(): the guest type's setup checks (x86_pv_setup,
    x86_hvm_setup), then records (read_record).  -> (retval, errno) as the
    helper's complete() reports them; errno is 0 where no call failed with
    one.  The first record raises Refused."""
    raw = _read_exact(fd, _IHDR.size + _IHDR_REST.size)
    if raw is None:
        _xc("error", "Failed to read Image Header from stream (0 = Success)")
        return -1, 0
    (marker,) = _IHDR.unpack_from(raw)
    ident, version, options = _IHDR_REST.unpack_from(raw, _IHDR.size)
    if marker != IHDR_MARKER:
        _xc("error", "Invalid marker: Got 0x%016x" % marker)
        return -1, 0
    if ident != IHDR_ID:
        _xc("error", "Invalid ID: Expected 0x%08x, Got 0x%08x" % (IHDR_ID, ident))
        return -1, 0
    if not 2 <= version <= 3:
        _xc("error", "Invalid Version: Expected 2 <= ver <= 3, Got %d" % version)
        return -1, 0
    if options & IHDR_OPT_BIG_ENDIAN:
        _xc("error", "Unable to handle big endian streams")
        return -1, 0
    raw = _read_exact(fd, _DHDR.size)
    if raw is None:
        _xc("error", "Failed to read Domain Header from stream (0 = Success)")
        return -1, 0
    gtype, page_shift, _, major, minor = _DHDR.unpack(raw)
    tname = _DHDR_TYPES.get(gtype, "Reserved")
    if major == 0:
        _xc("info", "Found %s domain, converted from legacy stream format" % tname)
    else:
        _xc("info", "Found %s domain from Xen %d.%d" % (tname, major, minor))
    _xc("info", "Restoring domain")
    page_size = (1 << page_shift) & 0xFFFFFFFF
    if not hvm and gtype != DHDR_TYPE_X86_PV:
        _xc("error", "Unable to restore %s domain into an x86_pv domain" % tname)
    elif hvm and gtype != DHDR_TYPE_X86_HVM:
        _xc("error", "Unable to restore %s domain into an x86 HVM domain" % tname)
    elif page_size != 1 << XC_PAGE_SHIFT:
        _xc("error", "Invalid page size %d for %s domains"
            % (page_size, "x86 HVM" if hvm else "x86_pv"))
    else:
        _records(fd, hvm)
    _xc("error", "Restore failed (0 = Success)")
    return -1, 0


def _records(fd: int, hvm: bool) -> None:
    """restore()'s loop of a plain stream: read_record, then
    process_record: what needs no hypervisor is done as libxc does it (a
    VERIFY record, an optional record nobody handles, a mandatory one
    nobody handles, a CHECKPOINT); the others carry or load the guest's
    memory and vCPU state (Refused).  Returns where restore() fails."""
    handled = _HVM_RECORDS if hvm else _PV_RECORDS
    while True:
        raw = _read_exact(fd, _XC_RHDR.size)
        if raw is None:
            _xc("error", "Failed to read Record Header from stream (0 = Success)")
            return
        rtype, length = _XC_RHDR.unpack(raw)
        if length > XC_REC_LENGTH_MAX:
            _xc("error", "Record (0x%08x, %s) length %#x exceeds max (%#x)"
                % (rtype, _rec_type_to_str(rtype), length, XC_REC_LENGTH_MAX))
            return
        datasz = _roundup(length, REC_ALIGN_ORDER)
        if _skip(fd, datasz) < datasz:
            _xc("error", "Failed to read %d bytes of data for record (0x%08x, %s)"
                " (0 = Success)" % (datasz, rtype, _rec_type_to_str(rtype)))
            return
        if rtype == XC_REC_TYPE_VERIFY:
            continue                                  # DPRINTF("Verify mode enabled")
        if rtype == XC_REC_TYPE_CHECKPOINT:
            _xc("error", "Found checkpoint in non-checkpointed stream")
            return
        if rtype not in handled and rtype not in _COMMON_RECORDS:
            if rtype & XC_REC_TYPE_OPTIONAL:
                continue                              # DPRINTF("Ignoring optional record ...")
            _xc("error", "Mandatory record %#x (%s) not handled"
                % (rtype, _rec_type_to_str(rtype)))
            return
        raise Refused("the domain's memory and vCPU state cannot be loaded")
