"""Keys and protected storage: CreateWrapKey, LoadKey(2), GetPubKey, EvictKey,
KeyControlOwner, Seal, Sealx, Unseal, UnBind, Sign, Quote (Part 3 10, 11, 13, 16, 27).

A wrapped key's encData is its TPM_STORE_ASYMKEY (holding the prime p)
encrypted to the parent with RSA-OAEP(SHA-1, MGF1, label "TCPA")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import RSAKey, aes128_ctr, mgf1, sha1, xor
from ..engine import CHECK_ALL, LoadedKey, T0, T1, T10, T21, TPMError, command
from ..marshal import TPMDecodeError, Writer
from ..structures import (TPM_BOUND_DATA, TPM_PCR_COMPOSITE, TPM_PCR_INFO, TPM_PCR_INFO_LONG,
                          TPM_PCR_SELECTION, TPM_PUBKEY, TPM_QUOTE_INFO, TPM_SEALED_DATA,
                          TPM_SIGN_INFO, TPM_STORE_ASYMKEY, TPM_STORE_PUBKEY, TPM_STORED_DATA,
                          TPM_STORED_DATA12, unmarshal_any_key, unmarshal_any_stored_data)

if TYPE_CHECKING:
    from ..structures import AnyKey

    # a key's or a sealed blob's PCR binding: a 1.1 or a 1.2 structure
    PcrInfo = TPM_PCR_INFO | TPM_PCR_INFO_LONG
    from ..engine import Ctx, TPM
    from ..marshal import Reader

_MIGRATABLE = 0x00000002
_MIGRATE_AUTHORITY = 0x00000010
# payloads of a loadable key: a plain one, a CMK made here (TPM_CMK_CreateKey)
# and a CMK migrated in (TPM_CMK_ConvertMigration)
_KEY_PAYLOADS = (C.TPM_PT_ASYM, C.TPM_PT_MIGRATE_RESTRICTED, C.TPM_PT_MIGRATE_EXTERNAL)


# ---------------------------------------------------------------- PCR binding

def parse_pcr_info(data: bytes, long: bool) -> PcrInfo | None:
    if not data:
        return None
    try:
        info = (TPM_PCR_INFO_LONG if long else TPM_PCR_INFO).from_bytes(data)
    except TPMDecodeError:
        raise TPMError(C.TPM_INVALID_PCR_INFO) from None
    sels = ([info.creationPCRSelection, info.releasePCRSelection]
            if isinstance(info, TPM_PCR_INFO_LONG) else [info.pcrSelection])
    for s in sels:
        if len(s.pcrSelect) > C.TPM_NUM_PCR_SELECT:
            raise TPMError(C.TPM_INVALID_PCR_INFO)
    return info


def _release_selection(info: PcrInfo) -> TPM_PCR_SELECTION:
    return info.releasePCRSelection if isinstance(info, TPM_PCR_INFO_LONG) else info.pcrSelection


def check_pcr_binding(tpm: TPM, info: PcrInfo | None, locality: int) -> None:
    """Refuse use when the PCRs (or the locality) differ from digestAtRelease."""
    if info is None:
        return
    if isinstance(info, TPM_PCR_INFO_LONG):
        if not tpm.check_locality(info.localityAtRelease, locality):
            raise TPMError(C.TPM_BAD_LOCALITY)
    sel = _release_selection(info)
    if sel.indices():
        if tpm.pcr_composite_hash(sel.pcrSelect) != info.digestAtRelease:
            raise TPMError(C.TPM_WRONGPCRVAL)


def fill_creation(tpm: TPM, info: PcrInfo, locality: int) -> None:
    """Set digestAtCreation (and localityAtCreation) as the TPM does on creation."""
    if isinstance(info, TPM_PCR_INFO_LONG):
        info.localityAtCreation = 1 << locality if 0 <= locality <= 4 else 0
        info.digestAtCreation = tpm.pcr_composite_hash(info.creationPCRSelection.pcrSelect)
    else:
        info.digestAtCreation = tpm.pcr_composite_hash(info.pcrSelection.pcrSelect)


def key_pcr_info(key: LoadedKey) -> PcrInfo | None:
    return parse_pcr_info(key.blob.PCRInfo, key.blob.is_key12)


# ---------------------------------------------------------------- key use helpers

def use_key(tpm: TPM, ctx: Ctx, handle: int, i: int = 0) -> LoadedKey:
    """Authorize use of a loaded key: HMAC if the key needs auth (tag C1 then fails)."""
    key = tpm.key_by_handle(handle)
    needs = key.blob.authDataUsage != C.TPM_AUTH_NEVER
    if i < ctx.n_auth:
        ctx.verify(i, key.usage_auth, C.TPM_ET_KEYHANDLE, handle)
    elif needs:
        raise TPMError(C.TPM_AUTHFAIL)
    return key


def storage_parent(key: LoadedKey) -> LoadedKey:
    if key.usage != C.TPM_KEY_STORAGE:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    return key


def key_properties(info: AnyKey, key_length: int = 0) -> None:
    """libtpms TPM_Key_CheckProperties / TPM_KeyParms_CheckProperties (FIPS
    off): an RSA key of at most 2048 bits (exactly key_length if given), two
    primes, the schemes its usage allows, the default exponent where libtpms
    asks for it; anything else is TPM_BAD_KEY_PROPERTY."""
    parms = info.algorithmParms
    if parms.algorithmID != C.TPM_ALG_RSA:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    rsa = parms.rsa()
    if ((key_length and rsa.keyLength != key_length) or rsa.keyLength > 2048
            or rsa.numPrimes != 2):
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    es, ss = parms.encScheme, parms.sigScheme
    OAEP, PKCS, NONE = C.TPM_ES_RSAESOAEP_SHA1_MGF1, C.TPM_ES_RSAESPKCSv15, C.TPM_ES_NONE
    SHA1, DER = C.TPM_SS_RSASSAPKCS1v15_SHA1, C.TPM_SS_RSASSAPKCS1v15_DER
    # usage -> (encSchemes, sigSchemes, minimum bits or None, default exponent required)
    rules: dict[int, tuple[tuple[int, ...], tuple[int, ...], int | None, bool]] = {
        C.TPM_KEY_SIGNING: ((NONE,), (SHA1, DER, C.TPM_SS_RSASSAPKCS1v15_INFO), None, False),
        C.TPM_KEY_STORAGE: ((OAEP,), (C.TPM_SS_NONE,), 2048, True),
        C.TPM_KEY_IDENTITY: ((NONE,), (SHA1,), 2048, True),
        C.TPM_KEY_AUTHCHANGE: ((OAEP,), (C.TPM_SS_NONE,), 512, False),
        C.TPM_KEY_BIND: ((OAEP, PKCS), (C.TPM_SS_NONE,), None, False),
        C.TPM_KEY_LEGACY: ((OAEP, PKCS), (SHA1, DER), None, False),
        C.TPM_KEY_MIGRATE: ((OAEP,), (C.TPM_SS_NONE,), 2048, True),
    }
    rule = rules.get(info.keyUsage)
    if rule is None:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    encs, sigs, min_bits, default_exponent = rule
    if es not in encs or ss not in sigs or (min_bits and rsa.keyLength < min_bits):
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    e = rsa.exponent
    if default_exponent and e and (len(e) < 3 or any(e[:-3]) or e[-3:] != b"\x01\x00\x01"):
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)       # TPM_KeyParams_CheckDefaultExponent


def check_key_template(info: AnyKey, loading: bool = False) -> int:
    """Validate a key template (CreateWrapKey keyInfo) or, with loading, a
    blob to load (identity keys come from MakeIdentity); returns its bits."""
    parms = info.algorithmParms
    if parms.algorithmID != C.TPM_ALG_RSA:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    try:
        rsa = parms.rsa()
    except TPMDecodeError:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY) from None
    if rsa.keyLength not in (512, 1024, 2048) or rsa.numPrimes != 2 or rsa.exponent_int != 65537:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    u, es, ss = info.keyUsage, parms.encScheme, parms.sigScheme
    OAEP, PKCS, NONE = C.TPM_ES_RSAESOAEP_SHA1_MGF1, C.TPM_ES_RSAESPKCSv15, C.TPM_ES_NONE
    SIGS = (C.TPM_SS_RSASSAPKCS1v15_SHA1, C.TPM_SS_RSASSAPKCS1v15_DER,
            C.TPM_SS_RSASSAPKCS1v15_INFO)
    # (allowed encSchemes, allowed sigSchemes) per key usage (Part 3 10.4 / 13)
    rules: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
        C.TPM_KEY_STORAGE: ((OAEP,), (C.TPM_SS_NONE,)),
        C.TPM_KEY_SIGNING: ((NONE,), SIGS),
        C.TPM_KEY_BIND: ((OAEP, PKCS), (C.TPM_SS_NONE,)),
        C.TPM_KEY_LEGACY: ((OAEP, PKCS), SIGS[:2]),
        C.TPM_KEY_MIGRATE: ((OAEP,), (C.TPM_SS_NONE,)),
    }
    if loading:
        rules[C.TPM_KEY_IDENTITY] = ((NONE,), (C.TPM_SS_RSASSAPKCS1v15_SHA1,))
    if u not in rules:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    encs, sigs = rules[u]
    if es not in encs:
        raise TPMError(C.TPM_INAPPROPRIATE_ENC)
    if ss not in sigs:
        raise TPMError(C.TPM_INAPPROPRIATE_SIG)
    if u == C.TPM_KEY_STORAGE and rsa.keyLength != 2048:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    if info.authDataUsage not in (C.TPM_AUTH_NEVER, C.TPM_AUTH_ALWAYS, C.TPM_AUTH_PRIV_USE_ONLY):
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if info.keyFlags & ~0x1F or info.keyFlags & 0x1:
        # redirection is not supported
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    return rsa.keyLength


@command(C.TPM_ORD_CreateWrapKey)
def CreateWrapKey(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    parent_handle = r.u32()
    ctx.mark(r)
    enc_usage = r.digest()
    enc_mig = r.digest()
    info = unmarshal_any_key(r)
    ctx.start(r, (C.TPM_TAG_RQU_AUTH1_COMMAND,), CHECK_ALL)
    parent = storage_parent(use_key(tpm, ctx, parent_handle))
    usage_auth = ctx.decrypt_auth(enc_usage)
    mig_auth = ctx.decrypt_auth(enc_mig, odd=True)
    bits = check_key_template(info)
    if info.keyFlags & _MIGRATE_AUTHORITY:
        # only TPM_CMK_CreateKey makes certified-migration keys
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if not info.keyFlags & _MIGRATABLE:
        mig_auth = tpm.perm.tpm_proof
    rsa = generate_key(tpm, ctx, info, bits)
    asym = TPM_STORE_ASYMKEY(C.TPM_PT_ASYM, usage_auth, mig_auth, sha1(info.public_bytes()),
                             rsa.prime())
    info.encData = parent.rsa.encrypt_oaep(asym.to_bytes())
    return info.to_bytes()


def generate_key(tpm: TPM, ctx: Ctx, info: AnyKey, bits: int) -> RSAKey:
    """Make the key a checked template asks for: fill in its PCR creation
    values and its public key (the caller builds and wraps its secrets)."""
    pcr = parse_pcr_info(info.PCRInfo, info.is_key12)
    if pcr is not None:
        fill_creation(tpm, pcr, ctx.locality)
        info.PCRInfo = pcr.to_bytes()
    rsa = tpm.key_source(bits)
    info.pubKey = TPM_STORE_PUBKEY(rsa.modulus())
    return rsa


def _unwrap(tpm: TPM, parent: LoadedKey, blob: AnyKey) -> LoadedKey:
    try:
        plain = parent.rsa.decrypt_oaep(blob.encData)
        asym = TPM_STORE_ASYMKEY.from_bytes(plain)
    except (ValueError, TPMDecodeError):
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    if asym.payload not in _KEY_PAYLOADS or asym.pubDataDigest != sha1(blob.public_bytes()):
        raise TPMError(C.TPM_DECRYPT_ERROR)
    if not blob.keyFlags & _MIGRATABLE and asym.migrationAuth != tpm.perm.tpm_proof:
        raise TPMError(C.TPM_FAIL)
    try:
        n = int.from_bytes(blob.pubKey.key, "big")
        rsa = RSAKey.from_modulus_prime(n, blob.algorithmParms.rsa().exponent_int,
                                        int.from_bytes(asym.privKey, "big"))
    except (ValueError, TPMDecodeError):
        raise TPMError(C.TPM_BAD_KEY_PROPERTY) from None
    parse_pcr_info(blob.PCRInfo, blob.is_key12)
    return LoadedKey(blob, rsa, asym.usageAuth, asym.migrationAuth, asym.payload)


def _load(tpm: TPM, ctx: Ctx, r: Reader, key2: bool) -> bytes:
    parent_handle = r.u32()
    ctx.mark(r)
    blob = unmarshal_any_key(r)
    ctx.start(r, T10, CHECK_ALL)
    parent = storage_parent(use_key(tpm, ctx, parent_handle))
    check_key_template(blob, loading=True)
    key = _unwrap(tpm, parent, blob)
    if len(tpm.keys) >= tpm.identity.max_keys:
        raise TPMError(C.TPM_NOSPACE)
    handle = tpm.add_key(key)
    ctx.out_skip = 4 if key2 else 0
    return handle.to_bytes(4, "big")


@command(C.TPM_ORD_LoadKey2)
def LoadKey2(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    return _load(tpm, ctx, r, True)


@command(C.TPM_ORD_LoadKey)
def LoadKey(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    return _load(tpm, ctx, r, False)


@command(C.TPM_ORD_GetPubKey)
def GetPubKey(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    ctx.start(r, T10, CHECK_ALL)
    if handle == C.TPM_KH_SRK and not tpm.perm.flags.readSRKPub:
        raise TPMError(C.TPM_INVALID_KEYHANDLE)
    key = tpm.key_by_handle(handle)
    if ctx.n_auth:
        ctx.verify(0, key.usage_auth, C.TPM_ET_KEYHANDLE, handle)
    elif key.blob.authDataUsage == C.TPM_AUTH_ALWAYS and handle != C.TPM_KH_SRK:
        raise TPMError(C.TPM_AUTHFAIL)
    if not key.blob.keyFlags & 0x8:        # pcrIgnoredOnRead
        check_pcr_binding(tpm, key_pcr_info(key), ctx.locality)
    return key.blob.pubkey().to_bytes()


@command(C.TPM_ORD_EvictKey)
def EvictKey(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.start(r, T0, CHECK_ALL)
    tpm.unload_key(handle)
    return b""


TPM_KEY_CONTROL_OWNER_EVICT = 0x00000001
MAX_EVICT_KEYS = 3     # owner-evict keys may not take the last key slots


@command(C.TPM_ORD_KeyControlOwner)
def KeyControlOwner(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    pub = TPM_PUBKEY.unmarshal(r)
    bit, value = r.u32(), r.u8()
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    key = tpm.key_by_handle(handle)
    if key.usage not in (C.TPM_KEY_SIGNING, C.TPM_KEY_STORAGE, C.TPM_KEY_IDENTITY,
                         C.TPM_KEY_BIND, C.TPM_KEY_LEGACY):
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if handle == C.TPM_KH_SRK or pub.to_bytes() != key.blob.pubkey().to_bytes():
        raise TPMError(C.TPM_BAD_PARAMETER)
    if bit != TPM_KEY_CONTROL_OWNER_EVICT:
        raise TPMError(C.TPM_BAD_MODE)
    if key.blob.keyFlags & 0x4:
        # isVolatile (a migratable key may be owner-evict: libtpms and the emulator agree)
        raise TPMError(C.TPM_BAD_PARAMETER)
    evict = tpm.perm.evict_keys
    if value:
        if handle not in evict and len(evict) >= MAX_EVICT_KEYS:
            raise TPMError(C.TPM_NOSPACE)
        evict[handle] = key
    else:
        evict.pop(handle, None)
    return b""


# ---------------------------------------------------------------- seal / unseal

@command(C.TPM_ORD_Seal)
def Seal(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    enc_auth = r.digest()
    pcr_bytes = r.sized32("pcrInfo")
    data = r.sized32("inData")
    ctx.start(r, (C.TPM_TAG_RQU_AUTH1_COMMAND,), CHECK_ALL)
    key = storage_parent(use_key(tpm, ctx, handle))
    check_pcr_binding(tpm, key_pcr_info(key), ctx.locality)
    data_auth = ctx.decrypt_auth(enc_auth)
    long = pcr_bytes[:2] == b"\x00\x06"
    info = parse_pcr_info(pcr_bytes, long)
    if info is not None:
        fill_creation(tpm, info, ctx.locality)
        pcr_bytes = info.to_bytes()
    stored = TPM_STORED_DATA12(sealInfo=pcr_bytes) if long else TPM_STORED_DATA(sealInfo=pcr_bytes)
    sealed = TPM_SEALED_DATA(C.TPM_PT_SEAL, data_auth, tpm.perm.tpm_proof,
                             sha1(stored.digest_bytes()), data)
    try:
        stored.encData = key.rsa.encrypt_oaep(sealed.to_bytes())
    except ValueError:
        raise TPMError(C.TPM_BAD_DATASIZE) from None
    return stored.to_bytes()


def seal_crypt(ctx: Ctx, i: int, data: bytes, scheme: int) -> bytes:
    """Sealx / Unseal with et: with OSAP session i, XOR data with
    MGF1(authLastNonceEven || nonceOdd || "XOR" || sharedSecret), or run
    AES-128-CTR keyed by sharedSecret from SHA-1(authLastNonceEven || nonceOdd)
    (libtpms; the emulator does XOR only)."""
    s = ctx.session(i)
    odd = ctx.auths[i].nonce_odd
    if scheme == C.TPM_ET_XOR:
        return xor(data, mgf1(s.nonce_even + odd + b"XOR" + s.shared_secret, len(data)))
    if scheme == C.TPM_ET_AES128_CTR and not ctx.tpm.identity.berlios:
        return aes128_ctr(s.shared_secret, sha1(s.nonce_even, odd), data)
    raise TPMError(C.TPM_INAPPROPRIATE_ENC)


@command(C.TPM_ORD_Sealx)
def Sealx(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """Seal whose inData arrives encrypted under the key's OSAP session and
    whose blob tells Unseal to return it encrypted the same way."""
    handle = r.u32()
    ctx.mark(r)
    enc_auth = r.digest()
    pcr_bytes = r.sized32("pcrInfo")
    data = r.sized32("inData")
    ctx.start(r, T1, CHECK_ALL)
    key = tpm.key_by_handle(handle)
    s = ctx.verify(0, key.usage_auth, C.TPM_ET_KEYHANDLE, handle, allow_oiap=False)
    if not data:
        raise TPMError(C.TPM_BAD_PARAMETER)
    storage_parent(key)
    if key.blob.keyFlags & _MIGRATABLE:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    check_pcr_binding(tpm, key_pcr_info(key), ctx.locality)
    info = None
    if pcr_bytes:
        try:
            info = TPM_PCR_INFO_LONG.from_bytes(pcr_bytes)
        except (TPMDecodeError, ValueError):
            raise TPMError(C.TPM_BADINDEX) from None
        fill_creation(tpm, info, ctx.locality)
    data_auth = ctx.decrypt_auth(enc_auth)
    plain = seal_crypt(ctx, 0, data, s.adip)
    # et: the scheme in the MSB; XOR adds TPM_ET_KEY since 0 means "not encrypted"
    et = (C.TPM_ET_XOR << 8) | C.TPM_ET_KEY if s.adip == C.TPM_ET_XOR else s.adip << 8
    stored = TPM_STORED_DATA12(sealInfo=info.to_bytes() if info else b"", et=et)
    sealed = TPM_SEALED_DATA(C.TPM_PT_SEAL, data_auth, tpm.perm.tpm_proof,
                             sha1(stored.digest_bytes()), plain)
    ctx.auths[0].cont = 0                    # the session ends with the command
    try:
        stored.encData = key.rsa.encrypt_oaep(sealed.to_bytes())
    except ValueError:
        raise TPMError(C.TPM_BAD_DATASIZE) from None
    return stored.to_bytes()


@command(C.TPM_ORD_Unseal)
def Unseal(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    stored = unmarshal_any_stored_data(r)
    ctx.start(r, T21, CHECK_ALL)
    key = tpm.key_by_handle(handle)
    data_i = 1 if ctx.n_auth == 2 else 0
    if ctx.n_auth == 2:
        ctx.verify(0, key.usage_auth, C.TPM_ET_KEYHANDLE, handle)
    elif key.blob.authDataUsage != C.TPM_AUTH_NEVER:
        raise TPMError(C.TPM_AUTHFAIL)
    storage_parent(key)
    check_pcr_binding(tpm, key_pcr_info(key), ctx.locality)
    try:
        sealed = TPM_SEALED_DATA.from_bytes(key.rsa.decrypt_oaep(stored.encData))
    except (ValueError, TPMDecodeError):
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    if (sealed.payload != C.TPM_PT_SEAL or sealed.tpmProof != tpm.perm.tpm_proof
            or sealed.storedDigest != sha1(stored.digest_bytes())):
        raise TPMError(C.TPM_NOTSEALED_BLOB)
    info = parse_pcr_info(stored.sealInfo, isinstance(stored, TPM_STORED_DATA12))
    check_pcr_binding(tpm, info, ctx.locality)
    ctx.verify(data_i, sealed.authData, C.TPM_ET_DATA)
    out = sealed.data
    if isinstance(stored, TPM_STORED_DATA12) and stored.et != 0:
        # a Sealx blob: the secret leaves encrypted under the key's OSAP session
        if ctx.n_auth != 2:
            raise TPMError(C.TPM_AUTHFAIL)
        if ctx.session(0).protocol != C.TPM_PID_OSAP:
            raise TPMError(C.TPM_BAD_MODE)
        out = seal_crypt(ctx, 0, out, stored.et >> 8)
        ctx.auths[0].cont = 0
    return Writer().sized32(out).getvalue()


# ---------------------------------------------------------------- bind, sign, quote

@command(C.TPM_ORD_UnBind)
def UnBind(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    data = r.sized32("inData")
    ctx.start(r, T10, CHECK_ALL)
    if not data:
        raise TPMError(C.TPM_BAD_PARAMETER)     # libtpms TPM_Process_UnBind: before the key
    key = use_key(tpm, ctx, handle)
    if key.usage not in (C.TPM_KEY_BIND, C.TPM_KEY_LEGACY):
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    check_pcr_binding(tpm, key_pcr_info(key), ctx.locality)
    es = key.blob.algorithmParms.encScheme
    try:
        if es == C.TPM_ES_RSAESOAEP_SHA1_MGF1:
            plain = key.rsa.decrypt_oaep(data)
        elif es == C.TPM_ES_RSAESPKCSv15:
            plain = key.rsa.decrypt_pkcs1v15(data)
        else:
            raise TPMError(C.TPM_INAPPROPRIATE_ENC)
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    if key.usage == C.TPM_KEY_BIND:
        try:
            bound = TPM_BOUND_DATA.from_bytes(plain)
        except TPMDecodeError:
            raise TPMError(C.TPM_INVALID_STRUCTURE) from None
        if bound.payload != C.TPM_PT_BIND or (bound.ver.major, bound.ver.minor) != (1, 1):
            raise TPMError(C.TPM_INVALID_STRUCTURE)
        plain = bound.payloadData
    return Writer().sized32(plain).getvalue()


def sign_key(tpm: TPM, ctx: Ctx, handle: int, usages: tuple[int, ...]) -> LoadedKey:
    key = use_key(tpm, ctx, handle)
    if key.usage not in usages:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    check_pcr_binding(tpm, key_pcr_info(key), ctx.locality)
    return key


@command(C.TPM_ORD_Sign)
def Sign(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    area = r.sized32("areaToSign")
    ctx.start(r, T10, CHECK_ALL)
    key = sign_key(tpm, ctx, handle, (C.TPM_KEY_SIGNING, C.TPM_KEY_LEGACY))
    ss = key.blob.algorithmParms.sigScheme
    if not area:
        raise TPMError(C.TPM_BAD_PARAMETER)
    if ss == C.TPM_SS_RSASSAPKCS1v15_SHA1:
        if len(area) != 20:
            raise TPMError(C.TPM_BAD_PARAMETER)
        sig = key.rsa.sign_sha1_digest(area)
    elif ss == C.TPM_SS_RSASSAPKCS1v15_DER:
        try:
            sig = key.rsa.sign_raw_pkcs1(area)
        except ValueError:
            raise TPMError(C.TPM_BAD_PARAMETER) from None
    elif ss == C.TPM_SS_RSASSAPKCS1v15_INFO:
        # the signature covers TPM_SIGN_INFO("SIGN", nonceOdd, areaToSign)
        if not ctx.n_auth:
            raise TPMError(C.TPM_BAD_PARAMETER)
        info = TPM_SIGN_INFO(b"SIGN", ctx.auths[0].nonce_odd, area)
        sig = key.rsa.sign_sha1_digest(sha1(info.to_bytes()))
    else:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    return Writer().sized32(sig).getvalue()


@command(C.TPM_ORD_Quote)
def Quote(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    external = r.digest()
    sel = TPM_PCR_SELECTION.unmarshal(r)
    ctx.start(r, T10, CHECK_ALL)
    key = sign_key(tpm, ctx, handle, (C.TPM_KEY_SIGNING, C.TPM_KEY_IDENTITY, C.TPM_KEY_LEGACY))
    if key.blob.algorithmParms.sigScheme != C.TPM_SS_RSASSAPKCS1v15_SHA1:
        raise TPMError(C.TPM_INAPPROPRIATE_SIG)
    if len(sel.pcrSelect) > C.TPM_NUM_PCR_SELECT:
        raise TPMError(C.TPM_INVALID_PCR_INFO)
    comp = TPM_PCR_COMPOSITE(sel, b"".join(tpm.pcrs[i] for i in sel.indices()))
    info = TPM_QUOTE_INFO(digestValue=sha1(comp.to_bytes()), externalData=external)
    sig = key.rsa.sign_sha1_digest(sha1(info.to_bytes()))
    return comp.to_bytes() + Writer().sized32(sig).getvalue()
