"""Non-volatile storage: NV_DefineSpace (size 0 releases), NV_WriteValue(Auth),
NV_ReadValue(Auth) (Part 3 20).  While nvLocked is FALSE no authorization is
checked, as the specification requires; the Xen vTPM starts with it TRUE."""

from __future__ import annotations

from .. import constants as C
from ..engine import (CHECK_ALL, CHECK_ALLOW_NO_OWNER, CHECK_BASIC, CHECK_NV_NOAUTH, NVArea,
                      T1, T10, TPMError, command)
from ..marshal import Writer
from ..structures import TPM_NV_DATA_PUBLIC
from .capability import NV_TOTAL

_READ_AUTHS = C.TPM_NV_PER_OWNERREAD | C.TPM_NV_PER_AUTHREAD
_WRITE_AUTHS = C.TPM_NV_PER_OWNERWRITE | C.TPM_NV_PER_AUTHWRITE


def _check_pcr_short(tpm, info, locality: int) -> None:
    if not tpm.check_locality(info.localityAtRelease, locality):
        raise TPMError(C.TPM_BAD_LOCALITY)
    if info.pcrSelection.indices():
        if tpm.pcr_composite_hash(info.pcrSelection.pcrSelect) != info.digestAtRelease:
            raise TPMError(C.TPM_WRONGPCRVAL)


def _valid_short(info) -> None:
    if len(info.pcrSelection.pcrSelect) > C.TPM_NUM_PCR_SELECT:
        raise TPMError(C.TPM_INVALID_PCR_INFO)
    if info.localityAtRelease & ~C.TPM_LOC_ALL or not info.localityAtRelease:
        raise TPMError(C.TPM_BAD_LOCALITY)


@command(C.TPM_ORD_NV_DefineSpace)
def NV_DefineSpace(tpm, ctx, r):
    pub = TPM_NV_DATA_PUBLIC.unmarshal(r)
    enc_auth = r.digest()
    ctx.start(r, T10, CHECK_ALLOW_NO_OWNER | CHECK_NV_NOAUTH)
    p = tpm.perm
    idx = pub.nvIndex
    if ctx.n_auth:
        if not tpm.owned:
            raise TPMError(C.TPM_NOSRK)
        ctx.verify(0, p.owner_auth, C.TPM_ET_OWNER)
        auth = ctx.decrypt_auth(enc_auth)
    else:
        # without owner authorization: only before an owner or NV lock exists
        # (physical presence, always asserted here, stands in for the owner)
        if tpm.owned and p.flags.nvLocked:
            raise TPMError(C.TPM_AUTHFAIL)
        if p.flags.nvLocked:
            tpm.require_presence()
        auth = enc_auth
    if idx == C.TPM_NV_INDEX_LOCK:
        if pub.dataSize != 0 or ctx.n_auth:
            raise TPMError(C.TPM_BADINDEX)
        p.flags.nvLocked = True
        return b""
    if idx == C.TPM_NV_INDEX0 or idx & C.TPM_NV_INDEX_RESVD:
        raise TPMError(C.TPM_BADINDEX)
    existing = p.nv.get(idx)
    if pub.dataSize == 0:
        if existing is None:
            raise TPMError(C.TPM_BADINDEX)
        del p.nv[idx]
        return b""
    if existing is not None or idx & C.TPM_NV_INDEX_D_BIT:
        raise TPMError(C.TPM_BADINDEX)
    attrs = pub.permission.attributes
    if attrs & ~C.TPM_NV_PER_ALL:
        raise TPMError(C.TPM_BAD_ATTRIBUTES)
    if attrs & _READ_AUTHS == _READ_AUTHS or attrs & _WRITE_AUTHS == _WRITE_AUTHS:
        raise TPMError(C.TPM_AUTH_CONFLICT)
    _valid_short(pub.pcrInfoRead)
    _valid_short(pub.pcrInfoWrite)
    used = sum(a.pub.dataSize for a in p.nv.values())
    if pub.dataSize > NV_TOTAL - used:
        raise TPMError(C.TPM_NOSPACE)
    pub.bReadSTClear = pub.bWriteSTClear = pub.bWriteDefine = 0
    p.nv[idx] = NVArea(pub, auth, bytearray(b"\xff" * pub.dataSize))
    return b""


def _area(tpm, idx: int) -> NVArea:
    a = tpm.perm.nv.get(idx)
    if a is None:
        raise TPMError(C.TPM_BADINDEX)
    return a


def _write(tpm, ctx, a: NVArea, offset: int, data: bytes) -> None:
    pub = a.pub
    attrs = pub.permission.attributes
    locked = tpm.perm.flags.nvLocked
    if locked:
        if pub.bWriteDefine or pub.bWriteSTClear or (
                attrs & C.TPM_NV_PER_GLOBALLOCK and tpm.stclear.bGlobalLock):
            raise TPMError(C.TPM_AREA_LOCKED)
        _check_pcr_short(tpm, pub.pcrInfoWrite, ctx.locality)
        if attrs & C.TPM_NV_PER_PPWRITE:
            tpm.require_presence()
    if not data and offset == 0 and locked:
        # a zero-length write locks the area (WRITEDEFINE / WRITE_STCLEAR)
        if attrs & C.TPM_NV_PER_WRITEDEFINE:
            pub.bWriteDefine = 1
        if attrs & C.TPM_NV_PER_WRITE_STCLEAR:
            pub.bWriteSTClear = 1
        return
    if offset + len(data) > pub.dataSize:
        raise TPMError(C.TPM_NOSPACE)
    if locked and attrs & C.TPM_NV_PER_WRITEALL and len(data) != pub.dataSize:
        raise TPMError(C.TPM_NOT_FULLWRITE)
    a.data[offset:offset + len(data)] = data


def _read(tpm, ctx, a: NVArea, offset: int, size: int) -> bytes:
    pub = a.pub
    if tpm.perm.flags.nvLocked:
        if pub.bReadSTClear:
            raise TPMError(C.TPM_DISABLED_CMD)
        _check_pcr_short(tpm, pub.pcrInfoRead, ctx.locality)
        if pub.permission.attributes & C.TPM_NV_PER_PPREAD:
            tpm.require_presence()
        if size == 0 and offset == 0 and pub.permission.attributes & C.TPM_NV_PER_READ_STCLEAR:
            pub.bReadSTClear = 1
            return Writer().sized32(b"").getvalue()
    if offset + size > pub.dataSize:
        raise TPMError(C.TPM_NOSPACE)
    return Writer().sized32(bytes(a.data[offset:offset + size])).getvalue()


@command(C.TPM_ORD_NV_WriteValue)
def NV_WriteValue(tpm, ctx, r):
    idx, offset = r.u32(), r.u32()
    data = r.sized32("data")
    ctx.start(r, T10, CHECK_BASIC | CHECK_NV_NOAUTH)
    if not tpm.perm.flags.nvLocked:
        if idx not in tpm.perm.nv:
            raise TPMError(C.TPM_BADINDEX)
        if ctx.n_auth:
            ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
        _write(tpm, ctx, tpm.perm.nv[idx], offset, data)
        return b""
    tpm.check_state(ctx.tag, CHECK_ALL if ctx.n_auth else CHECK_ALLOW_NO_OWNER)
    a = _area(tpm, idx)
    attrs = a.pub.permission.attributes
    if ctx.n_auth:
        if not attrs & C.TPM_NV_PER_OWNERWRITE:
            raise TPMError(C.TPM_AUTH_CONFLICT)
        ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    elif attrs & _WRITE_AUTHS:
        raise TPMError(C.TPM_AUTH_CONFLICT)
    _write(tpm, ctx, a, offset, data)
    return b""


@command(C.TPM_ORD_NV_WriteValueAuth)
def NV_WriteValueAuth(tpm, ctx, r):
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
def NV_ReadValue(tpm, ctx, r):
    idx, offset, size = r.u32(), r.u32(), r.u32()
    ctx.start(r, T10, CHECK_BASIC | CHECK_NV_NOAUTH)
    if not tpm.perm.flags.nvLocked:
        a = _area(tpm, idx)
        if ctx.n_auth:
            ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
        return _read(tpm, ctx, a, offset, size)
    tpm.check_state(ctx.tag, CHECK_ALL if ctx.n_auth else CHECK_ALLOW_NO_OWNER)
    a = _area(tpm, idx)
    attrs = a.pub.permission.attributes
    if ctx.n_auth:
        if not attrs & C.TPM_NV_PER_OWNERREAD:
            raise TPMError(C.TPM_AUTH_CONFLICT)
        ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    elif attrs & _READ_AUTHS:
        raise TPMError(C.TPM_AUTH_CONFLICT)
    return _read(tpm, ctx, a, offset, size)


@command(C.TPM_ORD_NV_ReadValueAuth)
def NV_ReadValueAuth(tpm, ctx, r):
    idx, offset, size = r.u32(), r.u32(), r.u32()
    ctx.start(r, T1, CHECK_ALL)
    a = _area(tpm, idx)
    if not a.pub.permission.attributes & C.TPM_NV_PER_AUTHREAD:
        raise TPMError(C.TPM_AUTH_CONFLICT)
    ctx.verify(0, a.auth, C.TPM_ET_NV, idx)
    return _read(tpm, ctx, a, offset, size)

