"""Test-side TPM 1.2 client for the engine tests: builds frames, runs OIAP /
OSAP authorization with HMACs computed here (hashlib/hmac, independent of the
engine's code), and hands out pre-generated RSA keys so suites stay fast."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.asymmetric import rsa

from pyxl.tpm import TPM
from pyxl.tpm.crypto import KeyPool, RSAKey

_POOL_KEYS: list[RSAKey] = []


def key_pool() -> KeyPool:
    """A fresh KeyPool over keys generated once per test process."""
    if not _POOL_KEYS:
        for _ in range(6):
            _POOL_KEYS.append(RSAKey.from_crypto(
                rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    return KeyPool(_POOL_KEYS)


def new_tpm(**kw) -> TPM:
    tpm = TPM(key_source=key_pool(), **kw)
    tpm.power_on("clear")
    return tpm


def frame(tag: int, ordinal: int, params: bytes = b"") -> bytes:
    return struct.pack(">HII", tag, 10 + len(params), ordinal) + params


def u32(v):
    return struct.pack(">I", v)


def u16(v):
    return struct.pack(">H", v)


def sha1(*parts):
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    return h.digest()


def hmac1(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha1).digest()


class Rsp:
    def __init__(self, raw: bytes):
        self.raw = raw
        self.tag, self.size, self.rc = struct.unpack(">HII", raw[:10])
        self.body = raw[10:]
        assert self.size == len(raw)

    def __repr__(self):
        return "Rsp(tag=%#x rc=%d body=%s)" % (self.tag, self.rc, self.body.hex())


def run(tpm, tag, ordinal, params=b"", locality=0) -> Rsp:
    return Rsp(tpm.execute(frame(tag, ordinal, params), locality))


def getcap(tpm, cap, sub=b"") -> Rsp:
    return run(tpm, 0xC1, 0x65, u32(cap) + u32(len(sub)) + sub)


def cap_value(tpm, cap, sub=b"") -> bytes:
    r = getcap(tpm, cap, sub)
    assert r.rc == 0, r
    n = struct.unpack(">I", r.body[:4])[0]
    assert len(r.body) == 4 + n
    return r.body[4:]


class Session:
    """An OIAP or OSAP session driven from the client side."""

    def __init__(self, tpm, kind="oiap", entity_type=None, entity_value=None, secret=None):
        self.tpm = tpm
        if kind == "oiap":
            r = run(tpm, 0xC1, 0x0A)
            assert r.rc == 0, r
            self.handle = struct.unpack(">I", r.body[:4])[0]
            self.nonce_even = r.body[4:24]
            self.shared = None
        else:
            odd_osap = os.urandom(20)
            r = run(tpm, 0xC1, 0x0B, u16(entity_type) + u32(entity_value) + odd_osap)
            assert r.rc == 0, r
            self.handle = struct.unpack(">I", r.body[:4])[0]
            self.nonce_even = r.body[4:24]
            even_osap = r.body[24:44]
            self.shared = hmac1(secret, even_osap, odd_osap)
        self.kind = kind

    def enc_auth(self, new_auth: bytes, odd: bytes | None = None) -> bytes:
        pad = sha1(self.shared, odd if odd is not None else self.nonce_even)
        return bytes(a ^ b for a, b in zip(new_auth, pad))

    def trailer(self, ordinal, hashed_params, secret=None, cont=False, nonce_odd=None):
        self.nonce_odd = nonce_odd or os.urandom(20)
        self.cont = 1 if cont else 0
        key = self.shared if self.kind == "osap" else secret
        self.key = key
        digest = sha1(u32(ordinal), hashed_params)
        auth = hmac1(key, digest, self.nonce_even, self.nonce_odd, bytes([self.cont]))
        return u32(self.handle) + self.nonce_odd + bytes([self.cont]) + auth

    def check_response(self, ordinal, rsp: Rsp, out_params: bytes, tail: bytes, key=None):
        """Verify the response HMAC and roll the nonce."""
        even, cont, res = tail[:20], tail[20], tail[21:41]
        digest = sha1(u32(0), u32(ordinal), out_params)
        want = hmac1(key or self.key, digest, even, self.nonce_odd, bytes([cont]))
        assert res == want, "response HMAC mismatch"
        self.nonce_even = even


def auth1(tpm, ordinal, handles: bytes, params: bytes, secret, sess=None, cont=False,
          out_skip=0, resp_key=None):
    """Run an AUTH1 command with an OIAP session (or the given one); check the
    response HMAC; returns (Rsp, out params)."""
    sess = sess or Session(tpm)
    tr = sess.trailer(ordinal, params, secret, cont=cont)
    r = run(tpm, 0xC2, ordinal, handles + params + tr)
    if r.rc == 0:
        assert r.tag == 0xC5
        out = r.body[:-41]
        sess.check_response(ordinal, r, out[out_skip:], r.body[-41:], key=resp_key)
        return r, out
    assert r.tag == 0xC4 and len(r.raw) == 10
    return r, b""


# ---------------------------------------------------------------- owner / keys

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

from pyxl.tpm import structures as S  # noqa: E402

OAEP_TCPA = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=b"TCPA")
OWNER = b"O" * 20
SRK = bytes(20)          # the well-known secret (tpm-tools -z)


def parse_pubkey(b: bytes):
    """TPM_PUBKEY -> (cryptography public key, bytes consumed)."""
    alg, es, ss, psize = struct.unpack(">IHHI", b[:12])
    klen = struct.unpack(">I", b[12 + psize:16 + psize])[0]
    n = int.from_bytes(b[16 + psize:16 + psize + klen], "big")
    return rsa.RSAPublicNumbers(65537, n).public_key(), 16 + psize + klen


def read_pubek(tpm):
    nonce = os.urandom(20)
    r = run(tpm, 0xC1, 0x7C, nonce)
    assert r.rc == 0, r
    pub, used = parse_pubkey(r.body)
    assert r.body[used:] == sha1(r.body[:used], nonce)
    return pub


def key_template(usage=0x0011, es=3, ss=1, bits=2048, flags=0, auth_usage=1, pcr_info=b"",
                 key12=False):
    parms = S.TPM_KEY_PARMS(1, es, ss, S.TPM_RSA_KEY_PARMS(bits, 2, b"").to_bytes())
    cls = S.TPM_KEY12 if key12 else S.TPM_KEY
    return cls(keyUsage=usage, keyFlags=flags, authDataUsage=auth_usage, algorithmParms=parms,
               PCRInfo=pcr_info)


def take_ownership(tpm, owner=OWNER, srk=SRK):
    ek = read_pubek(tpm)
    params = (u16(5) + u32(256) + ek.encrypt(owner, OAEP_TCPA) + u32(256)
              + ek.encrypt(srk, OAEP_TCPA) + key_template().to_bytes())
    r, out = auth1(tpm, 0x0D, b"", params, owner)
    assert r.rc == 0, r
    return S.TPM_KEY.from_bytes(out)


def create_wrap_key(tpm, parent=0x40000000, parent_auth=SRK, usage_auth=b"k" * 20,
                    template=None, entity=(0x0004, 0x40000000)):
    template = template or key_template()
    s = Session(tpm, "osap", entity[0], entity[1], parent_auth)
    params = s.enc_auth(usage_auth)
    tr_odd = os.urandom(20)
    params += s.enc_auth(bytes(20), odd=tr_odd) + template.to_bytes()
    tr = s.trailer(0x1F, params, nonce_odd=tr_odd, cont=False)
    r = run(tpm, 0xC2, 0x1F, u32(parent) + params + tr)
    assert r.rc == 0, r
    out = r.body[:-41]
    s.check_response(0x1F, r, out, r.body[-41:])
    return out


def load_key2(tpm, blob: bytes, parent=0x40000000, parent_auth=SRK):
    r, out = auth1(tpm, 0x41, u32(parent), blob, parent_auth, out_skip=4)
    assert r.rc == 0, r
    return struct.unpack(">I", out[:4])[0]


def auth2(tpm, ordinal, handles: bytes, params: bytes, s1, secret1, s2, secret2, out_skip=0):
    """Run an AUTH2 command; checks both response HMACs; returns (Rsp, out)."""
    t = s1.trailer(ordinal, params, secret1) + s2.trailer(ordinal, params, secret2)
    r = run(tpm, 0xC3, ordinal, handles + params + t)
    if r.rc:
        assert r.tag == 0xC4 and len(r.raw) == 10
        return r, b""
    assert r.tag == 0xC6
    out = r.body[:-82]
    s1.check_response(ordinal, r, out[out_skip:], r.body[-82:-41])
    s2.check_response(ordinal, r, out[out_skip:], r.body[-41:])
    return r, out


# ---------------------------------------------------------------- swtpm as a scenario's TPM

class Remote:
    """A served TPM (tests/tpm/fixtures.Swtpm or PyxlServe: anything with an
    `addr`) with the engine's execute(frame, locality) interface, so engine
    scenarios run on libtpms or through tpm-serve."""

    def __init__(self, sw):
        self.sw = sw

    def execute(self, req: bytes, locality: int = 0) -> bytes:
        from tpm.fixtures import transact
        return transact(self.sw.addr, req)


def owned_swtpm(start_swtpm, name: str = "swtpm") -> Remote:
    """A fresh swtpm with an EK (ek_pub), enabled, activated and owned
    (OWNER / SRK): a libtpms TPM starts without an EK, disabled and
    deactivated, and needs physical presence asserted to change that."""
    from pyxl.tpm import structures as S
    tpm = Remote(start_swtpm(name=name))
    parms = S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes())
    assert run(tpm, 0xC1, 0x78, os.urandom(20) + parms.to_bytes()).rc == 0
    assert run(tpm, 0xC1, 0x4000000A, u16(0x20)).rc == 0   # PP command enable
    assert run(tpm, 0xC1, 0x4000000A, u16(0x08)).rc == 0   # PP present
    assert run(tpm, 0xC1, 0x6F).rc == 0                     # PhysicalEnable
    assert run(tpm, 0xC1, 0x72, b"\x00").rc == 0            # PhysicalSetDeactivated
    tpm.ek_pub = read_pubek(tpm)
    take_ownership(tpm)
    return tpm
