"""Certified migration keys between two engine instances with their own
owners: CMK_ApproveMA -> CMK_CreateKey -> (CMK_CreateTicket) ->
CMK_CreateBlob -> CMK_ConvertMigration -> LoadKey2 + Sign, the signature
checked with `cryptography`.  The migration authority's signing key lives in
the test (`cryptography`); every ticket and digest the TPM must accept is
built here from Part 2's structure layouts, not with the engine's code.

The scenarios take a (source, destination) pair of anything with
execute(frame), so test_cmk_swtpm.py runs them on swtpm (libtpms) as well."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from hypothesis import given, settings
from hypothesis import strategies as st

import engine_helpers as H
from engine_helpers import (OWNER, SRK, Session, auth1, create_wrap_key, key_template,
                            load_key2, new_tpm, run, take_ownership, u16, u32)
from pyxl.tpm import structures as S
from pyxl.tpm.marshal import Reader

ORD_CREATE_TICKET, ORD_CREATE_KEY, ORD_CREATE_BLOB = 0x12, 0x13, 0x1B
ORD_SET_RESTRICTIONS, ORD_APPROVE_MA, ORD_CONVERT = 0x1C, 0x1D, 0x24
ORD_AMK, ORD_GETPUB, ORD_SIGN, ORD_CMB, ORD_CERTIFY2 = 0x2B, 0x21, 0x3C, 0x28, 0x33
MS_MIGRATE, MS_RESTRICT_MIGRATE, MS_RESTRICT_APPROVE = 1, 4, 5
MIGRATABLE, MIGRATE_AUTHORITY = 0x02, 0x10
KEY_AUTH = b"k" * 20
CMK_AUTH = b"c" * 20
SRK_HANDLE = 0x40000000

# return codes (Part 2 16)
AUTHFAIL, BAD_PARAMETER, BAD_MODE, INVALID_KEYUSAGE = 0x01, 0x03, 0x2C, 0x24
INVALID_STRUCTURE = 0x43
MA_TICKET_SIGNATURE, MA_DESTINATION, MA_SOURCE, MA_AUTHORITY = 0x5C, 0x5D, 0x5E, 0x5F
BAD_SIGNATURE = 0x62


def sha1(*parts):
    return hashlib.sha1(b"".join(parts)).digest()


# ---------------------------------------------------------------- the migration authority

class Authority:
    """A migration authority: an RSA signing key held outside any TPM."""

    _keys: list = []

    def __init__(self, i=0):
        while len(Authority._keys) <= i:
            Authority._keys.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.priv = Authority._keys[i]
        n = self.priv.public_key().public_numbers().n
        # TPM_PUBKEY: RSA, TPM_ES_NONE, TPM_SS_RSASSAPKCS1v15_SHA1
        self.pub = (S.TPM_KEY_PARMS(1, 1, 2, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes())
                    .to_bytes() + u32(256) + n.to_bytes(256, "big"))
        self.digest = sha1(self.pub)

    def sign(self, digest: bytes) -> bytes:
        return self.priv.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))


def msa_list(*digests: bytes) -> bytes:
    """TPM_MSA_COMPOSITE: MSAlist, then the digests."""
    return u32(len(digests)) + b"".join(digests)


def cmk_auth(ma: bytes, dest: bytes, src: bytes) -> bytes:
    """TPM_CMK_AUTH: migrationAuthorityDigest, destinationKeyDigest, sourceKeyDigest."""
    return ma + dest + src


def pubkey_digest(key: S.TPM_KEY) -> bytes:
    return sha1(key.pubkey().to_bytes())


# ---------------------------------------------------------------- commands

def approve_ma(tpm, msa: bytes, owner=OWNER):
    r, out = auth1(tpm, ORD_APPROVE_MA, b"", sha1(msa), owner)
    return r.rc, out


def create_ticket(tpm, ma: Authority, signed: bytes, sig: bytes | None = None, owner=OWNER,
                  pub: bytes | None = None):
    sig = ma.sign(signed) if sig is None else sig
    r, out = auth1(tpm, ORD_CREATE_TICKET, b"", (pub or ma.pub) + signed + u32(len(sig)) + sig,
                   owner)
    return r.rc, out


def cmk_template(usage=0x0010, es=1, ss=2, flags=MIGRATABLE | MIGRATE_AUTHORITY, key12=True):
    return key_template(usage=usage, es=es, ss=ss, flags=flags, key12=key12)


def create_cmk(tpm, approval: bytes, msa: bytes, template=None, parent=SRK_HANDLE,
               parent_auth=SRK, kind="osap"):
    """CMK_CreateKey -> (rc, TPM_KEY12 bytes)."""
    template = template or cmk_template()
    if kind == "osap":
        s = Session(tpm, "osap", 0x0004 if parent == SRK_HANDLE else 0x0001, parent,
                    parent_auth)
        enc = s.enc_auth(CMK_AUTH)
    else:
        s = Session(tpm)
        enc = CMK_AUTH
    params = enc + template.to_bytes() + approval + sha1(msa)
    tr = s.trailer(ORD_CREATE_KEY, params, parent_auth)
    r = H.Rsp(tpm.execute(H.frame(0xC2, ORD_CREATE_KEY, u32(parent) + params + tr)))
    if r.rc:
        return r.rc, b""
    out = r.body[:-41]
    s.check_response(ORD_CREATE_KEY, r, out, r.body[-41:])
    assert r.body[-21] == 0                      # the parent's session ends
    return 0, out


def authorize(tpm, pub: bytes, scheme: int) -> bytes:
    r, out = auth1(tpm, ORD_AMK, b"", u16(scheme) + pub, OWNER)
    assert r.rc == 0, r
    return out


def create_blob(tpm, mka: bytes, source: bytes, msa: bytes, enc: bytes, restrict=b"",
                sig_ticket=b"", mtype=None, parent=SRK_HANDLE, parent_auth=SRK):
    """CMK_CreateBlob -> (rc, random, outData)."""
    mtype = struct.unpack(">H", mka[-22:-20])[0] if mtype is None else mtype
    params = (u16(mtype) + mka + source + u32(len(msa)) + msa + u32(len(restrict)) + restrict
              + u32(len(sig_ticket)) + sig_ticket + u32(len(enc)) + enc)
    r, out = auth1(tpm, ORD_CREATE_BLOB, u32(parent), params, parent_auth)
    if r.rc:
        return r.rc, b"", b""
    n = struct.unpack(">I", out[:4])[0]
    rnd = out[4:4 + n]
    m = struct.unpack(">I", out[4 + n:8 + n])[0]
    assert len(out) == 8 + n + m
    return 0, rnd, out[8 + n:]


def convert(tpm, parent: int, restrict: bytes, sig_ticket: bytes, key: S.TPM_KEY, msa: bytes,
            rnd: bytes, parent_auth=KEY_AUTH):
    """CMK_ConvertMigration -> (rc, the key's new encData)."""
    params = (restrict + sig_ticket + key.to_bytes() + u32(len(msa)) + msa
              + u32(len(rnd)) + rnd)
    r, out = auth1(tpm, ORD_CONVERT, u32(parent), params, parent_auth)
    if r.rc:
        return r.rc, b""
    assert struct.unpack(">I", out[:4])[0] == len(out) - 4
    return 0, out[4:]


def dest_storage_key(dst):
    """A non-migratable storage key under dst's SRK -> (handle, TPM_PUBKEY bytes)."""
    handle = load_key2(dst, create_wrap_key(dst))
    r, pub = auth1(dst, ORD_GETPUB, u32(handle), b"", KEY_AUTH)
    assert r.rc == 0, r
    return handle, pub


def sign_and_verify(tpm, handle, key: S.TPM_KEY, auth=CMK_AUTH):
    digest = os.urandom(20)
    r, out = auth1(tpm, ORD_SIGN, u32(handle), u32(20) + digest, auth)
    assert r.rc == 0, r
    pub = rsa.RSAPublicNumbers(65537, int.from_bytes(key.pubKey.key, "big")).public_key()
    pub.verify(out[4:], digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))


def certify(tpm, handle: int, key: S.TPM_KEY, msa: bytes, payload: int):
    """CertifyKey2 of a loaded CMK by a fresh signing key: the certificate
    carries the payload type and SHA-1(SHA-1(msaList) || payload), and only
    the key's own list is accepted."""
    cert_key = S.TPM_KEY.from_bytes(create_wrap_key(tpm, template=key_template(
        usage=0x0010, es=1, ss=2)))
    cert = load_key2(tpm, cert_key.to_bytes())
    nonce = os.urandom(20)

    def run_certify(msa_digest):
        return H.auth2(tpm, ORD_CERTIFY2, u32(handle) + u32(cert), msa_digest + nonce,
                       Session(tpm), CMK_AUTH, Session(tpm), KEY_AUTH)

    r, _ = run_certify(sha1(u32(1) + os.urandom(20)))
    assert r.rc == MA_SOURCE
    r, out = run_certify(sha1(msa))
    assert r.rc == 0, r
    rd = Reader(out)
    info = S.TPM_CERTIFY_INFO2.unmarshal(rd)
    sig = rd.sized32()
    assert rd.remaining == 0
    assert info.payloadType == payload and info.data == nonce
    assert info.keyFlags == MIGRATABLE | MIGRATE_AUTHORITY
    assert info.pubkeyDigest == sha1(key.pubKey.key)
    assert info.migrationAuthority == sha1(sha1(msa), bytes([payload]))
    pub = rsa.RSAPublicNumbers(65537, int.from_bytes(cert_key.pubKey.key, "big")).public_key()
    pub.verify(sig, sha1(info.to_bytes()), padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))


class Setup:
    """A CMK on `src` whose list names `dests` digests and the authority's."""

    def __init__(self, src, *dests: bytes, ma: Authority | None = None, template=None):
        self.ma = ma or Authority()
        self.msa = msa_list(*dests, self.ma.digest)
        rc, self.approval = approve_ma(src, self.msa)
        assert rc == 0
        rc, blob = create_cmk(src, self.approval, self.msa, template)
        assert rc == 0, hex(rc)
        self.key = S.TPM_KEY12.from_bytes(blob)
        self.source = pubkey_digest(self.key)

    def restrict(self, dest_pub: bytes, source: bytes | None = None) -> bytes:
        return cmk_auth(self.ma.digest, sha1(dest_pub), source or self.source)


@pytest.fixture
def pair():
    src, dst = new_tpm(), new_tpm()
    take_ownership(src)
    take_ownership(dst)
    return src, dst


# ---------------------------------------------------------------- scenarios

def test_cmk_is_made_and_used_where_it_was_made(pair):
    src = pair[0]
    setup = Setup(src, sha1(b"some destination"))
    key = setup.key
    assert key.keyFlags == MIGRATABLE | MIGRATE_AUTHORITY and key.keyUsage == 0x0010
    handle = load_key2(src, key.to_bytes())
    sign_and_verify(src, handle, key)
    certify(src, handle, key, setup.msa, 0x06)           # TPM_PT_MIGRATE_RESTRICTED
    # the owner may keep it loaded (owner-evict), a CMK still
    r, _ = auth1(src, 0x23, u32(handle), key.pubkey().to_bytes() + u32(1) + b"\x01", OWNER)
    assert r.rc == 0                                      # KeyControlOwner(OWNER_EVICT)
    if hasattr(src, "dump"):                              # the engine: across a reload too
        src = type(src).load(src.dump(), key_source=H.key_pool())
        src.power_on("clear")
    certify(src, handle, key, setup.msa, 0x06)
    # the ticket is an HMAC only this TPM can make: the other one's is refused
    rc, other = approve_ma(pair[1], setup.msa)
    assert rc == 0 and other != setup.approval
    assert create_cmk(src, other, setup.msa)[0] == MA_AUTHORITY


def test_restrict_migrate_to_an_authority_key(pair):
    """TPM_MS_RESTRICT_MIGRATE: the destination key is itself in the list."""
    src, dst = pair
    parent, pub = dest_storage_key(dst)
    setup = Setup(src, sha1(pub))
    mka = authorize(src, pub, MS_RESTRICT_MIGRATE)
    rc, rnd, out = create_blob(src, mka, setup.source, setup.msa, setup.key.encData)
    assert rc == 0, hex(rc)
    assert len(rnd) == 198                       # o1 of a 2048-bit key
    restrict = setup.restrict(pub)
    rc, ticket = create_ticket(dst, setup.ma, sha1(restrict))
    assert rc == 0, hex(rc)
    key = setup.key.copy()
    key.encData = out
    rc, enc = convert(dst, parent, restrict, ticket, key, setup.msa, rnd)
    assert rc == 0, hex(rc)
    key.encData = enc
    handle = load_key2(dst, key.to_bytes(), parent=parent, parent_auth=KEY_AUTH)
    sign_and_verify(dst, handle, key)
    certify(dst, handle, key, setup.msa, 0x07)           # TPM_PT_MIGRATE_EXTERNAL


def test_restrict_migrate_through_an_authority_tpm(pair):
    """The MA's key in the list is a TPM_KEY_MIGRATE key: MigrateKey on the
    MA's TPM re-encrypts the blob to the final parent, which converts it."""
    src, dst = pair
    ma_key = load_key2(dst, create_wrap_key(dst, template=key_template(usage=0x0016)))
    r, ma_pub = auth1(dst, ORD_GETPUB, u32(ma_key), b"", KEY_AUTH)
    assert r.rc == 0
    parent, pub = dest_storage_key(dst)
    setup = Setup(src, sha1(ma_pub))
    rc, rnd, out = create_blob(src, authorize(src, ma_pub, MS_RESTRICT_MIGRATE), setup.source,
                               setup.msa, setup.key.encData)
    assert rc == 0, hex(rc)
    r, moved = auth1(dst, 0x25, u32(ma_key), pub + u32(len(out)) + out, KEY_AUTH)   # MigrateKey
    assert r.rc == 0, r
    key = setup.key.copy()
    key.encData = moved[4:]
    restrict = setup.restrict(pub)
    _, ticket = create_ticket(dst, setup.ma, sha1(restrict))
    # the approval must name the final parent, not the authority's key
    wrong = setup.restrict(ma_pub)
    _, wrong_ticket = create_ticket(dst, setup.ma, sha1(wrong))
    assert convert(dst, parent, wrong, wrong_ticket, key, setup.msa, rnd)[0] == MA_DESTINATION
    rc, enc = convert(dst, parent, restrict, ticket, key, setup.msa, rnd)
    assert rc == 0, hex(rc)
    key.encData = enc
    sign_and_verify(dst, load_key2(dst, key.to_bytes(), parent=parent, parent_auth=KEY_AUTH),
                    key)


def test_restrict_approve_with_signed_tickets(pair):
    """TPM_MS_RESTRICT_APPROVE: the authority signs a TPM_CMK_AUTH naming the
    key and its new parent; each TPM turns the signature into its own ticket."""
    src, dst = pair
    parent, pub = dest_storage_key(dst)
    setup = Setup(src)                           # the list holds the authority only
    restrict = setup.restrict(pub)
    rc, src_ticket = create_ticket(src, setup.ma, sha1(restrict))
    assert rc == 0
    mka = authorize(src, pub, MS_RESTRICT_APPROVE)
    rc, rnd, out = create_blob(src, mka, setup.source, setup.msa, setup.key.encData,
                               restrict, src_ticket)
    assert rc == 0, hex(rc)
    rc, dst_ticket = create_ticket(dst, setup.ma, sha1(restrict))
    assert rc == 0 and dst_ticket != src_ticket
    key = setup.key.copy()
    key.encData = out
    # the source TPM's ticket means nothing to the destination
    assert convert(dst, parent, restrict, src_ticket, key, setup.msa, rnd)[0] == \
        MA_TICKET_SIGNATURE
    rc, enc = convert(dst, parent, restrict, dst_ticket, key, setup.msa, rnd)
    assert rc == 0, hex(rc)
    key.encData = enc
    handle = load_key2(dst, key.to_bytes(), parent=parent, parent_auth=KEY_AUTH)
    sign_and_verify(dst, handle, key)


def test_blob_opened_independently(pair):
    """Open CMK_CreateBlob's output here: OAEP pHash is SHA-1(SHA-1(msaList)
    || SHA-1(key's TPM_PUBKEY)), the payload TPM_PT_CMK_MIGRATE, and the seed
    with partPrivKey gives a prime of the key's modulus."""
    src = pair[0]
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = priv.public_key().public_numbers().n
    pub = (S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes()).to_bytes()
           + u32(256) + n.to_bytes(256, "big"))
    setup = Setup(src, sha1(pub))
    rc, rnd, out = create_blob(src, authorize(src, pub, MS_RESTRICT_MIGRATE), setup.source,
                               setup.msa, setup.key.encData)
    assert rc == 0
    em = bytes(a ^ b for a, b in zip(priv.decrypt(out, H.OAEP_TCPA), rnd))

    def mgf1(seed, k):
        return b"".join(sha1(seed, u32(i)) for i in range(k // 20 + 1))[:k]

    seed = bytes(a ^ b for a, b in zip(em[:20], mgf1(em[20:], 20)))
    db = bytes(a ^ b for a, b in zip(em[20:], mgf1(seed, len(em) - 20)))
    assert db[:20] == sha1(sha1(setup.msa), setup.source)
    m = db[20:].lstrip(b"\0")[1:]
    assert m[0] == 0x08 and m[1:21] == CMK_AUTH               # TPM_PT_CMK_MIGRATE
    assert m[21:41] == sha1(setup.key.public_bytes())
    part = m[45:45 + struct.unpack(">I", m[41:45])[0]]
    k1k2 = seed + part
    p = int.from_bytes(k1k2[4:4 + struct.unpack(">I", k1k2[:4])[0]], "big")
    assert p > 1 and int.from_bytes(setup.key.pubKey.key, "big") % p == 0


# ---------------------------------------------------------------- refusals

def test_owner_commands(pair):
    src = pair[0]
    assert approve_ma(src, msa_list(os.urandom(20)), owner=b"x" * 20)[0] == AUTHFAIL
    r, _ = auth1(src, ORD_SET_RESTRICTIONS, b"", u32(0x80000000), b"x" * 20)
    assert r.rc == AUTHFAIL
    r, out = auth1(src, ORD_SET_RESTRICTIONS, b"", u32(0xC0000000), OWNER)
    assert r.rc == 0 and out == b""
    assert H.cap_value(src, 5, u32(0x11F)) == u32(0xC0000000)   # TPM_CAP_PROP_CMK_RESTRICTION
    # a ticket for a signature that is not the authority's
    ma = Authority()
    assert create_ticket(src, ma, os.urandom(20), sig=os.urandom(256))[0] == BAD_SIGNATURE
    assert create_ticket(src, ma, os.urandom(20), owner=b"x" * 20)[0] == AUTHFAIL
    signed = os.urandom(20)
    assert create_ticket(src, ma, signed, sig=Authority(1).sign(signed))[0] == BAD_SIGNATURE
    # the verification key must be an RSA signing key
    oaep_pub = (S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes()).to_bytes()
                + ma.pub[-260:])
    assert create_ticket(src, ma, signed, pub=oaep_pub)[0] == 0x0E    # TPM_INAPPROPRIATE_ENC
    no_sig = S.TPM_KEY_PARMS(1, 1, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes()).to_bytes()
    assert create_ticket(src, ma, signed, pub=no_sig + ma.pub[-260:])[0] == INVALID_KEYUSAGE


def test_create_key_refusals(pair):
    src = pair[0]
    msa = msa_list(os.urandom(20))
    rc, approval = approve_ma(src, msa)
    assert rc == 0
    assert create_cmk(src, approval, msa_list(os.urandom(20)))[0] == MA_AUTHORITY
    assert create_cmk(src, approval, msa, cmk_template(flags=MIGRATE_AUTHORITY))[0] == \
        INVALID_KEYUSAGE
    assert create_cmk(src, approval, msa, cmk_template(flags=MIGRATABLE))[0] == INVALID_KEYUSAGE
    assert create_cmk(src, approval, msa, cmk_template(key12=False))[0] == INVALID_STRUCTURE
    assert create_cmk(src, approval, msa, parent_auth=b"x" * 20)[0] == AUTHFAIL
    assert create_cmk(src, approval, msa, kind="oiap")[0] == BAD_MODE
    # only CMK_CreateKey makes keys with migrateAuthority
    s = Session(src, "osap", 0x0004, SRK_HANDLE, SRK)
    odd = os.urandom(20)
    params = s.enc_auth(KEY_AUTH) + s.enc_auth(bytes(20), odd=odd) + cmk_template().to_bytes()
    tr = s.trailer(0x1F, params, nonce_odd=odd)
    assert run(src, 0xC2, 0x1F, u32(SRK_HANDLE) + params + tr).rc == INVALID_KEYUSAGE


def test_create_blob_refusals(pair):
    src, dst = pair
    _, pub = dest_storage_key(dst)
    _, other_pub = dest_storage_key(dst)
    setup = Setup(src, sha1(pub))
    enc = setup.key.encData
    mka = authorize(src, pub, MS_RESTRICT_MIGRATE)
    # the list and the source digest must be the ones the key was made with
    assert create_blob(src, mka, setup.source, msa_list(sha1(pub)), enc)[0] == MA_AUTHORITY
    assert create_blob(src, mka, os.urandom(20), setup.msa, enc)[0] == MA_AUTHORITY
    # RESTRICT_MIGRATE only to a key in the list, and without tickets
    other = authorize(src, other_pub, MS_RESTRICT_MIGRATE)
    assert create_blob(src, other, setup.source, setup.msa, enc)[0] == MA_TICKET_SIGNATURE
    assert create_blob(src, mka, setup.source, setup.msa, enc, restrict=os.urandom(60))[0] == \
        BAD_PARAMETER
    # an approval made by another owner, a plain migration scheme
    assert create_blob(src, mka[:-1] + bytes([mka[-1] ^ 1]), setup.source, setup.msa,
                       enc)[0] == AUTHFAIL
    assert create_blob(src, authorize(src, pub, MS_MIGRATE), setup.source, setup.msa,
                       enc)[0] == BAD_PARAMETER
    # an empty list is not a TPM_MSA_COMPOSITE
    assert create_blob(src, mka, setup.source, u32(0), enc)[0] == INVALID_STRUCTURE
    # not a CMK
    plain = S.TPM_KEY.from_bytes(create_wrap_key(src, template=key_template(
        usage=0x0010, es=1, ss=2, flags=MIGRATABLE)))
    assert create_blob(src, mka, setup.source, setup.msa, plain.encData)[0] == INVALID_STRUCTURE
    assert create_blob(src, mka, setup.source, setup.msa, enc, parent_auth=b"x" * 20)[0] == \
        AUTHFAIL
    # RESTRICT_APPROVE: the ticket must be this TPM's over this very TPM_CMK_AUTH
    appr = authorize(src, other_pub, MS_RESTRICT_APPROVE)
    restrict = setup.restrict(other_pub)
    rc, ticket = create_ticket(src, setup.ma, sha1(restrict))
    assert rc == 0
    assert create_blob(src, appr, setup.source, setup.msa, enc, restrict, ticket)[0] == 0
    _, dst_ticket = create_ticket(dst, setup.ma, sha1(restrict))
    assert create_blob(src, appr, setup.source, setup.msa, enc, restrict, dst_ticket)[0] == \
        MA_TICKET_SIGNATURE
    for bad, rc in ((setup.restrict(pub), MA_DESTINATION),
                    (setup.restrict(other_pub, source=os.urandom(20)), MA_SOURCE)):
        _, t = create_ticket(src, setup.ma, sha1(bad))
        assert create_blob(src, appr, setup.source, setup.msa, enc, bad, t)[0] == rc
    # a CMK does not leave through the plain migration commands
    legacy = authorize(src, pub, MS_MIGRATE)
    r, _ = H.auth2(src, ORD_CMB, u32(SRK_HANDLE), u16(MS_MIGRATE) + legacy + u32(len(enc)) + enc,
                   Session(src), SRK, Session(src), bytes(20))
    assert r.rc != 0


def test_convert_refusals(pair):
    src, dst = pair
    parent, pub = dest_storage_key(dst)
    setup = Setup(src, sha1(pub))
    rc, rnd, out = create_blob(src, authorize(src, pub, MS_RESTRICT_MIGRATE), setup.source,
                               setup.msa, setup.key.encData)
    assert rc == 0
    key = setup.key.copy()
    key.encData = out
    restrict = setup.restrict(pub)
    _, ticket = create_ticket(dst, setup.ma, sha1(restrict))
    # the list must be the key's (it is in the OAEP pHash)
    assert convert(dst, parent, restrict, ticket, key, msa_list(sha1(pub)), rnd)[0] == AUTHFAIL
    # the authority's approval must name this parent and this key
    for bad, code in ((cmk_auth(setup.ma.digest, os.urandom(20), setup.source), MA_DESTINATION),
                      (cmk_auth(setup.ma.digest, sha1(pub), os.urandom(20)), MA_SOURCE)):
        _, t = create_ticket(dst, setup.ma, sha1(bad))
        assert convert(dst, parent, bad, t, key, setup.msa, rnd)[0] == code
    assert convert(dst, parent, restrict, os.urandom(20), key, setup.msa, rnd)[0] == \
        MA_TICKET_SIGNATURE
    assert convert(dst, parent, restrict, ticket, key, setup.msa, rnd,
                   parent_auth=b"x" * 20)[0] == AUTHFAIL
    assert convert(dst, parent, restrict, ticket, key, setup.msa, os.urandom(len(rnd)))[0] != 0
    assert convert(dst, parent, restrict, ticket, key, setup.msa, rnd[:-1])[0] == BAD_PARAMETER
    # only a CMK (migratable and migrateAuthority) is converted
    plain = key.copy()
    plain.keyFlags = MIGRATABLE
    assert convert(dst, parent, restrict, ticket, plain, setup.msa, rnd)[0] == INVALID_KEYUSAGE
    assert convert(dst, parent, restrict, ticket, key, setup.msa, rnd)[0] == 0


# ---------------------------------------------------------------- engine-only

def test_restrictions_persist_and_old_states_load():
    tpm = new_tpm()
    take_ownership(tpm)
    before = tpm.dump()
    r, _ = auth1(tpm, ORD_SET_RESTRICTIONS, b"", u32(0x80000000), OWNER)
    assert r.rc == 0 and tpm.persistent_changed
    again = type(tpm).load(tpm.dump(), key_source=H.key_pool())
    again.power_on("clear")
    assert H.cap_value(again, 5, u32(0x11F)) == u32(0x80000000)
    assert again.dump() == tpm.dump()
    # a state written before CMK support loads with no restrictions, unchanged
    old = type(tpm).load(before, key_source=H.key_pool())
    assert old.dump() == before
    old.power_on("clear")
    assert H.cap_value(old, 5, u32(0x11F)) == u32(0)
    # OwnerClear forgets them
    r, _ = auth1(again, 0x5B, b"", b"", OWNER)
    assert r.rc == 0
    assert H.cap_value(again, 5, u32(0x11F)) == u32(0)


def test_dsap_on_a_cmk_obeys_the_restrictions(pair):
    """A key delegation of a CMK authorizes its use only for the usages the
    owner allowed with CMK_SetRestrictions (none at first)."""
    from test_engine_delegate import DSAP, create_key_delegation, key_public, manage
    t = pair[0]
    rc, fid = manage(t, 0, 1, b"\x01")                   # create a family ...
    assert rc == 0
    fid = struct.unpack(">I", fid)[0]
    assert manage(t, fid, 2, b"\x01")[0] == 0            # ... and enable it
    setup = Setup(t, sha1(b"some destination"))
    h = load_key2(t, setup.key.to_bytes())
    rc, blob = create_key_delegation(t, h, CMK_AUTH, key_public(fid, 1 << 14))   # Sign
    assert rc == 0, hex(rc)

    def sign_by_delegate():
        r, _ = auth1(t, ORD_SIGN, u32(h), u32(20) + os.urandom(20), None,
                     sess=DSAP(t, 0x0009, blob, key=h))           # TPM_ET_DEL_KEY_BLOB
        return r.rc

    assert sign_by_delegate() == INVALID_KEYUSAGE
    for restriction, rc in ((0x80000000, 0), (0x40000000, INVALID_KEYUSAGE), (0xF8000000, 0)):
        r, _ = auth1(t, ORD_SET_RESTRICTIONS, b"", u32(restriction), OWNER)
        assert r.rc == 0
        assert sign_by_delegate() == rc
    # the owner's own authorization is never restricted
    sign_and_verify(t, h, setup.key)


def test_a_loaded_cmk_stays_one_through_context_and_savestate():
    """The payload type that makes a key a CMK lives in the context blob and
    in TPM_SaveState's snapshot: CertifyKey2 still sees a CMK afterwards."""
    tpm = new_tpm()
    take_ownership(tpm)
    setup = Setup(tpm, sha1(b"some destination"))
    h = load_key2(tpm, setup.key.to_bytes())
    r = run(tpm, 0xC1, 0xB8, u32(h) + u32(1) + b"L" * 16)               # SaveContext
    assert r.rc == 0
    blob = r.body[4:]
    assert run(tpm, 0xC1, 0xBA, u32(h) + u32(1)).rc == 0                # FlushSpecific
    r = run(tpm, 0xC1, 0xB9, u32(h) + b"\x01" + u32(len(blob)) + blob)   # LoadContext
    assert r.rc == 0
    h = struct.unpack(">I", r.body)[0]
    certify(tpm, h, setup.key, setup.msa, 0x06)
    assert run(tpm, 0xC1, 0x98).rc == 0                                 # SaveState
    again = type(tpm).load(tpm.dump(), key_source=H.key_pool())
    assert again.power_on("state") == 0
    certify(again, h, setup.key, setup.msa, 0x06)
    sign_and_verify(again, h, setup.key)


def test_only_set_restrictions_changes_the_state_blob():
    """The other CMK commands are declared read-only (tpm-serve skips saving
    after them): a whole migration leaves dump() as it was."""
    tpm = new_tpm()
    take_ownership(tpm)
    parent, pub = dest_storage_key(tpm)
    before = tpm.dump()
    setup = Setup(tpm, sha1(pub))
    rc, rnd, out = create_blob(tpm, authorize(tpm, pub, MS_RESTRICT_MIGRATE), setup.source,
                               setup.msa, setup.key.encData)
    assert rc == 0
    restrict = setup.restrict(pub)
    rc, ticket = create_ticket(tpm, setup.ma, sha1(restrict))
    key = setup.key.copy()
    key.encData = out
    assert rc == 0 and convert(tpm, parent, restrict, ticket, key, setup.msa, rnd)[0] == 0
    assert not tpm.persistent_changed and tpm.dump() == before
    r, _ = auth1(tpm, ORD_SET_RESTRICTIONS, b"", u32(0x08000000), OWNER)
    assert r.rc == 0 and tpm.persistent_changed


def test_owner_evict_takes_migratable_keys(pair):
    """KeyControlOwner(OWNER_EVICT), as libtpms and the Berlios emulator: a
    migratable key (such as a CMK) may be kept loaded, a volatile one may
    not, and only keys of the usual usages (not TPM_KEY_MIGRATE)."""
    t = pair[0]

    def evict(template):
        blob = S.TPM_KEY.from_bytes(create_wrap_key(t, template=template))
        h = load_key2(t, blob.to_bytes())
        r, _ = auth1(t, 0x23, u32(h), blob.pubkey().to_bytes() + u32(1) + b"\x01", OWNER)
        if r.rc == 0:        # give the slot back
            r2, _ = auth1(t, 0x23, u32(h), blob.pubkey().to_bytes() + u32(1) + b"\x00", OWNER)
            assert r2.rc == 0
        assert run(t, 0xC1, 0xBA, u32(h) + u32(1)).rc == 0                 # FlushSpecific
        return r.rc

    assert evict(key_template(usage=0x0010, es=1, ss=2, flags=MIGRATABLE)) == 0
    assert evict(key_template(usage=0x0010, es=1, ss=2, flags=0x04)) == BAD_PARAMETER
    assert evict(key_template(usage=0x0016)) == INVALID_KEYUSAGE


# ---------------------------------------------------------------- robustness

_WORLD: list = []


def _world():
    """An owned engine (as a state blob) whose CMK can migrate to its own SRK,
    with every input of a valid CMK_CreateBlob and CMK_ConvertMigration."""
    if not _WORLD:
        tpm = new_tpm()
        srk = take_ownership(tpm)
        pub = srk.pubkey().to_bytes()
        setup = Setup(tpm, sha1(pub))
        mka = authorize(tpm, pub, MS_RESTRICT_MIGRATE)
        restrict = setup.restrict(pub)
        _, ticket = create_ticket(tpm, setup.ma, sha1(restrict))
        rc, rnd, out = create_blob(tpm, mka, setup.source, setup.msa, setup.key.encData)
        assert rc == 0
        key = setup.key.copy()
        key.encData = out
        assert convert(tpm, SRK_HANDLE, restrict, ticket, key, setup.msa, rnd,
                       parent_auth=SRK)[0] == 0
        _WORLD.append((tpm.dump(), [u16(4), mka, setup.source, setup.msa, b"", b"",
                                    setup.key.encData],
                       [restrict, ticket, key.to_bytes(), setup.msa, rnd]))
    blob, blob_parts, convert_parts = _WORLD[0]
    tpm = type(H.new_tpm()).load(blob, key_source=H.key_pool())
    tpm.power_on("clear")
    return tpm, list(blob_parts), list(convert_parts)


_SIZED_BLOB = (3, 4, 5, 6)      # CMK_CreateBlob's sized parameters
_SIZED_CONVERT = (3, 4)


def _params(parts, sized):
    return b"".join(u32(len(p)) + p if i in sized else p for i, p in enumerate(parts))


@settings(max_examples=40, deadline=None)
@given(st.booleans(), st.data())
def test_mutated_cmk_requests_get_an_answer(blob_side, data):
    """Well-authorized CMK_CreateBlob / CMK_ConvertMigration requests with one
    parameter replaced (or cut, or bit-flipped) get a TPM answer, never an
    engine error; the unchanged request still works afterwards."""
    tpm, blob_parts, convert_parts = _world()
    parts, sized, ordinal = ((blob_parts, _SIZED_BLOB, ORD_CREATE_BLOB) if blob_side
                             else (convert_parts, _SIZED_CONVERT, ORD_CONVERT))
    i = data.draw(st.integers(0, len(parts) - 1))
    how = data.draw(st.sampled_from(["random", "cut", "flip"]))
    p = parts[i]
    if how == "random":
        parts[i] = data.draw(st.binary(max_size=300))
    elif how == "cut" and p:
        parts[i] = p[:data.draw(st.integers(0, len(p) - 1))]
    elif p:
        k = data.draw(st.integers(0, len(p) - 1))
        parts[i] = p[:k] + bytes([p[k] ^ (1 << data.draw(st.integers(0, 7)))]) + p[k + 1:]
    r, _ = auth1(tpm, ordinal, u32(SRK_HANDLE), _params(parts, sized), SRK)
    assert tpm.internal_errors == 0
    if parts[i] == p:
        assert r.rc == 0
    tpm, blob_parts, convert_parts = _world()
    r, _ = auth1(tpm, ordinal, u32(SRK_HANDLE),
                 _params(blob_parts if blob_side else convert_parts, sized), SRK)
    assert r.rc == 0
