"""The TPM 2.0 engine: libtpms's TPM 2.0 in this process, state as bytes.

    tpm = TPM2()                       # a new TPM (manufactured at power-on)
    tpm.power_on("clear")              # _TPM_Init + TPM2_Startup(SU_CLEAR)
    rsp = tpm.execute(frame, locality=0)   # never raises
    blob = tpm.dump(); tpm.close(); tpm = TPM2.load(blob)

The same interface as the TPM 1.2 engine (pyxl.tpm.engine.TPM: execute,
dump / load, power_on, persistent_changed), so a caller -- tpm-serve, a
vtpm-stubdom -- need not know the version.  Beyond it: save_state() (what a
platform does before it powers down: TPM2_Shutdown(SU_STATE)), power_off()
and close().

ONE ENGINE PER PROCESS.  libtpms is a process-global singleton (its TPM,
its NV callbacks and its cached state blobs are globals of the library), so
only one TPM2 may be open at a time; opening a second raises TPM2Error until
the first is close()d (dropping the object is not enough: close it).  That
fits Xen's model: one vTPM per vtpm-stubdom, each stub domain its own
process.

NV storage is pyxl's, not files: the tpm_nvram_* callbacks keep libtpms's
blobs (its "permall" NV image, and a "volatilestate" to resume from) in this
object.  libtpms commits its NV image through tpm_nvram_storedata before a
command's response exists (ExecuteCommand calls NvCommit), so after
execute() returns, persistent_changed says whether dump() now differs and
the caller must persist it before it answers.  dump() is one blob:

    MAGIC | u16 format | sections | SHA-256 of everything before it
    section = u8 name length | name | u32 length | data   ("permall", "volatile")

"permall" is libtpms's PERSISTENT_ALL marshalling (seeds, hierarchies, NV
indices, persistent objects, the TPM2_Shutdown(SU_STATE) save area);
"volatile", only in dump(volatile=True), is TPMLIB_VolatileAll_Store's blob
(loaded objects, sessions, PCRs): a TPM loaded from it resumes where it was,
without TPM2_Startup.
"""

from __future__ import annotations

import ctypes
import hashlib
import struct
import threading
from ctypes import byref, c_uint32, c_void_p
from typing import TYPE_CHECKING

from . import libtpms as L

if TYPE_CHECKING:
    from ctypes import _Pointer

MAGIC = b"PYXLTPM20\x00"
FORMAT_VERSION = 1

# TPM 2.0 Part 2 (libtpms src/tpm2/TpmTypes.h)
TPM_ST_NO_SESSIONS = 0x8001
TPM_CC_Startup = 0x144
TPM_CC_Shutdown = 0x145
TPM_SU_CLEAR = 0x0000
TPM_SU_STATE = 0x0001
TPM_RC_FAILURE = 0x101

STARTUPS = {"clear": TPM_SU_CLEAR, "state": TPM_SU_STATE}
PERMALL = "permall"
VOLATILE = "volatile"


class TPM2Error(Exception):
    """libtpms refused to start, or a state blob it cannot take."""


class TPM2StateError(TPM2Error, ValueError):
    """A state blob that cannot be loaded."""


def error_response(rc: int) -> bytes:
    """A 10-byte TPM 2.0 response carrying only rc."""
    return struct.pack(">HII", TPM_ST_NO_SESSIONS, 10, rc)


def command(cc: int, params: bytes = b"") -> bytes:
    """A TPM 2.0 command frame without sessions."""
    return struct.pack(">HII", TPM_ST_NO_SESSIONS, 10 + len(params), cc) + params


# ------------------------------------------------------------- state blob

def pack_state(sections: dict[str, bytes]) -> bytes:
    out = bytearray(MAGIC + struct.pack(">H", FORMAT_VERSION))
    for name in sorted(sections):
        n = name.encode()
        out += struct.pack(">B", len(n)) + n + struct.pack(">I", len(sections[name]))
        out += sections[name]
    return bytes(out + hashlib.sha256(out).digest())


def unpack_state(blob: bytes) -> dict[str, bytes]:
    """The sections of a dump(); TPM2StateError for anything else."""
    if not blob.startswith(MAGIC):
        if blob.startswith(b"PYXLTPM12"):
            raise TPM2StateError("this is a TPM 1.2 state, not a TPM 2.0 one")
        raise TPM2StateError("not a pyxl TPM 2.0 state")
    if len(blob) < len(MAGIC) + 2 + 32 or \
            hashlib.sha256(blob[:-32]).digest() != blob[-32:]:
        raise TPM2StateError("TPM 2.0 state damaged: checksum mismatch")
    body = memoryview(blob)[:-32]
    (fmt,) = struct.unpack_from(">H", body, len(MAGIC))
    if fmt != FORMAT_VERSION:
        raise TPM2StateError("TPM 2.0 state format %d is not supported (this engine reads %d)"
                             % (fmt, FORMAT_VERSION))
    pos = len(MAGIC) + 2
    sections: dict[str, bytes] = {}
    try:
        while pos < len(body):
            n = body[pos]
            name = bytes(body[pos + 1:pos + 1 + n]).decode()
            pos += 1 + n
            (size,) = struct.unpack_from(">I", body, pos)
            pos += 4
            if pos + size > len(body):
                raise ValueError("truncated")
            sections[name] = bytes(body[pos:pos + size])
            pos += size
    except (ValueError, struct.error, UnicodeDecodeError, IndexError):
        raise TPM2StateError("TPM 2.0 state damaged: bad section table") from None
    if PERMALL not in sections:
        raise TPM2StateError("TPM 2.0 state has no permanent state")
    return sections


# ------------------------------------------------------------- the engine

_open_lock = threading.Lock()
_open: "TPM2 | None" = None


class TPM2:
    """One TPM 2.0 (libtpms); see the module doc.  Thread-safe: commands
    run one at a time."""

    version = 2

    def __init__(self, *, _sections: dict[str, bytes] | None = None):
        global _open
        try:
            self.lib = L.library()
        except L.LibtpmsError as e:
            raise TPM2Error(str(e)) from None
        with _open_lock:
            if _open is not None:
                raise TPM2Error("libtpms already holds a TPM in this process "
                                "(one TPM 2.0 per process; close() the other first)")
            _open = self
        self._store: dict[str, bytes] = {}        # libtpms's NV blobs by name
        self._pending = dict(_sections or {})      # blobs to hand over at the next power-on
        self._lock = threading.RLock()
        self._running = False
        self._locality = 0
        self._changed = _sections is None          # a new TPM has not been saved yet
        self._resp = c_void_p()                    # libtpms's response buffer, reused
        self._resp_total = c_uint32(0)
        self._resp_len = c_uint32(0)
        # TPMLIB_Process's out-pointers, as the addresses libtpms.py declares
        self._process_refs = (ctypes.addressof(self._resp), ctypes.addressof(self._resp_len),
                              ctypes.addressof(self._resp_total))
        self._callbacks = self._make_callbacks()   # referenced for as long as libtpms has them
        self.resumed = False                       # last power-on restored a volatile state
        self.closed = False

    # -- construction from a blob ---------------------------------------
    @classmethod
    def load(cls, blob: bytes) -> "TPM2":
        """A powered-off TPM with blob's state; power_on() next.  The blob is
        checked here (its checksum, and by libtpms itself at power-on)."""
        return cls(_sections=unpack_state(bytes(blob)))

    # -- libtpms callbacks ------------------------------------------------
    def _make_callbacks(self) -> L.Callbacks:
        lib = self.lib

        def nvram_init() -> int:
            return L.TPM_SUCCESS

        def loaddata(data: _Pointer[c_void_p], length: _Pointer[c_uint32], tpm_number: int,
                     name: bytes) -> int:
            try:
                blob = self._store.get(name.decode())
                if blob is None:
                    return L.TPM_RETRY
                data[0] = lib.malloc_copy(blob)
                length[0] = len(blob)
                return L.TPM_SUCCESS
            except Exception:
                return L.TPM_FAIL

        def storedata(data: int, length: int, tpm_number: int, name: bytes) -> int:
            try:
                self._store[name.decode()] = ctypes.string_at(data, length)
                self._changed = True
                return L.TPM_SUCCESS
            except Exception:
                return L.TPM_FAIL

        def deletename(tpm_number: int, name: bytes, must_exist: int) -> int:
            if self._store.pop(name.decode(), None) is None and must_exist:
                return L.TPM_FAIL
            return L.TPM_SUCCESS

        def io_init() -> int:
            return L.TPM_SUCCESS

        def getlocality(locality: _Pointer[c_uint32], tpm_number: int) -> int:
            locality[0] = self._locality
            return L.TPM_SUCCESS

        # libtpms asks for the locality before every command; a call back
        # into Python costs a microsecond, so the callback is registered only
        # while the locality is not 0, libtpms's own default (_register)
        self._getlocality = L.IO_GETLOCALITY(getlocality)
        cbs = L.Callbacks()
        cbs.sizeOfStruct = ctypes.sizeof(L.Callbacks)
        cbs.tpm_nvram_init = L.NVRAM_INIT(nvram_init)
        cbs.tpm_nvram_loaddata = L.NVRAM_LOADDATA(loaddata)
        cbs.tpm_nvram_storedata = L.NVRAM_STOREDATA(storedata)
        cbs.tpm_nvram_deletename = L.NVRAM_DELETENAME(deletename)
        cbs.tpm_io_init = L.IO_INIT(io_init)
        return cbs

    def _register(self) -> None:
        """TPMLIB_RegisterCallbacks (libtpms copies the struct)."""
        self._callbacks.tpm_io_getlocality = \
            self._getlocality if self._locality else L.IO_GETLOCALITY()
        self.lib.lib.TPMLIB_RegisterCallbacks(byref(self._callbacks))

    # -- power ---------------------------------------------------------------
    def _init(self) -> None:
        """TPMLIB_MainInit (_TPM_Init): a new TPM is manufactured here."""
        lib = self.lib.lib
        if lib.TPMLIB_ChooseTPMVersion(L.TPMLIB_TPM_VERSION_2):
            raise TPM2Error("libtpms refused TPM 2.0 (TPMLIB_ChooseTPMVersion)")
        self._register()
        # a state handed over stays pending until libtpms has started with it:
        # a power_on() that failed fails again, it never makes a blank TPM
        pending = self._pending
        for name, st in ((PERMALL, L.TPMLIB_STATE_PERMANENT),
                         (VOLATILE, L.TPMLIB_STATE_VOLATILE)):
            if name in pending:
                data = pending[name]
                rc = lib.TPMLIB_SetState(st, data, len(data))
                if rc:                  # (libtpms has dropped every cached blob)
                    raise TPM2StateError("libtpms rejects the %s state (TPMLIB_SetState: "
                                         "0x%x)" % ("permanent" if st == 1 else "volatile", rc))
        rc = lib.TPMLIB_MainInit()
        if rc:
            lib.TPMLIB_Terminate()
            raise TPM2Error("libtpms could not start the TPM (TPMLIB_MainInit: 0x%x)" % rc)
        self._pending = {}
        self._running = True
        self.resumed = VOLATILE in pending

    def power_on(self, startup: str | None = "clear") -> int:
        """_TPM_Init then TPM2_Startup(startup): "clear", "state", or
        "none"/None (the client sends TPM2_Startup).  Returns Startup's
        response code; a TPM loaded with a volatile state is already running
        (no Startup is sent, 0 is returned).  TPM2Error if libtpms cannot start
        (e.g. a permanent state it rejects)."""
        if startup not in (None, "none") and startup not in STARTUPS:
            raise ValueError("TPM 2.0 start-up is clear, state or none, not %r" % startup)
        with self._lock:
            self._check_open()
            if self._running:
                self.power_off()
            self._init()
            if startup in (None, "none") or self.resumed:
                return 0
            rsp = self.execute(command(TPM_CC_Startup, struct.pack(">H", STARTUPS[startup])))
            return int.from_bytes(rsp[6:10], "big")

    def save_state(self) -> int:
        """TPM2_Shutdown(SU_STATE), as a platform sends it before power-down,
        so a later power_on("state") resumes.  Returns its response code."""
        rsp = self.execute(command(TPM_CC_Shutdown, struct.pack(">H", TPM_SU_STATE)))
        return int.from_bytes(rsp[6:10], "big")

    def power_off(self) -> None:
        """TPMLIB_Terminate: volatile state is gone, NV stays in this object."""
        with self._lock:
            if self._running:
                self._running = False
                self.lib.lib.TPMLIB_Terminate()

    def close(self) -> None:
        """Power off and give libtpms back (another TPM2 may open)."""
        global _open
        with self._lock:
            if self.closed:
                return
            self.power_off()
            if self._resp.value:
                self.lib.libc.free(self._resp.value)
                self._resp.value = None
            self.closed = True
            with _open_lock:
                if _open is self:
                    _open = None

    def __enter__(self) -> "TPM2":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise TPM2Error("this TPM 2.0 engine is closed")

    # -- commands -------------------------------------------------------------
    def execute(self, request: bytes, locality: int = 0) -> bytes:
        """Run one command frame at locality; always returns a response frame
        (TPM_RC_FAILURE when powered off, as swtpm answers then)."""
        with self._lock:
            if not self._running or self.closed:
                return error_response(TPM_RC_FAILURE)
            if locality != self._locality:
                self._locality = locality
                self._register()
            req = request if type(request) is bytes else bytes(request)
            rc = self.lib.lib.TPMLIB_Process(*self._process_refs, req, len(req))
            if rc or not self._resp.value:
                return error_response(TPM_RC_FAILURE)
            return ctypes.string_at(self._resp.value, self._resp_len.value)

    # -- persistent state ----------------------------------------------------
    @property
    def persistent_changed(self) -> bool:
        """True when dump() would differ from the last dump() / load()."""
        return self._changed

    def dump_if_changed(self) -> bytes | None:
        """dump() when it would differ from the last dump() / load(), else None."""
        return self.dump() if self._changed else None

    def dump(self, volatile: bool = False) -> bytes:
        """The TPM's state as one blob (module doc); volatile=True adds the
        running TPM's volatile state, to resume without TPM2_Startup."""
        with self._lock:
            self._check_open()
            sections = {}
            perm = self._store.get(L.PERMANENT_ALL_NAME)
            if self._running and perm is None:
                perm = self.lib.get_state(L.TPMLIB_STATE_PERMANENT)
            if perm is None:
                perm = self._pending.get(PERMALL)
            if perm is None:
                raise TPM2Error("a new TPM 2.0 has no state until it is powered on")
            sections[PERMALL] = perm
            if volatile:
                if not self._running:
                    raise TPM2Error("a powered-off TPM has no volatile state")
                vol = self.lib.get_state(L.TPMLIB_STATE_VOLATILE)
                if vol:
                    sections[VOLATILE] = vol
            self._changed = False
            return pack_state(sections)
