"""pyxl.tpm.crypto's hand-written HMAC-SHA1 against RFC 2202's test cases
(section 3, "Test Cases for HMAC-SHA-1"), and split into parts as the
engine calls it."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from pyxl.tpm.crypto import HmacKeys, HmacSha1, hmac_sha1, nonce

# (key, data, digest): RFC 2202 section 3, test cases 1-7
RFC2202 = [
    (b"\x0b" * 20, b"Hi There", "b617318655057264e28bc0b6fb378c8ef146be00"),
    (b"Jefe", b"what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
    (b"\xaa" * 20, b"\xdd" * 50, "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
    (bytes(range(1, 26)), b"\xcd" * 50, "4c9007f4026250c6bc8414f9bf50c86c2d7235da"),
    (b"\x0c" * 20, b"Test With Truncation", "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"),
    (b"\xaa" * 80, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "aa4ae5e15272d00e95705637ce8a3b55ed402112"),
    (b"\xaa" * 80, b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
     "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"),
]


@pytest.mark.parametrize("key,data,digest", RFC2202)
def test_hmac_sha1_rfc2202(key, data, digest):
    assert hmac_sha1(key, data).hex() == digest


@pytest.mark.parametrize("key,data,digest", RFC2202)
def test_hmac_sha1_parts_are_concatenated(key, data, digest):
    cut = len(data) // 3
    assert hmac_sha1(key, data[:cut], b"", data[cut:]).hex() == digest


def test_hmac_sha1_every_key_length_as_the_hmac_module():
    # around the 64-byte block: a key is padded up to it, a longer one hashed first
    for n in range(0, 130):
        key = bytes(range(n))
        assert hmac_sha1(key, b"msg") == hmac.new(key, b"msg", hashlib.sha1).digest(), n


@pytest.mark.parametrize("key,data,digest", RFC2202)
def test_keyed_hmac_sha1_rfc2202_and_reusable(key, data, digest):
    # keyed once, used twice (a request's HMAC, then the response's)
    mac = HmacSha1(key)
    cut = len(data) // 2
    assert mac.digest(data).hex() == digest
    assert mac.digest(data[:cut], data[cut:]).hex() == digest
    assert mac.digest(b"msg") == hmac.new(key, b"msg", hashlib.sha1).digest()


def test_nonces_are_fresh_across_pool_refills():
    seen = {nonce() for _ in range(1000)}      # several pages of the pool
    assert len(seen) == 1000 and all(len(n) == 20 for n in seen)


def test_a_forked_child_does_not_repeat_the_parents_nonces():
    nonce()                                      # the parent's pool is filled
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                 # pragma: no cover (child)
        os.close(r)
        os.write(w, b"".join(nonce() for _ in range(10)))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        child = f.read()
    os.waitpid(pid, 0)
    parent = b"".join(nonce() for _ in range(10))
    assert len(child) == 200 and child != parent
    assert not {child[i:i + 20] for i in range(0, 200, 20)} & \
        {parent[i:i + 20] for i in range(0, 200, 20)}



def test_raw_pkcs1_signature_of_a_digestinfo_is_cryptographys():
    """TPM_SS_RSASSAPKCS1v15_DER signs the DER DigestInfo it is given;
    over SHA-1's DigestInfo (RFC 8017 9.2 note 1) that is exactly the
    RSASSA-PKCS1-v1_5 signature cryptography (OpenSSL) makes of the digest
    (the scheme is deterministic)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

    from pyxl.tpm.crypto import RSAKey

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    digest = hashlib.sha1(b"the data").digest()
    want = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
    sha1_digestinfo = bytes.fromhex("3021300906052b0e03021a05000414")
    assert RSAKey.from_crypto(key).sign_raw_pkcs1(sha1_digestinfo + digest) == want


def test_hmac_keys_key_by_identity_and_stay_correct_past_their_limit():
    # the engine's cache of keyed HMACs: the same secret object gives the same
    # keyed HMAC; equal bytes in another object (a changed secret) are keyed
    # anew; past LIMIT secrets it starts over and every digest stays RFC 2104's
    macs = HmacKeys()
    keys = [bytes([i]) * 20 for i in range(HmacKeys.LIMIT * 2 + 1)]
    for key in keys + keys:
        assert macs.keyed(key).digest(b"msg") == hmac.new(key, b"msg", hashlib.sha1).digest()
    owner = bytes(range(20))
    assert macs.keyed(owner) is macs.keyed(owner)
    same_bytes = bytes(bytearray(owner))
    assert same_bytes == owner and same_bytes is not owner
    assert macs.keyed(same_bytes) is not macs.keyed(owner)
    assert macs.keyed(same_bytes).digest(b"x") == macs.keyed(owner).digest(b"x")
