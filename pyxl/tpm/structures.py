"""TPM 1.2 structures (Main Specification Part 2) as spec-named dataclasses.

Each structure marshals into a Writer and unmarshals from a Reader (marshal.py);
to_bytes()/from_bytes() are the whole-buffer forms.  Field names follow the
specification.  Tagged 1.2 structures check their TPM_STRUCTURE_TAG and raise
TPMStructError (a TPMDecodeError) on a wrong one.
"""

from __future__ import annotations

import itertools
import operator
from typing import NamedTuple, Self
from dataclasses import dataclass, field, fields

from . import constants as C
from .marshal import ALLOC_MAX, Reader, TPMDecodeError, Writer

KEY_FLAGS_MASK = 0x1F        # the TPM_KEY_FLAGS bits TPM 1.2 defines (libtpms TPM_KEY_FLAGS_MASK)


class TPMStructError(TPMDecodeError):
    """Well-sized bytes that are not the structure expected (bad tag, bad value)."""

    def __init__(self, offset: int, what: str):
        super().__init__(offset, 0, 0, what)
        self.args = ("bad %s at offset %d" % (what, offset),)


class TPMBadValue(TPMStructError):
    """A field value this TPM refuses while parsing, with the TPM return code
    libtpms gives for it (e.g. a PCR selection larger than 24 PCRs)."""

    def __init__(self, offset: int, what: str, rc: int):
        super().__init__(offset, what)
        self.rc = rc


def _expect_tag(r: Reader, tag: int, name: str) -> None:
    at = r.pos
    got = r.u16()
    if got != tag:
        raise TPMStructError(at, "%s tag 0x%04x (want 0x%04x)" % (name, got, tag))


def _locality(r: Reader) -> int:
    """A TPM_LOCALITY_SELECTION: no bit beyond locality 4, not 0 (libtpms
    TPM_LocalitySelection_CheckLegal: TPM_INVALID_STRUCTURE)."""
    at = r.pos
    v = r.u8()
    if v == 0 or v & ~C.TPM_LOC_ALL:
        raise TPMBadValue(at, "locality selection %#x" % v, C.TPM_INVALID_STRUCTURE)
    return v


class TPMStruct:
    """Mixin: whole-buffer helpers around marshal/unmarshal."""
    OPEN_ENDED = False      # True: the last field takes the rest of the buffer

    def marshal(self, w: Writer) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def unmarshal(cls, r: Reader):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        w = Writer()
        self.marshal(w)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes):
        r = Reader(data)
        v = cls.unmarshal(r)
        r.expect_end(cls.__name__)
        return v

    def copy(self):
        return type(self).from_bytes(self.to_bytes())


# ---------------------------------------------------------------- versions

@dataclass
class TPM_STRUCT_VER(TPMStruct):
    """1.1 version; in 1.2 structures always 1.1.0.0 (Part 2 5.1)."""
    major: int = 1
    minor: int = 1
    revMajor: int = 0
    revMinor: int = 0

    def marshal(self, w):
        w.u8(self.major).u8(self.minor).u8(self.revMajor).u8(self.revMinor)

    @classmethod
    def unmarshal(cls, r):
        return cls(r.u8(), r.u8(), r.u8(), r.u8())


@dataclass
class TPM_VERSION(TPM_STRUCT_VER):
    """The TPM's version (Part 2 5.3); same layout as TPM_STRUCT_VER."""
    major: int = 1
    minor: int = 2
    revMajor: int = 0
    revMinor: int = 0


@dataclass
class TPM_CAP_VERSION_INFO(TPMStruct):
    """TPM_CAP_VERSION_VAL answer (Part 2 21.6)."""
    version: TPM_VERSION = field(default_factory=TPM_VERSION)
    specLevel: int = 2
    errataRev: int = 1
    tpmVendorID: bytes = b"ETHZ"
    vendorSpecific: bytes = b""

    def marshal(self, w):
        w.u16(C.TPM_TAG_CAP_VERSION_INFO).struct(self.version).u16(self.specLevel)
        w.u8(self.errataRev).bytes(self.tpmVendorID).sized16(self.vendorSpecific)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_CAP_VERSION_INFO, "TPM_CAP_VERSION_INFO")
        return cls(TPM_VERSION.unmarshal(r), r.u16(), r.u8(), r.bytes(4), r.sized16())


# ---------------------------------------------------------------- keys

@dataclass
class TPM_RSA_KEY_PARMS(TPMStruct):
    keyLength: int = 2048
    numPrimes: int = 2
    exponent: bytes = b""      # empty = the default 65537

    def marshal(self, w):
        w.u32(self.keyLength).u32(self.numPrimes).sized32(self.exponent)

    @classmethod
    def unmarshal(cls, r):
        return cls(r.u32(), r.u32(), r.sized32("exponent"))

    @property
    def exponent_int(self) -> int:
        return int.from_bytes(self.exponent, "big") if self.exponent else 65537


@dataclass
class TPM_KEY_PARMS(TPMStruct):
    algorithmID: int = C.TPM_ALG_RSA
    encScheme: int = C.TPM_ES_NONE
    sigScheme: int = C.TPM_SS_NONE
    parms: bytes = b""         # TPM_RSA_KEY_PARMS for RSA keys

    def marshal(self, w):
        w.u32(self.algorithmID).u16(self.encScheme).u16(self.sigScheme).sized32(self.parms)

    @classmethod
    def unmarshal(cls, r):
        """As libtpms's TPM_KeyParms_Load: an RSA key's parms are parsed at
        once (short: TPM_BAD_PARAM_SIZE; bytes after them are ignored), any
        other algorithm but 0 (uninitialised) is TPM_BAD_KEY_PROPERTY."""
        at = r.pos
        p = cls(r.u32(), r.u16(), r.u16(), r.sized32("parms"))
        if p.algorithmID == C.TPM_ALG_RSA:
            TPM_RSA_KEY_PARMS.unmarshal(Reader(p.parms))
        elif p.algorithmID != 0:
            raise TPMBadValue(at, "key algorithm %#x" % p.algorithmID, C.TPM_BAD_KEY_PROPERTY)
        return p

    def rsa(self) -> TPM_RSA_KEY_PARMS:
        return TPM_RSA_KEY_PARMS.from_bytes(self.parms)


@dataclass
class TPM_STORE_PUBKEY(TPMStruct):
    key: bytes = b""           # the RSA modulus, big-endian

    def marshal(self, w):
        w.sized32(self.key)

    @classmethod
    def unmarshal(cls, r):
        return cls(r.sized32("pubkey"))


@dataclass
class TPM_PUBKEY(TPMStruct):
    algorithmParms: TPM_KEY_PARMS = field(default_factory=TPM_KEY_PARMS)
    pubKey: TPM_STORE_PUBKEY = field(default_factory=TPM_STORE_PUBKEY)

    def marshal(self, w):
        w.struct(self.algorithmParms).struct(self.pubKey)

    @classmethod
    def unmarshal(cls, r):
        return cls(TPM_KEY_PARMS.unmarshal(r), TPM_STORE_PUBKEY.unmarshal(r))


@dataclass
class TPM_KEY(TPMStruct):
    """A 1.1 key blob (Part 2 10.2); PCRInfo is a TPM_PCR_INFO or empty."""
    ver: TPM_STRUCT_VER = field(default_factory=TPM_STRUCT_VER)
    keyUsage: int = C.TPM_KEY_STORAGE
    keyFlags: int = 0
    authDataUsage: int = C.TPM_AUTH_ALWAYS
    algorithmParms: TPM_KEY_PARMS = field(default_factory=TPM_KEY_PARMS)
    PCRInfo: bytes = b""
    pubKey: TPM_STORE_PUBKEY = field(default_factory=TPM_STORE_PUBKEY)
    encData: bytes = b""

    def marshal_head(self, w):
        w.struct(self.ver)

    def marshal_public(self, w):
        """Everything but encData -- what pubDataDigest covers."""
        self.marshal_head(w)
        w.u16(self.keyUsage).u32(self.keyFlags).u8(self.authDataUsage)
        w.struct(self.algorithmParms).sized32(self.PCRInfo).struct(self.pubKey)

    def marshal(self, w):
        self.marshal_public(w)
        w.sized32(self.encData)

    def public_bytes(self) -> bytes:
        w = Writer()
        self.marshal_public(w)
        return w.getvalue()

    @classmethod
    def _unmarshal_body(cls, r, **head):
        """The rest of TPM_Key_Load: PCRInfo is parsed as it is read (a
        TPM_PCR_INFO, or a TPM_PCR_INFO_LONG in a TPM_KEY12; empty: none)."""
        usage = r.u16()
        at = r.pos
        flags = r.u32()
        if flags & ~KEY_FLAGS_MASK:
            # TPM_KeyFlags_Load: an undefined bit set
            raise TPMBadValue(at, "keyFlags %#x" % flags, C.TPM_BAD_KEY_PROPERTY)
        auth_usage = r.u8()
        parms = TPM_KEY_PARMS.unmarshal(r)
        pcr_info = r.sized32("PCRInfo")
        if pcr_info:
            (TPM_PCR_INFO_LONG if cls is TPM_KEY12 else TPM_PCR_INFO).unmarshal(Reader(pcr_info))
        return cls(keyUsage=usage, keyFlags=flags, authDataUsage=auth_usage,
                   algorithmParms=parms, PCRInfo=pcr_info,
                   pubKey=TPM_STORE_PUBKEY.unmarshal(r), encData=r.sized32("encData"), **head)

    @classmethod
    def unmarshal(cls, r):
        at = r.pos
        ver = TPM_STRUCT_VER.unmarshal(r)
        if (ver.major, ver.minor) != (1, 1):
            # libtpms TPM_StructVer_CheckVer, at once
            raise TPMBadValue(at, "TPM_KEY version", C.TPM_BAD_VERSION)
        return cls._unmarshal_body(r, ver=ver)

    @property
    def is_key12(self) -> bool:
        return False

    def pubkey(self) -> TPM_PUBKEY:
        return TPM_PUBKEY(self.algorithmParms, self.pubKey)


@dataclass
class TPM_KEY12(TPM_KEY):
    """A 1.2 key blob (Part 2 10.3); PCRInfo is a TPM_PCR_INFO_LONG or empty."""
    fill: int = 0

    def marshal_head(self, w):
        w.u16(C.TPM_TAG_KEY12).u16(self.fill)

    @classmethod
    def unmarshal(cls, r):
        at = r.pos
        tag, fill = r.u16(), r.u16()
        if tag != C.TPM_TAG_KEY12 or fill:
            # libtpms TPM_Key_CheckTag, before the rest is read
            raise TPMBadValue(at, "TPM_KEY12 tag %#x fill %#x" % (tag, fill),
                              C.TPM_BAD_KEY_PROPERTY)
        return cls._unmarshal_body(r, fill=fill)

    @property
    def is_key12(self) -> bool:
        return True


def unmarshal_any_key(r: Reader) -> TPM_KEY:
    """A TPM_KEY or TPM_KEY12, told apart by the leading tag/version."""
    if r.remaining and r.data[r.pos] == 0:
        # libtpms TPM_Key_LoadPubData: a TPM_KEY starts with ver.major (not 0),
        # anything else is read as a TPM_KEY12 (a wrong tag or fill:
        # TPM_BAD_KEY_PROPERTY)
        return TPM_KEY12.unmarshal(r)
    return TPM_KEY.unmarshal(r)


@dataclass
class TPM_STORE_ASYMKEY(TPMStruct):
    """The secret half of a wrapped key (Part 2 10.6); privKey is the prime p."""
    payload: int = C.TPM_PT_ASYM
    usageAuth: bytes = bytes(20)
    migrationAuth: bytes = bytes(20)
    pubDataDigest: bytes = bytes(20)
    privKey: bytes = b""

    def marshal(self, w):
        w.u8(self.payload).bytes(self.usageAuth).bytes(self.migrationAuth)
        w.bytes(self.pubDataDigest).sized32(self.privKey)

    @classmethod
    def unmarshal(cls, r):
        return cls(r.u8(), r.digest(), r.digest(), r.digest(), r.sized32("privKey"))


@dataclass
class TPM_MIGRATE_ASYMKEY(TPMStruct):
    payload: int = C.TPM_PT_MIGRATE
    usageAuth: bytes = bytes(20)
    pubDataDigest: bytes = bytes(20)
    partPrivKey: bytes = b""

    def marshal(self, w):
        w.u8(self.payload).bytes(self.usageAuth).bytes(self.pubDataDigest).sized32(self.partPrivKey)

    @classmethod
    def unmarshal(cls, r):
        return cls(r.u8(), r.digest(), r.digest(), r.sized32("partPrivKey"))


# ---------------------------------------------------------------- migration (Part 2 11)

@dataclass
class TPM_MIGRATIONKEYAUTH(TPMStruct):
    """An owner-approved migration destination (Part 2 5.5)."""
    migrationKey: TPM_PUBKEY = field(default_factory=TPM_PUBKEY)
    migrationScheme: int = C.TPM_MS_MIGRATE
    digest: bytes = bytes(20)     # SHA-1(migrationKey || migrationScheme || tpmProof)

    def marshal(self, w):
        w.struct(self.migrationKey).u16(self.migrationScheme).bytes(self.digest)

    @classmethod
    def unmarshal(cls, r):
        return cls(TPM_PUBKEY.unmarshal(r), r.u16(), r.digest())


@dataclass
class TPM_MSA_COMPOSITE(TPMStruct):
    """The migration authorities a certified-migration key may move to, as
    digests of their TPM_PUBKEYs (Part 2 11.1).  The list is never empty."""
    migAuthDigest: list[bytes] = field(default_factory=list)

    def marshal(self, w):
        w.u32(len(self.migAuthDigest))
        for d in self.migAuthDigest:
            w.bytes(d)

    @classmethod
    def unmarshal(cls, r):
        at = r.pos
        n = r.u32()
        if n == 0:
            raise TPMBadValue(at, "MSAlist 0", C.TPM_INVALID_STRUCTURE)
        # libtpms TPM_MsaComposite_Load allocates MSAlist * 20 bytes first, the
        # product taken as a uint32_t: over TPM_ALLOC_MAX is TPM_SIZE, 0 TPM_FAIL
        size = (n * 20) & 0xFFFFFFFF
        if size > ALLOC_MAX:
            raise TPMBadValue(at, "MSAlist %d" % n, C.TPM_SIZE)
        if size == 0:
            raise TPMBadValue(at, "MSAlist %d" % n, C.TPM_FAIL)
        if n > r.remaining // 20:
            raise TPMDecodeError(r.pos, 20 * n, r.remaining, "migAuthDigest")
        return cls([r.digest() for _ in range(n)])


@dataclass
class TPM_CMK_AUTH(TPMStruct):
    """A migration authority's approval to move one key to one parent (Part 2 11.2)."""
    migrationAuthorityDigest: bytes = bytes(20)
    destinationKeyDigest: bytes = bytes(20)
    sourceKeyDigest: bytes = bytes(20)

    def marshal(self, w):
        w.bytes(self.migrationAuthorityDigest).bytes(self.destinationKeyDigest)
        w.bytes(self.sourceKeyDigest)

    @classmethod
    def unmarshal(cls, r):
        return cls(r.digest(), r.digest(), r.digest())


@dataclass
class TPM_CMK_MIGAUTH(TPMStruct):
    """HMAC'ed with tpmProof, it is a CMK's migrationAuth (Part 2 11.3)."""
    msaDigest: bytes = bytes(20)
    pubKeyDigest: bytes = bytes(20)

    def marshal(self, w):
        w.u16(C.TPM_TAG_CMK_MIGAUTH).bytes(self.msaDigest).bytes(self.pubKeyDigest)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_CMK_MIGAUTH, "TPM_CMK_MIGAUTH")
        return cls(r.digest(), r.digest())


@dataclass
class TPM_CMK_SIGTICKET(TPMStruct):
    """HMAC'ed with tpmProof: "verKeyDigest's key signed signedData" (Part 2 11.4)."""
    verKeyDigest: bytes = bytes(20)
    signedData: bytes = bytes(20)

    def marshal(self, w):
        w.u16(C.TPM_TAG_CMK_SIGTICKET).bytes(self.verKeyDigest).bytes(self.signedData)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_CMK_SIGTICKET, "TPM_CMK_SIGTICKET")
        return cls(r.digest(), r.digest())


@dataclass
class TPM_CMK_MA_APPROVAL(TPMStruct):
    """HMAC'ed with tpmProof: the owner approved this TPM_MSA_COMPOSITE (Part 2 11.5)."""
    migrationAuthorityDigest: bytes = bytes(20)

    def marshal(self, w):
        w.u16(C.TPM_TAG_CMK_MA_APPROVAL).bytes(self.migrationAuthorityDigest)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_CMK_MA_APPROVAL, "TPM_CMK_MA_APPROVAL")
        return cls(r.digest())


# ---------------------------------------------------------------- PCRs

@dataclass
class TPM_PCR_SELECTION(TPMStruct):
    pcrSelect: bytes = bytes(3)

    def marshal(self, w):
        w.sized16(self.pcrSelect)

    @classmethod
    def unmarshal(cls, r):
        at = r.pos
        size = r.u16()
        if size > C.TPM_NUM_PCR // 8:
            # checked before the bitmap is read, as libtpms does
            raise TPMBadValue(at, "sizeOfSelect %d" % size, C.TPM_INVALID_PCR_INFO)
        return cls(r.bytes(size, "pcrSelect"))

    @classmethod
    def of(cls, indices, size: int = 3) -> "TPM_PCR_SELECTION":
        bm = bytearray(size)
        for i in indices:
            bm[i // 8] |= 1 << (i % 8)
        return cls(bytes(bm))

    def indices(self) -> list[int]:
        return [i * 8 + b for i, byte in enumerate(self.pcrSelect) for b in range(8)
                if byte >> b & 1]


@dataclass
class TPM_PCR_COMPOSITE(TPMStruct):
    select: TPM_PCR_SELECTION = field(default_factory=TPM_PCR_SELECTION)
    pcrValue: bytes = b""      # concatenated 20-byte values

    def marshal(self, w):
        w.struct(self.select).sized32(self.pcrValue)

    @classmethod
    def unmarshal(cls, r):
        return cls(TPM_PCR_SELECTION.unmarshal(r), r.sized32("pcrValue"))


@dataclass
class TPM_PCR_INFO(TPMStruct):
    pcrSelection: TPM_PCR_SELECTION = field(default_factory=TPM_PCR_SELECTION)
    digestAtRelease: bytes = bytes(20)
    digestAtCreation: bytes = bytes(20)

    def marshal(self, w):
        w.struct(self.pcrSelection).bytes(self.digestAtRelease).bytes(self.digestAtCreation)

    @classmethod
    def unmarshal(cls, r):
        return cls(TPM_PCR_SELECTION.unmarshal(r), r.digest(), r.digest())


@dataclass
class TPM_PCR_INFO_LONG(TPMStruct):
    localityAtCreation: int = C.TPM_LOC_ZERO
    localityAtRelease: int = C.TPM_LOC_ALL
    creationPCRSelection: TPM_PCR_SELECTION = field(default_factory=TPM_PCR_SELECTION)
    releasePCRSelection: TPM_PCR_SELECTION = field(default_factory=TPM_PCR_SELECTION)
    digestAtCreation: bytes = bytes(20)
    digestAtRelease: bytes = bytes(20)

    def marshal(self, w):
        w.u16(C.TPM_TAG_PCR_INFO_LONG).u8(self.localityAtCreation).u8(self.localityAtRelease)
        w.struct(self.creationPCRSelection).struct(self.releasePCRSelection)
        w.bytes(self.digestAtCreation).bytes(self.digestAtRelease)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_PCR_INFO_LONG, "TPM_PCR_INFO_LONG")
        return cls(_locality(r), _locality(r), TPM_PCR_SELECTION.unmarshal(r),
                   TPM_PCR_SELECTION.unmarshal(r), r.digest(), r.digest())


@dataclass
class TPM_PCR_INFO_SHORT(TPMStruct):
    pcrSelection: TPM_PCR_SELECTION = field(default_factory=TPM_PCR_SELECTION)
    localityAtRelease: int = C.TPM_LOC_ALL
    digestAtRelease: bytes = bytes(20)

    def marshal(self, w):
        w.struct(self.pcrSelection).u8(self.localityAtRelease).bytes(self.digestAtRelease)

    @classmethod
    def unmarshal(cls, r):
        return cls(TPM_PCR_SELECTION.unmarshal(r), _locality(r), r.digest())


# ---------------------------------------------------------------- sealed / bound data

@dataclass
class TPM_STORED_DATA(TPMStruct):
    """1.1 sealed blob; sealInfo is a TPM_PCR_INFO or empty (Part 2 9.1)."""
    ver: TPM_STRUCT_VER = field(default_factory=TPM_STRUCT_VER)
    sealInfo: bytes = b""
    encData: bytes = b""

    def marshal_head(self, w):
        w.struct(self.ver)

    def marshal(self, w):
        self.marshal_head(w)
        w.sized32(self.sealInfo).sized32(self.encData)

    @classmethod
    def unmarshal(cls, r):
        at = r.pos
        ver = TPM_STRUCT_VER.unmarshal(r)
        if (ver.major, ver.minor) != (1, 1):
            raise TPMBadValue(at, "TPM_STORED_DATA version", C.TPM_BAD_VERSION)
        return cls(ver, _seal_info(r, TPM_PCR_INFO), r.sized32("encData"))

    def digest_bytes(self) -> bytes:
        """What TPM_SEALED_DATA.storedDigest covers: the blob with no encData."""
        w = Writer()
        self.marshal_head(w)
        w.sized32(self.sealInfo).u32(0)
        return w.getvalue()


@dataclass
class TPM_STORED_DATA12(TPM_STORED_DATA):
    """1.2 sealed blob; sealInfo is a TPM_PCR_INFO_LONG or empty (Part 2 9.2).
    et 0: TPM_Seal's plain blob; TPM_Sealx sets TPM_ET_XOR|TPM_ET_KEY, which
    makes TPM_Unseal return the data encrypted under its OSAP session."""
    et: int = 0

    def marshal_head(self, w):
        w.u16(C.TPM_TAG_STORED_DATA12).u16(self.et)

    @classmethod
    def unmarshal(cls, r):
        at = r.pos
        tag, et = r.u16(), r.u16()
        if tag != C.TPM_TAG_STORED_DATA12:
            raise TPMBadValue(at, "TPM_STORED_DATA12 tag %#x" % tag, C.TPM_BAD_VERSION)
        return cls(sealInfo=_seal_info(r, TPM_PCR_INFO_LONG), encData=r.sized32("encData"), et=et)


def _seal_info(r: Reader, kind) -> bytes:
    """sealInfo, parsed as it is read (TPM_StoredData_Load: empty, or a
    TPM_PCR_INFO in a 1.1 blob, a TPM_PCR_INFO_LONG in a 1.2 one)."""
    info = r.sized32("sealInfo")
    if info:
        kind.unmarshal(Reader(info))
    return info


def unmarshal_any_stored_data(r: Reader) -> TPM_STORED_DATA:
    """libtpms TPM_StoredData_Load: a first byte 0x01 is a 1.1 blob (version
    1.1 or TPM_BAD_VERSION), anything else a TPM_STORED_DATA12 (tag checked
    after et is read: TPM_BAD_VERSION)."""
    if r.remaining and r.data[r.pos] == 0x01:
        return TPM_STORED_DATA.unmarshal(r)
    return TPM_STORED_DATA12.unmarshal(r)


@dataclass
class TPM_SEALED_DATA(TPMStruct):
    payload: int = C.TPM_PT_SEAL
    authData: bytes = bytes(20)
    tpmProof: bytes = bytes(20)
    storedDigest: bytes = bytes(20)
    data: bytes = b""

    def marshal(self, w):
        w.u8(self.payload).bytes(self.authData).bytes(self.tpmProof).bytes(self.storedDigest)
        w.sized32(self.data)

    @classmethod
    def unmarshal(cls, r):
        return cls(r.u8(), r.digest(), r.digest(), r.digest(), r.sized32("data"))


@dataclass
class TPM_BOUND_DATA(TPMStruct):
    """payloadData runs to the end of the (decrypted) buffer, so any prefix
    longer than the 5-byte header is itself a valid TPM_BOUND_DATA."""
    OPEN_ENDED = True
    ver: TPM_STRUCT_VER = field(default_factory=TPM_STRUCT_VER)
    payload: int = C.TPM_PT_BIND
    payloadData: bytes = b""

    def marshal(self, w):
        w.struct(self.ver).u8(self.payload).bytes(self.payloadData)

    @classmethod
    def unmarshal(cls, r):
        return cls(TPM_STRUCT_VER.unmarshal(r), r.u8(), r.rest())


@dataclass
class TPM_QUOTE_INFO(TPMStruct):
    """What TPM_Quote signs (Part 2 11.3)."""
    version: TPM_STRUCT_VER = field(default_factory=TPM_STRUCT_VER)
    digestValue: bytes = bytes(20)   # SHA-1 of the TPM_PCR_COMPOSITE
    externalData: bytes = bytes(20)

    def marshal(self, w):
        w.struct(self.version).bytes(b"QUOT").bytes(self.digestValue).bytes(self.externalData)

    @classmethod
    def unmarshal(cls, r):
        v = TPM_STRUCT_VER.unmarshal(r)
        at = r.pos
        if r.bytes(4) != b"QUOT":
            raise TPMStructError(at, "TPM_QUOTE_INFO fixed")
        return cls(v, r.digest(), r.digest())


@dataclass
class TPM_CHANGEAUTH_VALIDATE(TPMStruct):
    newAuthSecret: bytes = bytes(20)
    n1: bytes = bytes(20)

    def marshal(self, w):
        w.bytes(self.newAuthSecret).bytes(self.n1)

    @classmethod
    def unmarshal(cls, r):
        return cls(r.digest(), r.digest())


# ---------------------------------------------------------------- NV

@dataclass
class TPM_NV_ATTRIBUTES(TPMStruct):
    attributes: int = 0

    def marshal(self, w):
        w.u16(C.TPM_TAG_NV_ATTRIBUTES).u32(self.attributes)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_NV_ATTRIBUTES, "TPM_NV_ATTRIBUTES")
        return cls(r.u32())


@dataclass
class TPM_NV_DATA_PUBLIC(TPMStruct):
    nvIndex: int = 0
    pcrInfoRead: TPM_PCR_INFO_SHORT = field(default_factory=TPM_PCR_INFO_SHORT)
    pcrInfoWrite: TPM_PCR_INFO_SHORT = field(default_factory=TPM_PCR_INFO_SHORT)
    permission: TPM_NV_ATTRIBUTES = field(default_factory=TPM_NV_ATTRIBUTES)
    bReadSTClear: int = 0
    bWriteSTClear: int = 0
    bWriteDefine: int = 0
    dataSize: int = 0

    def marshal(self, w):
        w.u16(C.TPM_TAG_NV_DATA_PUBLIC).u32(self.nvIndex).struct(self.pcrInfoRead)
        w.struct(self.pcrInfoWrite).struct(self.permission).u8(self.bReadSTClear)
        w.u8(self.bWriteSTClear).u8(self.bWriteDefine).u32(self.dataSize)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_NV_DATA_PUBLIC, "TPM_NV_DATA_PUBLIC")
        return cls(r.u32(), TPM_PCR_INFO_SHORT.unmarshal(r), TPM_PCR_INFO_SHORT.unmarshal(r),
                   TPM_NV_ATTRIBUTES.unmarshal(r), r.bool(), r.bool(), r.bool(), r.u32())


# ---------------------------------------------------------------- flags

class _FlagFields(NamedTuple):
    names: tuple[str, ...]                           # in declaration order
    values: operator.attrgetter[tuple[bool, ...]]    # all the values at once


_FLAG_FIELDS: dict[type, _FlagFields] = {}


def _flag_fields(cls: type) -> _FlagFields:
    """A flag structure's fields, looked up once per class
    (dataclasses.fields() rebuilds its answer on every call)."""
    known = _FLAG_FIELDS.get(cls)
    if known is None:
        names = tuple(f.name for f in fields(cls))
        known = _FLAG_FIELDS[cls] = _FlagFields(names, operator.attrgetter(*names))
    return known


_BITS = tuple(1 << i for i in range(32))     # flag i+1 is bit i of as_word()


class _FlagStruct(TPMStruct):
    """A tag followed by one BOOL byte per field, in declaration order."""
    TAG = 0

    def marshal(self, w: Writer) -> None:
        w.u16(self.TAG)
        for value in _flag_fields(type(self)).values(self):
            w.u8(1 if value else 0)

    @classmethod
    def unmarshal(cls, r: Reader) -> Self:
        _expect_tag(r, cls.TAG, cls.__name__)
        return cls(*(bool(r.u8()) for _ in _flag_fields(cls).names))

    def set_bit(self, bit: int, value: bool) -> None:
        """Set the flag at 1-based position bit (TPM_PF_* / TPM_SF_* numbering)."""
        setattr(self, _flag_fields(type(self)).names[bit - 1], bool(value))

    def get_bit(self, bit: int) -> bool:
        return bool(getattr(self, _flag_fields(type(self)).names[bit - 1]))

    def as_word(self) -> int:
        """Bit i-1 set for flag i -- the 32-bit form GetCapabilityOwner returns."""
        return sum(itertools.compress(_BITS, _flag_fields(type(self)).values(self)))


@dataclass
class TPM_PERMANENT_FLAGS(_FlagStruct):
    """Part 2 7.1; the defaults are the Xen vTPM's (Berlios emulator) initial values."""
    TAG = C.TPM_TAG_PERMANENT_FLAGS
    disable: bool = False
    ownership: bool = True
    deactivated: bool = False
    readPubek: bool = True
    disableOwnerClear: bool = False
    allowMaintenance: bool = True
    physicalPresenceLifetimeLock: bool = False
    physicalPresenceHWEnable: bool = False
    physicalPresenceCMDEnable: bool = False
    CEKPUsed: bool = False
    TPMpost: bool = False
    TPMpostLock: bool = False
    FIPS: bool = False
    operator: bool = False
    enableRevokeEK: bool = True
    nvLocked: bool = True
    readSRKPub: bool = True
    tpmEstablished: bool = False
    maintenanceDone: bool = False
    disableFullDALogicInfo: bool = False


@dataclass
class TPM_STCLEAR_FLAGS(_FlagStruct):
    """Part 2 7.2."""
    TAG = C.TPM_TAG_STCLEAR_FLAGS
    deactivated: bool = False
    disableForceClear: bool = False
    physicalPresence: bool = False
    physicalPresenceLock: bool = False
    bGlobalLock: bool = False


@dataclass
class TPM_CURRENT_TICKS(TPMStruct):
    currentTicks: int = 0
    tickRate: int = 1      # microseconds per tick
    tickNonce: bytes = bytes(20)

    def marshal(self, w):
        w.u16(C.TPM_TAG_CURRENT_TICKS).u64(self.currentTicks).u16(self.tickRate)
        w.bytes(self.tickNonce)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_CURRENT_TICKS, "TPM_CURRENT_TICKS")
        return cls(r.u64(), r.u16(), r.digest())


ALL_STRUCTURES = [
    TPM_STRUCT_VER, TPM_VERSION, TPM_CAP_VERSION_INFO, TPM_RSA_KEY_PARMS, TPM_KEY_PARMS,
    TPM_STORE_PUBKEY, TPM_PUBKEY, TPM_KEY, TPM_KEY12, TPM_STORE_ASYMKEY, TPM_MIGRATE_ASYMKEY,
    TPM_MIGRATIONKEYAUTH, TPM_MSA_COMPOSITE, TPM_CMK_AUTH, TPM_CMK_MIGAUTH, TPM_CMK_SIGTICKET,
    TPM_CMK_MA_APPROVAL,
    TPM_PCR_SELECTION, TPM_PCR_COMPOSITE, TPM_PCR_INFO, TPM_PCR_INFO_LONG, TPM_PCR_INFO_SHORT,
    TPM_STORED_DATA, TPM_STORED_DATA12, TPM_SEALED_DATA, TPM_BOUND_DATA, TPM_QUOTE_INFO,
    TPM_CHANGEAUTH_VALIDATE, TPM_NV_ATTRIBUTES, TPM_NV_DATA_PUBLIC, TPM_PERMANENT_FLAGS,
    TPM_STCLEAR_FLAGS, TPM_CURRENT_TICKS,
]


# ---------------------------------------------------------------- identities, counters, certifying

@dataclass
class TPM_SYMMETRIC_KEY(TPMStruct):
    algId: int = C.TPM_ALG_AES128
    encScheme: int = C.TPM_ES_SYM_CTR
    data: bytes = b""

    def marshal(self, w):
        w.u32(self.algId).u16(self.encScheme).sized16(self.data)

    @classmethod
    def unmarshal(cls, r):
        return cls(r.u32(), r.u16(), r.sized16("symmetric key"))


@dataclass
class TPM_IDENTITY_CONTENTS(TPMStruct):
    """What MakeIdentity's identityBinding signs (Part 2 12.5)."""
    ver: TPM_STRUCT_VER = field(default_factory=TPM_STRUCT_VER)
    ordinal: int = C.TPM_ORD_MakeIdentity
    labelPrivCADigest: bytes = bytes(20)
    identityPubKey: TPM_PUBKEY = field(default_factory=TPM_PUBKEY)

    def marshal(self, w):
        w.struct(self.ver).u32(self.ordinal).bytes(self.labelPrivCADigest)
        w.struct(self.identityPubKey)

    @classmethod
    def unmarshal(cls, r):
        return cls(TPM_STRUCT_VER.unmarshal(r), r.u32(), r.digest(), TPM_PUBKEY.unmarshal(r))


@dataclass
class TPM_ASYM_CA_CONTENTS(TPMStruct):
    """The 1.1 ActivateIdentity blob (Part 2 12.6)."""
    sessionKey: TPM_SYMMETRIC_KEY = field(default_factory=TPM_SYMMETRIC_KEY)
    idDigest: bytes = bytes(20)

    def marshal(self, w):
        w.struct(self.sessionKey).bytes(self.idDigest)

    @classmethod
    def unmarshal(cls, r):
        return cls(TPM_SYMMETRIC_KEY.unmarshal(r), r.digest())


@dataclass
class TPM_EK_BLOB_ACTIVATE(TPMStruct):
    sessionKey: TPM_SYMMETRIC_KEY = field(default_factory=TPM_SYMMETRIC_KEY)
    idDigest: bytes = bytes(20)
    pcrInfo: TPM_PCR_INFO_SHORT = field(default_factory=TPM_PCR_INFO_SHORT)

    def marshal(self, w):
        w.u16(C.TPM_TAG_EK_BLOB_ACTIVATE).struct(self.sessionKey).bytes(self.idDigest)
        w.struct(self.pcrInfo)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_EK_BLOB_ACTIVATE, "TPM_EK_BLOB_ACTIVATE")
        return cls(TPM_SYMMETRIC_KEY.unmarshal(r), r.digest(), TPM_PCR_INFO_SHORT.unmarshal(r))


TPM_EK_TYPE_ACTIVATE = 0x0001
TPM_EK_TYPE_AUTH = 0x0002


@dataclass
class TPM_EK_BLOB(TPMStruct):
    ekType: int = TPM_EK_TYPE_ACTIVATE
    blob: bytes = b""

    def marshal(self, w):
        w.u16(C.TPM_TAG_EK_BLOB).u16(self.ekType).sized32(self.blob)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_EK_BLOB, "TPM_EK_BLOB")
        return cls(r.u16(), r.sized32("EK blob"))


@dataclass
class TPM_COUNTER_VALUE(TPMStruct):
    label: bytes = bytes(4)
    counter: int = 0

    def marshal(self, w):
        w.u16(C.TPM_TAG_COUNTER_VALUE).bytes(self.label).u32(self.counter)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_COUNTER_VALUE, "TPM_COUNTER_VALUE")
        return cls(r.bytes(4), r.u32())


@dataclass
class TPM_QUOTE_INFO2(TPMStruct):
    """What TPM_Quote2 signs (Part 2 11.4)."""
    externalData: bytes = bytes(20)
    infoShort: TPM_PCR_INFO_SHORT = field(default_factory=TPM_PCR_INFO_SHORT)

    def marshal(self, w):
        w.u16(C.TPM_TAG_QUOTE_INFO2).bytes(b"QUT2").bytes(self.externalData)
        w.struct(self.infoShort)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_QUOTE_INFO2, "TPM_QUOTE_INFO2")
        at = r.pos
        if r.bytes(4) != b"QUT2":
            raise TPMStructError(at, "TPM_QUOTE_INFO2 fixed")
        return cls(r.digest(), TPM_PCR_INFO_SHORT.unmarshal(r))


@dataclass
class TPM_CERTIFY_INFO(TPMStruct):
    """What TPM_CertifyKey signs (Part 2 11.1)."""
    version: TPM_STRUCT_VER = field(default_factory=TPM_STRUCT_VER)
    keyUsage: int = 0
    keyFlags: int = 0
    authDataUsage: int = 0
    algorithmParms: TPM_KEY_PARMS = field(default_factory=TPM_KEY_PARMS)
    pubkeyDigest: bytes = bytes(20)
    data: bytes = bytes(20)
    parentPCRStatus: int = 0
    PCRInfo: bytes = b""

    def marshal(self, w):
        w.struct(self.version).u16(self.keyUsage).u32(self.keyFlags).u8(self.authDataUsage)
        w.struct(self.algorithmParms).bytes(self.pubkeyDigest).bytes(self.data)
        w.u8(self.parentPCRStatus).sized32(self.PCRInfo)

    @classmethod
    def unmarshal(cls, r):
        return cls(TPM_STRUCT_VER.unmarshal(r), r.u16(), r.u32(), r.u8(),
                   TPM_KEY_PARMS.unmarshal(r), r.digest(), r.digest(), r.u8(), r.sized32("PCRInfo"))


@dataclass
class TPM_CERTIFY_INFO2(TPMStruct):
    """What TPM_CertifyKey2 signs (Part 2 11.2); pcrInfo is a TPM_PCR_INFO_SHORT or empty."""
    payloadType: int = C.TPM_PT_ASYM
    keyUsage: int = 0
    keyFlags: int = 0
    authDataUsage: int = 0
    algorithmParms: TPM_KEY_PARMS = field(default_factory=TPM_KEY_PARMS)
    pubkeyDigest: bytes = bytes(20)
    data: bytes = bytes(20)
    parentPCRStatus: int = 0
    pcrInfo: bytes = b""
    migrationAuthority: bytes = b""

    def marshal(self, w):
        w.u16(C.TPM_TAG_CERTIFY_INFO2).u8(0).u8(self.payloadType).u16(self.keyUsage)
        w.u32(self.keyFlags).u8(self.authDataUsage).struct(self.algorithmParms)
        w.bytes(self.pubkeyDigest).bytes(self.data).u8(self.parentPCRStatus)
        w.sized32(self.pcrInfo).sized32(self.migrationAuthority)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_CERTIFY_INFO2, "TPM_CERTIFY_INFO2")
        r.u8()                                   # fill
        return cls(r.u8(), r.u16(), r.u32(), r.u8(), TPM_KEY_PARMS.unmarshal(r), r.digest(),
                   r.digest(), r.u8(), r.sized32("pcrInfo"), r.sized32("migrationAuthority"))


ALL_STRUCTURES += [TPM_SYMMETRIC_KEY, TPM_IDENTITY_CONTENTS, TPM_ASYM_CA_CONTENTS,
                   TPM_EK_BLOB_ACTIVATE, TPM_EK_BLOB, TPM_COUNTER_VALUE, TPM_QUOTE_INFO2,
                   TPM_CERTIFY_INFO, TPM_CERTIFY_INFO2]


# ---------------------------------------------------------------- context blobs

@dataclass
class TPM_CONTEXT_SENSITIVE(TPMStruct):
    contextNonce: bytes = bytes(20)
    internalData: bytes = b""

    def marshal(self, w):
        w.u16(C.TPM_TAG_CONTEXT_SENSITIVE).bytes(self.contextNonce).sized32(self.internalData)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_CONTEXT_SENSITIVE, "TPM_CONTEXT_SENSITIVE")
        return cls(r.digest(), r.sized32("internalData"))


@dataclass
class TPM_CONTEXT_BLOB(TPMStruct):
    """A saved key or session (Part 2 18.1); sensitiveData is encrypted."""
    resourceType: int = C.TPM_RT_KEY
    handle: int = 0
    label: bytes = bytes(16)
    contextCount: int = 0
    integrityDigest: bytes = bytes(20)
    additionalData: bytes = b""
    sensitiveData: bytes = b""

    def marshal(self, w):
        w.u16(C.TPM_TAG_CONTEXTBLOB).u32(self.resourceType).u32(self.handle).bytes(self.label)
        w.u32(self.contextCount).bytes(self.integrityDigest).sized32(self.additionalData)
        w.sized32(self.sensitiveData)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_CONTEXTBLOB, "TPM_CONTEXT_BLOB")
        return cls(r.u32(), r.u32(), r.bytes(16, "label"), r.u32(), r.digest(),
                   r.sized32("additionalData"), r.sized32("sensitiveData"))


ALL_STRUCTURES += [TPM_CONTEXT_SENSITIVE, TPM_CONTEXT_BLOB]


# ---------------------------------------------------------------- DAA (Part 2 22)

@dataclass
class TPM_DAA_ISSUER(TPMStruct):
    """Digests of the issuer's public parameters, and q itself (22.3)."""
    DAA_digest_R0: bytes = bytes(20)
    DAA_digest_R1: bytes = bytes(20)
    DAA_digest_S0: bytes = bytes(20)
    DAA_digest_S1: bytes = bytes(20)
    DAA_digest_n: bytes = bytes(20)
    DAA_digest_gamma: bytes = bytes(20)
    DAA_generic_q: bytes = bytes(26)

    def marshal(self, w):
        w.u16(C.TPM_TAG_DAA_ISSUER).bytes(self.DAA_digest_R0).bytes(self.DAA_digest_R1)
        w.bytes(self.DAA_digest_S0).bytes(self.DAA_digest_S1).bytes(self.DAA_digest_n)
        w.bytes(self.DAA_digest_gamma).bytes(self.DAA_generic_q)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_DAA_ISSUER, "TPM_DAA_ISSUER")
        return cls(r.digest(), r.digest(), r.digest(), r.digest(), r.digest(), r.digest(),
                   r.bytes(26, "DAA_generic_q"))


@dataclass
class TPM_DAA_TPM(TPMStruct):
    """The TPM's own DAA parameters, exported (encrypted) by the join (22.4)."""
    DAA_digestIssuer: bytes = bytes(20)
    DAA_digest_v0: bytes = bytes(20)
    DAA_digest_v1: bytes = bytes(20)
    DAA_rekey: bytes = bytes(20)
    DAA_count: int = 0

    def marshal(self, w):
        w.u16(C.TPM_TAG_DAA_TPM).bytes(self.DAA_digestIssuer).bytes(self.DAA_digest_v0)
        w.bytes(self.DAA_digest_v1).bytes(self.DAA_rekey).u32(self.DAA_count)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_DAA_TPM, "TPM_DAA_TPM")
        return cls(r.digest(), r.digest(), r.digest(), r.digest(), r.u32())


@dataclass
class TPM_DAA_CONTEXT(TPMStruct):
    """A DAA session's working state; never leaves the TPM (22.5)."""
    DAA_digestContext: bytes = bytes(20)
    DAA_digest: bytes = bytes(20)
    DAA_contextSeed: bytes = bytes(20)
    DAA_scratch: bytes = bytes(256)
    DAA_stage: int = 0

    def marshal(self, w):
        w.u16(C.TPM_TAG_DAA_CONTEXT).bytes(self.DAA_digestContext).bytes(self.DAA_digest)
        w.bytes(self.DAA_contextSeed).bytes(self.DAA_scratch).u8(self.DAA_stage)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_DAA_CONTEXT, "TPM_DAA_CONTEXT")
        return cls(r.digest(), r.digest(), r.digest(), r.bytes(256, "DAA_scratch"), r.u8())


@dataclass
class TPM_DAA_JOINDATA(TPMStruct):
    """The join's secrets u0, u1 and the issuer key digest (22.6; untagged)."""
    DAA_join_u0: bytes = bytes(128)
    DAA_join_u1: bytes = bytes(138)
    DAA_digest_n0: bytes = bytes(20)

    def marshal(self, w):
        w.bytes(self.DAA_join_u0).bytes(self.DAA_join_u1).bytes(self.DAA_digest_n0)

    @classmethod
    def unmarshal(cls, r):
        return cls(r.bytes(128, "DAA_join_u0"), r.bytes(138, "DAA_join_u1"), r.digest())


@dataclass
class TPM_DAA_BLOB(TPMStruct):
    """A DAA value exported by the TPM, encrypted and HMAC'ed (22.8)."""
    resourceType: int = C.TPM_RT_DAA_TPM
    label: bytes = bytes(16)
    blobIntegrity: bytes = bytes(20)
    additionalData: bytes = b""
    sensitiveData: bytes = b""

    def marshal(self, w):
        w.u16(C.TPM_TAG_DAA_BLOB).u32(self.resourceType).bytes(self.label)
        w.bytes(self.blobIntegrity).sized32(self.additionalData).sized32(self.sensitiveData)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_DAA_BLOB, "TPM_DAA_BLOB")
        return cls(r.u32(), r.bytes(16, "label"), r.digest(), r.sized32("additionalData"),
                   r.sized32("sensitiveData"))


@dataclass
class TPM_DAA_SENSITIVE(TPMStruct):
    """The plaintext inside a TPM_DAA_BLOB (22.9)."""
    internalData: bytes = b""

    def marshal(self, w):
        w.u16(C.TPM_TAG_DAA_SENSITIVE).sized32(self.internalData)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_DAA_SENSITIVE, "TPM_DAA_SENSITIVE")
        return cls(r.sized32("internalData"))


ALL_STRUCTURES += [TPM_DAA_ISSUER, TPM_DAA_TPM, TPM_DAA_CONTEXT, TPM_DAA_JOINDATA, TPM_DAA_BLOB,
                   TPM_DAA_SENSITIVE]


@dataclass
class TPM_SIGN_INFO(TPMStruct):
    """What TickStampBlob (and the INFO signature scheme) signs (Part 2 11.2)."""
    fixed: bytes = b"TSTP"
    replay: bytes = bytes(20)
    data: bytes = b""

    def marshal(self, w):
        w.u16(C.TPM_TAG_SIGNINFO).bytes(self.fixed).bytes(self.replay).sized32(self.data)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_SIGNINFO, "TPM_SIGN_INFO")
        return cls(r.bytes(4, "fixed"), r.digest(), r.sized32("data"))


ALL_STRUCTURES += [TPM_SIGN_INFO]


# ---------------------------------------------------------------- delegation (Part 2 20)

TPM_DEL_OWNER_BITS = 0x00000001
TPM_DEL_KEY_BITS = 0x00000002


@dataclass
class TPM_DELEGATIONS(TPMStruct):
    delegateType: int = TPM_DEL_OWNER_BITS
    per1: int = 0
    per2: int = 0

    def marshal(self, w):
        w.u16(C.TPM_TAG_DELEGATIONS).u32(self.delegateType).u32(self.per1).u32(self.per2)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_DELEGATIONS, "TPM_DELEGATIONS")
        return cls(r.u32(), r.u32(), r.u32())


@dataclass
class TPM_DELEGATE_PUBLIC(TPMStruct):
    rowLabel: int = 0                 # TPM_DELEGATE_LABEL, one byte
    pcrInfo: TPM_PCR_INFO_SHORT = field(default_factory=TPM_PCR_INFO_SHORT)
    permissions: TPM_DELEGATIONS = field(default_factory=TPM_DELEGATIONS)
    familyID: int = 0
    verificationCount: int = 0

    def marshal(self, w):
        (w.u16(C.TPM_TAG_DELEGATE_PUBLIC).u8(self.rowLabel).struct(self.pcrInfo)
         .struct(self.permissions).u32(self.familyID).u32(self.verificationCount))

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_DELEGATE_PUBLIC, "TPM_DELEGATE_PUBLIC")
        return cls(r.u8(), TPM_PCR_INFO_SHORT.unmarshal(r), TPM_DELEGATIONS.unmarshal(r),
                   r.u32(), r.u32())


@dataclass
class TPM_DELEGATE_SENSITIVE(TPMStruct):
    authValue: bytes = bytes(20)

    def marshal(self, w):
        w.u16(C.TPM_TAG_DELEGATE_SENSITIVE).bytes(self.authValue)

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_DELEGATE_SENSITIVE, "TPM_DELEGATE_SENSITIVE")
        return cls(r.digest())


@dataclass
class TPM_DELEGATE_OWNER_BLOB(TPMStruct):
    pub: TPM_DELEGATE_PUBLIC = field(default_factory=TPM_DELEGATE_PUBLIC)
    integrityDigest: bytes = bytes(20)
    additionalArea: bytes = b""
    sensitiveArea: bytes = b""

    def marshal(self, w):
        (w.u16(C.TPM_TAG_DELEGATE_OWNER_BLOB).struct(self.pub).bytes(self.integrityDigest)
         .sized32(self.additionalArea).sized32(self.sensitiveArea))

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_DELEGATE_OWNER_BLOB, "TPM_DELEGATE_OWNER_BLOB")
        at = r.pos
        pub = TPM_DELEGATE_PUBLIC.unmarshal(r)
        if pub.permissions.delegateType != TPM_DEL_OWNER_BITS:
            raise TPMStructError(at, "owner blob delegateType %d" % pub.permissions.delegateType)
        return cls(pub, r.digest(), r.sized32("additionalArea"), r.sized32("sensitiveArea"))


@dataclass
class TPM_DELEGATE_KEY_BLOB(TPMStruct):
    pub: TPM_DELEGATE_PUBLIC = field(default_factory=TPM_DELEGATE_PUBLIC)
    integrityDigest: bytes = bytes(20)
    pubKeyDigest: bytes = bytes(20)
    additionalArea: bytes = b""
    sensitiveArea: bytes = b""

    def marshal(self, w):
        (w.u16(C.TPM_TAG_DELG_KEY_BLOB).struct(self.pub).bytes(self.integrityDigest)
         .bytes(self.pubKeyDigest).sized32(self.additionalArea).sized32(self.sensitiveArea))

    @classmethod
    def unmarshal(cls, r):
        _expect_tag(r, C.TPM_TAG_DELG_KEY_BLOB, "TPM_DELEGATE_KEY_BLOB")
        at = r.pos
        pub = TPM_DELEGATE_PUBLIC.unmarshal(r)
        if pub.permissions.delegateType != TPM_DEL_KEY_BITS:
            raise TPMStructError(at, "key blob delegateType %d" % pub.permissions.delegateType)
        return cls(pub, r.digest(), r.digest(), r.sized32("additionalArea"),
                   r.sized32("sensitiveArea"))
