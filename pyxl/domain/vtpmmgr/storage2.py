"""The manager's disk on a TPM 2.0 chip: storage.py's format with version 2
and, in the place of the TPM 1.2 bind key, the storage key SK as
TPM2_Create returned it (TPM2B_PRIVATE || TPM2B_PUBLIC, the private part
wrapped by the chip's SRK).  Binding is the chip's TPM2_RSA_Encrypt under
the loaded SK (Xen 4.17 disk_tpm.c TPM2_disk_bind), unbinding its
TPM2_RSA_Decrypt.

Xen 4.17 keeps the SK only in memory and makes a new one at every boot, so
its TPM 2.0 manager cannot read its own disk after a restart; keeping the
SK's blobs in the header is what lets this one load them again under the
same SRK (the persistent one named by srk_handle=, or the owner
hierarchy's primary re-created from the same template, which a TPM 2.0
derives from its owner seed: the same key every time until TPM2_Clear).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .hwtpm2 import SealedKey
from .storage import MgrStorage

if TYPE_CHECKING:
    from .main2 import Manager2

DISKVERS_TPM2 = 2


def _tpm2b(raw: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(raw):
        raise ValueError("short")
    (n,) = struct.unpack_from(">H", raw, pos)
    if pos + 2 + n > len(raw):
        raise ValueError("short")
    return raw[pos:pos + 2 + n], pos + 2 + n


class MgrStorage2(MgrStorage):
    mgr: Manager2
    DISKVERS = DISKVERS_TPM2
    OTHER_CHIPS = {1: "a TPM 1.2 chip (no tpm2=1)"}

    def _bind(self, data: bytes) -> bytes:
        return self.mgr.bind(data)

    def _key_bytes(self) -> bytes:
        key = self.mgr.key
        return key.private + key.public

    def _parse_key(self, raw: bytes) -> SealedKey:
        private, pos = _tpm2b(raw, 0)
        public, pos = _tpm2b(raw, pos)
        if pos != len(raw):
            raise ValueError("trailing bytes after the storage key")
        return SealedKey(private, public)
