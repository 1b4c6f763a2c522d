"""Identities, certification, counters, ChangeAuth, the TSC and DIR commands."""

import os
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from engine_helpers import (OAEP_TCPA, OWNER, SRK, Session, auth1, auth2, cap_value,
                            create_wrap_key, key_template, load_key2, new_tpm, parse_pubkey,
                            read_pubek, run, sha1, take_ownership, u16, u32)

from pyxl.tpm import constants as C
from pyxl.tpm import structures as S
from pyxl.tpm.marshal import Reader

RC = C.TPM_RESULT
IDAUTH = b"i" * 20


@pytest.fixture(scope="module")
def world():
    t = new_tpm()
    ek = read_pubek(t)
    take_ownership(t)
    return t, ek


def make_identity(tpm, label=b"L" * 20):
    s_srk = Session(tpm)
    s_own = Session(tpm, "osap", 2, 0x40000001, OWNER)
    params = s_own.enc_auth(IDAUTH) + label + key_template(usage=0x12, es=1, ss=2).to_bytes()
    r, out = auth2(tpm, 0x79, b"", params, s_srk, SRK, s_own, None)
    assert r.rc == 0, r
    rd = Reader(out)
    key = S.TPM_KEY.unmarshal(rd)
    binding = rd.sized32()
    return key, binding


def test_make_identity_binding_verifies(world):
    tpm, _ = world
    key, binding = make_identity(tpm)
    assert key.keyUsage == 0x12
    pub, _ = parse_pubkey(key.pubkey().to_bytes())
    contents = bytes([1, 1, 0, 0]) + u32(0x79) + b"L" * 20 + key.pubkey().to_bytes()
    pub.verify(binding, contents, padding.PKCS1v15(), hashes.SHA1())


def test_activate_identity_and_quote2(world):
    tpm, ek = world
    key, _ = make_identity(tpm)
    h = load_key2(tpm, key.to_bytes())
    sym = S.TPM_SYMMETRIC_KEY(C.TPM_ALG_AES128, C.TPM_ES_SYM_CTR, os.urandom(16))
    no_pcrs = S.TPM_PCR_INFO_SHORT(S.TPM_PCR_SELECTION(bytes(3)), 0x1F, bytes(20))
    act = S.TPM_EK_BLOB_ACTIVATE(sym, sha1(key.pubkey().to_bytes()), no_pcrs)
    blob = ek.encrypt(S.TPM_EK_BLOB(1, act.to_bytes()).to_bytes(), OAEP_TCPA)
    r, out = auth2(tpm, 0x7A, u32(h), u32(len(blob)) + blob, Session(tpm), IDAUTH,
                   Session(tpm), OWNER)
    assert r.rc == 0 and S.TPM_SYMMETRIC_KEY.from_bytes(out) == sym
    # the 1.1 form, and a blob for another identity
    ca = S.TPM_ASYM_CA_CONTENTS(sym, sha1(key.pubkey().to_bytes()))
    blob = ek.encrypt(ca.to_bytes(), OAEP_TCPA)
    r, out = auth2(tpm, 0x7A, u32(h), u32(len(blob)) + blob, Session(tpm), IDAUTH,
                   Session(tpm), OWNER)
    assert r.rc == 0 and S.TPM_SYMMETRIC_KEY.from_bytes(out) == sym
    blob = ek.encrypt(S.TPM_ASYM_CA_CONTENTS(sym, bytes(20)).to_bytes(), OAEP_TCPA)
    r, _ = auth2(tpm, 0x7A, u32(h), u32(len(blob)) + blob, Session(tpm), IDAUTH,
                 Session(tpm), OWNER)
    assert r.rc == RC.TPM_BAD_PARAMETER
    # Quote2 with the identity key, checked against TPM_QUOTE_INFO2 built here
    nonce = os.urandom(20)
    sel = S.TPM_PCR_SELECTION.of([0, 16])
    r, out = auth1(tpm, 0x3E, u32(h), nonce + sel.to_bytes() + b"\x01", IDAUTH)
    assert r.rc == 0
    rd = Reader(out)
    short = S.TPM_PCR_INFO_SHORT.unmarshal(rd)
    version = rd.sized32()
    sig = rd.sized32()
    vals = run(tpm, 0xC1, 0x15, u32(0)).body + run(tpm, 0xC1, 0x15, u32(16)).body
    assert short.digestAtRelease == sha1(S.TPM_PCR_COMPOSITE(sel, vals).to_bytes())
    assert short.localityAtRelease == 1
    assert version == cap_value(tpm, 0x1A)
    signed = u16(0x36) + b"QUT2" + nonce + short.to_bytes() + version
    parse_pubkey(key.pubkey().to_bytes())[0].verify(sig, signed, padding.PKCS1v15(), hashes.SHA1())
    run(tpm, 0xC1, 0xBA, u32(h) + u32(1))


def test_certify_key(world):
    tpm, _ = world
    parent = load_key2(tpm, create_wrap_key(tpm))
    signer_blob = create_wrap_key(tpm, parent, b"k" * 20, b"s" * 20,
                                  key_template(usage=0x10, es=1, ss=2), entity=(1, parent))
    signer = load_key2(tpm, signer_blob, parent, b"k" * 20)
    nonce = os.urandom(20)
    r, out = auth2(tpm, 0x32, u32(signer) + u32(parent), nonce, Session(tpm), b"s" * 20,
                   Session(tpm), b"k" * 20)
    assert r.rc == 0
    rd = Reader(out)
    info = S.TPM_CERTIFY_INFO.unmarshal(rd)
    sig = rd.sized32()
    assert info.data == nonce and info.keyUsage == 0x11
    pub_out = auth1(tpm, 0x21, u32(parent), b"", b"k" * 20)[1]
    modulus = parse_pubkey(pub_out)[0].public_numbers().n.to_bytes(256, "big")
    assert info.pubkeyDigest == sha1(modulus)             # the bare modulus, as both peers
    pub = parse_pubkey(S.TPM_KEY.from_bytes(signer_blob).pubkey().to_bytes())[0]
    pub.verify(sig, info.to_bytes(), padding.PKCS1v15(), hashes.SHA1())
    for h in (signer, parent):
        run(tpm, 0xC1, 0xBA, u32(h) + u32(1))


def test_change_auth_of_sealed_data(world):
    tpm, _ = world
    h = load_key2(tpm, create_wrap_key(tpm))
    s = Session(tpm, "osap", 1, h, b"k" * 20)
    params = s.enc_auth(b"d" * 20) + u32(0) + u32(3) + b"abc"
    r, out = auth1(tpm, 0x17, u32(h), params, None, sess=s)
    sealed = S.TPM_STORED_DATA.from_bytes(out)
    s1 = Session(tpm, "osap", 1, h, b"k" * 20)
    params = u16(4) + s1.enc_auth(b"e" * 20) + u16(3) + u32(len(sealed.encData)) + sealed.encData
    r, out = auth2(tpm, 0x0C, u32(h), params, s1, None, Session(tpm), b"d" * 20)
    assert r.rc == 0
    sealed.encData = out[4:]
    blob = sealed.to_bytes()
    s1, s2 = Session(tpm, "osap", 1, h, b"k" * 20), Session(tpm)
    r, out = auth2(tpm, 0x18, u32(h), blob, s1, None, s2, b"e" * 20)
    assert r.rc == 0 and out[4:] == b"abc"
    run(tpm, 0xC1, 0xBA, u32(h) + u32(1))


def test_counters(world):
    tpm, _ = world
    s = Session(tpm, "osap", 2, 0x40000001, OWNER)
    r, out = auth1(tpm, 0xDC, b"", s.enc_auth(b"c" * 20) + b"CNT1", None, sess=s)
    assert r.rc == 0
    cid = struct.unpack(">I", out[:4])[0]
    first = S.TPM_COUNTER_VALUE.from_bytes(out[4:])
    assert first.label == b"CNT1" and first.counter >= 1
    assert cap_value(tpm, 0x14, u32(6)) == u16(1) + u32(cid)
    r, out = auth1(tpm, 0xDD, b"", u32(cid), b"c" * 20)
    assert r.rc == 0 and S.TPM_COUNTER_VALUE.from_bytes(out).counter == first.counter + 1
    assert cap_value(tpm, 5, u32(0x122)) == u32(cid)
    r = run(tpm, 0xC1, 0xDE, u32(cid))
    assert r.rc == 0 and S.TPM_COUNTER_VALUE.from_bytes(r.body).counter == first.counter + 1
    # a second counter cannot be incremented in the same boot
    s = Session(tpm, "osap", 2, 0x40000001, OWNER)
    r, out = auth1(tpm, 0xDC, b"", s.enc_auth(b"c" * 20) + b"CNT2", None, sess=s)
    cid2 = struct.unpack(">I", out[:4])[0]
    assert S.TPM_COUNTER_VALUE.from_bytes(out[4:]).counter > first.counter + 1
    assert auth1(tpm, 0xDD, b"", u32(cid2), b"c" * 20)[0].rc == RC.TPM_BAD_COUNTER
    # counters survive a reload, the active one does not
    from pyxl.tpm import TPM
    t2 = TPM.load(tpm.dump())
    t2.power_on()
    assert auth1(t2, 0xDD, b"", u32(cid2), b"c" * 20)[0].rc == 0
    assert auth1(tpm, 0xDF, b"", u32(cid2), b"c" * 20)[0].rc == 0        # ReleaseCounter
    assert auth1(tpm, 0xE0, b"", u32(cid), OWNER)[0].rc == 0             # ReleaseCounterOwner
    assert run(tpm, 0xC1, 0xDE, u32(cid)).rc == RC.TPM_BAD_COUNTER


def test_tsc_physical_presence(world):
    tpm, _ = world
    assert run(tpm, 0xC1, 0x4000000A, u16(0x0008)).rc == RC.TPM_BAD_PARAMETER   # not cmd-enabled
    assert run(tpm, 0xC1, 0x4000000A, u16(0x0020)).rc == 0                      # CMD_ENABLE
    assert run(tpm, 0xC1, 0x4000000A, u16(0x0008)).rc == 0                      # PRESENT
    assert cap_value(tpm, 4, u32(0x109))[4] == 1
    assert run(tpm, 0xC1, 0x4000000A, u16(0x0004)).rc == 0                      # LOCK
    assert run(tpm, 0xC1, 0x4000000A, u16(0x0008)).rc == RC.TPM_BAD_PARAMETER
    assert run(tpm, 0xC1, 0x4000000A, u16(0x0018)).rc == RC.TPM_BAD_PARAMETER
    assert run(tpm, 0xC1, 0x4000000B).rc == RC.TPM_BAD_LOCALITY
    assert run(tpm, 0xC1, 0x4000000B, locality=3).rc == 0


def test_dir_commands(world):
    tpm, _ = world
    assert auth1(tpm, 0x19, b"", u32(0) + b"D" * 20, OWNER)[0].rc == 0
    assert run(tpm, 0xC1, 0x1A, u32(0)).body == b"D" * 20
    assert run(tpm, 0xC1, 0x1A, u32(1)).rc == RC.TPM_BADINDEX


def test_reset_and_init():
    tpm = new_tpm()
    s = Session(tpm)
    assert run(tpm, 0xC1, 0x5A).rc == 0
    assert run(tpm, 0xC1, 0xBA, u32(s.handle) + u32(2)).rc == RC.TPM_INVALID_AUTHHANDLE
    assert run(tpm, 0xC1, 0x97).rc == 0
    assert run(tpm, 0xC1, 0x46, u32(1)).rc == RC.TPM_INVALID_POSTINIT
    assert run(tpm, 0xC1, 0x99, u16(1)).rc == 0


def test_key_and_session_contexts(world):
    tpm, _ = world
    h = load_key2(tpm, create_wrap_key(tpm))
    r = run(tpm, 0xC1, 0xB8, u32(h) + u32(1) + b"L" * 16)               # SaveContext
    assert r.rc == 0
    blob = r.body[4:]
    assert run(tpm, 0xC1, 0xBA, u32(h) + u32(1)).rc == 0
    r = run(tpm, 0xC1, 0xB9, u32(h) + b"\x01" + u32(len(blob)) + blob)   # LoadContext
    assert r.rc == 0
    h2 = struct.unpack(">I", r.body)[0]
    assert h2 == h
    # the reloaded key works (seal needs its auth), a tampered blob does not load
    s = Session(tpm, "osap", 1, h2, b"k" * 20)
    params = s.enc_auth(b"d" * 20) + u32(0) + u32(1) + b"x"
    assert auth1(tpm, 0x17, u32(h2), params, None, sess=s)[0].rc == 0
    bad = bytearray(blob)
    bad[-1] ^= 1          # the sensitive data's padding: libtpms decrypts first
    assert run(tpm, 0xC1, 0xB5, u32(len(bad)) + bytes(bad)).rc == RC.TPM_DECRYPT_ERROR
    bad = bytearray(blob)
    bad[30] ^= 1          # the integrity digest (after tag, type, handle, label, count)
    assert run(tpm, 0xC1, 0xB5, u32(len(bad)) + bytes(bad)).rc == RC.TPM_BADCONTEXT
    # 1.1 forms; a key context dies with TPM_Startup(ST_CLEAR)
    r = run(tpm, 0xC1, 0xB4, u32(h2))
    kblob = r.body[4:]
    assert r.rc == 0 and run(tpm, 0xC1, 0xB5, u32(len(kblob)) + kblob).rc == 0
    # sessions: saved once, loaded once, HMACs keep rolling
    sess = Session(tpm)
    r = run(tpm, 0xC1, 0xB6, u32(sess.handle))
    ablob = r.body[4:]
    assert run(tpm, 0xC1, 0xBA, u32(sess.handle) + u32(2)).rc == RC.TPM_INVALID_AUTHHANDLE
    r = run(tpm, 0xC1, 0xB7, u32(len(ablob)) + ablob)
    assert r.rc == 0
    sess.handle = struct.unpack(">I", r.body)[0]
    assert auth1(tpm, 0x66, b"", b"", OWNER, sess=sess)[0].rc == 0
    assert run(tpm, 0xC1, 0xB7, u32(len(ablob)) + ablob).rc == RC.TPM_BADCONTEXT
    tpm.power_on("clear")
    assert run(tpm, 0xC1, 0xB5, u32(len(kblob)) + kblob).rc == RC.TPM_BADCONTEXT


def test_tickstampblob(world):
    tpm, _ = world
    parent = load_key2(tpm, create_wrap_key(tpm))
    blob = create_wrap_key(tpm, parent, b"k" * 20, b"s" * 20,
                           key_template(usage=0x10, es=1, ss=2), entity=(1, parent))
    h = load_key2(tpm, blob, parent, b"k" * 20)
    nonce, digest = os.urandom(20), sha1(b"stamp me")
    r, out = auth1(tpm, 0xF2, u32(h), nonce + digest, b"s" * 20)
    assert r.rc == 0
    ticks = S.TPM_CURRENT_TICKS.unmarshal(Reader(out))
    tb = ticks.to_bytes()
    sig = out[len(tb) + 4:]
    signed = u16(5) + b"TSTP" + nonce + u32(20 + len(tb)) + digest + tb
    pub = parse_pubkey(S.TPM_KEY.from_bytes(blob).pubkey().to_bytes())[0]
    pub.verify(sig, signed, padding.PKCS1v15(), hashes.SHA1())
    for k in (h, parent):
        run(tpm, 0xC1, 0xBA, u32(k) + u32(1))


def test_audit_digest_chain():
    tpm = new_tpm()
    take_ownership(tpm)
    # the Xen vTPM audits nothing by default
    r = run(tpm, 0xC1, 0x85, u32(0))
    assert r.rc == 0 and r.body[10:30] == bytes(20) and r.body[-4:] == u32(0)
    assert auth1(tpm, 0x8D, b"", u32(0x15) + b"\x01", OWNER)[0].rc == 0      # audit PcrRead
    assert auth1(tpm, 0x8D, b"", u32(0x85) + b"\x01", OWNER)[0].rc == RC.TPM_BAD_PARAMETER
    before = run(tpm, 0xC1, 0x85, u32(0)).body
    counter = S.TPM_COUNTER_VALUE.from_bytes(before[:10])
    assert before[10:30] == bytes(20)
    pcr = run(tpm, 0xC1, 0x15, u32(3))
    after = run(tpm, 0xC1, 0x85, u32(0)).body
    c2 = S.TPM_COUNTER_VALUE.from_bytes(after[:10])
    assert c2.counter == counter.counter + 1                  # a new chain started
    ev_in = u16(0x12) + sha1(u32(0x15) + u32(3)) + c2.to_bytes()
    ev_out = u16(0x13) + sha1(u32(0) + u32(0x15) + pcr.body) + c2.to_bytes()
    assert after[10:30] == sha1(sha1(bytes(20) + ev_in) + ev_out)
    assert after[30:31] == b"\x00" and after[31:] == u32(4) + u32(0x15)
    # signed by an identity key, closing the chain
    key, _ = make_identity(tpm)
    h = load_key2(tpm, key.to_bytes())
    nonce = os.urandom(20)
    r, out = auth1(tpm, 0x86, u32(h), b"\x01" + nonce, IDAUTH)
    assert r.rc == 0
    counter_b, digest, ord_digest, sig = out[:10], out[10:30], out[30:50], out[54:]
    assert ord_digest == sha1(u32(0x15))
    info = u16(5) + b"ADIG" + nonce + u32(50) + digest + counter_b + ord_digest
    parse_pubkey(key.pubkey().to_bytes())[0].verify(sig, info, padding.PKCS1v15(), hashes.SHA1())
    assert run(tpm, 0xC1, 0x85, u32(0)).body[10:30] == bytes(20)


def test_libtpms_like_identity_audits_owner_commands():
    from pyxl.tpm import TPM
    from pyxl.tpm.identity import IBM_SWTPM_IDENTITY
    from engine_helpers import key_pool
    tpm = TPM(IBM_SWTPM_IDENTITY, key_source=key_pool())
    tpm.power_on()
    r = run(tpm, 0xC1, 0x85, u32(0))
    n = struct.unpack(">I", r.body[31:35])[0]
    assert n == 4 * 22 and u32(0x0D) in r.body[35:]          # TakeOwnership audited
    read_pubek(tpm)                                           # audited: the digest moves
    assert run(tpm, 0xC1, 0x85, u32(0)).body[10:30] != bytes(20)



def test_certify_key2(world):
    """TPM_CertifyKey2: a TPM_CERTIFY_INFO2 over a PCR-bound key, signed by a
    signing key; fields and signature checked here with `cryptography`."""
    tpm, _ = world
    parent = load_key2(tpm, create_wrap_key(tpm))
    signer_blob = create_wrap_key(tpm, parent, b"k" * 20, b"s" * 20,
                                  key_template(usage=0x10, es=1, ss=2), entity=(1, parent))
    signer = load_key2(tpm, signer_blob, parent, b"k" * 20)
    sel = S.TPM_PCR_SELECTION.of([13])
    release = sha1(S.TPM_PCR_COMPOSITE(sel, run(tpm, 0xC1, 0x15, u32(13)).body).to_bytes())
    # (localityAtCreation 0 is illegal: TPM_LocalitySelection_CheckLegal)
    pcr = S.TPM_PCR_INFO_LONG(1, 0x03, sel, sel, bytes(20), release).to_bytes()
    bound_blob = create_wrap_key(tpm, parent, b"k" * 20, b"b" * 20,
                                 key_template(usage=0x14, es=3, ss=1, pcr_info=pcr, key12=True),
                                 entity=(1, parent))
    bound = load_key2(tpm, bound_blob, parent, b"k" * 20)
    signer_pub = parse_pubkey(S.TPM_KEY.from_bytes(signer_blob).pubkey().to_bytes())[0]
    nonce, mig = os.urandom(20), os.urandom(20)
    # AUTH2: the certified key's auth first, then the certifying key's
    r, out = auth2(tpm, 0x33, u32(bound) + u32(signer), mig + nonce, Session(tpm), b"b" * 20,
                   Session(tpm), b"s" * 20)
    assert r.rc == 0, r
    rd = Reader(out)
    info = S.TPM_CERTIFY_INFO2.unmarshal(rd)
    sig = rd.sized32()
    assert not rd.remaining
    raw = out[:len(out) - 4 - len(sig)]
    assert raw[:4] == bytes.fromhex("00290001")              # tag, fill, TPM_PT_ASYM
    signer_pub.verify(sig, raw, padding.PKCS1v15(), hashes.SHA1())
    key = S.TPM_KEY12.from_bytes(bound_blob)
    assert (info.keyUsage, info.data, info.migrationAuthority) == (0x14, nonce, b"")
    assert info.pubkeyDigest == sha1(key.pubKey.key)
    short = S.TPM_PCR_INFO_SHORT.from_bytes(info.pcrInfo)
    assert (short.pcrSelection, short.localityAtRelease, short.digestAtRelease) == (sel, 3, release)
    # AUTH1 authorizes the certifying key only: refused for a key that needs auth
    r, _ = auth1(tpm, 0x33, u32(bound) + u32(signer), mig + nonce, b"s" * 20)
    assert r.rc == RC.TPM_AUTHFAIL
    # a storage key cannot certify (its sigScheme is NONE)
    r, _ = auth2(tpm, 0x33, u32(bound) + u32(parent), mig + nonce, Session(tpm), b"b" * 20,
                 Session(tpm), b"k" * 20)
    assert r.rc == RC.TPM_BAD_KEY_PROPERTY
    # the key's PCRs moved: no certificate
    run(tpm, 0xC1, 0x14, u32(13) + os.urandom(20))
    r, _ = auth2(tpm, 0x33, u32(bound) + u32(signer), mig + nonce, Session(tpm), b"b" * 20,
                 Session(tpm), b"s" * 20)
    assert r.rc == RC.TPM_WRONGPCRVAL
    for h in (bound, signer, parent):
        run(tpm, 0xC1, 0xBA, u32(h) + u32(1))


def test_change_auth_asym(world):
    """ChangeAuthAsymStart certifies an ephemeral key with an identity key;
    ChangeAuthAsymFinish gives a wrapped key a new secret sent encrypted to it."""
    import hmac as _hmac
    import hashlib
    from cryptography.hazmat.primitives.asymmetric import rsa as _rsa
    tpm, _ = world
    idk, _ = make_identity(tpm)
    idh = load_key2(tpm, idk.to_bytes())
    id_pub = parse_pubkey(idk.pubkey().to_bytes())[0]
    parent = load_key2(tpm, create_wrap_key(tpm))
    old, new = b"o" * 20, b"n" * 20
    child = create_wrap_key(tpm, parent, b"k" * 20, old, entity=(1, parent))
    nonce = os.urandom(20)
    parms = S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes()).to_bytes()
    r, out = auth1(tpm, 0x0E, u32(idh), nonce + parms, IDAUTH)
    assert r.rc == 0, r
    rd = Reader(out)
    info = S.TPM_CERTIFY_INFO.unmarshal(rd)
    info_bytes = out[:rd.pos]
    sig = rd.sized32()
    eph = rd.u32()
    temp = S.TPM_KEY.unmarshal(rd)
    assert not rd.remaining and temp.encData == b""
    id_pub.verify(sig, info_bytes, padding.PKCS1v15(), hashes.SHA1())
    assert (info.keyUsage, info.keyFlags, info.authDataUsage, info.data) == (0x13, 4, 0, nonce)
    assert info.pubkeyDigest == sha1(temp.pubKey.key)
    eph_pub = _rsa.RSAPublicNumbers(65537, int.from_bytes(temp.pubKey.key, "big")).public_key()
    # Finish: newAuthLink = HMAC(old, new); encNewAuth = OAEP(new || n1) to the ephemeral key
    n1 = os.urandom(20)
    link = _hmac.new(old, new, hashlib.sha1).digest()
    enc_new = eph_pub.encrypt(new + n1, OAEP_TCPA)
    enc_data = S.TPM_KEY.from_bytes(child).encData
    params = u16(0x0005) + link + u32(len(enc_new)) + enc_new + u32(len(enc_data)) + enc_data
    bad = u16(0x0005) + _hmac.new(b"x" * 20, new, hashlib.sha1).digest() + params[22:]
    assert auth1(tpm, 0x0F, u32(parent) + u32(eph), bad, b"k" * 20)[0].rc == RC.TPM_AUTHFAIL
    r, out = auth1(tpm, 0x0F, u32(parent) + u32(eph), params, b"k" * 20)
    assert r.rc == 0, r
    rd = Reader(out)
    out_data, salt, proof = rd.sized32(), rd.digest(), rd.digest()
    assert proof == _hmac.new(new, salt + n1, hashlib.sha1).digest()
    # the ephemeral key is gone; the re-wrapped key answers to the new secret only
    assert auth1(tpm, 0x0F, u32(parent) + u32(eph), params, b"k" * 20)[0].rc == \
        RC.TPM_INVALID_KEYHANDLE
    blob = S.TPM_KEY.from_bytes(child)
    blob.encData = out_data
    h = load_key2(tpm, blob.to_bytes(), parent, b"k" * 20)
    assert auth1(tpm, 0x21, u32(h), b"", old)[0].rc == RC.TPM_AUTHFAIL
    assert auth1(tpm, 0x21, u32(h), b"", new)[0].rc == 0
    # only identity keys certify; only RSA/OAEP/no-signature ephemeral keys
    assert auth1(tpm, 0x0E, u32(parent), nonce + parms, b"k" * 20)[0].rc == \
        RC.TPM_INVALID_KEYUSAGE
    weak = S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(256, 2, b"").to_bytes()).to_bytes()
    assert auth1(tpm, 0x0E, u32(idh), nonce + weak, IDAUTH)[0].rc == RC.TPM_BAD_KEY_PROPERTY
    for k in (h, parent, idh):
        run(tpm, 0xC1, 0xBA, u32(k) + u32(1))


def _activate(tpm, h, ek, plain):
    blob = ek.encrypt(plain, OAEP_TCPA)
    return auth2(tpm, 0x7A, u32(h), u32(len(blob)) + blob, Session(tpm), IDAUTH,
                 Session(tpm), OWNER)


def test_activate_identity_ek_blob_types(world):
    """TPM_EK_BLOB.blob is a TPM_EK_BLOB_ACTIVATE when ekType is
    TPM_EK_TYPE_ACTIVATE; any other ekType is TPM_BAD_TYPE before the blob is
    looked at, trailing bytes or not (libtpms TPM_Process_ActivateIdentity
    step 8a, the TPM emulator's TPM_ActivateIdentity: neither reads past the
    TPM_EK_BLOB); a blob that is not a TPM_EK_BLOB_ACTIVATE is
    TPM_BAD_PARAMETER, as the 1.1 form's."""
    tpm, ek = world
    key, _ = make_identity(tpm)
    h = load_key2(tpm, key.to_bytes())
    sym = S.TPM_SYMMETRIC_KEY(C.TPM_ALG_AES128, C.TPM_ES_SYM_CTR, os.urandom(16))
    no_pcrs = S.TPM_PCR_INFO_SHORT(S.TPM_PCR_SELECTION(bytes(3)), 0x1F, bytes(20))
    act = S.TPM_EK_BLOB_ACTIVATE(sym, sha1(key.pubkey().to_bytes()), no_pcrs).to_bytes()

    def ek_blob(ek_type, blob):
        return u16(0x000C) + u16(ek_type) + u32(len(blob)) + blob

    r, out = _activate(tpm, h, ek, ek_blob(1, act))
    assert r.rc == 0 and S.TPM_SYMMETRIC_KEY.from_bytes(out) == sym
    for plain in (ek_blob(2, act), ek_blob(2, act) + b"\0", ek_blob(0x0698, b"\xd3\xba")):
        assert _activate(tpm, h, ek, plain)[0].rc == RC.TPM_BAD_TYPE, plain.hex()
    bad_locality = act[:-21] + b"\0" + act[-20:]
    for plain in (ek_blob(1, act[:-1]), ek_blob(1, act + b"\0"), ek_blob(1, act) + b"\0",
                  ek_blob(1, bad_locality), ek_blob(1, b"\0\x2c" + act[2:]),
                  ek_blob(1, act)[:-1]):
        assert _activate(tpm, h, ek, plain)[0].rc == RC.TPM_BAD_PARAMETER, plain.hex()
    run(tpm, 0xC1, 0xBA, u32(h) + u32(1))
