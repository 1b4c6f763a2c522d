"""pyxl.tpm.bn, OpenSSL's constant-time modular exponentiation through
ctypes: its results against CPython's pow(), and its refusals (an even
modulus, as OpenSSL's BN_mod_exp_mont_consttime refuses it; negative
operands; a library that is missing or is not libcrypto)."""

from __future__ import annotations

import secrets

import pytest

from pyxl.tpm import bn


@pytest.mark.parametrize("bits", [64, 1024, 1632, 2048, 4096])
def test_results_are_pows(bits):
    n = secrets.randbits(bits) | (1 << (bits - 1)) | 1
    for x in (secrets.randbelow(n), n, n + 5, 0, 1, n - 1, secrets.randbits(2 * bits)):
        for y in (secrets.randbits(bits), secrets.randbits(104), 1 << 300, 65537, 2, 1, 0):
            got = bn.mod_exp_consttime(x, y, n)
            assert got == pow(x, y, n) and type(got) is int, (bits, x, y)


@pytest.mark.parametrize("n", [1, 3, 5, 0xFFFFFFFFFFFFFFFF])
def test_small_moduli(n):
    for x in range(0, 12):
        for y in range(0, 12):
            assert bn.mod_exp_consttime(x, y, n) == pow(x, y, n), (x, y, n)


@pytest.mark.parametrize("n", [0, 2, 4, 1 << 2047, (secrets.randbits(2048) | (1 << 2047)) & ~1])
def test_even_modulus_is_refused(n):
    # OpenSSL's reason: BN_R_CALLED_WITH_EVEN_MODULUS
    with pytest.raises(ValueError, match="even modulus"):
        bn.mod_exp_consttime(5, 3, n)


@pytest.mark.parametrize("args", [(-1, 3, 7), (2, -3, 7), (2, 3, -7)])
def test_negative_operands_are_refused(args):
    with pytest.raises(ValueError, match="negative"):
        bn.mod_exp_consttime(*args)


def test_a_refusal_leaves_no_error_behind():
    """OpenSSL's error queue is emptied with the refusal: the next call (and
    anything else in the process using libcrypto) starts clean."""
    with pytest.raises(ValueError):
        bn.mod_exp_consttime(5, 3, 10)
    assert bn.library().lib.ERR_get_error() == 0
    assert bn.mod_exp_consttime(5, 3, 11) == pow(5, 3, 11)


def test_a_missing_library_is_a_clear_error(tmp_path):
    with pytest.raises(bn.BNError, match="cannot load .*nothing.so.*libssl3"):
        bn.Library(str(tmp_path / "nothing.so"))


def test_a_library_that_is_not_libcrypto_is_a_clear_error():
    with pytest.raises(bn.BNError, match="not OpenSSL 3's libcrypto"):
        bn.Library("libc.so.6")
