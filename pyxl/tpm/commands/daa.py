"""Direct Anonymous Attestation: TPM_DAA_Join and TPM_DAA_Sign (Part 3 26).

Both commands are owner-authorized state machines over one DAA session
(a TPM_RT_DAA_TPM resource): every call names its stage, the TPM checks it
is the one expected, and the stage's arithmetic runs on Python ints (the
modular exponentiations on OpenSSL's constant-time BN, as libtpms's).  The
TPM's share of the BCC scheme is f = f0 + 2^104 f1 (derived from
tpmDAASeed, the issuer's key and a count, so a re-join gives the same f),
v' = u0 + 2^1024 u1 during the join and v = v0 + 2^1024 v1 afterwards,
and the Schnorr-style responses s0, s1, s2, s3 to the host's challenge.

The order of checks, error codes and the byte layout of every output follow
libtpms (src/tpm12/tpm_daa.c): any failure after stage 0 ends the session
named in the request; the join's context digest covers DAA_tpmSpecific and
DAA_joinSession, the sign's only DAA_tpmSpecific.  Values the TPM exports
(v0, v1, DAA_tpmSpecific) travel as TPM_DAA_BLOBs: AES-128-CBC under
daaBlobKey, HMAC-SHA1 under daaProof.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hmac import compare_digest
from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import (RSAKey, aes_cbc_decrypt, aes_cbc_encrypt, hmac_sha1, mgf1, random_bytes,
                      sha1)
from ..engine import CHECK_ALL, T1, TPMError, command
from ..marshal import Reader, TPMDecodeError
from ..structures import (TPM_DAA_BLOB, TPM_DAA_CONTEXT, TPM_DAA_ISSUER, TPM_DAA_JOINDATA,
                          TPM_DAA_SENSITIVE, TPM_DAA_TPM)

if TYPE_CHECKING:
    from typing import Any, Callable

    from ..engine import Ctx, TPM

    # one stage of a join or sign: (tpm, session, inputData0, inputData1) -> outputData
    Stage = Callable[[TPM, "DAASession", bytes, bytes], bytes]

@dataclass
class DAASession:
    """TPM_DAA_SESSION_DATA: the four DAA structures of one join or sign."""
    handle: int
    issuer: TPM_DAA_ISSUER = field(default_factory=TPM_DAA_ISSUER)
    tpm_specific: TPM_DAA_TPM = field(default_factory=TPM_DAA_TPM)
    context: TPM_DAA_CONTEXT = field(default_factory=TPM_DAA_CONTEXT)
    join: TPM_DAA_JOINDATA = field(default_factory=TPM_DAA_JOINDATA)
    scratch_null: bool = True     # "DAA_scratch = NULL" (the bytes stay, as in libtpms)

    def join_digest(self) -> bytes:
        return sha1(self.tpm_specific.to_bytes(), self.join.to_bytes())

    # -- (de)serialization for SaveContext (context.py) and TPM_SaveState (state.py)
    def internal(self) -> bytes:
        return (self.issuer.to_bytes() + self.tpm_specific.to_bytes() + self.context.to_bytes()
                + self.join.to_bytes() + bytes((int(self.scratch_null),)))

    @classmethod
    def from_internal(cls, r: Reader, handle: int) -> "DAASession":
        return cls(handle, TPM_DAA_ISSUER.unmarshal(r), TPM_DAA_TPM.unmarshal(r),
                   TPM_DAA_CONTEXT.unmarshal(r), TPM_DAA_JOINDATA.unmarshal(r), bool(r.u8()))

    def to_saved(self) -> list[Any]:
        """[handle, internal().hex()]: a JSON value of the state blob (state.py)."""
        return [self.handle, self.internal().hex()]

    @classmethod
    def from_saved(cls, d: list[Any]) -> "DAASession":
        handle, internal = d
        r = Reader(bytes.fromhex(internal))
        s = cls.from_internal(r, int(handle))
        r.expect_end("saved DAA session")
        return s


def new_daa_secrets(tpm: TPM) -> None:
    """TPM_PermanentData_InitDaa: fresh tpmDAASeed, daaProof, daaBlobKey
    (with a new EK and on RevokeTrust, as libtpms)."""
    p = tpm.perm
    p.daa_seed, p.daa_proof, p.daa_blob_key = random_bytes(20), random_bytes(20), random_bytes(16)


def flush(tpm: TPM, handle: int) -> None:
    """FlushSpecific(TPM_RT_DAA_TPM)."""
    if tpm.daa_sessions.pop(handle, None) is None:
        raise TPMError(C.TPM_BAD_HANDLE)


def add_session(tpm: TPM, s: DAASession, keep: bool = False) -> DAASession:
    """A free slot (TPM_RESOURCES), then s's own handle if keep (TPM_BAD_HANDLE
    when taken) or a random non-zero unused one, as libtpms."""
    if len(tpm.daa_sessions) >= tpm.identity.max_daa_sessions:
        raise TPMError(C.TPM_RESOURCES)
    if keep:
        if s.handle == 0 or s.handle in tpm.daa_sessions:
            raise TPMError(C.TPM_BAD_HANDLE)
    else:
        while True:
            s.handle = int.from_bytes(random_bytes(4), "big")
            if s.handle and s.handle not in tpm.daa_sessions:
                break
    tpm.daa_sessions[s.handle] = s
    return s


def _new_session(tpm: TPM) -> DAASession:
    return add_session(tpm, DAASession(0))


# ---------------------------------------------------------------- arithmetic helpers

def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _bin(v: int) -> bytes:
    """BN_bn2bin: the minimal big-endian bytes (none for 0)."""
    return v.to_bytes((v.bit_length() + 7) // 8, "big")


def _fixed(v: int, size: int, rc: int = C.TPM_FAIL) -> bytes:
    """A value left-padded to size bytes; rc if it does not fit."""
    if v.bit_length() > 8 * size:
        raise TPMError(rc)
    return v.to_bytes(size, "big")


def _set_scratch(s: DAASession, v: int) -> None:
    s.context.DAA_scratch = _fixed(v, 256, C.TPM_SIZE)    # as TPM_bn2binArray


def _scratch(s: DAASession) -> int:
    return _int(s.context.DAA_scratch)


def _modexp(x: int, y: int, n: int) -> int:
    """TPM_ComputeAexpPmodn (libtpms tpm_daa.c): x^y mod n.  libtpms computes
    every DAA exponentiation in constant time (TPM_BN_mod_exp sets
    BN_FLG_CONSTTIME on the exponent, "p may be private": f0, f1, u0, u1 and
    the blinding r0..r4 are), and so does this, with the same OpenSSL
    function (BN_mod_exp_mont_consttime, bn.py).  It fails on an even
    modulus (0 included), and libtpms answers TPM_DAA_WRONG_W, its code for
    any failed big-number operation.  bn (ctypes, libcrypto) is imported
    here, at the first DAA exponentiation: most TPM processes never run one."""
    from ..bn import mod_exp_consttime
    try:
        return mod_exp_consttime(x, y, n)
    except ValueError:
        raise TPMError(C.TPM_DAA_WRONG_W) from None


def _r(s: DAASession, name: bytes, size: int) -> int:
    """The pseudo-random r_i: MGF1(name || DAA_contextSeed) (stages reuse them)."""
    return _int(mgf1(name + s.context.DAA_contextSeed, size))


def _f(s: DAASession) -> int:
    """f = SHA-1(rekey || count || 0) || SHA-1(rekey || count || 1) mod q."""
    t = s.tpm_specific
    base = t.DAA_rekey + t.DAA_count.to_bytes(4, "big")
    q = _int(s.issuer.DAA_generic_q)
    if q == 0:
        raise TPMError(C.TPM_FAIL)
    return _int(sha1(base, b"\x00") + sha1(base, b"\x01")) % q


def _check_hash(data: bytes, want: bytes, rc: int) -> None:
    if sha1(data) != want:
        raise TPMError(rc)


def _generic(s: DAASession, in0: bytes, in1: bytes, digest0: bytes) -> tuple[int, int]:
    """The common prologue: inputData0 is the issuer value digest0 names,
    inputData1 the modulus n; both are checked against the issuer settings."""
    _check_hash(in0, digest0, C.TPM_DAA_INPUT_DATA0)
    _check_hash(in1, s.issuer.DAA_digest_n, C.TPM_DAA_INPUT_DATA1)
    return _int(in0), _int(in1)


def _gamma(s: DAASession, in0: bytes) -> int:
    _check_hash(in0, s.issuer.DAA_digest_gamma, C.TPM_DAA_INPUT_DATA0)
    return _int(in0)


def _rsa_verify(modulus: bytes, sig: bytes, message: bytes) -> bool:
    """TPM_RSAVerifySHA1 (libtpms tpm_crypto.c): RSASSA-PKCS1-v1_5 with
    SHA-1 under (modulus, 65537), by OpenSSL through cryptography as libtpms
    verifies it (RSA_verify); a modulus OpenSSL cannot use as a key (even,
    below the exponent) verifies nothing."""
    try:
        return RSAKey(_int(modulus)).verify_sha1_digest(sig, sha1(message))
    except ValueError:
        return False


def _seal(tpm: TPM, data: bytes, rt: int) -> bytes:
    """TPM_ComputeEncrypt: a TPM_DAA_BLOB of resource type rt holding data."""
    iv = random_bytes(16)
    sens = TPM_DAA_SENSITIVE(data).to_bytes()
    blob = TPM_DAA_BLOB(rt, bytes(16), bytes(20), iv,
                        aes_cbc_encrypt(tpm.perm.daa_blob_key, iv, sens))
    blob.blobIntegrity = hmac_sha1(tpm.perm.daa_proof, blob.to_bytes())
    return blob.to_bytes()


def _unseal(tpm: TPM, data: bytes, rt: int) -> bytes:
    """TPM_ComputeDecrypt: the internalData of a blob; TPM_DAA_INPUT_DATA0 on
    any defect (wrong HMAC, type, padding, structure)."""
    try:
        blob = TPM_DAA_BLOB.from_bytes(data)
        mac = blob.blobIntegrity
        blob.blobIntegrity = bytes(20)
        if not compare_digest(hmac_sha1(tpm.perm.daa_proof, blob.to_bytes()), mac) or \
                blob.resourceType != rt:
            raise ValueError("DAA blob integrity")
        sens = aes_cbc_decrypt(tpm.perm.daa_blob_key, blob.additionalData, blob.sensitiveData)
        return TPM_DAA_SENSITIVE.from_bytes(sens).internalData
    except (TPMDecodeError, ValueError):
        raise TPMError(C.TPM_DAA_INPUT_DATA0) from None


def _unseal_checked(tpm: TPM, s: DAASession, data: bytes, rt: int, digest: bytes, size: int) -> int:
    """A v0 / v1 blob whose value (padded to size bytes) hashes to digest."""
    v = _unseal(tpm, data, rt)
    if len(v) > size or sha1(bytes(size - len(v)) + v) != digest:
        raise TPMError(C.TPM_DAA_INPUT_DATA0)
    return _int(v)


# ---------------------------------------------------------------- stages shared by join and sign

def _commit_r0(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """Join 9 / Sign 2: a new context seed; scratch = R0^r0 mod n."""
    x, n = _generic(s, in0, in1, s.issuer.DAA_digest_R0)
    s.context.DAA_contextSeed = random_bytes(20)
    _set_scratch(s, _modexp(x, _r(s, b"r0", C.DAA_SIZE_r0), n))
    return b""


def _commit_more(name: bytes, size: int, which: str, output: bool) -> Stage:
    """Join 10-12 / Sign 3-5: scratch = scratch * X^r mod n (X named by which)."""
    def stage(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
        x, n = _generic(s, in0, in1, getattr(s.issuer, which))
        _set_scratch(s, _scratch(s) * _modexp(x, _r(s, name, size), n) % n)
        if not output:
            return b""
        s.scratch_null = True
        return s.context.DAA_scratch
    return stage


def _set_w(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """Join 13 / Sign 6: w (the base of the rogue tag) must have order q in Gamma."""
    gamma = _gamma(s, in0)
    if len(in1) != C.DAA_SIZE_w:
        raise TPMError(C.TPM_DAA_INPUT_DATA1)
    w = _int(in1)
    if _modexp(w, _int(s.issuer.DAA_generic_q), gamma) != 1:
        raise TPMError(C.TPM_DAA_WRONG_W)
    _set_scratch(s, w)
    return b""


def _tag_e(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """Join 14 / Sign 7: E = w^f mod Gamma."""
    gamma = _gamma(s, in0)
    return _bin(_modexp(_scratch(s), _f(s), gamma))


def _tag_e1(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """Join 15 / Sign 8: E1 = w^r mod Gamma, r = r0 + 2^104 r1 mod q."""
    gamma = _gamma(s, in0)
    q = _int(s.issuer.DAA_generic_q)
    r = (_r(s, b"r0", C.DAA_SIZE_r0) + (_r(s, b"r1", C.DAA_SIZE_r1) << C.DAA_power0)) % q
    e1 = _modexp(_scratch(s), r, gamma)
    s.scratch_null = True
    return _bin(e1)


def _challenge(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """Join 16 / Sign 9: c = SHA-1(host's digest || NT)."""
    if len(in0) != C.TPM_DIGEST_SIZE:
        raise TPMError(C.TPM_DAA_INPUT_DATA0)
    nt = random_bytes(C.DAA_SIZE_NT)
    s.context.DAA_digest = sha1(in0, nt)
    return nt


def _s0(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """Join 17 / Sign 11: s0 = r0 + c * f0 over the integers."""
    f0 = _f(s) & ((1 << C.DAA_power0) - 1)
    return _bin(_r(s, b"r0", C.DAA_SIZE_r0) + _int(s.context.DAA_digest) * f0)


def _s1(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """Join 18 / Sign 12: s1 = r1 + c * f1 over the integers."""
    f1 = _f(s) >> C.DAA_power0
    return _bin(_r(s, b"r1", C.DAA_SIZE_r1) + _int(s.context.DAA_digest) * f1)


# ---------------------------------------------------------------- join stages

def _join0(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    if len(in0) != 4 or _int(in0) == 0:
        raise TPMError(C.TPM_DAA_INPUT_DATA0)
    s.tpm_specific.DAA_count = _int(in0)
    s.context.DAA_digestContext = s.join_digest()
    s.context.DAA_stage = 1
    return s.handle.to_bytes(4, "big")


def _join1(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """The issuer's key chain: the root key, then keys each signed by the last."""
    if len(in0) != C.DAA_SIZE_issuerModulus:
        raise TPMError(C.TPM_DAA_INPUT_DATA0)
    if s.scratch_null:
        s.scratch_null = False
        s.context.DAA_scratch = in0
        s.join.DAA_digest_n0 = sha1(in0)
        s.tpm_specific.DAA_rekey = sha1(tpm.perm.daa_seed, s.join.DAA_digest_n0)
    else:
        if len(in1) != C.DAA_SIZE_issuerModulus:
            raise TPMError(C.TPM_DAA_INPUT_DATA1)
        if not _rsa_verify(s.context.DAA_scratch, in1, in0):
            raise TPMError(C.TPM_DAA_ISSUER_VALIDITY)
        s.context.DAA_scratch = in0
    s.tpm_specific.DAA_count = (s.tpm_specific.DAA_count - 1) & 0xFFFFFFFF
    if s.tpm_specific.DAA_count == 0:
        s.context.DAA_stage += 1
    s.context.DAA_digestContext = s.join_digest()
    return b""


def _join2(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """The issuer settings, signed by the last key of the chain."""
    try:
        s.issuer = TPM_DAA_ISSUER.from_bytes(in0)
    except TPMDecodeError:
        raise TPMError(C.TPM_DAA_INPUT_DATA0) from None
    if len(in1) != C.DAA_SIZE_issuerModulus:
        raise TPMError(C.TPM_DAA_INPUT_DATA1)
    if not _rsa_verify(s.context.DAA_scratch, in1, s.join.DAA_digest_n0 + in0):
        raise TPMError(C.TPM_DAA_ISSUER_VALIDITY)
    s.tpm_specific.DAA_digestIssuer = sha1(in0)
    s.context.DAA_digestContext = s.join_digest()
    s.scratch_null = True
    return b""


def _join3(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    if len(in0) != 4:
        raise TPMError(C.TPM_DAA_INPUT_DATA0)
    s.tpm_specific.DAA_count = _int(in0)
    s.join.DAA_join_u0 = random_bytes(128)
    s.join.DAA_join_u1 = random_bytes(138)
    s.context.DAA_digestContext = s.join_digest()
    return b""


def _join4(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """U, first factor: R0^f0 mod n."""
    x, n = _generic(s, in0, in1, s.issuer.DAA_digest_R0)
    _set_scratch(s, _modexp(x, _f(s) & ((1 << C.DAA_power0) - 1), n))
    return b""


def _join5(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    x, n = _generic(s, in0, in1, s.issuer.DAA_digest_R1)
    _set_scratch(s, _scratch(s) * _modexp(x, _f(s) >> C.DAA_power0, n) % n)
    return b""


def _join6(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    x, n = _generic(s, in0, in1, s.issuer.DAA_digest_S0)
    _set_scratch(s, _scratch(s) * _modexp(x, _int(s.join.DAA_join_u0), n) % n)
    return b""


def _join7(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """U = R0^f0 R1^f1 S0^u0 S1^u1 mod n goes to the issuer."""
    x, n = _generic(s, in0, in1, s.issuer.DAA_digest_S1)
    _set_scratch(s, _scratch(s) * _modexp(x, _int(s.join.DAA_join_u1), n) % n)
    s.context.DAA_digest = sha1(s.context.DAA_scratch,
                                s.tpm_specific.DAA_count.to_bytes(4, "big"),
                                s.join.DAA_digest_n0)
    s.scratch_null = True
    return s.context.DAA_scratch


def _join8(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """The issuer's nonce NE, encrypted to the EK, bound to U."""
    if len(in0) != C.DAA_SIZE_NE:
        raise TPMError(C.TPM_DAA_INPUT_DATA0)
    if tpm.perm.ek is None:
        raise TPMError(C.TPM_NO_ENDORSEMENT)
    try:
        ne = tpm.perm.ek.decrypt_oaep(in0)
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    out = sha1(s.context.DAA_digest, ne)
    s.context.DAA_digest = bytes(20)
    return out


def _join19(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """s2 = r2 + c u0 mod 2^1024, always 128 bytes."""
    v = _r(s, b"r2", C.DAA_SIZE_r2) + _int(s.context.DAA_digest) * _int(s.join.DAA_join_u0)
    return _fixed(v & ((1 << C.DAA_power1) - 1), C.DAA_power1 // 8)


def _join20(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    v = _r(s, b"r2", C.DAA_SIZE_r2) + _int(s.context.DAA_digest) * _int(s.join.DAA_join_u0)
    _set_scratch(s, v >> C.DAA_power1)
    return s.context.DAA_digest


def _join21(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """s3 = r3 + c u1 + (the carry of s2)."""
    v = (_r(s, b"r3", C.DAA_SIZE_r3) + _int(s.context.DAA_digest) * _int(s.join.DAA_join_u1)
         + _scratch(s))
    s.scratch_null = True
    return _bin(v)


def _join22(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """v0 = u2 + u0 mod 2^1024 (exported sealed), the carry kept for v1."""
    if len(in0) != C.DAA_SIZE_v0:
        raise TPMError(C.TPM_DAA_INPUT_DATA0)
    total = _int(in0) + _int(s.join.DAA_join_u0)
    v0 = total & ((1 << C.DAA_power1) - 1)
    s.tpm_specific.DAA_digest_v0 = sha1(_fixed(v0, (C.DAA_power1 + 7) // 8))
    _set_scratch(s, total >> C.DAA_power1)
    out = _seal(tpm, _bin(v0), C.TPM_RT_DAA_V0)
    s.context.DAA_digestContext = s.join_digest()
    return out


def _join23(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """v1 = u3 + u1 + carry (exported sealed)."""
    if len(in0) != C.DAA_SIZE_v1:
        raise TPMError(C.TPM_DAA_INPUT_DATA0)
    v1 = _int(in0) + _int(s.join.DAA_join_u1) + _scratch(s)
    s.tpm_specific.DAA_digest_v1 = sha1(_fixed(v1, C.DAA_SIZE_v1))
    out = _seal(tpm, _bin(v1), C.TPM_RT_DAA_V1)
    s.scratch_null = True
    s.context.DAA_digestContext = s.join_digest()
    return out


def _join24(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    return _seal(tpm, s.tpm_specific.to_bytes(), C.TPM_RT_DAA_TPM)


JOIN_STAGES: dict[int, Stage] = {
    1: _join1, 2: _join2, 3: _join3, 4: _join4, 5: _join5, 6: _join6, 7: _join7, 8: _join8,
    9: _commit_r0,
    10: _commit_more(b"r1", C.DAA_SIZE_r1, "DAA_digest_R1", False),
    11: _commit_more(b"r2", C.DAA_SIZE_r2, "DAA_digest_S0", False),
    12: _commit_more(b"r3", C.DAA_SIZE_r3, "DAA_digest_S1", True),
    13: _set_w, 14: _tag_e, 15: _tag_e1, 16: _challenge, 17: _s0, 18: _s1,
    19: _join19, 20: _join20, 21: _join21, 22: _join22, 23: _join23, 24: _join24,
}


# ---------------------------------------------------------------- sign stages

def _sign0(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    try:
        s.issuer = TPM_DAA_ISSUER.from_bytes(in0)
    except TPMDecodeError:
        raise TPMError(C.TPM_DAA_INPUT_DATA0) from None
    return s.handle.to_bytes(4, "big")


def _sign1(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """Load the DAA_tpmSpecific the join exported."""
    data = _unseal(tpm, in0, C.TPM_RT_DAA_TPM)
    try:
        s.tpm_specific = TPM_DAA_TPM.unmarshal(Reader(data))
    except TPMDecodeError:
        raise TPMError(C.TPM_DAA_INPUT_DATA0) from None
    s.context.DAA_digestContext = sha1(s.tpm_specific.to_bytes())
    return b""


def _sign10(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """Bind the message (selector 1) or an AIK's modulus (selector 0) into c."""
    if len(in0) != 1:
        raise TPMError(C.TPM_DAA_INPUT_DATA0)
    selector = in0[0]
    if selector == 1:
        if len(in1) != C.TPM_DIGEST_SIZE:
            raise TPMError(C.TPM_DAA_INPUT_DATA1)
        s.context.DAA_digest = sha1(s.context.DAA_digest, b"\x01", in1)
    elif selector == 0:
        from .keys import check_pcr_binding, key_pcr_info
        if len(in1) != 4:
            raise TPMError(C.TPM_DAA_INPUT_DATA1)
        try:
            key = tpm.key_by_handle(_int(in1))
            check_pcr_binding(tpm, key_pcr_info(key), 0)
        except TPMError:
            raise TPMError(C.TPM_DAA_INPUT_DATA1) from None
        if key.usage != C.TPM_KEY_IDENTITY:
            raise TPMError(C.TPM_DAA_INPUT_DATA1)
        s.context.DAA_digest = sha1(s.context.DAA_digest, b"\x00", key.blob.pubKey.key)
    else:
        raise TPMError(C.TPM_DAA_INPUT_DATA0)
    return s.context.DAA_digest


def _sign13(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """s2 = r2 + c v0 mod 2^1024."""
    v0 = _unseal_checked(tpm, s, in0, C.TPM_RT_DAA_V0, s.tpm_specific.DAA_digest_v0,
                         (C.DAA_power1 + 7) // 8)
    v = _r(s, b"r2", C.DAA_SIZE_r2) + _int(s.context.DAA_digest) * v0
    return _bin(v & ((1 << C.DAA_power1) - 1))


def _sign14(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    v0 = _unseal_checked(tpm, s, in0, C.TPM_RT_DAA_V0, s.tpm_specific.DAA_digest_v0,
                         (C.DAA_power1 + 7) // 8)
    v = _r(s, b"r2", C.DAA_SIZE_r2) + _int(s.context.DAA_digest) * v0
    _set_scratch(s, v >> C.DAA_power1)
    return b""


def _sign15(tpm: TPM, s: DAASession, in0: bytes, in1: bytes) -> bytes:
    """s3 = r4 + c v1 + (the carry of s2)."""
    v1 = _unseal_checked(tpm, s, in0, C.TPM_RT_DAA_V1, s.tpm_specific.DAA_digest_v1,
                         C.DAA_SIZE_v1)
    v = _r(s, b"r4", C.DAA_SIZE_r4) + _int(s.context.DAA_digest) * v1 + _scratch(s)
    s.scratch_null = True
    return _bin(v)


SIGN_STAGES: dict[int, Stage] = {
    1: _sign1, 2: _commit_r0,
    3: _commit_more(b"r1", C.DAA_SIZE_r1, "DAA_digest_R1", False),
    4: _commit_more(b"r2", C.DAA_SIZE_r2, "DAA_digest_S0", False),
    5: _commit_more(b"r4", C.DAA_SIZE_r4, "DAA_digest_S1", True),
    6: _set_w, 7: _tag_e, 8: _tag_e1, 9: _challenge, 10: _sign10, 11: _s0, 12: _s1,
    13: _sign13, 14: _sign14, 15: _sign15,
}
LAST_STAGE = {True: 24, False: 15}


# ---------------------------------------------------------------- the two ordinals

def _run(tpm: TPM, ctx: Ctx, r: Reader, join: bool) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    stage = r.u8()
    live = handle if stage > 0 else None    # the session that dies with any error
    try:
        in0 = r.sized32("inputData0")
        in1 = r.sized32("inputData1")
        ctx.start(r, T1, CHECK_ALL)
        ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
        if stage == 0:
            s = _new_session(tpm)
            live = s.handle
            out = (_join0 if join else _sign0)(tpm, s, in0, in1)
        else:
            found = tpm.daa_sessions.get(handle)
            if found is None:
                raise TPMError(C.TPM_BAD_HANDLE)
            s = found
            if s.context.DAA_stage != stage:
                raise TPMError(C.TPM_DAA_STAGE)
            if join or stage >= 2:
                want = s.join_digest() if join else sha1(s.tpm_specific.to_bytes())
                if s.context.DAA_digestContext != want:
                    raise TPMError(C.TPM_DAA_TPM_SETTINGS)
            if stage >= (3 if join else 2):
                if s.tpm_specific.DAA_digestIssuer != sha1(s.issuer.to_bytes()):
                    raise TPMError(C.TPM_DAA_ISSUER_SETTINGS)
            fn = (JOIN_STAGES if join else SIGN_STAGES).get(stage)
            if fn is None:
                raise TPMError(C.TPM_DAA_STAGE)
            out = fn(tpm, s, in0, in1)
    except Exception:
        # any failure invalidates the DAA session (Part 3 26.1 action 2)
        if live is not None:
            tpm.daa_sessions.pop(live, None)
        raise
    if not join or stage >= 2:
        s.context.DAA_stage += 1
    if stage == LAST_STAGE[join]:
        tpm.daa_sessions.pop(s.handle, None)
    return len(out).to_bytes(4, "big") + out


@command(C.TPM_ORD_DAA_Join)
def DAA_Join(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    return _run(tpm, ctx, r, join=True)


@command(C.TPM_ORD_DAA_Sign)
def DAA_Sign(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    return _run(tpm, ctx, r, join=False)
