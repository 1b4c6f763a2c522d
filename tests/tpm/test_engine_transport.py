"""Transport sessions (EstablishTransport / ExecuteTransport /
ReleaseTransportSigned): every HMAC, the MGF1 XOR stream, the log chain and
the signature are computed here, independently of the engine's code."""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from engine_helpers import (OAEP_TCPA, SRK, Rsp, Session, cap_value, create_wrap_key,
                            frame, hmac1, key_template, load_key2, new_tpm, parse_pubkey, run,
                            sha1, take_ownership, u16, u32)
from pyxl.tpm import constants as C
from pyxl.tpm import structures as S
from pyxl.tpm.identity import XEN_VTPM_IDENTITY, behaving_as

ENCRYPT, LOG, EXCLUSIVE = 1, 2, 4
KH_TRANSPORT = 0x40000003
EST, EXE, REL = 0xE6, 0xE7, 0xE8


def mgf1(seed: bytes, n: int) -> bytes:
    out = b""
    i = 0
    while len(out) < n:
        out += sha1(seed, u32(i))
        i += 1
    return out[:n]


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def trans_public(attrs, alg=7, es=1):
    return u16(0x1E) + u32(attrs) + u32(alg) + u16(es)


def log_in(digest, params, keyhash=bytes(20)):
    return sha1(digest, u16(0x10) + params + keyhash)


def log_out(digest, ticks_struct, params, locality):
    return sha1(digest, u16(0x11) + ticks_struct + params + u32(locality))


class Transport:
    """The client side of one transport session."""

    def __init__(self, tpm, attrs, enc_key=None, key_auth=None, locality=0, alg=7, es=1):
        self.tpm = tpm
        self.attrs = attrs
        self.auth = os.urandom(20)
        self.locality = locality
        pub = trans_public(attrs, alg, es)
        if enc_key is None:
            secret = self.auth
            params = u32(KH_TRANSPORT) + pub + u32(len(secret)) + secret
            r = run(tpm, 0xC1, EST, params, locality)
        else:
            handle, pubkey = enc_key
            secret = pubkey.encrypt(u16(0x1D) + self.auth, OAEP_TCPA)
            body = pub + u32(len(secret)) + secret
            s = Session(tpm)
            r = run(tpm, 0xC2, EST, u32(handle) + body + s.trailer(EST, body, key_auth),
                    locality)
            assert r.rc == 0, r
            s.check_response(EST, r, r.body[4:-41], r.body[-41:], key=key_auth)
        assert r.rc == 0, r
        b = r.body
        self.handle = struct.unpack(">I", b[:4])[0]
        assert struct.unpack(">I", b[4:8])[0] == locality
        ticks = b[8:8 + 32]
        assert ticks[:2] == u16(0x14)
        self.ticks = ticks
        self.nonce_even = b[40:60]
        self.digest = bytes(20)
        if attrs & LOG:
            self.digest = log_in(self.digest, sha1(u32(EST), pub, u32(len(secret)), secret))
            out = sha1(u32(0), u32(EST), u32(locality), ticks, self.nonce_even)
            self.digest = log_out(self.digest, ticks, out, locality)

    def execute(self, inner: bytes, in_handles=0, out_handles=0, cont=True, keyhash=bytes(20),
                auth_len=0, rsp_auth_len=0):
        """Wrap an inner frame; returns the decrypted inner response (bytes)."""
        odd = os.urandom(20)
        e1 = 10 + in_handles
        len1 = len(inner) - e1 - auth_len
        ordw = inner[6:10]
        h1 = sha1(ordw, inner[e1:e1 + len1])
        wrapped = inner
        if self.attrs & ENCRYPT:
            wrapped = (inner[:e1] + self.crypt(inner[e1:e1 + len1], self.nonce_even, odd, b"in")
                       + inner[e1 + len1:])
        c = bytes([1 if cont else 0])
        in_digest = sha1(u32(EXE), u32(len(wrapped)), h1)
        mac = hmac1(self.auth, in_digest, self.nonce_even, odd, c)
        params = u32(len(wrapped)) + wrapped + u32(self.handle) + odd + c + mac
        r = run(self.tpm, 0xC2, EXE, params, self.locality)
        assert r.rc == 0, r
        assert r.tag == 0xC5
        b = r.body
        ct = b[:8]
        assert struct.unpack(">I", b[8:12])[0] == self.locality
        n = struct.unpack(">I", b[12:16])[0]
        rsp = b[16:16 + n]
        even, c2, res = b[16 + n:36 + n], b[36 + n:37 + n], b[37 + n:]
        assert len(res) == 20 and c2 == c
        rc = rsp[6:10]
        s2 = 10 + out_handles if rc == bytes(4) else 10
        len2 = len(rsp) - s2 - (rsp_auth_len if rc == bytes(4) else 0)
        if self.attrs & ENCRYPT and len2 and rc == bytes(4):
            rsp = rsp[:s2] + self.crypt(rsp[s2:s2 + len2], even, odd, b"out") + rsp[s2 + len2:]
        h2 = sha1(rc, ordw, rsp[s2:s2 + len2] if rc == bytes(4) else b"")
        out_digest = sha1(u32(0), u32(EXE), ct, u32(self.locality), u32(n), h2)
        assert res == hmac1(self.auth, out_digest, even, odd, c), "transport HMAC"
        self.nonce_even = even
        if self.attrs & LOG:
            self.digest = log_in(self.digest, h1, keyhash)
            self.last_h2 = h2
            self.last_ct = ct
        return rsp

    def crypt(self, data: bytes, nonce_even: bytes, odd: bytes, label: bytes) -> bytes:
        """The wrapped parameters' encryption: MGF1 XOR (AES: test_engine_transport_aes.py)."""
        return xor(data, mgf1(nonce_even + odd + label + self.auth, len(data)))


def owned():
    tpm = new_tpm()
    take_ownership(tpm)
    return tpm


def getrandom(n):
    return frame(0xC1, 0x46, u32(n))


def test_plain_logged_session_and_signed_release():
    tpm = owned()
    t = Transport(tpm, LOG)
    assert cap_value(tpm, 0x14, u32(4)) == u16(1) + u32(t.handle)    # TPM_CAP_HANDLE TRANS
    rsp = t.execute(getrandom(16))
    assert Rsp(rsp).rc == 0 and struct.unpack(">I", rsp[10:14])[0] == 16
    # the log-out entry needs the full TPM_CURRENT_TICKS the engine used; rebuild it
    # from the response's tick count and the GetTicks nonce
    gt = run(tpm, 0xC1, 0xF1)
    assert gt.rc == 0
    ticks = gt.body[:2] + t.last_ct + gt.body[10:]
    t.digest = log_out(t.digest, ticks, t.last_h2, 0)
    # a signing key for the release
    blob = create_wrap_key(tpm, template=key_template(usage=0x0010, es=1, ss=2),
                           usage_auth=b"s" * 20)
    kh = load_key2(tpm, blob)
    anti = os.urandom(20)
    ks = Session(tpm)
    odd = os.urandom(20)
    in_digest = sha1(u32(REL), anti)
    ktr = ks.trailer(REL, anti, b"s" * 20)
    ttr = u32(t.handle) + odd + b"\x01" + hmac1(t.auth, in_digest, t.nonce_even, odd, b"\x01")
    r = run(tpm, 0xC3, REL, u32(kh) + anti + ktr + ttr)
    assert r.rc == 0, r
    assert r.tag == 0xC6
    out = r.body[:-82]
    ks.check_response(REL, r, out, r.body[-82:-41])
    even, c, res = r.body[-41:-21], r.body[-21:-20], r.body[-20:]
    assert c == b"\x00"
    assert res == hmac1(t.auth, sha1(u32(0), u32(REL), out), even, odd, c)
    assert struct.unpack(">I", out[:4])[0] == 0
    ticks = out[4:36]
    digest = log_out(t.digest, ticks, in_digest, 0)
    n = struct.unpack(">I", out[36:40])[0]
    sig = out[40:40 + n]
    info = S.TPM_SIGN_INFO(b"TRAN", anti, digest).to_bytes()
    pub, _ = parse_pubkey(_pubkey_of(tpm, kh))
    pub.verify(sig, sha1(info), padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
    with pytest.raises(InvalidSignature):
        pub.verify(sig, sha1(info + b"x"), padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
    # the session is over
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)


def _pubkey_of(tpm, kh):
    s = Session(tpm)
    r = run(tpm, 0xC2, 0x21, u32(kh) + s.trailer(0x21, b"", b"s" * 20))
    assert r.rc == 0, r
    return r.body[:-41]


def test_encrypted_session_wraps_authorized_commands():
    tpm = new_tpm()
    srk = take_ownership(tpm)
    srk_pub = rsa.RSAPublicNumbers(65537, int.from_bytes(srk.pubKey.key, "big")).public_key()
    blob = create_wrap_key(tpm, usage_auth=b"k" * 20)
    kh = load_key2(tpm, blob)
    t = Transport(tpm, ENCRYPT | LOG, enc_key=(0x40000000, srk_pub), key_auth=SRK)
    # GetRandom: the request's and the response's parameters travel encrypted
    rsp = t.execute(getrandom(32))
    assert Rsp(rsp).rc == 0 and struct.unpack(">I", rsp[10:14])[0] == 32
    # an OIAP session opened inside the transport (its handle and nonce are not encrypted)
    rsp = t.execute(frame(0xC1, 0x0A), out_handles=24)
    sess_handle, even = struct.unpack(">I", rsp[10:14])[0], rsp[14:34]
    # GetPubKey through it: the inner HMAC is over the decrypted parameters, the log
    # names the key by the hash of its public key
    modulus = S.TPM_KEY.from_bytes(blob).pubKey
    odd = os.urandom(20)
    mac = hmac1(b"k" * 20, sha1(u32(0x21)), even, odd, b"\x00")
    inner = frame(0xC2, 0x21, u32(kh) + u32(sess_handle) + odd + b"\x00" + mac)
    rsp = t.execute(inner, in_handles=4, auth_len=45, rsp_auth_len=41,
                    keyhash=sha1(sha1(modulus.to_bytes())))
    assert Rsp(rsp).rc == 0
    pub, used = parse_pubkey(rsp[10:])
    tail = rsp[10 + used:]
    assert tail[21:] == hmac1(b"k" * 20, sha1(u32(0), u32(0x21), rsp[10:10 + used]), tail[:20],
                              odd, b"\x00")
    assert pub.public_numbers().n == int.from_bytes(modulus.key, "big")


def test_wrong_transport_hmac_ends_the_session():
    tpm = owned()
    t = Transport(tpm, 0)
    inner = getrandom(4)
    odd = os.urandom(20)
    r = run(tpm, 0xC2, EXE, u32(len(inner)) + inner + u32(t.handle) + odd + b"\x01" + bytes(20))
    assert r.rc == C.TPM_AUTH2FAIL
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)


def test_transport_ordinals_cannot_be_wrapped():
    tpm = owned()
    t = Transport(tpm, 0)
    inner = frame(0xC1, EST, u32(KH_TRANSPORT) + trans_public(0) + u32(20) + bytes(20))
    odd = os.urandom(20)
    h1 = sha1(u32(EST), inner[14:])
    mac = hmac1(t.auth, sha1(u32(EXE), u32(len(inner)), h1), t.nonce_even, odd, b"\x01")
    r = run(tpm, 0xC2, EXE, u32(len(inner)) + inner + u32(t.handle) + odd + b"\x01" + mac)
    assert r.rc == C.TPM_NO_WRAP_TRANSPORT
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)


def test_exclusive_session_ends_on_any_other_command():
    tpm = owned()
    t = Transport(tpm, EXCLUSIVE)
    t.execute(getrandom(1))
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)     # GetCapability itself ended it
    t2 = Transport(tpm, 0)
    t2.execute(getrandom(1))
    assert cap_value(tpm, 0x14, u32(4)) == u16(1) + u32(t2.handle)


def test_flush_specific_and_pid():
    tpm = owned()
    assert cap_value(tpm, 3, u16(7)) == b"\x01"     # TPM_CAP_PID TPM_PID_TRANSPORT
    t = Transport(tpm, LOG)
    assert run(tpm, 0xC1, 0xBA, u32(t.handle) + u32(4)).rc == 0
    assert run(tpm, 0xC1, 0xBA, u32(t.handle) + u32(4)).rc == C.TPM_INVALID_AUTHHANDLE
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)


def test_establish_checks():
    tpm = owned()
    # a plain secret cannot ask for encryption
    r = run(tpm, 0xC1, EST, u32(KH_TRANSPORT) + trans_public(ENCRYPT) + u32(20) + bytes(20))
    assert r.rc == C.TPM_BAD_SCHEME
    # a plain secret must be 20 bytes
    r = run(tpm, 0xC1, EST, u32(KH_TRANSPORT) + trans_public(0) + u32(19) + bytes(19))
    assert r.rc == C.TPM_BAD_PARAM_SIZE
    # a wrong structure tag
    r = run(tpm, 0xC1, EST, u32(KH_TRANSPORT) + u16(0x1F) + trans_public(0)[2:] + u32(20)
            + bytes(20))
    assert r.rc == C.TPM_INVALID_STRUCTURE


def test_wrapped_flush_of_its_own_session_ends_it():
    tpm = owned()
    t = Transport(tpm, LOG)
    inner = frame(0xC1, 0xBA, u32(t.handle) + u32(4))
    odd = os.urandom(20)
    h1 = sha1(u32(0xBA), inner[14:])
    mac = hmac1(t.auth, sha1(u32(EXE), u32(len(inner)), h1), t.nonce_even, odd, b"\x01")
    r = run(tpm, 0xC2, EXE, u32(len(inner)) + inner + u32(t.handle) + odd + b"\x01" + mac)
    assert r.rc == 0, r
    n = struct.unpack(">I", r.body[12:16])[0]
    assert Rsp(r.body[16:16 + n]).rc == 0
    assert r.body[16 + n + 20] == 0          # continueTransSession comes back FALSE
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)


def test_transport_alg_capability():
    emulator = new_tpm()                                  # the Xen vTPM: the Berlios emulator
    assert cap_value(emulator, 0x12, u32(7)) == b"\x01"  # TPM_ALG_MGF1
    assert cap_value(emulator, 0x12, u32(6)) == b"\x00"  # AES128: MGF1 only here
    tpm = new_tpm(identity=behaving_as(XEN_VTPM_IDENTITY, "libtpms"))
    assert cap_value(tpm, 0x12, u32(7)) == b"\x01"
    assert cap_value(tpm, 0x12, u32(6)) == b"\x01"      # AES128, as libtpms


def test_release_without_log_is_bad_mode():
    tpm = owned()
    t = Transport(tpm, 0)
    blob = create_wrap_key(tpm, template=key_template(usage=0x0010, es=1, ss=2, auth_usage=0))
    kh = load_key2(tpm, blob)
    anti = os.urandom(20)
    odd = os.urandom(20)
    mac = hmac1(t.auth, sha1(u32(REL), anti), t.nonce_even, odd, b"\x01")
    r = run(tpm, 0xC2, REL, u32(kh) + anti + u32(t.handle) + odd + b"\x01" + mac)
    assert r.rc == C.TPM_BAD_MODE
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)


def test_save_and_load_context_of_a_transport_session():
    tpm = owned()
    t = Transport(tpm, LOG)
    t.execute(getrandom(2))
    r = run(tpm, 0xC1, 0xB8, u32(t.handle) + u32(4) + b"transport-label!")
    assert r.rc == 0, r
    blob = r.body[4:]
    assert struct.unpack(">I", r.body[:4])[0] == len(blob)
    assert cap_value(tpm, 0x14, u32(4)) == u16(0)        # the session lives in the blob
    r = run(tpm, 0xC1, 0xB9, u32(t.handle) + b"\x01" + u32(len(blob)) + blob)
    assert r.rc == 0, r
    t.handle = struct.unpack(">I", r.body[:4])[0]
    assert cap_value(tpm, 0x14, u32(4)) == u16(1) + u32(t.handle)
    rsp = t.execute(getrandom(3))                         # same authData, same nonce chain
    assert Rsp(rsp).rc == 0 and struct.unpack(">I", rsp[10:14])[0] == 3
    # a session context loads once
    r = run(tpm, 0xC1, 0xB9, u32(t.handle) + b"\x00" + u32(len(blob)) + blob)
    assert r.rc == C.TPM_BADCONTEXT
