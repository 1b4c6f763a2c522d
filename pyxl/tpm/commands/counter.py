"""Monotonic counters (Part 3 25): at most one may be incremented per boot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constants as C
from ..engine import CHECK_ALL, CHECK_ALLOW_NO_OWNER, Counter, T0, T1, TPMError, command
from ..structures import TPM_COUNTER_VALUE

if TYPE_CHECKING:
    from ..engine import Ctx, TPM
    from ..marshal import Reader

MAX_COUNTERS = 4


def _counter(tpm: TPM, cid: int) -> Counter:
    c = tpm.perm.counters.get(cid)
    if c is None:
        raise TPMError(C.TPM_BAD_COUNTER)
    return c


def _value(c: Counter) -> bytes:
    return TPM_COUNTER_VALUE(c.label, c.value).to_bytes()


@command(C.TPM_ORD_CreateCounter)
def CreateCounter(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    enc_auth = r.digest()
    label = r.bytes(4, "label")
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER, allow_oiap=False)
    auth = ctx.decrypt_auth(enc_auth)
    counters = tpm.perm.counters
    if len(counters) >= MAX_COUNTERS:
        raise TPMError(C.TPM_RESOURCES)
    cid = min(set(range(MAX_COUNTERS)) - set(counters))
    # a new counter starts above every value handed out so far
    start = max([c.value for c in counters.values()] + [tpm.perm.counter_floor]) + 1
    counters[cid] = Counter(label, start, auth)
    return cid.to_bytes(4, "big") + _value(counters[cid])


@command(C.TPM_ORD_IncrementCounter)
def IncrementCounter(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    cid = r.u32()
    ctx.start(r, T1, CHECK_ALL)
    c = _counter(tpm, cid)
    ctx.verify(0, c.auth, C.TPM_ET_COUNTER, cid)
    if tpm.active_counter is not None and tpm.active_counter != cid:
        raise TPMError(C.TPM_BAD_COUNTER)
    tpm.active_counter = cid
    c.value += 1
    return _value(c)


@command(C.TPM_ORD_ReadCounter)
def ReadCounter(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    cid = r.u32()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    return _value(_counter(tpm, cid))


def _release(tpm: TPM, cid: int) -> None:
    c = tpm.perm.counters.pop(cid)
    tpm.perm.counter_floor = max(tpm.perm.counter_floor, c.value)
    if tpm.active_counter == cid:
        tpm.active_counter = None


@command(C.TPM_ORD_ReleaseCounter)
def ReleaseCounter(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    cid = r.u32()
    ctx.start(r, T1, CHECK_ALLOW_NO_OWNER)
    c = _counter(tpm, cid)
    ctx.verify(0, c.auth, C.TPM_ET_COUNTER, cid)
    _release(tpm, cid)
    return b""


@command(C.TPM_ORD_ReleaseCounterOwner)
def ReleaseCounterOwner(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    cid = r.u32()
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    _counter(tpm, cid)
    _release(tpm, cid)
    return b""
