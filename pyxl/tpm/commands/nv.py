"""Non-volatile storage: NV_DefineSpace (size 0 releases), NV_WriteValue(Auth),
NV_ReadValue(Auth) (Part 3 20), with the checks in libtpms's order.  While
nvLocked is FALSE the authorization checks are skipped, as the specification
requires (AUTHREAD / AUTHWRITE areas still need their own commands); the Xen
vTPM starts with nvLocked TRUE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constants as C
from ..engine import (CHECK_ALL, CHECK_ALLOW_NO_OWNER, CHECK_BASIC, CHECK_NV_NOAUTH, NVArea,
                      T1, T10, TPMError, command)
from ..marshal import Writer
from ..structures import TPM_NV_DATA_PUBLIC
from .capability import NV_TOTAL

if TYPE_CHECKING:
    from ..engine import Ctx, TPM
    from ..marshal import Reader
    from ..structures import TPM_PCR_INFO_SHORT

_READ_AUTHS = C.TPM_NV_PER_OWNERREAD | C.TPM_NV_PER_AUTHREAD
_WRITE_AUTHS = C.TPM_NV_PER_OWNERWRITE | C.TPM_NV_PER_AUTHWRITE
_WRITE_ANY = _WRITE_AUTHS | C.TPM_NV_PER_WRITEDEFINE | C.TPM_NV_PER_PPWRITE


def _check_pcr_short(tpm: TPM, info: TPM_PCR_INFO_SHORT, locality: int) -> None:
    if not tpm.check_locality(info.localityAtRelease, locality):
        raise TPMError(C.TPM_BAD_LOCALITY)
    if info.pcrSelection.indices():
        if tpm.pcr_composite_hash(info.pcrSelection.pcrSelect) != info.digestAtRelease:
            raise TPMError(C.TPM_WRONGPCRVAL)


def _valid_short(info: TPM_PCR_INFO_SHORT) -> None:
    if len(info.pcrSelection.pcrSelect) > C.TPM_NUM_PCR_SELECT:
        raise TPMError(C.TPM_INVALID_STRUCTURE)
    if info.localityAtRelease & ~C.TPM_LOC_ALL or not info.localityAtRelease:
        raise TPMError(C.TPM_INVALID_STRUCTURE)


def _is_valid_index(idx: int) -> bool:
    return idx not in (C.TPM_NV_INDEX_LOCK, C.TPM_NV_INDEX0, C.TPM_NV_INDEX_DIR) \
        and not idx & C.TPM_NV_INDEX_RESVD


@command(C.TPM_ORD_NV_DefineSpace)
def NV_DefineSpace(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    pub = TPM_NV_DATA_PUBLIC.unmarshal(r)
    enc_auth = r.digest()
    ctx.start(r, T10, CHECK_ALLOW_NO_OWNER | CHECK_NV_NOAUTH)
    p = tpm.perm
    idx = pub.nvIndex
    if idx == C.TPM_NV_INDEX_LOCK and not ctx.n_auth:
        if pub.dataSize != 0:
            raise TPMError(C.TPM_BADINDEX)
        p.flags.nvLocked = True
        return b""
    ignore_auth = not p.flags.nvLocked
    if idx == C.TPM_NV_INDEX0:
        raise TPMError(C.TPM_BADINDEX)
    if idx & C.TPM_NV_INDEX_D_BIT and not ignore_auth:
        raise TPMError(C.TPM_BADINDEX)
    if ctx.n_auth:
        ctx.verify(0, p.owner_auth, C.TPM_ET_OWNER, allow_oiap=False)
        auth = ctx.decrypt_auth(enc_auth)
    else:
        if not ignore_auth:
            tpm.require_presence()
            if tpm.owned:
                raise TPMError(C.TPM_OWNER_SET)
            if pub.dataSize == 0:
                raise TPMError(C.TPM_BAD_DATASIZE)
        auth = enc_auth
    old = p.nv.get(idx)
    if old is not None:
        attrs = old.pub.permission.attributes
        if not ignore_auth and (
                (attrs & C.TPM_NV_PER_GLOBALLOCK and tpm.stclear.bGlobalLock)
                or (attrs & C.TPM_NV_PER_WRITE_STCLEAR and old.pub.bWriteSTClear)):
            raise TPMError(C.TPM_AREA_LOCKED)
        del p.nv[idx]          # redefining replaces the area; size 0 only releases it
        for h, s in list(tpm.sessions.items()):
            if s.entity_type & 0xFF == C.TPM_ET_NV and s.entity_value == idx:
                del tpm.sessions[h]
        if pub.dataSize == 0:
            return b""
    _valid_short(pub.pcrInfoRead)
    _valid_short(pub.pcrInfoWrite)
    attrs = pub.permission.attributes
    if attrs & _WRITE_AUTHS == _WRITE_AUTHS or attrs & _READ_AUTHS == _READ_AUTHS:
        raise TPMError(C.TPM_AUTH_CONFLICT)
    if not attrs & _WRITE_ANY and pub.pcrInfoWrite.localityAtRelease == C.TPM_LOC_ALL:
        raise TPMError(C.TPM_PER_NOWRITE)
    if not _is_valid_index(idx):
        raise TPMError(C.TPM_BADINDEX)
    if pub.dataSize == 0:
        raise TPMError(C.TPM_BAD_PARAM_SIZE)
    used = sum(a.pub.dataSize for a in p.nv.values())
    if pub.dataSize > NV_TOTAL - used:
        raise TPMError(C.TPM_NOSPACE)
    pub.bReadSTClear = pub.bWriteSTClear = pub.bWriteDefine = 0
    p.nv[idx] = NVArea(pub, auth, bytearray(b"\xff" * pub.dataSize))
    return b""


def _area(tpm: TPM, idx: int) -> NVArea:
    a = tpm.perm.nv.get(idx)
    if a is None:
        raise TPMError(C.TPM_BADINDEX)
    return a


def _write(tpm: TPM, ctx: Ctx, a: NVArea, offset: int, data: bytes) -> None:
    """Steps 8-16 of NV_WriteValue (shared with NV_WriteValueAuth)."""
    pub = a.pub
    attrs = pub.permission.attributes
    if tpm.perm.flags.nvLocked:
        if not tpm.check_locality(pub.pcrInfoWrite.localityAtRelease, ctx.locality):
            raise TPMError(C.TPM_BAD_LOCALITY)
        if attrs & C.TPM_NV_PER_PPWRITE:
            tpm.require_presence()
        if (attrs & C.TPM_NV_PER_WRITEDEFINE and pub.bWriteDefine) or \
                (attrs & C.TPM_NV_PER_GLOBALLOCK and tpm.stclear.bGlobalLock) or \
                (attrs & C.TPM_NV_PER_WRITE_STCLEAR and pub.bWriteSTClear):
            raise TPMError(C.TPM_AREA_LOCKED)
        _check_pcr_short(tpm, pub.pcrInfoWrite, ctx.locality)
    if not data:
        # a zero-length write locks the area (WRITE_STCLEAR / WRITEDEFINE)
        if attrs & C.TPM_NV_PER_WRITE_STCLEAR:
            pub.bWriteSTClear = 1
        if attrs & C.TPM_NV_PER_WRITEDEFINE:
            pub.bWriteDefine = 1
    else:
        if offset + len(data) > pub.dataSize:
            raise TPMError(C.TPM_NOSPACE)
        if attrs & C.TPM_NV_PER_WRITEALL and len(data) != pub.dataSize:
            raise TPMError(C.TPM_NOT_FULLWRITE)
        a.data[offset:offset + len(data)] = data
    pub.bReadSTClear = 0


def _read(tpm: TPM, ctx: Ctx, a: NVArea, offset: int, size: int) -> bytes:
    """Steps 6-11 of NV_ReadValue (shared with NV_ReadValueAuth)."""
    pub = a.pub
    attrs = pub.permission.attributes
    if tpm.perm.flags.nvLocked:
        if not tpm.check_locality(pub.pcrInfoRead.localityAtRelease, ctx.locality):
            raise TPMError(C.TPM_BAD_LOCALITY)
        if attrs & C.TPM_NV_PER_PPREAD:
            tpm.require_presence()
        if attrs & C.TPM_NV_PER_READ_STCLEAR and pub.bReadSTClear:
            raise TPMError(C.TPM_DISABLED_CMD)
        _check_pcr_short(tpm, pub.pcrInfoRead, ctx.locality)
    if size == 0:
        if attrs & C.TPM_NV_PER_READ_STCLEAR:
            pub.bReadSTClear = 1
        return Writer().sized32(b"").getvalue()
    if offset + size > pub.dataSize:
        raise TPMError(C.TPM_NOSPACE)
    return Writer().sized32(bytes(a.data[offset:offset + size])).getvalue()


@command(C.TPM_ORD_NV_WriteValue)
def NV_WriteValue(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    idx, offset = r.u32(), r.u32()
    data = r.sized32("data")
    ctx.start(r, T10, CHECK_BASIC | CHECK_NV_NOAUTH)
    locked = tpm.perm.flags.nvLocked
    if idx == C.TPM_NV_INDEX0:
        if ctx.n_auth:
            ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
        if data:
            raise TPMError(C.TPM_BADINDEX)
        tpm.stclear.bGlobalLock = True
        return b""
    a = _area(tpm, idx)
    attrs = a.pub.permission.attributes
    if locked and attrs & C.TPM_NV_PER_OWNERWRITE and tpm.perm.flags.disable:
        raise TPMError(C.TPM_DISABLED)
    if ctx.n_auth:
        if locked and not attrs & C.TPM_NV_PER_OWNERWRITE:
            raise TPMError(C.TPM_AUTH_CONFLICT)
        ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    elif locked and attrs & C.TPM_NV_PER_OWNERWRITE:
        raise TPMError(C.TPM_AUTH_CONFLICT)
    if attrs & C.TPM_NV_PER_AUTHWRITE:
        raise TPMError(C.TPM_AUTH_CONFLICT)
    _write(tpm, ctx, a, offset, data)
    return b""


@command(C.TPM_ORD_NV_WriteValueAuth)
def NV_WriteValueAuth(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    idx, offset = r.u32(), r.u32()
    data = r.sized32("data")
    ctx.start(r, T1, CHECK_ALL)
    a = _area(tpm, idx)
    if not a.pub.permission.attributes & C.TPM_NV_PER_AUTHWRITE:
        raise TPMError(C.TPM_AUTH_CONFLICT)
    ctx.verify(0, a.auth, C.TPM_ET_NV, idx)
    _write(tpm, ctx, a, offset, data)
    return b""


@command(C.TPM_ORD_NV_ReadValue)
def NV_ReadValue(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    idx, offset, size = r.u32(), r.u32(), r.u32()
    ctx.start(r, T10, CHECK_BASIC | CHECK_NV_NOAUTH)
    locked = tpm.perm.flags.nvLocked
    a = _area(tpm, idx)
    attrs = a.pub.permission.attributes
    if locked and attrs & C.TPM_NV_PER_OWNERREAD and tpm.perm.flags.disable:
        raise TPMError(C.TPM_DISABLED)
    if ctx.n_auth:
        if locked and not attrs & C.TPM_NV_PER_OWNERREAD:
            raise TPMError(C.TPM_AUTH_CONFLICT)
        ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    elif attrs & C.TPM_NV_PER_AUTHREAD or (locked and attrs & C.TPM_NV_PER_OWNERREAD):
        raise TPMError(C.TPM_AUTH_CONFLICT)
    return _read(tpm, ctx, a, offset, size)


@command(C.TPM_ORD_NV_ReadValueAuth)
def NV_ReadValueAuth(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    idx, offset, size = r.u32(), r.u32(), r.u32()
    ctx.start(r, T1, CHECK_ALL)
    a = _area(tpm, idx)
    if not a.pub.permission.attributes & C.TPM_NV_PER_AUTHREAD:
        raise TPMError(C.TPM_AUTH_CONFLICT)
    ctx.verify(0, a.auth, C.TPM_ET_NV, idx)
    return _read(tpm, ctx, a, offset, size)
