"""libxlu itself, in-process: Xen 4.17's libxlutil.so.4.17 through ctypes.

    from oracle.libxlu import libxlu
    rc, lines = libxlu().parse(b'x = ]\\n', "t.cfg")   # xlu_cfg_readdata

The same parser xl runs, without a process per config (~20 us a parse), so
tests can compare pyxl with it on tens of thousands of inputs.  Only the
config language: no xl_parse.c semantics, no JSON (use oracle.xl for those).
libxlu() calls need_peer("xl") when the library is missing."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

LIBRARY = "libxlutil.so.4.17"


class LibXlu:
    def __init__(self):
        self.lib = lib = ctypes.CDLL(LIBRARY)
        self.libc = libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.tmpfile.restype = ctypes.c_void_p
        libc.fflush.argtypes = [ctypes.c_void_p]
        libc.rewind.argtypes = [ctypes.c_void_p]
        libc.ftell.argtypes = [ctypes.c_void_p]
        libc.ftell.restype = ctypes.c_long
        libc.fread.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                               ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        lib.xlu_cfg_init.restype = ctypes.c_void_p
        lib.xlu_cfg_init.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.xlu_cfg_readdata.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.xlu_cfg_destroy.argtypes = [ctypes.c_void_p]

    def parse(self, data: bytes, path: str = "t.cfg") -> tuple[int, list[str]]:
        """(xlu_cfg_readdata's errno result, the lines it reported).  Inputs
        that make libxlu assert (a NUL inside a quoted string) would abort
        this process: callers must not pass them."""
        libc, lib = self.libc, self.lib
        report = libc.tmpfile()
        cfg = lib.xlu_cfg_init(report, path.encode("utf-8", "surrogateescape"))
        rc = lib.xlu_cfg_readdata(cfg, data, len(data))
        lib.xlu_cfg_destroy(cfg)
        libc.fflush(report)
        size = libc.ftell(report)
        libc.rewind(report)
        buf = ctypes.create_string_buffer(size)
        libc.fread(buf, 1, size, report)
        libc.fclose(report)
        text = buf.raw[:size].decode("utf-8", "surrogateescape")
        return rc, text.split("\n")[:-1]


@functools.lru_cache(maxsize=None)
def _load() -> LibXlu | None:
    try:
        return LibXlu()
    except OSError:
        return None


def libxlu() -> LibXlu:
    lib = _load()
    if lib is None:
        from peers import need_peer
        need_peer("xl")
        raise RuntimeError(f"{LIBRARY} not loadable")  # need_peer skipped/failed
    return lib
