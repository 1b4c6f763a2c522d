"""AES-128 where libtpms offers it: transport sessions with TPM_ALG_AES128 in
CTR or OFB mode, and authorization-data encryption (ADIP) when an OSAP
session's entity type carries TPM_ET_AES128_CTR in its MSB (CreateWrapKey,
NV_DefineSpace, Sealx / Unseal).  Every keystream is computed here with
`cryptography`, independently of the engine: CTR from AES-ECB blocks with
libtpms's counter (only its low 32 bits count), OFB with modes.OFB.  The
same scenarios run against swtpm in test_transport_aes_swtpm.py.  Behaving
as the Berlios emulator (Identity.berlios) the engine has no AES."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:                                  # cryptography >= 47: OFB is a "decrepit" mode
    from cryptography.hazmat.decrepit.ciphers.modes import OFB
except ImportError:
    from cryptography.hazmat.primitives.ciphers.modes import OFB

import test_engine_delegate as D
import test_engine_transport as T
from engine_helpers import (OWNER, SRK, Rsp, Session, auth1, auth2, cap_value, create_wrap_key,
                            frame, getcap, hmac1, key_template, load_key2, parse_pubkey, run,
                            sha1, take_ownership, u16, u32)
from pyxl.tpm import constants as C
from pyxl.tpm import structures as S
from pyxl.tpm.identity import XEN_VTPM_IDENTITY, behaving_as

RC = C.TPM_RESULT
ENCRYPT, LOG = T.ENCRYPT, T.LOG
ALG_AES128, ALG_MGF1, ALG_AES192, ALG_AES256, ALG_XOR = 6, 7, 8, 9, 10
ES_NONE, ES_OAEP, ES_CTR, ES_OFB = 1, 3, 4, 5
ET_AES = 0x0600                   # TPM_ET_AES128_CTR in an entity type's MSB
KH_SRK, KH_OWNER = 0x40000000, 0x40000001
ORD_SEAL, ORD_UNSEAL, ORD_SEALX, ORD_CWK, ORD_GETPUB = 0x17, 0x18, 0x3D, 0x1F, 0x21
ORD_NV_DEFINE, ORD_NV_WRITE_AUTH, ORD_NV_READ_AUTH = 0xCC, 0xCE, 0xD0
ORD_AMK, ORD_CMB, ORD_OSAP = 0x2B, 0x28, 0x0B
USAGE, MIGRATION, DATA_AUTH, AREA_AUTH = b"u" * 20, b"m" * 20, b"d" * 20, b"a" * 20

# the TPM under test: the Xen vTPM's identity behaving as libtpms (tpm-serve's
# default); the scenarios call new_tpm() through the module, so the swtpm
# file can point it at a real libtpms
LIBTPMS = behaving_as(XEN_VTPM_IDENTITY, "libtpms")
BERLIOS = behaving_as(XEN_VTPM_IDENTITY, "berlios")


def new_tpm():
    return T.new_tpm(identity=LIBTPMS)


def owned():
    tpm = new_tpm()
    srk = take_ownership(tpm)
    return tpm, srk


# ---------------------------------------------------------------- keystreams

def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def ctr(key: bytes, counter: bytes, data: bytes) -> bytes:
    """libtpms's AES-128-CTR: E(key, counter) blocks; the counter's low 32 bits
    count up and wrap without carrying into the upper 96."""
    ecb = Cipher(algorithms.AES(key[:16]), modes.ECB()).encryptor()
    high, low = counter[:12], int.from_bytes(counter[12:16], "big")
    pad = b""
    while len(pad) < len(data):
        pad += ecb.update(high + low.to_bytes(4, "big"))
        low = (low + 1) & 0xFFFFFFFF
    return xor(data, pad)


def ofb(key: bytes, iv: bytes, data: bytes) -> bytes:
    e = Cipher(algorithms.AES(key[:16]), OFB(iv[:16])).encryptor()
    return e.update(data) + e.finalize()


class AesTransport(T.Transport):
    """A transport session encrypting with AES-128: key = the session's
    authData[0:16], CTR counter / OFB IV = MGF1(nonceEven || nonceOdd || label)
    cut to one block.  With LOG it also extends its log-out entries (the
    TPM_CURRENT_TICKS of each is EstablishTransport's with the new tick count)."""

    def __init__(self, tpm, attrs, es, srk, **kw):
        srk_pub = rsa.RSAPublicNumbers(65537, int.from_bytes(srk.pubKey.key, "big")).public_key()
        super().__init__(tpm, attrs, enc_key=(KH_SRK, srk_pub), key_auth=SRK, alg=ALG_AES128,
                         es=es, **kw)
        self.es = es

    def crypt(self, data, nonce_even, odd, label):
        iv = T.mgf1(nonce_even + odd + label, 16)
        return (ctr if self.es == ES_CTR else ofb)(self.auth, iv, data)

    def execute(self, inner, **kw):
        rsp = super().execute(inner, **kw)
        if self.attrs & LOG:
            ticks = self.ticks[:2] + self.last_ct + self.ticks[10:]
            self.digest = T.log_out(self.digest, ticks, self.last_h2, self.locality)
        return rsp


class AesOSAP(Session):
    """An OSAP session whose entity type asks for AES-128-CTR ADIP: key = the
    shared secret's first 16 bytes, counter = authLastNonceEven[0:16] (the
    nonceOdd of the command for a second secret)."""

    def __init__(self, tpm, entity_type, entity_value, secret):
        super().__init__(tpm, "osap", ET_AES | entity_type, entity_value, secret)

    def enc_auth(self, new_auth, odd=None):
        return ctr(self.shared, odd if odd is not None else self.nonce_even, new_auth)


def store_pubkey_hash(key: S.TPM_KEY) -> bytes:
    """What a transport log names a key by: SHA-1 of its TPM_STORE_PUBKEY."""
    return sha1(key.pubKey.to_bytes())


def unseal(tpm, handle, blob, key_auth, data_auth, entity_type=0x0001):
    """Unseal with an OSAP session for the key; -> (rc, data, OSAP session, its
    authLastNonceEven)."""
    s1, s2 = Session(tpm, "osap", entity_type, handle, key_auth), Session(tpm)
    even = s1.nonce_even
    r = run(tpm, 0xC3, ORD_UNSEAL, u32(handle) + blob + s1.trailer(ORD_UNSEAL, blob)
            + s2.trailer(ORD_UNSEAL, blob, data_auth))
    if r.rc:
        return r.rc, None, s1, even
    out = r.body[:-82]
    s1.check_response(ORD_UNSEAL, r, out, r.body[-82:-41])
    s2.check_response(ORD_UNSEAL, r, out, r.body[-41:])
    n = struct.unpack(">I", out[:4])[0]
    return 0, out[4:4 + n], s1, even


def release_signed(tpm, t: AesTransport):
    """ReleaseTransportSigned with a fresh signing key; the signature must
    cover the log chain computed here."""
    blob = create_wrap_key(tpm, template=key_template(usage=0x0010, es=1, ss=2),
                           usage_auth=b"s" * 20)
    kh = load_key2(tpm, blob)
    anti, odd = os.urandom(20), os.urandom(20)
    ks = Session(tpm)
    in_digest = sha1(u32(T.REL), anti)
    ttr = u32(t.handle) + odd + b"\x01" + hmac1(t.auth, in_digest, t.nonce_even, odd, b"\x01")
    r = run(tpm, 0xC3, T.REL, u32(kh) + anti + ks.trailer(T.REL, anti, b"s" * 20) + ttr)
    assert r.rc == 0, r
    out = r.body[:-82]
    ks.check_response(T.REL, r, out, r.body[-82:-41])
    even, c, res = r.body[-41:-21], r.body[-21:-20], r.body[-20:]
    assert c == b"\x00" and res == hmac1(t.auth, sha1(u32(0), u32(T.REL), out), even, odd, c)
    digest = T.log_out(t.digest, out[4:36], in_digest, 0)
    n = struct.unpack(">I", out[36:40])[0]
    info = S.TPM_SIGN_INFO(b"TRAN", anti, digest).to_bytes()
    pub, _ = parse_pubkey(T._pubkey_of(tpm, kh))
    pub.verify(out[40:40 + n], sha1(info), padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)       # the session is over


# ---------------------------------------------------------------- scenarios

def aes_transport_seal_and_release(es):
    """An encrypted, logged AES transport: GetRandom, then a Seal whose
    parameters (encAuth, data) and response (the blob) travel encrypted;
    the blob unseals outside the transport; ReleaseTransportSigned signs the
    log chain."""
    tpm, srk = owned()
    t = AesTransport(tpm, ENCRYPT | LOG, es, srk)
    rsp = t.execute(T.getrandom(37))          # response HMAC over the decrypted bytes
    assert Rsp(rsp).rc == 0 and struct.unpack(">I", rsp[10:14])[0] == 37
    secret = b"sealed inside an AES transport session " * 3
    s = Session(tpm, "osap", 0x0004, KH_SRK, SRK)
    params = s.enc_auth(DATA_AUTH) + u32(0) + u32(len(secret)) + secret
    inner = frame(0xC2, ORD_SEAL, u32(KH_SRK) + params + s.trailer(ORD_SEAL, params))
    rsp = t.execute(inner, in_handles=4, auth_len=45, rsp_auth_len=41,
                    keyhash=sha1(store_pubkey_hash(srk)))
    r = Rsp(rsp)
    assert r.rc == 0, r
    blob = r.body[:-41]
    s.check_response(ORD_SEAL, r, blob, r.body[-41:])
    assert S.TPM_STORED_DATA.from_bytes(blob)
    rc, data, _, _ = unseal(tpm, KH_SRK, blob, SRK, DATA_AUTH)
    assert rc == 0 and data == secret
    release_signed(tpm, t)


def aes_transport_nv_round_trip(es):
    """NV_DefineSpace with the area's secret under AES-CTR ADIP (owner OSAP
    0x0602); then 300 bytes written and read back through an encrypted AES
    transport, each authorized by that secret."""
    tpm, srk = owned()
    idx = 0x00011A01
    pub = S.TPM_NV_DATA_PUBLIC(idx, permission=S.TPM_NV_ATTRIBUTES(
        C.TPM_NV_PER_AUTHWRITE | C.TPM_NV_PER_AUTHREAD), dataSize=300)
    s = AesOSAP(tpm, C.TPM_ET_OWNER, KH_OWNER, OWNER)
    r, _ = auth1(tpm, ORD_NV_DEFINE, b"", pub.to_bytes() + s.enc_auth(AREA_AUTH), None, sess=s)
    assert r.rc == 0, r
    t = AesTransport(tpm, ENCRYPT, es, srk)
    data = os.urandom(300)
    params = u32(idx) + u32(0) + u32(len(data)) + data
    o = Session(tpm)
    rsp = t.execute(frame(0xC2, ORD_NV_WRITE_AUTH, params + o.trailer(ORD_NV_WRITE_AUTH, params,
                                                                        AREA_AUTH)),
                    auth_len=45, rsp_auth_len=41)
    r = Rsp(rsp)
    assert r.rc == 0, r
    o.check_response(ORD_NV_WRITE_AUTH, r, b"", r.body[-41:])
    params = u32(idx) + u32(0) + u32(300)
    o = Session(tpm)
    rsp = t.execute(frame(0xC2, ORD_NV_READ_AUTH, params + o.trailer(ORD_NV_READ_AUTH, params,
                                                                       AREA_AUTH)),
                    auth_len=45, rsp_auth_len=41)
    r = Rsp(rsp)
    assert r.rc == 0, r
    o.check_response(ORD_NV_READ_AUTH, r, r.body[:-41], r.body[-41:])
    assert r.body[:4] == u32(300) and r.body[4:304] == data


def aes_transport_context(es):
    """SaveContext / LoadContext of an AES transport session: it comes back
    with its algorithm, mode, key and nonce chain."""
    tpm, srk = owned()
    t = AesTransport(tpm, ENCRYPT, es, srk)
    assert Rsp(t.execute(T.getrandom(20))).rc == 0
    r = run(tpm, 0xC1, 0xB8, u32(t.handle) + u32(4) + b"aes-transport-cx")
    assert r.rc == 0, r
    blob = r.body[4:]
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)
    r = run(tpm, 0xC1, 0xB9, u32(t.handle) + b"\x01" + u32(len(blob)) + blob)
    assert r.rc == 0, r
    t.handle = struct.unpack(">I", r.body[:4])[0]
    rsp = t.execute(T.getrandom(50))
    assert Rsp(rsp).rc == 0 and struct.unpack(">I", rsp[10:14])[0] == 50


def aes_transport_wrong_mode_fails():
    """A CTR session fed OFB ciphertext (the two differ from the second block
    on): the TPM decrypts with CTR, its digest of the command differs from the
    caller's, TPM_AUTH2FAIL ends the session."""
    tpm, srk = owned()
    t = AesTransport(tpm, ENCRYPT, ES_CTR, srk)
    inner = frame(0xC1, 0x3F, u32(40) + os.urandom(40))        # StirRandom
    odd = os.urandom(20)
    wrapped = inner[:10] + ofb(t.auth, T.mgf1(t.nonce_even + odd + b"in", 16), inner[10:])
    in_digest = sha1(u32(T.EXE), u32(len(wrapped)), sha1(inner[6:10], inner[10:]))
    mac = hmac1(t.auth, in_digest, t.nonce_even, odd, b"\x01")
    r = run(tpm, 0xC2, T.EXE, u32(len(wrapped)) + wrapped + u32(t.handle) + odd + b"\x01" + mac)
    assert r.rc == RC.TPM_AUTH2FAIL
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)


def _wrap_key_aes(tpm, usage, migration, odd, template, as_xor=False):
    """CreateWrapKey under the SRK with an AES-ADIP OSAP session; as_xor: the
    secrets encrypted as TPM_ET_XOR would have them (to show that fails)."""
    s = AesOSAP(tpm, C.TPM_ET_SRK, KH_SRK, SRK)
    enc = (lambda a, odd=None: Session.enc_auth(s, a, odd)) if as_xor else s.enc_auth
    params = enc(usage) + enc(migration, odd=odd) + template.to_bytes()
    r = run(tpm, 0xC2, ORD_CWK, u32(KH_SRK) + params + s.trailer(ORD_CWK, params, nonce_odd=odd))
    assert r.rc == 0, r
    out = r.body[:-41]
    s.check_response(ORD_CWK, r, out, r.body[-41:])
    return out


def aes_adip_create_wrap_key():
    """CreateWrapKey with usageAuth under counter authLastNonceEven and
    migrationAuth under counter nonceOdd -- a nonceOdd whose low 32 bits are
    all ones, so its second block shows the counter wraps without a carry.
    The key then authorizes with usageAuth (GetPubKey) and migrates with
    migrationAuth (CreateMigrationBlob); secrets XORed as for TPM_ET_XOR
    instead do not authorize it."""
    tpm, srk = owned()
    odd = os.urandom(12) + b"\xff\xff\xff\xff" + os.urandom(4)
    blob = _wrap_key_aes(tpm, USAGE, MIGRATION, odd, key_template(flags=2))   # migratable
    kh = load_key2(tpm, blob)
    r, pub = auth1(tpm, ORD_GETPUB, u32(kh), b"", USAGE)
    assert r.rc == 0, r
    r, ticket = auth1(tpm, ORD_AMK, b"", u16(2) + pub, OWNER)        # TPM_MS_REWRAP
    assert r.rc == 0, r
    enc = S.TPM_KEY.from_bytes(blob).encData
    params = u16(2) + ticket + u32(len(enc)) + enc
    r, _ = auth2(tpm, ORD_CMB, u32(KH_SRK), params, Session(tpm), SRK, Session(tpm), MIGRATION)
    assert r.rc == 0, r
    blob = _wrap_key_aes(tpm, USAGE, MIGRATION, odd, key_template(), as_xor=True)
    kh2 = load_key2(tpm, blob)
    r, _ = auth1(tpm, ORD_GETPUB, u32(kh2), b"", USAGE)
    assert r.rc == RC.TPM_AUTHFAIL


def aes_seal_change_auth_and_counter():
    """More AES-ADIP consumers: Seal's dataAuth, ChangeAuth's new dataAuth
    (the sealed blob then unseals with it), CreateCounter's counter secret
    (the counter then increments with it)."""
    tpm, _ = owned()
    s = AesOSAP(tpm, C.TPM_ET_KEYHANDLE, KH_SRK, SRK)
    params = s.enc_auth(DATA_AUTH) + u32(0) + u32(3) + b"abc"
    r, out = auth1(tpm, ORD_SEAL, u32(KH_SRK), params, None, sess=s)
    assert r.rc == 0, r
    sealed = S.TPM_STORED_DATA.from_bytes(out)
    s = AesOSAP(tpm, C.TPM_ET_KEYHANDLE, KH_SRK, SRK)
    new_auth = b"n" * 20
    params = (u16(4) + s.enc_auth(new_auth) + u16(C.TPM_ET_DATA) + u32(len(sealed.encData))
              + sealed.encData)                                      # TPM_PID_ADCP
    r, out = auth2(tpm, 0x0C, u32(KH_SRK), params, s, None, Session(tpm), DATA_AUTH)
    assert r.rc == 0, r
    sealed.encData = out[4:]
    assert unseal(tpm, KH_SRK, sealed.to_bytes(), SRK, new_auth)[:2] == (0, b"abc")
    s = AesOSAP(tpm, C.TPM_ET_OWNER, KH_OWNER, OWNER)
    r, out = auth1(tpm, 0xDC, b"", s.enc_auth(b"c" * 20) + b"AES1", None, sess=s)
    assert r.rc == 0, r
    cid = struct.unpack(">I", out[:4])[0]
    first = S.TPM_COUNTER_VALUE.from_bytes(out[4:]).counter
    r, out = auth1(tpm, 0xDD, b"", u32(cid), b"c" * 20)                # IncrementCounter
    assert r.rc == 0 and S.TPM_COUNTER_VALUE.from_bytes(out).counter == first + 1


def aes_osap_context():
    """An AES-ADIP OSAP session saved and loaded again (SaveContext /
    LoadContext) still decrypts AuthData with AES: CreateWrapKey through it,
    then the key authorizes with the secret sent."""
    tpm, _ = owned()
    s = AesOSAP(tpm, C.TPM_ET_SRK, KH_SRK, SRK)
    r = run(tpm, 0xC1, 0xB8, u32(s.handle) + u32(2) + b"L" * 16)      # TPM_RT_AUTH
    assert r.rc == 0, r
    ctx = r.body[4:]
    r = run(tpm, 0xC1, 0xB9, u32(s.handle) + b"\x00" + u32(len(ctx)) + ctx)
    assert r.rc == 0, r
    s.handle = struct.unpack(">I", r.body[:4])[0]
    odd = os.urandom(20)
    params = s.enc_auth(USAGE) + s.enc_auth(MIGRATION, odd=odd) + key_template().to_bytes()
    r = run(tpm, 0xC2, ORD_CWK, u32(KH_SRK) + params + s.trailer(ORD_CWK, params, nonce_odd=odd))
    assert r.rc == 0, r
    kh = load_key2(tpm, r.body[:-41])
    assert auth1(tpm, ORD_GETPUB, u32(kh), b"", USAGE)[0].rc == 0


def aes_sealx_unseal():
    """Sealx under an AES-ADIP OSAP session: encAuth and inData arrive
    AES-CTR encrypted (inData's counter: SHA-1(authLastNonceEven || nonceOdd)),
    the blob records et = TPM_ET_AES128_CTR << 8, and Unseal -- even through
    a plain (XOR) OSAP session -- returns the data encrypted that way."""
    tpm, srk = owned()
    secret = b"AES sealx secret, more than one block long." * 2
    s = AesOSAP(tpm, C.TPM_ET_KEYHANDLE, KH_SRK, SRK)
    odd = os.urandom(20)
    enc_in = ctr(s.shared, sha1(s.nonce_even, odd), secret)
    params = s.enc_auth(DATA_AUTH) + u32(0) + u32(len(enc_in)) + enc_in
    r = run(tpm, 0xC2, ORD_SEALX, u32(KH_SRK) + params + s.trailer(ORD_SEALX, params,
                                                                   nonce_odd=odd))
    assert r.rc == 0, r
    blob = r.body[:-41]
    s.check_response(ORD_SEALX, r, blob, r.body[-41:])
    assert S.TPM_STORED_DATA12.from_bytes(blob).et == 0x0600
    rc, out, s1, even = unseal(tpm, KH_SRK, blob, SRK, DATA_AUTH)
    assert rc == 0 and out != secret
    assert ctr(s1.shared, sha1(even, s1.nonce_odd), out) == secret


class AesDSAP(D.DSAP):
    """A DSAP session whose entity type asks for AES-128-CTR ADIP."""
    enc_auth = AesOSAP.enc_auth


def aes_dsap_delegates_creation(kind):
    """An owner delegation that may create delegations opens a DSAP session
    with an AES-CTR entity type (on a delegate table row, or -- engine only,
    libtpms's DSAP loses the delegation of an AES owner blob -- on the blob);
    Delegate_CreateOwnerDelegation through it receives the new delegation's
    secret AES-encrypted, and a DSAP session with that secret works."""
    tpm, _ = owned()
    rc, fid = D.manage(tpm, 0, D.CREATE, b"\x01")
    assert rc == 0
    fid = struct.unpack(">I", fid)[0]
    assert D.manage(tpm, fid, D.ENABLE, b"\x01") == (0, b"")
    rc, blob = D.create_owner_delegation(tpm, D.delegate_public(
        fid, D.PER_CREATEOWNERDELEGATION | D.PER_OWNERREADINTERNALPUB))
    assert rc == 0
    if kind == "row":
        assert D.load_owner_delegation(tpm, 0, blob) == 0
        s = AesDSAP(tpm, ET_AES | C.TPM_ET_DEL_ROW, u32(0))
    else:
        s = AesDSAP(tpm, ET_AES | C.TPM_ET_DEL_OWNER_BLOB, blob)
    rc, sub = D.create_owner_delegation(tpm, D.delegate_public(fid, D.PER_OWNERREADINTERNALPUB),
                                        b"S" * 20, sess=s)
    assert rc == 0
    assert D.read_internal_pub(tpm, D.DSAP(tpm, C.TPM_ET_DEL_OWNER_BLOB, sub,
                                           secret=b"S" * 20)).rc == 0


def establish_rc(tpm, srk, attrs, alg, es) -> int:
    """EstablishTransport's return code for a TPM_TRANSPORT_PUBLIC, the secret
    sent under the SRK (a plain secret cannot ask for encryption)."""
    srk_pub = rsa.RSAPublicNumbers(65537, int.from_bytes(srk.pubKey.key, "big")).public_key()
    secret = srk_pub.encrypt(u16(0x1D) + os.urandom(20), T.OAEP_TCPA)
    body = T.trans_public(attrs, alg, es) + u32(len(secret)) + secret
    s = Session(tpm)
    r = run(tpm, 0xC2, T.EST, u32(KH_SRK) + body + s.trailer(T.EST, body, SRK))
    if r.rc == 0:
        assert run(tpm, 0xC1, 0xBA, r.body[:4] + u32(4)).rc == 0      # flush it
    return r.rc


# what libtpms answers (measured on swtpm 0.7.1 / libtpms 0.9.2, checked
# again by test_transport_aes_swtpm.py)
ESTABLISH = [
    (ENCRYPT, ALG_AES128, ES_CTR, 0), (ENCRYPT, ALG_AES128, ES_OFB, 0),
    (ENCRYPT, ALG_AES128, ES_NONE, RC.TPM_INAPPROPRIATE_ENC),
    (ENCRYPT, ALG_AES128, ES_OAEP, RC.TPM_INAPPROPRIATE_ENC),
    (ENCRYPT, ALG_MGF1, ES_CTR, RC.TPM_INAPPROPRIATE_ENC),
    (ENCRYPT, ALG_AES192, ES_CTR, RC.TPM_BAD_KEY_PROPERTY),
    (ENCRYPT, ALG_AES256, ES_OFB, RC.TPM_BAD_KEY_PROPERTY),
    (ENCRYPT, ALG_XOR, ES_CTR, RC.TPM_BAD_KEY_PROPERTY),
    (LOG, ALG_AES192, ES_NONE, 0),          # no ENCRYPT: the algorithm is not looked at
]
OSAP_ADIP = [(0x0004, 0), (0x0604, 0), (0x0104, RC.TPM_INAPPROPRIATE_ENC),
             (0x0704, RC.TPM_INAPPROPRIATE_ENC), (0xFF04, RC.TPM_INAPPROPRIATE_ENC)]


def aes_refusals():
    tpm, srk = owned()
    got = [(a, alg, es, establish_rc(tpm, srk, a, alg, es)) for a, alg, es, _ in ESTABLISH]
    assert got == ESTABLISH
    got = []
    for et, _ in OSAP_ADIP:
        r = run(tpm, 0xC1, ORD_OSAP, u16(et) + u32(KH_SRK) + os.urandom(20))
        got.append((et, r.rc))
        if r.rc == 0:
            assert run(tpm, 0xC1, 0xBA, r.body[:4] + u32(2)).rc == 0
    assert got == OSAP_ADIP


def capability_answers(tpm) -> dict:
    """Every TRANS_ALG / AUTH_ENCRYPT / TRANS_ES / SYM_MODE answer, and what a
    subCap of the wrong size gets."""
    out = {}
    for alg in range(12):
        out["TRANS_ALG %d" % alg] = cap_value(tpm, 0x12, u32(alg))
        out["AUTH_ENCRYPT %d" % alg] = cap_value(tpm, 0x17, u32(alg))
    for es in range(7):
        out["TRANS_ES %d" % es] = cap_value(tpm, 0x15, u16(es))
    for m in range(6):
        out["SYM_MODE %d" % m] = cap_value(tpm, 0x09, u32(m))
    for cap, sub in ((0x12, u16(6)), (0x17, u16(6)), (0x15, u32(4)), (0x09, u16(1))):
        out["cap %#x sub %s" % (cap, sub.hex())] = getcap(tpm, cap, sub).rc
    return out


# ---------------------------------------------------------------- the tests

@pytest.mark.parametrize("es", [ES_CTR, ES_OFB], ids=["ctr", "ofb"])
def test_aes_transport_seal_and_release(es):
    aes_transport_seal_and_release(es)


@pytest.mark.parametrize("es", [ES_CTR, ES_OFB], ids=["ctr", "ofb"])
def test_aes_transport_nv_round_trip(es):
    aes_transport_nv_round_trip(es)


@pytest.mark.parametrize("es", [ES_CTR, ES_OFB], ids=["ctr", "ofb"])
def test_aes_transport_context(es):
    aes_transport_context(es)


def test_aes_transport_wrong_mode_fails():
    aes_transport_wrong_mode_fails()


def test_aes_adip_create_wrap_key():
    aes_adip_create_wrap_key()


def test_aes_seal_change_auth_and_counter():
    aes_seal_change_auth_and_counter()


def test_aes_osap_context():
    aes_osap_context()


def test_aes_sealx_unseal():
    aes_sealx_unseal()


def test_aes_refusals():
    aes_refusals()


def test_capabilities_as_libtpms():
    caps = capability_answers(new_tpm())
    true = {k for k, v in caps.items() if v == b"\x01"}
    assert true == {"TRANS_ALG 6", "TRANS_ALG 7", "AUTH_ENCRYPT 6", "AUTH_ENCRYPT 10",
                    "TRANS_ES 4", "TRANS_ES 5"}
    assert {k: v for k, v in caps.items() if k.startswith("cap ")} == {
        k: RC.TPM_BAD_MODE for k in caps if k.startswith("cap ")}


def berlios():
    tpm = T.new_tpm(identity=BERLIOS)
    return tpm, take_ownership(tpm)


def test_the_berlios_emulator_has_no_aes():
    tpm, srk = berlios()
    caps = capability_answers(tpm)
    assert {k for k, v in caps.items() if v == b"\x01"} == {"TRANS_ALG 7", "AUTH_ENCRYPT 10"}
    for attrs, alg, es, _ in ESTABLISH:
        want = 0 if not attrs & ENCRYPT else (
            RC.TPM_BAD_KEY_PROPERTY if alg != ALG_MGF1 else RC.TPM_INAPPROPRIATE_ENC)
        assert establish_rc(tpm, srk, attrs, alg, es) == want, (alg, es)
    r = run(tpm, 0xC1, ORD_OSAP, u16(0x0604) + u32(KH_SRK) + os.urandom(20))
    assert r.rc == RC.TPM_INAPPROPRIATE_ENC


@settings(max_examples=150, deadline=None)
@given(key=st.binary(min_size=16, max_size=20), high=st.binary(min_size=12, max_size=12),
       low=st.one_of(st.integers(0xFFFFFFF0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF)),
       data=st.binary(max_size=300))
def test_engine_ctr_matches_libtpms_construction(key, high, low, data):
    from pyxl.tpm.crypto import aes128_ctr
    counter = high + low.to_bytes(4, "big")
    assert aes128_ctr(key, counter, data) == ctr(key, counter, data)


def test_libtpms_ctr_counter_wraps_in_its_low_word():
    """The engine's AES-CTR (cryptography's modes.CTR, cut at the wrap)
    against the ECB construction above, across a low-word wrap."""
    from pyxl.tpm.crypto import aes128_ctr, aes128_ofb
    key = os.urandom(20)
    for low in (b"\xff\xff\xff\xfd", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"):
        counter = os.urandom(12) + low + os.urandom(4)
        data = os.urandom(77)
        assert aes128_ctr(key, counter, data) == ctr(key, counter, data)
    iv = os.urandom(20)
    assert aes128_ofb(key, iv, data) == ofb(key, iv, data)
    # a 128-bit counter carry would differ
    counter = bytes(11) + b"\x00\xff\xff\xff\xff"
    full = Cipher(algorithms.AES(key[:16]), modes.CTR(counter)).encryptor().update(bytes(32))
    assert aes128_ctr(key, counter, bytes(32))[16:] != full[16:]


@pytest.mark.parametrize("kind", ["row", "blob"])
def test_aes_dsap_delegates_creation(kind):
    aes_dsap_delegates_creation(kind)


def test_transport_ordinals_mark_persistent_state_by_what_they_wrap():
    """Transport sessions are volatile: ExecuteTransport of a read-only command
    leaves persistent_changed FALSE (no state write by tpm-serve), a wrapped
    NV write makes it TRUE."""
    tpm, srk = owned()
    idx = 0x00011A02
    pub = S.TPM_NV_DATA_PUBLIC(idx, permission=S.TPM_NV_ATTRIBUTES(C.TPM_NV_PER_AUTHWRITE),
                               dataSize=8)
    s = Session(tpm, "osap", C.TPM_ET_OWNER, KH_OWNER, OWNER)
    assert auth1(tpm, ORD_NV_DEFINE, b"", pub.to_bytes() + s.enc_auth(AREA_AUTH), None,
                 sess=s)[0].rc == 0
    t = AesTransport(tpm, ENCRYPT | LOG, ES_CTR, srk)
    tpm.dump()
    assert Rsp(t.execute(T.getrandom(8))).rc == 0
    assert not tpm._dirty                 # the fast path: no dump to compare
    assert not tpm.persistent_changed
    params = u32(idx) + u32(0) + u32(8) + b"8 bytes!"
    o = Session(tpm)
    rsp = t.execute(frame(0xC2, ORD_NV_WRITE_AUTH, params + o.trailer(ORD_NV_WRITE_AUTH, params,
                                                                        AREA_AUTH)),
                    auth_len=45, rsp_auth_len=41)
    assert Rsp(rsp).rc == 0
    assert tpm.persistent_changed
