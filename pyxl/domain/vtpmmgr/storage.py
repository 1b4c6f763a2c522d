"""The seed manager's disk image (stubdom/vtpmmgr/vtpm_storage.c), all
big-endian:

    0      "VTPMMGRDOM" (10 bytes)
    10     uint32 version = 1
    14     uint32 L = length of the storage key
    18     TPM_KEY: the manager's bind key, wrapped by the hardware SRK
    18+L   256-byte RSA block = Bind(AES-256 table key || uint32 cipher_sz)
    18+L+256  uuid table: 16-byte IV || AES-256-CBC(entries || random pad);
           entry = 16 uuid bytes || uint32 offset; cipher_sz counts the IV;
           0 = no table (a fresh header binds an all-zero key and size 0)
    256-aligned blocks after the table: one per vTPM = Bind(SHA-1 || AES key)

Entries are kept sorted by uuid; a new vTPM gets the block at the end, and
blocks the growing table would overlap move to the end ("Relocating vtpm
data").  Bind is software RSA-OAEP with the bind key's public half; reading
needs the hardware TPM's TPM_UnBind.

Crash safety, within the seed's format: every write is followed by a flush
(a blkfront barrier) so the order on disk is the order written; a vTPM's
hash+key update -- the frequent case -- is one 256-byte block inside one
sector, replaced whole.  Registering a new vTPM rewrites the table in
place and then the table key block.  Unlike the seed (vtpm_storage_new_vtpm),
which binds a new table key first and then writes the table -- a crash
between the two leaves the old table under the new key, which no manager
can read, and every vTPM's state with it -- the table keeps its key once it
has entries, and the new vTPM's entry goes last on disk: a crash between
the writes leaves the old key block, whose cipher size covers the old
entries at the head of the new table (relocated blocks are copies, written
before), so the next manager loads the old table.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pyxl.domain.drivers.tpmback import uuid_text
from pyxl.hypervisor import testfault
from pyxl.tpm.marshal import Reader
from pyxl.tpm.structures import TPM_KEY

from .hwtpm import HwTpmError, bind
from .protocol import HASHKEYSZ, RECORD_SIZES

if TYPE_CHECKING:
    from .main import ManagerBase

_T = TypeVar("_T")

IDSTR = b"VTPMMGRDOM"
DISKVERS = 1
HEADERSZ = 18
RSA_CIPHER_SIZE = 256
AES_BLOCK = 16
AES_KEY_SIZE = 32
ENT = 20
BUF_SIZE = 4096
TPM_FAIL, TPM_IOERROR, TPM_BAD_PARAMETER, TPM_RESOURCES = 9, 31, 3, 21


class StorageFailure(Exception):
    def __init__(self, rc: int):
        super().__init__(rc)
        self.rc = rc


# a vTPM's uuid as the seed's log lines print it, made once per uuid (every
# save prints its vTPM's)
uuid_str = functools.lru_cache(maxsize=256)(uuid_text)


class MgrStorage:
    """The disk on a TPM 1.2 chip (storage2.MgrStorage2: on a 2.0 chip)."""
    DISKVERS = DISKVERS
    OTHER_CHIPS = {2: "a TPM 2.0 chip (extra=\"tpm2=1\")"}      # disk version -> chip

    def __init__(self, fd: int, mgr: ManagerBase[Any, Any]):
        self.fd = fd
        self.mgr = mgr                   # the Manager: hw, log, rng, storage key state
        self.log = mgr.log
        self.reset()

    def reset(self) -> None:
        self.aes_offset = self.uuid_offset = self.end_offset = 0
        self.vtpms: list[list] = []      # [uuid bytes, offset], sorted by uuid
        self.table_key = b""             # the uuid table's AES key, once it has entries

    # -- raw disk ------------------------------------------------------------
    def _write(self, off: int, data: bytes, msg: str) -> None:
        try:
            # durable on return (RWF_DSYNC: a pwrite then fdatasync in one
            # system call): blkfront's flush, the data, not the image's mtime
            n = os.pwritev(self.fd, (data,), off, os.RWF_DSYNC)
        except OSError as e:
            n = -1
            err = e.strerror
        else:
            err = "Success"
        if n != len(data):
            self.log.error("write() failed! %s : rc=(%d/%d), error=(%s)\n" % (msg, n, len(data), err))
            raise StorageFailure(TPM_IOERROR)

    def _read(self, off: int, n: int, msg: str) -> bytes:
        data = os.pread(self.fd, n, off)
        if len(data) != n:
            self.log.error("read() failed! %s : rc=(%d/%d), error=(Success)\n" % (msg, len(data), n))
            raise StorageFailure(TPM_IOERROR)
        return data

    # -- the uuid table ----------------------------------------------------------
    def _index(self, u: bytes) -> int:
        lo, hi = 0, len(self.vtpms) - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            c = (u > self.vtpms[mid][0]) - (u < self.vtpms[mid][0])
            if c == 0:
                return mid
            if c > 0:
                lo = mid + 1
            else:
                hi = mid - 1
        return -(lo + 1)

    def _add(self, u: bytes, offset: int, index: int) -> None:
        self.log.info("Registered vtpm %s\n" % uuid_str(u))
        self.vtpms.insert(index, [bytes(u), offset])

    def _bind(self, data: bytes) -> bytes:
        return bind(self.log, self.mgr.key, data)

    # -- the storage key's bytes in the header (hooks for the TPM 2.0 disk) --
    def _key_bytes(self) -> bytes:
        return self.mgr.key.to_bytes()

    def _parse_key(self, raw: bytes) -> object:
        return TPM_KEY.unmarshal(Reader(raw))

    def new_vtpm(self, u: bytes, index: int) -> None:
        """Register `u` (vtpm_storage.c vtpm_storage_new_vtpm).  If it fails,
        the table in memory is the one before again: before the table's new
        key is written (a relocation's write; the key's bind, on a TPM 2.0
        chip the chip's TPM2_RSA_Encrypt, which a daemon restart can
        interrupt) that is the table on disk, so the next save registers
        the vTPM again rather than finding it registered in memory only and
        writing its record where no table on disk points (the vTPM's state
        lost at the manager's next start)."""
        vtpms, end_offset = [list(v) for v in self.vtpms], self.end_offset
        try:
            self._new_vtpm(u, index)
        except BaseException:
            self.vtpms, self.end_offset = vtpms, end_offset
            raise

    def _new_vtpm(self, u: bytes, index: int) -> None:
        self._add(u, self.end_offset, index)
        self.end_offset += RSA_CIPHER_SIZE
        cipher_sz = AES_BLOCK + len(self.vtpms) * ENT
        cipher_sz += -cipher_sz % AES_BLOCK
        uuid_end = (self.uuid_offset + cipher_sz + RSA_CIPHER_SIZE) & ~(RSA_CIPHER_SIZE - 1)
        for v in self.vtpms:
            if v[1] < uuid_end:
                self.log.info("Relocating vtpm data\n")
                block = self._read(v[1], RSA_CIPHER_SIZE, "vtpm hashkey relocate")
                self._write(self.end_offset, block, "vtpm hashkey relocate")
                v[1] = self.end_offset
                self.end_offset += RSA_CIPHER_SIZE
        key = self.table_key
        if not key:                      # the first entry: the fresh header's key is zeros
            self.log.info("Generating a new symmetric key\n")
            key = self.mgr.rng(AES_KEY_SIZE)
        self.log.info("Binding encrypted key\n")
        key_block = self._bind(key + struct.pack(">I", cipher_sz))
        self.log.info("Encrypting the uuid table\n")
        # the new entry last (a stable sort): the old key block's size covers the others
        entries = sorted(self.vtpms, key=lambda v: v[0] == u)
        plain = b"".join(v[0] + struct.pack(">I", v[1]) for v in entries)
        plain += self.mgr.rng(-len(plain) % AES_BLOCK)
        iv = self.mgr.rng(AES_BLOCK)
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        self._write(self.uuid_offset, iv + enc.update(plain) + enc.finalize(), "vtpm uuid table")
        if testfault.ARMED:
            testfault.at("vtpmmgr:table-written")
        self._write(self.aes_offset, key_block, "vtpm aes key")
        self.table_key = key

    # -- per-vTPM hash and key -------------------------------------------------------
    def save_hashkey(self, u: bytes, hashkey: bytes) -> None:
        try:
            index = self._index(u)
            if index < 0:
                index = -index - 1
                self._try(self.new_vtpm, (u, index), "vtpm_storage_save_hashkey", 485)
            block = self._try(self._bind, (hashkey,), "vtpm_storage_save_hashkey", 489)
            self._write(self.vtpms[index][1], block, "vtpm hashkey data")
            self.log.info("Saved hash and key for vtpm %s\n" % uuid_str(u))
        except StorageFailure:
            self.log.error("Failed to save key\n")
            raise

    def load_hashkey(self, u: bytes) -> bytes:
        try:
            index = self._index(u)
            if index < 0:
                self.log.error("LoadKey failure: Unrecognized uuid! %s\n" % uuid_str(u))
                raise StorageFailure(TPM_BAD_PARAMETER)
            block = self._read(self.vtpms[index][1], RSA_CIPHER_SIZE, "vtpm hashkey data")
            clear = self._try(self.mgr.unbind, (block,), "vtpm_storage_load_hashkey", 450)
            if len(clear) < HASHKEYSZ:
                self.log.info("Decrypted Hash key size (%d) was too small!\n" % len(clear))
                raise StorageFailure(TPM_RESOURCES)
            self.log.info("Loaded hash and key for vtpm %s\n" % uuid_str(u))
            return clear if len(clear) in RECORD_SIZES else clear[:HASHKEYSZ]
        except StorageFailure:
            self.log.error("Failed to load key\n")
            raise

    def _try(self, fn: Callable[..., _T], args: tuple, func: str, line: int) -> _T:
        """TPMTRYRETURN around a call that can fail with a TPM code."""
        try:
            return fn(*args)
        except HwTpmError as e:
            self.log.tryfail(func, "vtpm_storage.c", line, e.rc)
            raise StorageFailure(e.rc) from None
        except StorageFailure as e:
            self.log.tryfail(func, "vtpm_storage.c", line, e.rc)
            raise

    # -- header ------------------------------------------------------------------------
    def new_header(self) -> None:
        self.reset()
        self.log.info("Creating new disk image header\n")
        self.log.info("Saving root storage key..\n")
        key = self._key_bytes()
        head = IDSTR + struct.pack(">II", self.DISKVERS, len(key)) + key
        self.log.info("Binding uuid table symmetric key..\n")
        self.aes_offset = len(head)
        block = self._try(self._bind, (bytes(AES_KEY_SIZE + 4),), "vtpm_storage_new_header", 547)
        self._write(0, head + block, "vtpm header")
        self.uuid_offset = len(head) + RSA_CIPHER_SIZE
        self.end_offset = (self.uuid_offset + RSA_CIPHER_SIZE) & ~(RSA_CIPHER_SIZE - 1)
        self.log.info("Saved new manager disk header.\n")

    def load_header(self) -> None:
        """Raises StorageFailure (after the seed's messages) when the disk
        holds no usable manager data."""
        self.reset()
        try:
            head = self._read(0, HEADERSZ, "vtpm header")
            self.log.info("Loading disk image header\n")
            if head[:10] != IDSTR:
                self.log.error("Invalid ID string in disk image!\n")
                raise StorageFailure(TPM_FAIL)
            version, klen = struct.unpack_from(">II", head, 10)
            if version != self.DISKVERS:
                self.log.error("Unsupported disk image version number %d\n" % version)
                if version in self.OTHER_CHIPS:
                    self.log.error("This disk image belongs to a manager on %s: a manager "
                                   "cannot read it on this chip\n" % self.OTHER_CHIPS[version])
                raise StorageFailure(TPM_FAIL)
            if klen > BUF_SIZE:
                self.log.error("Size of storage key (%d) is too large!\n" % klen)
                raise StorageFailure(TPM_IOERROR)
            raw = self._read(HEADERSZ, klen, "storage pub key")
            self.log.info("Unpacking storage key\n")
            try:
                self.mgr.storage_key = self._parse_key(raw)
            except ValueError:
                raise StorageFailure(TPM_IOERROR) from None
            self._try_init(self.mgr.load_storage_key, 626)
            self.aes_offset = HEADERSZ + klen
            block = self._read(self.aes_offset, RSA_CIPHER_SIZE, "aes key")
            self.log.info("Unbinding uuid table symmetric key\n")
            clear = self._try_init(lambda: self.mgr.unbind(block), 647)
            if len(clear) < AES_KEY_SIZE + 4:
                self.log.error("Unbound AES key size (%d) was too small! expected (%d)\n"
                               % (len(clear), AES_KEY_SIZE + 4))
                raise StorageFailure(TPM_IOERROR)
            key = clear[:AES_KEY_SIZE]
            cipher_size = struct.unpack_from(">I", clear, AES_KEY_SIZE)[0]
            self.table_key = key if cipher_size > 0 else b""
            if cipher_size & (AES_BLOCK - 1):
                self.log.error("Cipher text size (%d) is not a multiple of the aes block size! (%d)\n"
                               % (cipher_size, AES_BLOCK))
                raise StorageFailure(TPM_IOERROR)
            self.uuid_offset = self.aes_offset + RSA_CIPHER_SIZE
            end = self.uuid_offset
            if cipher_size > 0:
                self.log.info("Decrypting uuid table\n")
                table = self._read(self.uuid_offset, cipher_size, "vtpm uuid table\n")
                dec = Cipher(algorithms.AES(key), modes.CBC(table[:AES_BLOCK])).decryptor()
                plain = dec.update(table[AES_BLOCK:]) + dec.finalize()
                for i in range(0, len(plain) - ENT + 1, ENT):
                    u, off = plain[i:i + 16], struct.unpack_from(">I", plain, i + 16)[0]
                    index = self._index(u)
                    if index >= 0:
                        self.log.error("Vtpm (%s) exists multiple times! ignoring...\n" % uuid_str(u))
                        continue
                    self._add(u, off, -index - 1)
                self.log.info("Loaded %d vtpms!\n" % len(self.vtpms))
                end += cipher_size
            uuid_end = (end + RSA_CIPHER_SIZE) & ~(RSA_CIPHER_SIZE - 1)
            self.end_offset = uuid_end
            for u, off in self.vtpms:
                if off < uuid_end:
                    self.log.error("vtpm: %s offset (%d) is before end of uuid table (%d)!\n"
                                   % (uuid_str(u), off, uuid_end))
                    raise StorageFailure(TPM_IOERROR)
                if off & (RSA_CIPHER_SIZE - 1):
                    self.log.error("vtpm: %s offset(%d) is not at a multiple of the rsa cipher "
                                   "text size (%d)!\n" % (uuid_str(u), off, RSA_CIPHER_SIZE))
                    raise StorageFailure(TPM_IOERROR)
                self.end_offset = max(self.end_offset, off + RSA_CIPHER_SIZE)
        except StorageFailure:
            self.log.error("Failed to load manager data!\n")
            self.reset()
            self.mgr.forget_storage_key()
            raise

    def _try_init(self, fn: Callable[[], _T], line: int) -> _T:
        try:
            return fn()
        except HwTpmError as e:
            self.log.tryfail("vtpm_storage_load_header", "vtpm_storage.c", line, e.rc)
            raise StorageFailure(e.rc) from None
