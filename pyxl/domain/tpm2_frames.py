"""The few TPM 2.0 command frames the domains build themselves (the guest
kernel's probe and its resource manager's flush, pv-grub's measurements),
from TPM 2.0 Part 2 / Part 3 (libtpms src/tpm2/TpmTypes.h).  The TPM 2.0
itself is pyxl.tpm.tpm2, inside vtpm-stubdom."""

from __future__ import annotations

import hashlib
import struct

TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS = 0x8001, 0x8002
TPM_CC_PCR_Extend = 0x182
TPM_CC_FlushContext, TPM_CC_ContextSave = 0x165, 0x162
TPM_CC_GetCapability = 0x17A
TPM_CAP_TPM_PROPERTIES, TPM_PT_TOTAL_COMMANDS = 6, 0x129
TPM_RS_PW = 0x40000009
TPM_ALG_SHA1, TPM_ALG_SHA256 = 0x0004, 0x000B
BANKS = ((TPM_ALG_SHA1, hashlib.sha1), (TPM_ALG_SHA256, hashlib.sha256))
PW_SESSION = struct.pack(">IIHBH", 9, TPM_RS_PW, 0, 0, 0)     # empty password authorization


def probe_request() -> bytes:
    """Linux's tpm2_probe (drivers/char/tpm/tpm2-cmd.c): TPM2_GetCapability
    of TPM_PT_TOTAL_COMMANDS; a TPM 2.0 answers with TPM_ST_NO_SESSIONS,
    whatever its return code (a TPM 1.2 answers TPM_BADTAG, tag 0xC4)."""
    return struct.pack(">HIIIII", TPM_ST_NO_SESSIONS, 22, TPM_CC_GetCapability,
                       TPM_CAP_TPM_PROPERTIES, TPM_PT_TOTAL_COMMANDS, 1)


def is_tpm2_response(rsp: bytes) -> bool:
    return len(rsp) >= 10 and int.from_bytes(rsp[:2], "big") == TPM_ST_NO_SESSIONS


def flush_request(handle: int) -> bytes:
    """TPM2_FlushContext(handle)."""
    return struct.pack(">HIII", TPM_ST_NO_SESSIONS, 14, TPM_CC_FlushContext, handle)


def digests(data: bytes) -> list[tuple[int, bytes]]:
    """(algorithm, digest of data) for the SHA-1 and SHA-256 banks."""
    return [(alg, h(data).digest()) for alg, h in BANKS]


def pcr_extend_request(pcr: int, values: list[tuple[int, bytes]]) -> bytes:
    """TPM2_PCR_Extend(pcr, TPML_DIGEST_VALUES) with an empty password
    session (a PCR's auth is empty)."""
    body = struct.pack(">I", pcr) + PW_SESSION + struct.pack(">I", len(values))
    for alg, d in values:
        body += struct.pack(">H", alg) + d
    return struct.pack(">HII", TPM_ST_SESSIONS, 10 + len(body), TPM_CC_PCR_Extend) + body
