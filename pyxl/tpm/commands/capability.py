"""GetCapability, GetCapabilityOwner, SetCapability (Part 3 7.1-7.3, Part 2 21).

Sizes and limits are the Identity's (the Xen vTPM's: the Berlios emulator
with Xen's patches); where libtpms and the emulator answer differently, the
identity's behaviour family decides (identity.py).
"""

from __future__ import annotations

import functools
import struct
from typing import TYPE_CHECKING, Callable

from .. import constants as C
from ..engine import (CHECK_ALL, CHECK_BASIC, CHECK_NO_LOCKOUT, COMMANDS, T0, T1, T10, TPM,
                      TPMError, command)
from ..marshal import Reader, TPMDecodeError, Writer
from ..structures import (TPM_CAP_VERSION_INFO, TPM_DA_ACTION_TYPE, TPM_DA_INFO,
                          TPM_DA_INFO_LIMITED, TPM_KEY_HANDLE_LIST, TPM_KEY_PARMS,
                          TPM_SELECT_SIZE, TPM_STRUCT_VER, TPM_VERSION, TPMBadValue)

from ..engine import LOCKOUT_THRESHOLD
from .counter import MAX_COUNTERS
from .delegate import DELEGATE_ROWS, FAMILY_ROWS

if TYPE_CHECKING:
    from typing import Iterable

    from ..engine import Ctx

NV_TOTAL = 4096          # bytes of NV the emulator offers
MAX_CONTEXTS = 16       # saved session contexts (context.MAX_SAVED_SESSIONS)


def _u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def _bool(v: object) -> bytes:
    return b"\x01" if v else b"\x00"


def version(tpm: TPM) -> TPM_VERSION:
    return TPM_VERSION(*tpm.identity.version)


@functools.lru_cache(maxsize=8)
def _version_bytes(v: tuple[int, int, int, int]) -> bytes:
    """A marshalled TPM_VERSION (an identity's is fixed for its life, and
    every GetCapabilityOwner answer starts with it)."""
    return TPM_VERSION(*v).to_bytes()


def _free_sessions(tpm: TPM) -> int:
    return tpm.identity.max_sessions - len(tpm.sessions)


def _nv_available(tpm: TPM) -> int:
    return max(0, NV_TOTAL - sum(a.pub.dataSize for a in tpm.perm.nv.values()))


P = C.TPM_CAP_PROP
# TPM_CAP_PROPERTY answers, computed on demand
PROPERTIES: dict[int, Callable[[TPM], bytes]] = {
    P.TPM_CAP_PROP_PCR: lambda t: _u32(C.TPM_NUM_PCR),
    P.TPM_CAP_PROP_DIR: lambda t: _u32(1),
    P.TPM_CAP_PROP_MANUFACTURER: lambda t: _u32(t.identity.manufacturer),
    P.TPM_CAP_PROP_KEYS: lambda t: _u32(t.identity.max_keys - len(t.keys)),
    P.TPM_CAP_PROP_MIN_COUNTER: lambda t: _u32(1),
    P.TPM_CAP_PROP_AUTHSESS: lambda t: _u32(_free_sessions(t)),
    P.TPM_CAP_PROP_TRANSESS: lambda t: _u32(_free_sessions(t)),
    P.TPM_CAP_PROP_COUNTERS: lambda t: _u32(MAX_COUNTERS - len(t.perm.counters)),
    P.TPM_CAP_PROP_MAX_AUTHSESS: lambda t: _u32(t.identity.max_sessions),
    P.TPM_CAP_PROP_MAX_TRANSESS: lambda t: _u32(t.identity.max_sessions),
    P.TPM_CAP_PROP_MAX_COUNTERS: lambda t: _u32(MAX_COUNTERS),
    P.TPM_CAP_PROP_MAX_KEYS: lambda t: _u32(t.identity.max_keys),
    P.TPM_CAP_PROP_OWNER: lambda t: _bool(t.owned),
    P.TPM_CAP_PROP_CONTEXT: lambda t: _u32(MAX_CONTEXTS - len(t.saved_sessions)),
    P.TPM_CAP_PROP_MAX_CONTEXT: lambda t: _u32(MAX_CONTEXTS),
    P.TPM_CAP_PROP_FAMILYROWS: lambda t: _u32(FAMILY_ROWS),
    P.TPM_CAP_PROP_TIS_TIMEOUT: lambda t: b"".join(_u32(v) for v in t.identity.tis_timeouts),
    P.TPM_CAP_PROP_STARTUP_EFFECT: lambda t: _u32(0x4F),
    P.TPM_CAP_PROP_DELEGATE_ROW: lambda t: _u32(DELEGATE_ROWS),
    P.TPM_CAP_PROP_MAX_DAASESS: lambda t: _u32(t.identity.max_daa_sessions),
    P.TPM_CAP_PROP_DAASESS: lambda t: _u32(t.identity.max_daa_sessions - len(t.daa_sessions)),
    P.TPM_CAP_PROP_CONTEXT_DIST: lambda t: _u32(0xFFFFFFFE),
    P.TPM_CAP_PROP_DAA_INTERRUPT: lambda t: _bool(True),
    P.TPM_CAP_PROP_SESSIONS: lambda t: _u32(_free_sessions(t)),
    P.TPM_CAP_PROP_MAX_SESSIONS: lambda t: _u32(t.identity.max_sessions),
    P.TPM_CAP_PROP_CMK_RESTRICTION: lambda t: _u32(t.perm.restrict_delegate),
    P.TPM_CAP_PROP_DURATION: lambda t: b"".join(_u32(v) for v in t.identity.durations),
    P.TPM_CAP_PROP_ACTIVE_COUNTER: lambda t: _u32(
        0xFFFFFFFF if t.active_counter is None else t.active_counter),
    P.TPM_CAP_PROP_MAX_NV_AVAILABLE: lambda t: _u32(_nv_available(t)),
    P.TPM_CAP_PROP_INPUT_BUFFER: lambda t: _u32(t.identity.input_buffer),
}


def _property(tpm: TPM, prop: int) -> bytes:
    f = PROPERTIES.get(prop)
    if f is None:
        raise TPMError(C.TPM_BAD_MODE)
    return f(tpm)


def _handle_list(handles: Iterable[int]) -> bytes:
    return TPM_KEY_HANDLE_LIST(sorted(handles)).to_bytes()


def _sub32(sub: bytes) -> int:
    if len(sub) != 4:
        raise TPMError(C.TPM_BAD_MODE)
    return int.from_bytes(sub, "big")


def check_loaded(tpm: TPM, parms: TPM_KEY_PARMS) -> bool:
    if parms.algorithmID != C.TPM_ALG_RSA or len(tpm.keys) >= tpm.identity.max_keys:
        return False
    if not tpm.identity.berlios:
        return True              # libtpms: any RSA key while a slot is free
    try:
        rsa = parms.rsa()
    except TPMDecodeError:
        return False
    return rsa.keyLength <= 2048 and rsa.numPrimes == 2


def da_info(tpm: TPM) -> bytes:
    """TPM_DA_INFO, or TPM_DA_INFO_LIMITED when disableFullDALogicInfo is set
    (Part 2 21.7-21.8): one counter for every entity type, as in libtpms;
    the action at the threshold is a timeout, doubling with each failure."""
    active = tpm.lockout_active()
    left = 0
    if active:
        n = tpm.perm.auth_fail_count
        wait = 1 << min(n - LOCKOUT_THRESHOLD - 1, 31)
        since = tpm.lockout_since
        assert since is not None             # lockout_active() has set it
        left = max(1, int(wait - (tpm.clock() - since)))
    state = C.TPM_DA_STATE_ACTIVE if active else C.TPM_DA_STATE_INACTIVE
    action = TPM_DA_ACTION_TYPE(C.TPM_DA_ACTION_TIMEOUT)
    if tpm.perm.flags.disableFullDALogicInfo:
        return TPM_DA_INFO_LIMITED(state, action).to_bytes()
    return TPM_DA_INFO(state, min(tpm.perm.auth_fail_count, 0xFFFF), LOCKOUT_THRESHOLD,
                       action, left).to_bytes()


# what GetCapability answers before the self test has finished (Part 3 7.1)
_LIMITED_MODE_CAPS = {C.TPM_CAPABILITY_AREA.TPM_CAP_VERSION,
                      C.TPM_CAPABILITY_AREA.TPM_CAP_VERSION_VAL,
                      C.TPM_CAPABILITY_AREA.TPM_CAP_MFR}
_LIMITED_MODE_PROPS = {P.TPM_CAP_PROP_MANUFACTURER, P.TPM_CAP_PROP_DURATION,
                       P.TPM_CAP_PROP_TIS_TIMEOUT}


def _nv_visible(tpm: TPM, index: int) -> bool:
    # libtpms keeps the DIR register apart from the NV areas (authDIR)
    return tpm.identity.berlios or index != C.TPM_NV_INDEX_DIR


def _trans_algs(tpm: TPM) -> tuple[int, ...]:
    return (C.TPM_ALG_MGF1,) if tpm.identity.berlios else (C.TPM_ALG_MGF1, C.TPM_ALG_AES128)


def _adip_algs(tpm: TPM) -> tuple[int, ...]:
    return (C.TPM_ALG_XOR,) if tpm.identity.berlios else (C.TPM_ALG_XOR, C.TPM_ALG_AES128)


def capability(tpm: TPM, cap: int, sub: bytes) -> bytes:
    A = C.TPM_CAPABILITY_AREA
    if not tpm.test_done and cap not in _LIMITED_MODE_CAPS and not (
            cap == A.TPM_CAP_PROPERTY and sub[:4] in [_u32(p) for p in _LIMITED_MODE_PROPS]):
        tpm.test_done = True             # libtpms finishes the self test first
    if cap == A.TPM_CAP_ORD:
        return _bool(_sub32(sub) in COMMANDS)
    if cap == A.TPM_CAP_ALG:
        return _bool(_sub32(sub) == C.TPM_ALG_RSA)
    if cap == A.TPM_CAP_PID:
        if len(sub) != 2:
            raise TPMError(C.TPM_BAD_MODE)
        return _bool(int.from_bytes(sub, "big") in (C.TPM_PID_OIAP, C.TPM_PID_OSAP,
                                                    C.TPM_PID_ADIP, C.TPM_PID_ADCP,
                                                    C.TPM_PID_OWNER, C.TPM_PID_DSAP,
                                                    C.TPM_PID_TRANSPORT))
    if cap == A.TPM_CAP_FLAG:
        which = _sub32(sub)
        if which == C.TPM_CAP_FLAG_PERMANENT:
            return tpm.perm.flags.to_bytes()
        if which == C.TPM_CAP_FLAG_VOLATILE:
            return tpm.stclear.to_bytes()
        raise TPMError(C.TPM_BAD_MODE)
    if cap == A.TPM_CAP_PROPERTY:
        return _property(tpm, _sub32(sub))
    if cap == A.TPM_CAP_VERSION:
        return TPM_STRUCT_VER().to_bytes()
    if cap == A.TPM_CAP_KEY_HANDLE:
        return _handle_list(tpm.keys)
    if cap == A.TPM_CAP_CHECK_LOADED:
        try:
            parms = TPM_KEY_PARMS.from_bytes(sub)
        except TPMDecodeError:
            raise TPMError(C.TPM_BAD_MODE) from None
        return _bool(check_loaded(tpm, parms))
    if cap == A.TPM_CAP_SYM_MODE:
        _sub32(sub)
        return _bool(False)
    if cap == A.TPM_CAP_KEY_STATUS:
        h = _sub32(sub)
        if h not in tpm.keys:
            raise TPMError(C.TPM_INVALID_KEYHANDLE)
        return _bool(h in tpm.perm.evict_keys)
    if cap == A.TPM_CAP_NV_LIST:
        return b"".join(_u32(i) for i in sorted(tpm.perm.nv) if _nv_visible(tpm, i))
    if cap == A.TPM_CAP_MFR:
        if not tpm.identity.berlios:
            raise TPMError(C.TPM_BAD_MODE)     # libtpms has no manufacturer data
        return _version_bytes(tpm.identity.version)
    if cap == A.TPM_CAP_DA_LOGIC and not tpm.identity.berlios:
        return da_info(tpm)                    # (the emulator has no DA_LOGIC)
    if cap == A.TPM_CAP_NV_INDEX:
        index = _sub32(sub)
        a = tpm.perm.nv.get(index) if _nv_visible(tpm, index) else None
        if a is None:
            raise TPMError(C.TPM_BADINDEX)
        return a.pub.to_bytes()
    if cap == A.TPM_CAP_TRANS_ALG:
        # transport encryption (transport.check_scheme): MGF1, and AES-128 but in the emulator
        return _bool(_sub32(sub) in _trans_algs(tpm))
    if cap == A.TPM_CAP_HANDLE:
        rt = _sub32(sub)
        if rt == C.TPM_RT_KEY:
            return _handle_list(tpm.keys)
        if rt == C.TPM_RT_AUTH:
            return _handle_list(tpm.sessions)
        if rt == C.TPM_RT_COUNTER:
            return _handle_list(tpm.perm.counters)
        if rt == C.TPM_RT_TRANS:
            return _handle_list(tpm.transports)
        if rt == C.TPM_RT_DAA_TPM:
            return _handle_list(tpm.daa_sessions)
        if rt == C.TPM_RT_CONTEXT:
            return _handle_list([])
        if rt in (C.TPM_RT_HASH, C.TPM_RT_DELEGATE, C.TPM_RT_DAA_V0, C.TPM_RT_DAA_V1):
            raise TPMError(C.TPM_BAD_PARAMETER)    # as libtpms (vtpmmgr flushes DAA_TPM)
        raise TPMError(C.TPM_BAD_MODE)
    if cap == A.TPM_CAP_TRANS_ES:
        if len(sub) != 2:
            raise TPMError(C.TPM_BAD_MODE)
        # AES-128's modes; libtpms answers FALSE for TPM_ES_NONE (MGF1's) too
        es = int.from_bytes(sub, "big")
        return _bool(not tpm.identity.berlios and es in (C.TPM_ES_SYM_CTR, C.TPM_ES_SYM_OFB))
    if cap == A.TPM_CAP_AUTH_ENCRYPT:
        # ADIP (session.check_adip): XOR, and AES-128-CTR but in the emulator
        return _bool(_sub32(sub) in _adip_algs(tpm))
    if cap == A.TPM_CAP_SELECT_SIZE:
        # reqSize 1..3 (libtpms), the emulator any reqSize up to 3, even 0
        try:
            req = TPM_SELECT_SIZE.unmarshal(Reader(sub)).reqSize
        except TPMBadValue as e:
            raise TPMError(e.rc) from None
        except TPMDecodeError:
            raise TPMError(C.TPM_BAD_PARAM_SIZE) from None
        return _bool(req <= C.TPM_NUM_PCR_SELECT and (req or tpm.identity.berlios))
    if cap == A.TPM_CAP_VERSION_VAL:
        i = tpm.identity
        return TPM_CAP_VERSION_INFO(version(tpm), i.spec_level, i.errata_rev, i.vendor_id,
                                    i.vendor_specific).to_bytes()
    raise TPMError(C.TPM_BAD_MODE)


@command(C.TPM_ORD_GetCapability)
def GetCapability(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    cap = r.u32()
    sub = r.sized32("subCap")
    ctx.start(r, T0, CHECK_NO_LOCKOUT)
    return Writer().sized32(capability(tpm, cap, sub)).getvalue()


@command(C.TPM_ORD_GetCapabilityOwner)
def GetCapabilityOwner(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    return _version_bytes(tpm.identity.version) + _TWO_WORDS.pack(tpm.perm.flags.as_word(),
                                                                  tpm.stclear.as_word())


_TWO_WORDS = struct.Struct(">II")    # GetCapabilityOwner's non-volatile and volatile flags


# SetCapability(TPM_SET_PERM_FLAGS): which flags may be set, and by whom
_OWNER_SETTABLE = {C.TPM_PF_DISABLEFULLDALOGICINFO, C.TPM_PF_READSRKPUB, C.TPM_PF_READPUBEK,
                   C.TPM_PF_DISABLEOWNERCLEAR, C.TPM_PF_ALLOWMAINTENANCE}
# owner-settable flags that only go one way, and those refused while the TPM
# is disabled or deactivated (libtpms TPM_SetCapability_CapPermFlags)
_ONE_WAY: dict[int, bool] = {C.TPM_PF_DISABLEOWNERCLEAR: True, C.TPM_PF_ALLOWMAINTENANCE: False}
_WHEN_ACTIVE = {C.TPM_PF_READSRKPUB, C.TPM_PF_READPUBEK, C.TPM_PF_DISABLEOWNERCLEAR,
                C.TPM_PF_ALLOWMAINTENANCE}
# what else pyxl's model of the emulator lets physical presence set
_PP_SETTABLE = {C.TPM_PF_PHYSICALPRESENCECMDENABLE}


@command(C.TPM_ORD_SetCapability)
def SetCapability(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ctx.mark(r)
    cap = r.u32()
    sub = r.sized32("subCap")
    value = r.sized32("setValue")
    ctx.start(r, T10, CHECK_BASIC)
    if ctx.n_auth:
        if not tpm.owned:
            raise TPMError(C.TPM_NOSRK)
        ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    if cap == C.TPM_SET_PERM_FLAGS:
        bit = _sub32(sub)
        if len(value) != 1:
            raise TPMError(C.TPM_BAD_PARAMETER)
        if bit in _OWNER_SETTABLE:
            if not ctx.n_auth:
                raise TPMError(C.TPM_AUTHFAIL)
            if _ONE_WAY.get(bit, bool(value[0])) != bool(value[0]):
                raise TPMError(C.TPM_BAD_PARAMETER)
            if bit in _WHEN_ACTIVE:
                if tpm.perm.flags.disable:
                    raise TPMError(C.TPM_DISABLED)
                if tpm.stclear.deactivated:
                    raise TPMError(C.TPM_DEACTIVATED)
        elif bit in (C.TPM_PF_DISABLE, C.TPM_PF_OWNERSHIP, C.TPM_PF_DEACTIVATED):
            # libtpms TPM_SetCapability_CapPermFlags: the owner or physical
            # presence may enable/disable; ownership and deactivation need
            # presence (TPM_AUTHFAIL without), in an enabled (active) TPM
            pp = tpm.physical_presence()
            if bit == C.TPM_PF_OWNERSHIP and tpm.owned:
                raise TPMError(C.TPM_OWNER_SET)
            if not pp and not (bit == C.TPM_PF_DISABLE and ctx.n_auth):
                raise TPMError(C.TPM_AUTHFAIL)
            if bit != C.TPM_PF_DISABLE and tpm.perm.flags.disable:
                raise TPMError(C.TPM_DISABLED)
            if bit == C.TPM_PF_OWNERSHIP and tpm.stclear.deactivated:
                raise TPMError(C.TPM_DEACTIVATED)
        elif bit in _PP_SETTABLE and tpm.identity.berlios:
            tpm.require_presence()
        else:
            raise TPMError(C.TPM_BAD_PARAMETER)
        tpm.perm.flags.set_bit(bit, bool(value[0]))
        return b""
    if cap == C.TPM_SET_STCLEAR_FLAGS:
        bit = _sub32(sub)
        if len(value) != 1:
            raise TPMError(C.TPM_BAD_PARAMETER)
        if bit == C.TPM_SF_DISABLEFORCECLEAR and value[0]:
            tpm.stclear.disableForceClear = True
            return b""
        if bit == C.TPM_SF_DEACTIVATED and value[0]:
            tpm.stclear.deactivated = True
            return b""
        raise TPMError(C.TPM_BAD_PARAMETER)
    if cap == C.TPM_SET_PERM_DATA and sub == C.TPM_PD_DAAPROOF.to_bytes(4, "big"):
        # libtpms: no value, no authorization -- new tpmDAASeed, daaProof, daaBlobKey
        from .daa import new_daa_secrets
        new_daa_secrets(tpm)
        return b""
    if cap in (C.TPM_SET_PERM_DATA, C.TPM_SET_STCLEAR_DATA, C.TPM_SET_STANY_FLAGS,
               C.TPM_SET_STANY_DATA, C.TPM_SET_VENDOR):
        raise TPMError(C.TPM_BAD_PARAMETER)
    raise TPMError(C.TPM_BAD_MODE)
