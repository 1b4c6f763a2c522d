"""Ownership, the endorsement key, clearing and the enable/activate switches
(Part 3 5-9, 27).  Physical presence is always asserted on a Xen vTPM (the
Berlios emulator's presence test is constant TRUE); other identities need
TSC_PhysicalPresence first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import random_bytes, sha1
from ..engine import (CHECK_ALL, CHECK_ALLOW_NO_OWNER, CHECK_BASIC, CHECK_ENABLED,
                      CHECK_ACTIVATED, CHECK_NO_LOCKOUT, CHECK_NOT_SHUTDOWN, CHECK_OWNER,
                      LoadedKey, T0, T1, T10, TPMError, command)
from ..marshal import TPMDecodeError
from ..structures import (TPM_KEY_PARMS, TPM_PUBKEY, TPM_RSA_KEY_PARMS, TPM_STORE_PUBKEY,
                          unmarshal_any_key)
from .daa import new_daa_secrets

if TYPE_CHECKING:
    from ..engine import Ctx, TPM
    from ..marshal import Reader


def ek_pubkey(tpm: TPM) -> TPM_PUBKEY:
    ek = tpm.perm.ek
    if ek is None:                        # the callers have checked
        raise TPMError(C.TPM_NO_ENDORSEMENT)
    parms = TPM_KEY_PARMS(C.TPM_ALG_RSA, C.TPM_ES_RSAESOAEP_SHA1_MGF1, C.TPM_SS_NONE,
                          TPM_RSA_KEY_PARMS(ek.bits, 2, b"").to_bytes())
    return TPM_PUBKEY(parms, TPM_STORE_PUBKEY(ek.modulus()))


def srk_pubkey(tpm: TPM) -> TPM_PUBKEY:
    return tpm.key_by_handle(C.TPM_KH_SRK).blob.pubkey()   # owned: the SRK is there


def clear_owner(tpm: TPM) -> None:
    """What OwnerClear / ForceClear / RevokeTrust do.  Like the Berlios emulator,
    the TPM stays enabled and activated and readSRKPub keeps its value (other
    identities: disabled, deactivated and readSRKPub FALSE, as libtpms),
    readPubek is set again, and every NV area that needs the owner to read or
    write it is released."""
    p = tpm.perm
    p.owner_auth = None
    p.srk = None
    p.tpm_proof = random_bytes(20)
    p.flags.disableOwnerClear = False
    p.flags.readPubek = True
    if not tpm.identity.clear_keeps_enabled:
        # a real TPM (libtpms) is disabled and deactivated until presence re-enables it
        p.flags.disable = True
        p.flags.deactivated = True
        p.flags.readSRKPub = False      # libtpms TPM_OwnerClearCommon; the emulator keeps it
    p.auth_fail_count = 0
    tpm.lockout_since = None
    owner_bits = C.TPM_NV_PER_OWNERREAD | C.TPM_NV_PER_OWNERWRITE
    kept_dir = p.nv.get(C.TPM_NV_INDEX_DIR)
    p.nv = {i: a for i, a in p.nv.items() if not a.pub.permission.attributes & owner_bits}
    if kept_dir is not None and not tpm.identity.berlios:
        kept_dir.data[:] = bytes(len(kept_dir.data))     # libtpms zeroes authDIR
        p.nv[C.TPM_NV_INDEX_DIR] = kept_dir
    for c in p.counters.values():
        p.counter_floor = max(p.counter_floor, c.value)
    p.counters.clear()
    tpm.active_counter = None
    p.evict_keys.clear()
    p.families.clear()                  # lastFamilyID is kept (Part 3 6.1)
    p.delegates.clear()
    tpm.owner_reference = C.TPM_KH_OWNER   # no row left to point at
    p.no_owner_nv_write = 0
    p.restrict_delegate = 0
    from .audit import default_audited
    p.audited = default_audited(tpm.identity)
    tpm.reset_keys()
    tpm.sessions.clear()


def _check_ek_parms(parms: TPM_KEY_PARMS) -> int:
    if parms.algorithmID != C.TPM_ALG_RSA:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    try:
        rsa = parms.rsa()
    except TPMDecodeError:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY) from None
    if (rsa.keyLength != 2048 or rsa.numPrimes != 2 or rsa.exponent_int != 65537
            or parms.encScheme != C.TPM_ES_RSAESOAEP_SHA1_MGF1
            or parms.sigScheme != C.TPM_SS_NONE):
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    return rsa.keyLength


@command(C.TPM_ORD_TakeOwnership)
def TakeOwnership(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    pid = r.u16()
    enc_owner = r.sized32("encOwnerAuth")
    enc_srk = r.sized32("encSrkAuth")
    srk_params = unmarshal_any_key(r)
    ctx.start(r, T1, CHECK_NOT_SHUTDOWN | CHECK_ENABLED | CHECK_NO_LOCKOUT)
    p = tpm.perm
    if tpm.owned:
        raise TPMError(C.TPM_OWNER_SET)
    if not p.flags.ownership:
        raise TPMError(C.TPM_INSTALL_DISABLED)
    if p.ek is None:
        raise TPMError(C.TPM_NO_ENDORSEMENT)
    if pid != C.TPM_PID_OWNER:
        raise TPMError(C.TPM_BAD_PARAMETER)
    try:
        owner_auth = p.ek.decrypt_oaep(enc_owner)
        srk_auth = p.ek.decrypt_oaep(enc_srk)
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    if len(owner_auth) != 20 or len(srk_auth) != 20:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    ctx.verify(0, owner_auth, allow_osap=False)
    parms = srk_params.algorithmParms
    if (srk_params.keyUsage != C.TPM_KEY_STORAGE or srk_params.keyFlags & 0x2
            or parms.algorithmID != C.TPM_ALG_RSA
            or parms.encScheme != C.TPM_ES_RSAESOAEP_SHA1_MGF1
            or parms.sigScheme != C.TPM_SS_NONE):
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    try:
        rsa_parms = parms.rsa()
    except TPMDecodeError:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY) from None
    if rsa_parms.keyLength != 2048 or rsa_parms.numPrimes != 2 or rsa_parms.exponent_int != 65537:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    rsa = tpm.key_source(2048)
    blob = srk_params
    blob.pubKey = TPM_STORE_PUBKEY(rsa.modulus())
    blob.encData = b""
    p.tpm_proof = random_bytes(20)
    p.srk = LoadedKey(blob, rsa, srk_auth, p.tpm_proof)
    p.owner_auth = owner_auth
    p.flags.readPubek = False
    return blob.to_bytes()


def _owner_auth(tpm: TPM, ctx: Ctx, i: int = 0) -> None:
    ctx.verify(i, tpm.perm.owner_auth, C.TPM_ET_OWNER)


@command(C.TPM_ORD_OwnerClear)
def OwnerClear(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T1, CHECK_ALL)
    _owner_auth(tpm, ctx)
    if tpm.perm.flags.disableOwnerClear:
        raise TPMError(C.TPM_CLEAR_DISABLED)
    clear_owner(tpm)
    return b""


@command(C.TPM_ORD_ForceClear)
def ForceClear(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    tpm.require_presence()
    if tpm.stclear.disableForceClear:
        raise TPMError(C.TPM_CLEAR_DISABLED)
    clear_owner(tpm)
    return b""


@command(C.TPM_ORD_DisableOwnerClear)
def DisableOwnerClear(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T1, CHECK_ALL)
    _owner_auth(tpm, ctx)
    tpm.perm.flags.disableOwnerClear = True
    return b""


@command(C.TPM_ORD_DisableForceClear)
def DisableForceClear(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    tpm.stclear.disableForceClear = True
    return b""


# ---------------------------------------------------------------- endorsement key

@command(C.TPM_ORD_ReadPubek)
def ReadPubek(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    anti_replay = r.digest()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    if tpm.perm.ek is None:
        raise TPMError(C.TPM_NO_ENDORSEMENT)
    if not tpm.perm.flags.readPubek:
        raise TPMError(C.TPM_DISABLED_CMD)
    pub = ek_pubkey(tpm).to_bytes()
    return pub + sha1(pub, anti_replay)


@command(C.TPM_ORD_OwnerReadPubek)
def OwnerReadPubek(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T1, CHECK_ALL)
    _owner_auth(tpm, ctx)
    if tpm.perm.ek is None:
        raise TPMError(C.TPM_NO_ENDORSEMENT)
    return ek_pubkey(tpm).to_bytes()


@command(C.TPM_ORD_OwnerReadInternalPub)
def OwnerReadInternalPub(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.start(r, T1, CHECK_ALL)
    _owner_auth(tpm, ctx)
    if handle == C.TPM_KH_EK:
        if tpm.perm.ek is None:
            raise TPMError(C.TPM_NO_ENDORSEMENT)
        return ek_pubkey(tpm).to_bytes()
    if handle == C.TPM_KH_SRK:
        return srk_pubkey(tpm).to_bytes()
    raise TPMError(C.TPM_BAD_PARAMETER)


@command(C.TPM_ORD_DisablePubekRead)
def DisablePubekRead(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T1, CHECK_ALL)
    _owner_auth(tpm, ctx)
    tpm.perm.flags.readPubek = False
    return b""


def _create_ek(tpm: TPM, key_info: TPM_KEY_PARMS) -> None:
    if tpm.perm.ek is not None:
        raise TPMError(C.TPM_DISABLED_CMD)
    bits = _check_ek_parms(key_info)
    tpm.perm.ek = tpm.key_source(bits)
    tpm.perm.flags.CEKPUsed = True
    new_daa_secrets(tpm)


@command(C.TPM_ORD_CreateEndorsementKeyPair)
def CreateEndorsementKeyPair(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    anti_replay = r.digest()
    key_info = TPM_KEY_PARMS.unmarshal(r)
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    _create_ek(tpm, key_info)
    tpm.perm.ek_reset = None
    tpm.perm.flags.enableRevokeEK = False
    pub = ek_pubkey(tpm).to_bytes()
    return pub + sha1(pub, anti_replay)


@command(C.TPM_ORD_CreateRevocableEK)
def CreateRevocableEK(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    anti_replay = r.digest()
    key_info = TPM_KEY_PARMS.unmarshal(r)
    generate = r.bool()
    input_reset = r.digest()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    _create_ek(tpm, key_info)
    reset = random_bytes(20) if generate else input_reset
    tpm.perm.ek_reset = reset
    tpm.perm.flags.enableRevokeEK = True
    pub = ek_pubkey(tpm).to_bytes()
    return pub + sha1(pub, anti_replay) + reset


@command(C.TPM_ORD_RevokeTrust)
def RevokeTrust(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    reset = r.digest()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    p = tpm.perm
    if p.ek is None or p.ek_reset is None or not p.flags.enableRevokeEK:
        raise TPMError(C.TPM_PERMANENTEK)
    tpm.require_presence()
    if reset != p.ek_reset:
        tpm.auth_failed()
        raise TPMError(C.TPM_AUTHFAIL)
    clear_owner(tpm)
    new_daa_secrets(tpm)
    p.ek = None
    p.ek_reset = None
    p.flags.enableRevokeEK = False
    return b""


# ---------------------------------------------------------------- owner auth

@command(C.TPM_ORD_ChangeAuthOwner)
def ChangeAuthOwner(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    pid = r.u16()
    enc = r.digest()
    et = r.u16()
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER, allow_oiap=False)
    if pid != C.TPM_PID_ADCP:
        raise TPMError(C.TPM_BAD_PARAMETER)
    new = ctx.decrypt_auth(enc)
    if et == C.TPM_ET_OWNER:
        tpm.perm.owner_auth = new
    elif et == C.TPM_ET_SRK:
        tpm.key_by_handle(C.TPM_KH_SRK).usage_auth = new    # owned: the SRK is there
    else:
        raise TPMError(C.TPM_WRONG_ENTITYTYPE)
    return b""


@command(C.TPM_ORD_ResetLockValue)
def ResetLockValue(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T1, CHECK_NOT_SHUTDOWN | CHECK_ENABLED | CHECK_ACTIVATED | CHECK_OWNER)
    if tpm.disable_reset_lock:
        raise TPMError(C.TPM_AUTHFAIL)
    locked = tpm.lockout_active()
    try:
        _owner_auth(tpm, ctx)
    except TPMError:
        if locked:
            tpm.disable_reset_lock = True
        raise
    tpm.perm.auth_fail_count = 0
    tpm.lockout_since = None
    return b""


# ---------------------------------------------------------------- switches

@command(C.TPM_ORD_SetOwnerInstall)
def SetOwnerInstall(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    state = r.bool()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    if tpm.owned:
        return b""          # with an owner the command changes nothing (as measured)
    tpm.require_presence()
    tpm.perm.flags.ownership = bool(state)
    return b""


@command(C.TPM_ORD_OwnerSetDisable)
def OwnerSetDisable(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    state = r.bool()
    ctx.start(r, T1, CHECK_NOT_SHUTDOWN | CHECK_OWNER | CHECK_NO_LOCKOUT)
    _owner_auth(tpm, ctx)
    tpm.perm.flags.disable = bool(state)
    return b""


@command(C.TPM_ORD_PhysicalEnable)
def PhysicalEnable(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_BASIC)
    tpm.require_presence()
    tpm.perm.flags.disable = False
    return b""


@command(C.TPM_ORD_PhysicalDisable)
def PhysicalDisable(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_BASIC | CHECK_ENABLED)
    tpm.require_presence()
    tpm.perm.flags.disable = True
    return b""


@command(C.TPM_ORD_PhysicalSetDeactivated)
def PhysicalSetDeactivated(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    state = r.bool()
    ctx.start(r, T0, CHECK_BASIC | CHECK_ENABLED)
    tpm.require_presence()
    tpm.perm.flags.deactivated = bool(state)
    return b""


@command(C.TPM_ORD_SetTempDeactivated)
def SetTempDeactivated(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T10, CHECK_BASIC | CHECK_ACTIVATED)
    if ctx.n_auth:
        if tpm.perm.operator_auth is None:
            raise TPMError(C.TPM_NOOPERATOR)
        ctx.verify(0, tpm.perm.operator_auth, C.TPM_ET_OPERATOR)
    else:
        tpm.require_presence()
    tpm.stclear.deactivated = True
    return b""


@command(C.TPM_ORD_SetOperatorAuth)
def SetOperatorAuth(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    auth = r.digest()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    tpm.require_presence()
    tpm.perm.operator_auth = auth
    tpm.perm.flags.operator = True
    return b""
