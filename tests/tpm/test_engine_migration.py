"""Key migration between two engine instances with their own owners:
AuthorizeMigrationKey -> CreateMigrationBlob (REWRAP and MIGRATE) ->
ConvertMigrationBlob -> LoadKey2 + Sign, the signature checked with
`cryptography`.  The MIGRATE blob is also opened here with the test's own
OAEP decoding (written from PKCS#1 v2.0 9.1.1.2, not the engine's)."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from engine_helpers import (OAEP_TCPA, OWNER, SRK, Session, auth1, auth2, create_wrap_key,
                            key_template, load_key2, new_tpm, take_ownership,
                            u16, u32)
from pyxl.tpm import structures as S

MS_MIGRATE, MS_REWRAP = 1, 2
ORD_CMB, ORD_CONVERT, ORD_AMK, ORD_GETPUB, ORD_SIGN = 0x28, 0x2A, 0x2B, 0x21, 0x3C
ORD_MIGRATEKEY = 0x25
KEY_AUTH = b"k" * 20
MIG_AUTH = bytes(20)          # create_wrap_key's migration secret


def _mgf1(seed, n):
    out = b"".join(hashlib.sha1(seed + struct.pack(">I", i)).digest() for i in range(n // 20 + 1))
    return out[:n]


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def signing_template(migratable=True):
    return key_template(usage=0x0010, es=0x0001, ss=0x0002, flags=2 if migratable else 0)


@pytest.fixture
def pair():
    src, dst = new_tpm(), new_tpm()
    take_ownership(src)
    take_ownership(dst)
    return src, dst


def dest_storage_key(dst, template=None):
    blob = create_wrap_key(dst, template=template)
    handle = load_key2(dst, blob)
    r, pub = auth1(dst, ORD_GETPUB, u32(handle), b"", KEY_AUTH)
    assert r.rc == 0, r
    return handle, pub


def authorize(tpm, pub: bytes, scheme: int) -> bytes:
    r, out = auth1(tpm, ORD_AMK, b"", u16(scheme) + pub, OWNER)
    assert r.rc == 0, r
    return out


def create_blob(tpm, mtype, mka, enc, parent_auth=SRK, mig_auth=MIG_AUTH):
    params = u16(mtype) + mka + u32(len(enc)) + enc
    r, out = auth2(tpm, ORD_CMB, u32(0x40000000), params, Session(tpm), parent_auth,
                   Session(tpm), mig_auth)
    if r.rc:
        return r.rc, b"", b""
    n = struct.unpack(">I", out[:4])[0]
    rnd = out[4:4 + n]
    m = struct.unpack(">I", out[4 + n:8 + n])[0]
    assert len(out) == 8 + n + m
    return 0, rnd, out[8 + n:]


def sign_and_verify(tpm, handle, key: S.TPM_KEY):
    digest = os.urandom(20)
    r, out = auth1(tpm, ORD_SIGN, u32(handle), u32(20) + digest, KEY_AUTH)
    assert r.rc == 0, r
    sig = out[4:]
    pub = rsa.RSAPublicNumbers(65537, int.from_bytes(key.pubKey.key, "big")).public_key()
    pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))


def test_rewrap_round_trip(pair):
    src, dst = pair
    key = S.TPM_KEY.from_bytes(create_wrap_key(src, template=signing_template()))
    parent, pub = dest_storage_key(dst)
    mka = authorize(src, pub, MS_REWRAP)
    rc, rnd, out = create_blob(src, MS_REWRAP, mka, key.encData)
    assert rc == 0 and rnd == b""
    key.encData = out
    handle = load_key2(dst, key.to_bytes(), parent=parent, parent_auth=KEY_AUTH)
    sign_and_verify(dst, handle, key)


def test_migrate_round_trip_through_convert(pair):
    src, dst = pair
    key = S.TPM_KEY.from_bytes(create_wrap_key(src, template=signing_template()))
    parent, pub = dest_storage_key(dst)
    mka = authorize(src, pub, MS_MIGRATE)
    rc, rnd, out = create_blob(src, MS_MIGRATE, mka, key.encData)
    assert rc == 0 and len(rnd) == 198        # o1 of a 2048-bit key
    params = u32(len(out)) + out + u32(len(rnd)) + rnd
    r, conv = auth1(dst, ORD_CONVERT, u32(parent), params, KEY_AUTH)
    assert r.rc == 0, r
    key.encData = conv[4:]
    handle = load_key2(dst, key.to_bytes(), parent=parent, parent_auth=KEY_AUTH)
    sign_and_verify(dst, handle, key)
    # without the random string the blob is useless
    bad = u32(len(out)) + out + u32(len(rnd)) + os.urandom(len(rnd))
    r, _ = auth1(dst, ORD_CONVERT, u32(parent), bad, KEY_AUTH)
    assert r.rc != 0


def test_migrate_blob_opened_independently(pair):
    """Decrypt, XOR and OAEP-decode the blob here: the seed and partPrivKey
    give back a prime of the key's modulus; pHash is the migrationAuth."""
    src, _ = pair
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = priv.public_key().public_numbers().n
    pub = (S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes()).to_bytes()
           + u32(256) + n.to_bytes(256, "big"))
    key = S.TPM_KEY.from_bytes(create_wrap_key(src, template=signing_template()))
    rc, rnd, out = create_blob(src, MS_MIGRATE, authorize(src, pub, MS_MIGRATE), key.encData)
    assert rc == 0
    em = _xor(priv.decrypt(out, OAEP_TCPA), rnd)
    seed = _xor(em[:20], _mgf1(em[20:], 20))
    db = _xor(em[20:], _mgf1(seed, len(em) - 20))
    assert db[:20] == MIG_AUTH
    m = db[20:].lstrip(b"\0")
    assert m[0] == 1
    m = m[1:]
    assert m[0] == 3 and m[1:21] == KEY_AUTH                        # TPM_PT_MIGRATE, usageAuth
    assert m[21:41] == hashlib.sha1(key.public_bytes()).digest()    # pubDataDigest
    part = m[45:45 + struct.unpack(">I", m[41:45])[0]]
    k1k2 = seed + part
    plen = struct.unpack(">I", k1k2[:4])[0]
    p = int.from_bytes(k1k2[4:4 + plen], "big")
    assert p > 1 and int.from_bytes(key.pubKey.key, "big") % p == 0


def test_refusals(pair):
    src, dst = pair
    _, pub = dest_storage_key(dst)
    mka = authorize(src, pub, MS_REWRAP)
    mig = S.TPM_KEY.from_bytes(create_wrap_key(src, template=signing_template()))
    fixed = S.TPM_KEY.from_bytes(create_wrap_key(src, template=signing_template(False)))
    # a non-migratable key's migrationAuth is tpmProof: no caller can authorize it
    assert create_blob(src, MS_REWRAP, mka, fixed.encData)[0] == 0x1D   # TPM_AUTH2FAIL
    # wrong migration secret, wrong parent secret
    assert create_blob(src, MS_REWRAP, mka, mig.encData, mig_auth=b"x" * 20)[0] == 0x1D
    assert create_blob(src, MS_REWRAP, mka, mig.encData, parent_auth=b"x" * 20)[0] == 0x01
    # a migrationKeyAuth digest not made by this TPM's owner
    assert create_blob(src, MS_REWRAP, mka[:-1] + bytes([mka[-1] ^ 1]), mig.encData)[0] == 0x01
    # the other TPM's approval does not count here
    assert create_blob(src, MS_REWRAP, authorize(dst, pub, MS_REWRAP), mig.encData)[0] == 0x01
    # an unknown migration type
    assert create_blob(src, 7, mka, mig.encData)[0] == 0x03              # TPM_BAD_PARAMETER
    # garbage encData
    assert create_blob(src, MS_REWRAP, mka, os.urandom(256))[0] != 0


def test_migrate_through_a_migration_authority(pair):
    """MIGRATE to a TPM_KEY_MIGRATE key; MigrateKey on the authority's TPM
    re-encrypts to the destination storage key; Convert there; sign."""
    src, dst = pair
    key = S.TPM_KEY.from_bytes(create_wrap_key(src, template=signing_template()))
    ma, ma_pub = dest_storage_key(dst, template=key_template(usage=0x0016))
    parent, pub = dest_storage_key(dst)
    rc, rnd, out = create_blob(src, MS_MIGRATE, authorize(src, ma_pub, MS_MIGRATE), key.encData)
    assert rc == 0
    r, moved = auth1(dst, ORD_MIGRATEKEY, u32(ma), pub + u32(len(out)) + out, KEY_AUTH)
    assert r.rc == 0, r
    moved = moved[4:]
    r, conv = auth1(dst, ORD_CONVERT, u32(parent), u32(len(moved)) + moved + u32(len(rnd)) + rnd,
                    KEY_AUTH)
    assert r.rc == 0, r
    key.encData = conv[4:]
    sign_and_verify(dst, load_key2(dst, key.to_bytes(), parent=parent, parent_auth=KEY_AUTH), key)
    # only a TPM_KEY_MIGRATE key may do this, and only with its secret
    r, _ = auth1(dst, ORD_MIGRATEKEY, u32(parent), pub + u32(len(out)) + out, KEY_AUTH)
    assert r.rc == 0x24                                   # TPM_INVALID_KEYUSAGE
    r, _ = auth1(dst, ORD_MIGRATEKEY, u32(ma), pub + u32(len(out)) + out, b"x" * 20)
    assert r.rc == 0x01                                   # TPM_AUTHFAIL
