"""The vTPM manager protocol (seed stubdom/vtpmmgr/vtpm_manager.h): what a
vtpm-stubdom sends the manager through its tpmfront.

TPM-style 10-byte header, big-endian: tag(2) size(4) ordinal/status(4).
A "hashkey" is SHA-1(state blob) || AES-256 key = 52 bytes.
"""

from __future__ import annotations

import struct

VTPM_TAG_REQ = 0x01C1
VTPM_TAG_RSP = 0x01C4
VTPM_ORD_SAVEHASHKEY = 1
VTPM_ORD_LOADHASHKEY = 2

VTPM_SUCCESS, VTPM_FAIL, VTPM_UNSUPPORTED, VTPM_FORBIDDEN = 0, 1, 2, 3
VTPM_RESTORE_CONTEXT_FAILED, VTPM_INVALID_REQUEST = 4, 5

HEADER = struct.Struct(">HII")
HEADER_SIZE = HEADER.size      # VTPM_COMMAND_HEADER_SIZE
HASHSZ = 20
NVMKEYSZ = 32
HASHKEYSZ = HASHSZ + NVMKEYSZ  # 52
# what SaveHashKey may carry: one hashkey (the seed), or pyxl's two -- the
# new slot's and the previous slot's, so a damaged newest slot can fall
# back (Xen 4.17 takes 52..64 bytes)
RECORD_SIZES = (HASHKEYSZ, 2 * HASHKEYSZ)


def pack(tag: int, ordinal: int, body: bytes = b"") -> bytes:
    return HEADER.pack(tag, HEADER_SIZE + len(body), ordinal) + body


def unpack_header(msg: bytes) -> tuple[int, int, int]:
    """(tag, size, ordinal/status); ValueError when shorter than a header."""
    if len(msg) < HEADER_SIZE:
        raise ValueError("message shorter than a header")
    return HEADER.unpack_from(msg)
