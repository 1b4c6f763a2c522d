"""TPM 1.2 structures (Main Specification Part 2), each declared once.

A structure is a dataclass whose annotations, in order, are its wire layout
(layout.py): field names and order as the specification's, a field's type
its wire type (UINT8/16/32/64, TPM_BOOL, TPM_DIGEST, a fixed byte array, a
sized buffer with its bound, a nested structure), and the TPM_STRUCTURE_TAG
or fixed bytes the object does not hold as ClassVars.  Each checks its input
as libtpms's TPM_*_Load does, with the return code it gives (the checks sit
next to the field they check).  marshal/unmarshal (a Writer/Reader, marshal.py)
and to_bytes/from_bytes (a whole buffer) are the layout's, for all of them.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Iterable, NamedTuple

from . import constants as C
from .crypto import sha1
from .layout import (BYTE4, FLAG, IGNORED, REST, SIZED16, SIZED32, TAG, TPM_BOOL, TPM_DIGEST,
                     UINT8, UINT16, UINT32, UINT64, Check, Fixed, Sized, TPMBadValue, TPMStruct,
                     TPMStructError, Union, after, dataclass_structure)
from .marshal import ALLOC_MAX, Reader, TPMDecodeError

__all__ = ["TPMBadValue", "TPMStruct", "TPMStructError"]

KEY_FLAGS_MASK = 0x1F        # the TPM_KEY_FLAGS bits TPM 1.2 defines (libtpms TPM_KEY_FLAGS_MASK)

_U32_BYTES = 4


# ---------------------------------------------------------------- checks (libtpms loaders)

def _locality_legal(v: int, at: int) -> None:
    """TPM_LocalitySelection_CheckLegal: no bit beyond locality 4, not 0."""
    if v == 0 or v & ~C.TPM_LOC_ALL:
        raise TPMBadValue(at, "locality selection %#x" % v, C.TPM_INVALID_STRUCTURE)


def _select_too_big(at: int, n: int, remaining: int, what: str) -> Exception:
    """TPM_PCRSelection_Load: sizeOfSelect checked before the bitmap is read."""
    return TPMBadValue(at, "sizeOfSelect %d" % n, C.TPM_INVALID_PCR_INFO)


def _key_flags_defined(v: int, at: int) -> None:
    """TPM_KeyFlags_Load: an undefined bit set."""
    if v & ~KEY_FLAGS_MASK:
        raise TPMBadValue(at, "keyFlags %#x" % v, C.TPM_BAD_KEY_PROPERTY)


def _version_11(what: str) -> Check:
    """TPM_StructVer_CheckVer, at once: a 1.1 structure's version is 1.1."""
    def check(v: TPM_STRUCT_VER, at: int) -> None:
        if (v.major, v.minor) != (1, 1):
            raise TPMBadValue(at, "%s version" % what, C.TPM_BAD_VERSION)
    return Check(check)


def _key12_tag(v: int, at: int) -> None:
    """TPM_Key_CheckTag, once tag and fill are read."""
    if v != C.TPM_TAG_KEY12:
        raise TPMBadValue(at, "TPM_KEY12 tag %#x" % v, C.TPM_BAD_KEY_PROPERTY)


def _key12_fill(v: int, at: int) -> None:
    if v:
        raise TPMBadValue(at, "TPM_KEY12 fill %#x" % v, C.TPM_BAD_KEY_PROPERTY)


def _stored_data12_tag(v: int, at: int) -> None:
    """TPM_StoredData_Load: a 1.2 blob's tag, checked after et is read."""
    if v != C.TPM_TAG_STORED_DATA12:
        raise TPMBadValue(at, "TPM_STORED_DATA12 tag %#x" % v, C.TPM_BAD_VERSION)


# ---------------------------------------------------------------- versions

@dataclass_structure
class TPM_STRUCT_VER(TPMStruct):
    """1.1 version; in 1.2 structures always 1.1.0.0 (Part 2 5.1)."""
    major: UINT8 = 1
    minor: UINT8 = 1
    revMajor: UINT8 = 0
    revMinor: UINT8 = 0


@dataclass_structure
class TPM_VERSION(TPM_STRUCT_VER):
    """The TPM's version (Part 2 5.3); same layout as TPM_STRUCT_VER."""
    major: UINT8 = 1
    minor: UINT8 = 2
    revMajor: UINT8 = 0
    revMinor: UINT8 = 0


@dataclass_structure
class TPM_CAP_VERSION_INFO(TPMStruct):
    """TPM_CAP_VERSION_VAL answer (Part 2 21.6)."""
    tag: ClassVar[TAG] = C.TPM_TAG_CAP_VERSION_INFO
    version: TPM_VERSION = field(default_factory=TPM_VERSION)
    specLevel: UINT16 = 2
    errataRev: UINT8 = 1
    tpmVendorID: BYTE4 = b"ETHZ"
    vendorSpecific: SIZED16 = b""       # vendorSpecificSize, vendorSpecific


@dataclass_structure
class TPM_DA_ACTION_TYPE(TPMStruct):
    """What the TPM does when the dictionary-attack threshold is reached (Part 2 21.10)."""
    tag: ClassVar[TAG] = C.TPM_TAG_DA_ACTION_TYPE
    actions: UINT32 = C.TPM_DA_ACTION_TIMEOUT


@dataclass_structure
class TPM_DA_INFO(TPMStruct):
    """GetCapability(TPM_CAP_DA_LOGIC) while disableFullDALogicInfo is clear (Part 2 21.7)."""
    tag: ClassVar[TAG] = C.TPM_TAG_DA_INFO
    state: UINT8 = C.TPM_DA_STATE_INACTIVE          # TPM_DA_STATE (21.9)
    currentCount: UINT16 = 0
    thresholdCount: UINT16 = 0
    actionAtThreshold: TPM_DA_ACTION_TYPE = field(default_factory=TPM_DA_ACTION_TYPE)
    actionDependValue: UINT32 = 0
    vendorData: SIZED32 = b""                       # vendorDataSize, vendorData


@dataclass_structure
class TPM_DA_INFO_LIMITED(TPMStruct):
    """GetCapability(TPM_CAP_DA_LOGIC) while disableFullDALogicInfo is set (Part 2 21.8)."""
    tag: ClassVar[TAG] = C.TPM_TAG_DA_INFO_LIMITED
    state: UINT8 = C.TPM_DA_STATE_INACTIVE
    actionAtThreshold: TPM_DA_ACTION_TYPE = field(default_factory=TPM_DA_ACTION_TYPE)
    vendorData: SIZED32 = b""


def _select_size_major(v: int, at: int) -> None:
    """TPM_SelectSize_Load: major MUST be 1, checked as soon as it is read."""
    if v != 1:
        raise TPMBadValue(at, "TPM_SELECT_SIZE major %#x" % v, C.TPM_BAD_PARAMETER)


def _select_size_minor(v: int, at: int) -> None:
    """TPM_SelectSize_Load: minor 1 or 2."""
    if v not in (1, 2):
        raise TPMBadValue(at, "TPM_SELECT_SIZE minor %#x" % v, C.TPM_BAD_PARAMETER)


@dataclass_structure
class TPM_SELECT_SIZE(TPMStruct):
    """GetCapability(TPM_CAP_SELECT_SIZE)'s subCap (Part 2 5.18): a TPM
    version and the PCR selection size asked about."""
    major: Annotated[int, Fixed("B"), Check(_select_size_major, "{v} != 1")] = 1
    minor: Annotated[int, Fixed("B"), Check(_select_size_minor, "{v} not in (1, 2)")] = 2
    reqSize: UINT16 = C.TPM_NUM_PCR_SELECT


class _HandleList:
    """TPM_KEY_HANDLE_LIST's loaded and handle[loaded]: a UINT16 count of
    UINT32 handles."""

    def read(self, r: Reader, name: str) -> list[int]:
        n = r.u16()
        if n > r.remaining // 4:
            raise TPMDecodeError(r.pos, 4 * n, r.remaining, name)
        return [r.u32() for _ in range(n)]

    def write(self, value: list[int], parts: list[bytes]) -> None:
        parts.append(len(value).to_bytes(2, "big"))
        parts.extend(h.to_bytes(4, "big") for h in value)


@dataclass_structure
class TPM_KEY_HANDLE_LIST(TPMStruct):
    """The handles GetCapability(TPM_CAP_HANDLE, TPM_CAP_KEY_HANDLE) lists (Part 2 5.7)."""
    handle: Annotated[list[int], _HandleList()] = field(default_factory=list)


# ---------------------------------------------------------------- PCRs (Part 2 8)

@dataclass_structure
class TPM_PCR_SELECTION(TPMStruct):
    """Part 2 8.1: sizeOfSelect, pcrSelect (at most TPM_NUM_PCR / 8 bytes)."""
    pcrSelect: Annotated[bytes, Sized("H", C.TPM_NUM_PCR // 8, _select_too_big)] = bytes(3)

    @classmethod
    def of(cls, indices: Iterable[int], size: int = 3) -> "TPM_PCR_SELECTION":
        bm = bytearray(size)
        for i in indices:
            bm[i // 8] |= 1 << (i % 8)
        return cls(bytes(bm))

    def indices(self) -> list[int]:
        return [i * 8 + b for i, byte in enumerate(self.pcrSelect) for b in range(8)
                if byte >> b & 1]


# TPM_LOCALITY_SELECTION (8.6): checked as it is read
TPM_LOCALITY_SELECTION = Annotated[int, Fixed("B"), Check(
    _locality_legal, "{v} == 0 or {v} & ~%d" % C.TPM_LOC_ALL)]


@dataclass_structure
class TPM_PCR_COMPOSITE(TPMStruct):
    """Part 2 8.2: pcrValue is the concatenated 20-byte values (valueSize first)."""
    select: TPM_PCR_SELECTION = field(default_factory=TPM_PCR_SELECTION)
    pcrValue: SIZED32 = b""


@dataclass_structure
class TPM_PCR_INFO(TPMStruct):
    """Part 2 8.3."""
    pcrSelection: TPM_PCR_SELECTION = field(default_factory=TPM_PCR_SELECTION)
    digestAtRelease: TPM_DIGEST = bytes(20)
    digestAtCreation: TPM_DIGEST = bytes(20)


@dataclass_structure
class TPM_PCR_INFO_LONG(TPMStruct):
    """Part 2 8.4."""
    tag: ClassVar[TAG] = C.TPM_TAG_PCR_INFO_LONG
    localityAtCreation: TPM_LOCALITY_SELECTION = C.TPM_LOC_ZERO
    localityAtRelease: TPM_LOCALITY_SELECTION = C.TPM_LOC_ALL
    creationPCRSelection: TPM_PCR_SELECTION = field(default_factory=TPM_PCR_SELECTION)
    releasePCRSelection: TPM_PCR_SELECTION = field(default_factory=TPM_PCR_SELECTION)
    digestAtCreation: TPM_DIGEST = bytes(20)
    digestAtRelease: TPM_DIGEST = bytes(20)


@dataclass_structure
class TPM_PCR_INFO_SHORT(TPMStruct):
    """Part 2 8.5."""
    pcrSelection: TPM_PCR_SELECTION = field(default_factory=TPM_PCR_SELECTION)
    localityAtRelease: TPM_LOCALITY_SELECTION = C.TPM_LOC_ALL
    digestAtRelease: TPM_DIGEST = bytes(20)


# ---------------------------------------------------------------- keys (Part 2 10)

@dataclass_structure
class TPM_RSA_KEY_PARMS(TPMStruct):
    """Part 2 10.1.1: exponentSize, exponent (empty: the default 65537)."""
    keyLength: UINT32 = 2048
    numPrimes: UINT32 = 2
    exponent: SIZED32 = b""

    @property
    def exponent_int(self) -> int:
        return int.from_bytes(self.exponent, "big") if self.exponent else 65537


def _bad_key_algorithm(at: int, alg: int) -> Exception:
    return TPMBadValue(at, "key algorithm %#x" % alg, C.TPM_BAD_KEY_PROPERTY)


@dataclass_structure
class TPM_KEY_PARMS(TPMStruct):
    """Part 2 10.1: parmSize, parms (a union on algorithmID).  As libtpms's
    TPM_KeyParms_Load: an RSA key's parms are parsed at once (short:
    TPM_BAD_PARAM_SIZE; bytes after them are ignored), any other algorithm
    but 0 (uninitialised) is TPM_BAD_KEY_PROPERTY."""
    algorithmID: UINT32 = C.TPM_ALG_RSA
    encScheme: UINT16 = C.TPM_ES_NONE
    sigScheme: UINT16 = C.TPM_SS_NONE
    parms: Annotated[bytes, Sized(), Union("algorithmID", {C.TPM_ALG_RSA: TPM_RSA_KEY_PARMS,
                                                             0: None}, _bad_key_algorithm)] = b""

    def rsa(self) -> TPM_RSA_KEY_PARMS:
        return TPM_RSA_KEY_PARMS.from_bytes(self.parms)


@dataclass_structure
class TPM_STORE_PUBKEY(TPMStruct):
    """Part 2 10.4: keyLength, key (the RSA modulus, big-endian)."""
    key: SIZED32 = b""


@dataclass_structure
class TPM_PUBKEY(TPMStruct):
    """Part 2 10.5."""
    algorithmParms: TPM_KEY_PARMS = field(default_factory=TPM_KEY_PARMS)
    pubKey: TPM_STORE_PUBKEY = field(default_factory=TPM_STORE_PUBKEY)


class AnyKey(TPMStruct):
    """What TPM_KEY and TPM_KEY12 share, and what the engine holds either as:
    libtpms keeps both in one TPM_KEY struct (tpm_key.c), the 1.2 blob's tag
    and fill where the 1.1 blob has its version.  Not a structure itself."""

    if not TYPE_CHECKING:
        # the fields below are the subclasses' slots: mypy, seeing an empty
        # __slots__ here, would refuse every assignment to them through AnyKey
        __slots__ = ()
    is_key12: ClassVar[bool] = False
    keyUsage: int
    keyFlags: int
    authDataUsage: int
    algorithmParms: TPM_KEY_PARMS
    PCRInfo: bytes
    pubKey: TPM_STORE_PUBKEY
    encData: bytes

    def public_bytes(self) -> bytes:
        """Everything but encData -- what pubDataDigest covers."""
        return self.to_bytes()[:-(_U32_BYTES + len(self.encData))]

    def pubkey(self) -> TPM_PUBKEY:
        return TPM_PUBKEY(self.algorithmParms, self.pubKey)


@dataclass_structure
class TPM_KEY(AnyKey):
    """A 1.1 key blob (Part 2 10.2); PCRInfo is a TPM_PCR_INFO or empty,
    parsed as it is read (TPM_Key_Load)."""
    ver: Annotated[TPM_STRUCT_VER, _version_11("TPM_KEY")] = field(default_factory=TPM_STRUCT_VER)
    keyUsage: UINT16 = C.TPM_KEY_STORAGE
    keyFlags: Annotated[int, Fixed("I"), Check(
        _key_flags_defined, "{v} & ~%d" % KEY_FLAGS_MASK)] = 0
    authDataUsage: UINT8 = C.TPM_AUTH_ALWAYS
    algorithmParms: TPM_KEY_PARMS = field(default_factory=TPM_KEY_PARMS)
    PCRInfo: Annotated[bytes, Sized(holds=TPM_PCR_INFO)] = b""
    pubKey: TPM_STORE_PUBKEY = field(default_factory=TPM_STORE_PUBKEY)
    encData: SIZED32 = b""


@dataclass_structure
class TPM_KEY12(AnyKey):
    """A 1.2 key blob (Part 2 10.3); PCRInfo is a TPM_PCR_INFO_LONG or empty."""
    tag: ClassVar[Annotated[int, Fixed("H"), after("fill", _key12_tag)]] = C.TPM_TAG_KEY12
    fill: Annotated[int, Fixed("H"), Check(_key12_fill, "{v}")] = 0
    keyUsage: UINT16 = C.TPM_KEY_STORAGE
    keyFlags: Annotated[int, Fixed("I"), Check(
        _key_flags_defined, "{v} & ~%d" % KEY_FLAGS_MASK)] = 0
    authDataUsage: UINT8 = C.TPM_AUTH_ALWAYS
    algorithmParms: TPM_KEY_PARMS = field(default_factory=TPM_KEY_PARMS)
    PCRInfo: Annotated[bytes, Sized(holds=TPM_PCR_INFO_LONG)] = b""
    pubKey: TPM_STORE_PUBKEY = field(default_factory=TPM_STORE_PUBKEY)
    encData: SIZED32 = b""
    is_key12 = True


def unmarshal_any_key(r: Reader) -> AnyKey:
    """A TPM_KEY or TPM_KEY12, told apart by the leading tag/version."""
    if r.remaining and r.data[r.pos] == 0:
        # libtpms TPM_Key_LoadPubData: a TPM_KEY starts with ver.major (not 0),
        # anything else is read as a TPM_KEY12 (a wrong tag or fill:
        # TPM_BAD_KEY_PROPERTY)
        return TPM_KEY12.unmarshal(r)
    return TPM_KEY.unmarshal(r)


@dataclass_structure
class TPM_STORE_ASYMKEY(TPMStruct):
    """The secret half of a wrapped key (Part 2 10.6); privKey is the prime p."""
    payload: UINT8 = C.TPM_PT_ASYM
    usageAuth: TPM_DIGEST = bytes(20)
    migrationAuth: TPM_DIGEST = bytes(20)
    pubDataDigest: TPM_DIGEST = bytes(20)
    privKey: SIZED32 = b""


@dataclass_structure
class TPM_MIGRATE_ASYMKEY(TPMStruct):
    """Part 2 10.8."""
    payload: UINT8 = C.TPM_PT_MIGRATE
    usageAuth: TPM_DIGEST = bytes(20)
    pubDataDigest: TPM_DIGEST = bytes(20)
    partPrivKey: SIZED32 = b""


# ---------------------------------------------------------------- migration (Part 2 5.12, 5.15-5.21)

@dataclass_structure
class TPM_MIGRATIONKEYAUTH(TPMStruct):
    """An owner-approved migration destination (Part 2 5.12)."""
    migrationKey: TPM_PUBKEY = field(default_factory=TPM_PUBKEY)
    migrationScheme: UINT16 = C.TPM_MS_MIGRATE
    digest: TPM_DIGEST = bytes(20)

    def digest_for(self, tpm_proof: bytes) -> bytes:
        """What digest is on the TPM whose tpmProof is given:
        SHA-1(migrationKey || migrationScheme || tpmProof)."""
        return sha1(self.migrationKey.to_bytes(), self.migrationScheme.to_bytes(2, "big"),
                    tpm_proof)


class _DigestList:
    """TPM_MSA_COMPOSITE's MSAlist and migAuthDigest[MSAlist], as libtpms's
    TPM_MsaComposite_Load reads them: the count is never 0, and the
    MSAlist * 20 bytes it allocates first (the product taken as a uint32_t)
    over TPM_ALLOC_MAX is TPM_SIZE, 0 TPM_FAIL."""

    def read(self, r: Reader, name: str) -> list[bytes]:
        at = r.pos
        n = r.u32()
        if n == 0:
            raise TPMBadValue(at, "MSAlist 0", C.TPM_INVALID_STRUCTURE)
        size = (n * 20) & 0xFFFFFFFF
        if size > ALLOC_MAX:
            raise TPMBadValue(at, "MSAlist %d" % n, C.TPM_SIZE)
        if size == 0:
            raise TPMBadValue(at, "MSAlist %d" % n, C.TPM_FAIL)
        if n > r.remaining // 20:
            raise TPMDecodeError(r.pos, 20 * n, r.remaining, name)
        return [r.digest() for _ in range(n)]

    def write(self, value: list[bytes], parts: list[bytes]) -> None:
        parts.append(len(value).to_bytes(4, "big"))
        parts.extend(value)


@dataclass_structure
class TPM_MSA_COMPOSITE(TPMStruct):
    """The migration authorities a certified-migration key may move to, as
    digests of their TPM_PUBKEYs (Part 2 5.15).  The list is never empty."""
    migAuthDigest: Annotated[list[bytes], _DigestList()] = field(default_factory=list)


@dataclass_structure
class TPM_CMK_AUTH(TPMStruct):
    """A migration authority's approval to move one key to one parent (Part 2 5.16)."""
    migrationAuthorityDigest: TPM_DIGEST = bytes(20)
    destinationKeyDigest: TPM_DIGEST = bytes(20)
    sourceKeyDigest: TPM_DIGEST = bytes(20)


@dataclass_structure
class TPM_CMK_MIGAUTH(TPMStruct):
    """HMAC'ed with tpmProof, it is a CMK's migrationAuth (Part 2 5.19)."""
    tag: ClassVar[TAG] = C.TPM_TAG_CMK_MIGAUTH
    msaDigest: TPM_DIGEST = bytes(20)
    pubKeyDigest: TPM_DIGEST = bytes(20)


@dataclass_structure
class TPM_CMK_SIGTICKET(TPMStruct):
    """HMAC'ed with tpmProof: "verKeyDigest's key signed signedData" (Part 2 5.20)."""
    tag: ClassVar[TAG] = C.TPM_TAG_CMK_SIGTICKET
    verKeyDigest: TPM_DIGEST = bytes(20)
    signedData: TPM_DIGEST = bytes(20)


@dataclass_structure
class TPM_CMK_MA_APPROVAL(TPMStruct):
    """HMAC'ed with tpmProof: the owner approved this TPM_MSA_COMPOSITE (Part 2 5.21)."""
    tag: ClassVar[TAG] = C.TPM_TAG_CMK_MA_APPROVAL
    migrationAuthorityDigest: TPM_DIGEST = bytes(20)


# ---------------------------------------------------------------- sealed / bound data (Part 2 9)

class AnyStoredData(TPMStruct):
    """What TPM_STORED_DATA and TPM_STORED_DATA12 share (one TPM_STORED_DATA
    struct in libtpms, tpm_store.c, tag and et where the 1.1 blob has its
    version).  Not a structure itself."""

    __slots__ = ()
    sealInfo: bytes
    encData: bytes

    def digest_bytes(self) -> bytes:
        """What TPM_SEALED_DATA.storedDigest covers: the blob with no encData."""
        return self.to_bytes()[:-(_U32_BYTES + len(self.encData))] + bytes(_U32_BYTES)


@dataclass_structure
class TPM_STORED_DATA(AnyStoredData):
    """1.1 sealed blob (Part 2 9.1); sealInfo is a TPM_PCR_INFO or empty,
    parsed as it is read (TPM_StoredData_Load)."""
    ver: Annotated[TPM_STRUCT_VER, _version_11("TPM_STORED_DATA")] = field(
        default_factory=TPM_STRUCT_VER)
    sealInfo: Annotated[bytes, Sized(holds=TPM_PCR_INFO)] = b""
    encData: SIZED32 = b""


@dataclass_structure
class TPM_STORED_DATA12(AnyStoredData):
    """1.2 sealed blob (Part 2 9.2); sealInfo is a TPM_PCR_INFO_LONG or empty.
    et 0: TPM_Seal's plain blob; TPM_Sealx sets TPM_ET_XOR|TPM_ET_KEY, which
    makes TPM_Unseal return the data encrypted under its OSAP session."""
    tag: ClassVar[Annotated[int, Fixed("H"), after("et", _stored_data12_tag)]] = \
        C.TPM_TAG_STORED_DATA12
    et: UINT16 = 0
    sealInfo: Annotated[bytes, Sized(holds=TPM_PCR_INFO_LONG)] = b""
    encData: SIZED32 = b""


def unmarshal_any_stored_data(r: Reader) -> AnyStoredData:
    """libtpms TPM_StoredData_Load: a first byte 0x01 is a 1.1 blob (version
    1.1 or TPM_BAD_VERSION), anything else a TPM_STORED_DATA12 (tag checked
    after et is read: TPM_BAD_VERSION)."""
    if r.remaining and r.data[r.pos] == 0x01:
        return TPM_STORED_DATA.unmarshal(r)
    return TPM_STORED_DATA12.unmarshal(r)


@dataclass_structure
class TPM_SEALED_DATA(TPMStruct):
    """Part 2 9.3."""
    payload: UINT8 = C.TPM_PT_SEAL
    authData: TPM_DIGEST = bytes(20)
    tpmProof: TPM_DIGEST = bytes(20)
    storedDigest: TPM_DIGEST = bytes(20)
    data: SIZED32 = b""


@dataclass_structure
class TPM_BOUND_DATA(TPMStruct):
    """Part 2 9.5: payloadData runs to the end of the (decrypted) buffer, so
    any prefix longer than the 5-byte header is itself a valid TPM_BOUND_DATA."""
    ver: TPM_STRUCT_VER = field(default_factory=TPM_STRUCT_VER)
    payload: UINT8 = C.TPM_PT_BIND
    payloadData: REST = b""


@dataclass_structure
class TPM_QUOTE_INFO(TPMStruct):
    """What TPM_Quote signs (Part 2 11.3)."""
    version: TPM_STRUCT_VER = field(default_factory=TPM_STRUCT_VER)
    fixed: ClassVar[BYTE4] = b"QUOT"
    digestValue: TPM_DIGEST = bytes(20)   # SHA-1 of the TPM_PCR_COMPOSITE
    externalData: TPM_DIGEST = bytes(20)


@dataclass_structure
class TPM_CHANGEAUTH_VALIDATE(TPMStruct):
    """Part 2 5.11."""
    newAuthSecret: TPM_DIGEST = bytes(20)
    n1: TPM_DIGEST = bytes(20)


# ---------------------------------------------------------------- NV (Part 2 19)

@dataclass_structure
class TPM_NV_ATTRIBUTES(TPMStruct):
    """Part 2 19.2."""
    tag: ClassVar[TAG] = C.TPM_TAG_NV_ATTRIBUTES
    attributes: UINT32 = 0


@dataclass_structure
class TPM_NV_DATA_PUBLIC(TPMStruct):
    """Part 2 19.3."""
    tag: ClassVar[TAG] = C.TPM_TAG_NV_DATA_PUBLIC
    nvIndex: UINT32 = 0
    pcrInfoRead: TPM_PCR_INFO_SHORT = field(default_factory=TPM_PCR_INFO_SHORT)
    pcrInfoWrite: TPM_PCR_INFO_SHORT = field(default_factory=TPM_PCR_INFO_SHORT)
    permission: TPM_NV_ATTRIBUTES = field(default_factory=TPM_NV_ATTRIBUTES)
    bReadSTClear: TPM_BOOL = 0
    bWriteSTClear: TPM_BOOL = 0
    bWriteDefine: TPM_BOOL = 0
    dataSize: UINT32 = 0


# ---------------------------------------------------------------- flags (Part 2 7)

class _FlagFields(NamedTuple):
    names: tuple[str, ...]                           # in declaration order
    word: Callable[[Any], int]                       # as_word(), generated


class _FlagStruct(TPMStruct):
    """A tag followed by one flag byte per field, in declaration order.

    as_word() is kept until a flag changes: every assignment goes through
    __setattr__, which forgets it (GetCapabilityOwner asks for the word on
    every call; flags change a few times in a TPM's life)."""

    __slots__ = ("_word",)
    _word: int | None            # as_word()'s answer, None once a flag is set
    _flags: ClassVar[_FlagFields]

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        _set_word(self, None)

    @classmethod
    def _compiled(cls) -> _FlagFields:
        names = tuple(cls._layout.names)
        # one expression of the flags' bits (GetCapabilityOwner answers two
        # of these words; summing an attrgetter's tuple cost twice as much),
        # added: the bits are distinct, and + on ints is a specialized
        # bytecode where | is a generic call
        source = "def word(s):\n    return %s\n" % " + ".join(
            "(%d if s.%s else 0)" % (1 << i, n) for i, n in enumerate(names))
        ns: dict[str, Any] = {}
        exec(compile(source, "<as_word of %s>" % cls.__name__, "exec"), ns)
        return _FlagFields(names, ns["word"])

    def set_bit(self, bit: int, value: bool) -> None:
        """Set the flag at 1-based position bit (TPM_PF_* / TPM_SF_* numbering)."""
        setattr(self, self._flags.names[bit - 1], bool(value))

    def get_bit(self, bit: int) -> bool:
        return bool(getattr(self, self._flags.names[bit - 1]))

    def as_word(self) -> int:
        """Bit i-1 set for flag i -- the 32-bit form GetCapabilityOwner returns
        (computed by the generated _flags.word, then kept)."""
        try:
            w = self._word
        except AttributeError:   # (never assigned: a structure not made by __init__)
            w = None
        if w is None:
            w = self._flags.word(self)
            _set_word(self, w)
        return w


# the slot's own setter: stores as_word()'s answer past __setattr__
_set_word: Callable[[_FlagStruct, int | None], None] = vars(_FlagStruct)["_word"].__set__


@dataclass_structure
class TPM_PERMANENT_FLAGS(_FlagStruct):
    """Part 2 7.1; the defaults are the Xen vTPM's (Berlios emulator) initial values."""
    tag: ClassVar[TAG] = C.TPM_TAG_PERMANENT_FLAGS
    disable: FLAG = False
    ownership: FLAG = True
    deactivated: FLAG = False
    readPubek: FLAG = True
    disableOwnerClear: FLAG = False
    allowMaintenance: FLAG = True
    physicalPresenceLifetimeLock: FLAG = False
    physicalPresenceHWEnable: FLAG = False
    physicalPresenceCMDEnable: FLAG = False
    CEKPUsed: FLAG = False
    TPMpost: FLAG = False
    TPMpostLock: FLAG = False
    FIPS: FLAG = False
    operator: FLAG = False
    enableRevokeEK: FLAG = True
    nvLocked: FLAG = True
    readSRKPub: FLAG = True
    tpmEstablished: FLAG = False
    maintenanceDone: FLAG = False
    disableFullDALogicInfo: FLAG = False


@dataclass_structure
class TPM_STCLEAR_FLAGS(_FlagStruct):
    """Part 2 7.2."""
    tag: ClassVar[TAG] = C.TPM_TAG_STCLEAR_FLAGS
    deactivated: FLAG = False
    disableForceClear: FLAG = False
    physicalPresence: FLAG = False
    physicalPresenceLock: FLAG = False
    bGlobalLock: FLAG = False


for _cls in (TPM_PERMANENT_FLAGS, TPM_STCLEAR_FLAGS):
    _cls._flags = _cls._compiled()
del _cls


@dataclass_structure
class TPM_CURRENT_TICKS(TPMStruct):
    """Part 2 15.1."""
    tag: ClassVar[TAG] = C.TPM_TAG_CURRENT_TICKS
    currentTicks: UINT64 = 0
    tickRate: UINT16 = 1      # microseconds per tick
    tickNonce: TPM_DIGEST = bytes(20)


# ---------------------------------------------------------------- transport sessions (Part 2 13)

@dataclass_structure
class TPM_TRANSPORT_PUBLIC(TPMStruct):
    """Part 2 13.1."""
    tag: ClassVar[TAG] = C.TPM_TAG_TRANSPORT_PUBLIC
    transAttributes: UINT32 = 0
    algId: UINT32 = C.TPM_ALG_MGF1
    encScheme: UINT16 = C.TPM_ES_NONE


@dataclass_structure
class TPM_TRANSPORT_LOG_IN(TPMStruct):
    """Part 2 13.3: what a wrapped command extends transDigest with."""
    tag: ClassVar[TAG] = C.TPM_TAG_TRANSPORT_LOG_IN
    parameters: TPM_DIGEST = bytes(20)
    pubKeyHash: TPM_DIGEST = bytes(20)


@dataclass_structure
class TPM_TRANSPORT_LOG_OUT(TPMStruct):
    """Part 2 13.4: what a wrapped command's response extends transDigest with."""
    tag: ClassVar[TAG] = C.TPM_TAG_TRANSPORT_LOG_OUT
    currentTicks: TPM_CURRENT_TICKS = field(default_factory=TPM_CURRENT_TICKS)
    parameters: TPM_DIGEST = bytes(20)
    locality: UINT32 = 0


@dataclass_structure
class TPM_TRANSPORT_AUTH(TPMStruct):
    """Part 2 13.5: the secret of an encrypted EstablishTransport."""
    tag: ClassVar[TAG] = C.TPM_TAG_TRANSPORT_AUTH
    authData: TPM_DIGEST = bytes(20)


# ---------------------------------------------------------------- identities, counters, certifying

@dataclass_structure
class TPM_SYMMETRIC_KEY(TPMStruct):
    """Part 2 9.4: size (UINT16), data."""
    algId: UINT32 = C.TPM_ALG_AES128
    encScheme: UINT16 = C.TPM_ES_SYM_CTR
    data: SIZED16 = b""


@dataclass_structure
class TPM_IDENTITY_CONTENTS(TPMStruct):
    """What MakeIdentity's identityBinding signs (Part 2 12.5)."""
    ver: TPM_STRUCT_VER = field(default_factory=TPM_STRUCT_VER)
    ordinal: UINT32 = C.TPM_ORD_MakeIdentity
    labelPrivCADigest: TPM_DIGEST = bytes(20)
    identityPubKey: TPM_PUBKEY = field(default_factory=TPM_PUBKEY)


@dataclass_structure
class TPM_ASYM_CA_CONTENTS(TPMStruct):
    """The 1.1 ActivateIdentity blob (Part 2 12.8)."""
    sessionKey: TPM_SYMMETRIC_KEY = field(default_factory=TPM_SYMMETRIC_KEY)
    idDigest: TPM_DIGEST = bytes(20)


@dataclass_structure
class TPM_EK_BLOB_ACTIVATE(TPMStruct):
    """Part 2 12.2."""
    tag: ClassVar[TAG] = C.TPM_TAG_EK_BLOB_ACTIVATE
    sessionKey: TPM_SYMMETRIC_KEY = field(default_factory=TPM_SYMMETRIC_KEY)
    idDigest: TPM_DIGEST = bytes(20)
    pcrInfo: TPM_PCR_INFO_SHORT = field(default_factory=TPM_PCR_INFO_SHORT)


TPM_EK_TYPE_ACTIVATE = 0x0001
TPM_EK_TYPE_AUTH = 0x0002


def _bad_ek_type(at: int, ek_type: int) -> Exception:
    """libtpms TPM_Process_ActivateIdentity step 8a: not TPM_EK_TYPE_ACTIVATE."""
    return TPMBadValue(at, "ekType %#x" % ek_type, C.TPM_BAD_TYPE)


@dataclass_structure
class TPM_EK_BLOB(TPMStruct):
    """Part 2 12.1: blob is a union on ekType.  ActivateIdentity, its only
    reader, takes TPM_EK_TYPE_ACTIVATE only (any other type is TPM_BAD_TYPE
    before its blob is looked at), so the blob is parsed as a
    TPM_EK_BLOB_ACTIVATE at once (bytes after it are not looked at)."""
    tag: ClassVar[TAG] = C.TPM_TAG_EK_BLOB
    ekType: UINT16 = TPM_EK_TYPE_ACTIVATE
    blob: Annotated[bytes, Sized(), Union("ekType", {TPM_EK_TYPE_ACTIVATE: TPM_EK_BLOB_ACTIVATE},
                                          _bad_ek_type)] = b""

    def activate(self) -> TPM_EK_BLOB_ACTIVATE:
        return TPM_EK_BLOB_ACTIVATE.from_bytes(self.blob)


@dataclass_structure
class TPM_COUNTER_VALUE(TPMStruct):
    """Part 2 5.13."""
    tag: ClassVar[TAG] = C.TPM_TAG_COUNTER_VALUE
    label: BYTE4 = bytes(4)
    counter: UINT32 = 0


@dataclass_structure
class TPM_AUDIT_EVENT_IN(TPMStruct):
    """What an audited command's input extends the audit digest with (Part 2 14.1)."""
    tag: ClassVar[TAG] = C.TPM_TAG_AUDIT_EVENT_IN
    inputParms: TPM_DIGEST = bytes(20)
    auditCount: TPM_COUNTER_VALUE = field(default_factory=TPM_COUNTER_VALUE)


@dataclass_structure
class TPM_AUDIT_EVENT_OUT(TPMStruct):
    """What an audited command's output extends the audit digest with (Part 2 14.2)."""
    tag: ClassVar[TAG] = C.TPM_TAG_AUDIT_EVENT_OUT
    outputParms: TPM_DIGEST = bytes(20)
    auditCount: TPM_COUNTER_VALUE = field(default_factory=TPM_COUNTER_VALUE)


@dataclass_structure
class TPM_QUOTE_INFO2(TPMStruct):
    """What TPM_Quote2 signs (Part 2 11.4)."""
    tag: ClassVar[TAG] = C.TPM_TAG_QUOTE_INFO2
    fixed: ClassVar[BYTE4] = b"QUT2"
    externalData: TPM_DIGEST = bytes(20)
    infoShort: TPM_PCR_INFO_SHORT = field(default_factory=TPM_PCR_INFO_SHORT)


@dataclass_structure
class TPM_CERTIFY_INFO(TPMStruct):
    """What TPM_CertifyKey signs (Part 2 11.1)."""
    version: TPM_STRUCT_VER = field(default_factory=TPM_STRUCT_VER)
    keyUsage: UINT16 = 0
    keyFlags: UINT32 = 0
    authDataUsage: UINT8 = 0
    algorithmParms: TPM_KEY_PARMS = field(default_factory=TPM_KEY_PARMS)
    pubkeyDigest: TPM_DIGEST = bytes(20)
    data: TPM_DIGEST = bytes(20)
    parentPCRStatus: UINT8 = 0
    PCRInfo: SIZED32 = b""


@dataclass_structure
class TPM_CERTIFY_INFO2(TPMStruct):
    """What TPM_CertifyKey2 signs (Part 2 11.2); pcrInfo is a TPM_PCR_INFO_SHORT or empty."""
    tag: ClassVar[TAG] = C.TPM_TAG_CERTIFY_INFO2
    fill: ClassVar[Annotated[int, Fixed("B"), IGNORED]] = 0
    payloadType: UINT8 = C.TPM_PT_ASYM
    keyUsage: UINT16 = 0
    keyFlags: UINT32 = 0
    authDataUsage: UINT8 = 0
    algorithmParms: TPM_KEY_PARMS = field(default_factory=TPM_KEY_PARMS)
    pubkeyDigest: TPM_DIGEST = bytes(20)
    data: TPM_DIGEST = bytes(20)
    parentPCRStatus: UINT8 = 0
    pcrInfo: SIZED32 = b""
    migrationAuthority: SIZED32 = b""


# ---------------------------------------------------------------- context blobs (Part 2 18)

@dataclass_structure
class TPM_CONTEXT_SENSITIVE(TPMStruct):
    """Part 2 18.2."""
    tag: ClassVar[TAG] = C.TPM_TAG_CONTEXT_SENSITIVE
    contextNonce: TPM_DIGEST = bytes(20)
    internalData: SIZED32 = b""


@dataclass_structure
class TPM_CONTEXT_BLOB(TPMStruct):
    """A saved key or session (Part 2 18.1); sensitiveData is encrypted."""
    tag: ClassVar[TAG] = C.TPM_TAG_CONTEXTBLOB
    resourceType: UINT32 = C.TPM_RT_KEY
    handle: UINT32 = 0
    label: Annotated[bytes, Fixed("16s")] = bytes(16)
    contextCount: UINT32 = 0
    integrityDigest: TPM_DIGEST = bytes(20)
    additionalData: SIZED32 = b""
    sensitiveData: SIZED32 = b""


# ---------------------------------------------------------------- DAA (Part 2 22)

@dataclass_structure
class TPM_DAA_ISSUER(TPMStruct):
    """Digests of the issuer's public parameters, and q itself (22.3)."""
    tag: ClassVar[TAG] = C.TPM_TAG_DAA_ISSUER
    DAA_digest_R0: TPM_DIGEST = bytes(20)
    DAA_digest_R1: TPM_DIGEST = bytes(20)
    DAA_digest_S0: TPM_DIGEST = bytes(20)
    DAA_digest_S1: TPM_DIGEST = bytes(20)
    DAA_digest_n: TPM_DIGEST = bytes(20)
    DAA_digest_gamma: TPM_DIGEST = bytes(20)
    DAA_generic_q: Annotated[bytes, Fixed("26s")] = bytes(26)


@dataclass_structure
class TPM_DAA_TPM(TPMStruct):
    """The TPM's own DAA parameters, exported (encrypted) by the join (22.4)."""
    tag: ClassVar[TAG] = C.TPM_TAG_DAA_TPM
    DAA_digestIssuer: TPM_DIGEST = bytes(20)
    DAA_digest_v0: TPM_DIGEST = bytes(20)
    DAA_digest_v1: TPM_DIGEST = bytes(20)
    DAA_rekey: TPM_DIGEST = bytes(20)
    DAA_count: UINT32 = 0


@dataclass_structure
class TPM_DAA_CONTEXT(TPMStruct):
    """A DAA session's working state; never leaves the TPM (22.5)."""
    tag: ClassVar[TAG] = C.TPM_TAG_DAA_CONTEXT
    DAA_digestContext: TPM_DIGEST = bytes(20)
    DAA_digest: TPM_DIGEST = bytes(20)
    DAA_contextSeed: TPM_DIGEST = bytes(20)
    DAA_scratch: Annotated[bytes, Fixed("256s")] = bytes(256)
    DAA_stage: UINT8 = 0


@dataclass_structure
class TPM_DAA_JOINDATA(TPMStruct):
    """The join's secrets u0, u1 and the issuer key digest (22.6; untagged)."""
    DAA_join_u0: Annotated[bytes, Fixed("128s")] = bytes(128)
    DAA_join_u1: Annotated[bytes, Fixed("138s")] = bytes(138)
    DAA_digest_n0: TPM_DIGEST = bytes(20)


@dataclass_structure
class TPM_DAA_BLOB(TPMStruct):
    """A DAA value exported by the TPM, encrypted and HMAC'ed (22.8)."""
    tag: ClassVar[TAG] = C.TPM_TAG_DAA_BLOB
    resourceType: UINT32 = C.TPM_RT_DAA_TPM
    label: Annotated[bytes, Fixed("16s")] = bytes(16)
    blobIntegrity: TPM_DIGEST = bytes(20)
    additionalData: SIZED32 = b""
    sensitiveData: SIZED32 = b""


@dataclass_structure
class TPM_DAA_SENSITIVE(TPMStruct):
    """The plaintext inside a TPM_DAA_BLOB (22.9)."""
    tag: ClassVar[TAG] = C.TPM_TAG_DAA_SENSITIVE
    internalData: SIZED32 = b""


@dataclass_structure
class TPM_SIGN_INFO(TPMStruct):
    """What TickStampBlob (and the INFO signature scheme) signs (Part 2 5.14)."""
    tag: ClassVar[TAG] = C.TPM_TAG_SIGNINFO
    fixed: BYTE4 = b"TSTP"
    replay: TPM_DIGEST = bytes(20)
    data: SIZED32 = b""


# ---------------------------------------------------------------- delegation (Part 2 20)

TPM_DEL_OWNER_BITS = 0x00000001
TPM_DEL_KEY_BITS = 0x00000002


@dataclass_structure
class TPM_FAMILY_TABLE_ENTRY(TPMStruct):
    """A row of the family table, as Delegate_ReadTable returns it (Part 2 20.5)."""
    tag: ClassVar[TAG] = C.TPM_TAG_FAMILY_TABLE_ENTRY
    familyLabel: UINT8 = 0              # TPM_FAMILY_LABEL (20.4)
    familyID: UINT32 = 0
    verificationCount: UINT32 = 1
    flags: UINT32 = 0


@dataclass_structure
class TPM_DELEGATIONS(TPMStruct):
    """Part 2 20.2."""
    tag: ClassVar[TAG] = C.TPM_TAG_DELEGATIONS
    delegateType: UINT32 = TPM_DEL_OWNER_BITS
    per1: UINT32 = 0
    per2: UINT32 = 0


@dataclass_structure
class TPM_DELEGATE_PUBLIC(TPMStruct):
    """Part 2 20.8."""
    tag: ClassVar[TAG] = C.TPM_TAG_DELEGATE_PUBLIC
    rowLabel: UINT8 = 0                 # TPM_DELEGATE_LABEL
    pcrInfo: TPM_PCR_INFO_SHORT = field(default_factory=TPM_PCR_INFO_SHORT)
    permissions: TPM_DELEGATIONS = field(default_factory=TPM_DELEGATIONS)
    familyID: UINT32 = 0
    verificationCount: UINT32 = 0


@dataclass_structure
class TPM_DELEGATE_SENSITIVE(TPMStruct):
    """Part 2 20.11."""
    tag: ClassVar[TAG] = C.TPM_TAG_DELEGATE_SENSITIVE
    authValue: TPM_DIGEST = bytes(20)


def _delegating(bits: int, what: str) -> Check:
    """An owner (key) delegation blob's public part delegates owner (key) bits."""
    def check(pub: TPM_DELEGATE_PUBLIC, at: int) -> None:
        if pub.permissions.delegateType != bits:
            raise TPMStructError(at, "%s delegateType %d" % (what, pub.permissions.delegateType))
    return Check(check)


@dataclass_structure
class TPM_DELEGATE_OWNER_BLOB(TPMStruct):
    """Part 2 20.12."""
    tag: ClassVar[TAG] = C.TPM_TAG_DELEGATE_OWNER_BLOB
    pub: Annotated[TPM_DELEGATE_PUBLIC, _delegating(TPM_DEL_OWNER_BITS, "owner blob")] = field(
        default_factory=TPM_DELEGATE_PUBLIC)
    integrityDigest: TPM_DIGEST = bytes(20)
    additionalArea: SIZED32 = b""
    sensitiveArea: SIZED32 = b""


@dataclass_structure
class TPM_DELEGATE_KEY_BLOB(TPMStruct):
    """Part 2 20.13."""
    tag: ClassVar[TAG] = C.TPM_TAG_DELG_KEY_BLOB
    pub: Annotated[TPM_DELEGATE_PUBLIC, _delegating(TPM_DEL_KEY_BITS, "key blob")] = field(
        default_factory=TPM_DELEGATE_PUBLIC)
    integrityDigest: TPM_DIGEST = bytes(20)
    pubKeyDigest: TPM_DIGEST = bytes(20)
    additionalArea: SIZED32 = b""
    sensitiveArea: SIZED32 = b""


ALL_STRUCTURES: list[type[TPMStruct]] = [
    TPM_STRUCT_VER, TPM_VERSION, TPM_CAP_VERSION_INFO, TPM_DA_ACTION_TYPE, TPM_DA_INFO,
    TPM_DA_INFO_LIMITED, TPM_RSA_KEY_PARMS, TPM_KEY_PARMS,
    TPM_STORE_PUBKEY, TPM_PUBKEY, TPM_KEY, TPM_KEY12, TPM_STORE_ASYMKEY, TPM_MIGRATE_ASYMKEY,
    TPM_MIGRATIONKEYAUTH, TPM_MSA_COMPOSITE, TPM_CMK_AUTH, TPM_CMK_MIGAUTH, TPM_CMK_SIGTICKET,
    TPM_CMK_MA_APPROVAL,
    TPM_PCR_SELECTION, TPM_PCR_COMPOSITE, TPM_PCR_INFO, TPM_PCR_INFO_LONG, TPM_PCR_INFO_SHORT,
    TPM_STORED_DATA, TPM_STORED_DATA12, TPM_SEALED_DATA, TPM_BOUND_DATA, TPM_QUOTE_INFO,
    TPM_CHANGEAUTH_VALIDATE, TPM_NV_ATTRIBUTES, TPM_NV_DATA_PUBLIC, TPM_PERMANENT_FLAGS,
    TPM_STCLEAR_FLAGS, TPM_CURRENT_TICKS,
    TPM_TRANSPORT_PUBLIC, TPM_TRANSPORT_LOG_IN, TPM_TRANSPORT_LOG_OUT, TPM_TRANSPORT_AUTH,
    TPM_SYMMETRIC_KEY, TPM_IDENTITY_CONTENTS, TPM_ASYM_CA_CONTENTS, TPM_EK_BLOB_ACTIVATE,
    TPM_EK_BLOB, TPM_COUNTER_VALUE, TPM_QUOTE_INFO2, TPM_CERTIFY_INFO, TPM_CERTIFY_INFO2,
    TPM_CONTEXT_SENSITIVE, TPM_CONTEXT_BLOB,
    TPM_DAA_ISSUER, TPM_DAA_TPM, TPM_DAA_CONTEXT, TPM_DAA_JOINDATA, TPM_DAA_BLOB,
    TPM_DAA_SENSITIVE, TPM_SIGN_INFO, TPM_FAMILY_TABLE_ENTRY, TPM_AUDIT_EVENT_IN,
    TPM_AUDIT_EVENT_OUT, TPM_SELECT_SIZE, TPM_KEY_HANDLE_LIST,
]
