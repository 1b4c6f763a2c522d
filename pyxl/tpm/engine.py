"""The TPM 1.2 engine: frame checks, dispatch, authorization sessions, state.

    tpm = TPM()                    # fresh (generates its EK once), powered off
    tpm.power_on("clear")          # TPM_Init + TPM_Startup(ST_CLEAR) + self test,
                                   # as vtpm-stubdom does (tcsd never sends Startup)
    rsp = tpm.execute(frame, locality=0)   # never raises
    blob = tpm.dump(); tpm2 = TPM.load(blob)

Request processing follows libtpms's order, so malformed input gets the
same return codes: header and paramSize, ordinal table (TPM_BAD_ORDINAL),
then per command: parameters (short -> TPM_BAD_PARAM_SIZE), auth trailers,
state checks (lockout, post-init, disabled, deactivated, owner), the
command's allowed tags (TPM_BADTAG), leftover bytes (TPM_BAD_PARAM_SIZE).

This module holds the frame checks, the dispatch table, the authorization
sessions (Ctx.verify: OIAP/OSAP HMAC-SHA1, ADIP) and the state containers;
the commands live in pyxl/tpm/commands/ (one module per area, registered
with @command), the state blob in state.py.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import threading
import time
from dataclasses import dataclass, field
from hmac import compare_digest
from typing import TYPE_CHECKING, Callable, Sequence

from . import constants as C
from .crypto import (HmacKeys, HmacSha1, KeySource, RSAKey, aes128_ctr, generate_rsa, nonce,
                     random_bytes, sha1, sha1_for, xor)
from .identity import XEN_VTPM_IDENTITY, Identity
from .marshal import Reader, TPMDecodeError, Writer
from .structures import (TPM_DELEGATE_PUBLIC, TPM_KEY, TPM_KEY12, AnyKey, TPM_KEY_PARMS,
                         TPM_NV_ATTRIBUTES, TPM_NV_DATA_PUBLIC, TPM_PERMANENT_FLAGS, TPM_RSA_KEY_PARMS,
                         TPM_STCLEAR_FLAGS, TPM_STORE_PUBKEY, TPMBadValue, TPMStructError)

if TYPE_CHECKING:
    from .commands.daa import DAASession
    from .transport import TransportSession

log = logging.getLogger(__name__)

MAX_FRAME = 4096            # the largest command libtpms accepts in one piece
LOCKOUT_THRESHOLD = 5       # failures before the dictionary-attack lockout starts

# state-check bits (which preconditions a command has), as in libtpms
CHECK_NOT_SHUTDOWN = 0x01
CHECK_ENABLED = 0x04
CHECK_ACTIVATED = 0x08
CHECK_OWNER = 0x10
CHECK_NO_LOCKOUT = 0x20
CHECK_NV_NOAUTH = 0x40
CHECK_STARTUP = 0x80        # only TPM_Startup runs before TPM_Startup
CHECK_ALL = 0x3F
CHECK_ALLOW_NO_OWNER = 0x2F
CHECK_BASIC = CHECK_NOT_SHUTDOWN | CHECK_NO_LOCKOUT

# The request tags as plain ints: they are compared on every command, and
# an IntEnum member on the right of a comparison costs an extra lookup.
_RQU = int(C.TPM_TAG_RQU_COMMAND)
_RQU1 = int(C.TPM_TAG_RQU_AUTH1_COMMAND)
_RQU2 = int(C.TPM_TAG_RQU_AUTH2_COMMAND)
T0 = (_RQU,)
T1 = (_RQU1,)
T10 = (_RQU1, _RQU)
T2 = (_RQU2,)
T21 = (_RQU2, _RQU1)
T210 = (_RQU2, _RQU1, _RQU)
_AUTHS_OF_TAG: dict[int, int] = {_RQU: 0, _RQU1: 1, _RQU2: 2}
# what verify() compares on every authorized command, as plain ints too
_PID_OIAP = int(C.TPM_PID_OIAP)
_PID_DSAP = int(C.TPM_PID_DSAP)
_ET_OWNER = int(C.TPM_ET_OWNER)
_KH_OWNER = int(C.TPM_KH_OWNER)
_AUTHFAIL = int(C.TPM_AUTHFAIL)
_AUTH2FAIL = int(C.TPM_AUTH2FAIL)
# a command's header: tag, paramSize, ordinal (Part 3 3.x, TPM_RQU_COMMAND)
_HEADER = struct.Struct(">HII")
_RC_ORDINAL = struct.Struct(">II")       # returnCode || ordinal, the start of a response digest
_sha1 = hashlib.sha1


class _OrdinalDigests(dict[int, bytes]):
    """ordinal -> SHA-1(ordinal): the parameter digest of an authorized
    command without HMAC'ed parameters (GetCapabilityOwner, OwnerClear, a
    command whose only inputs are handles), the same for every such command
    of an ordinal.  Filled on first use; only registered ordinals get here."""

    def __missing__(self, ordinal: int) -> bytes:
        d = self[ordinal] = _sha1(ordinal.to_bytes(4, "big")).digest()
        return d


_ORDINAL_DIGESTS = _OrdinalDigests()
_RSP_TAG: dict[int, int] = {0: C.TPM_TAG_RSP_COMMAND, 1: C.TPM_TAG_RSP_AUTH1_COMMAND,
            2: C.TPM_TAG_RSP_AUTH2_COMMAND}

# PCR attributes of a PC-client TPM (bit l = locality l may act)
PCR_RESET_LOCALITY = [0] * 16 + [0x1F, 0x10, 0x10, 0x10, 0x14, 0x04, 0x04, 0x1F]
PCR_EXTEND_LOCALITY = [0x1F] * 17 + [0x1C, 0x1C, 0x0C, 0x0E, 0x04, 0x04, 0x1F]


class TPMError(Exception):
    """A command fails with this TPM return code."""

    def __init__(self, rc: int, why: str = "", *, echo_tag: bool = False):
        super().__init__("%s%s" % (C.rc_name(rc), ": " + why if why else ""))
        self.rc = rc
        # answered with the response tag matching the request's (an AUTH1
        # request gets a TPM_TAG_RSP_AUTH1_COMMAND error), as libtpms answers
        # where it stores a response without TPM_Sbuffer_StoreFinalResponse
        self.echo_tag = echo_tag


class TPMStateError(ValueError):
    """A state blob that cannot be loaded."""


# ---------------------------------------------------------------- state pieces

@dataclass
class LoadedKey:
    """A key in a key slot (or the SRK / EK in permanent data)."""
    blob: AnyKey                  # public parts + encData as loaded
    rsa: RSAKey
    usage_auth: bytes = bytes(20)
    migration_auth: bytes = bytes(20)
    payload: int = C.TPM_PT_ASYM  # TPM_PT_MIGRATE_RESTRICTED / _EXTERNAL: a CMK

    @property
    def usage(self) -> int:
        return self.blob.keyUsage


@dataclass
class NVArea:
    pub: TPM_NV_DATA_PUBLIC
    auth: bytes = bytes(20)
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Counter:
    """A monotonic counter (Part 3 25)."""
    label: bytes
    value: int
    auth: bytes


@dataclass
class FamilyRow:
    """A row of the delegation family table (Part 2 20.5 TPM_FAMILY_TABLE_ENTRY)."""
    label: int                    # TPM_FAMILY_LABEL, one byte
    family_id: int
    verification_count: int = 1
    flags: int = 0                # TPM_DELEGATE_ADMIN_LOCK | TPM_FAMFLAG_ENABLED


@dataclass
class DelegateRow:
    """A row of the delegate table (Part 2 20.6 TPM_DELEGATE_TABLE_ROW)."""
    pub: TPM_DELEGATE_PUBLIC
    auth: bytes                   # the delegation's authValue


@dataclass(slots=True)   # (made by every OIAP: slots are cheaper to make and read)
class Session:
    handle: int
    protocol: int                 # TPM_PID_OIAP / TPM_PID_OSAP
    nonce_even: bytes
    entity_type: int = 0
    entity_value: int = 0
    shared_secret: bytes = b""
    delegate: TPM_DELEGATE_PUBLIC | None = None   # DSAP: the delegation it was opened with
    delegate_key: bytes = b""     # DSAP on a key blob: the blob's pubKeyDigest

    @property
    def adip(self) -> int:
        """The ADIP scheme the session was opened with: its entity type's MSB."""
        return self.entity_type >> 8


@dataclass(slots=True)   # (one per authorized command)
class AuthIn:
    """One authorization trailer of a request."""
    handle: int
    nonce_odd: bytes
    cont: int
    auth: bytes
    session: Session | None = None
    mac: HmacSha1 | None = None   # the verified secret, keyed: for the response's HMAC


@dataclass
class PermanentData:
    flags: TPM_PERMANENT_FLAGS = field(default_factory=TPM_PERMANENT_FLAGS)
    tpm_proof: bytes = field(default_factory=lambda: random_bytes(20))
    context_key: bytes = field(default_factory=lambda: random_bytes(16))   # AES-128, context blobs
    owner_auth: bytes | None = None        # None: no owner installed
    operator_auth: bytes | None = None
    ek: RSAKey | None = None
    ek_reset: bytes | None = None          # revocable EK: the reset secret
    srk: LoadedKey | None = None
    nv: dict[int, NVArea] = field(default_factory=dict)
    counters: dict[int, Counter] = field(default_factory=dict)
    counter_floor: int = 0                 # highest value of a released counter
    evict_keys: dict[int, LoadedKey] = field(default_factory=dict)   # owner-evict keys
    audited: set[int] = field(default_factory=set)                     # audited ordinals
    audit_counter: int = 0                 # auditMonotonicCounter
    auth_fail_count: int = 0
    families: dict[int, FamilyRow] = field(default_factory=dict)     # family table row -> entry
    last_family_id: int = 0
    delegates: dict[int, DelegateRow] = field(default_factory=dict)  # delegate table row -> row
    no_owner_nv_write: int = 0             # NV writes without an owner (TPM_MAX_NV_WRITE_NOOWNER)
    # DAA secrets (tpmDAASeed, daaProof, daaBlobKey): made with the EK, kept by OwnerClear
    daa_seed: bytes = field(default_factory=lambda: random_bytes(20))
    daa_proof: bytes = field(default_factory=lambda: random_bytes(20))
    daa_blob_key: bytes = field(default_factory=lambda: random_bytes(16))   # AES-128
    restrict_delegate: int = 0             # TPM_CMK_DELEGATE bits (CMK_SetRestrictions)


def default_nv() -> dict[int, NVArea]:
    """NV at manufacture: the 20-byte DIR area (TPM_NV_INDEX_DIR).  The emulator
    lists it among the NV areas; libtpms keeps it apart (authDIR), reachable
    through the NV commands by its index but not listed (capability.py)."""
    pub = TPM_NV_DATA_PUBLIC(nvIndex=C.TPM_NV_INDEX_DIR,
                             permission=TPM_NV_ATTRIBUTES(C.TPM_NV_PER_OWNERWRITE |
                                                          C.TPM_NV_PER_WRITEALL),
                             dataSize=20)
    return {C.TPM_NV_INDEX_DIR: NVArea(pub, bytes(20), bytearray(20))}


# ---------------------------------------------------------------- per-command context

class Ctx(Reader):
    """What a command handler needs: the request, its auth trailers, the
    response digest parts.  Handlers parse their parameters, then call
    start(), which does the common checks in libtpms's order.

    A Ctx is also the Reader of the request's parameters (data, from
    offset 10 to paramSize): dispatch hands the one object to the handler
    as both `ctx` and `r`, one object per command instead of two."""

    # Slots, not an instance dict: a Ctx is made (and freed) for every
    # command, and a slot is read by a specialized bytecode where a class
    # attribute behind an instance is looked up generically.
    __slots__ = ("tpm", "tag", "ordinal", "locality", "mark_pos", "param_end", "auths",
                 "in_digest", "out_skip", "transport", "extra_tail", "extra_auths", "audit_io")
    mark_pos: int                # start of the HMAC'ed parameters
    param_end: int
    auths: Sequence[AuthIn]
    in_digest: bytes
    out_skip: int                # leading output bytes not in the HMAC (handles)
    transport: TransportSession | None           # the session a wrapped command runs in
    extra_tail: bytes            # a transport session's response trailer (handled
    extra_auths: int             # by commands/transport.py, not by _respond's loop)
    audit_io: tuple[bytes, bytes] | None         # audit digests a command sets

    def __init__(self, tpm: "TPM", tag: int, ordinal: int, locality: int, data: bytes,
                 transport: TransportSession | None = None):
        self.tpm = tpm
        self.tag = tag
        self.ordinal = ordinal
        self.locality = locality
        self.data = data           # bytes, its length paramSize (dispatch checked both)
        self.pos = self.mark_pos = self.param_end = 10
        self.end = len(data)
        self.auths = ()
        self.in_digest = self.extra_tail = b""
        self.out_skip = self.extra_auths = 0
        self.transport = transport
        self.audit_io = None

    def mark(self, r: Reader) -> None:
        """The HMAC'ed parameters start here (after the handles)."""
        self.mark_pos = r.pos

    def start(self, r: Reader, tags: tuple[int, ...] = T0, check: int = CHECK_ALL) -> None:
        """After the parameters: state checks, the tag, the auth trailers,
        leftover bytes -- in libtpms's order (TPM_CheckState,
        TPM_CheckRequestTag*, TPM_AuthParams_Get, then paramSize != 0 is
        TPM_BAD_PARAM_SIZE).  The trailers count only once the whole frame
        parsed: a command that did not parse ends no session."""
        self.param_end = pos = r.pos
        tag = self.tag
        self.tpm.check_state(tag, check)
        if tag not in tags:
            raise TPMError(C.TPM_BADTAG)
        if tag == _RQU:
            if pos != r.end:
                raise TPMError(C.TPM_BAD_PARAM_SIZE)
            return
        rd = r.data
        if tag == _RQU1 and r.end - pos == _TRAILER_SIZE and rd[pos + 24] <= 1:
            # the usual case, one well-formed trailer ending the frame: one unpack
            self.auths = (AuthIn(*_TRAILER.unpack_from(rd, pos)),)
            r.pos = r.end
        else:
            auths = [_auth_trailer(r)] if tag == _RQU1 else [_auth_trailer(r), _auth_trailer(r)]
            if r.pos != r.end:
                raise TPMError(C.TPM_BAD_PARAM_SIZE)
            self.auths = auths
        # SHA-1(ordinal || the HMAC'ed parameters): the request's header
        # without tag and paramSize, then the parameters after the handles
        data = self.data
        mark = self.mark_pos
        if mark == pos:              # no HMAC'ed parameters: SHA-1(ordinal), made once
            self.in_digest = _ORDINAL_DIGESTS[self.ordinal]
            return
        new_sha1 = sha1_for(pos - mark)
        if mark == 10:
            self.in_digest = new_sha1(data[6:pos]).digest()
        else:
            h = new_sha1(data[6:10])
            h.update(data[mark:pos])
            self.in_digest = h.digest()

    @property
    def n_auth(self) -> int:
        return len(self.auths)

    def session(self, i: int) -> Session:
        a = self.auths[i]
        if a.session is None:
            s = self.tpm.sessions.get(a.handle)
            if s is None:
                raise TPMError(C.TPM_INVALID_AUTHHANDLE)
            a.session = s
        return a.session

    def verify(self, i: int, secret: bytes | None, entity_type: int | None = None,
               entity_value: int | None = None, allow_oiap: bool = True,
               allow_osap: bool = True, fail: int | None = None) -> Session:
        """Check the HMAC of trailer i for an entity whose usage secret is
        `secret` (OIAP) or that the OSAP session was opened for.  A failure
        is TPM_AUTHFAIL for the first trailer, TPM_AUTH2FAIL for the second,
        unless `fail` names the code (libtpms picks TPM_Authdata_Check or
        TPM_Auth2data_Check per command, not per position)."""
        a = self.auths[i]
        tpm = self.tpm
        s = a.session
        if s is None:                # (session(i), inline: once per authorized command)
            s = a.session = tpm.sessions.get(a.handle)
            if s is None:
                raise TPMError(C.TPM_INVALID_AUTHHANDLE)
        if fail is None:
            fail = _AUTHFAIL if i == 0 else _AUTH2FAIL
        protocol = s.protocol
        if protocol == _PID_OIAP:
            if not allow_oiap:
                raise TPMError(C.TPM_BAD_MODE)
            key = secret
            if entity_type == _ET_OWNER and tpm.owner_reference != _KH_OWNER:
                # SetOwnerPointer: "the owner" is the delegate row, within its rights
                from .commands.delegate import check_permission, owner_pointer_row
                row = owner_pointer_row(tpm)
                check_permission(tpm, row.pub, self.ordinal, self.locality)
                key = row.auth
        elif protocol == _PID_DSAP:
            if not allow_osap:
                raise TPMError(C.TPM_BAD_MODE)
            # a DSAP session stands for the owner or for one key, and only for
            # the ordinals delegated
            from .commands.delegate import check_permission, dsap_entity_ok
            if s.delegate is None or not dsap_entity_ok(tpm, s, entity_type, entity_value):
                raise TPMError(fail)
            check_permission(tpm, s.delegate, self.ordinal, self.locality)
            if entity_type == C.TPM_ET_KEYHANDLE and entity_value is not None:
                from .commands.cmk import check_restrict_delegate
                check_restrict_delegate(tpm, entity_value)
            key = s.shared_secret
        else:
            if not allow_osap:
                raise TPMError(C.TPM_BAD_MODE)
            if entity_type is not None and not _osap_for(s, entity_type, entity_value):
                # an OSAP session opened for another entity cannot authorize this one
                # (not a guessed secret, so it does not count towards the lockout)
                raise TPMError(fail)
            key = s.shared_secret
        if key is None:
            raise TPMError(fail)
        mac = tpm.macs.keyed(key)
        want = mac.digest(self.in_digest, s.nonce_even, a.nonce_odd, b"\x01" if a.cont else b"\x00")
        if not compare_digest(want, a.auth):
            tpm.auth_failed()
            raise TPMError(fail)
        a.mac = mac
        return s

    def decrypt_auth(self, enc: bytes, i: int = 0, odd: bool = False) -> bytes:
        """ADIP: an encrypted AuthData under OSAP/DSAP session i's shared secret,
        XOR with SHA-1(secret || nonce) or AES-128-CTR keyed by the secret and
        counting from the nonce (authLastNonceEven; nonceOdd for a second one)."""
        s = self.session(i)
        if s.protocol not in (C.TPM_PID_OSAP, C.TPM_PID_DSAP):
            raise TPMError(C.TPM_BAD_MODE)
        nonce = self.auths[i].nonce_odd if odd else s.nonce_even
        if s.adip == C.TPM_ET_XOR:
            return xor(enc, sha1(s.shared_secret, nonce))
        if s.adip == C.TPM_ET_AES128_CTR and not self.tpm.identity.berlios:
            return aes128_ctr(s.shared_secret, nonce, enc)
        raise TPMError(C.TPM_INAPPROPRIATE_ENC)


# Every command makes a Ctx: object.__new__ and a call of __init__ as a
# function, where Ctx(...) would run __init__ through C (type_call ->
# slot_tp_init -> a nested interpreter loop); ~1% of an OIAP pair's instructions
_new = object.__new__
_init_ctx = Ctx.__init__


_TRAILER = struct.Struct(">I20sB20s")     # authHandle, nonceOdd, continueAuthSession, auth
_TRAILER_SIZE = _TRAILER.size


def trailer_fields(r: Reader) -> tuple[int, bytes, int, bytes]:
    """One request authorization trailer's authHandle, nonceOdd,
    continueAuthSession, auth (libtpms TPM_AuthParams_Get): a short one is
    TPM_BAD_PARAM_SIZE, a continueAuthSession other than 0/1
    TPM_BAD_PARAMETER (TPM_LoadBool), as Reader reports them."""
    p = r.pos
    if r.end - p < _TRAILER_SIZE or r.data[p + 24] > 1:
        return r.u32(), r.bytes(20), r.bool(), r.bytes(20)   # raises as libtpms
    r.pos = p + _TRAILER_SIZE
    return _TRAILER.unpack_from(r.data, p)


def _auth_trailer(r: Reader) -> AuthIn:
    return AuthIn(*trailer_fields(r))


def _osap_for(s: Session, et: int, ev: int | None) -> bool:
    """Was OSAP session s opened for entity (et, ev)?"""
    st = s.entity_type & 0xFF
    srk = st == C.TPM_ET_SRK or (st == C.TPM_ET_KEYHANDLE and s.entity_value == C.TPM_KH_SRK)
    if et == C.TPM_ET_SRK or (et == C.TPM_ET_KEYHANDLE and ev == C.TPM_KH_SRK):
        return srk
    if et in (C.TPM_ET_OWNER, C.TPM_ET_OPERATOR):
        return st == et
    if et == C.TPM_ET_KEYHANDLE:
        return st in (C.TPM_ET_KEYHANDLE, C.TPM_ET_KEY) and s.entity_value == ev
    return st == et and (ev is None or s.entity_value == ev)


Handler = Callable[["TPM", Ctx, Reader], bytes]
COMMANDS: dict[int, Handler] = {}


def command(ordinal: int) -> Callable[[Handler], Handler]:
    """Register a handler for an ordinal (pyxl/tpm/commands/*)."""
    def deco(fn: Handler) -> Handler:
        COMMANDS[int(ordinal)] = fn
        return fn
    return deco


# ---------------------------------------------------------------- the TPM

class TPM:
    """One TPM 1.2 (a Xen vTPM by default)."""

    def __init__(self, identity: Identity = XEN_VTPM_IDENTITY, *,
                 key_source: KeySource | None = None, generate_ek: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        _load_commands()
        self.identity = identity
        self.key_source: KeySource = key_source or generate_rsa
        self.clock = clock
        self.perm = PermanentData()
        self.perm.nv = default_nv()
        from .commands.audit import default_audited
        self.perm.audited = default_audited(identity)
        self.perm.flags.nvLocked = identity.nv_locked
        self.perm.flags.readSRKPub = identity.read_srk_pub
        if generate_ek:
            # TPM_CONF_GENERATE_EK: the vTPM makes its EK once, when its state is created
            self.perm.ek = self.key_source(2048)
            if not identity.berlios:
                # as swtpm_setup makes it: TPM_CreateEndorsementKeyPair, not revocable
                self.perm.flags.CEKPUsed = True
                self.perm.flags.enableRevokeEK = False
        self.saved: dict | None = None          # TPM_SaveState snapshot (dumped)
        self._last_dump: bytes | None = None
        self._dirty = True
        self.internal_errors = 0                 # handler bugs turned into TPM_FAIL
        self._lock = threading.RLock()           # one command at a time, as on a chip
        self._power_off()

    # -- power and start-up ------------------------------------------------
    def _power_off(self) -> None:
        """TPM_Init: every volatile thing is gone, the TPM awaits TPM_Startup."""
        self.post_init = True
        self.stclear = TPM_STCLEAR_FLAGS()
        self.pcrs = [bytes(20)] * C.TPM_NUM_PCR
        self.sessions: dict[int, Session] = {}
        self.macs = HmacKeys()          # the keyed HMAC of recently used secrets
        # loaded keys; owner-evict keys stay loaded through every power cycle
        self.keys: dict[int, LoadedKey] = dict(self.perm.evict_keys)
        self.sha1_ctx: hashlib._Hash | None = None
        self.sha1_done = False
        self.disable_reset_lock = False
        self.lockout_since: float | None = None
        self.boot_time = self.clock()
        self.tick_nonce = random_bytes(20)
        self.test_done = False
        self.active_counter: int | None = None
        self.context_nonce_key = random_bytes(20)       # renewed by TPM_Startup(ST_CLEAR)
        self.context_nonce_session = random_bytes(20)   # renewed by every start-up
        self.context_count = 0
        self.saved_sessions: set[int] = set()           # contextCounts of saved sessions
        self.audit_digest = bytes(20)                   # renewed by TPM_Startup(ST_CLEAR)
        self.owner_reference: int = C.TPM_KH_OWNER      # SetOwnerPointer (TPM_STCLEAR_DATA)
        self.transports: dict[int, TransportSession] = {}                    # transHandle -> TransportSession
        self.transport_exclusive = 0                    # handle of the exclusive session
        self.daa_sessions: dict[int, DAASession] = {}   # daaHandle -> commands/daa.DAASession

    def power_on(self, startup: str | None = "clear") -> int:
        """TPM_Init followed by TPM_Startup(startup), as vtpm-stubdom does.
        startup: "clear", "state", "deactivated", or "none"/None (only TPM_Init:
        the client must send TPM_Startup).  Returns TPM_Startup's return code
        (e.g. "state" without a saved state: TPM_FAIL); after a failed one
        the engine behaving as libtpms no longer awaits TPM_Startup, as
        libtpms does not, while the emulator's still does."""
        self._power_off()
        if startup in (None, "none"):
            return 0
        st = {"clear": C.TPM_ST_CLEAR, "state": C.TPM_ST_STATE,
              "deactivated": C.TPM_ST_DEACTIVATED}[startup]
        req = Writer().u16(C.TPM_TAG_RQU_COMMAND).u32(12).u32(C.TPM_ORD_Startup).u16(st).getvalue()
        rc = int.from_bytes(self.execute(req)[6:10], "big")
        if rc:
            log.info("TPM_Startup(%s) failed: %s", startup, C.rc_name(rc))
        elif self.identity.berlios:
            self.test_done = True      # the stub domain runs the self test with start-up
        return rc

    # -- persistent state -----------------------------------------------------
    def dump(self) -> bytes:
        from .state import dump_state
        with self._lock:
            blob = dump_state(self)
        self._last_dump = blob
        self._dirty = False
        return blob

    def dump_if_changed(self) -> bytes | None:
        """dump() when it would differ from the last dump() / load(), else
        None: the state serialized once, where persistent_changed and then
        dump() serialize it twice.  A command that changed nothing leaves
        the TPM clean: no import and no serialization then, on every such
        command of a vTPM."""
        with self._lock:
            if not self._dirty:
                return None
            from .state import dump_state
            blob = dump_state(self)
            self._dirty = False
            if blob == self._last_dump:
                return None
            self._last_dump = blob
            return blob

    @classmethod
    def load(cls, blob: bytes, identity: Identity = XEN_VTPM_IDENTITY, *,
             key_source: KeySource | None = None,
             clock: Callable[[], float] = time.monotonic) -> "TPM":
        """A powered-off TPM with blob's state; call power_on() next."""
        from .state import load_state
        tpm = cls(identity, key_source=key_source, generate_ek=False, clock=clock)
        load_state(tpm, blob)
        tpm._last_dump = bytes(blob)
        tpm._dirty = False
        return tpm

    def revert(self, blob: bytes) -> None:
        """Put the persistent state back to `blob` (an earlier dump() of
        this TPM) when saving what a command changed failed: PCRs, sessions
        and the rest of the volatile state stay; loaded keys are unloaded,
        as after load()."""
        from .state import load_state
        with self._lock:
            load_state(self, blob)
            self._last_dump = bytes(blob)
            self._dirty = False

    @property
    def persistent_changed(self) -> bool:
        """True when dump() would differ from the last dump() / load()."""
        if not self._dirty:
            return False
        from .state import dump_state
        if dump_state(self) == self._last_dump:
            self._dirty = False
            return False
        return True

    def mark_dirty(self) -> None:
        self._dirty = True

    # -- checks shared by commands -------------------------------------------
    @property
    def owned(self) -> bool:
        return self.perm.owner_auth is not None

    def check_state(self, tag: int, check: int) -> None:
        """libtpms TPM_CheckState, in its order."""
        perm = self.perm
        if check & CHECK_NO_LOCKOUT and tag != _RQU:
            # the dictionary-attack lockout; a command that passes it lets
            # ResetLockValue be tried again (disableResetLock, which a failed
            # ResetLockValue during a lockout sets)
            if perm.auth_fail_count > LOCKOUT_THRESHOLD and self.lockout_active():
                raise TPMError(C.TPM_DEFEND_LOCK_RUNNING)
            self.disable_reset_lock = False
        if self.post_init and not check & CHECK_STARTUP:
            raise TPMError(C.TPM_INVALID_POSTINIT)
        if check & (CHECK_ENABLED | CHECK_ACTIVATED) and (perm.flags.disable
                                                          or self.stclear.deactivated):
            nv_free = check & CHECK_NV_NOAUTH and not perm.flags.nvLocked
            if check & CHECK_ENABLED and not nv_free and perm.flags.disable:
                raise TPMError(C.TPM_DISABLED)
            if check & CHECK_ACTIVATED and not nv_free and self.stclear.deactivated:
                raise TPMError(C.TPM_DEACTIVATED)
        if check & CHECK_OWNER and perm.owner_auth is None:
            raise TPMError(C.TPM_NOSRK)

    def lockout_active(self) -> bool:
        n = self.perm.auth_fail_count
        if n <= LOCKOUT_THRESHOLD:
            return False
        if self.lockout_since is None:
            self.lockout_since = self.clock()
        wait = 1 << min(n - LOCKOUT_THRESHOLD - 1, 31)
        return self.clock() - self.lockout_since < wait

    def auth_failed(self) -> None:
        """Count an authorization failure towards the dictionary-attack lockout."""
        self.perm.auth_fail_count += 1
        self.mark_dirty()
        if self.perm.auth_fail_count > LOCKOUT_THRESHOLD:
            self.lockout_since = self.clock()

    def physical_presence(self) -> bool:
        return self.identity.physical_presence or self.stclear.physicalPresence

    def require_presence(self) -> None:
        if not self.physical_presence():
            raise TPMError(C.TPM_BAD_PRESENCE)

    def check_locality(self, mask: int, locality: int) -> bool:
        return 0 <= locality <= 4 and bool(mask & (1 << locality))

    # -- key slots -------------------------------------------------------------
    def reset_keys(self) -> None:
        """Unload every key except the owner-evict ones."""
        self.keys = dict(self.perm.evict_keys)

    def unload_key(self, handle: int) -> None:
        """FlushSpecific / EvictKey of a key handle."""
        if handle in self.perm.evict_keys:
            raise TPMError(C.TPM_KEY_OWNER_CONTROL)
        if handle in (C.TPM_KH_SRK, C.TPM_KH_EK) or self.keys.pop(handle, None) is None:
            raise TPMError(C.TPM_INVALID_KEYHANDLE)

    def key_by_handle(self, handle: int) -> LoadedKey:
        """A loaded key, the SRK or nothing (libtpms TPM_KeyHandleEntries_GetKey:
        the owner, revoke, transport, operator and admin handles are
        TPM_INVALID_RESOURCE; the SRK without an owner and the EK
        TPM_KEYNOTFOUND; any other unknown handle TPM_INVALID_KEYHANDLE)."""
        if C.TPM_KH_OWNER <= handle <= C.TPM_KH_ADMIN:
            raise TPMError(C.TPM_INVALID_RESOURCE)
        if handle == C.TPM_KH_EK:
            raise TPMError(C.TPM_KEYNOTFOUND)
        if handle == C.TPM_KH_SRK:
            if self.perm.srk is None:
                raise TPMError(C.TPM_KEYNOTFOUND)
            return self.perm.srk
        k = self.keys.get(handle)
        if k is None:
            raise TPMError(C.TPM_INVALID_KEYHANDLE)
        return k

    def add_key(self, key: LoadedKey) -> int:
        for slot in range(self.identity.max_keys):
            h = C.TPM_HANDLE_KEY_BASE | slot
            if h not in self.keys:
                self.keys[h] = key
                return h
        raise TPMError(C.TPM_NOSPACE)

    def add_session(self, s: Session) -> Session:
        for slot in range(self.identity.max_sessions):
            h = C.TPM_HANDLE_AUTH_BASE | slot
            if h not in self.sessions:
                s.handle = h
                self.sessions[h] = s
                return s
        raise TPMError(C.TPM_RESOURCES)

    # -- the command entry point ---------------------------------------------
    def execute(self, request: bytes, locality: int = 0) -> bytes:
        """Run one command frame; always returns a response frame."""
        # acquire() and release() rather than `with`: a with statement looks
        # up and binds the lock's __enter__ and __exit__ at every command
        lock = self._lock
        lock.acquire()
        try:
            if not 10 <= len(request) <= MAX_FRAME:
                return _error(C.TPM_BAD_PARAM_SIZE)
            return self.dispatch(request if type(request) is bytes else bytes(request), locality)
        except Exception:  # a handler bug must not take the TPM (or its server) down
            self.internal_errors += 1
            log.exception("TPM engine internal error")
            return _error(C.TPM_FAIL)
        finally:
            lock.release()

    def end_transport(self, handle: int) -> bool:
        """Invalidate a transport session (False if there was none)."""
        if self.transport_exclusive == handle:
            self.transport_exclusive = 0
        return self.transports.pop(handle, None) is not None

    def dispatch(self, req: bytes, locality: int,
                 transport: TransportSession | None = None) -> bytes:
        """Run one command (transport: the session of a wrapped one)."""
        tag, size, ordinal = _HEADER.unpack_from(req)      # len(req) >= 10 (execute)
        if size != len(req):
            return _error(C.TPM_BAD_PARAM_SIZE)
        # preprocessing common to all ordinals (libtpms TPM_Process_Preprocess),
        # looked at only when one of the states it ends is there
        if (self.sha1_ctx is not None or self.saved is not None or not self.test_done
                or (transport is None and self.transport_exclusive)):
            self._preprocess(ordinal, transport)
        handler = COMMANDS.get(ordinal)
        if handler is None:              # libtpms TPM_Process_Unused
            return _error(C.TPM_BAD_ORDINAL, tag)
        ctx = _new(Ctx)        # Ctx(...), spelt out (_init_ctx)
        _init_ctx(ctx, self, tag, ordinal, locality, req, transport)
        try:
            out = handler(self, ctx, ctx)     # the Ctx is the parameters' Reader too
        except TPMError as e:
            self._end_sessions(ctx, e.rc)
            return _error(e.rc, tag if e.echo_tag else C.TPM_TAG_RQU_COMMAND)
        except TPMBadValue as e:         # a value refused while parsing
            self._end_sessions(ctx, e.rc)
            return _error(e.rc)
        except TPMStructError:           # a wrong TPM_STRUCTURE_TAG (libtpms TPM_CheckTag)
            self._end_sessions(ctx, C.TPM_INVALID_STRUCTURE)
            return _error(C.TPM_INVALID_STRUCTURE)
        except TPMDecodeError as e:      # short, oversized, a BOOL not 0/1 (marshal.py)
            self._end_sessions(ctx, e.rc)
            return _error(e.rc)
        if ordinal not in READ_ONLY:
            self._dirty = True
        if ordinal in self.perm.audited:
            from .commands.audit import audit
            audit(self, ctx, out)
            self.mark_dirty()
        if ctx.auths or ctx.extra_tail:
            return self._respond(ctx, out)
        # no session (most commands): the header and out, without a call
        return _HEADER.pack(_RSP_TAG[ctx.extra_auths], 10 + len(out), 0) + out

    def _preprocess(self, ordinal: int, transport: TransportSession | None) -> None:
        """What any command ends (libtpms TPM_Process_Preprocess): a SHA-1
        thread, a saved state, an exclusive transport session, limited
        operation before the self test."""
        if self.sha1_ctx is not None and ordinal not in (
                C.TPM_ORD_SHA1Update, C.TPM_ORD_SHA1Complete, C.TPM_ORD_SHA1CompleteExtend):
            self.sha1_ctx = None
        if self.saved is not None and ordinal not in (C.TPM_ORD_Startup, C.TPM_ORD_Init):
            self.saved = None            # any other command invalidates saved state
            self.mark_dirty()
        if (transport is None and self.transport_exclusive and ordinal not in (
                C.TPM_ORD_ExecuteTransport, C.TPM_ORD_ReleaseTransportSigned)):
            # any other command ends the exclusive transport session
            self.end_transport(self.transport_exclusive)
        if not self.test_done and ordinal not in LIMITED_MODE_ORDINALS:
            self.test_done = True        # libtpms runs the rest of the self test first

    def _end_sessions(self, ctx: Ctx, rc: int) -> None:
        """A failed command ends the sessions it used (not on a running lockout)."""
        if rc == C.TPM_DEFEND_LOCK_RUNNING:
            return
        for a in ctx.auths:
            self.sessions.pop(a.handle, None)

    def _respond(self, ctx: Ctx, out: bytes) -> bytes:
        """The response frame of a command with sessions: header, out, each
        session's trailer, a transport session's trailer -- joined once
        (dispatch answers a command without any itself)."""
        auths = ctx.auths
        tail = ctx.extra_tail
        n = len(auths)
        parts = [_HEADER.pack(_RSP_TAG[n + ctx.extra_auths], 10 + len(out) + 41 * n + len(tail), 0),
                 out]
        if auths:
            # the response's HMACs (libtpms TPM_AuthParams_Set): over
            # SHA-1(returnCode || ordinal || outParams), nonceEven, nonceOdd, continue
            params = _RC_ORDINAL.pack(0, ctx.ordinal) + out[ctx.out_skip:]
            out_digest = sha1_for(len(params))(params).digest()
            sessions = self.sessions
            for a in auths:
                s = a.session
                mac = a.mac
                if s is None or mac is None:
                    # a handler that takes auth must verify every trailer
                    raise RuntimeError("unverified auth session in %s" % C.ord_name(ctx.ordinal))
                even = nonce()
                if a.cont and s.handle in sessions:
                    cont = b"\x01"
                    s.nonce_even = even
                else:
                    cont = b"\x01" if a.cont else b"\x00"
                    sessions.pop(s.handle, None)
                parts += (even, cont, mac.digest(out_digest, even, a.nonce_odd, cont))
        if tail:
            parts.append(tail)
        return b"".join(parts)

    # -- helpers for commands ----------------------------------------------------
    def pcr_composite_hash(self, select: bytes) -> bytes:
        from .structures import TPM_PCR_COMPOSITE, TPM_PCR_SELECTION
        sel = TPM_PCR_SELECTION(select)
        vals = b"".join(self.pcrs[i] for i in sel.indices())
        return sha1(TPM_PCR_COMPOSITE(sel, vals).to_bytes())

    def new_storage_key_blob(self, rsa: RSAKey, usage: int = C.TPM_KEY_STORAGE,
                             key12: bool = False) -> AnyKey:
        parms = TPM_KEY_PARMS(C.TPM_ALG_RSA, C.TPM_ES_RSAESOAEP_SHA1_MGF1, C.TPM_SS_NONE,
                              TPM_RSA_KEY_PARMS(rsa.bits, 2, b"").to_bytes())
        cls = TPM_KEY12 if key12 else TPM_KEY
        return cls(keyUsage=usage, keyFlags=0, authDataUsage=C.TPM_AUTH_ALWAYS,
                   algorithmParms=parms, pubKey=TPM_STORE_PUBKEY(rsa.modulus()))


def _error(rc: int, request_tag: int = C.TPM_TAG_RQU_COMMAND) -> bytes:
    """An error response; its tag is TPM_TAG_RSP_COMMAND unless request_tag
    is an AUTH1/AUTH2 request's (libtpms TPM_Sbuffer_StoreInitialResponse)."""
    return _HEADER.pack(_RSP_TAG[_AUTHS_OF_TAG.get(request_tag, 0)], 10, rc)


# What runs in limited operation mode, before the self test has finished
# (Part 1 "Self-Test"; libtpms TPM_Process_Preprocess); anything else first
# finishes it.  GetCapability decides by capArea (capability.py).
LIMITED_MODE_ORDINALS = frozenset({
    C.TPM_ORD_Startup, C.TPM_ORD_SHA1Start, C.TPM_ORD_SHA1Update, C.TPM_ORD_SHA1Complete,
    C.TPM_ORD_SHA1CompleteExtend, C.TPM_ORD_Extend, C.TPM_ORD_ContinueSelfTest,
    C.TPM_ORD_GetCapability, C.TPM_ORD_SelfTestFull, C.TPM_ORD_GetTestResult,
    C.TSC_ORD_PhysicalPresence, C.TSC_ORD_ResetEstablishmentBit})

# ordinals that never change what dump() writes (fast path for persistent_changed);
# plain ints, as the ordinal every command looks up
READ_ONLY = set(map(int, {C.TPM_ORD_GetCapability, C.TPM_ORD_PcrRead, C.TPM_ORD_GetRandom,
             C.TPM_ORD_OIAP, C.TPM_ORD_OSAP, C.TPM_ORD_GetTestResult,
             C.TPM_ORD_SHA1Start, C.TPM_ORD_SHA1Update, C.TPM_ORD_SHA1Complete,
             C.TPM_ORD_GetTicks, C.TPM_ORD_ReadPubek, C.TPM_ORD_GetPubKey,
             C.TPM_ORD_FlushSpecific, C.TPM_ORD_Terminate_Handle, C.TPM_ORD_StirRandom,
             C.TPM_ORD_Extend, C.TPM_ORD_PCR_Reset, C.TPM_ORD_LoadKey, C.TPM_ORD_LoadKey2,
             C.TPM_ORD_EvictKey, C.TPM_ORD_Sign, C.TPM_ORD_Quote, C.TPM_ORD_UnBind,
             C.TPM_ORD_Seal, C.TPM_ORD_Sealx, C.TPM_ORD_Unseal, C.TPM_ORD_CreateWrapKey,
             C.TPM_ORD_SelfTestFull, C.TPM_ORD_ContinueSelfTest,
             C.TPM_ORD_GetCapabilityOwner, C.TPM_ORD_OwnerReadInternalPub,
             C.TPM_ORD_NV_ReadValue, C.TPM_ORD_NV_ReadValueAuth,
             C.TPM_ORD_SHA1CompleteExtend, C.TPM_ORD_Delegate_ReadTable,
             C.TPM_ORD_Delegate_VerifyDelegation, C.TPM_ORD_DAA_Join, C.TPM_ORD_DAA_Sign,
             # transport sessions are volatile; a wrapped command marks its own changes
             C.TPM_ORD_EstablishTransport, C.TPM_ORD_ExecuteTransport,
             C.TPM_ORD_ReleaseTransportSigned}))


_loaded = False


def _load_commands() -> None:
    global _loaded
    if not _loaded:
        from . import commands  # noqa: F401  (registers every handler)
        _loaded = True
