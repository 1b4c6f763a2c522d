"""The TPM's cryptography, all through `cryptography`: RSA (OAEP with the
"TCPA" label, PKCS#1 v1.5), SHA-1, HMAC-SHA1, and a pluggable RSA key source.

RSAKey keeps only (n, e, p) -- what the TPM stores -- and builds the
`cryptography` key objects lazily, so loading a state blob stays cheap.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import os
import struct
from typing import TYPE_CHECKING, Any, Callable, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from .constants import TPM_ES_ENC_LABEL

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import CipherContext

OAEP_TCPA = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(),
                         label=TPM_ES_ENC_LABEL)


_sha1 = hashlib.sha1

# SHA-1 of a short message (an HMAC's, a PCR extend's, an authorized
# command's parameter digests): CPython's built-in SHA-1, where the
# interpreter has it, rather than hashlib's.  hashlib's is OpenSSL's, which
# sets up, copies and frees an EVP context per object and per digest(): about
# 2,000 instructions more per digest than the built-in spends (callgrind),
# while a block costs the built-in ~1.7x what it costs OpenSSL -- so a message
# longer than SHORT_SHA1 bytes stays with hashlib's.
try:
    from _sha1 import sha1 as sha1_short  # type: ignore[import-not-found]  # (no stub)
except ImportError:           # a CPython built without it
    sha1_short = hashlib.sha1
SHORT_SHA1 = 192


def sha1_for(n: int) -> Callable[[bytes], Any]:
    """The SHA-1 constructor for a message of n bytes: sha1_short up to
    SHORT_SHA1, hashlib's beyond (the one home of that rule)."""
    return sha1_short if n <= SHORT_SHA1 else _sha1


def sha1(*parts: bytes) -> bytes:
    data = b"".join(parts)
    return sha1_for(len(data))(data).digest()


_IPAD = bytes(b ^ 0x36 for b in range(256))    # byte -> byte XOR ipad, for bytes.translate
_OPAD = bytes(b ^ 0x5C for b in range(256))
_SHA1_BLOCK = 64


def _pads(key: bytes) -> tuple[bytes, bytes]:
    """K XOR ipad, K XOR opad (RFC 2104: a key longer than a block is
    hashed first, a shorter one padded with zeros)."""
    if len(key) > _SHA1_BLOCK:
        key = _sha1(key).digest()
    key = key.ljust(_SHA1_BLOCK, b"\0")
    return key.translate(_IPAD), key.translate(_OPAD)


def hmac_sha1(key: bytes, *parts: bytes) -> bytes:
    """HMAC-SHA1 of the concatenated parts (RFC 2104, as libtpms'
    TPM_HMAC_Generate), for a key used once.  Written out on SHA-1
    (sha1_short for what is short): the `hmac` module's object set-up costs more than the hashing
    of such short messages (RFC 2202's vectors in tests/tpm/test_crypto.py)."""
    ipad_key, opad_key = _pads(key)
    inner = ipad_key + b"".join(parts)
    inner_digest = sha1_for(len(inner))(inner).digest()
    return sha1_short(opad_key + inner_digest).digest()


class HmacSha1:
    """HMAC-SHA1 under one key, its two padded key blocks hashed once, as
    the `hmac` module's HMAC object keeps its inner and outer contexts:
    each digest() copies them and hashes only the message.  For a secret
    that authorizes many commands (HmacKeys keeps them): an authorized
    command's request HMAC is checked and its response HMAC made under
    the same one.  Its messages are digests and nonces: short, so the
    contexts are the built-in SHA-1's (sha1_short)."""

    __slots__ = ("key", "_inner", "_outer")

    def __init__(self, key: bytes):
        self.key = key
        ipad_key, opad_key = _pads(key)
        self._inner = sha1_short(ipad_key)
        self._outer = sha1_short(opad_key)

    def digest(self, *parts: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(b"".join(parts))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class HmacKeys:
    """The keyed HMAC-SHA1 of the secrets a TPM's commands were authorized
    with lately (the owner's, a key's, a transport session's), so their
    pads are hashed once rather than on every command.  Looked up by the
    secret's identity -- the same bytes object the TPM holds -- never by
    comparing secret bytes; an entry keeps its secret alive, so an id is
    not reused while it is in here.  At most LIMIT entries: a full cache
    starts over.  Volatile: the engine makes a new one at TPM_Init."""

    LIMIT = 8
    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, HmacSha1] = {}

    def keyed(self, key: bytes) -> HmacSha1:
        mac = self._by_id.get(id(key))
        if mac is None or mac.key is not key:
            if len(self._by_id) >= self.LIMIT:
                self._by_id.clear()
            mac = self._by_id[id(key)] = HmacSha1(key)
        return mac


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


class _KernelRandom(io.RawIOBase):
    """The kernel's random bytes (os.urandom: getrandom()) as a raw stream."""

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        with memoryview(buf) as view:
            view[:] = os.urandom(len(view))
            return len(view)


# Nonces: the kernel's random bytes read a page at a time and handed out 20
# at a time, as libtpms draws its nonces from OpenSSL's user-space generator
# (TPM_Random -> RAND_bytes) rather than asking the kernel for each: every
# authorized command needs one or two, and a getrandom() system call each is
# a measurable share of such a command.  The page is a BufferedReader's
# buffer, so taking a nonce is one C call (a Python method doing the same
# slicing cost three times as many instructions).  For nonces and
# GetRandom's answer only (public_random: public once sent); secrets still
# come from random_bytes().
_NONCE_PAGE = 4096 - 4096 % 20
_nonce_source = io.BufferedReader(_KernelRandom(), _NONCE_PAGE)
nonce: Callable[[], bytes] = functools.partial(_nonce_source.read, 20)   # 20 fresh random bytes
# n fresh random bytes that leave the TPM as they are: GetRandom's answer,
# which libtpms also draws from RAND_bytes (TPM_Process_GetRandom); more
# than a page is read from the kernel directly
public_random: Callable[[int], bytes] = _nonce_source.read


def _drop_parents_nonces() -> None:
    """A forked child never hands out the nonces its parent had buffered:
    peek() returns all that is buffered (or, with none, a fresh page),
    and that much is read and dropped."""
    _nonce_source.read(len(_nonce_source.peek(1)))


os.register_at_fork(after_in_child=_drop_parents_nonces)


def xor(a: bytes, b: bytes) -> bytes:
    """a XOR b, as long as the shorter (as big integers: fast for long pads)."""
    n = min(len(a), len(b))
    return (int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")).to_bytes(n, "big")


def mgf1(seed: bytes, length: int) -> bytes:
    """MGF1 with SHA-1 (PKCS#1 B.2.1): the keystream of Sealx / Unseal's XOR
    and of transport sessions (the seed is hashed once, then copied)."""
    base = sha1_for(len(seed))(seed)
    n = (length + 19) // 20
    out = []
    for counter in _COUNTERS[:n] if n <= len(_COUNTERS) else map(_U32.pack, range(n)):
        h = base.copy()
        h.update(counter)
        out.append(h.digest())
    return b"".join(out)[:length]


_U32 = struct.Struct(">I")
_COUNTERS = tuple(map(_U32.pack, range(4096 // 20 + 1)))   # MGF1's for a TPM buffer's worth


class RSAKey:
    """An RSA key pair (or public key when p is None)."""

    __slots__ = ("n", "e", "p", "_priv", "_pub")

    def __init__(self, n: int, e: int = 65537, p: int | None = None):
        self.n, self.e, self.p = n, e, p
        self._priv: rsa.RSAPrivateKey | None = None
        self._pub: rsa.RSAPublicKey | None = None

    @classmethod
    def from_crypto(cls, key: rsa.RSAPrivateKey) -> "RSAKey":
        nums = key.private_numbers()
        k = cls(nums.public_numbers.n, nums.public_numbers.e, nums.p)
        k._priv = key
        return k

    @classmethod
    def from_modulus_prime(cls, n: int, e: int, p: int) -> "RSAKey":
        if p <= 1 or n % p:
            raise ValueError("prime does not divide the modulus")
        return cls(n, e, p)

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def modulus(self) -> bytes:
        return self.n.to_bytes(self.size, "big")

    def prime(self) -> bytes:
        if self.p is None:
            raise ValueError("no private key")
        return self.p.to_bytes((self.p.bit_length() + 7) // 8, "big")

    def public(self) -> rsa.RSAPublicKey:
        if self._pub is None:
            self._pub = rsa.RSAPublicNumbers(self.e, self.n).public_key()
        return self._pub

    def private(self) -> rsa.RSAPrivateKey:
        if self._priv is None:
            if self.p is None:
                raise ValueError("no private key")
            p, q = self.p, self.n // self.p
            d = rsa.rsa_recover_private_exponent(self.e, p, q)
            nums = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                         rsa.rsa_crt_iqmp(p, q),
                                         rsa.RSAPublicNumbers(self.e, self.n))
            self._priv = nums.private_key(unsafe_skip_rsa_key_validation=True)
        return self._priv

    # -- encryption
    def encrypt_oaep(self, data: bytes) -> bytes:
        return self.public().encrypt(data, OAEP_TCPA)

    def decrypt_oaep(self, data: bytes) -> bytes:
        """Raises ValueError on a bad ciphertext."""
        return self.private().decrypt(data, OAEP_TCPA)

    def encrypt_pkcs1v15(self, data: bytes) -> bytes:
        return self.public().encrypt(data, padding.PKCS1v15())

    def decrypt_pkcs1v15(self, data: bytes) -> bytes:
        return self.private().decrypt(data, padding.PKCS1v15())

    # -- signatures
    def sign_sha1_digest(self, digest: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 over an already computed SHA-1 digest."""
        return self.private().sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))

    def sign_raw_pkcs1(self, data: bytes) -> bytes:
        """PKCS#1 v1.5 type-1 signature of arbitrary (DER DigestInfo) data, as
        TPM_SS_RSASSAPKCS1v15_DER asks: the padding is built here, since
        cryptography signs only a digest it wraps in a DigestInfo itself.
        The private exponent is applied in constant time, by the function
        OpenSSL's RSA private operation under libtpms uses for it
        (BN_mod_exp_mont_consttime, bn.py; imported here, so that ctypes and
        libcrypto are not loaded with the engine)."""
        from .bn import mod_exp_consttime

        k = self.size
        if len(data) > k - 11:
            raise ValueError("data too long")
        em = b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data
        d = self.private().private_numbers().d
        return mod_exp_consttime(int.from_bytes(em, "big"), d, self.n).to_bytes(k, "big")

    def verify_sha1_digest(self, signature: bytes, digest: bytes) -> bool:
        try:
            self.public().verify(signature, digest, padding.PKCS1v15(),
                                 utils.Prehashed(hashes.SHA1()))
            return True
        except InvalidSignature:
            return False


KeySource = Callable[[int], RSAKey]


def generate_rsa(bits: int = 2048, e: int = 65537) -> RSAKey:
    """The default key source: a fresh key from `cryptography`."""
    return RSAKey.from_crypto(rsa.generate_private_key(public_exponent=e, key_size=bits))


class KeyPool:
    """A key source that hands out pre-generated keys in turn (for fast tests)."""

    def __init__(self, keys: Iterable[RSAKey]):
        self.keys = list(keys)
        self.i = 0

    def __call__(self, bits: int = 2048) -> RSAKey:
        for _ in range(len(self.keys)):
            k = self.keys[self.i % len(self.keys)]
            self.i += 1
            if k.bits == bits:
                return RSAKey(k.n, k.e, k.p)
        return generate_rsa(bits)


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC with PKCS#7 padding (context blobs)."""
    from cryptography.hazmat.primitives import padding as sympad
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    p = sympad.PKCS7(128).padder()
    padded = p.update(data) + p.finalize()
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return e.update(padded) + e.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """Inverse of aes_cbc_encrypt; ValueError on a bad length or padding."""
    from cryptography.hazmat.primitives import padding as sympad
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    if len(data) % 16 or len(iv) != 16:
        raise ValueError("bad AES-CBC input")
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = d.update(data) + d.finalize()
    u = sympad.PKCS7(128).unpadder()
    return u.update(padded) + u.finalize()


# AES block encryptors by key.  A transport session keeps its key for its
# whole life and only the counter / IV changes per command, and building a
# cipher object costs far more than encrypting a few blocks; ECB on whole
# blocks keeps no state between calls, so one encryptor serves every call.
_ECB: dict[bytes, CipherContext] = {}
_ECB_MAX = 32


def _aes_blocks(key: bytes) -> Callable[[bytes], bytes]:
    e = _ECB.get(key)
    if e is None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        if len(_ECB) >= _ECB_MAX:
            _ECB.clear()
        e = _ECB[key] = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return e.update


def aes128_ctr(key: bytes, counter: bytes, data: bytes) -> bytes:
    """AES-128 in CTR mode as TPM 1.2 runs it (transport sessions, ADIP,
    Sealx): the key and the initial counter are the first 16 bytes of what is
    given, and only the counter's low 32 bits count up, wrapping to zero
    without a carry into the upper 96 (libtpms TPM_AES_ctr128_encrypt) --
    which is why the counter blocks are built here rather than by
    `cryptography`'s CTR mode, which carries through all 128 bits."""
    if not data:
        return b""
    high, low = counter[:12], int.from_bytes(counter[12:16], "big")
    end = low + (len(data) + 15) // 16
    lows: Iterable[int] = range(low, end) if end <= 1 << 32 else \
        itertools.chain(range(low, 1 << 32), range(end - (1 << 32)))
    blocks = b"".join(map(high.__add__, map(_U32.pack, lows)))    # high || low+i, wrapping
    return xor(data, _aes_blocks(key[:16])(blocks))


def aes128_ofb(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128 in OFB mode (transport sessions): key and IV are the first 16
    bytes of what is given; each output block is the encryption of the one
    before it."""
    encrypt = _aes_blocks(key[:16])
    stream, block = [], iv[:16]
    for _ in range((len(data) + 15) // 16):
        block = encrypt(block)
        stream.append(block)
    return xor(data, b"".join(stream)) if data else b""
