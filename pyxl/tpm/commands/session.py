"""Authorization sessions: OIAP, OSAP, FlushSpecific, Terminate_Handle (Part 3 18, 22)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import hmac_sha1, nonce
from ..engine import CHECK_BASIC, CHECK_OWNER, Session, T0, TPMError, command

if TYPE_CHECKING:
    from ..engine import Ctx, TPM
    from ..marshal import Reader


@command(C.TPM_ORD_OIAP)
def OIAP(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_BASIC)
    s = tpm.add_session(Session(0, C.TPM_PID_OIAP, nonce()))
    ctx.out_skip = 4
    return s.handle.to_bytes(4, "big") + s.nonce_even


def check_adip(tpm: TPM, et: int) -> None:
    """The ADIP scheme in an OSAP/DSAP entity type's MSB: XOR, or AES-128-CTR
    (libtpms; the Berlios emulator has XOR only)."""
    adip = et >> 8
    if adip != C.TPM_ET_XOR and (adip != C.TPM_ET_AES128_CTR or tpm.identity.berlios):
        raise TPMError(C.TPM_INAPPROPRIATE_ENC)


def entity_secret(tpm: TPM, et: int, ev: int) -> bytes:
    """The usage secret of an OSAP entity, or a TPMError."""
    low = et & 0xFF
    if low == C.TPM_ET_OWNER:
        if tpm.perm.owner_auth is None:   # not owned
            raise TPMError(C.TPM_NOSRK)
        return tpm.perm.owner_auth
    if low == C.TPM_ET_SRK or (low == C.TPM_ET_KEYHANDLE and ev == C.TPM_KH_SRK):
        if tpm.perm.srk is None:
            raise TPMError(C.TPM_NOSRK)
        return tpm.perm.srk.usage_auth
    if low == C.TPM_ET_KEYHANDLE:
        return tpm.key_by_handle(ev).usage_auth
    if low == C.TPM_ET_NV:
        a = tpm.perm.nv.get(ev)
        if a is None:
            raise TPMError(C.TPM_BADINDEX)
        return a.auth
    if low == C.TPM_ET_OPERATOR:
        if tpm.perm.operator_auth is None:
            raise TPMError(C.TPM_NOOPERATOR)
        return tpm.perm.operator_auth
    raise TPMError(C.TPM_BAD_PARAMETER)


@command(C.TPM_ORD_OSAP)
def OSAP(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    et = r.u16()
    ev = r.u32()
    nonce_odd_osap = r.digest()
    ctx.start(r, T0, CHECK_BASIC | CHECK_OWNER)
    check_adip(tpm, et)
    secret = entity_secret(tpm, et, ev)
    pid, delegate = C.TPM_PID_OSAP, None
    if et & 0xFF == C.TPM_ET_OWNER and tpm.owner_reference != C.TPM_KH_OWNER:
        # SetOwnerPointer: an owner OSAP session is a DSAP session on that row
        from .delegate import owner_pointer_row
        row = owner_pointer_row(tpm, opening=True)
        pid, delegate, secret = C.TPM_PID_DSAP, row.pub.copy(), row.auth
    nonce_even_osap = nonce()
    shared = hmac_sha1(secret, nonce_even_osap, nonce_odd_osap)
    s = tpm.add_session(Session(0, pid, nonce(), et, ev, shared, delegate))
    ctx.out_skip = 4
    return s.handle.to_bytes(4, "big") + s.nonce_even + nonce_even_osap


def _flush(tpm: TPM, handle: int, rt: int) -> None:
    if rt == C.TPM_RT_AUTH:
        if tpm.sessions.pop(handle, None) is None:
            raise TPMError(C.TPM_INVALID_AUTHHANDLE)
    elif rt == C.TPM_RT_KEY:
        if handle not in tpm.keys:
            # libtpms TPM_Process_FlushSpecific: no such key is TPM_BAD_PARAMETER
            raise TPMError(C.TPM_BAD_PARAMETER)
        tpm.unload_key(handle)
    elif rt == C.TPM_RT_TRANS:
        if not tpm.end_transport(handle):
            raise TPMError(C.TPM_INVALID_AUTHHANDLE)
    elif rt == C.TPM_RT_DAA_TPM:
        from .daa import flush
        flush(tpm, handle)
    elif rt == C.TPM_RT_CONTEXT:
        raise TPMError(C.TPM_BAD_PARAMETER)
    else:
        raise TPMError(C.TPM_INVALID_RESOURCE)


@command(C.TPM_ORD_FlushSpecific)
def FlushSpecific(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    rt = r.u32()
    ctx.start(r, T0, CHECK_BASIC)
    _flush(tpm, handle, rt)
    return b""


@command(C.TPM_ORD_Terminate_Handle)
def Terminate_Handle(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.start(r, T0, CHECK_BASIC)
    if tpm.sessions.pop(handle, None) is None:
        raise TPMError(C.TPM_INVALID_AUTHHANDLE)
    return b""
