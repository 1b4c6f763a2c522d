"""Modular exponentiation with OpenSSL's BIGNUM (libcrypto.so.3) through ctypes.

libtpms computes the TPM 1.2 engine's big-number powers with OpenSSL's BN:
TPM_BN_mod_exp (src/tpm12/tpm_crypto.c) sets BN_FLG_CONSTTIME on the
exponent ("p may be private") and calls BN_mod_exp, which for an odd
modulus and that flag runs BN_mod_exp_mont_consttime (crypto/bn/bn_exp.c:
fixed windows, a table read by a masked gather, the same operations
whatever the exponent's bits) and for an even one fails
(BN_R_CALLED_WITH_EVEN_MODULUS).  mod_exp() here calls that same function
of the system's libcrypto (Debian 12's libssl3, in every base install), so
the engine's secret exponents take the time libtpms's take, and no more.

Only what that needs of <openssl/bn.h>: BN_new, BN_bin2bn, BN_bn2binpad,
BN_set_flags, BN_mod_exp_mont_consttime, BN_clear_free, BN_CTX_new,
BN_CTX_free, and ERR_get_error / ERR_error_string_n / ERR_clear_error for
the reason of a refusal.  Every BIGNUM is freed with BN_clear_free (the
exponent is a secret).  The library is loaded at the first exponentiation:
most TPM processes never run one.
"""

from __future__ import annotations

import ctypes
from ctypes import c_char_p, c_int, c_ulong, c_void_p

SONAME = "libcrypto.so.3"
BN_FLG_CONSTTIME = 0x04          # include/openssl/bn.h


class BNError(Exception):
    """libcrypto is missing or lacks a function this binding needs."""


class Library:
    """libcrypto with typed entry points."""

    def __init__(self, path: str):
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            raise BNError("cannot load %s: %s (Debian package libssl3)" % (path, e)) from None
        try:
            for name, res, args in (
                    ("BN_new", c_void_p, []),
                    ("BN_bin2bn", c_void_p, [c_char_p, c_int, c_void_p]),
                    ("BN_bn2binpad", c_int, [c_void_p, c_char_p, c_int]),
                    ("BN_set_flags", None, [c_void_p, c_int]),
                    ("BN_mod_exp_mont_consttime", c_int,
                     [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]),
                    ("BN_clear_free", None, [c_void_p]),
                    ("BN_CTX_new", c_void_p, []),
                    ("BN_CTX_free", None, [c_void_p]),
                    ("ERR_get_error", c_ulong, []),
                    ("ERR_error_string_n", None, [c_ulong, c_char_p, ctypes.c_size_t]),
                    ("ERR_clear_error", None, [])):
                fn = getattr(lib, name)
                fn.restype = res
                fn.argtypes = args
        except AttributeError as e:
            raise BNError("%s is not OpenSSL 3's libcrypto: %s" % (path, e)) from None
        self.lib = lib

    def bignum(self, v: int) -> int:
        """A new BIGNUM holding v >= 0 (BN_bin2bn)."""
        b = v.to_bytes((v.bit_length() + 7) // 8, "big")
        p: int | None = self.lib.BN_bin2bn(b, len(b), None)
        if not p:
            raise MemoryError("BN_bin2bn")
        return p

    def error(self) -> str:
        """The reason of the last failure (OpenSSL's error queue, then emptied)."""
        code = self.lib.ERR_get_error()
        buf = ctypes.create_string_buffer(256)
        self.lib.ERR_error_string_n(code, buf, len(buf))
        self.lib.ERR_clear_error()
        return buf.value.decode(errors="replace")


_LIBRARY: Library | None = None


def library() -> Library:
    """The process's libcrypto (loaded on first use; BNError if it cannot be)."""
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = Library(SONAME)
    return _LIBRARY


def mod_exp_consttime(base: int, exp: int, mod: int) -> int:
    """base^exp mod mod, in time independent of exp's bits (for its number
    of 64-bit words): BN_mod_exp_mont_consttime, with BN_FLG_CONSTTIME set on
    exp as TPM_BN_mod_exp sets it.  base, exp >= 0; mod odd (OpenSSL's
    constant-time routine refuses an even one): ValueError otherwise, with
    OpenSSL's reason."""
    if base < 0 or exp < 0 or mod < 0:
        raise ValueError("modular exponentiation of a negative number")
    lib = library()
    c = lib.lib
    ctx = c.BN_CTX_new()
    if not ctx:
        raise MemoryError("BN_CTX_new")
    bns: list[int] = []
    try:
        for v in (base, exp, mod):
            bns.append(lib.bignum(v))
        a, p, m = bns
        r = c.BN_new()
        if not r:
            raise MemoryError("BN_new")
        bns.append(r)
        c.BN_set_flags(p, BN_FLG_CONSTTIME)
        if c.BN_mod_exp_mont_consttime(r, a, p, m, ctx, None) != 1:
            raise ValueError("BN_mod_exp_mont_consttime: %s" % lib.error())
        size = (mod.bit_length() + 7) // 8
        out = ctypes.create_string_buffer(size)
        if c.BN_bn2binpad(r, out, size) != size:
            raise ValueError("BN_bn2binpad: %s" % lib.error())
        return int.from_bytes(out.raw, "big")
    finally:
        for bn in bns:
            c.BN_clear_free(bn)
        c.BN_CTX_free(ctx)
