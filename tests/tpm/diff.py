"""Send the same raw TPM 1.2 commands to two endpoints and compare the answers
field by field (the suite's differential check of pyxl's engine against
libtpms, the reference TPM 1.2 in swtpm).

Each answer is decoded into named fields, each with a category:
  MUST    identical on both sides;
  VENDOR  implementation-specific by nature (identity, slot counts, timeouts,
          handle values): reported, allowed;
  RANDOM  never compared (random bytes, nonces, key material, ticks).
Known, deliberate differences of the Xen vTPM (the Berlios emulator pyxl
models) from libtpms are declared separately, with the reason, by the caller
(`declared=` globs over "command name:field").

Groups: startup, pcr, pcr_reset, getcap, random, sha1, misc, malformed ("all"),
and owner (TakeOwnership ... OwnerClear; both TPMs need an EK; run it alone on
fresh TPMs, libtpms is disabled afterwards).

Also usable by hand:
  python tests/tpm/diff.py --a 127.0.0.1:PA --b 127.0.0.1:PB [--gen all|owner|GROUP,..] [-v]
"""

from __future__ import annotations

import argparse
import fnmatch
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

C1, C2 = 0x00C1, 0x00C2
MUST, VENDOR, RANDOM = "must", "vendor", "random"

RC_NAMES = {
    0: "SUCCESS", 1: "AUTHFAIL", 2: "BADINDEX", 3: "BAD_PARAMETER", 6: "DEACTIVATED",
    7: "DISABLED", 8: "DISABLED_CMD", 9: "FAIL", 10: "BAD_ORDINAL", 12: "INVALID_KEYHANDLE",
    16: "INVALID_PCR_INFO", 18: "NOSRK", 21: "RESOURCES", 25: "BAD_PARAM_SIZE",
    26: "SHA_THREAD", 27: "SHA_ERROR", 30: "BADTAG", 34: "INVALID_AUTHHANDLE",
    35: "NO_ENDORSEMENT", 38: "INVALID_POSTINIT", 44: "BAD_MODE", 50: "NOTRESETABLE",
    51: "NOTLOCAL", 88: "BAD_HANDLE",
    14: "INAPPROPRIATE_ENC", 36: "INVALID_KEYUSAGE", 67: "INVALID_STRUCTURE",
    92: "MA_TICKET_SIGNATURE", 93: "MA_DESTINATION", 94: "MA_SOURCE", 95: "MA_AUTHORITY",
    98: "BAD_SIGNATURE",
}


def rc_name(rc: int) -> str:
    return "TPM_%s(%d)" % (RC_NAMES.get(rc, "rc"), rc)


def frame(tag: int, ordinal: int, params: bytes = b"", size: int | None = None) -> bytes:
    body = struct.pack(">I", ordinal) + params
    return struct.pack(">HI", tag, size if size is not None else 6 + len(body)) + body


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def u16(v: int) -> bytes:
    return struct.pack(">H", v)


@dataclass
class Cmd:
    name: str
    data: bytes | Callable[[dict], bytes]    # a callable builds from earlier answers
    group: str
    ordinal: int | None = None
    cap: int | None = None
    sub: bytes = b""
    waits: bool = False      # the TPM is expected to wait for more bytes
    more: bool = False       # a TPM might send a second answer: look for one

    def __post_init__(self):
        if self.ordinal is None and isinstance(self.data, bytes) and len(self.data) >= 10:
            self.ordinal = struct.unpack(">I", self.data[6:10])[0]


# ---------------------------------------------------------------- generators

def gen_startup():
    return [Cmd("startup type %d" % t, frame(C1, 0x99, u16(t)), "startup") for t in (1, 2, 7)]


def _pattern(i: int) -> bytes:
    return bytes((i * 13 + 5 * j) & 0xFF for j in range(20))


def gen_pcr():
    out = []
    for i in list(range(24)) + [24, 0xFFFFFFFF]:
        out.append(Cmd("pcrread %d" % i, frame(C1, 0x15, u32(i)), "pcr"))
        out.append(Cmd("extend %d" % i, frame(C1, 0x14, u32(i) + _pattern(i & 0xFF)), "pcr"))
        out.append(Cmd("pcrread %d again" % i, frame(C1, 0x15, u32(i)), "pcr"))
    return out


def _select(pcrs, size=3) -> bytes:
    bits = bytearray(size)
    for p in pcrs:
        bits[p // 8] |= 1 << (p % 8)
    return u16(size) + bytes(bits)


def gen_pcr_reset():
    out = []
    for i in range(24):
        out.append(Cmd("pcr_reset %d" % i, frame(C1, 0xC8, _select([i])), "pcr_reset"))
        out.append(Cmd("pcrread %d after reset" % i, frame(C1, 0x15, u32(i)), "pcr_reset"))
    for name, sel in (("none", _select([])), ("16+23", _select([16, 23])),
                      ("size 0", u16(0)), ("size 2", _select([1], 2)),
                      ("size 4 pcr 25", _select([25], 4)), ("size 4 no bitmap", u16(4)),
                      ("size 9 short bitmap", u16(9) + b"\x01")):
        out.append(Cmd("pcr_reset %s" % name, frame(C1, 0xC8, sel), "pcr_reset"))
    return out


def _gc(label: str, cap: int, sub: bytes = b"") -> Cmd:
    return Cmd("getcap %s" % label, frame(C1, 0x65, u32(cap) + u32(len(sub)) + sub),
               "getcap", cap=cap, sub=sub)


PROPERTIES = {
    0x101: "PCR", 0x102: "DIR", 0x103: "MANUFACTURER", 0x104: "KEYS", 0x107: "MIN_COUNTER",
    0x10A: "AUTHSESS", 0x10B: "TRANSESS", 0x10C: "COUNTERS", 0x10D: "MAX_AUTHSESS",
    0x10E: "MAX_TRANSESS", 0x10F: "MAX_COUNTERS", 0x110: "MAX_KEYS", 0x111: "OWNER",
    0x112: "CONTEXT", 0x113: "MAX_CONTEXT", 0x114: "FAMILYROWS", 0x115: "TIS_TIMEOUT",
    0x116: "STARTUP_EFFECT", 0x117: "DELEGATE_ROW", 0x119: "MAX_DAASESS", 0x11A: "DAASESS",
    0x11B: "CONTEXT_DIST", 0x11C: "DAA_INTERRUPT", 0x11D: "SESSIONS", 0x11E: "MAX_SESSIONS",
    0x11F: "CMK_RESTRICTION", 0x120: "DURATION", 0x122: "ACTIVE_COUNTER",
    0x123: "MAX_NV_AVAILABLE", 0x124: "INPUT_BUFFER",
}
# properties whose value is the same on every TPM 1.2 a client may meet
PORTABLE_PROPERTIES = {0x101, 0x102, 0x111, 0x11F}     # ... and TPM_CAP_PROP_CMK_RESTRICTION

# the ordinals a client may ask TPM_CAP_ORD about: the TCG range, the
# TSC_ ordinals and the Xen vTPM's two vendor ordinals
ORDINAL_PROBES = list(range(0x00, 0xF3)) + [0x4000000A, 0x4000000B, 0x20000016, 0x2000007C]


def gen_getcap():
    out = [_gc("VERSION_VAL", 0x1A), _gc("VERSION", 0x06)]
    out += [_gc("PROPERTY " + n, 0x05, u32(p)) for p, n in sorted(PROPERTIES.items())]
    out += [_gc("FLAG PERMANENT", 0x04, u32(0x108)), _gc("FLAG VOLATILE", 0x04, u32(0x109))]
    out += [_gc("ORD 0x%x" % o, 0x01, u32(o)) for o in ORDINAL_PROBES]
    for alg in range(1, 11):
        out += [_gc("ALG %d" % alg, 0x02, u32(alg)), _gc("TRANS_ALG %d" % alg, 0x12, u32(alg)),
                _gc("AUTH_ENCRYPT %d" % alg, 0x17, u32(alg))]
    out += [_gc("PID %d" % p, 0x03, u16(p)) for p in range(1, 8)]
    out += [_gc("TRANS_ES %d" % e, 0x15, u16(e)) for e in range(1, 6)]
    out += [_gc("SYM_MODE %d" % m, 0x09, u32(m)) for m in range(1, 5)]
    out += [_gc("HANDLE %d" % rt, 0x14, u32(rt)) for rt in range(1, 11)]
    out.append(_gc("KEY_HANDLE", 0x07))
    for bits in (512, 2048, 4096):
        parms = struct.pack(">IHHI", 1, 3, 1, 12) + struct.pack(">III", bits, 2, 0)
        out.append(_gc("CHECK_LOADED RSA%d" % bits, 0x08, parms))
    out += [_gc("KEY_STATUS SRK", 0x0C, u32(0x40000000)), _gc("NV_LIST", 0x0D),
            _gc("NV_INDEX 0x00011101", 0x11, u32(0x00011101)),
            _gc("NV_INDEX 0xFFFFFFFF", 0x11, u32(0xFFFFFFFF)),
            _gc("NV_INDEX 0x10000001", 0x11, u32(0x10000001)), _gc("MFR", 0x10),
            _gc("SELECT_SIZE 1.2/3", 0x18, bytes([1, 2]) + u16(3)),
            _gc("SELECT_SIZE 1.2/4", 0x18, bytes([1, 2]) + u16(4)),
            _gc("SELECT_SIZE no subcap", 0x18), _gc("SELECT_SIZE 1 byte", 0x18, b"\x01"),
            _gc("SELECT_SIZE version 9.9", 0x18, bytes([9, 9]) + u16(3)),
            _gc("DA_LOGIC owner", 0x19, u16(2)),
            # requests a TPM must refuse
            _gc("area 0x0B", 0x0B), _gc("area 0xFF", 0xFF, u32(0)),
            _gc("PROPERTY 0x1FF", 0x05, u32(0x1FF)), _gc("PROPERTY no subcap", 0x05),
            _gc("PROPERTY 2-byte subcap", 0x05, u16(0x101)),
            _gc("FLAG 0x10A", 0x04, u32(0x10A))]
    return out


def gen_random():
    return [Cmd("getrandom %d" % n, frame(C1, 0x46, u32(n)), "random")
            for n in (0, 1, 20, 256, 1024, 2048, 4096, 0xFFFFFFFF)]


def gen_sha1():
    return [Cmd("sha1start", frame(C1, 0xA0), "sha1"),
            Cmd("sha1update 64", frame(C1, 0xA1, u32(64) + b"x" * 64), "sha1"),
            Cmd("sha1complete 3", frame(C1, 0xA2, u32(3) + b"end"), "sha1"),
            Cmd("sha1complete without start", frame(C1, 0xA2, u32(3) + b"end"), "sha1"),
            Cmd("sha1start again", frame(C1, 0xA0), "sha1"),
            Cmd("sha1update 5 (not a multiple of 64)", frame(C1, 0xA1, u32(5) + b"12345"), "sha1"),
            Cmd("sha1complete after bad update", frame(C1, 0xA2, u32(0)), "sha1")]


def _flush_oiap(answers: dict) -> bytes:
    r = answers.get("oiap")
    handle = r.raw[10:14] if r is not None and len(r.raw) >= 14 else bytes(4)
    return frame(C1, 0xBA, handle + u32(2))


def gen_misc():
    return [Cmd("continueselftest", frame(C1, 0x53), "misc"),
            Cmd("selftestfull", frame(C1, 0x50), "misc"),
            Cmd("gettestresult", frame(C1, 0x54), "misc"),
            Cmd("getticks", frame(C1, 0xF1), "misc"),
            Cmd("readpubek", frame(C1, 0x7C, bytes(20)), "misc"),
            Cmd("oiap", frame(C1, 0x0A), "misc"),
            Cmd("flush oiap session", _flush_oiap, "misc", ordinal=0xBA),
            Cmd("flush it again", _flush_oiap, "misc", ordinal=0xBA),
            Cmd("flush unknown auth handle", frame(C1, 0xBA, u32(0x0BADF00D) + u32(2)), "misc")]


def gen_malformed():
    gc = frame(C1, 0x65, u32(5) + u32(4) + u32(0x101))
    resize = lambda n: gc[:2] + u32(n) + gc[6:]  # noqa: E731
    retag = lambda t: u16(t) + gc[2:]             # noqa: E731
    return [
        Cmd("mal header only", gc[:6], "malformed", ordinal=0x65, waits=True),
        Cmd("mal truncated body", gc[:14], "malformed", ordinal=0x65, waits=True),
        Cmd("mal paramSize +8", resize(len(gc) + 8), "malformed", ordinal=0x65, waits=True),
        Cmd("mal paramSize -4", resize(len(gc) - 4), "malformed", ordinal=0x65, more=True),
        Cmd("mal paramSize 10", resize(10), "malformed", ordinal=0x65),
        Cmd("mal paramSize 6", resize(6), "malformed", ordinal=0x65),
        Cmd("mal paramSize 0", resize(0), "malformed", ordinal=0x65),
        Cmd("mal tag C4", retag(0xC4), "malformed", ordinal=0x65),
        Cmd("mal tag 0", retag(0), "malformed", ordinal=0x65),
        Cmd("mal tag FFFF", retag(0xFFFF), "malformed", ordinal=0x65),
        Cmd("mal tag C2 no auth", retag(0xC2), "malformed", ordinal=0x65),
        Cmd("mal tag C2 with auth", frame(C2, 0x65, u32(5) + u32(4) + u32(0x101) + u32(0x01000000)
                                          + bytes(20) + b"\0" + bytes(20)), "malformed"),
        Cmd("mal tag C4 ordinal 0x2D", frame(0xC4, 0x2D), "malformed"),
        Cmd("mal ordinal 0x1", frame(C1, 0x1), "malformed"),
        Cmd("mal ordinal 0xFF", frame(C1, 0xFF), "malformed"),
        Cmd("mal ordinal 0x7FFFFFFF", frame(C1, 0x7FFFFFFF), "malformed"),
        Cmd("mal ordinal 0x20000001", frame(C1, 0x20000001), "malformed"),
        Cmd("mal getcap no params", frame(C1, 0x65), "malformed"),
        Cmd("mal getcap subCapSize 100", frame(C1, 0x65, u32(5) + u32(100) + u32(0x101)),
            "malformed"),
        Cmd("mal getcap trailing bytes", frame(C1, 0x65, u32(5) + u32(4) + u32(0x101) + bytes(8)),
            "malformed"),
        Cmd("mal ownerclear without auth", frame(C1, 0x5B), "malformed"),
        Cmd("mal takeownership truncated", frame(C2, 0x0D, u16(5)), "malformed"),
        Cmd("mal extend short digest", frame(C1, 0x14, u32(10) + bytes(10)), "malformed"),
        Cmd("mal 4097 bytes", frame(C1, 0x46, u32(4) + bytes(4097 - 14)), "malformed", more=True),
        Cmd("mal 8192 bytes", frame(C1, 0x46, u32(4) + bytes(8192 - 14)), "malformed", more=True),
        Cmd("mal paramSize 1MiB", struct.pack(">HII", C1, 1 << 20, 0x46) + u32(4)
            + bytes(4096 - 14), "malformed", ordinal=0x46, waits=True),
        Cmd("mal two in one write", gc + gc, "malformed", more=True),
        Cmd("mal empty connection", b"", "malformed", ordinal=None, waits=True),
    ]


OWNER_SECRET = b"\x5a" * 20     # the same well-chosen secrets on both sides
SRK_SECRET = b"\xa5" * 20
TPM_KH_EK = 0x40000006


def _authorised(ordinal: int, params, session: str, secret: bytes = OWNER_SECRET,
                handles: bytes = b""):
    """A builder of an AUTH1 command whose session is the answer named
    `session` (OIAP) -- HMAC over SHA1(ordinal || params), TPM 1.2 Part 1."""
    import hashlib
    import hmac

    def build(answers: dict) -> bytes:
        r = answers.get(session)
        handle, even = (r.raw[10:14], r.raw[14:34]) if r and len(r.raw) >= 34 else (bytes(4),
                                                                                   bytes(20))
        p = params(answers) if callable(params) else params
        odd, cont = bytes(range(20)), b"\x00"
        digest = hashlib.sha1(u32(ordinal) + p).digest()
        auth = hmac.new(secret, digest + even + odd + cont, hashlib.sha1).digest()
        return frame(C2, ordinal, handles + p + handle + odd + cont + auth)
    return build


def _take_ownership_params(answers: dict) -> bytes:
    """TakeOwnership's parameters, secrets encrypted to this side's EK."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    body = answers["owner readpubek"].raw[10:]
    alg, enc, sig, psize = struct.unpack(">IHHI", body[:12])
    n = struct.unpack(">I", body[12 + psize:16 + psize])[0]
    ek = rsa.RSAPublicNumbers(65537, int.from_bytes(body[16 + psize:16 + psize + n], "big"))
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=b"TCPA")
    key = ek.public_key()
    srk = (bytes([1, 1, 0, 0]) + struct.pack(">HIB", 0x0011, 0, 1)
           + struct.pack(">IHH", 1, 3, 1) + u32(12) + struct.pack(">III", 2048, 2, 0)
           + u32(0) + u32(0) + u32(0))
    return (u16(5) + u32(256) + key.encrypt(OWNER_SECRET, oaep) + u32(256)
            + key.encrypt(SRK_SECRET, oaep) + srk)


def gen_owner():
    """Ownership and owner-authorised commands (needs an EK on both sides; ends
    with OwnerClear, after which libtpms is disabled: run it on fresh TPMs)."""
    g = "owner"
    oiap = lambda name: Cmd(name, frame(C1, 0x0A), g)  # noqa: E731
    return [
        Cmd("owner readpubek", frame(C1, 0x7C, bytes(20)), g),
        oiap("oiap 1"),
        Cmd("takeownership", _authorised(0x0D, _take_ownership_params, "oiap 1"), g,
            ordinal=0x0D),
        _gc("PROPERTY OWNER owned", 0x05, u32(0x111)),
        _gc("FLAG PERMANENT owned", 0x04, u32(0x108)),
        _gc("FLAG VOLATILE owned", 0x04, u32(0x109)),
        Cmd("readpubek when owned", frame(C1, 0x7C, bytes(20)), g),
        oiap("oiap 2"),
        Cmd("getcapabilityowner", _authorised(0x66, b"", "oiap 2"), g, ordinal=0x66),
        oiap("oiap 3"),
        Cmd("getcapabilityowner wrong secret", _authorised(0x66, b"", "oiap 3", bytes(20)), g,
            ordinal=0x66),
        oiap("oiap 4"),
        Cmd("ownerreadinternalpub EK", _authorised(0x81, u32(TPM_KH_EK), "oiap 4"), g,
            ordinal=0x81),
        # the delegation family table, managed by the owner
        Cmd("delegate_readtable empty", frame(C1, 0xDB), g, ordinal=0xDB),
        *_family_ops(g),
        *_delegation_ops(g),
        *_cmk_ops(g),
        oiap("oiap 5"),
        Cmd("ownerclear", _authorised(0x5B, b"", "oiap 5"), g, ordinal=0x5B),
        _gc("PROPERTY OWNER cleared", 0x05, u32(0x111)),
        _gc("PROPERTY CMK_RESTRICTION cleared", 0x05, u32(0x11F)),
        _gc("FLAG PERMANENT cleared", 0x04, u32(0x108)),
        Cmd("readpubek when cleared", frame(C1, 0x7C, bytes(20)), g),
        Cmd("delegate_readtable cleared", frame(C1, 0xDB), g, ordinal=0xDB),
    ]


def _family_ops(g: str) -> list[Cmd]:
    """Owner-authorised Delegate_Manage (familyID, opCode, opData): create two
    families, enable / lock / invalidate, with ReadTable after each step."""
    steps = [("create a", 0, 1, b"\x0a"), ("create b", 0, 1, b"\x0b"),
             ("enable 1", 1, 2, b"\x01"), ("admin lock 2", 2, 3, b"\x01"),
             ("enable bad size", 1, 2, b"\x01\x01"), ("unknown family", 9, 2, b"\x01"),
             ("bad opcode", 1, 7, b""), ("invalidate 1", 1, 4, b""),
             ("create c", 0, 1, b"\x0c")]
    out = []
    for i, (name, fam, op, data) in enumerate(steps):
        s = "oiap d%d" % i
        out += [Cmd(s, frame(C1, 0x0A), g),
                Cmd("delegate_manage " + name,
                    _authorised(0xD2, u32(fam) + u32(op) + u32(len(data)) + data, s), g,
                    ordinal=0xD2),
                Cmd("delegate_readtable after " + name, frame(C1, 0xDB), g, ordinal=0xDB)]
    return out


DELEGATE_SECRET = b"\x3c" * 20
ODD_OSAP = bytes(range(40, 60))


def _osap_authorised(ordinal: int, params, session: str, secret: bytes):
    """A builder of an AUTH1 command under the OSAP/DSAP answer named `session`:
    shared = HMAC(secret, nonceEvenOSAP || ODD_OSAP); params(even, shared) may
    use the session for ADIP."""
    import hashlib
    import hmac

    def build(answers: dict) -> bytes:
        r = answers.get(session)
        ok = r is not None and len(r.raw) >= 54
        handle, even, even_osap = ((r.raw[10:14], r.raw[14:34], r.raw[34:54]) if ok
                                   else (bytes(4), bytes(20), bytes(20)))
        shared = hmac.new(secret, even_osap + ODD_OSAP, hashlib.sha1).digest()
        p = params(answers, even, shared) if callable(params) else params
        odd, cont = bytes(range(20)), b"\x00"
        digest = hashlib.sha1(u32(ordinal) + p).digest()
        auth = hmac.new(shared, digest + even + odd + cont, hashlib.sha1).digest()
        return frame(C2, ordinal, p + handle + odd + cont + auth)
    return build


def _delegate_public(family: int, per1: int) -> bytes:
    """TPM_DELEGATE_PUBLIC: label 1, no PCRs, owner bits per1, familyID, count 0."""
    return (struct.pack(">HB", 0x001B, 1) + u16(3) + bytes(3) + b"\x1f" + bytes(20)
            + struct.pack(">HIII", 0x001A, 1, per1, 0) + u32(family) + u32(0))


def _delegation_ops(g: str) -> list[Cmd]:
    """Owner delegation on family 3 ("create c"): a blob allowing
    OwnerReadInternalPub (per1 bit 18), loaded into delegate row 0, a DSAP
    session on that row, a delegated and a non-delegated owner command."""
    import hashlib

    def create(answers, even, shared):
        pad = hashlib.sha1(shared + even).digest()
        enc = bytes(a ^ b for a, b in zip(DELEGATE_SECRET, pad))
        return b"\x00" + _delegate_public(3, 1 << 18) + enc

    def blob(answers):
        r = answers.get("create owner delegation")
        return r.raw[14:-41] if r is not None and len(r.raw) > 55 else b""

    def load(answers):
        return u32(0) + u32(len(blob(answers))) + blob(answers)

    def verify(answers):
        return frame(C1, 0xD6, u32(len(blob(answers))) + blob(answers))

    def verify_bad_tag(answers):
        return frame(C1, 0xD6, u32(len(blob(answers))) + b"\x00\x99" + blob(answers)[2:])

    osap = Cmd("osap owner", frame(C1, 0x0B, u16(2) + u32(0x40000001) + ODD_OSAP), g)
    dsap = lambda name: Cmd(name, frame(C1, 0x11, u16(8) + u32(0) + ODD_OSAP  # noqa: E731
                                         + u32(4) + u32(0)), g)
    return [
        Cmd("oiap e", frame(C1, 0x0A), g),
        Cmd("delegate_manage enable 3", _authorised(0xD2, u32(3) + u32(2) + u32(1) + b"\x01",
                                                    "oiap e"), g, ordinal=0xD2),
        Cmd("dsap empty row", frame(C1, 0x11, u16(8) + u32(0) + ODD_OSAP + u32(4) + u32(0)), g),
        osap,
        Cmd("create owner delegation", _osap_authorised(0xD5, create, "osap owner",
                                                        OWNER_SECRET), g, ordinal=0xD5),
        Cmd("oiap f", frame(C1, 0x0A), g),
        Cmd("load owner delegation", _authorised(0xD8, load, "oiap f"), g, ordinal=0xD8),
        Cmd("delegate_readtable with a row", frame(C1, 0xDB), g, ordinal=0xDB),
        Cmd("verifydelegation", verify, g, ordinal=0xD6),
        Cmd("verifydelegation bad tag", verify_bad_tag, g, ordinal=0xD6),
        Cmd("oiap g", frame(C1, 0x0A), g),
        Cmd("updateverification row 0", _authorised(0xD1, u32(4) + u32(0), "oiap g"), g,
            ordinal=0xD1),
        Cmd("setownerpointer row 5", frame(C1, 0x75, u16(8) + u32(5)), g),
        Cmd("setownerpointer row 0", frame(C1, 0x75, u16(8) + u32(0)), g),
        Cmd("oiap h", frame(C1, 0x0A), g),
        Cmd("ownerreadinternalpub EK via pointer",
            _authorised(0x81, u32(TPM_KH_EK), "oiap h", DELEGATE_SECRET), g, ordinal=0x81),
        Cmd("oiap i", frame(C1, 0x0A), g),
        Cmd("resetlockvalue via pointer", _authorised(0x40, b"", "oiap i", DELEGATE_SECRET), g,
            ordinal=0x40),
        Cmd("setownerpointer owner", frame(C1, 0x75, u16(2) + u32(0)), g),
        dsap("dsap row 0"),
        Cmd("delegated ownerreadinternalpub EK",
            _osap_authorised(0x81, u32(TPM_KH_EK), "dsap row 0", DELEGATE_SECRET), g,
            ordinal=0x81),
        dsap("dsap row 0 again"),
        Cmd("undelegated resetlockvalue",
            _osap_authorised(0x40, b"", "dsap row 0 again", DELEGATE_SECRET), g, ordinal=0x40),
        Cmd("dsap row 7", frame(C1, 0x11, u16(8) + u32(0) + ODD_OSAP + u32(4) + u32(7)), g),
        Cmd("dsap bad entity", frame(C1, 0x11, u16(5) + u32(0) + ODD_OSAP + u32(4) + u32(0)), g),
    ]


def _cmk_ops(g: str) -> list[Cmd]:
    """Certified migration keys: the owner's restrictions and MA approval
    (an HMAC under tpmProof: random here), an MA signature that does not
    verify, and CMK commands refused before their keys are looked at."""
    rsa_parms = lambda es, ss: (struct.pack(">IHHI", 1, es, ss, 12)  # noqa: E731
                                + struct.pack(">III", 2048, 2, 0))
    ma_pub = rsa_parms(1, 2) + u32(256) + b"\xc3" * 256       # TPM_ES_NONE, SS_SHA1
    key12 = (u16(0x0028) + u16(0) + u16(0x0010) + u32(0x12) + b"\x01" + rsa_parms(1, 2)
             + u32(0) + u32(0) + u32(0))
    bogus_auth = u32(0x02000000) + bytes(20) + b"\x00" + bytes(20)
    empty_msa = u32(4) + u32(0)
    blob = (u32(0x40000000) + u16(4) + ma_pub + u16(4) + bytes(20) + bytes(20) + empty_msa
            + u32(0) + u32(0) + u32(0))
    convert = (bytes(60) + bytes(20) + key12 + u32(24) + u32(1) + bytes(20) + u32(0))
    oiap = lambda name: Cmd(name, frame(C1, 0x0A), g)  # noqa: E731
    return [
        oiap("oiap c1"),
        Cmd("cmk_setrestrictions", _authorised(0x1C, u32(0x80000000), "oiap c1"), g,
            ordinal=0x1C),
        _gc("PROPERTY CMK_RESTRICTION set", 0x05, u32(0x11F)),
        oiap("oiap c2"),
        Cmd("cmk_approvema", _authorised(0x1D, bytes(20), "oiap c2"), g, ordinal=0x1D),
        oiap("oiap c3"),
        Cmd("cmk_approvema wrong secret", _authorised(0x1D, bytes(20), "oiap c3", bytes(20)), g,
            ordinal=0x1D),
        oiap("oiap c4"),
        Cmd("cmk_createticket bad signature",
            _authorised(0x12, ma_pub + bytes(20) + u32(256) + bytes(256), "oiap c4"), g,
            ordinal=0x12),
        oiap("oiap c5"),
        Cmd("cmk_createticket oaep key",
            _authorised(0x12, rsa_parms(3, 1) + ma_pub[24:] + bytes(20) + u32(0), "oiap c5"), g,
            ordinal=0x12),
        Cmd("cmk_createblob empty msaList", frame(C2, 0x1B, blob + bogus_auth), g),
        Cmd("cmk_createkey tag C1", frame(C1, 0x13, u32(0x40000000) + bytes(20) + key12
                                          + bytes(40)), g),
        oiap("oiap c6"),
        Cmd("cmk_convertmigration no parent",
            _authorised(0x24, convert, "oiap c6", handles=u32(0x01000077)), g, ordinal=0x24),
    ]


GROUPS = {"startup": gen_startup, "pcr": gen_pcr, "pcr_reset": gen_pcr_reset,
          "getcap": gen_getcap, "random": gen_random, "sha1": gen_sha1, "misc": gen_misc,
          "malformed": gen_malformed, "owner": gen_owner}
ALL = [g for g in GROUPS if g != "owner"]     # "owner" ends with OwnerClear: on its own


def commands(groups="all") -> list[Cmd]:
    names = ALL if groups == "all" else groups.split(",")
    out = []
    for g in names:
        out += GROUPS[g]()
    return out


# ---------------------------------------------------------------- transport

@dataclass
class Answer:
    outcome: str = ""          # response | closed | timeout | refused | error
    raw: bytes = b""
    reads: int = 0             # recv() calls the response took (tcsd needs 1)
    extra: bytes = b""         # anything after the first complete response
    after: str = ""            # what the TPM did after our half-close
    ms: float = 0.0


def _read(sock, deadline):
    buf, reads = b"", 0
    while True:
        if len(buf) >= 6:
            size = struct.unpack(">I", buf[2:6])[0]
            if size < 10 or len(buf) >= size:
                return buf, reads, "response"
        left = deadline - time.monotonic()
        if left <= 0:
            return buf, reads, "timeout"
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return buf, reads, "timeout"
        except OSError:
            return buf, reads, "closed"
        if not d:
            return buf, reads, "closed"
        reads += 1
        buf += d


def exchange(addr, data: bytes, timeout: float, linger: float = 0.0) -> Answer:
    """One command on a new connection (as tcsd does it)."""
    a = Answer()
    t0 = time.monotonic()
    try:
        sock = socket.create_connection(addr, timeout=timeout)
    except ConnectionRefusedError:
        a.outcome = "refused"
        return a
    except OSError as e:
        a.outcome = "error " + e.__class__.__name__
        return a
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if data:
            sock.sendall(data)
        buf, a.reads, how = _read(sock, time.monotonic() + timeout)
        a.ms = (time.monotonic() - t0) * 1000
        if how == "response" and len(buf) >= 10:
            size = struct.unpack(">I", buf[2:6])[0]
            a.outcome, a.raw, a.extra = "response", buf[:size], buf[size:]
            if linger:      # does the TPM send anything more (a second answer)?
                buf2, _, _ = _read(sock, time.monotonic() + linger)
                a.extra += buf2
        else:
            a.outcome, a.raw = how, buf
            if how == "timeout":
                try:
                    sock.shutdown(socket.SHUT_WR)
                    buf2, _, how2 = _read(sock, time.monotonic() + timeout)
                    a.after = how2 + ((" " + buf2.hex()) if buf2 else "")
                except OSError as e:
                    a.after = e.__class__.__name__
    return a


# ---------------------------------------------------------------- decoding

PERM_FLAGS = ["disable", "ownership", "deactivated", "readPubek", "disableOwnerClear",
              "allowMaintenance", "physicalPresenceLifetimeLock", "physicalPresenceHWEnable",
              "physicalPresenceCMDEnable", "CEKPUsed", "TPMpost", "TPMpostLock", "FIPS",
              "operator", "enableRevokeEK", "nvLocked", "readSRKPub", "tpmEstablished",
              "maintenanceDone", "disableFullDALogicInfo"]
# how a TPM is wired into its platform, not how it behaves to a client
PERM_FLAGS_VENDOR = {"allowMaintenance", "physicalPresenceLifetimeLock",
                     "physicalPresenceHWEnable", "physicalPresenceCMDEnable", "CEKPUsed",
                     "TPMpost", "TPMpostLock", "FIPS", "tpmEstablished", "maintenanceDone"}
STCLEAR_FLAGS = ["deactivated", "disableForceClear", "physicalPresence",
                 "physicalPresenceLock", "bGlobalLock"]


def decode(cmd: Cmd, a: Answer) -> list[tuple[str, object, str]]:
    f = [("outcome", a.outcome, MUST)]
    if a.outcome != "response":
        if a.after:
            f.append(("after", a.after, MUST))
        return f
    tag, size, rc = struct.unpack(">HII", a.raw[:10])
    f += [("reads", "one" if a.reads <= 1 else "split", MUST), ("tag", "0x%04x" % tag, MUST),
          ("rc", rc_name(rc), MUST), ("paramSize", size, MUST)]
    if a.extra:
        f.append(("extra", a.extra.hex(), MUST))
    body = a.raw[10:]
    if rc != 0:
        if body:
            f.append(("errbody", body.hex(), MUST))
        return f
    if tag == 0x00C5 and len(body) >= 41:      # nonceEven, continue, resAuth
        f += [("continueAuthSession", body[-21], MUST), ("resAuth", body[-41:].hex(), RANDOM)]
        body = body[:-41]
    try:
        f += _decode_body(cmd, body)
    except (struct.error, IndexError) as e:
        f.append(("undecodable", str(e), MUST))
    return f


def _decode_body(cmd: Cmd, body: bytes):
    o = cmd.ordinal
    if o == 0x65:
        return _decode_cap(cmd, body)
    if o in (0x14, 0x15):
        return [("digest", body.hex(), MUST)]
    if o == 0x46:
        n = struct.unpack(">I", body[:4])[0]
        return [("bytes returned", n, VENDOR), ("size consistent", n == len(body) - 4, MUST),
                ("random", body[4:].hex(), RANDOM)]
    if o == 0xA0:
        return [("maxNumBytes", struct.unpack(">I", body[:4])[0], VENDOR)]
    if o == 0xA2:
        return [("hashValue", body.hex(), MUST)]
    if o == 0x54:
        return [("test result", body.hex(), VENDOR)]
    if o == 0xF1:
        return [("ticks tag", body[:2].hex(), MUST), ("ticks", body[2:].hex(), RANDOM)]
    if o == 0x7C:
        alg, enc, sig, n = struct.unpack(">IHHI", body[:12])
        klen = struct.unpack(">I", body[12 + n:16 + n])[0]
        return [("ek algorithm", alg, MUST), ("ek encScheme", enc, MUST),
                ("ek sigScheme", sig, MUST), ("ek parms", body[12:12 + n].hex(), MUST),
                ("ek keyLength", klen, MUST), ("ek key", body[16 + n:].hex(), RANDOM)]
    if o == 0x0A:
        return [("authHandle", body[:4].hex(), VENDOR), ("nonceEven", body[4:].hex(), RANDOM)]
    if o in (0x0B, 0x11):    # OSAP / DSAP: handle, nonceEven, nonceEvenOSAP
        return [("authHandle", body[:4].hex(), VENDOR), ("size", len(body), MUST),
                ("nonces", body[4:].hex(), RANDOM)]
    if o == 0xD5:             # TPM_DELEGATE_OWNER_BLOB: pub and tag compare, the rest is sealed
        n, tag = struct.unpack(">IH", body[:6])
        pub_end = 6 + len(_delegate_public(0, 0))
        return [("blobSize consistent", n == len(body) - 4, MUST), ("blob tag", tag, MUST),
                ("blob pub", body[6:pub_end].hex(), MUST), ("sealed", body[pub_end:].hex(), RANDOM)]
    if o == 0x66:         # GetCapabilityOwner: TPM_VERSION, non-volatile and volatile flags
        nv, vol = struct.unpack(">II", body[4:12])
        f = [("version", body[:4].hex(), VENDOR)]
        f += [("flag " + n, (nv >> i) & 1, VENDOR if n in PERM_FLAGS_VENDOR else MUST)
              for i, n in enumerate(PERM_FLAGS)]
        f += [("volatile flag " + n, (vol >> i) & 1, MUST) for i, n in enumerate(STCLEAR_FLAGS)]
        f.append(("unnamed bits", (nv >> len(PERM_FLAGS), vol >> len(STCLEAR_FLAGS)), MUST))
        return f
    if o == 0x1D:           # CMK_ApproveMA: an HMAC under this TPM's tpmProof
        return [("ticket size", len(body), MUST), ("ticket", body.hex(), RANDOM)]
    if o in (0x0D, 0x81):   # TakeOwnership's SRK TPM_KEY / OwnerReadInternalPub's TPM_PUBKEY
        return [("key size", len(body), MUST), ("key", body.hex(), RANDOM)]
    return [("body", body.hex(), MUST)] if body else []


def _decode_cap(cmd: Cmd, body: bytes):
    n = struct.unpack(">I", body[:4])[0]
    r = body[4:4 + n]
    cap, sub = cmd.cap, cmd.sub
    f = [("respSize", n, MUST)]
    if cap == 0x1A:
        tag, major, minor, rmaj, rmin, spec, errata = struct.unpack(">HBBBBHB", r[:9])
        f += [("tag", "0x%04x" % tag, MUST), ("version", "%d.%d" % (major, minor), MUST),
              ("revision", "%d.%d" % (rmaj, rmin), VENDOR), ("specLevel", spec, VENDOR),
              ("errataRev", errata, VENDOR), ("vendorID", r[9:13].hex(), VENDOR),
              ("vendorSpecific", r[13:].hex(), VENDOR)]
    elif cap == 0x05 and len(sub) == 4:
        prop = struct.unpack(">I", sub)[0]
        cat = MUST if prop in PORTABLE_PROPERTIES else VENDOR
        f = [("respSize", n, cat), ("value", r.hex(), cat)]
    elif cap == 0x04 and len(sub) == 4 and len(r) >= 2:
        which = struct.unpack(">I", sub)[0]
        names = PERM_FLAGS if which == 0x108 else STCLEAR_FLAGS
        f.append(("flags tag", r[:2].hex(), MUST))
        for i, b in enumerate(r[2:]):
            nm = names[i] if i < len(names) else "byte %d" % i
            vendor = which == 0x108 and nm in PERM_FLAGS_VENDOR
            f.append(("flag " + nm, b, VENDOR if vendor else MUST))
    elif cap in (0x07, 0x14) and len(r) >= 2:
        f += [("handle count", struct.unpack(">H", r[:2])[0], MUST),
              ("handles", r[2:].hex(), VENDOR)]
    elif cap in (0x10, 0x19):          # manufacturer-defined by the spec
        f = [("respSize", n, VENDOR), ("value", r.hex(), VENDOR)]
    else:
        f.append(("value", r.hex(), MUST))
    return f


# ---------------------------------------------------------------- compare

@dataclass
class Verdict:
    cmd: Cmd
    a: Answer
    b: Answer
    diffs: list = field(default_factory=list)       # (field, a, b) of MUST fields
    vendor: list = field(default_factory=list)      # VENDOR fields that differ
    declared: list = field(default_factory=list)    # (field, a, b, reason)

    @property
    def kind(self) -> str:
        return "DIFF" if self.diffs else ("DECLARED" if self.declared else
                                          ("VENDOR" if self.vendor else "MATCH"))

    def line(self) -> str:
        parts = ["%s: %s | %s" % (k, _short(x), _short(y)) for k, x, y in self.diffs + self.vendor]
        parts += ["%s: %s | %s (declared: %s)" % (k, _short(x), _short(y), why)
                  for k, x, y, why in self.declared]
        return "%-8s %-40s %s" % (self.kind, self.cmd.name, "; ".join(parts))


def _short(v) -> str:
    s = str(v)
    return s if len(s) <= 36 else s[:33] + "..."


def compare(cmd: Cmd, a: Answer, b: Answer, declared: dict[str, str] | None = None) -> Verdict:
    fa, fb = decode(cmd, a), decode(cmd, b)
    da = {k: (v, c) for k, v, c in fa}
    db = {k: (v, c) for k, v, c in fb}
    v = Verdict(cmd, a, b)
    for k in dict.fromkeys([x[0] for x in fa] + [x[0] for x in fb]):
        va, ca = da.get(k, ("<absent>", MUST))
        vb, cb = db.get(k, ("<absent>", MUST))
        cat = ca if k in da else cb
        if cat == RANDOM or va == vb:
            continue
        why = next((r for g, r in (declared or {}).items()
                    if fnmatch.fnmatchcase("%s:%s" % (cmd.name, k), g)), None)
        if why:
            v.declared.append((k, va, vb, why))
        elif cat == VENDOR:
            v.vendor.append((k, va, vb))
        else:
            v.diffs.append((k, va, vb))
    return v


def run(a_addr, b_addr, cmds: list[Cmd], declared=None, timeout=10.0, wait_timeout=0.5,
        linger=0.2) -> list[Verdict]:
    """Replay `cmds` against both endpoints, one command at a time, each on a
    new connection; answers of earlier commands feed later ones (handles)."""
    prev = {"a": {}, "b": {}}
    out = []
    for c in cmds:
        to = wait_timeout if c.waits else timeout
        ling = linger if c.more else 0.0
        answers = []
        for side, addr in (("a", a_addr), ("b", b_addr)):
            data = c.data(prev[side]) if callable(c.data) else c.data
            ans = exchange(addr, data, to, ling)
            prev[side][c.name] = ans
            answers.append(ans)
        out.append(compare(c, answers[0], answers[1], declared))
    return out


def summary(verdicts: list[Verdict]) -> str:
    n = {k: 0 for k in ("MATCH", "VENDOR", "DECLARED", "DIFF")}
    for v in verdicts:
        n[v.kind] += 1
    return ("%d commands: %d match, %d vendor-only, %d declared, %d differ"
            % (len(verdicts), n["MATCH"], n["VENDOR"], n["DECLARED"], n["DIFF"]))


def _addr(s: str):
    host, _, port = s.rpartition(":")
    return (host or "127.0.0.1", int(port))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="HOST:PORT of the reference (swtpm)")
    ap.add_argument("--b", required=True, help="HOST:PORT of the TPM under test")
    ap.add_argument("--gen", default="all", help="groups: %s or all" % ",".join(ALL))
    ap.add_argument("-v", "--verbose", action="store_true", help="print MATCH lines too")
    args = ap.parse_args(argv)
    verdicts = run(_addr(args.a), _addr(args.b), commands(args.gen))
    for v in verdicts:
        if args.verbose or v.kind != "MATCH":
            print(v.line())
    print(summary(verdicts))
    return 1 if any(v.kind == "DIFF" for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
