"""Start-up, self test, random numbers, the SHA-1 thread, ticks (Part 3 3-6, 13, 20)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import public_random, random_bytes, sha1
from ..engine import (CHECK_ALLOW_NO_OWNER, CHECK_BASIC, CHECK_STARTUP, CHECK_NO_LOCKOUT,
                      PCR_EXTEND_LOCALITY, T0, TPMError, command)
from ..marshal import Writer
from ..state import restore_volatile, save_volatile
from ..structures import TPM_CURRENT_TICKS, TPM_STCLEAR_FLAGS

if TYPE_CHECKING:
    from ..engine import Ctx, TPM
    from ..marshal import Reader

SELF_TEST_RESULT = b"Success\x00"     # what the Berlios emulator reports


def self_test_result(tpm: TPM) -> bytes:
    """libtpms reports its test state (1 limited, 2 full operation) as text."""
    if tpm.identity.berlios:
        return SELF_TEST_RESULT
    return b"Shutdown %08x\n" % (2 if tpm.test_done else 1)


def startup_clear(tpm: TPM) -> None:
    ff = tpm.identity.pcrs_ff_at_startup
    tpm.pcrs = [b"\xff" * 20 if i in ff else bytes(20)
                for i in range(C.TPM_NUM_PCR)]
    tpm.stclear = TPM_STCLEAR_FLAGS(deactivated=tpm.perm.flags.deactivated)
    tpm.reset_keys()
    tpm.sessions.clear()
    tpm.active_counter = None
    tpm.owner_reference = C.TPM_KH_OWNER
    tpm.context_nonce_key = random_bytes(20)
    tpm.audit_digest = bytes(20)
    for a in tpm.perm.nv.values():
        a.pub.bReadSTClear = 0
        a.pub.bWriteSTClear = 0
    tpm.saved = None


@command(C.TPM_ORD_Startup)
def Startup(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """TPM_Startup, checked as libtpms's TPM_Process_Startup checks it: the
    parameter, the tag and leftover bytes first, then a second start-up is
    TPM_INVALID_POSTINIT.  Whatever the outcome, the TPM has left its
    post-TPM_Init state afterwards (libtpms clears postInitialise
    unconditionally): even a malformed TPM_Startup starts the TPM, so a
    second, well-formed one is refused."""
    try:
        st = r.u16()
        ctx.start(r, T0, check=CHECK_STARTUP)
        if not tpm.post_init:
            raise TPMError(C.TPM_INVALID_POSTINIT)
        if st == C.TPM_ST_CLEAR:
            startup_clear(tpm)
        elif st == C.TPM_ST_STATE:
            if tpm.saved is None:
                raise TPMError(C.TPM_FAIL, "no saved state")
            saved = tpm.saved
            startup_clear(tpm)
            restore_volatile(tpm, saved)
            # resettable PCRs do not survive a saved state (they reset to their default)
            for i in range(16, C.TPM_NUM_PCR):
                tpm.pcrs[i] = b"\xff" * 20 if i in tpm.identity.pcrs_ff_at_startup else bytes(20)
            tpm.saved = saved
        elif st == C.TPM_ST_DEACTIVATED:
            startup_clear(tpm)
            tpm.stclear.deactivated = True
        else:
            raise TPMError(C.TPM_BAD_PARAMETER)
    finally:
        if not tpm.identity.berlios:
            tpm.post_init = False
    tpm.post_init = False
    return b""


@command(C.TPM_ORD_SaveState)
def SaveState(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_BASIC)
    tpm.saved = save_volatile(tpm)
    return b""


@command(C.TPM_ORD_SelfTestFull)
def SelfTestFull(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_BASIC)
    tpm.test_done = True
    return b""


@command(C.TPM_ORD_ContinueSelfTest)
def ContinueSelfTest(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_BASIC)
    tpm.test_done = True
    return b""


@command(C.TPM_ORD_GetTestResult)
def GetTestResult(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_NO_LOCKOUT)
    return Writer().sized32(self_test_result(tpm)).getvalue()


@command(C.TPM_ORD_GetRandom)
def GetRandom(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    n = r.u32()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    n = min(n, tpm.identity.max_random)
    # randomBytesSize, randomBytes (a TPM_SIZED_BUFFER): the two joined
    # directly, a Writer's object and calls cost more than the random bytes
    return n.to_bytes(4, "big") + public_random(n)


@command(C.TPM_ORD_StirRandom)
def StirRandom(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    data = r.sized32("inData")
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    if len(data) > 255:
        # libtpms TPM_Process_StirRandom: once the frame parsed (spec: dataSize < 256)
        raise TPMError(C.TPM_BAD_PARAMETER)
    return b""   # the OS generator needs no stirring


def current_ticks(tpm: TPM) -> TPM_CURRENT_TICKS:
    """Microseconds since start-up; the nonce changes with every power cycle."""
    ticks = int((tpm.clock() - tpm.boot_time) * 1_000_000)
    return TPM_CURRENT_TICKS(ticks, 1, tpm.tick_nonce)


@command(C.TPM_ORD_GetTicks)
def GetTicks(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    return current_ticks(tpm).to_bytes()


# ---------------------------------------------------------------- SHA-1 thread

SHA1_MAX_BYTES = 2048


@command(C.TPM_ORD_SHA1Start)
def SHA1Start(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T0, CHECK_BASIC)
    tpm.sha1_ctx = hashlib.sha1()
    return Writer().u32(SHA1_MAX_BYTES).getvalue()


@command(C.TPM_ORD_SHA1Update)
def SHA1Update(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    data = r.sized32("hashData")
    ctx.start(r, T0, CHECK_BASIC)
    if tpm.sha1_ctx is None:
        raise TPMError(C.TPM_SHA_THREAD)
    if len(data) % 64:
        tpm.sha1_ctx = None
        raise TPMError(C.TPM_SHA_ERROR)
    tpm.sha1_ctx.update(data)
    return b""


def _finish_sha1(tpm: TPM, data: bytes) -> bytes:
    """libtpms TPM_SHA1CompleteCommon: the size first, then the thread."""
    if len(data) > 64:
        tpm.sha1_ctx = None
        raise TPMError(C.TPM_SHA_ERROR)
    if tpm.sha1_ctx is None:
        raise TPMError(C.TPM_SHA_THREAD)
    h = tpm.sha1_ctx
    tpm.sha1_ctx = None
    h.update(data)
    return h.digest()


@command(C.TPM_ORD_SHA1Complete)
def SHA1Complete(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    data = r.sized32("hashData")
    ctx.start(r, T0, CHECK_BASIC)
    return _finish_sha1(tpm, data)


@command(C.TPM_ORD_SHA1CompleteExtend)
def SHA1CompleteExtend(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    idx = r.u32()
    data = r.sized32("hashData")
    ctx.start(r, T0, CHECK_BASIC)
    # libtpms TPM_Process_SHA1CompleteExtend: the hash is finished, then extended
    digest = _finish_sha1(tpm, data)
    if idx >= C.TPM_NUM_PCR:
        raise TPMError(C.TPM_BADINDEX)
    if not tpm.check_locality(PCR_EXTEND_LOCALITY[idx], ctx.locality):
        raise TPMError(C.TPM_BAD_LOCALITY)
    tpm.pcrs[idx] = sha1(tpm.pcrs[idx], digest)
    return digest + tpm.pcrs[idx]
