"""vtpm-stubdom's persistent state on its disk (vtpmblk.c).

Blob = IV(16: 12 random bytes || BE uint32 plaintext length) ||
AES-256-CBC(plaintext zero-padded to 16) under a fresh random key on
every save; the manager keeps SHA-1(blob) || key (52 bytes).

Layout: the two-slot form of Xen's 58c2ab7588 ("make state save
operation atomic", Mar 2013) rather than the seed's single slot at offset
0.  The disk is split in halves; a slot is BE uint32 length + blob; every
save goes to the slot not holding the current state.  The seed overwrote
the only copy in place.  A seed image (single slot at offset 0) still
loads: slot 0 is where the seed wrote.

Beyond Xen 4.17: the record sent to the manager is the new slot's
hash+key followed by the other slot's (104 bytes; the manager binds up
to 209), so a damaged newest slot falls back to the previous state,
which the manager's record still authenticates.  That record also lets
the slot's write and flush run while the manager stores the record
(58c2ab7588 flushes first, then sends): the command is acknowledged only
once both are durable, and a crash before that leaves either the old
record (naming the current slot, untouched) or the new one, whose
previous half names the current slot -- the old state, which is all an
unacknowledged command may leave.  A failed save changes nothing here:
the next save goes to the same slot again, never over the only copy the
manager vouches for.

The next save's key, IV and cipher context are drawn off the command's
path (prepare()): while the manager stores this save's record, once the
slot is written -- the slot's write goes to the disk first, so that it
is not held back behind work no answer waits for when the vTPM and the
manager share a CPU (vtpm-stubdom also calls it once it has answered its
guest, for the first save and after a failed write); a command's path
only encrypts.  Each is used for one save and dropped
whether that save succeeds or fails, so no key or IV is ever used twice
and every save is a new ciphertext, even of the same state.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pyxl.domain.minios import disk_is_blank
from pyxl.domain.vtpmmgr.protocol import HASHKEYSZ, HASHSZ, NVMKEYSZ

from .log import emu_format

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable

    from cryptography.hazmat.primitives.ciphers import CipherContext

    from .log import VtpmLog
    from .vtpm_cmd import ManagerClient


BLKSZ = 16
F = "vtpmblk.c"
# the lines every save prints
BEGIN_WRITE = emu_format(F, 70, "Debug", "Begin Write data=0x%x len=%u slot=%u ssize=%u")
WROTE = emu_format(F, 89, "Info", "Wrote %u bytes to NVM persistent storage")


class StorageError(Exception):
    pass


def _encryptor(key: bytes, iv12: bytes, clear_len: int) -> tuple[bytes, CipherContext]:
    """The IV for a plaintext of clear_len bytes and its AES-256-CBC context."""
    iv = iv12 + struct.pack(">I", clear_len)
    return iv, Cipher(algorithms.AES256(key), modes.CBC(iv)).encryptor()


def encrypt(clear: bytes, key: bytes, iv12: bytes) -> bytes:
    iv, enc = _encryptor(key, iv12, len(clear))
    return iv + enc.update(clear + bytes((-len(clear)) % BLKSZ)) + enc.finalize()


class _NextSave:
    """One save's fresh key and IV, with the cipher context set up for the
    plaintext length expected (the last save's): made before the command
    that uses it arrives, used once."""

    def __init__(self, rng: Callable[[int], bytes], clear_len: int):
        drawn = rng(NVMKEYSZ + 12)
        self.key, self.iv12 = drawn[:NVMKEYSZ], drawn[NVMKEYSZ:]
        self.clear_len = clear_len
        self.iv, self.enc = _encryptor(self.key, self.iv12, clear_len)

    def encrypt(self, clear: bytes) -> bytes:
        """encrypt(clear, key, iv12), the context made ahead when the
        length is the one expected (the IV holds the length)."""
        iv, enc = (self.iv, self.enc) if len(clear) == self.clear_len \
            else _encryptor(self.key, self.iv12, len(clear))
        return iv + enc.update(clear + bytes((-len(clear)) % BLKSZ)) + enc.finalize()


def decrypt(blob: bytes, key: bytes) -> bytes:
    iv, body = blob[:BLKSZ], blob[BLKSZ:]
    if len(blob) < BLKSZ or len(body) % BLKSZ:
        raise StorageError("Decryption Error: Cipher block size was not a multiple of %u" % BLKSZ)
    n = struct.unpack(">I", iv[12:])[0]
    dec = Cipher(algorithms.AES256(key), modes.CBC(iv)).decryptor()
    clear = dec.update(body) + dec.finalize()
    if n > len(clear):
        raise StorageError("plaintext length beyond the decrypted data")
    return clear[:n]


def slot_bytes(clear_len: int) -> int:
    """What one slot needs for a state of clear_len bytes: the length
    word, the IV, the padded ciphertext."""
    return 4 + BLKSZ + clear_len + (-clear_len) % BLKSZ


class VtpmBlk:
    def __init__(self, fd: int, manager: ManagerClient, log: VtpmLog,
                 rng: Callable[[int], bytes]):
        self.fd = fd
        self.manager = manager
        self.log = log
        self.rng = rng
        self.size = os.fstat(fd).st_size
        self.slot_size = self.size // 2
        self.active_slot = -1
        self.current: bytes | None = None      # hash+key of the active slot
        self._next: _NextSave | None = None     # the next save's key, IV, cipher
        self._clear_len = 0                     # the last save's plaintext length

    def fits(self, clear_len: int) -> bool:
        return slot_bytes(clear_len) <= self.slot_size

    def blank(self) -> bool:
        return disk_is_blank(self.fd)

    def _write_raw(self, blob: bytes, slot: int) -> None:
        self.log.printk(BEGIN_WRITE % (id(blob) & 0xFFFFFFFF, len(blob), slot, self.slot_size))
        if len(blob) > self.slot_size - 4:
            self.log.emu(F, 73, "Error", "vtpm data cannot fit in data slot (%d/%d)."
                         % (len(blob), self.slot_size - 4))
            raise StorageError("too big")
        try:
            # durable before the command is acknowledged: RWF_DSYNC makes
            # the write return once its data (and the allocation of a sparse
            # image's blocks) is on the disk, as a pwrite then fdatasync
            # would, in one system call -- what blkfront's flush
            # (BLKIF_OP_FLUSH_DISKCACHE) asks of the disk; not the image's
            # mtime, which fsync would also commit
            if os.pwritev(self.fd, (struct.pack(">I", len(blob)), blob), slot * self.slot_size,
                          os.RWF_DSYNC) != 4 + len(blob):
                raise OSError(5, "short write")
        except OSError as e:
            self.log.emu(F, 85, "Error", "write(data) failed! error was %s" % e.strerror)
            raise StorageError(str(e)) from None
        self.log.printk(WROTE % len(blob))

    def _read_raw(self, slot: int) -> bytes:
        off = slot * self.slot_size
        head = os.pread(self.fd, 4, off) if self.slot_size >= 4 else b""
        if len(head) != 4:
            self.log.emu(F, 101, "Error", "read(length) failed! error was Success")
            raise StorageError("short read")
        n = struct.unpack(">I", head)[0]
        if n == 0:
            self.log.emu(F, 106, "Error", "read 0 data_length for NVM")
            raise StorageError("empty")
        if n > self.slot_size - 4:
            self.log.emu(F, 110, "Error", "read invalid data_length for NVM")
            raise StorageError("bad length")
        blob = os.pread(self.fd, n, off + 4)
        if len(blob) != n:
            self.log.emu(F, 116, "Error", "read(data) failed! error was Success")
            raise StorageError("short read")
        self.log.emu(F, 120, "Info", "Read %u bytes from NVM persistent storage (slot %d)"
                     % (n, slot))
        return blob

    def write(self, clear: bytes) -> None:
        """write_vtpmblk: encrypt under a new key, write the slot not
        holding the current state while the manager stores hash||key (and
        the current state's, for the fallback).  Raises
        StorageError/ManagerError and then changes nothing: the current
        slot is untouched and the manager's record still names it."""
        target = 1 if self.active_slot == 0 else 0
        save, self._next = self._next or _NextSave(self.rng, len(clear)), None
        self._clear_len = len(clear)
        blob = save.encrypt(clear)
        hashkey = hashlib.sha1(blob).digest() + save.key

        def meanwhile() -> None:
            # the slot first, then the next save's key and cipher, while the
            # manager's write of this record is still on its way to the disk
            self._write_raw(blob, target)
            self.prepare()
        self.manager.save_hashkey(hashkey + (self.current or b""), meanwhile=meanwhile)
        self.active_slot, self.current = target, hashkey

    def prepare(self) -> None:
        """Draw the next save's key and IV and set up its cipher now, off
        the path of the command that will save (write() calls this while
        the manager works, vtpm-stubdom once it has answered); write()
        uses them once, or draws its own."""
        if self._next is None:
            self._next = _NextSave(self.rng, self._clear_len)

    def _slot(self, slot: int) -> bytes | None:
        try:
            return self._read_raw(slot)
        except StorageError:
            return None

    def read(self) -> bytes:
        """read_vtpmblk: the state the manager's record vouches for -- the
        newest, else (pyxl) the previous one, said on the console.
        StorageError when neither slot authenticates: the caller must not
        start a blank TPM over it."""
        self.active_slot, self.current = -1, None
        record = self.manager.load_hashkey()
        if len(record) not in (HASHKEYSZ, 2 * HASHKEYSZ):
            self.log.emu(F, 289, "Error",
                         "Manager returned a hashkey of invalid size! expected %d, actual %d"
                         % (NVMKEYSZ, len(record)))
            raise StorageError("bad hashkey size")
        newest = record[:HASHKEYSZ]
        blobs: list[bytes | None] = []
        hashes: list[bytes | None] = []
        for slot in (0, 1):
            if slot == 0:
                self.log.emu(F, 296, "Debug", "Reading slot 0 from disk\n")
            else:
                self.log.emu(F, 310, "Debug", "Reading slot 1 from disk (offset=%u)\n"
                             % self.slot_size)
            blob = self._slot(slot)
            blobs.append(blob)
            hashes.append(None if blob is None else hashlib.sha1(blob).digest())
            if blob is not None and hashes[-1] == newest[:HASHSZ]:
                return self._use(blob, slot, newest)
        self.log.emu(F, 322, "Error", "NVM Storage Checksum failed!")
        row = lambda b: "".join("%02X " % x for x in b) if b else "(unreadable)"   # noqa: E731
        self.log.printk("Expected: %s\nSlot 0:   %s\nSlot 1:   %s\n"
                        % (row(newest[:HASHSZ]), row(hashes[0]), row(hashes[1])))
        previous = record[HASHKEYSZ:]
        for slot in (0, 1):
            blob = blobs[slot]
            if previous and blob is not None and hashes[slot] == previous[:HASHSZ]:
                self.log.pyxl("Error", "the newest saved state is damaged; using the previous "
                              "one, from slot %d: what the last save added is lost" % slot)
                return self._use(blob, slot, previous)
        raise StorageError("checksum")

    def _use(self, blob: bytes, slot: int, hashkey: bytes) -> bytes:
        clear = decrypt(blob, hashkey[HASHSZ:])
        self.active_slot, self.current = slot, hashkey
        self._clear_len = len(clear)
        return clear
