"""A test-side DAA issuer, platform (host) and verifier for TPM_DAA_Join /
TPM_DAA_Sign (Brickell-Camenisch-Chen DAA as TPM 1.2 Part 3 26 splits it).

Written from the scheme, independent of the engine's code: it drives every
stage of a join and a sign through `execute`, checks the TPM's proof of
knowledge of f0, f1, v' (the issuer's side), issues the credential
(A, e, v''), and verifies the resulting DAA signature with the verification
equations.  Group parameters (n = p q with safe primes p, q; the group
Gamma with |rho| = 208) are precomputed in daa_params.json; regenerate with
`python tests/tpm/daa_issuer.py` (needs the openssl CLI for safe primes).

Lengths (bits), BCC / TPM spec: ln 2048, lf 104, lphi 80, lH 160, le 368,
le' 120, lv 2536, lGamma 1632, lrho 208.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

PARAMS_FILE = Path(__file__).with_name("daa_params.json")
L_N, L_F, L_PHI, L_H, L_E, L_E1, L_V = 2048, 104, 80, 160, 368, 120, 2536
L_GAMMA, L_RHO = 1632, 208
ORD_JOIN, ORD_SIGN = 0x29, 0x31
OAEP_TCPA = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=b"TCPA")


def H(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    return h.digest()


def i2b(v: int, n: int | None = None) -> bytes:
    if n is None:
        n = (v.bit_length() + 7) // 8
    return v.to_bytes(n, "big")


def b2i(b: bytes) -> int:
    return int.from_bytes(b, "big")


# ---------------------------------------------------------------- parameter generation

_SMALL = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def is_probable_prime(n: int, rounds: int = 32) -> bool:
    if n < 2:
        return False
    for p in _SMALL:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def random_prime(bits: int) -> int:
    while True:
        c = secrets.randbits(bits) | (1 << (bits - 1)) | 1
        if is_probable_prime(c):
            return c


def generate_params() -> dict:
    import subprocess
    safe = [int(subprocess.run(["openssl", "prime", "-generate", "-safe", "-bits", "1024"],
                               check=True, capture_output=True, text=True).stdout)
            for _ in range(2)]
    rho = random_prime(L_RHO)
    while True:
        r = secrets.randbits(L_GAMMA - L_RHO) & ~1
        gamma = r * rho + 1
        if gamma.bit_length() == L_GAMMA and is_probable_prime(gamma):
            break
    return {"p": "%x" % safe[0], "q": "%x" % safe[1], "Gamma": "%x" % gamma, "rho": "%x" % rho}


def load_params() -> dict:
    d = json.loads(PARAMS_FILE.read_text())
    return {k: int(v, 16) for k, v in d.items()}


# ---------------------------------------------------------------- the TPM's client side

class DAAClient:
    """Sends DAA_Join / DAA_Sign stages with owner authorization (OIAP) and
    checks every response HMAC."""

    def __init__(self, tpm, owner_auth: bytes):
        import engine_helpers as Hh
        self.Hh = Hh
        self.tpm = tpm
        self.owner = owner_auth
        self.handle = 0

    def call(self, ordinal: int, stage: int, in0: bytes = b"", in1: bytes = b"",
             handle: int | None = None):
        """Returns (rc, outputData)."""
        Hh = self.Hh
        params = (bytes([stage]) + struct.pack(">I", len(in0)) + in0
                  + struct.pack(">I", len(in1)) + in1)
        h = self.handle if handle is None else handle
        # a new OIAP session per call, not continued: nothing is left open
        r, out = Hh.auth1(self.tpm, ordinal, struct.pack(">I", h), params, self.owner)
        if r.rc:
            return r.rc, b""
        n = struct.unpack(">I", out[:4])[0]
        assert len(out) == 4 + n
        return 0, out[4:]

    def ok(self, ordinal, stage, in0=b"", in1=b""):
        rc, out = self.call(ordinal, stage, in0, in1)
        assert rc == 0, "stage %d of %#x: rc %#x" % (stage, ordinal, rc)
        return out


# ---------------------------------------------------------------- issuer

_RSA_KEYS: list = []


def issuer_rsa_key(i: int):
    while len(_RSA_KEYS) <= i:
        _RSA_KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _RSA_KEYS[i]


def rsa_modulus(key) -> bytes:
    return i2b(key.public_key().public_numbers().n, 256)


def rsa_sign(key, data: bytes) -> bytes:
    return key.sign(data, padding.PKCS1v15(), hashes.SHA1())


@dataclass
class Credential:
    A: int
    e: int
    tpm_specific: bytes       # the sealed TPM_DAA_TPM blob (stage 24)
    v0_blob: bytes
    v1_blob: bytes


class Issuer:
    """A DAA issuer with public key (n, R0, R1, S, Z, Gamma, rho) and a chain
    of RSA keys (root first) that signs its TPM_DAA_ISSUER settings."""

    def __init__(self, chain: int = 1):
        P = load_params()
        p, q = P["p"], P["q"]
        self.n = p * q
        self.pq = (p, q)
        self.order = ((p - 1) // 2) * ((q - 1) // 2)      # |QR_n|
        self.Gamma, self.rho = P["Gamma"], P["rho"]
        g = pow(secrets.randbelow(self.n - 2) + 2, 2, self.n)   # a generator of QR_n (whp)
        self.S = pow(g, secrets.randbelow(self.order) + 1, self.n)
        self.R0, self.R1, self.Z = (pow(self.S, secrets.randbelow(self.order) + 1, self.n)
                                    for _ in range(3))
        self.S1 = pow(self.S, 1 << 1024, self.n)
        self.keys = [issuer_rsa_key(i) for i in range(chain)]
        # the byte strings the TPM hashes against the settings
        self.b_n = i2b(self.n, 256)
        self.b_R0, self.b_R1 = i2b(self.R0, 256), i2b(self.R1, 256)
        self.b_S0, self.b_S1 = i2b(self.S, 256), i2b(self.S1, 256)
        self.b_Gamma = i2b(self.Gamma)
        self.zeta_I = self.zeta(b"issuer basename")
        self.rogue: set[int] = set()

    def settings(self, **override) -> bytes:
        from pyxl.tpm.structures import TPM_DAA_ISSUER
        f = dict(DAA_digest_R0=H(self.b_R0), DAA_digest_R1=H(self.b_R1),
                 DAA_digest_S0=H(self.b_S0), DAA_digest_S1=H(self.b_S1),
                 DAA_digest_n=H(self.b_n), DAA_digest_gamma=H(self.b_Gamma),
                 DAA_generic_q=i2b(self.rho, 26))
        f.update(override)
        return TPM_DAA_ISSUER(**f).to_bytes()

    def zeta(self, basename: bytes) -> int:
        """A base of order rho in Gamma derived from a basename."""
        x = b2i(b"".join(H(basename, bytes([i])) for i in range(11))) % self.Gamma
        z = pow(x, (self.Gamma - 1) // self.rho, self.Gamma)
        assert z != 1 and pow(z, self.rho, self.Gamma) == 1
        return z

    def pub_bytes(self) -> bytes:
        return self.b_n + self.b_R0 + self.b_R1 + self.b_S0 + i2b(self.Z, 256)

    # -- the issuer's half of the join --------------------------------------------------
    def verify_join_proof(self, U, N_I, c, n_t, n_i, s0, s1, s2, s3) -> bool:
        n, G = self.n, self.Gamma
        if max(s0, s1).bit_length() > L_F + L_PHI + L_H + 1:
            return False
        s_v = s2 + (s3 << 1024)
        U_hat = (pow(U, -c, n) * pow(self.R0, s0, n) * pow(self.R1, s1, n)
                 * pow(self.S, s_v, n)) % n
        N_hat = pow(N_I, -c, G) * pow(self.zeta_I, s0 + (s1 << L_F), G) % G
        ch = H(self.pub_bytes(), i2b(U, 256), i2b(N_I, 256), i2b(U_hat, 256), i2b(N_hat, 256), n_i)
        return b2i(H(ch, n_t)) == c

    def issue(self, U: int) -> tuple[int, int, int]:
        """(A, e, v''): A^e = Z / (U S^v'') mod n."""
        while True:
            e = (1 << (L_E - 1)) + secrets.randbits(L_E1 - 1)
            if is_probable_prime(e):
                break
        v2 = secrets.randbits(L_V - 1) | (1 << (L_V - 1))
        base = self.Z * pow(U * pow(self.S, v2, self.n), -1, self.n) % self.n
        # the e-th root mod p and mod q, joined by the CRT (the issuer knows p, q)
        p, q = self.pq
        ap, aq = pow(base, pow(e, -1, p - 1), p), pow(base, pow(e, -1, q - 1), q)
        A = (aq + q * ((ap - aq) * pow(q, -1, p) % p)) % self.n
        assert pow(A, e, self.n) * U * pow(self.S, v2, self.n) % self.n == self.Z
        return A, e, v2


class Stopped(Exception):
    """join()/sign() with stop=(stage, in0, in1): the rc of that replaced stage."""

    def __init__(self, rc: int):
        super().__init__(rc)
        self.rc = rc


def _stepper(c: DAAClient, ordinal: int, stop, hook=None):
    def step(stage, in0=b"", in1=b""):
        if hook is not None:
            hook(stage, c)
        if stop is not None and stage == stop[0]:
            rc = c.call(ordinal, stage, *stop[1:])[0]
            if rc == 0:     # accepted: end the session ourselves
                c.Hh.run(c.tpm, 0xC1, 0xBA, struct.pack(">II", c.handle, 8))
            raise Stopped(rc)
        return c.ok(ordinal, stage, in0, in1)
    return step


def join(tpm, issuer: Issuer, owner_auth: bytes, ek_pub, count: int = 0, stop=None,
         hook=None):
    """A complete join: every stage, the issuer's checks, the credential.
    stop=(stage, in0, in1): send that instead of the stage and return its rc;
    hook(stage, client) runs before each stage."""
    c = DAAClient(tpm, owner_auth)
    try:
        return _join(c, issuer, ek_pub, count, _stepper(c, ORD_JOIN, stop, hook))
    except Stopped as e:
        return e.rc


def _join(c, issuer, ek_pub, count, step) -> Credential:
    c.handle = struct.unpack(">I", step(0, struct.pack(">I", len(issuer.keys))))[0]
    root = issuer.keys[0]
    step(1, rsa_modulus(root))
    prev = root
    for k in issuer.keys[1:]:
        step(1, rsa_modulus(k), rsa_sign(prev, rsa_modulus(k)))
        prev = k
    digest_n0 = H(rsa_modulus(root))
    settings = issuer.settings()
    step(2, settings, rsa_sign(prev, digest_n0 + settings))
    step(3, struct.pack(">I", count))
    # U = R0^f0 R1^f1 S0^u0 S1^u1
    for st, x in ((4, issuer.b_R0), (5, issuer.b_R1), (6, issuer.b_S0)):
        assert step(st, x, issuer.b_n) == b""
    U_b = step(7, issuer.b_S1, issuer.b_n)
    assert len(U_b) == 256
    U = b2i(U_b)
    # the issuer's nonce to the EK: only a genuine TPM can answer
    ne = os.urandom(20)
    answer = step(8, ek_pub.encrypt(ne, OAEP_TCPA))
    assert answer == H(H(U_b, struct.pack(">I", count), digest_n0), ne), "EK challenge"
    for st, x in ((9, issuer.b_R0), (10, issuer.b_R1), (11, issuer.b_S0)):
        assert step(st, x, issuer.b_n) == b""
    U_tilde = b2i(step(12, issuer.b_S1, issuer.b_n))
    assert step(13, issuer.b_Gamma, i2b(issuer.zeta_I, 256)) == b""
    N_I = b2i(step(14, issuer.b_Gamma))
    N_tilde = b2i(step(15, issuer.b_Gamma))
    n_i = os.urandom(20)
    ch = H(issuer.pub_bytes(), i2b(U, 256), i2b(N_I, 256), i2b(U_tilde, 256),
           i2b(N_tilde, 256), n_i)
    n_t = step(16, ch)
    assert len(n_t) == 20
    s0 = b2i(step(17))
    s1 = b2i(step(18))
    s2_b = step(19)
    assert len(s2_b) == 128
    c_b = step(20)
    assert c_b == H(ch, n_t)
    s3 = b2i(step(21))
    assert issuer.verify_join_proof(U, N_I, b2i(c_b), n_t, n_i, s0, s1, b2i(s2_b), s3), \
        "the TPM's proof of knowledge of f0, f1, v' does not verify"
    assert N_I not in issuer.rogue
    A, e, v2 = issuer.issue(U)
    v0_blob = step(22, i2b(v2 & ((1 << 1024) - 1), 128))
    v1_blob = step(23, i2b(v2 >> 1024, 192))
    tpm_specific = step(24)
    return Credential(A, e, tpm_specific, v0_blob, v1_blob)


# ---------------------------------------------------------------- signing and verifying

@dataclass
class Signature:
    zeta: int
    T: int
    N_V: int
    c: int
    n_t: bytes
    s_v: int
    s_f0: int
    s_f1: int
    s_e: int


def sign(tpm, issuer: Issuer, owner_auth: bytes, cred: Credential, message: bytes,
         n_v: bytes, basename: bytes = b"verifier", stop=None, hook=None):
    """The platform's signature: the TPM proves f0, f1, v; the host blinds A.
    stop, hook: as for join()."""
    c = DAAClient(tpm, owner_auth)
    try:
        return _sign(c, issuer, cred, message, n_v, basename,
                     _stepper(c, ORD_SIGN, stop, hook))
    except Stopped as e:
        return e.rc


def _sign(c, issuer, cred, message, n_v, basename, step) -> Signature:
    n = issuer.n
    c.handle = struct.unpack(">I", step(0, issuer.settings()))[0]
    assert step(1, cred.tpm_specific) == b""
    for st, x in ((2, issuer.b_R0), (3, issuer.b_R1), (4, issuer.b_S0)):
        assert step(st, x, issuer.b_n) == b""
    tau_tpm = b2i(step(5, issuer.b_S1, issuer.b_n))
    zeta = issuer.zeta(basename)
    assert step(6, issuer.b_Gamma, i2b(zeta, 256)) == b""
    N_V = b2i(step(7, issuer.b_Gamma))
    N_tilde = b2i(step(8, issuer.b_Gamma))
    # the host's share: T = A S^w, and randomness for e' = e - 2^(le-1) and -e w
    w = secrets.randbits(L_N + L_PHI)
    T = cred.A * pow(issuer.S, w, n) % n
    r_e = secrets.randbits(L_E1 + L_PHI + L_H)
    r_ew = secrets.randbits(L_E + L_N + 2 * L_PHI + L_H + 1)
    tau = tau_tpm * pow(T, r_e, n) * pow(issuer.S, r_ew, n) % n
    ch = _sign_hash(issuer, zeta, T, N_V, tau, N_tilde, n_v)
    n_t = step(9, ch)
    c_b = step(10, b"\x01", H(message))
    assert c_b == H(H(ch, n_t), b"\x01", H(message))
    ci = b2i(c_b)
    s0 = b2i(step(11))
    s1 = b2i(step(12))
    s2 = b2i(step(13, cred.v0_blob))
    assert step(14, cred.v0_blob) == b""
    s3 = b2i(step(15, cred.v1_blob))
    e1 = cred.e - (1 << (L_E - 1))
    s_v = s2 + (s3 << 1024) + r_ew - ci * cred.e * w
    return Signature(zeta, T, N_V, ci, n_t, s_v, s0, s1, r_e + ci * e1)


def _sign_hash(issuer, zeta, T, N_V, tau, N_tilde, n_v) -> bytes:
    G = len(issuer.b_Gamma)
    return H(issuer.pub_bytes(), issuer.b_Gamma, i2b(zeta, G), i2b(T, 256), i2b(N_V, G),
             i2b(tau, 256), i2b(N_tilde, G), n_v)


def verify(issuer: Issuer, sig: Signature, message: bytes, n_v: bytes) -> bool:
    """The verifier: recompute the commitments from the responses and the
    challenge, and check the challenge hashes back to itself."""
    n, G, rho = issuer.n, issuer.Gamma, issuer.rho
    if max(sig.s_f0, sig.s_f1).bit_length() > L_F + L_PHI + L_H + 1:
        return False
    if sig.s_e.bit_length() > L_E1 + L_PHI + L_H + 1 or sig.s_v < 0:
        return False
    if pow(sig.N_V, rho, G) != 1 or pow(sig.zeta, rho, G) != 1 or sig.N_V in issuer.rogue:
        return False
    c = sig.c
    base = issuer.Z * pow(pow(sig.T, 1 << (L_E - 1), n), -1, n) % n
    tau_hat = (pow(base, -c, n) * pow(sig.T, sig.s_e, n) * pow(issuer.R0, sig.s_f0, n)
               * pow(issuer.R1, sig.s_f1, n) * pow(issuer.S, sig.s_v, n)) % n
    N_hat = pow(sig.N_V, -c, G) * pow(sig.zeta, sig.s_f0 + (sig.s_f1 << L_F), G) % G
    ch = _sign_hash(issuer, sig.zeta, sig.T, sig.N_V, tau_hat, N_hat, n_v)
    return b2i(H(H(ch, sig.n_t), b"\x01", H(message))) == c


if __name__ == "__main__":
    PARAMS_FILE.write_text(json.dumps(generate_params(), indent=1) + "\n")
    print("wrote", PARAMS_FILE)
