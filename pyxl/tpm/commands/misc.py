"""Small commands: TSC_PhysicalPresence, TSC_ResetEstablishmentBit, Reset,
Init, the 1.1 DIR commands, ChangeAuth and the deprecated
ChangeAuthAsymStart/Finish (Part 3 6.2, 17.1, 21, 30, 31.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import hmac_sha1, random_bytes, sha1
from ..engine import (CHECK_ALL, CHECK_ALLOW_NO_OWNER, CHECK_BASIC, CHECK_STARTUP, T0, T1, T2,
                      T10, LoadedKey, TPMError, command)
from ..marshal import TPMDecodeError, Writer
from ..structures import (TPM_CERTIFY_INFO, TPM_CHANGEAUTH_VALIDATE, TPM_KEY, TPM_KEY_PARMS,
                          TPM_SEALED_DATA, TPM_STORE_ASYMKEY, TPM_STORE_PUBKEY, TPM_STRUCT_VER)

if TYPE_CHECKING:
    from ..engine import Ctx, NVArea, TPM
    from ..marshal import Reader

PP = C.TPM_PHYSICAL_PRESENCE


@command(C.TSC_ORD_PhysicalPresence)
def TSC_PhysicalPresence(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    pp = r.u16()
    ctx.start(r, T0, CHECK_BASIC)
    f, s = tpm.perm.flags, tpm.stclear
    config = PP.TPM_PHYSICAL_PRESENCE_LIFETIME_LOCK | PP.TPM_PHYSICAL_PRESENCE_HW_ENABLE | \
        PP.TPM_PHYSICAL_PRESENCE_CMD_ENABLE | PP.TPM_PHYSICAL_PRESENCE_HW_DISABLE | \
        PP.TPM_PHYSICAL_PRESENCE_CMD_DISABLE
    state = PP.TPM_PHYSICAL_PRESENCE_LOCK | PP.TPM_PHYSICAL_PRESENCE_PRESENT | \
        PP.TPM_PHYSICAL_PRESENCE_NOTPRESENT
    if pp & ~(config | state) or not pp or (pp & config and pp & state):
        raise TPMError(C.TPM_BAD_PARAMETER)
    if pp & config:
        if f.physicalPresenceLifetimeLock:
            raise TPMError(C.TPM_BAD_PARAMETER)
        hw = PP.TPM_PHYSICAL_PRESENCE_HW_ENABLE | PP.TPM_PHYSICAL_PRESENCE_HW_DISABLE
        cmd = PP.TPM_PHYSICAL_PRESENCE_CMD_ENABLE | PP.TPM_PHYSICAL_PRESENCE_CMD_DISABLE
        if pp & hw == hw or pp & cmd == cmd:
            raise TPMError(C.TPM_BAD_PARAMETER)
        if pp & PP.TPM_PHYSICAL_PRESENCE_HW_ENABLE:
            f.physicalPresenceHWEnable = True
        if pp & PP.TPM_PHYSICAL_PRESENCE_HW_DISABLE:
            f.physicalPresenceHWEnable = False
        if pp & PP.TPM_PHYSICAL_PRESENCE_CMD_ENABLE:
            f.physicalPresenceCMDEnable = True
        if pp & PP.TPM_PHYSICAL_PRESENCE_CMD_DISABLE:
            f.physicalPresenceCMDEnable = False
        if pp & PP.TPM_PHYSICAL_PRESENCE_LIFETIME_LOCK:
            f.physicalPresenceLifetimeLock = True
        return b""
    if not f.physicalPresenceCMDEnable:
        raise TPMError(C.TPM_BAD_PARAMETER)
    if pp & PP.TPM_PHYSICAL_PRESENCE_PRESENT and pp & PP.TPM_PHYSICAL_PRESENCE_NOTPRESENT:
        raise TPMError(C.TPM_BAD_PARAMETER)
    if s.physicalPresenceLock and pp & (PP.TPM_PHYSICAL_PRESENCE_PRESENT |
                                        PP.TPM_PHYSICAL_PRESENCE_NOTPRESENT):
        raise TPMError(C.TPM_BAD_PARAMETER)
    if pp & PP.TPM_PHYSICAL_PRESENCE_PRESENT:
        s.physicalPresence = True
    if pp & PP.TPM_PHYSICAL_PRESENCE_NOTPRESENT:
        s.physicalPresence = False
    if pp & PP.TPM_PHYSICAL_PRESENCE_LOCK:
        s.physicalPresence = False
        s.physicalPresenceLock = True
    return b""


@command(C.TSC_ORD_ResetEstablishmentBit)
def TSC_ResetEstablishmentBit(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_BASIC)
    if ctx.locality not in (3, 4):
        raise TPMError(C.TPM_BAD_LOCALITY)
    tpm.perm.flags.tpmEstablished = False
    return b""


@command(C.TPM_ORD_Reset)
def Reset(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_BASIC)
    tpm.sessions.clear()
    return b""


@command(C.TPM_ORD_Init)
def Init(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """TPM_Init as a command: back to the state that awaits TPM_Startup.
    libtpms (built without TPM_TEST) checks the tag and the parameter size,
    then answers TPM_BAD_ORDINAL; its answers carry the request's tag
    (TPM_Process_Init stores no final response)."""
    try:
        ctx.start(r, T0, CHECK_STARTUP)
    except TPMError as e:
        raise TPMError(e.rc, echo_tag=True) from None
    if not tpm.identity.berlios:
        raise TPMError(C.TPM_BAD_ORDINAL, echo_tag=True)
    tpm._power_off()
    return b""


def _dir_area(tpm: TPM, index: int) -> NVArea:
    if index != 0:
        raise TPMError(C.TPM_BADINDEX)
    a = tpm.perm.nv.get(C.TPM_NV_INDEX_DIR)
    if a is None:
        raise TPMError(C.TPM_BADINDEX)
    return a


@command(C.TPM_ORD_DirWriteAuth)
def DirWriteAuth(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    index = r.u32()
    value = r.digest()
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    _dir_area(tpm, index).data[:] = value
    return b""


@command(C.TPM_ORD_DirRead)
def DirRead(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    index = r.u32()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    return bytes(_dir_area(tpm, index).data)


@command(C.TPM_ORD_ChangeAuth)
def ChangeAuth(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    parent_handle = r.u32()
    ctx.mark(r)
    pid = r.u16()
    enc_new = r.digest()
    et = r.u16()
    enc_data = r.sized32("encData")
    ctx.start(r, T2, CHECK_ALL)
    if et not in (C.TPM_ET_DATA, C.TPM_ET_KEY):
        # libtpms TPM_Process_ChangeAuth: before the parent key and the sessions
        raise TPMError(C.TPM_WRONG_ENTITYTYPE)
    parent = tpm.key_by_handle(parent_handle)
    ctx.verify(0, parent.usage_auth, C.TPM_ET_KEYHANDLE, parent_handle, allow_oiap=False)
    if pid != C.TPM_PID_ADCP:
        raise TPMError(C.TPM_BAD_PARAMETER)
    if parent.usage != C.TPM_KEY_STORAGE:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    new = ctx.decrypt_auth(enc_new, 0)
    try:
        plain = parent.rsa.decrypt_oaep(enc_data)
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    obj: TPM_STORE_ASYMKEY | TPM_SEALED_DATA
    try:
        if et == C.TPM_ET_KEY:
            obj = TPM_STORE_ASYMKEY.from_bytes(plain)
            if obj.payload != C.TPM_PT_ASYM:
                raise TPMError(C.TPM_INVALID_STRUCTURE)
            ctx.verify(1, obj.usageAuth, allow_osap=False)
            obj.usageAuth = new
        else:                                     # TPM_ET_DATA
            obj = TPM_SEALED_DATA.from_bytes(plain)
            if obj.payload != C.TPM_PT_SEAL or obj.tpmProof != tpm.perm.tpm_proof:
                raise TPMError(C.TPM_INVALID_STRUCTURE)
            ctx.verify(1, obj.authData, allow_osap=False)
            obj.authData = new
    except TPMDecodeError:
        raise TPMError(C.TPM_INVALID_STRUCTURE) from None
    out = parent.rsa.encrypt_oaep(obj.to_bytes())
    return Writer().sized32(out).getvalue()


# ---------------------------------------------------------------- ChangeAuthAsym (deprecated)

_ISVOLATILE = 0x00000004


@command(C.TPM_ORD_ChangeAuthAsymStart)
def ChangeAuthAsymStart(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """Make an ephemeral TPM_KEY_AUTHCHANGE key (volatile, no auth, in a key
    slot) and certify it with an identity key."""
    from .keys import check_pcr_binding, key_pcr_info
    id_handle = r.u32()
    ctx.mark(r)
    anti_replay = r.digest()
    parms = TPM_KEY_PARMS.unmarshal(r)
    ctx.start(r, T10, CHECK_ALL)
    idk = tpm.key_by_handle(id_handle)
    check_pcr_binding(tpm, key_pcr_info(idk), ctx.locality)
    if idk.usage != C.TPM_KEY_IDENTITY:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if ctx.n_auth:
        ctx.verify(0, idk.usage_auth, C.TPM_ET_KEYHANDLE, id_handle)
    elif idk.blob.authDataUsage != C.TPM_AUTH_NEVER:
        raise TPMError(C.TPM_AUTHFAIL)
    # TPM_KeyParms_CheckProperties for TPM_KEY_AUTHCHANGE, as libtpms
    if parms.algorithmID != C.TPM_ALG_RSA:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    rp = parms.rsa()
    if (rp.keyLength > 2048 or rp.keyLength < 512 or rp.keyLength % 8 or rp.numPrimes != 2
            or rp.exponent_int != 65537
            or parms.encScheme != C.TPM_ES_RSAESOAEP_SHA1_MGF1
            or parms.sigScheme != C.TPM_SS_NONE):
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    rsa = tpm.key_source(rp.keyLength)
    temp = TPM_KEY(keyUsage=C.TPM_KEY_AUTHCHANGE, keyFlags=_ISVOLATILE,
                   authDataUsage=C.TPM_AUTH_NEVER, algorithmParms=parms,
                   pubKey=TPM_STORE_PUBKEY(rsa.modulus()))
    eph = tpm.add_key(LoadedKey(temp, rsa))
    info = TPM_CERTIFY_INFO(TPM_STRUCT_VER(), temp.keyUsage, temp.keyFlags, temp.authDataUsage,
                            parms, sha1(temp.pubKey.key), anti_replay, 0, b"")
    sig = idk.rsa.sign_sha1_digest(sha1(info.to_bytes()))
    return (info.to_bytes() + Writer().sized32(sig).u32(eph).getvalue() + temp.to_bytes())


@command(C.TPM_ORD_ChangeAuthAsymFinish)
def ChangeAuthAsymFinish(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """Give a wrapped key the new secret sent encrypted to the ephemeral key,
    if newAuthLink proves knowledge of the current one; the ephemeral key goes."""
    from .keys import check_pcr_binding, key_pcr_info
    parent_handle = r.u32()
    eph_handle = r.u32()
    ctx.mark(r)
    et = r.u16()
    link = r.digest()
    enc_new = r.sized32("encNewAuth")
    enc_data = r.sized32("encData")
    ctx.start(r, T10, CHECK_ALL)
    parent = tpm.key_by_handle(parent_handle)
    check_pcr_binding(tpm, key_pcr_info(parent), ctx.locality)
    if not ctx.n_auth:
        if parent.blob.authDataUsage != C.TPM_AUTH_NEVER:
            raise TPMError(C.TPM_AUTHFAIL)
    elif parent_handle == C.TPM_KH_SRK:
        # for the SRK the HMAC key is the owner's secret (libtpms, Part 3 31.2)
        ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    else:
        ctx.verify(0, parent.usage_auth, C.TPM_ET_KEYHANDLE, parent_handle)
    if et != C.TPM_ET_KEY:
        raise TPMError(C.TPM_WRONG_ENTITYTYPE)
    if parent.usage != C.TPM_KEY_STORAGE:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    try:
        plain = parent.rsa.decrypt_oaep(enc_data)
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    entity = TPM_STORE_ASYMKEY.from_bytes(plain)
    eph = tpm.key_by_handle(eph_handle)
    if eph.usage != C.TPM_KEY_AUTHCHANGE:
        raise TPMError(C.TPM_BAD_PARAMETER)
    try:
        a1 = eph.rsa.decrypt_oaep(enc_new)
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    v = TPM_CHANGEAUTH_VALIDATE.from_bytes(a1)
    new_auth, n1 = v.newAuthSecret, v.n1
    if hmac_sha1(entity.usageAuth, new_auth) != link:
        raise TPMError(C.TPM_AUTHFAIL)
    entity.usageAuth = new_auth
    out = parent.rsa.encrypt_oaep(entity.to_bytes())
    salt = random_bytes(20)
    proof = hmac_sha1(new_auth, salt, n1)
    tpm.keys.pop(eph_handle, None)
    return Writer().sized32(out).getvalue() + salt + proof
