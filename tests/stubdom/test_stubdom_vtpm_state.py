"""A vTPM's state is never silently lost or replaced, with real domain
processes (vtpmmgr-stubdom on the host TPM, vtpm-stubdom, a guest
frontend) and the faults done to them: a read-only disk, damaged or
swapped images, a damaged manager disk, a duplicate uuid, an image too
small, a manager killed under a running vTPM, a guest that goes away.

Xen 4.17 starts a blank TPM (or a blank manager) over all of these; the
expected refusals are pyxl's, each checked against the image's bytes."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tpm"))
from engine_helpers import key_pool  # noqa: E402

from hv_harness import HERE, Host, spawn_kernel  # noqa: E402
from pyxl.hypervisor import tis as T  # noqa: E402

MGR, VTPM, GUEST, VTPM2, GUEST2, MGR2 = 1, 2, 3, 4, 5, 6
UUID = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
UUID_B = "0c7b3b1e-5b0e-4c57-9a53-6f1f7f3e2a11"
SESSION = str(HERE / "tpm_session_domain.py")
POWEROFF, CRASH = 64, 67                    # the domain's exit: 64 + SHUTDOWN_reason


def frame(ordinal, params=b"", tag=0xC1):
    return struct.pack(">HII", tag, 10 + len(params), ordinal) + params


READ_PUBEK = frame(0x7C, bytes(20))
EXTEND10 = frame(0x14, struct.pack(">I", 10) + hashlib.sha1(b"measured").digest())
PCRREAD10 = frame(0x15, struct.pack(">I", 10))
SET_OWNER_INSTALL_OFF = frame(0x71, b"\0")             # TPM_SetOwnerInstall(FALSE)
SAVE_STATE = frame(0x98)                 # TPM_SaveState: keeps the volatile state (Part 3)
PERMANENT_FLAGS = frame(0x65, struct.pack(">III", 4, 4, 0x108))
OWNERSHIP = 17                  # TPM_PERMANENT_FLAGS.ownership in GetCapability's reply
PCR10 = hashlib.sha1(bytes(20) + hashlib.sha1(b"measured").digest()).digest()


def rc(rsp: bytes) -> int:
    return struct.unpack_from(">I", rsp, 6)[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    h.tis = T.TisDevice(str(tmp_path / "hwtpm.state"), key_source=key_pool())
    h.hv.iomem.add_device(T.TIS_BASE, T.TIS_LEN, h.tis)
    for name, size in (("mgr.img", 16 << 20), ("vtpm.img", 8 << 20), ("vtpm-b.img", 8 << 20)):
        with open(tmp_path / name, "wb") as f:
            f.truncate(size)
    yield h
    h.close()


def start_manager(host, domid=MGR, readonly=False):
    host.create(domid, "vtpmmgr")
    host.hv.iomem.permit(domid, 0xFED40, 5)
    return spawn_kernel(host, domid, "vtpmmgr", "/usr/lib/xen/boot/vtpmmgr-stubdom.gz", "",
                        {"hda": str(host.tmp / "mgr.img")}, readonly=readonly)


def manager_up(host, domid=MGR):
    p = start_manager(host, domid)
    host.wait_console(domid, "Waiting for commands from vTPM's:")
    return p


def start_vtpm(host, domid=VTPM, uuid=UUID, image="vtpm.img", mgr=MGR, readonly=False):
    host.create(domid, "vtpm-%d" % domid)
    host.add_vtpm(domid, mgr, uuid)
    return spawn_kernel(host, domid, "vtpm-%d" % domid, "/usr/lib/xen/boot/vtpm-stubdom.gz", "",
                        {"hda": str(host.tmp / image)}, readonly=readonly)


class Guest:
    """A guest with the vTPM's frontend open (tpm_session_domain.py)."""

    def __init__(self, host, vtpm=VTPM, domid=GUEST):
        host.create(domid, "guest-%d" % domid)
        host.add_vtpm(domid, vtpm, "d6e0a5f4-3b2c-4d1e-8f90-%012d" % domid)
        self.p = host.spawn(domid, [SESSION], stdin=subprocess.PIPE)
        assert self.p.stdout.readline() == b"ready\n", self.p.stderr.read()

    def cmd(self, request: bytes) -> bytes:
        self.p.stdin.write(request.hex().encode() + b"\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().decode().strip()
        assert line and not line.startswith("ERR"), (line, self.p.stderr.read1())
        return bytes.fromhex(line)

    def close(self) -> None:
        self.p.stdin.close()
        assert self.p.wait(30) == 0


def vtpm_session(host, *commands, **kw) -> list[bytes]:
    """Start the vTPM, run one guest through it, let both end; the responses."""
    vtpm = start_vtpm(host, **kw)
    g = Guest(host, kw.get("domid", VTPM))
    out = [g.cmd(c) for c in commands]
    g.close()
    assert vtpm.wait(30) == POWEROFF
    return out


def retire(host, *domids):
    """What the toolstack does for domains that ended: their dirs go, and
    the backends serving them (tpmback in another stub domain) free them."""
    for d in domids:
        host.destroy(d)
    deadline = time.monotonic() + 20
    for d in domids:
        for be in (MGR, MGR2, VTPM, VTPM2):
            while host.read("/local/domain/%d/backend/vtpm/%d/0/state" % (be, d)) is not None:
                assert time.monotonic() < deadline, "backend %d/%d not freed" % (be, d)
                time.sleep(0.02)
        host.log_path(d).rename(host.tmp / ("console-%d-%d.log" % (d, time.monotonic_ns())))


def last_slot(console: str) -> int:
    return int(console.rsplit("slot=", 1)[1].split()[0])


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


# -- read-only ---------------------------------------------------------------------

def test_readonly_disks_are_refused_and_left_untouched(host):
    """`,r` reaches the stub domains as a read-only disk (the toolstack side,
    xenstore `mode = "r"`, is in tests/walkthrough/test_vtpm_readonly.py)."""
    mgr_img = host.tmp / "mgr.img"
    before = sha(mgr_img)
    p = start_manager(host, readonly=True)
    assert p.wait(30) == CRASH
    con = host.wait_console(MGR, "Do_exit called!")
    assert "ERROR[VTPM]: Block device is read only! The manager needs a writable disk." in con
    assert sha(mgr_img) == before and host.tis.commands == 0
    retire(host, MGR)
    manager_up(host)
    img = host.tmp / "vtpm.img"
    before = sha(img)
    vtpm = start_vtpm(host, readonly=True)
    con = host.wait_console(VTPM, "main returned")
    assert "vtpmblk.c:42: Error: BLKIO: ERROR block device is read only!" in con
    assert vtpm.wait(30) == POWEROFF and sha(img) == before


# -- damaged, truncated, swapped vTPM images ----------------------------------------------

def _make_state(host):
    """A vTPM with saved state; its EK and the slot written last."""
    manager_up(host)
    (ek,) = vtpm_session(host, READ_PUBEK)
    assert rc(ek) == 0
    slot = last_slot(host.console(VTPM))
    retire(host, VTPM, GUEST)
    return ek, slot


def test_flipped_byte_in_the_active_slot_uses_the_older_slot(host):
    ek, slot = _make_state(host)
    img = host.tmp / "vtpm.img"
    flip(img, slot * (8 << 20) // 2 + 100)
    (again,) = vtpm_session(host, READ_PUBEK)
    con = host.console(VTPM)
    assert "vtpmblk.c:322: Error: NVM Storage Checksum failed!" in con
    assert ("vtpm: Error: the newest saved state is damaged; using the previous one, from "
            "slot %d" % (1 - slot)) in con
    assert "initializing TPM data to default values" not in con
    assert again == ek                                   # the same TPM, not a blank one


def test_both_slots_damaged_refuses_and_leaves_the_image(host):
    _make_state(host)
    img = host.tmp / "vtpm.img"
    flip(img, 100)
    flip(img, (8 << 20) // 2 + 100)
    before = sha(img)
    vtpm = start_vtpm(host)
    assert vtpm.wait(30) == CRASH
    con = host.wait_console(VTPM, "Do_exit called!")
    assert ("vtpm: Error: no slot of the disk holds the state the manager has for this vTPM's "
            "uuid (a damaged disk, or another vTPM's); refusing to start, the disk is left "
            "untouched") in con
    assert "initializing TPM data" not in con and sha(img) == before


def test_truncated_image_refuses(host):
    _make_state(host)
    img = host.tmp / "vtpm.img"
    os.truncate(img, 100)
    before = sha(img)
    assert start_vtpm(host).wait(30) == CRASH
    assert "refusing to start" in host.wait_console(VTPM, "Do_exit called!")
    assert sha(img) == before and img.stat().st_size == 100


def test_swapped_images_are_detected(host):
    manager_up(host)
    vtpm_session(host, READ_PUBEK)
    retire(host, VTPM, GUEST)
    vtpm_session(host, READ_PUBEK, uuid=UUID_B, image="vtpm-b.img")
    retire(host, VTPM, GUEST)
    before = sha(host.tmp / "vtpm-b.img")
    assert start_vtpm(host, uuid=UUID, image="vtpm-b.img").wait(30) == CRASH
    con = host.wait_console(VTPM, "Do_exit called!")
    assert "vtpmblk.c:322: Error: NVM Storage Checksum failed!" in con
    assert "(a damaged disk, or another vTPM's); refusing to start" in con
    assert sha(host.tmp / "vtpm-b.img") == before


def test_two_live_vtpms_with_one_uuid(host):
    manager_up(host)
    first = start_vtpm(host)
    host.wait_console(VTPM, "Waiting for frontend domain to connect..")
    before = sha(host.tmp / "vtpm-b.img")
    second = start_vtpm(host, domid=VTPM2, image="vtpm-b.img")
    assert second.wait(30) == CRASH
    con = host.wait_console(VTPM2, "Do_exit called!")
    assert ("vtpm: Error: the manager refused this vTPM's uuid: another live vTPM has it; "
            "refusing to start, the disk is left untouched") in con
    host.wait_console(MGR, "ERROR[VTPM]: Attempted to open vTPM twice! %s is in use by domain "
                      "%d; refusing domain %d" % (UUID, VTPM, VTPM2))
    assert sha(host.tmp / "vtpm-b.img") == before
    g = Guest(host)                                       # the first one is unaffected
    assert rc(g.cmd(READ_PUBEK)) == 0
    g.close()
    assert first.wait(30) == POWEROFF


def test_image_too_small_is_refused_at_start(host):
    manager_up(host)
    img = host.tmp / "small.img"
    img.write_bytes(bytes(4096))
    assert start_vtpm(host, image="small.img").wait(30) == CRASH
    con = host.wait_console(VTPM, "Do_exit called!")
    assert "vtpm: Error: the disk (4096 bytes) is too small" in con
    assert img.read_bytes() == bytes(4096)


# -- the manager's disk --------------------------------------------------------------

def test_manager_never_reformats_a_disk_it_cannot_read(host):
    mgr = manager_up(host)
    vtpm_session(host, READ_PUBEK)
    mgr.kill()
    mgr.wait(5)
    retire(host, MGR, VTPM, GUEST)
    img = host.tmp / "mgr.img"
    with open(img, "r+b") as f:                          # zero the header
        f.write(bytes(512))
    before = sha(img)
    assert start_manager(host).wait(30) == CRASH
    con = host.wait_console(MGR, "Do_exit called!")
    assert ("ERROR[VTPM]: The disk holds data that is not a manager image this TPM can read "
            "(damaged, or made with another TPM): refusing to initialize it; nothing was "
            "written.") in con
    assert "Assuming first time initialization" not in con and sha(img) == before


def test_manager_disk_of_another_tpm_is_refused(host, tmp_path):
    mgr = manager_up(host)
    mgr.kill()
    mgr.wait(5)
    retire(host, MGR)
    img = host.tmp / "mgr.img"
    before = sha(img)
    other = T.TisDevice(str(tmp_path / "other-hwtpm.state"), key_source=key_pool())
    host.hv.iomem._devices.insert(0, (T.TIS_BASE, T.TIS_LEN, other))   # another machine's chip
    assert start_manager(host).wait(30) == CRASH
    con = host.wait_console(MGR, "Do_exit called!")
    assert "refusing to initialize it; nothing was written." in con
    assert sha(img) == before


# -- durability and a dead manager ---------------------------------------------------------

def test_killed_manager_fails_commands_then_a_new_one_resumes(host):
    mgr = manager_up(host)
    vtpm = start_vtpm(host)
    g = Guest(host)
    assert rc(g.cmd(EXTEND10)) == 0
    mgr.kill()                                           # SIGKILL
    mgr.wait(5)
    host.destroy(MGR)                                    # what the toolstack does on a crash
    t0 = time.monotonic()
    assert rc(g.cmd(SET_OWNER_INSTALL_OFF)) == 9         # TPM_FAIL: the change cannot be saved
    assert time.monotonic() - t0 < 5                     # and that is known at once
    host.wait_console(VTPM, "its changes are undone")     # written just after the answer
    flags = g.cmd(PERMANENT_FLAGS)                       # nothing at stake: answered
    assert rc(flags) == 0 and flags[OWNERSHIP] == 1      # SetOwnerInstall(FALSE) undone
    assert g.cmd(PCRREAD10)[10:30] == PCR10

    manager_up(host, MGR2)                               # a new manager, the same disk
    host.xs.rm("/local/domain/%d/device/vtpm/0" % VTPM)   # vtpm-detach, vtpm-attach
    host.add_vtpm(VTPM, MGR2, UUID)
    assert g.cmd(PCRREAD10)[10:30] == PCR10              # the vTPM's PCRs are intact
    flags = g.cmd(PERMANENT_FLAGS)
    assert rc(flags) == 0 and flags[OWNERSHIP] == 1      # SetOwnerInstall(FALSE) undone
    # neither command changed what the vTPM stores, so neither needed the
    # manager; a change (TPM_SaveState keeps the volatile state) is saved
    # through the new one
    assert rc(g.cmd(SAVE_STATE)) == 0
    host.wait_console(VTPM, "Tpmfront:Info Reconnected to backend "
                      "/local/domain/%d/backend/vtpm/%d/0" % (MGR2, VTPM))
    host.wait_console(MGR2, "INFO[VTPM]: Saved hash and key for vtpm %s" % UUID)
    g.close()
    assert vtpm.wait(30) == POWEROFF
    retire(host, VTPM, GUEST)
    (flags,) = vtpm_session(host, PERMANENT_FLAGS, mgr=MGR2)
    assert flags[OWNERSHIP] == 1                         # and so it is on disk


def test_vtpm_follows_its_guest_while_the_manager_is_dead(host):
    mgr = manager_up(host)
    vtpm = start_vtpm(host)
    g = Guest(host)
    assert rc(g.cmd(PCRREAD10)) == 0
    mgr.kill()
    mgr.wait(5)
    host.destroy(MGR)
    g.close()
    host.destroy(GUEST)
    assert vtpm.wait(15) == POWEROFF
    assert "vtpm.c:202: Info: VTPM Shutting down" in host.final_console(VTPM)


# -- the two slots, in-process -------------------------------------------------------

class FlakyManager:
    """Keeps the record as vtpmmgr does; fails the saves it is told to."""

    def __init__(self):
        self.record, self.fail = None, False

    def save_hashkey(self, record, meanwhile=None):
        if meanwhile is not None:             # the disk write, while the manager works
            meanwhile()
        if self.fail:
            from pyxl.domain.vtpm.vtpm_cmd import ManagerError
            raise ManagerError(9)
        self.record = record

    def load_hashkey(self):
        return self.record

    def answered(self):
        return False                          # still at work when the disk write is done


def test_a_failed_save_never_overwrites_the_vouched_slot(tmp_path):
    from pyxl.domain.vtpm.log import VtpmLog
    from pyxl.domain.vtpm.vtpm_cmd import ManagerError
    from pyxl.domain.vtpm.vtpmblk import VtpmBlk
    img = tmp_path / "v.img"
    img.write_bytes(bytes(1 << 16))
    fd = os.open(img, os.O_RDWR)
    mgr, lines = FlakyManager(), []
    blk = VtpmBlk(fd, mgr, VtpmLog(lines.append), os.urandom)
    blk.write(b"A" * 50)                                  # slot 0, vouched for
    mgr.fail = True
    with pytest.raises(ManagerError):
        blk.write(b"B" * 50)                              # slot 1 written, never vouched for
    with pytest.raises(ManagerError):
        blk.write(b"C" * 50)                              # slot 1 again, not slot 0
    assert VtpmBlk(fd, mgr, VtpmLog(lines.append), os.urandom).read() == b"A" * 50
    mgr.fail = False
    blk.write(b"D" * 50)                                  # slot 1; the record keeps A's too
    assert len(mgr.record) == 104
    flip(img, (1 << 16) // 2 + 30)
    again = VtpmBlk(fd, mgr, VtpmLog(lines.append), os.urandom)
    assert again.read() == b"A" * 50 and again.active_slot == 0
    os.close(fd)


class CrashingManager(FlakyManager):
    """Stores the record, and the domain dies before its own write lands."""

    def save_hashkey(self, record, meanwhile=None):
        self.record = record
        raise SystemExit("crashed")


def test_a_crash_between_the_managers_record_and_the_slot_leaves_the_old_state(tmp_path):
    """The slot's write runs while the manager stores the new record: a
    crash after the manager stored it, before the slot was written, must
    leave the state the last acknowledged command left -- the record's
    previous half names it."""
    from pyxl.domain.vtpm.log import VtpmLog
    from pyxl.domain.vtpm.vtpmblk import VtpmBlk
    img = tmp_path / "v.img"
    img.write_bytes(bytes(1 << 16))
    fd = os.open(img, os.O_RDWR)
    mgr, lines = FlakyManager(), []
    blk = VtpmBlk(fd, mgr, VtpmLog(lines.append), os.urandom)
    blk.write(b"A" * 50)                                  # slot 0
    blk.write(b"B" * 50)                                  # slot 1: acknowledged
    crashing = CrashingManager()
    crashing.record = mgr.record
    blk.manager = crashing
    with pytest.raises(SystemExit):
        blk.write(b"C" * 50)                              # slot 0 never written
    lines.clear()
    again = VtpmBlk(fd, crashing, VtpmLog(lines.append), os.urandom)
    assert again.read() == b"B" * 50 and again.active_slot == 1
    assert "using the previous one, from slot 1" in "".join(lines)
    os.close(fd)
