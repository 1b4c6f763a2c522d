"""Saving and loading keys and sessions: SaveContext / LoadContext and the
1.1 Save/Load{Key,Auth}Context (Part 3 21).

A context blob is a TPM_CONTEXT_BLOB whose TPM_CONTEXT_SENSITIVE part is
encrypted with AES-128-CBC under the TPM's context key (the IV travels in
additionalData) and whose integrityDigest is HMAC-SHA1 under tpmProof.
Key contexts die with TPM_Startup(ST_CLEAR) (the key nonce changes), session
contexts with any start-up, and a session context loads only once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import aes_cbc_decrypt, aes_cbc_encrypt, hmac_sha1, random_bytes
from ..engine import CHECK_ALLOW_NO_OWNER, LoadedKey, Session, T0, TPMError, command
from ..layout import REST, SIZED32, TPM_DIGEST, UINT16, UINT32, TPMStruct, structure
from ..marshal import Reader, TPMDecodeError, Writer
from ..structures import (TPM_CONTEXT_BLOB, TPM_CONTEXT_SENSITIVE, TPM_TRANSPORT_PUBLIC,
                          unmarshal_any_key)
from ..transport import TransportSession

if TYPE_CHECKING:
    from typing import Container

    from ..engine import Ctx, TPM

MAX_SAVED_SESSIONS = 16


# -- what TPM_CONTEXT_SENSITIVE.internalData holds (Part 2 18.2 leaves it to
# the TPM): pyxl's own layouts, read back only by this TPM, after the
# context blob's integrity is checked.  Bytes after them are not looked at.

@structure
@dataclass(slots=True)
class KeyInternal(TPMStruct):
    """A saved key: its blob (a TPM_KEY or TPM_KEY12), the RSA prime p, its
    usage and migration secrets and, when present, its payload type (absent:
    TPM_PT_ASYM)."""
    keyBlob: SIZED32 = b""
    prime: SIZED32 = b""
    usageAuth: TPM_DIGEST = bytes(20)
    migrationAuth: TPM_DIGEST = bytes(20)
    payload: REST = b""


@structure
@dataclass(slots=True)
class SessionInternal(TPMStruct):
    """A saved OIAP, OSAP or DSAP session; a DSAP session's delegation (a
    TPM_DELEGATE_PUBLIC, and a key blob's pubKeyDigest) follows, empty for
    the others."""
    protocol: UINT16 = C.TPM_PID_OIAP
    nonceEven: TPM_DIGEST = bytes(20)
    entityType: UINT16 = 0
    entityValue: UINT32 = 0
    sharedSecret: SIZED32 = b""
    delegatePublic: SIZED32 = b""
    delegateKey: SIZED32 = b""


@structure
@dataclass(slots=True)
class TransportInternal(TPMStruct):
    """A saved transport session: Part 2 13.2's TPM_TRANSPORT_INTERNAL without
    its tag and handle, the public part first."""
    transPublic: TPM_TRANSPORT_PUBLIC = field(default_factory=TPM_TRANSPORT_PUBLIC)
    authData: TPM_DIGEST = bytes(20)
    transNonceEven: TPM_DIGEST = bytes(20)
    transDigest: TPM_DIGEST = bytes(20)


def _integrity(tpm: TPM, blob: TPM_CONTEXT_BLOB) -> bytes:
    blob.integrityDigest = bytes(20)
    return hmac_sha1(tpm.perm.tpm_proof, blob.to_bytes())


def _key_internal(k: LoadedKey) -> bytes:
    return KeyInternal(k.blob.to_bytes(), k.rsa.prime(), k.usage_auth, k.migration_auth,
                       bytes((k.payload,))).to_bytes()


def _session_internal(s: Session) -> bytes:
    return SessionInternal(s.protocol, s.nonce_even, s.entity_type, s.entity_value,
                           s.shared_secret,
                           s.delegate.to_bytes() if s.delegate is not None else b"",
                           s.delegate_key).to_bytes()


def _transport_internal(t: TransportSession) -> bytes:
    return TransportInternal(t.public, t.auth, t.nonce_even, t.digest).to_bytes()


def save(tpm: TPM, handle: int, rt: int, label: bytes) -> bytes:
    if rt == C.TPM_RT_KEY:
        if handle == C.TPM_KH_SRK or handle not in tpm.keys:
            raise TPMError(C.TPM_INVALID_KEYHANDLE)
        internal, nonce, count = _key_internal(tpm.keys[handle]), tpm.context_nonce_key, 0
    elif rt == C.TPM_RT_AUTH:
        s = tpm.sessions.get(handle)
        if s is None:
            raise TPMError(C.TPM_INVALID_AUTHHANDLE)
        if len(tpm.saved_sessions) >= MAX_SAVED_SESSIONS:
            raise TPMError(C.TPM_NOCONTEXTSPACE)
        tpm.context_count += 1
        internal, nonce, count = _session_internal(s), tpm.context_nonce_session, tpm.context_count
    elif rt == C.TPM_RT_TRANS:
        t = tpm.transports.get(handle)
        if t is None:
            raise TPMError(C.TPM_INVALID_AUTHHANDLE)
        if len(tpm.saved_sessions) >= MAX_SAVED_SESSIONS:
            raise TPMError(C.TPM_NOCONTEXTSPACE)
        tpm.context_count += 1
        internal = _transport_internal(t)
        nonce, count = tpm.context_nonce_session, tpm.context_count
    elif rt == C.TPM_RT_DAA_TPM:
        d = tpm.daa_sessions.get(handle)
        if d is None:
            raise TPMError(C.TPM_INVALID_RESOURCE)     # libtpms's code for a missing one
        if len(tpm.saved_sessions) >= MAX_SAVED_SESSIONS:
            raise TPMError(C.TPM_NOCONTEXTSPACE)
        tpm.context_count += 1
        internal, nonce, count = d.internal(), tpm.context_nonce_session, tpm.context_count
    else:
        raise TPMError(C.TPM_INVALID_RESOURCE)
    iv = random_bytes(16)
    sensitive = TPM_CONTEXT_SENSITIVE(nonce, internal).to_bytes()
    blob = TPM_CONTEXT_BLOB(rt, handle, label, count, bytes(20), iv,
                            aes_cbc_encrypt(tpm.perm.context_key, iv, sensitive))
    blob.integrityDigest = _integrity(tpm, blob.copy())
    if rt == C.TPM_RT_AUTH:
        del tpm.sessions[handle]            # the session now lives in the blob
        tpm.saved_sessions.add(count)
    elif rt == C.TPM_RT_TRANS:
        tpm.end_transport(handle)
        tpm.saved_sessions.add(count)
    elif rt == C.TPM_RT_DAA_TPM:
        del tpm.daa_sessions[handle]
        tpm.saved_sessions.add(count)
    return blob.to_bytes()


def load(tpm: TPM, data: bytes, keep_handle: bool = False, rt: int | None = None) -> int:
    """rt: the resource type the 1.1 commands load (LoadKeyContext,
    LoadAuthContext), any other is TPM_BAD_PARAMETER before anything is
    decrypted, as libtpms checks it."""
    try:
        blob = TPM_CONTEXT_BLOB.from_bytes(data)
    except TPMDecodeError:
        raise TPMError(C.TPM_BADCONTEXT) from None
    if rt is not None and blob.resourceType != rt:
        raise TPMError(C.TPM_BAD_PARAMETER)
    # libtpms TPM_Process_LoadContext decrypts first (TPM_DECRYPT_ERROR), then
    # parses the sensitive part, then checks the integrity digest
    try:
        plain = aes_cbc_decrypt(tpm.perm.context_key, blob.additionalData, blob.sensitiveData)
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    try:
        sens = TPM_CONTEXT_SENSITIVE.from_bytes(plain)
    except TPMDecodeError:
        raise TPMError(C.TPM_BADCONTEXT) from None
    if _integrity(tpm, blob.copy()) != blob.integrityDigest:
        raise TPMError(C.TPM_BADCONTEXT)
    r = Reader(sens.internalData)
    try:
        if blob.resourceType == C.TPM_RT_KEY:
            if sens.contextNonce != tpm.context_nonce_key:
                raise TPMError(C.TPM_BADCONTEXT)
            ki = KeyInternal.unmarshal(r)
            key_blob = unmarshal_any_key(Reader(ki.keyBlob))
            from ..crypto import RSAKey
            n = int.from_bytes(key_blob.pubKey.key, "big")
            rsa = RSAKey.from_modulus_prime(n, key_blob.algorithmParms.rsa().exponent_int,
                                            int.from_bytes(ki.prime, "big"))
            key = LoadedKey(key_blob, rsa, ki.usageAuth, ki.migrationAuth)
            if ki.payload:
                key.payload = ki.payload[0]
            if keep_handle and blob.handle not in tpm.keys and \
                    blob.handle & 0xFF000000 == C.TPM_HANDLE_KEY_BASE and \
                    blob.handle & 0xFFFFFF < tpm.identity.max_keys:
                tpm.keys[blob.handle] = key
                return blob.handle
            return tpm.add_key(key)
        if blob.resourceType == C.TPM_RT_AUTH:
            if sens.contextNonce != tpm.context_nonce_session or \
                    blob.contextCount not in tpm.saved_sessions:
                raise TPMError(C.TPM_BADCONTEXT)
            si = SessionInternal.unmarshal(r)
            s = Session(0, si.protocol, si.nonceEven, si.entityType, si.entityValue,
                        si.sharedSecret, delegate_key=si.delegateKey)
            if si.delegatePublic:
                from ..structures import TPM_DELEGATE_PUBLIC
                s.delegate = TPM_DELEGATE_PUBLIC.from_bytes(si.delegatePublic)
            tpm.add_session(s)
            tpm.saved_sessions.discard(blob.contextCount)
            return s.handle
        if blob.resourceType == C.TPM_RT_TRANS:
            if sens.contextNonce != tpm.context_nonce_session or \
                    blob.contextCount not in tpm.saved_sessions:
                raise TPMError(C.TPM_BADCONTEXT)
            from .transport import new_transport_handle
            ti = TransportInternal.unmarshal(r)
            t = TransportSession(0, ti.transPublic, ti.authData, ti.transNonceEven,
                                 ti.transDigest)
            if keep_handle and blob.handle not in tpm.transports and \
                    blob.handle in _trans_slots(tpm):
                t.handle = blob.handle
            else:
                t.handle = new_transport_handle(tpm)
            tpm.transports[t.handle] = t
            tpm.saved_sessions.discard(blob.contextCount)
            return t.handle
        if blob.resourceType == C.TPM_RT_DAA_TPM:
            if sens.contextNonce != tpm.context_nonce_session or \
                    blob.contextCount not in tpm.saved_sessions:
                raise TPMError(C.TPM_BADCONTEXT)
            from .daa import DAASession, add_session
            daa = DAASession.from_internal(r, blob.handle)
            r.expect_end("DAA session")
            tpm.saved_sessions.discard(blob.contextCount)   # used up even if it cannot load
            return add_session(tpm, daa, bool(keep_handle)).handle
    except (TPMDecodeError, ValueError):
        raise TPMError(C.TPM_BADCONTEXT) from None
    raise TPMError(C.TPM_BADCONTEXT)


def _trans_slots(tpm: TPM) -> set[int]:
    from ..transport import TPM_HANDLE_TRANS_BASE
    return {TPM_HANDLE_TRANS_BASE | i for i in range(tpm.identity.max_sessions)}


@command(C.TPM_ORD_SaveContext)
def SaveContext(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle, rt = r.u32(), r.u32()
    label = r.bytes(16, "label")
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    tables: dict[int, Container[int]] = {
        C.TPM_RT_KEY: tpm.keys, C.TPM_RT_AUTH: tpm.sessions,
        C.TPM_RT_TRANS: tpm.transports, C.TPM_RT_DAA_TPM: tpm.daa_sessions}
    live = tables.get(rt, ())
    if handle not in live:
        # libtpms TPM_Process_SaveContext: no such resource of that type
        raise TPMError(C.TPM_INVALID_RESOURCE)
    return Writer().sized32(save(tpm, handle, rt, label)).getvalue()


def _blob_param(r: Reader) -> bytes:
    """A context size and a TPM_CONTEXT_BLOB, read as libtpms reads them: the
    size is not used, the blob is parsed from the bytes that follow
    (TPM_Process_LoadContext: TPM_Load32, TPM_ContextBlob_Load)."""
    r.u32()
    start = r.pos
    TPM_CONTEXT_BLOB.unmarshal(r)
    return r.data[start:r.pos]


@command(C.TPM_ORD_LoadContext)
def LoadContext(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    r.u32()                               # entityHandle: only a hint
    keep = r.bool()
    data = _blob_param(r)
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    return load(tpm, data, bool(keep)).to_bytes(4, "big")


@command(C.TPM_ORD_SaveKeyContext)
def SaveKeyContext(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    return Writer().sized32(save(tpm, handle, C.TPM_RT_KEY, bytes(16))).getvalue()


@command(C.TPM_ORD_LoadKeyContext)
def LoadKeyContext(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    data = _blob_param(r)
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    return load(tpm, data, rt=C.TPM_RT_KEY).to_bytes(4, "big")


@command(C.TPM_ORD_SaveAuthContext)
def SaveAuthContext(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    return Writer().sized32(save(tpm, handle, C.TPM_RT_AUTH, bytes(16))).getvalue()


@command(C.TPM_ORD_LoadAuthContext)
def LoadAuthContext(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    data = _blob_param(r)
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    return load(tpm, data, rt=C.TPM_RT_AUTH).to_bytes(4, "big")
