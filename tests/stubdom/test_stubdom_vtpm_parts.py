"""vtpm-stubdom pieces without domains: command-line quirks, log levels,
the state blob format and two-slot disk, command handling quirks."""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pyxl.domain.vtpm import log as L
from pyxl.domain.vtpm.main import Vtpm
from pyxl.domain.vtpm.options import OptionError, parse_cmd_line
from pyxl.domain.vtpm.vtpm_cmd import ManagerError, create_error_response
from pyxl.domain.vtpm.vtpmblk import StorageError, VtpmBlk, decrypt, encrypt


def parse(*args):
    lines = []
    log = L.VtpmLog(lines.append)
    try:
        opts = parse_cmd_line(["main", *args], log)
    except OptionError:
        opts = None
    return opts, lines


def test_defaults_summary():
    opts, lines = parse()
    assert lines == ["vtpm.c:295: Info: Startup mode is `clear'\n",
                     "vtpm.c:325: Info: All PCRs initialized to default values\n",
                     "vtpm.c:329: Info: TPM Maintenance Commands disabled\n",
                     "vtpm.c:339: Info: Log level set to (null)\n"]
    assert opts.bad_ordinals == [0x2C, 0x2D, 0x2E, 0x2F, 0x30]


def test_hwinitpcr_quirks():
    opts, lines = parse("hwinitpcr=12-16,3")
    assert opts.hwinitpcrs == (1 << 12) | (1 << 3)              # the range is read as 12
    assert lines[1:3] == ["vtpm.c:314: Info: The following PCRs will be initialized with "
                          "values from the hardware TPM:\n", "vtpm.c:323: Info: \t3, 12\n"]
    assert parse("hwinitpcr=all")[0].hwinitpcrs == (1 << 24) - 1
    opts, lines = parse("hwinitpcr=24")
    assert opts is None and lines == ["vtpm.c:257: Error: hwinitpcr error: Invalid PCR index 24\n"]
    opts, lines = parse("hwinitpcr=x")
    assert opts is None and "Invalid PCR specification : x" in lines[0]
    opts, lines = parse("hwinitpcrs=1")                         # the README's spelling
    assert lines[0] == "vtpm.c:287: Error: Invalid command line option `hwinitpcrs=1'\n"
    assert opts.hwinitpcrs == 0


def test_options_and_loglevel_filter():
    opts, lines = parse("save", "maintcmds=1", "loglevel=bogus", "maintcmds=7")
    assert lines == ["vtpm.c:298: Info: Startup mode is `save'\n",
                     "vtpm.c:325: Info: All PCRs initialized to default values\n",
                     "vtpm.c:336: Info: TPM Maintenance Commands enabled\n",
                     "vtpm.c:339: Info: Log level set to (null)\n"]
    assert opts.maint_cmds and opts.bad_ordinals == []
    opts, lines = parse("loglevel=error", "deactivated")
    assert lines == []                                          # vtpm.c's info lines filtered
    out = []
    log = L.VtpmLog(out.append, L.LOG_ERR)
    log.emu("vtpmblk.c", 89, "Info", "Wrote 1 bytes to NVM persistent storage")
    log.info(L.L_WAITING, "Waiting for frontend domain to connect..")
    assert out == ["vtpmblk.c:89: Info: Wrote 1 bytes to NVM persistent storage\n"]


def test_blob_format():
    key, iv12 = bytes(range(32)), b"\xAA" * 12
    blob = encrypt(b"state!", key, iv12)
    assert len(blob) == 32 and blob[:12] == iv12 and blob[12:16] == struct.pack(">I", 6)
    dec = Cipher(algorithms.AES(key), modes.CBC(blob[:16])).decryptor()
    assert dec.update(blob[16:]) + dec.finalize() == b"state!" + bytes(10)   # zero padding
    assert decrypt(blob, key) == b"state!"


class FakeManager:
    """Holds the hash+key the way vtpmmgr does (this test is about the disk)."""

    def __init__(self):
        self.hashkey = None

    def save_hashkey(self, hk, meanwhile=None):
        if meanwhile is not None:             # the disk write, while the manager works
            meanwhile()
        self.hashkey = hk

    def load_hashkey(self):
        if self.hashkey is None:
            raise ManagerError(3)
        return self.hashkey


def test_two_slots_survive_a_torn_write(tmp_path):
    import os
    path = tmp_path / "vtpm.img"
    path.write_bytes(bytes(1 << 16))
    fd = os.open(path, os.O_RDWR)
    lines, mgr = [], FakeManager()
    log = L.VtpmLog(lines.append)
    blk = VtpmBlk(fd, mgr, log, os.urandom)
    blk.write(b"A" * 100)                                   # slot 0
    blk.write(b"B" * 200)                                   # slot 1, manager knows B
    assert blk.read() == b"B" * 200
    # a crash while writing the next state into slot 0: garbage there, manager still on B
    os.pwrite(fd, b"\x00\x00\x00\x40" + os.urandom(64), 0)
    assert VtpmBlk(fd, mgr, log, os.urandom).read() == b"B" * 200
    # the manager's hash matches neither slot: checksum failure with both hashes shown
    mgr.hashkey = hashlib.sha1(b"x").digest() + bytes(32)
    lines.clear()
    with pytest.raises(StorageError):
        VtpmBlk(fd, mgr, log, os.urandom).read()
    text = "".join(lines)
    assert "vtpmblk.c:322: Error: NVM Storage Checksum failed!\n" in text
    assert "Expected: " + "".join("%02X " % b for b in hashlib.sha1(b"x").digest()) in text
    assert "\nSlot 0:   " in text and "\nSlot 1:   " in text
    os.close(fd)


def test_command_quirks():
    class Opts:
        bad_ordinals = [0x2C]
    v = Vtpm.__new__(Vtpm)
    v.log, v.opts = L.VtpmLog(lambda s: None), Opts()
    assert v.handle(b"", 0) == b""
    maint = struct.pack(">HII", 0xC2, 10, 0x2C)
    assert v.handle(maint, 0) == struct.pack(">HII", 0xC3, 10, 10)   # AUTH1 -> 0xC3 (seed bug)
    assert create_error_response(struct.pack(">HII", 0xC1, 10, 1), 9) == struct.pack(">HII", 0xC4, 10, 9)
    assert create_error_response(struct.pack(">HII", 0xC3, 10, 1), 9)[:2] == b"\x00\xc3"
    assert create_error_response(b"\x01", 9)[:2] == b"\x00\xc4"


def test_emulator_command_lines():
    """The console text (formatted once per tag, ordinal and answer, and
    printed as one piece) is the seed's lines, in its order."""
    out = []
    log = L.VtpmLog(out.append)
    ok = struct.pack(">HII", 0xC4, 10, 0)
    for _ in range(2):                     # the second time from the cache
        out.clear()
        log.command(struct.pack(">HII", 0xC1, 14, 0x46) + b"\0\0\0\1", ok)
        assert "".join(out) == (
            "tpm_cmd_handler.c:4143: Debug: tpm_handle_command()\n"
            "tpm_cmd_handler.c:3450: Debug: [TPM_TAG_RQU_COMMAND]\n"
            "tpm_cmd_handler.c:%d: Debug: [TPM_ORD_GetRandom]\n" % L.ORD_DEBUG_LINE[0x46][1]
            + "tpm_cmd_handler.c:4084: Info: TPM command succeeded\n")
    out.clear()
    log.command(struct.pack(">HII", 0xC1, 10, 0x99999), struct.pack(">HII", 0xC4, 10, 10))
    assert "".join(out).endswith("tpm_cmd_handler.c:4070: Info: The ordinal (0x99999) was "
                                 "unknown or inconsistent\n")
    out.clear()
    log.command(struct.pack(">HII", 0xC1, 14, 0x15) + b"\0\0\0\x63", struct.pack(">HII", 0xC4, 10, 2))
    assert "".join(out).endswith("tpm_cmd_handler.c:4077: Info: TPM command failed: (0x02) The "
                                 "index to a PCR, DIR or other register is incorrect.\n")
    out.clear()
    log.command(struct.pack(">HII", 0xC7, 10, 0x46), ok)
    assert "".join(out) == ("tpm_cmd_handler.c:4143: Debug: tpm_handle_command()\n"
                            "tpm_cmd_handler.c:3456: Info: The tag value sent to for a command "
                            "(0xc7) is invalid\n")


def test_every_save_has_a_fresh_key_and_iv_prepared_ahead_or_not(tmp_path):
    """prepare() draws the next save's key and IV before the command
    arrives (while the manager works on the last save, or after a reply);
    each save -- prepared either way, unprepared, of another length than
    expected, after a failed one, of the same state again -- uses a key
    and an IV no other save used, so the disk never shows the same
    ciphertext twice, and each reads back."""
    import os

    path = tmp_path / "vtpm.img"
    path.write_bytes(bytes(1 << 16))
    fd = os.open(path, os.O_RDWR)
    mgr = FakeManager()
    blk = VtpmBlk(fd, mgr, L.VtpmLog(lambda s: None), os.urandom)
    seen = []

    def saved(clear):
        blob = os.pread(fd, 4 + 16 + 208, blk.active_slot * blk.slot_size)[4:]
        blob = blob[:16 + len(clear) + (-len(clear)) % 16]
        seen.append((mgr.hashkey[20:52], blob[:12], blob[16:]))
        assert blk.read() == clear and decrypt(blob, mgr.hashkey[20:52]) == clear

    blk.write(b"S" * 100)                     # nothing prepared: drawn at once
    saved(b"S" * 100)
    for clear in (b"S" * 100, b"S" * 100, b"T" * 200, b"S" * 100):
        blk.write(clear)                     # prepared while the manager worked on the last
        saved(clear)
    blk._next = None                          # as if the last save had not prepared one
    for clear in (b"S" * 100, b"S" * 100):
        blk.prepare()                        # as after a reply
        blk.write(clear)
        saved(clear)

    class Refusing(FakeManager):
        def save_hashkey(self, hk, meanwhile=None):
            meanwhile()                      # the slot is written, then the manager fails
            raise ManagerError(9)
    blk.manager = Refusing()
    blk.prepare()
    with pytest.raises(ManagerError):
        blk.write(b"S" * 100)
    failed = os.pread(fd, 4 + 16 + 112, (1 - blk.active_slot) * blk.slot_size)[4 + 16:]
    blk.manager = mgr
    blk.write(b"S" * 100)                    # the retry: not the failed save's key
    saved(b"S" * 100)
    keys, ivs, bodies = zip(*seen)
    assert len(set(keys)) == len(set(ivs)) == len(set(bodies)) == len(seen) == 8
    assert failed not in bodies
    os.close(fd)


def test_printk_held_sends_a_commands_lines_at_once_unchanged():
    """mini-os console_print's bytes ("\\n" -> "\\r\\n"), in order, as one
    console write when the held block ends, whichever thread printed them."""
    import threading

    from pyxl.domain.minios import make_printk

    writes = []
    printk = make_printk(writes.append)
    printk("a\n")
    with printk.held():
        printk("b\n")
        t = threading.Thread(target=printk, args=("c\r\n",))
        t.start()
        t.join()
        with printk.held():
            printk("d")
        assert writes == [b"a\r\n"]
    assert writes == [b"a\r\n", b"b\r\nc\r\nd"]
    printk("e\n")
    assert writes[-1] == b"e\r\n"
    # console_print converts each call's text on its own: a "\r" ending one
    # and a "\n" starting the next are not one line end
    with printk.held():
        printk("f\r")
        printk("\ng\n")
    assert writes[-1] == b"f\r\r\ng\r\n"


class CountingManager(FakeManager):
    """FakeManager that counts the SaveHashKey requests it gets."""

    def __init__(self):
        super().__init__()
        self.saves = 0

    def save_hashkey(self, hk, meanwhile=None):
        self.saves += 1
        super().save_hashkey(hk, meanwhile)


def test_only_a_command_that_changes_the_stored_state_saves(tmp_path, monkeypatch):
    """A new vTPM's first successful command saves, though it changes
    nothing (its state was never stored); after that a command that leaves
    the stored state as it was (TPM 1.2 Part 3: GetRandom, PCRRead, Extend
    -- PCRs are volatile -- GetCapability) is answered with no dump, no
    write, no SaveHashKey and none of the save's lines, and the disk still
    reads back what a dump gives; TPM_SaveState, which keeps the volatile
    state in what the TPM stores, saves before it is answered."""
    import os

    from pyxl.tpm import TPM, XEN_VTPM_IDENTITY

    img = tmp_path / "v.img"
    img.write_bytes(bytes(1 << 20))
    fd = os.open(img, os.O_RDWR)
    mgr, lines = CountingManager(), []

    class Opts:
        bad_ordinals, tpm2 = [], False
    v = Vtpm.__new__(Vtpm)
    v.log, v.opts, v.failed = L.VtpmLog(lines.append), Opts(), False
    v.blk = VtpmBlk(fd, mgr, v.log, os.urandom)
    v.tpm = TPM(XEN_VTPM_IDENTITY)
    v.initial, v.durable = v.tpm.dump(), None
    v.tpm.power_on("clear")
    getrandom = struct.pack(">HIII", 0xC1, 14, 0x46, 16)
    first = v.handle(getrandom, 0)
    assert first[6:10] == bytes(4) and mgr.saves == 1     # a new vTPM: saved
    assert VtpmBlk(fd, mgr, v.log, os.urandom).read() == v.tpm.dump()
    assert "Info: Wrote " in "".join(lines)

    import pyxl.tpm.state

    dumps = []                            # each serialization of the TPM's state
    dump_state = pyxl.tpm.state.dump_state
    monkeypatch.setattr(pyxl.tpm.state, "dump_state",
                        lambda tpm: dumps.append(1) or dump_state(tpm))
    image, record = img.read_bytes(), mgr.hashkey
    lines.clear()
    digest = hashlib.sha1(b"measured").digest()
    pcr10 = hashlib.sha1(bytes(20) + digest).digest()     # Part 3 TPM_Extend
    r_rand = v.handle(getrandom, 0)
    r_ext = v.handle(struct.pack(">HII", 0xC1, 34, 0x14) + struct.pack(">I", 10) + digest, 0)
    r_read = v.handle(struct.pack(">HIII", 0xC1, 14, 0x15, 10), 0)
    r_cap = v.handle(struct.pack(">HIIII", 0xC1, 18, 0x65, 0x1A, 0), 0)   # VERSION_VAL
    assert r_rand[:14] == struct.pack(">HIII", 0xC4, 30, 0, 16) and r_rand[14:] != first[14:]
    assert r_ext == struct.pack(">HII", 0xC4, 30, 0) + pcr10
    assert r_read == struct.pack(">HII", 0xC4, 30, 0) + pcr10
    assert r_cap[6:10] == bytes(4)
    assert dumps == [] and mgr.saves == 1 and mgr.hashkey == record
    assert img.read_bytes() == image
    text = "".join(lines)
    assert "[TPM_ORD_PCRRead]" in text                      # the commands' own lines
    assert "size of permanent data" not in text and "Wrote " not in text

    save_state = struct.pack(">HII", 0xC1, 10, 0x98)
    assert v.handle(save_state, 0)[6:10] == bytes(4)
    assert dumps == [1] and mgr.saves == 2 and img.read_bytes() != image
    assert VtpmBlk(fd, mgr, v.log, os.urandom).read() == v.tpm.dump()
    os.close(fd)
