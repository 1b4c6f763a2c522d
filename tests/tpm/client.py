"""A small raw TPM 1.2 client (stdlib + cryptography): enough of TCG's
authorisation protocol (OIAP, OSAP, ADIP) to take ownership, seal, unseal and
create keys over a raw command socket, with response HMACs verified.  Used by
the tests and bench/tpm_roundtrip.py to drive swtpm and `pyxl tpm-serve`
identically, without tcsd.  Structures follow the TCG TPM Main Spec 1.2,
Parts 2 and 3 (TPM_KEY with the 1.1 version field, as TrouSerS sends it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

TAG_RQU, TAG_RQU_AUTH1, TAG_RQU_AUTH2 = 0x00C1, 0x00C2, 0x00C3
TPM_KH_SRK = 0x40000000
TPM_ET_OWNER, TPM_ET_SRK = 0x0002, 0x0004
TPM_PID_OWNER = 0x0005
WELL_KNOWN = bytes(20)

ORD_OIAP, ORD_OSAP, ORD_TakeOwnership = 0x0A, 0x0B, 0x0D
ORD_Extend, ORD_PcrRead, ORD_Seal, ORD_Unseal = 0x14, 0x15, 0x17, 0x18
ORD_CreateWrapKey, ORD_LoadKey2 = 0x1F, 0x41
ORD_GetRandom, ORD_GetCapability, ORD_GetCapabilityOwner = 0x46, 0x65, 0x66
ORD_CreateEndorsementKeyPair, ORD_ReadPubek, ORD_FlushSpecific = 0x78, 0x7C, 0xBA


class TPMError(Exception):
    def __init__(self, ordinal: int, rc: int):
        super().__init__("ordinal 0x%x failed: rc %d (0x%x)" % (ordinal, rc, rc))
        self.ordinal, self.rc = ordinal, rc


def sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def hmac_sha1(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha1).digest()


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def sized(b: bytes) -> bytes:
    return u32(len(b)) + b


def rsa_key_parms(bits=2048, enc=3, sig=1) -> bytes:
    """TPM_KEY_PARMS for RSA: OAEP/SHA1 (3) or none (1); sig none (1)."""
    return struct.pack(">IHH", 1, enc, sig) + sized(struct.pack(">III", bits, 2, 0))


def tpm_key(usage: int, parms: bytes, auth_usage: int = 1) -> bytes:
    """An empty TPM_KEY template (ver 1.1.0.0) for TakeOwnership/CreateWrapKey."""
    return (bytes([1, 1, 0, 0]) + struct.pack(">HIB", usage, 0, auth_usage) + parms
            + sized(b"") + sized(b"") + sized(b""))


@dataclass
class Session:
    handle: int
    nonce_even: bytes
    key: bytes                    # HMAC key: the entity secret (OIAP) or the shared secret (OSAP)
    osap_nonce_odd: bytes = b""   # for OSAP's ADIP encryption of new secrets


class TPMClient:
    """Commands over a raw socket: a new connection per command (as tcsd does),
    or one kept connection (`keep=True`)."""

    def __init__(self, addr, timeout: float = 60.0, keep: bool = False):
        self.addr = addr
        self.timeout = timeout
        self.keep = keep
        self._sock: socket.socket | None = None

    def close(self):
        if self._sock:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if isinstance(self.addr, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            s.connect(self.addr)
        else:
            s = socket.create_connection(self.addr, timeout=self.timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def raw(self, data: bytes) -> bytes:
        s = self._sock or self._connect()
        try:
            s.sendall(data)
            buf = b""
            while len(buf) < 10 or len(buf) < struct.unpack(">I", buf[2:6])[0]:
                d = s.recv(65536)
                if not d:
                    raise ConnectionError("TPM closed the connection")
                buf += d
        except BaseException:
            s.close()
            self._sock = None
            raise
        if self.keep:
            self._sock = s
        else:
            s.close()
        return buf

    def command(self, ordinal: int, params: bytes = b"", tag: int = TAG_RQU) -> bytes:
        """-> response parameters; TPMError on a non-zero return code."""
        body = u32(ordinal) + params
        resp = self.raw(struct.pack(">HI", tag, 6 + len(body)) + body)
        rc = struct.unpack(">I", resp[6:10])[0]
        if rc:
            raise TPMError(ordinal, rc)
        return resp[10:]

    def authorized(self, ordinal: int, handles: bytes, params: bytes,
                   sessions: list[Session], cont: bool = False) -> bytes:
        """An AUTH1/AUTH2 command; checks the TPM's resAuth; -> out params."""
        digest = sha1(u32(ordinal), params)
        trailer = b""
        odds = []
        for s in sessions:
            odd = os.urandom(20)
            odds.append(odd)
            c = bytes([1 if cont else 0])
            trailer += u32(s.handle) + odd + c + hmac_sha1(s.key, digest, s.nonce_even, odd, c)
        tag = TAG_RQU_AUTH1 if len(sessions) == 1 else TAG_RQU_AUTH2
        body = u32(ordinal) + handles + params + trailer
        resp = self.raw(struct.pack(">HI", tag, 6 + len(body)) + body)
        rc = struct.unpack(">I", resp[6:10])[0]
        if rc:
            raise TPMError(ordinal, rc)
        n = len(sessions)
        out = resp[10:len(resp) - 41 * n]
        out_digest = sha1(u32(0), u32(ordinal), out)
        for i, s in enumerate(sessions):
            a = resp[len(resp) - 41 * (n - i):][:41]
            even, c, res_auth = a[:20], a[20:21], a[21:41]
            if hmac_sha1(s.key, out_digest, even, odds[i], c) != res_auth:
                raise AssertionError("bad resAuth from the TPM for ordinal 0x%x" % ordinal)
            s.nonce_even = even
        return out

    # -- sessions
    def oiap(self, secret: bytes = WELL_KNOWN) -> Session:
        r = self.command(ORD_OIAP)
        return Session(struct.unpack(">I", r[:4])[0], r[4:24], secret)

    def osap(self, entity_type: int, entity: int, secret: bytes = WELL_KNOWN) -> Session:
        odd_osap = os.urandom(20)
        r = self.command(ORD_OSAP, struct.pack(">HI", entity_type, entity) + odd_osap)
        handle, even, even_osap = struct.unpack(">I", r[:4])[0], r[4:24], r[24:44]
        return Session(handle, even, hmac_sha1(secret, even_osap, odd_osap), odd_osap)

    @staticmethod
    def adip(s: Session, new_secret: bytes, odd: bytes | None = None) -> bytes:
        """A new secret encrypted for an OSAP session (XOR with SHA1(ss || nonce))."""
        pad = sha1(s.key, odd if odd is not None else s.nonce_even)
        return bytes(a ^ b for a, b in zip(new_secret, pad))

    # -- commands
    def pcr_read(self, i: int) -> bytes:
        return self.command(ORD_PcrRead, u32(i))

    def extend(self, i: int, digest: bytes) -> bytes:
        return self.command(ORD_Extend, u32(i) + digest)

    def get_random(self, n: int) -> bytes:
        r = self.command(ORD_GetRandom, u32(n))
        return r[4:4 + struct.unpack(">I", r[:4])[0]]

    def getcap(self, cap: int, sub: bytes = b"") -> bytes:
        r = self.command(ORD_GetCapability, u32(cap) + sized(sub))
        return r[4:4 + struct.unpack(">I", r[:4])[0]]

    def owned(self) -> bool:
        return self.getcap(5, u32(0x111)) == b"\x01"

    def read_pubek(self) -> rsa.RSAPublicKey:
        r = self.command(ORD_ReadPubek, os.urandom(20))
        return _pubkey(r)

    def create_ek(self) -> None:
        self.command(ORD_CreateEndorsementKeyPair, os.urandom(20) + rsa_key_parms())

    def take_ownership(self, owner: bytes = WELL_KNOWN, srk: bytes = WELL_KNOWN) -> None:
        ek = self.read_pubek()
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(),
                            label=b"TCPA")
        params = (struct.pack(">H", TPM_PID_OWNER) + sized(ek.encrypt(owner, oaep))
                  + sized(ek.encrypt(srk, oaep)) + tpm_key(0x0011, rsa_key_parms()))
        self.authorized(ORD_TakeOwnership, b"", params, [self.oiap(owner)])

    def get_capability_owner(self, owner: bytes = WELL_KNOWN) -> bytes:
        return self.authorized(ORD_GetCapabilityOwner, b"", b"", [self.oiap(owner)])

    def seal(self, data: bytes, data_auth: bytes = WELL_KNOWN, srk: bytes = WELL_KNOWN) -> bytes:
        s = self.osap(TPM_ET_SRK, TPM_KH_SRK, srk)
        params = self.adip(s, data_auth) + sized(b"") + sized(data)
        return self.authorized(ORD_Seal, u32(TPM_KH_SRK), params, [s])

    def unseal(self, blob: bytes, data_auth: bytes = WELL_KNOWN, srk: bytes = WELL_KNOWN) -> bytes:
        out = self.authorized(ORD_Unseal, u32(TPM_KH_SRK), blob,
                              [self.oiap(srk), self.oiap(data_auth)])
        return out[4:4 + struct.unpack(">I", out[:4])[0]]

    def create_wrap_key(self, usage_auth: bytes = WELL_KNOWN, srk: bytes = WELL_KNOWN) -> bytes:
        """A 2048-bit storage key below the SRK -> its TPM_KEY blob."""
        s = self.osap(TPM_ET_SRK, TPM_KH_SRK, srk)
        params = (self.adip(s, usage_auth) + self.adip(s, usage_auth, s.osap_nonce_odd)
                  + tpm_key(0x0011, rsa_key_parms()))
        return self.authorized(ORD_CreateWrapKey, u32(TPM_KH_SRK), params, [s])

    def flush_auth(self, handle: int) -> None:
        self.command(ORD_FlushSpecific, u32(handle) + u32(2))


def _pubkey(r: bytes) -> rsa.RSAPublicKey:
    """TPM_PUBKEY (key parms + store pubkey) -> an RSA public key."""
    alg, enc, sig, psize = struct.unpack(">IHHI", r[:12])
    bits, primes, explen = struct.unpack(">III", r[12:24])
    exp = int.from_bytes(r[24:24 + explen], "big") if explen else 65537
    off = 12 + psize
    n = struct.unpack(">I", r[off:off + 4])[0]
    modulus = int.from_bytes(r[off + 4:off + 4 + n], "big")
    return rsa.RSAPublicNumbers(exp, modulus).public_key()
