"""libtpms (libtpms.so.0, the library inside swtpm) through ctypes.

Only what a TPM 2.0 engine needs of include/libtpms/tpm_library.h (libtpms
0.9): TPMLIB_ChooseTPMVersion, TPMLIB_RegisterCallbacks, TPMLIB_MainInit,
TPMLIB_Process, TPMLIB_Terminate, TPMLIB_GetState / TPMLIB_SetState, and the
struct libtpms_callbacks layout.

libtpms is a process-global singleton: one TPM per process, whatever the
number of Python objects.  Library() is therefore loaded once per process
(library()), and the engine (engine.py) allows one open TPM at a time.

Memory ownership follows libtpms: the response buffer of TPMLIB_Process is
malloc'd (and realloc'd) by the library and kept by the caller across calls;
the buffers TPMLIB_GetState returns, and the ones the tpm_nvram_loaddata
callback hands back, are freed with free() -- so the callback allocates them
with the C library's malloc().
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_int, c_ubyte, c_uint32,
                    c_void_p)

SONAME = "libtpms.so.0"

# include/libtpms/tpm_library.h
TPMLIB_TPM_VERSION_2 = 1            # enum TPMLIB_TPMVersion: 1.2 is 0
TPMLIB_STATE_PERMANENT = 1 << 0     # enum TPMLIB_StateType
TPMLIB_STATE_VOLATILE = 1 << 1
# include/libtpms/tpm_nvfilename.h: the names the NV callbacks see
PERMANENT_ALL_NAME = "permall"
VOLATILESTATE_NAME = "volatilestate"
# include/libtpms/tpm_error.h (TPM 1.2 codes; the callbacks speak them)
TPM_SUCCESS = 0
TPM_FAIL = 9
TPM_RETRY = 0x800                   # loaddata: "no such blob yet" (a new TPM)

TPM_RESULT = c_uint32
NVRAM_INIT = CFUNCTYPE(TPM_RESULT)
NVRAM_LOADDATA = CFUNCTYPE(TPM_RESULT, POINTER(c_void_p), POINTER(c_uint32), c_uint32, c_char_p)
NVRAM_STOREDATA = CFUNCTYPE(TPM_RESULT, c_void_p, c_uint32, c_uint32, c_char_p)
NVRAM_DELETENAME = CFUNCTYPE(TPM_RESULT, c_uint32, c_char_p, c_ubyte)
IO_INIT = CFUNCTYPE(TPM_RESULT)
IO_GETLOCALITY = CFUNCTYPE(TPM_RESULT, POINTER(c_uint32), c_uint32)
IO_GETPHYSICALPRESENCE = CFUNCTYPE(TPM_RESULT, POINTER(c_ubyte), c_uint32)


class Callbacks(Structure):
    """struct libtpms_callbacks."""
    _fields_ = [
        ("sizeOfStruct", c_int),
        ("tpm_nvram_init", NVRAM_INIT),
        ("tpm_nvram_loaddata", NVRAM_LOADDATA),
        ("tpm_nvram_storedata", NVRAM_STOREDATA),
        ("tpm_nvram_deletename", NVRAM_DELETENAME),
        ("tpm_io_init", IO_INIT),
        ("tpm_io_getlocality", IO_GETLOCALITY),
        ("tpm_io_getphysicalpresence", IO_GETPHYSICALPRESENCE),
    ]


class LibtpmsError(Exception):
    """libtpms is missing or refused a library call."""


class Library:
    """The loaded shared object with typed entry points."""

    def __init__(self, path: str | None = None):
        try:
            self.lib = ctypes.CDLL(path or SONAME)
        except OSError as e:
            raise LibtpmsError("cannot load %s: %s (Debian package libtpms0)"
                               % (path or SONAME, e)) from None
        self.libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        self.libc.malloc.restype = c_void_p
        self.libc.malloc.argtypes = [ctypes.c_size_t]
        self.libc.free.restype = None
        self.libc.free.argtypes = [c_void_p]
        lib = self.lib
        for name, args in (
                ("TPMLIB_ChooseTPMVersion", [c_int]),
                ("TPMLIB_RegisterCallbacks", [POINTER(Callbacks)]),
                ("TPMLIB_MainInit", []),
                # the three out-pointers as addresses (TPM2.execute passes its
                # buffers' ctypes.addressof): a c_void_p takes an int as it is,
                # where a POINTER argument checks each object's type per call
                ("TPMLIB_Process", [c_void_p, c_void_p, c_void_p, c_char_p, c_uint32]),
                ("TPMLIB_SetState", [c_int, c_char_p, c_uint32]),
                ("TPMLIB_GetState", [c_int, POINTER(c_void_p), POINTER(c_uint32)])):
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = c_uint32
        lib.TPMLIB_Terminate.argtypes = []
        lib.TPMLIB_Terminate.restype = None

    def malloc_copy(self, data: bytes) -> int:
        """A malloc()'d copy of data (for libtpms to free())."""
        p = self.libc.malloc(max(1, len(data)))
        if not p:
            raise MemoryError("malloc(%d) failed" % len(data))
        ctypes.memmove(p, data, len(data))
        return p

    def take(self, ptr: c_void_p, length: int) -> bytes:
        """Copy out and free() a buffer the library allocated for us."""
        if not ptr.value:
            return b""
        try:
            return ctypes.string_at(ptr.value, length)
        finally:
            self.libc.free(ptr.value)

    def get_state(self, st: int) -> bytes | None:
        """TPMLIB_GetState: the state blob of type st (None if there is none)."""
        buf = c_void_p()
        n = c_uint32()
        rc = self.lib.TPMLIB_GetState(st, byref(buf), byref(n))
        if rc:
            if buf.value:
                self.libc.free(buf.value)
            raise LibtpmsError("TPMLIB_GetState(%d) failed: 0x%x" % (st, rc))
        if not buf.value:
            return None
        return self.take(buf, n.value)


_LIBRARY: Library | None = None


def library() -> Library:
    """The process's one libtpms (loaded on first use)."""
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = Library()
    return _LIBRARY
