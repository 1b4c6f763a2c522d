"""Transport sessions (TPM 1.2 Part 3 24): the pieces the three transport
ordinals share -- the session record, TPM_TRANSPORT_PUBLIC, the log chain
(TPM_TRANSPORT_LOG_IN / _OUT), the encryption of wrapped parameters (MGF1
XOR, AES-128 CTR / OFB), and the per-ordinal handle table that says where a
wrapped command's parameters start.  The ordinals themselves are in
commands/transport.py."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from . import constants as C
from .crypto import aes128_ctr, aes128_ofb, mgf1, sha1, xor
from .engine import TPMError
from .marshal import Reader
from .structures import (TPM_CURRENT_TICKS, TPM_TRANSPORT_AUTH, TPM_TRANSPORT_LOG_IN,
                         TPM_TRANSPORT_LOG_OUT, TPM_TRANSPORT_PUBLIC)

TPM_TRANSPORT_ENCRYPT = 0x00000001
TPM_TRANSPORT_LOG = 0x00000002
TPM_TRANSPORT_EXCLUSIVE = 0x00000004
TPM_HANDLE_TRANS_BASE = 0x03000000      # transport handles = base | slot

K = 4            # a TPM_KEY_HANDLE / TPM_HANDLE on the wire
SPECIAL = -1     # "a key handle if the resourceType after it is TPM_RT_KEY"


@dataclass
class TransportSession:
    """TPM_TRANSPORT_INTERNAL (Part 2 13.3), one live transport session."""
    handle: int
    public: TPM_TRANSPORT_PUBLIC
    auth: bytes                               # the session's authData (HMAC and MGF1 key)
    nonce_even: bytes
    digest: bytes = field(default_factory=lambda: bytes(20))   # transDigest, the log chain

    def copy(self) -> "TransportSession":
        """A copy to run a wrapped command with; the public part is shared
        (nothing changes it after EstablishTransport)."""
        return TransportSession(self.handle, self.public, self.auth, self.nonce_even,
                                self.digest)

    @property
    def encrypt(self) -> bool:
        return bool(self.public.transAttributes & TPM_TRANSPORT_ENCRYPT)

    @property
    def logging(self) -> bool:
        return bool(self.public.transAttributes & TPM_TRANSPORT_LOG)


def transport_auth(plain: bytes) -> bytes:
    """The authData of a decrypted TPM_TRANSPORT_AUTH (tag + 20 bytes)."""
    return TPM_TRANSPORT_AUTH.unmarshal(Reader(plain)).authData


def log_in(digest: bytes, parameters: bytes, pub_key_hash: bytes = bytes(20)) -> bytes:
    """transDigest extended by a TPM_TRANSPORT_LOG_IN."""
    return sha1(digest, TPM_TRANSPORT_LOG_IN(parameters, pub_key_hash).to_bytes())


def log_out(digest: bytes, ticks: TPM_CURRENT_TICKS, parameters: bytes, locality: int) -> bytes:
    """transDigest extended by a TPM_TRANSPORT_LOG_OUT."""
    return sha1(digest, TPM_TRANSPORT_LOG_OUT(ticks, parameters, locality).to_bytes())


def check_scheme(pub: TPM_TRANSPORT_PUBLIC, fips: bool, berlios: bool) -> None:
    """The encryption a TPM_TRANSPORT_ENCRYPT session asks for, in libtpms's
    order: MGF1 (no encScheme), or AES-128 in CTR or OFB mode; any other
    algorithm is TPM_BAD_KEY_PROPERTY.  The Berlios emulator has MGF1 only."""
    if pub.algId == C.TPM_ALG_AES128 and not berlios:
        if pub.encScheme not in (C.TPM_ES_SYM_CTR, C.TPM_ES_SYM_OFB):
            raise TPMError(C.TPM_INAPPROPRIATE_ENC)
        return
    if pub.algId != C.TPM_ALG_MGF1:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    if fips or pub.encScheme != C.TPM_ES_NONE:
        raise TPMError(C.TPM_INAPPROPRIATE_ENC)


def session_crypt(pub: TPM_TRANSPORT_PUBLIC, auth: bytes, data: bytes, start: int, length: int,
                  nonce_even: bytes, nonce_odd: bytes, label: bytes) -> bytes:
    """Encrypt or decrypt data[start:start+length] (a wrapped command's or
    response's parameters; label b"in" or b"out"); the rest stays as it is.
    MGF1: XOR with MGF1(nonceEven || nonceOdd || label || authData).  AES-128:
    the key is authData's first 16 bytes, the CTR's initial counter or OFB's IV
    the 16 bytes of MGF1(nonceEven || nonceOdd || label)."""
    if not length:
        return data
    area = data[start:start + length]
    if pub.algId == C.TPM_ALG_MGF1:
        area = xor(area, mgf1(nonce_even + nonce_odd + label + auth, length))
    else:
        iv = mgf1(nonce_even + nonce_odd + label, 16)
        stream = aes128_ctr if pub.encScheme == C.TPM_ES_SYM_CTR else aes128_ofb
        area = stream(auth, iv, area)
    return data[:start] + area + data[start + length:]


@dataclass(frozen=True)
class Wrap:
    """Where a wrapped command's DATAw starts: the bytes of handles before it,
    how many of them are key handles to log, the response's handle bytes."""
    in_handles: int = 0
    key_handles: int = 0
    out_handles: int = 0
    wrappable: bool = True


# ordinals the engine implements that have handles (libtpms's ordinal table);
# every other implemented ordinal has none.  EstablishTransport, ExecuteTransport
# and ReleaseTransportSigned cannot be wrapped.
_WRAP: dict[int, Wrap] = {
    C.TPM_ORD_ActivateIdentity: Wrap(K, 1), C.TPM_ORD_CertifyKey: Wrap(2 * K, 2), C.TPM_ORD_CertifyKey2: Wrap(2 * K, 2),
    C.TPM_ORD_ChangeAuth: Wrap(K, 1), C.TPM_ORD_ChangeAuthAsymFinish: Wrap(K, 1),
    C.TPM_ORD_ChangeAuthAsymStart: Wrap(K, 1), C.TPM_ORD_CreateWrapKey: Wrap(K, 1),
    C.TPM_ORD_Delegate_CreateKeyDelegation: Wrap(K, 1),
    # DSAP: entityType, keyHandle, nonceOddDSAP, blob size are not encrypted
    C.TPM_ORD_DSAP: Wrap(2 + K + 20 + 4, SPECIAL, K + 20 + 20),
    C.TPM_ORD_EvictKey: Wrap(K, 1), C.TPM_ORD_FlushSpecific: Wrap(K, SPECIAL),
    C.TPM_ORD_GetAuditDigestSigned: Wrap(K, 1), C.TPM_ORD_GetPubKey: Wrap(K, 1),
    C.TPM_ORD_KeyControlOwner: Wrap(K, 1), C.TPM_ORD_LoadAuthContext: Wrap(0, 0, K),
    C.TPM_ORD_LoadContext: Wrap(K, 0, K), C.TPM_ORD_LoadKey: Wrap(K, 1), C.TPM_ORD_LoadKey2: Wrap(K, 1, K),
    C.TPM_ORD_LoadKeyContext: Wrap(0, 0, K), C.TPM_ORD_OIAP: Wrap(0, 0, K + 20),
    # OSAP: nothing encrypted or logged
    C.TPM_ORD_OSAP: Wrap(2 + 4 + 20, 0, K + 20 + 20),
    C.TPM_ORD_OwnerReadInternalPub: Wrap(0, 1), C.TPM_ORD_Quote: Wrap(K, 1), C.TPM_ORD_Quote2: Wrap(K, 1),
    C.TPM_ORD_SaveAuthContext: Wrap(K), C.TPM_ORD_SaveContext: Wrap(K, SPECIAL), C.TPM_ORD_SaveKeyContext: Wrap(K, 1),
    C.TPM_ORD_Seal: Wrap(K, 1), C.TPM_ORD_Sealx: Wrap(K, 1), C.TPM_ORD_Sign: Wrap(K, 1),
    C.TPM_ORD_Terminate_Handle: Wrap(K),
    C.TPM_ORD_TickStampBlob: Wrap(K, 1), C.TPM_ORD_UnBind: Wrap(K, 1), C.TPM_ORD_Unseal: Wrap(K, 1),
    C.TPM_ORD_EstablishTransport: Wrap(K, 1, 0, False), C.TPM_ORD_ExecuteTransport: Wrap(wrappable=False),
    C.TPM_ORD_ReleaseTransportSigned: Wrap(K, 1, 0, False),
}
_PLAIN = Wrap()


def wrap_info(ordinal: int, implemented: Container[int]) -> Wrap | None:
    """The table row of an ordinal, None when the TPM does not implement it."""
    row = _WRAP.get(ordinal)
    if row is not None:
        return row
    return _PLAIN if ordinal in implemented else None
