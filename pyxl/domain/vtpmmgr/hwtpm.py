"""The manager's TPM 1.2 client for the hardware TPM (seed vtpmmgr/tpm.c):
one method per command it uses, each logging `INFO[TPM]: <name>` first and
`ERROR[TPM]: Failed with return code <TPM_NAME>` when the TPM refuses.
Authorization (OIAP/OSAP HMACs, ADIP encryption of new auth values) is
computed here from the TPM 1.2 specification, and response HMACs are
verified.  `transmit(bytes) -> bytes` is the driver (tpm_tis)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from pyxl.tpm import constants as C
from pyxl.tpm.crypto import RSAKey
from pyxl.tpm.marshal import Reader
from pyxl.tpm.structures import TPM_KEY, TPM_KEY_PARMS, TPM_PUBKEY, TPM_RSA_KEY_PARMS

from .log import MgrLog, error_name

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable

SRK_HANDLE = 0x40000000
TPM_ET_KEYHANDLE = 0x0001
TPM_PID_OWNER = 0x0005


class HwTpmError(Exception):
    def __init__(self, rc: int):
        super().__init__(error_name(rc))
        self.rc = rc


@dataclass
class AuthSession:
    handle: int = 0
    nonce_even: bytes = bytes(20)
    shared_secret: bytes = b""
    cont: bool = True


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def rsa_key_parms(usage_oaep: bool = True) -> TPM_KEY_PARMS:
    return TPM_KEY_PARMS(C.TPM_ALG_RSA, C.TPM_ES_RSAESOAEP_SHA1_MGF1 if usage_oaep else C.TPM_ES_NONE,
                         C.TPM_SS_NONE, TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes())


class HwTpm:
    def __init__(self, transmit: Callable[[bytes], bytes], log: MgrLog,
                 rng: Callable[[int], bytes] = os.urandom):
        self.transmit = transmit
        self.log = log
        self.rng = rng

    # -- framing -------------------------------------------------------------
    def _cmd(self, name: str, ordinal: int, params: bytes = b"", handles: bytes = b"",
             auth: tuple | None = None, out_handles: int = 0,
             nonce_odd: bytes | None = None) -> Reader:
        """Send one command; `auth` = (session, hmac key) for an AUTH1
        command.  Returns a Reader positioned after the response header (and
        output handles), with the auth trailer checked and removed."""
        self.log.info("%s\n" % name, "TPM")
        tag = C.TPM_TAG_RQU_AUTH1_COMMAND if auth else C.TPM_TAG_RQU_COMMAND
        trailer = b""
        odd = b""                   # the request's nonceOdd, for checking the response
        if auth:
            sess, key = auth
            odd = nonce_odd or self.rng(20)
            digest = _sha1(struct.pack(">I", ordinal), params)
            mac = hmac.new(key, digest + sess.nonce_even + odd + bytes([sess.cont]),
                           hashlib.sha1).digest()
            trailer = struct.pack(">I", sess.handle) + odd + bytes([sess.cont]) + mac
        body = handles + params + trailer
        req = struct.pack(">HII", tag, 10 + len(body), ordinal) + body
        rsp = self.transmit(req)
        if len(rsp) < 10:
            self.log.error("Failed with return code %s\n" % error_name(C.TPM_FAIL), "TPM")
            raise HwTpmError(C.TPM_FAIL)
        rtag, size, rc = struct.unpack_from(">HII", rsp)
        if rc != 0 or rtag != tag + 3:
            self.log.error("Failed with return code %s\n" % error_name(rc), "TPM")
            if auth:
                self._closed(auth[0])
            raise HwTpmError(rc or C.TPM_FAIL)
        end = len(rsp)
        if auth:
            sess, key = auth
            end -= 41
            new_even, cont, mac = rsp[end:end + 20], rsp[end + 20], rsp[end + 21:end + 41]
            out = rsp[10 + 4 * out_handles:end]
            digest = _sha1(struct.pack(">II", rc, ordinal), out)
            want = hmac.new(key, digest + new_even + odd + bytes([cont]),
                            hashlib.sha1).digest()
            sess.nonce_even = new_even
            if not hmac.compare_digest(mac, want):
                self.log.error("Auth Session verification failed!\n", "TPM")
                raise HwTpmError(C.TPM_AUTHFAIL)
            if not cont:
                self._closed(sess)
        return Reader(rsp[:end], 10)

    def _closed(self, sess: AuthSession) -> None:
        self.log.info("Auth Session: 0x%x closed by TPM\n" % sess.handle, "TPM")
        sess.handle = 0

    # -- sessions ----------------------------------------------------------------
    def oiap(self) -> AuthSession:
        r = self._cmd("TPM_OIAP", C.TPM_ORD_OIAP)
        s = AuthSession(r.u32(), r.bytes(20))
        self.log.info("Auth Session: 0x%x opened by TPM_OIAP.\n" % s.handle, "TPM")
        return s

    def osap(self, entity_type: int, entity_value: int, secret: bytes) -> AuthSession:
        odd_osap = self.rng(20)
        r = self._cmd("TPM_OSAP", C.TPM_ORD_OSAP,
                      struct.pack(">HI", entity_type, entity_value) + odd_osap)
        s = AuthSession(r.u32(), r.bytes(20))
        even_osap = r.bytes(20)
        s.shared_secret = hmac.new(secret, even_osap + odd_osap, hashlib.sha1).digest()
        self.log.info("Auth Session: 0x%x opened by TPM_OSAP.\n" % s.handle, "TPM")
        return s

    def terminate_handle(self, handle: int) -> None:
        if handle == 0:
            return                   # nothing open: the seed does not even log the call
        self._cmd("TPM_TerminateHandle", C.TPM_ORD_Terminate_Handle, struct.pack(">I", handle))
        self.log.info("Auth Session: 0x%x closed by TPM_TerminateHandle\n" % handle, "TPM")

    # -- commands ------------------------------------------------------------------
    def get_capability(self, cap: int, sub: bytes = b"") -> bytes:
        r = self._cmd("TPM_GetCapability", C.TPM_ORD_GetCapability,
                      struct.pack(">II", cap, len(sub)) + sub)
        return r.sized32()

    def flush_specific(self, handle: int, rt: int) -> None:
        self._cmd("TPM_FlushSpecific", C.TPM_ORD_FlushSpecific, struct.pack(">II", handle, rt))

    def get_random(self, n: int) -> bytes:
        return self._cmd("TPM_GetRandom", C.TPM_ORD_GetRandom, struct.pack(">I", n)).sized32()

    def read_pubek(self) -> TPM_PUBKEY:
        nonce = self.rng(20)
        r = self._cmd("TPM_ReadPubek", C.TPM_ORD_ReadPubek, nonce)
        start = r.pos
        pub = TPM_PUBKEY.unmarshal(r)
        if r.bytes(20) != _sha1(r.data[start:r.pos - 20], nonce):
            self.log.error("TPM_ReadPubek: Checksum returned by TPM was invalid!\n", "TPM")
            raise HwTpmError(C.TPM_FAIL)
        return pub

    def create_endorsement_key_pair(self) -> TPM_PUBKEY:
        nonce = self.rng(20)
        r = self._cmd("TPM_CreateEndorsementKeyPair", C.TPM_ORD_CreateEndorsementKeyPair,
                      nonce + rsa_key_parms().to_bytes())
        pub = TPM_PUBKEY.unmarshal(r)
        if r.bytes(20) != _sha1(pub.to_bytes(), nonce):
            self.log.info("TPM_CreateEndorsementKey: Checkum verification failed!\n", "VTPM")
            raise HwTpmError(C.TPM_FAIL)
        return pub

    def take_ownership(self, pubek: TPM_PUBKEY, owner_auth: bytes, srk_auth: bytes,
                       srk: TPM_KEY, oiap: AuthSession) -> TPM_KEY:
        ek = RSAKey(int.from_bytes(pubek.pubKey.key, "big"))
        enc_owner, enc_srk = ek.encrypt_oaep(owner_auth), ek.encrypt_oaep(srk_auth)
        params = (struct.pack(">H", TPM_PID_OWNER) + struct.pack(">I", len(enc_owner)) + enc_owner
                  + struct.pack(">I", len(enc_srk)) + enc_srk + srk.to_bytes())
        r = self._cmd("TPM_TakeOwnership", C.TPM_ORD_TakeOwnership, params,
                      auth=(oiap, owner_auth))
        return TPM_KEY.unmarshal(r)

    def disable_pubek_read(self, owner_auth: bytes, oiap: AuthSession) -> None:
        self._cmd("TPM_DisablePubekRead", C.TPM_ORD_DisablePubekRead, auth=(oiap, owner_auth))

    def create_wrap_key(self, parent: int, usage_auth: bytes, migration_auth: bytes,
                        key: TPM_KEY, osap: AuthSession) -> TPM_KEY:
        # ADIP: the first new secret is XORed with SHA1(sharedSecret || nonceEven);
        # the nonceOdd for the second is the one _cmd will send, so pick it here
        enc_usage = bytes(a ^ b for a, b in zip(
            usage_auth, _sha1(osap.shared_secret, osap.nonce_even)))
        odd = self.rng(20)
        enc_mig = bytes(a ^ b for a, b in zip(migration_auth, _sha1(osap.shared_secret, odd)))
        r = self._cmd("TPM_CreateWrapKey", C.TPM_ORD_CreateWrapKey,
                      enc_usage + enc_mig + key.to_bytes(), struct.pack(">I", parent),
                      auth=(osap, osap.shared_secret), nonce_odd=odd)
        return TPM_KEY.unmarshal(r)

    def load_key(self, parent: int, key: TPM_KEY, parent_auth: bytes, oiap: AuthSession) -> int:
        r = self._cmd("TPM_LoadKey", C.TPM_ORD_LoadKey, key.to_bytes(),
                      struct.pack(">I", parent), auth=(oiap, parent_auth))
        # TPM_LoadKey (1.1) HMACs inkeyHandle as an output parameter (3S), unlike LoadKey2
        handle = r.u32()
        self.log.info("Key Handle: 0x%x opened by TPM_LoadKey\n" % handle, "TPM")
        return handle

    def evict_key(self, handle: int) -> None:
        if handle == 0:
            return
        self._cmd("TPM_EvictKey", C.TPM_ORD_EvictKey, struct.pack(">I", handle))
        self.log.info("Key handle: 0x%x closed by TPM_EvictKey\n" % handle, "TPM")

    def unbind(self, key_handle: int, data: bytes, usage_auth: bytes, oiap: AuthSession) -> bytes:
        r = self._cmd("TPM_UnBind", C.TPM_ORD_UnBind, struct.pack(">I", len(data)) + data,
                      struct.pack(">I", key_handle), auth=(oiap, usage_auth))
        return r.sized32()

    def save_state(self) -> None:
        self._cmd("TPM_SaveState", C.TPM_ORD_SaveState)


def bind(log: MgrLog, key: TPM_KEY, data: bytes) -> bytes:
    """TPM_Bind in software: RSA-OAEP(SHA-1, label "TCPA") with the bind
    key's public part over TPM_BOUND_DATA {1.1.0.0, TPM_PT_BIND, data}."""
    log.info("TPM_Bind\n", "TPM")
    return _public_key(bytes(key.pubKey.key)).encrypt_oaep(BOUND_DATA_HEAD + data)


BOUND_DATA_HEAD = bytes([1, 1, 0, 0, 2])     # TPM_BOUND_DATA's ver 1.1.0.0, payload TPM_PT_BIND


@functools.lru_cache(maxsize=4)
def _public_key(modulus: bytes) -> RSAKey:
    """The bind key's public half, made once: building an RSA public key
    costs more than the encryption itself, and the manager binds with the
    same key on every SaveHashKey."""
    return RSAKey(int.from_bytes(modulus, "big"))
