"""A raw TPM 2.0 client for the tests and bench/tpm2_roundtrip.py: command
frames built from TPM 2.0 Part 3 (Commands) / Part 2 (Structures), sent over
one kept connection (or a new one per command), answers returned as bytes.

Authorization is the password session only (TPM_RS_PW, empty password), which
is what the commands here need; no parameter encryption.
"""

from __future__ import annotations

import socket
import struct
from typing import Callable

from tpm.fixtures import read_response

TPM_ST_NO_SESSIONS = 0x8001
TPM_ST_SESSIONS = 0x8002
TPM_RS_PW = 0x40000009
TPM_RH_OWNER = 0x40000001
TPM_RH_NULL = 0x40000007
TPM_RC_RETRY = 0x922

CC = {"Startup": 0x144, "Shutdown": 0x145, "CreatePrimary": 0x131, "Create": 0x153,
      "Load": 0x157, "Unseal": 0x15E, "GetCapability": 0x17A, "GetRandom": 0x17B,
      "PCR_Read": 0x17E, "PCR_Extend": 0x182, "ContextSave": 0x162, "ContextLoad": 0x161,
      "FlushContext": 0x165, "NV_DefineSpace": 0x12A, "NV_Write": 0x137, "NV_Read": 0x14E}
ALG = {"sha1": 0x0004, "sha256": 0x000B, "null": 0x0010}
DIGEST_SIZE = {"sha1": 20, "sha256": 32}

PW_AUTH = struct.pack(">IHBH", TPM_RS_PW, 0, 0, 0)        # handle, nonce, attributes, hmac


def b2(data: bytes) -> bytes:
    """A TPM2B: u16 size, then the bytes."""
    return struct.pack(">H", len(data)) + data


def frame(cc: str, params: bytes = b"", handles: tuple[int, ...] = (),
          auth: bool = False) -> bytes:
    body = b"".join(struct.pack(">I", h) for h in handles)
    if auth:
        body += struct.pack(">I", len(PW_AUTH)) + PW_AUTH
    body += params
    tag = TPM_ST_SESSIONS if auth else TPM_ST_NO_SESSIONS
    return struct.pack(">HII", tag, 10 + len(body), CC[cc]) + body


def rc_of(resp: bytes) -> int:
    return struct.unpack_from(">I", resp, 6)[0]


def pcr_selection(bank: str, pcrs: list[int]) -> bytes:
    bitmap = bytearray(3)
    for p in pcrs:
        bitmap[p // 8] |= 1 << (p % 8)
    return struct.pack(">IHB", 1, ALG[bank], 3) + bytes(bitmap)


def get_capability(cap: int, prop: int, count: int) -> bytes:
    return frame("GetCapability", struct.pack(">III", cap, prop, count))


def get_random(n: int) -> bytes:
    return frame("GetRandom", struct.pack(">H", n))


def pcr_read(bank: str, pcrs: list[int]) -> bytes:
    return frame("PCR_Read", pcr_selection(bank, pcrs))


def pcr_extend(pcr: int, bank: str, digest: bytes) -> bytes:
    return frame("PCR_Extend", struct.pack(">IH", 1, ALG[bank]) + digest, (pcr,), auth=True)


# an ECC NIST P-256 restricted decryption (storage) key: a primary in seconds
# on any machine, deterministic from the hierarchy's seed (Part 1 26.3)
ECC_STORAGE = struct.pack(">HHI", 0x0023, ALG["sha256"], 0x00030072) + b2(b"") + \
    struct.pack(">HHHHHH", 0x0006, 128, 0x0043, ALG["null"], 0x0003, ALG["null"]) + \
    b2(b"") + b2(b"")
# a sealed data object (TPM_ALG_KEYEDHASH, scheme NULL), usable with its (empty) password
SEALED = struct.pack(">HHI", 0x0008, ALG["sha256"], 0x00000052) + b2(b"") + \
    struct.pack(">H", ALG["null"]) + b2(b"")


def create_primary(template: bytes = ECC_STORAGE, hierarchy: int = TPM_RH_OWNER) -> bytes:
    sensitive = b2(b2(b"") + b2(b""))
    return frame("CreatePrimary", sensitive + b2(template) + b2(b"") + struct.pack(">I", 0),
                 (hierarchy,), auth=True)


def out_public(create_primary_response: bytes) -> bytes:
    """CreatePrimary's outPublic (after objectHandle and parameterSize)."""
    (n,) = struct.unpack_from(">H", create_primary_response, 18)
    return create_primary_response[20:20 + n]


def create_sealed(parent: int, secret: bytes) -> bytes:
    sensitive = b2(b2(b"") + b2(secret))
    return frame("Create", sensitive + b2(SEALED) + b2(b"") + struct.pack(">I", 0),
                 (parent,), auth=True)


def load_created(parent: int, create_response: bytes) -> bytes:
    """Load the outPrivate and outPublic a Create answered."""
    pos = 14                                   # header, parameterSize
    (n,) = struct.unpack_from(">H", create_response, pos)
    private = create_response[pos:pos + 2 + n]
    pos += 2 + n
    (m,) = struct.unpack_from(">H", create_response, pos)
    public = create_response[pos:pos + 2 + m]
    return frame("Load", private + public, (parent,), auth=True)


def unseal(handle: int) -> bytes:
    return frame("Unseal", b"", (handle,), auth=True)


def handle_of(resp: bytes) -> int:
    """The handle a CreatePrimary / Load / ContextLoad answered."""
    return struct.unpack_from(">I", resp, 10)[0]


def retried(send: Callable[[bytes], bytes], data: bytes, tries: int = 5) -> bytes:
    """send(data), sent again while the TPM answers TPM_RC_RETRY (libtpms
    does, e.g. to the first Create under an ECC parent or the first NV_Write
    after NV_DefineSpace), as tpm2-tss's ESAPI does: the last response."""
    for _ in range(tries):
        resp = send(data)
        if len(resp) < 10 or rc_of(resp) != TPM_RC_RETRY:
            break
    return resp


class TPM2Client:
    """Commands over one kept connection (reconnects if the peer closed it)."""

    def __init__(self, addr, timeout: float = 60.0, keep: bool = True):
        self.addr = addr
        self.timeout = timeout
        self.keep = keep
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        s = socket.create_connection(self.addr, timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def send(self, data: bytes) -> bytes:
        """One command (or any bytes, in one write) -> the response bytes."""
        if self.sock is None:
            self.sock = self._connect()
        try:
            self.sock.sendall(data)
            resp, _ = read_response(self.sock, self.timeout)
        finally:
            if not self.keep:
                self.close()
        if not resp and self.keep:             # the server dropped a kept connection
            self.close()
        return resp

    def __call__(self, data: bytes) -> bytes:
        return self.send(data)

    def ok(self, data: bytes) -> bytes:
        """The response of a command that must succeed (retried())."""
        resp = retried(self.send, data)
        if len(resp) < 10 or rc_of(resp):
            raise AssertionError("TPM2 command 0x%s failed: %s" % (data[6:10].hex(), resp.hex()))
        return resp

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# NV (Part 3 31): an owner-authorized ordinary index
TPMA_NV_OWNERWRITE = 1 << 1
TPMA_NV_OWNERREAD = 1 << 17


def nv_define(index: int, size: int) -> bytes:
    public = struct.pack(">IHI", index, ALG["sha256"], TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD) \
        + b2(b"") + struct.pack(">H", size)
    return frame("NV_DefineSpace", b2(b"") + b2(public), (TPM_RH_OWNER,), auth=True)


def nv_write(index: int, data: bytes, offset: int = 0) -> bytes:
    return frame("NV_Write", b2(data) + struct.pack(">H", offset), (TPM_RH_OWNER, index),
                 auth=True)


def nv_read(index: int, size: int, offset: int = 0) -> bytes:
    return frame("NV_Read", struct.pack(">HH", size, offset), (TPM_RH_OWNER, index), auth=True)


def nv_data(nv_read_response: bytes) -> bytes:
    (n,) = struct.unpack_from(">H", nv_read_response, 14)
    return nv_read_response[16:16 + n]


def context_save(handle: int) -> bytes:
    return frame("ContextSave", b"", (handle,))


def context_load(context_save_response: bytes) -> bytes:
    return frame("ContextLoad", context_save_response[10:])


def flush(handle: int) -> bytes:
    return frame("FlushContext", struct.pack(">I", handle))


def startup(clear: bool = True) -> bytes:
    return frame("Startup", struct.pack(">H", 0 if clear else 1))


def ctrl(port: int, message: bytes, timeout: float = 10.0) -> bytes:
    """One swtpm control-channel message on a new connection to port + 1."""
    with socket.create_connection(("127.0.0.1", port + 1), timeout=timeout) as s:
        s.sendall(message)
        return s.recv(4096)
