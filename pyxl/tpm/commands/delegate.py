"""Owner delegation (Part 3 19, Part 2 20): the family table (Delegate_Manage),
owner delegation blobs (Delegate_CreateOwnerDelegation), the delegate table
(Delegate_LoadOwnerDelegation, Delegate_ReadTable) and DSAP sessions, which
authorize an owner command in place of the owner when the ordinal's bit is
set in the delegation's per1 (Ctx.verify calls check_permission).

Key delegation: CreateKeyDelegation makes a TPM_DELEGATE_KEY_BLOB naming the
key by its public key's digest; DSAP on TPM_ET_DEL_KEY_BLOB then stands for
that key only, for the ordinals of its per1 (Part 2 20.2.3).
VerifyDelegation and UpdateVerification take owner and key blobs.
SetOwnerPointer points "the owner" of later OIAP and OSAP sessions at a
delegate row (legacy software then acts as the delegate without knowing it);
LoadOwnerDelegation and CreateOwnerDelegation(increment) point it back.

The blob's sensitive part is AES-128-CBC under a key derived from tpmProof,
with a zero IV and SEALED_NONCE random bytes before the TPM_DELEGATE_SENSITIVE
(the spec leaves "other fields" to the vendor), so equal secrets seal
differently and the blob is as long as libtpms's (no additionalArea, 32 bytes
of sensitiveArea).  Its integrityDigest is HMAC-SHA1 keyed with tpmProof, as
in libtpms, so a blob only loads on the TPM that made it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import aes_cbc_decrypt, aes_cbc_encrypt, hmac_sha1, nonce, random_bytes, sha1
from ..engine import (CHECK_ALL, CHECK_ALLOW_NO_OWNER, CHECK_NO_LOCKOUT, CHECK_NOT_SHUTDOWN,
                      CHECK_OWNER, T0, T1, T10, DelegateRow, FamilyRow, Session, TPMError,
                      command)
from ..marshal import Reader, TPMDecodeError, Writer
from ..structures import (TPM_DEL_KEY_BITS, TPM_DEL_OWNER_BITS, TPM_DELEGATE_KEY_BLOB,
                          TPM_DELEGATE_OWNER_BLOB, TPM_DELEGATE_PUBLIC, TPM_DELEGATE_SENSITIVE,
                          TPM_FAMILY_TABLE_ENTRY)
from .session import check_adip

if TYPE_CHECKING:
    from typing import TypeVar

    from ..engine import Ctx, LoadedKey, TPM

    DelegateBlob = TPM_DELEGATE_OWNER_BLOB | TPM_DELEGATE_KEY_BLOB
    _Blob = TypeVar("_Blob", TPM_DELEGATE_OWNER_BLOB, TPM_DELEGATE_KEY_BLOB)

FAMILY_ROWS = 16            # TPM_CAP_PROP_FAMILYROWS (the emulator's and swtpm's build)
DELEGATE_ROWS = 4           # TPM_CAP_PROP_DELEGATE_ROW
MAX_NV_WRITE_NOOWNER = 64   # TPM_MAX_NV_WRITE_NOOWNER

# TPM_FAMILY_OPERATION (Part 2 20.11) and TPM_FAMILY_FLAGS (20.12)
TPM_FAMILY_CREATE = 1
TPM_FAMILY_ENABLE = 2
TPM_FAMILY_ADMIN = 3
TPM_FAMILY_INVALIDATE = 4
TPM_DELEGATE_ADMIN_LOCK = 0x00000002
TPM_FAMFLAG_ENABLED = 0x00000001


def family_entry(f: FamilyRow) -> bytes:
    """TPM_FAMILY_TABLE_ENTRY as ReadTable returns it."""
    return TPM_FAMILY_TABLE_ENTRY(f.label, f.family_id, f.verification_count, f.flags).to_bytes()


# Part 2 20.2.1: the per1 bit that delegates each owner-authorized ordinal
# (per2 is all reserved).  Ordinals this engine does not implement are listed
# too, so the table reads as the spec's.
OWNER_PER1 = {
    "KeyControlOwner": 31, "SetOrdinalAuditStatus": 30, "DirWriteAuth": 29,
    "CMK_ApproveMA": 28, "NV_WriteValue": 27, "CMK_CreateTicket": 26, "NV_ReadValue": 25,
    "Delegate_LoadOwnerDelegation": 24, "DAA_Join": 23, "AuthorizeMigrationKey": 22,
    "CreateMaintenanceArchive": 21, "LoadMaintenanceArchive": 20,
    "KillMaintenanceFeature": 19, "OwnerReadInternalPub": 18, "ResetLockValue": 17,
    "OwnerClear": 16, "DisableOwnerClear": 15, "NV_DefineSpace": 14, "OwnerSetDisable": 13,
    "SetCapability": 12, "MakeIdentity": 11, "ActivateIdentity": 10, "OwnerReadPubek": 9,
    "DisablePubekRead": 8, "SetRedirection": 7, "FieldUpgrade": 6,
    "Delegate_UpdateVerification": 5, "CreateCounter": 4, "ReleaseCounterOwner": 3,
    "Delegate_Manage": 2, "Delegate_CreateOwnerDelegation": 1, "DAA_Sign": 0,
}
# Part 2 20.2.3: the per1 bit that delegates each key-authorized ordinal
KEY_PER1 = {
    "CMK_ConvertMigration": 28, "TickStampBlob": 27, "ChangeAuthAsymStart": 26,
    "ChangeAuthAsymFinish": 25, "CMK_CreateKey": 24, "MigrateKey": 23, "LoadKey2": 22,
    "EstablishTransport": 21, "ReleaseTransportSigned": 20, "Quote2": 19, "Sealx": 18,
    "MakeIdentity": 17, "ActivateIdentity": 16, "GetAuditDigestSigned": 15, "Sign": 14,
    "CertifyKey2": 13, "CertifyKey": 12, "CreateWrapKey": 11, "CMK_CreateBlob": 10,
    "CreateMigrationBlob": 9, "ConvertMigrationBlob": 8, "Delegate_CreateKeyDelegation": 7,
    "ChangeAuth": 6, "GetPubKey": 5, "UnBind": 4, "Quote": 3, "Unseal": 2, "Seal": 1,
    "LoadKey": 0,
}


def _ordinal_bits(names: dict[str, int]) -> dict[int, int]:
    return {getattr(C, "TPM_ORD_" + n): bit for n, bit in names.items()
            if hasattr(C, "TPM_ORD_" + n)}


PERMISSION = {TPM_DEL_OWNER_BITS: _ordinal_bits(OWNER_PER1),
              TPM_DEL_KEY_BITS: _ordinal_bits(KEY_PER1)}


def pubkey_digest(key: LoadedKey) -> bytes:
    """SHA-1 of a loaded key's TPM_STORE_PUBKEY (a key blob's pubKeyDigest)."""
    return sha1(key.blob.pubKey.to_bytes())


def dsap_entity_ok(tpm: TPM, s: Session, et: int | None, ev: int | None) -> bool:
    """May DSAP session s stand for entity (et, ev)?  An owner delegation only
    for the owner, a key delegation only for the key whose public key it names."""
    if s.delegate is None:
        return False
    if s.delegate.permissions.delegateType == TPM_DEL_OWNER_BITS:
        return et == C.TPM_ET_OWNER
    if et == C.TPM_ET_SRK or (et == C.TPM_ET_KEYHANDLE and ev == C.TPM_KH_SRK):
        key = tpm.perm.srk
    elif et == C.TPM_ET_KEYHANDLE and ev is not None:
        key = tpm.keys.get(ev)
    else:
        return False
    return key is not None and _eq(pubkey_digest(key), s.delegate_key)


def check_permission(tpm: TPM, pub: TPM_DELEGATE_PUBLIC, ordinal: int, locality: int) -> None:
    """May a DSAP session opened for `pub` authorize `ordinal`?  (libtpms
    TPM_Delegations_CheckPermission: every refusal is TPM_AUTHFAIL, then the
    delegation's PCR binding.)"""
    perms = pub.permissions
    bit = PERMISSION.get(perms.delegateType, {}).get(ordinal)
    if bit is None or not perms.per1 >> bit & 1:
        raise TPMError(C.TPM_AUTHFAIL)
    info = pub.pcrInfo
    if not tpm.check_locality(info.localityAtRelease, locality):
        raise TPMError(C.TPM_BAD_LOCALITY)
    if info.pcrSelection.indices() and \
            tpm.pcr_composite_hash(info.pcrSelection.pcrSelect) != info.digestAtRelease:
        raise TPMError(C.TPM_WRONGPCRVAL)


def _delegate_key(tpm: TPM) -> bytes:
    """TPM_DELEGATE_KEY: derived from tpmProof, so it needs no state of its own."""
    return sha1(b"pyxl TPM_DELEGATE_KEY", tpm.perm.tpm_proof)[:16]


def _integrity(tpm: TPM, blob: DelegateBlob) -> bytes:
    """HMAC(tpmProof) of an owner or key blob with a zero integrityDigest."""
    digest, blob.integrityDigest = blob.integrityDigest, bytes(20)
    try:
        return hmac_sha1(tpm.perm.tpm_proof, blob.to_bytes())
    finally:
        blob.integrityDigest = digest


SEALED_NONCE = 9          # 9 + 22 bytes of TPM_DELEGATE_SENSITIVE pad to 32


def _seal(tpm: TPM, auth: bytes) -> bytes:
    plain = random_bytes(SEALED_NONCE) + TPM_DELEGATE_SENSITIVE(auth).to_bytes()
    return aes_cbc_encrypt(_delegate_key(tpm), bytes(16), plain)


def _unseal(tpm: TPM, blob: DelegateBlob) -> bytes:
    """The blob's authValue; TPM_BAD_DELEGATE when it does not decrypt."""
    try:
        plain = aes_cbc_decrypt(_delegate_key(tpm), bytes(16), blob.sensitiveArea)
        return TPM_DELEGATE_SENSITIVE.from_bytes(plain[SEALED_NONCE:]).authValue
    except (ValueError, TPMDecodeError):
        raise TPMError(C.TPM_BAD_DELEGATE) from None


def _enabled_family(tpm: TPM, family_id: int) -> FamilyRow:
    f = tpm.perm.families[_row_of(tpm, family_id)]
    if not f.flags & TPM_FAMFLAG_ENABLED:
        raise TPMError(C.TPM_DISABLED_CMD)
    return f


def _open_blob(tpm: TPM, cls: type[_Blob], value: bytes) -> _Blob:
    """A delegation blob DSAP may open: well formed, of an enabled family at
    its current verification count, and untouched since the TPM made it."""
    try:
        blob = cls.unmarshal(Reader(value))
    except TPMDecodeError:
        raise TPMError(C.TPM_WRONG_ENTITYTYPE) from None
    fam = _enabled_family(tpm, blob.pub.familyID)
    if blob.pub.verificationCount != fam.verification_count:
        raise TPMError(C.TPM_FAMILYCOUNT)
    if not _eq(_integrity(tpm, blob), blob.integrityDigest):
        raise TPMError(C.TPM_AUTHFAIL)
    return blob


def _check_handing_on(s: Session, pub: TPM_DELEGATE_PUBLIC, fam: FamilyRow) -> None:
    """A delegate (a DSAP session) may hand on at most its own rights, within
    its own, enabled family."""
    if s.protocol != C.TPM_PID_DSAP:
        return
    assert s.delegate is not None        # Ctx.verify refuses a DSAP session without one
    if pub.familyID != s.delegate.familyID:
        raise TPMError(C.TPM_DELEGATE_FAMILY)
    if not fam.flags & TPM_FAMFLAG_ENABLED:
        raise TPMError(C.TPM_DISABLED_CMD)
    mine = s.delegate.permissions
    if pub.permissions.per1 & ~mine.per1 or pub.permissions.per2 & ~mine.per2:
        raise TPMError(C.TPM_AUTHFAIL)


def _row_of(tpm: TPM, family_id: int) -> int:
    for row, f in tpm.perm.families.items():
        if f.family_id == family_id:
            return row
    raise TPMError(C.TPM_BADINDEX)


def _bool_op(data: bytes) -> bool:
    if len(data) != 1:
        raise TPMError(C.TPM_BAD_PARAM_SIZE)
    return bool(data[0])


@command(C.TPM_ORD_Delegate_Manage)
def Delegate_Manage(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.mark(r)                  # familyID is a parameter (HMAC'ed), not a handle
    family_id = r.u32()
    op = r.u32()
    op_data = r.sized32("opData")
    ctx.start(r, T10, CHECK_ALLOW_NO_OWNER)
    p = tpm.perm
    row = _row_of(tpm, family_id) if op != TPM_FAMILY_CREATE else None
    counted = False
    if ctx.n_auth:
        ctx.verify(0, p.owner_auth, C.TPM_ET_OWNER)
    else:
        if tpm.owned or not tpm.identity.unowned_delegate_manage:
            raise TPMError(C.TPM_AUTHFAIL)
        if row is not None and p.families[row].flags & TPM_DELEGATE_ADMIN_LOCK:
            raise TPMError(C.TPM_DELEGATE_LOCK)
        if p.no_owner_nv_write + 1 > MAX_NV_WRITE_NOOWNER:
            raise TPMError(C.TPM_MAXNVWRITES)
        counted = True
    _end_sessions(tpm, ctx)
    if op == TPM_FAMILY_CREATE:
        free = next((i for i in range(FAMILY_ROWS) if i not in p.families), None)
        if free is None:
            raise TPMError(C.TPM_NOSPACE)
        if len(op_data) != 1:
            raise TPMError(C.TPM_BAD_PARAM_SIZE)
        p.last_family_id += 1
        p.families[free] = FamilyRow(op_data[0], p.last_family_id)
        out = Writer().u32(4).u32(p.last_family_id).getvalue()
    elif op == TPM_FAMILY_ADMIN:
        assert row is not None           # every operation but TPM_FAMILY_CREATE has one
        f = p.families[row]
        f.flags = (f.flags | TPM_DELEGATE_ADMIN_LOCK if _bool_op(op_data)
                   else f.flags & ~TPM_DELEGATE_ADMIN_LOCK)
        out = Writer().u32(0).getvalue()
    elif op == TPM_FAMILY_ENABLE:
        assert row is not None
        f = p.families[row]
        f.flags = (f.flags | TPM_FAMFLAG_ENABLED if _bool_op(op_data)
                   else f.flags & ~TPM_FAMFLAG_ENABLED)
        out = Writer().u32(0).getvalue()
    elif op == TPM_FAMILY_INVALIDATE:
        assert row is not None
        del p.families[row]
        out = Writer().u32(0).getvalue()
    else:
        raise TPMError(C.TPM_BAD_PARAMETER)
    if counted:
        p.no_owner_nv_write += 1
    return out


def _end_sessions(tpm: TPM, ctx: Ctx) -> None:
    """A change of the delegation tables ends sessions: libtpms every OSAP/DSAP
    session (the command's own included, so it answers continueAuthSession
    FALSE); the emulator every other session."""
    own = ctx.auths[0].handle if ctx.n_auth else None
    if tpm.identity.unowned_delegate_manage:          # libtpms
        for h, s in list(tpm.sessions.items()):
            if s.protocol in (C.TPM_PID_OSAP, C.TPM_PID_DSAP):
                if h == own:
                    ctx.auths[0].cont = 0
                else:
                    del tpm.sessions[h]
    else:
        for h in list(tpm.sessions):
            if h != own:
                del tpm.sessions[h]


@command(C.TPM_ORD_Delegate_ReadTable)
def Delegate_ReadTable(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    fam = b"".join(family_entry(f) for _, f in sorted(tpm.perm.families.items()))
    rows = b"".join(i.to_bytes(4, "big") + d.pub.to_bytes()
                    for i, d in sorted(tpm.perm.delegates.items()))
    return Writer().sized32(fam).sized32(rows).getvalue()


@command(C.TPM_ORD_Delegate_CreateOwnerDelegation)
def Delegate_CreateOwnerDelegation(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.mark(r)
    increment = r.bool()
    pub = TPM_DELEGATE_PUBLIC.unmarshal(r)
    enc_auth = r.digest()
    ctx.start(r, T1, CHECK_ALL)
    s = ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER, allow_oiap=False)
    fam = tpm.perm.families[_row_of(tpm, pub.familyID)]
    _check_handing_on(s, pub, fam)
    if pub.permissions.delegateType != TPM_DEL_OWNER_BITS:
        raise TPMError(C.TPM_BAD_PARAMETER)
    auth = ctx.decrypt_auth(enc_auth)
    if increment:
        fam.verification_count += 1
        tpm.owner_reference = C.TPM_KH_OWNER
        _end_sessions(tpm, ctx)
    pub.verificationCount = fam.verification_count
    blob = TPM_DELEGATE_OWNER_BLOB(pub, bytes(20), b"", _seal(tpm, auth))
    blob.integrityDigest = _integrity(tpm, blob)
    ctx.auths[0].cont = 0
    return Writer().sized32(blob.to_bytes()).getvalue()


@command(C.TPM_ORD_Delegate_LoadOwnerDelegation)
def Delegate_LoadOwnerDelegation(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.mark(r)
    index = r.u32()
    r.u32()                      # blobSize: libtpms reads the blob from the stream itself
    blob = TPM_DELEGATE_OWNER_BLOB.unmarshal(r)
    ctx.start(r, T10, CHECK_ALLOW_NO_OWNER)
    p = tpm.perm
    fam = _enabled_family(tpm, blob.pub.familyID)
    s = None
    if tpm.owned:
        if not ctx.n_auth:
            raise TPMError(C.TPM_AUTHFAIL)
        s = ctx.verify(0, p.owner_auth, C.TPM_ET_OWNER)
        if s.protocol == C.TPM_PID_DSAP:
            assert s.delegate is not None    # Ctx.verify refuses a DSAP session without one
            if blob.pub.familyID != s.delegate.familyID:
                raise TPMError(C.TPM_DELEGATE_FAMILY)
    else:
        if ctx.n_auth:           # no owner whose authorization could be checked
            raise TPMError(C.TPM_AUTHFAIL)
        if fam.flags & TPM_DELEGATE_ADMIN_LOCK:
            raise TPMError(C.TPM_DELEGATE_LOCK)
        if p.no_owner_nv_write + 1 > MAX_NV_WRITE_NOOWNER:
            raise TPMError(C.TPM_MAXNVWRITES)
    if tpm.owned:
        if not _eq(_integrity(tpm, blob), blob.integrityDigest):
            raise TPMError(C.TPM_AUTHFAIL)
        auth = _unseal(tpm, blob)
    else:                        # before an owner exists the sensitive area is plain
        auth = TPM_DELEGATE_SENSITIVE.from_bytes(blob.sensitiveArea).authValue
    if not 0 <= index < DELEGATE_ROWS:
        raise TPMError(C.TPM_BADINDEX)
    _end_sessions(tpm, ctx)
    p.delegates[index] = DelegateRow(blob.pub, auth)
    tpm.owner_reference = C.TPM_KH_OWNER
    if s is not None and s.protocol == C.TPM_PID_DSAP:
        ctx.auths[0].cont = 0
    if not tpm.owned:
        p.no_owner_nv_write += 1
    return b""


def _eq(a: bytes, b: bytes) -> bool:
    import hmac
    return hmac.compare_digest(a, b)


@command(C.TPM_ORD_DSAP)
def DSAP(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    et = r.u16()
    key_handle = r.u32()         # only for TPM_ET_DEL_KEY_BLOB
    nonce_odd_dsap = r.digest()
    value = r.sized32("entityValue")
    ctx.start(r, T0, CHECK_NOT_SHUTDOWN | CHECK_OWNER | CHECK_NO_LOCKOUT)
    low = et & 0xFF
    key_digest = b""
    if low == C.TPM_ET_DEL_KEY_BLOB:
        blob = _open_blob(tpm, TPM_DELEGATE_KEY_BLOB, value)
        key = tpm.key_by_handle(key_handle)
        if key_handle == C.TPM_KH_EK or not _eq(pubkey_digest(key), blob.pubKeyDigest):
            raise TPMError(C.TPM_KEYNOTFOUND)
        pub, secret, key_digest = blob.pub, _unseal(tpm, blob), blob.pubKeyDigest
    elif low == C.TPM_ET_DEL_OWNER_BLOB:
        owner_blob = _open_blob(tpm, TPM_DELEGATE_OWNER_BLOB, value)
        pub, secret = owner_blob.pub, _unseal(tpm, owner_blob)
    elif low == C.TPM_ET_DEL_ROW:
        row = tpm.perm.delegates.get(Reader(value).u32())
        if row is None:
            raise TPMError(C.TPM_BADINDEX)
        fam = _enabled_family(tpm, row.pub.familyID)
        if row.pub.verificationCount != fam.verification_count:
            raise TPMError(C.TPM_FAMILYCOUNT)
        pub, secret = row.pub, row.auth
    else:
        raise TPMError(C.TPM_BAD_PARAMETER)
    check_adip(tpm, et)
    nonce_even_dsap = nonce()
    shared = hmac_sha1(secret, nonce_even_dsap, nonce_odd_dsap)
    adip = et & 0xFF00           # the session keeps the ADIP scheme in its type's MSB
    if key_digest:
        s = Session(0, C.TPM_PID_DSAP, nonce(), adip | C.TPM_ET_KEYHANDLE, key_handle,
                    shared, pub.copy(), key_digest)
    else:
        s = Session(0, C.TPM_PID_DSAP, nonce(), adip | C.TPM_ET_OWNER, C.TPM_KH_OWNER,
                    shared, pub.copy())
    tpm.add_session(s)
    out = s.handle.to_bytes(4, "big") + s.nonce_even + nonce_even_dsap
    ctx.out_skip = len(out)      # libtpms: no output parameter is digested
    return out


_BLOB_TYPES: dict[int, type[TPM_DELEGATE_OWNER_BLOB] | type[TPM_DELEGATE_KEY_BLOB]] = {
    C.TPM_TAG_DELEGATE_OWNER_BLOB: TPM_DELEGATE_OWNER_BLOB,
    C.TPM_TAG_DELG_KEY_BLOB: TPM_DELEGATE_KEY_BLOB}


def _blob_of(data: bytes) -> TPM_DELEGATE_OWNER_BLOB | TPM_DELEGATE_KEY_BLOB:
    """An owner or key delegation blob by its tag (libtpms: others TPM_BAD_PARAMETER)."""
    tag = Reader(data).u16()
    cls = _BLOB_TYPES.get(tag)
    if cls is None:
        raise TPMError(C.TPM_BAD_PARAMETER)
    return cls.unmarshal(Reader(data))


@command(C.TPM_ORD_Delegate_VerifyDelegation)
def Delegate_VerifyDelegation(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    data = r.sized32("delegation")
    ctx.start(r, T0, CHECK_ALL)
    blob = _blob_of(data)
    fam = _enabled_family(tpm, blob.pub.familyID)
    if blob.pub.verificationCount != fam.verification_count:
        raise TPMError(C.TPM_FAMILYCOUNT)
    if not _eq(_integrity(tpm, blob), blob.integrityDigest):
        raise TPMError(C.TPM_AUTHFAIL)
    _unseal(tpm, blob)
    return b""


@command(C.TPM_ORD_Delegate_UpdateVerification)
def Delegate_UpdateVerification(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """Bring a blob or a delegate row (inputData of 4 bytes: its index) up to
    its family's verificationCount."""
    ctx.mark(r)
    data = r.sized32("inputData")
    ctx.start(r, T1, CHECK_ALL)
    s = ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    if len(data) == 4:
        row = tpm.perm.delegates.get(Reader(data).u32())
        if row is None:
            raise TPMError(C.TPM_BADINDEX)
        pub, blob = row.pub, None
    else:
        blob = _blob_of(data)
        if not _eq(_integrity(tpm, blob), blob.integrityDigest):
            raise TPMError(C.TPM_AUTHFAIL)
        pub = blob.pub
    fam = tpm.perm.families[_row_of(tpm, pub.familyID)]
    if s.protocol == C.TPM_PID_DSAP:
        assert s.delegate is not None        # Ctx.verify refuses a DSAP session without one
        if pub.familyID != s.delegate.familyID:
            raise TPMError(C.TPM_DELEGATE_FAMILY)
        if not fam.flags & TPM_FAMFLAG_ENABLED:
            raise TPMError(C.TPM_DISABLED_CMD)
    pub.verificationCount = fam.verification_count
    if blob is None:
        return Writer().u32(0).getvalue()
    blob.integrityDigest = _integrity(tpm, blob)
    return Writer().sized32(blob.to_bytes()).getvalue()


@command(C.TPM_ORD_Delegate_CreateKeyDelegation)
def Delegate_CreateKeyDelegation(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """A TPM_DELEGATE_KEY_BLOB delegating the use of the key keyHandle."""
    handle = r.u32()
    ctx.mark(r)
    pub = TPM_DELEGATE_PUBLIC.unmarshal(r)
    enc_auth = r.digest()
    ctx.start(r, T1, CHECK_ALL)
    key = tpm.key_by_handle(handle)
    s = ctx.verify(0, key.usage_auth, C.TPM_ET_KEYHANDLE, handle, allow_oiap=False)
    fam = tpm.perm.families[_row_of(tpm, pub.familyID)]
    _check_handing_on(s, pub, fam)
    if pub.permissions.delegateType != TPM_DEL_KEY_BITS:
        raise TPMError(C.TPM_BAD_PARAMETER)
    auth = ctx.decrypt_auth(enc_auth)
    pub.verificationCount = fam.verification_count
    blob = TPM_DELEGATE_KEY_BLOB(pub, bytes(20), pubkey_digest(key), b"", _seal(tpm, auth))
    blob.integrityDigest = _integrity(tpm, blob)
    return Writer().sized32(blob.to_bytes()).getvalue()


def owner_pointer_row(tpm: TPM, opening: bool = False) -> DelegateRow:
    """The delegate row SetOwnerPointer selected (checked as DSAP checks a row
    when an OSAP session opens on it)."""
    row = tpm.perm.delegates.get(tpm.owner_reference)
    if row is None:
        raise TPMError(C.TPM_BADINDEX)
    if opening:
        fam = _enabled_family(tpm, row.pub.familyID)
        if row.pub.verificationCount != fam.verification_count:
            raise TPMError(C.TPM_FAMILYCOUNT)
    return row


@command(C.TPM_ORD_SetOwnerPointer)
def SetOwnerPointer(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    et = r.u16()
    ev = r.u32()
    ctx.start(r, T0, CHECK_ALL)
    if et == C.TPM_ET_DEL_ROW:
        row = tpm.perm.delegates.get(ev)
        if row is None:
            raise TPMError(C.TPM_BADINDEX)
        fam = _enabled_family(tpm, row.pub.familyID)
        if row.pub.verificationCount != fam.verification_count:
            raise TPMError(C.TPM_FAMILYCOUNT)
        tpm.owner_reference = ev
    elif et == C.TPM_ET_OWNER:
        tpm.owner_reference = C.TPM_KH_OWNER
    else:
        raise TPMError(C.TPM_BAD_PARAMETER)
    return b""
