"""The manager's TPM 2.0 client for the hardware TPM (Xen 4.17
stubdom/vtpmmgr/tpm2.c): one method per command the TPM 2.0 path uses,
each logging `INFO[TPM]: <C function name>` first (tpm2.c's TPM_BEGIN
prints __func__) and `ERROR[TPM]: Failed with return code <name> (<hex>)`
when the TPM refuses (TPM_UNPACK_VERIFY).  Authorization is the password
session TPM_RS_PW, as tpm2.c's TPM_AuthArea.  `transmit(bytes) -> bytes`
is the driver (tpm2_tis).

The key templates are init.c's: the SRK (tpm2_take_ownership: a
restricted RSA-2048 decryption key with AES-128-CFB, created under the
owner hierarchy with an empty auth) and the storage key SK (vtpmmgr2_create:
an RSA-2048 OAEP-SHA256 decryption key, 20 zero bytes of auth).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .hwtpm import HwTpmError
from .log import MgrLog, error_name

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable

# TPM 2.0 Part 2 (Xen 4.17 tpm2_types.h)
TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS = 0x8001, 0x8002
TPM_CC_CreatePrimary, TPM_CC_Create, TPM_CC_Load = 0x131, 0x153, 0x157
TPM_CC_RSA_Decrypt, TPM_CC_RSA_Encrypt = 0x159, 0x174
TPM_CC_FlushContext, TPM_CC_GetRandom, TPM_CC_ReadPublic = 0x165, 0x17B, 0x173
TPM_RH_OWNER, TPM_RS_PW = 0x40000001, 0x40000009
TPM_ALG_RSA, TPM_ALG_SHA256, TPM_ALG_AES = 0x0001, 0x000B, 0x0006
TPM_ALG_NULL, TPM_ALG_OAEP, TPM_ALG_CFB = 0x0010, 0x0017, 0x0043
TPM_RC_FAILURE = 0x101
# warnings asking the caller to send the command again: libtpms answers the
# first RSA key generation after start-up with TPM_RC_RETRY.  tpm2.c has no
# loop (a real chip rarely says so); tpm2-tss's ESAPI sends the command
# again on these three (its test/unit/esys-resubmissions.c), and so does
# this client.
TPM_RC_YIELDED, TPM_RC_TESTING, TPM_RC_RETRY = 0x908, 0x90A, 0x922
RESUBMIT = (TPM_RC_YIELDED, TPM_RC_TESTING, TPM_RC_RETRY)
RESUBMISSIONS = 16
FIXED_TPM, FIXED_PARENT, SENSITIVE_DATA_ORIGIN = 1 << 1, 1 << 4, 1 << 5
USER_WITH_AUTH, RESTRICTED, DECRYPT = 1 << 6, 1 << 16, 1 << 17
SRK_OBJ_ATTR = FIXED_TPM | FIXED_PARENT | USER_WITH_AUTH | SENSITIVE_DATA_ORIGIN | \
    RESTRICTED | DECRYPT
SK_OBJ_ATTR = FIXED_TPM | FIXED_PARENT | USER_WITH_AUTH | SENSITIVE_DATA_ORIGIN | DECRYPT
RSA_KEY_SIZES_BITS, AES_KEY_SIZES_BITS = 2048, 128
# flush_tpm2: TRANSIENT_FIRST .. TRANSIENT_FIRST + MAX_LOADED_OBJECTS - 1
TRANSIENT_FIRST, MAX_LOADED_OBJECTS = 0x80000000, 3
SK_AUTH = bytes(20)


def b2(data: bytes) -> bytes:
    """A TPM2B: u16 size || data."""
    return struct.pack(">H", len(data)) + data


def srk_template() -> bytes:
    """TPMT_PUBLIC of init.c tpm2_take_ownership's SRK."""
    return struct.pack(">HHI", TPM_ALG_RSA, TPM_ALG_SHA256, SRK_OBJ_ATTR) + b2(b"") + \
        struct.pack(">HHHHHI", TPM_ALG_AES, AES_KEY_SIZES_BITS, TPM_ALG_CFB, TPM_ALG_NULL,
                    RSA_KEY_SIZES_BITS, 0) + b2(b"")


def sk_template() -> bytes:
    """TPMT_PUBLIC of init.c vtpmmgr2_create's storage key."""
    return struct.pack(">HHI", TPM_ALG_RSA, TPM_ALG_SHA256, SK_OBJ_ATTR) + b2(b"") + \
        struct.pack(">HHHHI", TPM_ALG_NULL, TPM_ALG_OAEP, TPM_ALG_SHA256,
                    RSA_KEY_SIZES_BITS, 0) + b2(b"")


def password(auth: bytes) -> bytes:
    """A TPMS_AUTH_COMMAND area for TPM_RS_PW (tpm2_AuthArea_ctor), sized."""
    area = struct.pack(">I", TPM_RS_PW) + b2(b"") + b"\x01" + b2(auth)
    return struct.pack(">I", len(area)) + area


class Rsp:
    """A response's parameters, read in order; a short one is TPM_RC_FAILURE."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise HwTpmError(TPM_RC_FAILURE)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def b2(self) -> bytes:
        return self.take(self.u16())


@dataclass
class SealedKey:
    """The storage key as TPM2_Create returns it: its TPM2B_PRIVATE (wrapped
    by the SRK; useless without this chip) and TPM2B_PUBLIC, both whole."""
    private: bytes
    public: bytes


class HwTpm2:
    def __init__(self, transmit: Callable[[bytes], bytes], log: MgrLog):
        self.transmit = transmit
        self.log = log

    def _cmd(self, name: str, cc: int, handles: bytes = b"", params: bytes = b"",
             auth: bytes | None = None, log_failure: bool = True) -> Rsp:
        self.log.info("%s\n" % name, "TPM")
        if auth is None:
            body, tag = handles + params, TPM_ST_NO_SESSIONS
        else:
            body, tag = handles + password(auth) + params, TPM_ST_SESSIONS
        req = struct.pack(">HII", tag, 10 + len(body), cc) + body
        for _ in range(RESUBMISSIONS):
            rsp = self.transmit(req)
            rc = struct.unpack_from(">I", rsp, 6)[0] if len(rsp) >= 10 else TPM_RC_FAILURE
            if rc not in RESUBMIT:
                break
        if rc:
            self.log.error("Failed with return code %s (%x)\n" % (error_name(rc), rc), "TPM")
            raise HwTpmError(rc)
        return Rsp(rsp, 10)

    def flush_context(self, handle: int) -> None:
        self._cmd("TPM2_FlushContext", TPM_CC_FlushContext, struct.pack(">I", handle))

    def get_random(self, n: int) -> bytes:
        """One TPM2_GetRandom: a TPM 2.0 may return fewer bytes (at most one
        digest's worth), which tpm2.c passes on as it is."""
        r = self._cmd("TPM2_GetRandom", TPM_CC_GetRandom,
                      params=struct.pack(">H", min(n, 0xFFFF)))
        return r.b2()

    def create_primary_srk(self) -> int:
        """TPM2_CreatePrimary(TPM_RH_OWNER, the SRK template): its handle."""
        params = b2(b2(b"") + b2(b"")) + b2(srk_template()) + b2(b"") + struct.pack(">I", 0)
        r = self._cmd("TPM2_CreatePrimary", TPM_CC_CreatePrimary,
                      struct.pack(">I", TPM_RH_OWNER), params, auth=b"")
        return r.u32()

    def create_sk(self, parent: int, parent_auth: bytes) -> SealedKey:
        """TPM2_Create(parent, the SK template)."""
        params = b2(b2(SK_AUTH) + b2(b"")) + b2(sk_template()) + b2(b"") + struct.pack(">I", 0)
        r = self._cmd("TPM2_Create", TPM_CC_Create, struct.pack(">I", parent), params,
                      auth=parent_auth)
        r.u32()                                        # parameterSize
        return SealedKey(b2(r.b2()), b2(r.b2()))

    def load(self, parent: int, parent_auth: bytes, key: SealedKey) -> int:
        r = self._cmd("TPM2_Load", TPM_CC_Load, struct.pack(">I", parent),
                      key.private + key.public, auth=parent_auth)
        return r.u32()

    def read_public(self, handle: int) -> bytes:
        """TPM2_ReadPublic: the object's TPMT_PUBLIC (it must exist)."""
        return self._cmd("TPM2_ReadPublic", TPM_CC_ReadPublic,
                         struct.pack(">I", handle)).b2()

    def bind(self, key_handle: int, data: bytes) -> bytes:
        """tpm2.c TPM2_Bind: TPM2_RSA_Encrypt with the key's own scheme
        (OAEP-SHA256), no label."""
        r = self._cmd("TPM2_RSA_ENCRYPT", TPM_CC_RSA_Encrypt, struct.pack(">I", key_handle),
                      b2(data) + struct.pack(">H", TPM_ALG_NULL) + b2(b""))
        return r.b2()

    def unbind(self, key_handle: int, block: bytes) -> bytes:
        """tpm2.c TPM2_UnBind: TPM2_RSA_Decrypt under the SK's auth."""
        r = self._cmd("TPM2_RSA_Decrypt", TPM_CC_RSA_Decrypt, struct.pack(">I", key_handle),
                      b2(block) + struct.pack(">H", TPM_ALG_NULL) + b2(b""), auth=SK_AUTH)
        r.u32()
        return r.b2()
