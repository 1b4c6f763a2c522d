"""Malformed TPM 1.2 command frames, made from a well-formed command of every
ordinal the engine implements, and two endpoints to send them to: libtpms in
swtpm (reset to a saved state through swtpm's control channel) and pyxl's
engine in-process (reset from a dump).

A base command is a list of fields (bytes) and sized fields (`Sized`: a 2- or
4-byte length and what it covers), so a mutation knows where the field
boundaries and the length fields are.  The layouts follow the TCG TPM Main
Specification 1.2 Part 3 (the command's parameters) and Part 2 (the
structures); each base command is well formed, so what a mutation breaks is
the only thing wrong with it.  The auth trailers name a session handle no TPM
has (BOGUS_SESSION): a frame that parses is then refused with
TPM_INVALID_AUTHHANDLE, and no mutated frame can count towards the
dictionary-attack lockout.

Mutations (`mutations(base)`): truncation at every field boundary (paramSize
following the new length), a declared paramSize that disagrees with the
bytes, every sized field's length set short, long, past the end of the frame,
to TPM_ALLOC_MAX (libtpms's largest allocation, 0x20000) and one more, and to
0xFFFF... ; bytes appended; the tag replaced by every other request/response
tag; auth trailers dropped or added; BOOL fields outside 0/1.  `random_mutation`
adds free byte-level damage for exploration.

Also usable by hand, to measure on everything (several thousand frames):
  python tests/tpm/malformed.py [--profile libtpms|berlios] [--limit N] [-v]
"""

from __future__ import annotations

import fnmatch
import random
import socket
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

for _d in (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent):
    if str(_d) not in sys.path:          # run as a script: tests/ and tests/tpm importable
        sys.path.insert(0, str(_d))

C1, C2, C3 = 0x00C1, 0x00C2, 0x00C3
TPM_ALLOC_MAX = 0x20000         # libtpms include/libtpms/tpm_memory.h
BOGUS_SESSION = 0x0BAD5E55
MAX_FRAME = 4096                # swtpm reads at most this much as one command


def u8(v):
    return bytes((v,))


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def fill(n, seed=0x11):
    return bytes((seed + i) & 0xFF for i in range(n))


@dataclass
class Sized:
    """A length field of `width` bytes followed by the fields it covers."""
    width: int
    parts: list

    def encode(self) -> bytes:
        body = encode(self.parts)
        return len(body).to_bytes(self.width, "big") + body


@dataclass
class Bool:
    """A TPM_BOOL parameter (mutated to values other than 0/1)."""
    value: int = 0

    def encode(self) -> bytes:
        return u8(self.value)


def encode(parts) -> bytes:
    return b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)


def S32(*parts):
    return Sized(4, list(parts))


def S16(*parts):
    return Sized(2, list(parts))


# ---------------------------------------------------------------- structures (Part 2)

def pcr_selection(bitmap=b"\x01\x00\x00"):
    return [S16(bitmap)]                                   # TPM_PCR_SELECTION


def pcr_info_short():
    return pcr_selection() + [u8(0x1F), fill(20, 0x40)]   # TPM_PCR_INFO_SHORT


def pcr_info_long():
    return ([u16(0x0006), u8(0x1F), u8(0x1F)] + pcr_selection() + pcr_selection()
            + [fill(20, 0x50), fill(20, 0x60)])            # TPM_PCR_INFO_LONG


def rsa_key_parms(bits=2048, enc=3, sig=1):
    # TPM_KEY_PARMS: algorithmID, encScheme, sigScheme, parms (TPM_RSA_KEY_PARMS)
    return [u32(1), u16(enc), u16(sig), S32(u32(bits), u32(2), S32())]


def pubkey(n=256):
    return rsa_key_parms() + [S32(fill(n, 0x70))]           # TPM_PUBKEY


def tpm_key(usage=0x0011, enc=3, sig=1, key12=False):
    head = [u16(0x0028), u16(0)] if key12 else [b"\x01\x01\x00\x00"]
    return head + [u16(usage), u32(0), u8(1)] + rsa_key_parms(enc=enc, sig=sig) + [
        S32(), S32(), S32()]                                # PCRInfo, pubKey, encData


def nv_data_public(index=0x00011101, size=16):
    return ([u16(0x0018), u32(index)] + pcr_info_short() + pcr_info_short()
            + [u16(0x0017), u32(0x00000004), Bool(), Bool(), Bool(), u32(size)])


def delegate_public(dtype=1):
    return ([u16(0x0019), u8(1)] + pcr_info_short()
            + [u16(0x001A), u32(dtype), u32(0), u32(0), u32(1), u32(1)])


def delegate_owner_blob():
    return ([u16(0x002A)] + delegate_public() + [fill(20, 0x30), S32(fill(4)), S32(fill(24))])


def migration_key_auth():
    return pubkey() + [u16(1), fill(20, 0x22)]             # TPM_MIGRATIONKEYAUTH


def stored_data():
    return [b"\x01\x01\x00\x00", S32(), S32(fill(256, 0x33))]   # TPM_STORED_DATA (1.1)


def context_blob(rt=1):
    return [u16(0x0001), u32(rt), u32(0x01000000), fill(16, 0x44), u32(1), fill(20, 0x45),
            S32(fill(8)), S32(fill(32))]                   # TPM_CONTEXT_BLOB


def transport_public():
    return [u16(0x001E), u32(0), u32(1), u16(1)]           # TPM_TRANSPORT_PUBLIC


N20 = fill(20, 0x99)      # a nonce / digest / encrypted auth


# ---------------------------------------------------------------- base commands (Part 3)

@dataclass
class Base:
    name: str
    ordinal: int
    tag: int
    parts: list
    alt_tags: tuple = ()      # other tags the command also takes

    @property
    def n_auth(self) -> int:
        return {C1: 0, C2: 1, C3: 2}[self.tag]


def _b(name, ordinal, tag, *parts, alt=()):
    return Base(name, ordinal, tag, list(parts), tuple(alt))


SRK, KEY = u32(0x40000000), u32(0x01000000)

BASES = [
    _b("OIAP", 0x0A, C1),
    _b("OSAP", 0x0B, C1, u16(0x0004), SRK, N20),
    _b("ChangeAuth", 0x0C, C3, SRK, u16(5), N20, u16(0x0002), S32(fill(256))),
    _b("TakeOwnership", 0x0D, C2, u16(5), S32(fill(256)), S32(fill(256)), *tpm_key()),
    _b("ChangeAuthAsymStart", 0x0E, C2, KEY, N20, *rsa_key_parms(), alt=(C1,)),
    _b("ChangeAuthAsymFinish", 0x0F, C2, SRK, KEY, u16(0x0002), N20, S32(fill(20)),
       S32(fill(256)), alt=(C1,)),
    _b("ChangeAuthOwner", 0x10, C2, u16(5), N20, u16(0x0002)),
    _b("DSAP", 0x11, C1, u16(0x0004), SRK, N20, S32(*delegate_owner_blob())),
    _b("CMK_CreateTicket", 0x12, C2, *pubkey(), N20, S32(fill(256))),
    _b("CMK_CreateKey", 0x13, C2, SRK, N20, *tpm_key(key12=True), N20, N20),
    _b("Extend", 0x14, C1, u32(10), N20),
    _b("PcrRead", 0x15, C1, u32(0)),
    _b("Quote", 0x16, C2, KEY, N20, *pcr_selection(), alt=(C1,)),
    _b("Seal", 0x17, C2, SRK, N20, S32(u16(0x0001) + bytes(3 + 2 + 40)), S32(fill(10))),
    _b("Unseal", 0x18, C3, SRK, *stored_data(), alt=(C2,)),
    _b("DirWriteAuth", 0x19, C2, u32(0), N20),
    _b("DirRead", 0x1A, C1, u32(0)),
    _b("CMK_CreateBlob", 0x1B, C2, SRK, u16(0x0202), *migration_key_auth(), N20,
       S32(u32(1), fill(20)), S32(fill(60)), S32(fill(20)), S32(fill(256))),
    _b("CMK_SetRestrictions", 0x1C, C2, u32(0)),
    _b("CMK_ApproveMA", 0x1D, C2, N20),
    _b("UnBind", 0x1E, C2, KEY, S32(fill(256)), alt=(C1,)),
    _b("CreateWrapKey", 0x1F, C2, SRK, N20, N20, *tpm_key()),
    _b("LoadKey", 0x20, C2, SRK, *tpm_key(), alt=(C1,)),
    _b("GetPubKey", 0x21, C2, KEY, alt=(C1,)),
    _b("EvictKey", 0x22, C1, KEY),
    _b("KeyControlOwner", 0x23, C2, KEY, *pubkey(), u32(4), Bool()),
    _b("CMK_ConvertMigration", 0x24, C2, SRK, fill(60), N20, *tpm_key(key12=True),
       S32(u32(1), fill(20)), S32(fill(20))),
    _b("MigrateKey", 0x25, C2, KEY, *pubkey(), S32(fill(256)), alt=(C1,)),
    _b("CreateMigrationBlob", 0x28, C3, SRK, u16(1), *migration_key_auth(), S32(fill(256)),
       alt=(C2,)),
    _b("DAA_Join", 0x29, C2, u32(0), u8(0), S32(u32(1)), S32()),
    _b("ConvertMigrationBlob", 0x2A, C2, SRK, S32(fill(256)), S32(fill(20)), alt=(C1,)),
    _b("AuthorizeMigrationKey", 0x2B, C2, u16(1), *pubkey()),
    _b("DAA_Sign", 0x31, C2, u32(0), u8(0), S32(u32(1)), S32()),
    _b("CertifyKey", 0x32, C3, KEY, SRK, N20, alt=(C2, C1)),
    _b("CertifyKey2", 0x33, C3, KEY, KEY, N20, N20, alt=(C2, C1)),
    _b("Sign", 0x3C, C2, KEY, S32(fill(20)), alt=(C1,)),
    _b("Sealx", 0x3D, C2, SRK, N20, S32(*pcr_info_long()), S32(fill(10))),
    _b("Quote2", 0x3E, C2, KEY, N20, *pcr_selection(), Bool(), alt=(C1,)),
    _b("SetCapability", 0x3F, C1, u32(1), S32(u32(4)), S32(u8(1)), alt=(C2,)),
    _b("ResetLockValue", 0x40, C2),
    _b("LoadKey2", 0x41, C2, SRK, *tpm_key(), alt=(C1,)),
    _b("GetRandom", 0x46, C1, u32(20)),
    _b("StirRandom", 0x47, C1, S32(fill(16))),
    _b("SelfTestFull", 0x50, C1),
    _b("ContinueSelfTest", 0x53, C1),
    _b("GetTestResult", 0x54, C1),
    _b("Reset", 0x5A, C1),
    _b("OwnerClear", 0x5B, C2),
    _b("DisableOwnerClear", 0x5C, C2),
    _b("ForceClear", 0x5D, C1),
    _b("DisableForceClear", 0x5E, C1),
    _b("GetCapability", 0x65, C1, u32(5), S32(u32(0x101))),
    _b("GetCapabilityOwner", 0x66, C2),
    _b("OwnerSetDisable", 0x6E, C2, Bool()),
    _b("PhysicalEnable", 0x6F, C1),
    _b("PhysicalDisable", 0x70, C1),
    _b("SetOwnerInstall", 0x71, C1, Bool(1)),
    _b("PhysicalSetDeactivated", 0x72, C1, Bool()),
    _b("SetTempDeactivated", 0x73, C2, alt=(C1,)),
    _b("SetOperatorAuth", 0x74, C1, N20),
    _b("SetOwnerPointer", 0x75, C1, u16(0x0002), u32(0)),
    _b("CreateEndorsementKeyPair", 0x78, C1, N20, *rsa_key_parms()),
    _b("MakeIdentity", 0x79, C3, N20, N20, *tpm_key(usage=0x0012, enc=1, sig=2), alt=(C2,)),
    _b("ActivateIdentity", 0x7A, C3, KEY, S32(fill(256)), alt=(C2,)),
    _b("ReadPubek", 0x7C, C1, N20),
    _b("OwnerReadPubek", 0x7D, C2),
    _b("DisablePubekRead", 0x7E, C2),
    _b("CreateRevocableEK", 0x7F, C1, N20, *rsa_key_parms(), Bool(1), N20),
    _b("RevokeTrust", 0x80, C1, N20),
    _b("OwnerReadInternalPub", 0x81, C2, u32(0x40000006)),
    _b("GetAuditDigest", 0x85, C1, u32(0)),
    _b("GetAuditDigestSigned", 0x86, C2, KEY, Bool(), N20, alt=(C1,)),
    _b("SetOrdinalAuditStatus", 0x8D, C2, u32(0x65), Bool(1)),
    _b("Terminate_Handle", 0x96, C1, u32(BOGUS_SESSION)),
    _b("Init", 0x97, C1),
    _b("SaveState", 0x98, C1),
    _b("Startup", 0x99, C1, u16(1)),
    _b("SHA1Start", 0xA0, C1),
    _b("SHA1Update", 0xA1, C1, S32(fill(64))),
    _b("SHA1Complete", 0xA2, C1, S32(fill(3))),
    _b("SHA1CompleteExtend", 0xA3, C1, u32(10), S32(fill(3))),
    _b("SaveKeyContext", 0xB4, C1, KEY),
    _b("LoadKeyContext", 0xB5, C1, S32(*context_blob())),
    _b("SaveAuthContext", 0xB6, C1, u32(BOGUS_SESSION)),
    _b("LoadAuthContext", 0xB7, C1, S32(*context_blob(2))),
    _b("SaveContext", 0xB8, C1, KEY, u32(1), fill(16)),
    _b("LoadContext", 0xB9, C1, KEY, Bool(), S32(*context_blob())),
    _b("FlushSpecific", 0xBA, C1, KEY, u32(1)),
    _b("PCR_Reset", 0xC8, C1, *pcr_selection(b"\x00\x00\x01")),
    _b("NV_DefineSpace", 0xCC, C2, *nv_data_public(), N20, alt=(C1,)),
    _b("NV_WriteValue", 0xCD, C2, u32(0x00011101), u32(0), S32(fill(8)), alt=(C1,)),
    _b("NV_WriteValueAuth", 0xCE, C2, u32(0x00011101), u32(0), S32(fill(8))),
    _b("NV_ReadValue", 0xCF, C2, u32(0x00011101), u32(0), u32(8), alt=(C1,)),
    _b("NV_ReadValueAuth", 0xD0, C2, u32(0x00011101), u32(0), u32(8)),
    _b("Delegate_UpdateVerification", 0xD1, C2, S32(*delegate_owner_blob())),
    _b("Delegate_Manage", 0xD2, C2, u32(1), u32(1), S32(u8(1)), alt=(C1,)),
    _b("Delegate_CreateKeyDelegation", 0xD4, C2, KEY, *delegate_public(2), N20),
    _b("Delegate_CreateOwnerDelegation", 0xD5, C2, Bool(), *delegate_public(), N20),
    _b("Delegate_VerifyDelegation", 0xD6, C1, S32(*delegate_owner_blob())),
    _b("Delegate_LoadOwnerDelegation", 0xD8, C2, u32(0), S32(*delegate_owner_blob()), alt=(C1,)),
    _b("Delegate_ReadTable", 0xDB, C1),
    _b("CreateCounter", 0xDC, C2, N20, b"abcd"),
    _b("IncrementCounter", 0xDD, C2, u32(1)),
    _b("ReadCounter", 0xDE, C1, u32(1)),
    _b("ReleaseCounter", 0xDF, C2, u32(1)),
    _b("ReleaseCounterOwner", 0xE0, C2, u32(1)),
    _b("EstablishTransport", 0xE6, C2, KEY, *transport_public(), S32(fill(256)), alt=(C1,)),
    _b("ExecuteTransport", 0xE7, C2, S32(u16(C1), u32(14), u32(0x15), u32(0))),
    _b("ReleaseTransportSigned", 0xE8, C3, KEY, N20, alt=(C2,)),
    _b("GetTicks", 0xF1, C1),
    _b("TickStampBlob", 0xF2, C2, KEY, N20, N20, alt=(C1,)),
    _b("TSC_PhysicalPresence", 0x4000000A, C1, u16(0x0008)),
    _b("TSC_ResetEstablishmentBit", 0x4000000B, C1),
]


def trailer(n: int) -> list:
    """n authorization trailers (authHandle, nonceOdd, continueAuthSession, auth)."""
    out = []
    for i in range(n):
        out += [u32(BOGUS_SESSION + i), fill(20, 0x80 + i), Bool(), fill(20, 0xA0 + i)]
    return out


def assemble(tag: int, ordinal: int, parts: list, size: int | None = None) -> bytes:
    body = u32(ordinal) + encode(parts)
    return u16(tag) + u32(len(body) + 6 if size is None else size) + body


def frame(base: Base, tag: int | None = None, n_auth: int | None = None) -> bytes:
    tag = base.tag if tag is None else tag
    n = base.n_auth if n_auth is None else n_auth
    return assemble(tag, base.ordinal, base.parts + trailer(n))


# ---------------------------------------------------------------- mutations

@dataclass
class Frame:
    base: Base
    label: str
    data: bytes

    @property
    def key(self) -> str:
        return "%s:%s" % (self.base.name, self.label)


def _leaves(parts, path=()):
    """(path, part) of every field, depth first; a Sized yields itself, then its fields."""
    for i, p in enumerate(parts):
        here = path + (i,)
        yield here, p
        if isinstance(p, Sized):
            yield from _leaves(p.parts, here)


def _replace(parts, path, new):
    """A copy of parts with the field at path replaced by new."""
    out = list(parts)
    if len(path) == 1:
        out[path[0]] = new
    else:
        s = out[path[0]]
        out[path[0]] = Sized(s.width, _replace(s.parts, path[1:], new))
    return out


class _Raw:
    """A sized field whose length no longer matches its contents."""

    def __init__(self, width, length, body):
        self.width, self.length, self.body = width, length, body

    def encode(self):
        return self.length.to_bytes(self.width, "big") + self.body


def mutations(base: Base) -> list[Frame]:
    """Every systematic mutation of base (and base itself, well formed)."""
    parts = base.parts + trailer(base.n_auth)
    whole = frame(base)
    out = [Frame(base, "well-formed", whole)]
    # truncation at every field boundary, paramSize following
    offs = _boundaries(parts)
    for cut in sorted(offs):
        if 10 <= cut < len(whole):
            t = whole[:cut]
            out.append(Frame(base, "truncated at %d" % cut, t[:2] + u32(cut) + t[6:]))
    # paramSize disagreeing with the bytes
    for label, size in (("paramSize +1", len(whole) + 1), ("paramSize -1", len(whole) - 1),
                        ("paramSize 10", 10), ("paramSize 0", 0),
                        ("paramSize 0xFFFFFFFF", 0xFFFFFFFF)):
        if size != len(whole):
            out.append(Frame(base, label, whole[:2] + u32(size) + whole[6:]))
    # every sized field's length
    for path, p in _leaves(parts):
        if not isinstance(p, Sized):
            continue
        body = encode(p.parts)
        enc = p.encode()
        start = _offset_of(parts, path)
        after = len(whole) - (start + len(enc))        # bytes after this field
        top = (1 << (8 * p.width)) - 1
        values = {"0": 0, "-1": len(body) - 1, "+1": len(body) + 1,
                  "to the end +1": len(body) + after + 1, "to the end": len(body) + after,
                  "max": top}
        if p.width == 4:
            values.update({"ALLOC_MAX": TPM_ALLOC_MAX, "ALLOC_MAX+1": TPM_ALLOC_MAX + 1,
                           "0x10000": 0x10000})
        seen = set()
        for label, v in values.items():
            if v < 0 or v > top or v == len(body) or v in seen:
                continue
            seen.add(v)
            mutated = _replace(parts, path, _Raw(p.width, v, body))
            out.append(Frame(base, "size %s of field %s" % (label, _name(path)),
                             assemble(base.tag, base.ordinal, mutated)))
    # BOOL fields outside 0/1
    for path, p in _leaves(parts):
        if isinstance(p, Bool):
            for v in (2, 0xFF):
                mutated = _replace(parts, path, u8(v))
                out.append(Frame(base, "bool %d in field %s" % (v, _name(path)),
                                 assemble(base.tag, base.ordinal, mutated)))
    # trailing bytes
    for n in (1, 4, 20, 41):
        t = whole + fill(n, 0xEE)
        out.append(Frame(base, "%d trailing bytes" % n, t[:2] + u32(len(t)) + t[6:]))
    # tags: every other request tag with the trailers it announces, and bad tags
    for tag in (C1, C2, C3):
        if tag != base.tag:
            n = {C1: 0, C2: 1, C3: 2}[tag]
            out.append(Frame(base, "tag %#x with %d trailers" % (tag, n), frame(base, tag, n)))
            out.append(Frame(base, "tag %#x as is" % tag, u16(tag) + whole[2:]))
    for tag in (0x00C4, 0x00C5, 0x00C6, 0x0000, 0x00C0, 0xFFFF):
        out.append(Frame(base, "tag %#x" % tag, u16(tag) + whole[2:]))
    return [f for f in out if len(f.data) <= MAX_FRAME]


def _boundaries(parts) -> set[int]:
    """Offsets (from the frame start) where a field starts or ends."""
    offs = {10}

    def walk(ps, pos):
        for p in ps:
            offs.add(pos)
            if isinstance(p, Sized):
                offs.add(pos + p.width)
                walk(p.parts, pos + p.width)
            pos += len(p if isinstance(p, bytes) else p.encode())
            offs.add(pos)
        return pos
    walk(parts, 10)
    return offs


def _offset_of(parts, path) -> int:
    pos = 10
    ps = parts
    for depth, i in enumerate(path):
        pos += len(encode(ps[:i]))
        if depth < len(path) - 1:
            pos += ps[i].width
            ps = ps[i].parts
    return pos


def _name(path) -> str:
    return ".".join(str(i) for i in path)


def all_frames() -> list[Frame]:
    out = []
    for b in BASES:
        out += mutations(b)
    out += [Frame(BASES[0], "unknown ordinal %#x" % o, assemble(t, o, []))
            for o in (0x01, 0x26, 0x27, 0xFF, 0x20000001, 0x7FFFFFFF) for t in (C1, C2)]
    out += [Frame(STARTUP, "startup type %#x" % t, assemble(C1, 0x99, [u16(t)]))
            for t in (0, 1, 2, 3, 4, 0xFFFF)]
    return out


STARTUP = next(b for b in BASES if b.name == "Startup")


def random_mutation(rng: random.Random, base: Base) -> Frame:
    """Free damage to a well-formed frame: flipped, inserted, deleted bytes."""
    data = bytearray(frame(base))
    what = []
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        at = rng.randrange(6, len(data) + 1)
        if op == 0 and at < len(data):
            data[at] ^= 1 << rng.randrange(8)
            what.append("flip@%d" % at)
        elif op == 1:
            n = rng.randint(1, 8)
            data[at:at] = bytes(rng.randrange(256) for _ in range(n))
            what.append("insert %d@%d" % (n, at))
        elif op == 2 and at < len(data) and len(data) > 11:
            n = min(rng.randint(1, 8), len(data) - max(at, 10))
            del data[max(at, 10):max(at, 10) + n]
            what.append("delete %d@%d" % (n, at))
        else:
            v = rng.choice([0, 1, 0xFF, 0xFFFF, 0x20000, 0x20001, 0xFFFFFFFF])
            at = rng.randrange(10, max(len(data) - 3, 11))
            data[at:at + 4] = u32(v)
            what.append("u32 %#x@%d" % (v, at))
    data[2:6] = u32(len(data))
    return Frame(base, "random " + " ".join(what), bytes(data[:MAX_FRAME]))


# ---------------------------------------------------------------- endpoints

def rc_of(resp: bytes) -> int:
    return struct.unpack(">I", resp[6:10])[0] if len(resp) >= 10 else -1


# After a frame both TPMs answered alike, they made the same change if any,
# so they need no reset -- unless the change uses up a vendor-sized resource
# or leaves the state the base commands were written for (owned, enabled,
# physical presence asserted).  Successful commands of these ordinals leave
# both TPMs in step and within their resources:
IN_STEP = {0x14, 0x15, 0x46, 0x47, 0x50, 0x53, 0x54, 0x65, 0x7C, 0xF1, 0x1A, 0xDE, 0x85,
           0xDB, 0xA0, 0xA1, 0xA2, 0xA3, 0xC8}
# ... and failures other than these change nothing (a session that failed
# its HMAC is ended, and counts towards the lockout; TPM_FAIL stops libtpms)
RESET_AFTER = {0x01, 0x09, 0x1D, 0x803}   # AUTHFAIL, FAIL, AUTH2FAIL, DEFEND_LOCK_RUNNING


class SwtpmEndpoint:
    """A running fixtures.Swtpm: one kept data connection, and reset() back to
    the state saved by save() (its permanent-state file, then CMD_INIT and
    TPM_Startup(ST_CLEAR) plus `after_startup` frames, as after power-on)."""

    PERMALL = "tpm-00.permall"
    CMD_INIT = 2          # swtpm's control channel (swtpm/src/swtpm/ctrlchannel.c)

    def __init__(self, sw, after_startup=()):
        self.sw = sw
        self.after_startup = list(after_startup)
        self.sock = None
        self.ctrl = None
        self.saved = None

    def _connect(self):
        self.sock = socket.create_connection(self.sw.addr, timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def execute(self, data: bytes) -> bytes:
        from tpm.fixtures import read_response
        if self.sock is None:
            self._connect()
        self.sock.sendall(data)
        resp, _ = read_response(self.sock, 30)
        if len(resp) < 10:
            raise RuntimeError("swtpm gave no response to %s" % data.hex())
        return resp

    def save(self) -> None:
        self.saved = (self.sw.dir / self.PERMALL).read_bytes()

    def reset(self) -> None:
        (self.sw.dir / self.PERMALL).write_bytes(self.saved)
        if self.ctrl is None:
            self.ctrl = socket.create_connection(("127.0.0.1", self.sw.port + 1), timeout=30)
        self.ctrl.sendall(u32(self.CMD_INIT) + u32(0))
        res = b""
        while len(res) < 4:
            d = self.ctrl.recv(4 - len(res))
            if not d:
                raise RuntimeError("swtpm control channel closed")
            res += d
        if res != bytes(4):
            raise RuntimeError("swtpm CMD_INIT failed: %s" % res.hex())
        for f in [assemble(C1, 0x99, [u16(1)])] + self.after_startup:
            rc = rc_of(self.execute(f))
            if rc:
                raise RuntimeError("swtpm reset: %s -> %d" % (f.hex(), rc))

    def close(self):
        for s in (self.sock, self.ctrl):
            if s:
                s.close()


class EngineEndpoint:
    """pyxl's engine in-process, reset from a dump (power_on + `after_startup`)."""

    def __init__(self, tpm, after_startup=()):
        self.tpm = tpm
        self.after_startup = list(after_startup)
        self.saved = None

    def execute(self, data: bytes) -> bytes:
        return self.tpm.execute(data)

    def save(self) -> None:
        self.saved = self.tpm.dump()

    def reset(self) -> None:
        from pyxl.tpm import TPM
        self.tpm = TPM.load(self.saved, self.tpm.identity, key_source=self.tpm.key_source)
        self.tpm.power_on("clear")
        for f in self.after_startup:
            rc = rc_of(self.execute(f))
            if rc:
                raise RuntimeError("engine reset: %s -> %d" % (f.hex(), rc))


# ---------------------------------------------------------------- comparing

@dataclass
class Outcome:
    frame: Frame
    ref: bytes
    ours: bytes
    declared: str | None = None

    @property
    def same(self) -> bool:
        """Same tag and return code; an error answer must be identical (it is
        all header), a success answer may carry random or vendor values."""
        if rc_of(self.ref) != 0 or rc_of(self.ours) != 0:
            return self.ref == self.ours
        return self.ref[:2] == self.ours[:2]

    def line(self) -> str:
        return "%-60s swtpm %-30s pyxl %s%s" % (
            self.frame.key[:60], _rsp(self.ref), _rsp(self.ours),
            "  (declared: %s)" % self.declared if self.declared else "")


def _rsp(r: bytes) -> str:
    from tpm.diff import rc_name
    if len(r) < 10:
        return r.hex()
    tag, size = struct.unpack(">HI", r[:6])
    return "%s tag %#x size %d" % (rc_name(rc_of(r)), tag, size)


@dataclass
class Pair:
    """The reference and the engine, starting from the same saved state."""
    ref: SwtpmEndpoint
    ours: EngineEndpoint
    declared: dict = field(default_factory=dict)   # "ordinal name:mutation" glob -> reason
    resets: int = 0

    def send(self, f: Frame) -> Outcome:
        a, b = self.ref.execute(f.data), self.ours.execute(f.data)
        o = Outcome(f, a, b)
        if not o.same:
            o.declared = next((why for g, why in self.declared.items()
                               if fnmatch.fnmatchcase(f.key, g)), None)
        rcs = {rc_of(a), rc_of(b)}
        ordinal = struct.unpack(">I", f.data[6:10])[0]
        if (not o.same or rcs & RESET_AFTER
                or (0 in rcs and ordinal not in IN_STEP)):
            self.ref.reset()
            self.ours.reset()
            self.resets += 1
        return o


def report(outcomes) -> str:
    bad = [o for o in outcomes if not o.same]
    lines = [o.line() for o in bad[:60]]
    if len(bad) > 60:
        lines.append("... and %d more" % (len(bad) - 60))
    lines.append("%d frames: %d answered alike, %d differ (%d declared)" % (
        len(outcomes), len(outcomes) - len(bad), len(bad),
        sum(1 for o in bad if o.declared)))
    return "\n".join(lines)


# ---------------------------------------------------------------- set-up

def setup_frames():
    """What both TPMs get after TPM_Startup: physical presence asserted (the
    command-enable bit is permanent, set once in `make_pair`)."""
    return [assemble(C1, 0x4000000A, [u16(0x0008)])]


def make_pair(workdir: Path, profile: str = "libtpms", declared=None) -> Pair:
    """A fresh swtpm and engine, both with an EK, enabled, activated, owned
    (owner and SRK secret: 20 zero bytes), physical presence asserted; their
    states saved for reset()."""
    from engine_helpers import key_pool, take_ownership as engine_take_ownership
    from tpm.client import TPMClient
    from tpm.fixtures import Swtpm

    from pyxl.tpm import TPM
    from pyxl.tpm.identity import XEN_VTPM_IDENTITY, behaving_as

    sw = Swtpm(workdir / "swtpm").start()
    ref = SwtpmEndpoint(sw, setup_frames())
    c = TPMClient(sw.addr)
    c.create_ek()
    tpm = TPM(behaving_as(XEN_VTPM_IDENTITY, profile), key_source=key_pool())
    tpm.power_on("clear")
    ours = EngineEndpoint(tpm, setup_frames())
    for f in (assemble(C1, 0x4000000A, [u16(0x0020)]), assemble(C1, 0x4000000A, [u16(0x0008)]),
              assemble(C1, 0x6F, []), assemble(C1, 0x72, [u8(0)])):
        assert rc_of(ref.execute(f)) == 0, f.hex()
        rc = rc_of(ours.execute(f))
        assert rc == 0 or profile == "berlios", (f.hex(), rc)   # berlios: always enabled
    ref.close()
    ref.sock = None
    c.take_ownership(b"O" * 20, bytes(20))
    engine_take_ownership(ours.tpm, b"O" * 20, bytes(20))
    ref.save()
    ours.save()
    ref.reset()
    ours.reset()
    return Pair(ref, ours, declared or {})


def main(argv=None) -> int:
    import argparse
    import tempfile
    import time
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="libtpms", choices=["libtpms", "berlios"])
    ap.add_argument("--limit", type=int, default=0, help="only the first N frames")
    ap.add_argument("--random", type=int, default=0, help="N more randomly damaged frames")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    frames = all_frames()
    rng = random.Random(args.seed)
    frames += [random_mutation(rng, rng.choice(BASES)) for _ in range(args.random)]
    if args.limit:
        frames = frames[:args.limit]
    with tempfile.TemporaryDirectory() as d:
        pair = make_pair(Path(d), args.profile)
        t0 = time.monotonic()
        try:
            outcomes = [pair.send(f) for f in frames]
        finally:
            pair.ref.close()
            pair.ref.sw.stop()
        if args.verbose:
            for o in outcomes:
                print(("  " if o.same else "! ") + o.line())
        print(report(outcomes))
        print("%.1f s, %d resets" % (time.monotonic() - t0, pair.resets))
    return 0 if all(o.same for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
