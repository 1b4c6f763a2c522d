"""Small commands: TSC_PhysicalPresence, TSC_ResetEstablishmentBit, Reset,
Init, the 1.1 DIR commands, ChangeAuth (Part 3 6.2, 17.1, 21, 30)."""

from __future__ import annotations

from .. import constants as C
from ..engine import (CHECK_ALL, CHECK_ALLOW_NO_OWNER, CHECK_BASIC, CHECK_STARTUP, T0, T1, T2,
                      TPMError, command)
from ..marshal import TPMDecodeError, Writer
from ..structures import TPM_SEALED_DATA, TPM_STORE_ASYMKEY

PP = C.TPM_PHYSICAL_PRESENCE


@command(C.TSC_ORD_PhysicalPresence)
def TSC_PhysicalPresence(tpm, ctx, r):
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
def TSC_ResetEstablishmentBit(tpm, ctx, r):
    ctx.start(r, T0, CHECK_BASIC)
    if ctx.locality not in (3, 4):
        raise TPMError(C.TPM_BAD_LOCALITY)
    tpm.perm.flags.tpmEstablished = False
    return b""


@command(C.TPM_ORD_Reset)
def Reset(tpm, ctx, r):
    ctx.start(r, T0, CHECK_BASIC)
    tpm.sessions.clear()
    return b""


@command(C.TPM_ORD_Init)
def Init(tpm, ctx, r):
    """TPM_Init as a command: back to the state that awaits TPM_Startup."""
    ctx.start(r, T0, CHECK_STARTUP)
    tpm._power_off()
    return b""


def _dir_area(tpm, index: int):
    if index != 0:
        raise TPMError(C.TPM_BADINDEX)
    a = tpm.perm.nv.get(C.TPM_NV_INDEX_DIR)
    if a is None:
        raise TPMError(C.TPM_BADINDEX)
    return a


@command(C.TPM_ORD_DirWriteAuth)
def DirWriteAuth(tpm, ctx, r):
    index = r.u32()
    value = r.digest()
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    _dir_area(tpm, index).data[:] = value
    return b""


@command(C.TPM_ORD_DirRead)
def DirRead(tpm, ctx, r):
    index = r.u32()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    return bytes(_dir_area(tpm, index).data)


@command(C.TPM_ORD_ChangeAuth)
def ChangeAuth(tpm, ctx, r):
    parent_handle = r.u32()
    ctx.mark(r)
    pid = r.u16()
    enc_new = r.digest()
    et = r.u16()
    enc_data = r.sized32("encData")
    ctx.start(r, T2, CHECK_ALL)
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
    try:
        if et == C.TPM_ET_KEY:
            obj = TPM_STORE_ASYMKEY.from_bytes(plain)
            if obj.payload != C.TPM_PT_ASYM:
                raise TPMError(C.TPM_INVALID_STRUCTURE)
            ctx.verify(1, obj.usageAuth, allow_osap=False)
            obj.usageAuth = new
        elif et == C.TPM_ET_DATA:
            obj = TPM_SEALED_DATA.from_bytes(plain)
            if obj.payload != C.TPM_PT_SEAL or obj.tpmProof != tpm.perm.tpm_proof:
                raise TPMError(C.TPM_INVALID_STRUCTURE)
            ctx.verify(1, obj.authData, allow_osap=False)
            obj.authData = new
        else:
            raise TPMError(C.TPM_WRONG_ENTITYTYPE)
    except TPMDecodeError:
        raise TPMError(C.TPM_INVALID_STRUCTURE) from None
    out = parent.rsa.encrypt_oaep(obj.to_bytes())
    return Writer().sized32(out).getvalue()
