"""PCRs: PcrRead, Extend, PCR_Reset (Part 3 16), with the PC-client locality rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import sha1_short
from ..engine import (CHECK_ALLOW_NO_OWNER, CHECK_BASIC, PCR_EXTEND_LOCALITY,
                      PCR_RESET_LOCALITY, T0, TPMError, command)
from ..structures import TPM_PCR_SELECTION

if TYPE_CHECKING:
    from ..engine import Ctx, TPM
    from ..marshal import Reader


@command(C.TPM_ORD_PcrRead)
def PcrRead(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    idx = r.u32()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    if idx >= C.TPM_NUM_PCR:
        raise TPMError(C.TPM_BADINDEX)
    return tpm.pcrs[idx]


@command(C.TPM_ORD_Extend)
def Extend(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    idx = r.u32()
    digest = r.digest()
    ctx.start(r, T0, CHECK_BASIC)
    if idx >= C.TPM_NUM_PCR:
        raise TPMError(C.TPM_BADINDEX)
    if not tpm.check_locality(PCR_EXTEND_LOCALITY[idx], ctx.locality):
        raise TPMError(C.TPM_BAD_LOCALITY)
    if tpm.perm.flags.disable or tpm.stclear.deactivated:
        # a disabled or deactivated TPM answers with the digest but keeps the PCR
        return bytes(20)
    # SHA-1(PCR || digest): the built-in SHA-1 directly (40 bytes: crypto.sha1_short),
    # this is every Extend's work
    new = tpm.pcrs[idx] = sha1_short(tpm.pcrs[idx] + digest).digest()
    return new


@command(C.TPM_ORD_PCR_Reset)
def PCR_Reset(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    sel = TPM_PCR_SELECTION.unmarshal(r)
    ctx.start(r, T0, CHECK_BASIC)
    size = len(sel.pcrSelect)
    if size == 0 or size > C.TPM_NUM_PCR_SELECT:
        raise TPMError(C.TPM_INVALID_PCR_INFO)
    idx = sel.indices()
    if not idx:
        raise TPMError(C.TPM_INVALID_PCR_INFO)
    for i in idx:
        if not PCR_RESET_LOCALITY[i]:
            raise TPMError(C.TPM_NOTRESETABLE)
    for i in idx:
        if not tpm.check_locality(PCR_RESET_LOCALITY[i], ctx.locality):
            raise TPMError(C.TPM_NOTLOCAL)
    for i in idx:
        tpm.pcrs[i] = bytes(20)
    return b""
