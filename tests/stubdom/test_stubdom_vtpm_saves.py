"""When a vTPM saves, with real domain processes (vtpmmgr-stubdom on the
host TPM, vtpm-stubdom TPM 1.2 and `tpm2=1`, a guest frontend): a new
vTPM's first successful command saves; after that only a command that
changes what the vTPM stores does, before it is answered; one that leaves
it as it was is answered with no write to either image, no SaveHashKey to
the manager and none of the save's console lines (pyxl-vtpm(7), "What
happens to a vTPM's state").  A vTPM killed (not shut down: no closing
TPM_SaveState) and started again on its disk has the state the last save
left.

Which command changes what a TPM keeps is the TPM spec's (Part 3): TPM
1.2 PCRs are volatile (Extend, PCRRead), GetRandom, GetCapability and
ReadPubek read; TPM_SetOwnerInstall sets a permanent flag; TPM_SaveState
keeps the volatile state for the next TPM_Startup(ST_STATE).  TPM 2.0
PCR_Extend, PCR_Read and GetRandom keep no state; NV_DefineSpace and
NV_Write do.  The save's lines are the seed's (vtpmblk.c "Wrote ... bytes
to NVM persistent storage", vtpm_cmd.c "Sending encryption key to backend",
the manager's "TPM_Bind" and "Saved hash and key for vtpm")."""

from __future__ import annotations

import hashlib
import struct
import time

from hv_harness import spawn_kernel
from test_stubdom_vtpm_state import (EXTEND10, GUEST, MGR, OWNERSHIP, PCR10, PCRREAD10,  # noqa: F401
                                     PERMANENT_FLAGS, READ_PUBEK, SAVE_STATE,
                                     SET_OWNER_INSTALL_OFF, UUID, VTPM, Guest, frame, host,
                                     manager_up, rc, retire)
from tpm2 import client as C

GET_RANDOM16 = frame(0x46, struct.pack(">I", 16))
WROTE, SENDING = "Info: Wrote ", "vtpm_cmd.c:201: Info: Sending encryption key to backend"
SAVED, BIND = "INFO[VTPM]: Saved hash and key for vtpm %s" % UUID, "INFO[TPM]: TPM_Bind"
D256 = hashlib.sha256(b"measured").digest()
NV_INDEX, NV_DATA = 0x01500016, b"8 bytes!"


def start_vtpm(host, cmdline=""):
    host.create(VTPM, "vtpm-%d" % VTPM)
    host.add_vtpm(VTPM, MGR, UUID)
    return spawn_kernel(host, VTPM, "vtpm-%d" % VTPM, "/usr/lib/xen/boot/vtpm-stubdom.gz",
                        cmdline, {"hda": str(host.tmp / "vtpm.img")})


def kill(host, vtpm, guest):
    """The vTPM dies (SIGKILL: no shutdown, no closing save), its guest
    with it; the toolstack removes both."""
    vtpm.kill()
    vtpm.wait(5)
    guest.p.kill()
    guest.p.wait(5)
    retire(host, VTPM, GUEST)


def images(host) -> tuple[bytes, bytes]:
    return (host.tmp / "vtpm.img").read_bytes(), (host.tmp / "mgr.img").read_bytes()


def save_lines(host) -> tuple[int, int, int, int]:
    """How many of each save line the vTPM's and the manager's consoles show."""
    v, m = host.console(VTPM), host.console(MGR)
    return v.count(WROTE), v.count(SENDING), m.count(SAVED), m.count(BIND)


def wait_saves(host, n: int) -> tuple[int, int, int, int]:
    """Wait until each save line has appeared n times; then the counts.  A
    console shows a domain's lines in the order it printed them, so lines of
    commands answered before the last save are in by then."""
    deadline = time.monotonic() + 20
    while min(counts := save_lines(host)) < n:
        assert time.monotonic() < deadline, (counts, host.console(VTPM)[-2000:])
        time.sleep(0.02)
    return counts


def ok(guest, request: bytes) -> bytes:
    """A TPM 2.0 command that must succeed (sent again on TPM_RC_RETRY)."""
    rsp = C.retried(guest.cmd, request)
    assert C.rc_of(rsp) == 0, rsp.hex()
    return rsp


def pcr10_sha256(rsp: bytes) -> bytes:
    """TPM2_PCR_Read's one digest: the last 32 bytes of the answer."""
    assert C.rc_of(rsp) == 0
    return rsp[-32:]


# -- TPM 1.2 -------------------------------------------------------------------------

def test_a_new_vtpms_first_command_saves_before_it_is_answered(host):
    """ReadPubek changes nothing, but a new vTPM's state was never stored:
    both images are written by the time the answer is in, and the vTPM
    killed then comes back with the same endorsement key (a blank TPM
    would make a new one)."""
    manager_up(host)
    vtpm = start_vtpm(host)
    g = Guest(host)
    blank_vtpm, mgr_before = images(host)
    assert blank_vtpm == bytes(len(blank_vtpm))          # nothing written at start-up
    ek = g.cmd(READ_PUBEK)
    vimg, mimg = images(host)
    assert rc(ek) == 0 and vimg != blank_vtpm and mimg != mgr_before
    kill(host, vtpm, g)
    start_vtpm(host)
    g = Guest(host)
    assert g.cmd(READ_PUBEK) == ek
    host.wait_console(MGR, "INFO[VTPM]: Loaded hash and key for vtpm %s" % UUID)
    assert "initializing TPM data to default values" not in host.console(VTPM)
    g.close()


def test_commands_that_change_nothing_are_answered_without_a_save(host):
    manager_up(host)
    start_vtpm(host)
    g = Guest(host)
    ek = g.cmd(READ_PUBEK)                                # the first command: saved
    assert rc(ek) == 0
    first = wait_saves(host, 1)
    before = images(host)
    e, r, rnd, flags = (g.cmd(c) for c in (EXTEND10, PCRREAD10, GET_RANDOM16, PERMANENT_FLAGS))
    assert e == struct.pack(">HII", 0xC4, 30, 0) + PCR10   # Extend answers the new value
    assert r == struct.pack(">HII", 0xC4, 30, 0) + PCR10
    assert rnd[:14] == struct.pack(">HIII", 0xC4, 30, 0, 16)
    assert rc(flags) == 0 and flags[OWNERSHIP] == 1
    assert g.cmd(READ_PUBEK) == ek
    assert images(host) == before                        # neither image written
    # a change saves: its lines are the only ones since the first save's
    assert rc(g.cmd(SET_OWNER_INSTALL_OFF)) == 0
    assert images(host)[0] != before[0] and images(host)[1] != before[1]
    assert wait_saves(host, 2) == tuple(n + 1 for n in first)
    con = host.console(VTPM)
    assert con.index("[TPM_ORD_PCRRead]") < con.rindex(SENDING)
    g.close()


def test_a_change_is_saved_before_it_is_answered_and_survives_a_kill(host):
    """SetOwnerInstall(FALSE) and SaveState (after an Extend of PCR 10)
    each write both images before their answers; the vTPM killed and
    started with `save` (TPM_Startup(ST_STATE)) has the flag cleared and
    PCR 10 as SaveState kept it."""
    manager_up(host)
    vtpm = start_vtpm(host)
    g = Guest(host)
    assert rc(g.cmd(READ_PUBEK)) == 0
    assert rc(g.cmd(EXTEND10)) == 0
    for change in (SET_OWNER_INSTALL_OFF, SAVE_STATE):
        vimg, mimg = images(host)
        assert rc(g.cmd(change)) == 0
        after = images(host)
        assert after[0] != vimg and after[1] != mimg, change.hex()
    kill(host, vtpm, g)
    start_vtpm(host, "save")
    g = Guest(host)
    flags = g.cmd(PERMANENT_FLAGS)
    assert rc(flags) == 0 and flags[OWNERSHIP] == 0
    assert g.cmd(PCRREAD10)[10:30] == PCR10
    g.close()


def test_after_commands_that_change_nothing_a_killed_vtpm_loads_the_last_save(host):
    manager_up(host)
    vtpm = start_vtpm(host)
    g = Guest(host)
    ek = g.cmd(READ_PUBEK)
    saved = images(host)
    for c in (EXTEND10, PCRREAD10, GET_RANDOM16, EXTEND10, PERMANENT_FLAGS):
        assert rc(g.cmd(c)) == 0
    kill(host, vtpm, g)
    assert images(host) == saved
    start_vtpm(host)
    g = Guest(host)
    assert g.cmd(READ_PUBEK) == ek                       # the same TPM
    assert g.cmd(PCRREAD10)[10:30] == bytes(20)          # TPM_Startup(ST_CLEAR): PCRs reset
    flags = g.cmd(PERMANENT_FLAGS)
    assert rc(flags) == 0 and flags[OWNERSHIP] == 1
    assert "initializing TPM data to default values" not in host.console(VTPM)
    g.close()


# -- TPM 2.0 (vtpm-stubdom tpm2=1) -----------------------------------------------------

def test_tpm2_commands_that_change_nothing_are_answered_without_a_save(host):
    """The first PCR_Read of a new TPM 2.0 vTPM saves before its answer;
    PCR_Extend, PCR_Read and GetRandom after it write nothing and print no
    save line; NV_DefineSpace saves."""
    manager_up(host)
    start_vtpm(host, "tpm2=1")
    g = Guest(host)
    blank_vtpm, mgr_before = images(host)
    assert pcr10_sha256(g.cmd(C.pcr_read("sha256", [10]))) == bytes(32)
    before = images(host)
    assert before[0] != blank_vtpm and before[1] != mgr_before
    first = wait_saves(host, 1)
    ok(g, C.pcr_extend(10, "sha256", D256))
    extended = hashlib.sha256(bytes(32) + D256).digest()  # Part 1: PCR extend
    assert pcr10_sha256(g.cmd(C.pcr_read("sha256", [10]))) == extended
    rnd = ok(g, C.get_random(16))
    assert struct.unpack_from(">H", rnd, 10) == (16,) and len(rnd) == 28
    ok(g, C.pcr_extend(10, "sha256", D256))
    assert images(host) == before
    ok(g, C.nv_define(NV_INDEX, len(NV_DATA)))
    assert images(host)[0] != before[0] and images(host)[1] != before[1]
    assert wait_saves(host, 2) == tuple(n + 1 for n in first)
    g.close()


def test_tpm2_nv_write_survives_a_kill_after_commands_that_change_nothing(host):
    manager_up(host)
    vtpm = start_vtpm(host, "tpm2=1")
    g = Guest(host)
    ok(g, C.nv_define(NV_INDEX, len(NV_DATA)))
    before = images(host)
    ok(g, C.nv_write(NV_INDEX, NV_DATA))
    saved = images(host)
    assert saved[0] != before[0] and saved[1] != before[1]   # written before the answer
    for _ in range(2):
        ok(g, C.pcr_extend(10, "sha256", D256))
        ok(g, C.pcr_read("sha256", [10]))
    kill(host, vtpm, g)
    assert images(host) == saved
    start_vtpm(host, "tpm2=1")
    g = Guest(host)
    assert C.nv_data(ok(g, C.nv_read(NV_INDEX, len(NV_DATA)))) == NV_DATA
    assert pcr10_sha256(g.cmd(C.pcr_read("sha256", [10]))) == bytes(32)   # Startup(CLEAR)
    g.close()
