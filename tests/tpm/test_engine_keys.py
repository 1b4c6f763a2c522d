"""Keys and protected storage with real crypto checks: wrap/load, seal/unseal
bound to PCRs, unbind, sign and quote verified with `cryptography`."""

import os
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

from engine_helpers import (OAEP_TCPA, SRK, Session, auth1, cap_value, create_wrap_key,
                            key_template, load_key2, new_tpm, parse_pubkey, run, sha1,
                            take_ownership, u32)

from pyxl.tpm import constants as C
from pyxl.tpm import structures as S
from pyxl.tpm.marshal import Reader

RC = C.TPM_RESULT
KEYAUTH = b"k" * 20
DATAAUTH = b"d" * 20


@pytest.fixture(scope="module")
def owned():
    t = new_tpm()
    take_ownership(t)
    return t


@pytest.fixture(scope="module")
def storage_key(owned):
    blob = create_wrap_key(owned)
    return blob


def seal(tpm, handle, data, pcr_info=b"", key_auth=KEYAUTH, entity=None):
    s = Session(tpm, "osap", 0x0001, handle, key_auth)
    params = s.enc_auth(DATAAUTH) + u32(len(pcr_info)) + pcr_info + u32(len(data)) + data
    tr = s.trailer(0x17, params)
    r = run(tpm, 0xC2, 0x17, u32(handle) + params + tr)
    if r.rc:
        return r, None
    out = r.body[:-41]
    s.check_response(0x17, r, out, r.body[-41:])
    return r, out


def unseal(tpm, handle, blob, key_auth=KEYAUTH, data_auth=DATAAUTH):
    s1 = Session(tpm, "osap", 0x0001, handle, key_auth)
    s2 = Session(tpm)
    t1 = s1.trailer(0x18, blob)
    t2 = s2.trailer(0x18, blob, data_auth)
    r = run(tpm, 0xC3, 0x18, u32(handle) + blob + t1 + t2)
    if r.rc:
        return r, None
    assert r.tag == 0xC6
    out = r.body[:-82]
    s1.check_response(0x18, r, out, r.body[-82:-41])
    s2.check_response(0x18, r, out, r.body[-41:])
    n = struct.unpack(">I", out[:4])[0]
    return r, out[4:4 + n]


def test_wrapped_key_blob_is_encrypted_to_the_srk(owned, storage_key):
    key = S.TPM_KEY.from_bytes(storage_key)
    assert key.keyUsage == 0x11 and len(key.pubKey.key) == 256
    asym = S.TPM_STORE_ASYMKEY.from_bytes(owned.perm.srk.rsa.decrypt_oaep(key.encData))
    assert asym.usageAuth == KEYAUTH
    assert asym.migrationAuth == owned.perm.tpm_proof        # non-migratable
    assert asym.pubDataDigest == sha1(key.public_bytes())
    p = int.from_bytes(asym.privKey, "big")
    assert int.from_bytes(key.pubKey.key, "big") % p == 0


def test_check_loaded_and_key_handles(owned, storage_key):
    parms = struct.pack(">IHHI", 1, 3, 1, 12) + struct.pack(">III", 2048, 2, 0)
    assert cap_value(owned, 8, parms) == b"\x01"
    h = load_key2(owned, storage_key)
    lst = cap_value(owned, 7)
    count = struct.unpack(">H", lst[:2])[0]
    assert h in struct.unpack(">%dI" % count, lst[2:])
    r = run(owned, 0xC1, 0xBA, u32(h) + u32(1))
    assert r.rc == 0


def test_loadkey2_wrong_parent_auth(owned, storage_key):
    r, _ = auth1(owned, 0x41, u32(0x40000000), storage_key, b"wrong".ljust(20, b"\0"))
    assert r.rc == RC.TPM_AUTHFAIL
    # a corrupted blob does not decrypt
    bad = bytearray(storage_key)
    bad[-5] ^= 0xFF
    r, _ = auth1(owned, 0x41, u32(0x40000000), bytes(bad), SRK)
    assert r.rc == RC.TPM_DECRYPT_ERROR


def test_seal_unseal_round_trip(owned, storage_key):
    h = load_key2(owned, storage_key)
    r, blob = seal(owned, h, b"secret data")
    assert r.rc == 0
    r, data = unseal(owned, h, blob)
    assert r.rc == 0 and data == b"secret data"
    # wrong data auth
    r, _ = unseal(owned, h, blob, data_auth=bytes(20))
    assert r.rc == RC.TPM_AUTH2FAIL
    # a blob changed after sealing
    sd = S.TPM_STORED_DATA.from_bytes(blob)
    sd.sealInfo = S.TPM_PCR_INFO(S.TPM_PCR_SELECTION.of([1])).to_bytes()
    r, _ = unseal(owned, h, sd.to_bytes())
    assert r.rc == RC.TPM_NOTSEALED_BLOB
    run(owned, 0xC1, 0xBA, u32(h) + u32(1))


@pytest.mark.parametrize("long", [False, True])
def test_seal_bound_to_pcrs_fails_after_extend(owned, storage_key, long):
    h = load_key2(owned, storage_key)
    pcr = 11
    cur = run(owned, 0xC1, 0x15, u32(pcr)).body
    sel = S.TPM_PCR_SELECTION.of([pcr])
    release = sha1(S.TPM_PCR_COMPOSITE(sel, cur).to_bytes())
    if long:
        info = S.TPM_PCR_INFO_LONG(1, 0x1F, sel, sel, bytes(20), release).to_bytes()
    else:
        info = S.TPM_PCR_INFO(sel, release, bytes(20)).to_bytes()
    r, blob = seal(owned, h, b"pcr bound")
    r, blob = seal(owned, h, b"pcr bound", pcr_info=info)
    assert r.rc == 0
    stored = (S.TPM_STORED_DATA12 if long else S.TPM_STORED_DATA).from_bytes(blob)
    if long:
        creation = S.TPM_PCR_INFO_LONG.from_bytes(stored.sealInfo)
        assert creation.digestAtCreation == release and creation.localityAtCreation == 1
    assert unseal(owned, h, blob)[1] == b"pcr bound"
    run(owned, 0xC1, 0x14, u32(pcr) + os.urandom(20))
    r, _ = unseal(owned, h, blob)
    assert r.rc == RC.TPM_WRONGPCRVAL
    run(owned, 0xC1, 0xBA, u32(h) + u32(1))


def test_sign_and_verify(owned, storage_key):
    parent = load_key2(owned, storage_key)
    blob = create_wrap_key(owned, parent, KEYAUTH, b"s" * 20,
                           key_template(usage=0x10, es=1, ss=2), entity=(1, parent))
    h = load_key2(owned, blob, parent, KEYAUTH)
    r, pub = auth1(owned, 0x21, u32(h), b"", b"s" * 20)
    assert r.rc == 0
    pubkey, _ = parse_pubkey(pub)
    digest = sha1(b"message")
    r, out = auth1(owned, 0x3C, u32(h), u32(20) + digest, b"s" * 20)
    assert r.rc == 0
    sig = out[4:]
    pubkey.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
    r, _ = auth1(owned, 0x3C, u32(h), u32(5) + b"short", b"s" * 20)
    assert r.rc == RC.TPM_BAD_PARAMETER
    # Quote over PCRs 0 and 10, checked against the TPM_QUOTE_INFO built here
    nonce = os.urandom(20)
    sel = S.TPM_PCR_SELECTION.of([0, 10])
    r, out = auth1(owned, 0x16, u32(h), nonce + sel.to_bytes(), b"s" * 20)
    assert r.rc == 0
    comp = S.TPM_PCR_COMPOSITE.unmarshal(Reader(out))
    comp_bytes = comp.to_bytes()
    pcrs = run(owned, 0xC1, 0x15, u32(0)).body + run(owned, 0xC1, 0x15, u32(10)).body
    assert comp.pcrValue == pcrs
    sig = out[len(comp_bytes) + 4:]
    qi = bytes([1, 1, 0, 0]) + b"QUOT" + sha1(comp_bytes) + nonce
    pubkey.verify(sig, qi, padding.PKCS1v15(), hashes.SHA1())
    # a storage key cannot sign
    r, _ = auth1(owned, 0x3C, u32(parent), u32(20) + digest, KEYAUTH)
    assert r.rc == RC.TPM_INVALID_KEYUSAGE
    for k in (h, parent):
        assert run(owned, 0xC1, 0x22, u32(k)).rc == 0                 # EvictKey
    assert run(owned, 0xC1, 0x22, u32(h)).rc == RC.TPM_INVALID_KEYHANDLE


def test_unbind(owned, storage_key):
    parent = load_key2(owned, storage_key)
    blob = create_wrap_key(owned, parent, KEYAUTH, b"b" * 20,
                           key_template(usage=0x14, es=3, ss=1), entity=(1, parent))
    h = load_key2(owned, blob, parent, KEYAUTH)
    pubkey, _ = parse_pubkey(auth1(owned, 0x21, u32(h), b"", b"b" * 20)[1])
    enc = pubkey.encrypt(bytes([1, 1, 0, 0, 2]) + b"bound secret", OAEP_TCPA)
    r, out = auth1(owned, 0x1E, u32(h), u32(len(enc)) + enc, b"b" * 20)
    assert r.rc == 0 and out[4:] == b"bound secret"
    enc = pubkey.encrypt(b"not a TPM_BOUND_DATA", OAEP_TCPA)
    r, out = auth1(owned, 0x1E, u32(h), u32(len(enc)) + enc, b"b" * 20)
    assert r.rc == RC.TPM_INVALID_STRUCTURE
    r, out = auth1(owned, 0x1E, u32(h), u32(256) + bytes(256), b"b" * 20)
    assert r.rc == RC.TPM_DECRYPT_ERROR
    run(owned, 0xC1, 0x22, u32(h))
    run(owned, 0xC1, 0x22, u32(parent))


def test_key_slots_and_loadkey_1_1(owned, storage_key):
    # TPM_LoadKey (1.1) puts the handle under the response HMAC
    r, out = auth1(owned, 0x20, u32(0x40000000), storage_key, SRK, out_skip=0)
    assert r.rc == 0
    handles = [struct.unpack(">I", out)[0]]
    for _ in range(9):
        handles.append(load_key2(owned, storage_key))
    assert cap_value(owned, 5, u32(0x104)) == u32(0)
    r, _ = auth1(owned, 0x41, u32(0x40000000), storage_key, SRK)
    assert r.rc == RC.TPM_NOSPACE
    for h in handles:
        assert run(owned, 0xC1, 0xBA, u32(h) + u32(1)).rc == 0


def test_bad_key_templates(owned):
    for tmpl, rc in [
        (key_template(usage=0x12), RC.TPM_INVALID_KEYUSAGE),    # identities: MakeIdentity
        (key_template(usage=0x11, es=2), RC.TPM_INAPPROPRIATE_ENC),
        (key_template(usage=0x10, es=1, ss=1), RC.TPM_INAPPROPRIATE_SIG),
        (key_template(bits=4096), RC.TPM_BAD_KEY_PROPERTY),
    ]:
        s = Session(owned, "osap", 4, 0x40000000, SRK)
        params = s.enc_auth(KEYAUTH) + bytes(20) + tmpl.to_bytes()
        r = run(owned, 0xC2, 0x1F, u32(0x40000000) + params + s.trailer(0x1F, params))
        assert r.rc == rc


def test_owner_evict_keys_stay_loaded(owned, storage_key):
    from pyxl.tpm import TPM
    from engine_helpers import key_pool
    h = load_key2(owned, storage_key)
    pub = S.TPM_KEY.from_bytes(storage_key).pubkey().to_bytes()
    assert auth1(owned, 0x23, u32(h), pub + u32(1) + b"\x01", b"O" * 20)[0].rc == 0
    assert cap_value(owned, 0x0C, u32(h)) == b"\x01"
    assert run(owned, 0xC1, 0xBA, u32(h) + u32(1)).rc == RC.TPM_KEY_OWNER_CONTROL
    owned.power_on("clear")
    assert cap_value(owned, 0x0C, u32(h)) == b"\x01"
    t2 = TPM.load(owned.dump(), key_source=key_pool())
    t2.power_on()
    r, blob = seal(t2, h, b"still here")
    assert r.rc == 0 and unseal(t2, h, blob)[1] == b"still here"
    # a wrong public key, an unknown bit
    assert auth1(owned, 0x23, u32(h), pub[:-1] + b"\0" + u32(1) + b"\x01", b"O" * 20)[0].rc == \
        RC.TPM_BAD_PARAMETER
    assert auth1(owned, 0x23, u32(h), pub + u32(2) + b"\x01", b"O" * 20)[0].rc == RC.TPM_BAD_MODE
    assert auth1(owned, 0x23, u32(h), pub + u32(1) + b"\x00", b"O" * 20)[0].rc == 0
    assert cap_value(owned, 0x0C, u32(h)) == b"\x00"
    assert run(owned, 0xC1, 0xBA, u32(h) + u32(1)).rc == 0


def test_sign_info_scheme_covers_the_nonce(owned, storage_key):
    parent = load_key2(owned, storage_key)
    blob = create_wrap_key(owned, parent, KEYAUTH, b"s" * 20,
                           key_template(usage=0x10, es=1, ss=4), entity=(1, parent))
    h = load_key2(owned, blob, parent, KEYAUTH)
    pubkey, _ = parse_pubkey(S.TPM_KEY.from_bytes(blob).pubkey().to_bytes())
    s = Session(owned)
    area = b"any data at all"
    params = u32(len(area)) + area
    tr = s.trailer(0x3C, params, b"s" * 20)
    r = run(owned, 0xC2, 0x3C, u32(h) + params + tr)
    assert r.rc == 0
    sig = r.body[4:-41]
    info = b"\x00\x05" + b"SIGN" + s.nonce_odd + u32(len(area)) + area
    pubkey.verify(sig, info, padding.PKCS1v15(), hashes.SHA1())
    for k in (h, parent):
        run(owned, 0xC1, 0xBA, u32(k) + u32(1))


def test_sign_der_scheme_is_standard_pkcs1(owned, storage_key):
    parent = load_key2(owned, storage_key)
    blob = create_wrap_key(owned, parent, KEYAUTH, b"s" * 20,
                           key_template(usage=0x10, es=1, ss=3), entity=(1, parent))
    h = load_key2(owned, blob, parent, KEYAUTH)
    pubkey, _ = parse_pubkey(S.TPM_KEY.from_bytes(blob).pubkey().to_bytes())
    digest_info_sha1 = bytes.fromhex("3021300906052b0e03021a05000414")
    area = digest_info_sha1 + sha1(b"message")
    r, out = auth1(owned, 0x3C, u32(h), u32(len(area)) + area, b"s" * 20)
    assert r.rc == 0
    pubkey.verify(out[4:], b"message", padding.PKCS1v15(), hashes.SHA1())
    r, _ = auth1(owned, 0x3C, u32(h), u32(246) + bytes(246), b"s" * 20)
    assert r.rc == RC.TPM_BAD_PARAMETER
    for k in (h, parent):
        run(owned, 0xC1, 0xBA, u32(k) + u32(1))


# ---------------------------------------------------------------- Sealx

def _mgf1(seed: bytes, n: int) -> bytes:
    """PKCS#1 MGF1-SHA1, written here from the RFC (not the engine's)."""
    import hashlib
    out = b""
    for i in range((n + 19) // 20):
        out += hashlib.sha1(seed + i.to_bytes(4, "big")).digest()
    return out[:n]


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def _private_key(owned, blob):
    """The wrapped key's private half, rebuilt from its prime with `cryptography`."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = S.TPM_KEY.from_bytes(blob)
    asym = S.TPM_STORE_ASYMKEY.from_bytes(owned.perm.srk.rsa.decrypt_oaep(key.encData))
    n, e = int.from_bytes(key.pubKey.key, "big"), 65537
    p = int.from_bytes(asym.privKey, "big")
    q = n // p
    d = pow(e, -1, (p - 1) * (q - 1))
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                 rsa.RSAPublicNumbers(e, n)).private_key()


def test_sealx_data_travels_encrypted_both_ways(owned, storage_key):
    h = load_key2(owned, storage_key)
    secret = b"sealx: the secret never crosses in clear" * 2
    sel = S.TPM_PCR_SELECTION.of([12])
    cur = run(owned, 0xC1, 0x15, u32(12)).body
    release = sha1(S.TPM_PCR_COMPOSITE(sel, cur).to_bytes())
    # localityAtCreation is the TPM's to fill in, but 0 is illegal (TPM_LocalitySelection_CheckLegal)
    info = S.TPM_PCR_INFO_LONG(1, 0x1F, sel, sel, bytes(20), release).to_bytes()
    s = Session(owned, "osap", 0x0001, h, KEYAUTH)
    odd = os.urandom(20)
    enc_in = _xor(secret, _mgf1(s.nonce_even + odd + b"XOR" + s.shared, len(secret)))
    params = s.enc_auth(DATAAUTH) + u32(len(info)) + info + u32(len(enc_in)) + enc_in
    r = run(owned, 0xC2, 0x3D, u32(h) + params + s.trailer(0x3D, params, nonce_odd=odd,
                                                          cont=True))
    assert r.rc == 0, r
    blob, tail = r.body[:-41], r.body[-41:]
    s.check_response(0x3D, r, blob, tail)
    assert tail[20] == 0 and s.handle not in owned.sessions      # the TPM ended the session
    stored = S.TPM_STORED_DATA12.from_bytes(blob)
    assert stored.et == 0x0005                                    # TPM_ET_XOR | TPM_ET_KEY
    creation = S.TPM_PCR_INFO_LONG.from_bytes(stored.sealInfo)
    assert creation.digestAtCreation == release and creation.localityAtCreation == 1
    # the blob, opened here with the storage key's private half
    sealed = S.TPM_SEALED_DATA.from_bytes(
        _private_key(owned, storage_key).decrypt(stored.encData, OAEP_TCPA))
    assert sealed.data == secret and sealed.authData == DATAAUTH
    assert sealed.tpmProof == owned.perm.tpm_proof
    hdr = b"\x00\x16\x00\x05" + u32(len(stored.sealInfo)) + stored.sealInfo + u32(0)
    assert sealed.storedDigest == sha1(hdr)
    # Unseal answers with the data encrypted under the key's OSAP session
    s1, s2 = Session(owned, "osap", 0x0001, h, KEYAUTH), Session(owned)
    even = s1.nonce_even
    t = s1.trailer(0x18, blob, cont=True) + s2.trailer(0x18, blob, DATAAUTH, cont=True)
    r = run(owned, 0xC3, 0x18, u32(h) + blob + t)
    assert r.rc == 0, r
    out = r.body[:-82]
    s1.check_response(0x18, r, out, r.body[-82:-41])
    s2.check_response(0x18, r, out, r.body[-41:])
    assert r.body[-82 + 20] == 0 and r.body[-41 + 20] == 1
    n = struct.unpack(">I", out[:4])[0]
    assert out[4:4 + n] != secret
    assert _xor(out[4:4 + n], _mgf1(even + s1.nonce_odd + b"XOR" + s1.shared, n)) == secret
    # an OIAP session for the key cannot receive it
    s1, s2 = Session(owned), Session(owned)
    t = s1.trailer(0x18, blob, KEYAUTH) + s2.trailer(0x18, blob, DATAAUTH)
    assert run(owned, 0xC3, 0x18, u32(h) + blob + t).rc == RC.TPM_BAD_MODE
    run(owned, 0xC1, 0xBA, u32(h) + u32(1))


def test_sealx_refusals(owned, storage_key):
    h = load_key2(owned, storage_key)

    def sealx(sess, data, info=b"", secret=None):
        params = (sess.enc_auth(DATAAUTH) if sess.shared else DATAAUTH)
        params += u32(len(info)) + info + u32(len(data)) + data
        return run(owned, 0xC2, 0x3D, u32(h) + params + sess.trailer(0x3D, params, secret))

    assert sealx(Session(owned), b"x", secret=KEYAUTH).rc == RC.TPM_BAD_MODE     # OIAP
    assert sealx(Session(owned, "osap", 1, h, KEYAUTH), b"").rc == RC.TPM_BAD_PARAMETER
    assert sealx(Session(owned, "osap", 1, h, bytes(20)), b"x").rc == RC.TPM_AUTHFAIL
    short = S.TPM_PCR_INFO(S.TPM_PCR_SELECTION.of([1])).to_bytes()       # not a PCR_INFO_LONG
    assert sealx(Session(owned, "osap", 1, h, KEYAUTH), b"x", short).rc == RC.TPM_BADINDEX
    # a Seal blob (et 0) still unseals in clear
    r, blob = seal(owned, h, b"plain")
    assert S.TPM_STORED_DATA.from_bytes(blob) and unseal(owned, h, blob)[1] == b"plain"
    run(owned, 0xC1, 0xBA, u32(h) + u32(1))
