"""vtpmmgr-stubdom on a TPM 2.0 hardware chip (`extra="tpm2=1"`), with real
domain processes: the manager, 1.2 and 2.0 vTPMs behind it, a guest.

Expected console lines are Xen 4.17's (stubdom/vtpmmgr/vtpmmgr.c main,
init.c vtpmmgr2_init / vtpmmgr2_create / tpm2_take_ownership, tpm2.c's
TPM_BEGIN / TPM_UNPACK_VERIFY, mini-os tpm_tis.c init_tpm2_tis); the
restart and the refusals are pyxl's (Xen's manager makes a new storage key
at every boot and cannot read its own disk again)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tpm"))
from engine_helpers import key_pool  # noqa: E402

from hv_harness import Host, spawn_kernel  # noqa: E402
from pyxl.hypervisor import tis as T  # noqa: E402
from test_stubdom_vtpm_state import (CRASH, GUEST2, MGR, MGR2, OWNERSHIP,  # noqa: E402
                                     PERMANENT_FLAGS, POWEROFF, READ_PUBEK,
                                     SET_OWNER_INSTALL_OFF, UUID_B, VTPM, VTPM2, GUEST, Guest,
                                     rc, retire, sha, vtpm_session)
from tpm2 import client as C  # noqa: E402

NV_INDEX = 0x01500016
NV_DATA = b"kept across the manager's restart"


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    h.tis = T.TisDevice(str(tmp_path / "hwtpm20.state"), version=2)
    h.hv.iomem.add_device(T.TIS_BASE, T.TIS_LEN, h.tis)
    for name, size in (("mgr.img", 16 << 20), ("vtpm.img", 8 << 20), ("vtpm-b.img", 8 << 20)):
        with open(tmp_path / name, "wb") as f:
            f.truncate(size)
    yield h
    h.close()
    h.tis.close()


def start_manager(host, domid=MGR, cmdline="tpm2=1"):
    host.create(domid, "vtpmmgr")
    host.hv.iomem.permit(domid, 0xFED40, 5)
    return spawn_kernel(host, domid, "vtpmmgr", "/usr/lib/xen/boot/vtpmmgr-stubdom.gz", cmdline,
                        {"hda": str(host.tmp / "mgr.img")})


def manager_up(host, domid=MGR, cmdline="tpm2=1"):
    p = start_manager(host, domid, cmdline)
    host.wait_console(domid, "Waiting for commands from vTPM's:")
    return p


def stop_manager(host, p, domid=MGR):
    p.kill()
    p.wait(5)
    retire(host, domid)


def test_manager_starts_on_a_tpm2_chip_as_xen_does(host):
    manager_up(host)
    con = host.console(MGR)
    lines = ["INFO[VTPM]: Starting vTPM manager domain",
             "INFO[VTPM]: Hardware : --- TPM 2.0 ---",
             "INFO[VTPM]: Option: Using tpm_tis driver",
             "============= Init TPM2 TIS Driver ==============",
             "IOMEM Machine Base Address: FED40000",
             "2.0 TPM (device-id=0x1 vendor-id = 1014 rev-id = 1)",
             "init_tpm2_tis()       ...ok",
             "TPM 2.0 access ...ok",
             "INFO[TPM]: TPM2_FlushContext",
             "INFO[TPM]: TPM2_GetRandom",
             "INFO[VTPM]: Assuming first time initialization.",
             "INFO[TPM]: TPM2_CreatePrimary",
             "INFO[VTPM]: SRK handle: 0x80000000",
             "INFO[TPM]: TPM2_Create",
             "INFO[TPM]: TPM2_Load",
             "INFO[VTPM]: SK HANDLE: 0x80000001",
             "INFO[VTPM]: Finished initialized new VTPM manager",
             "INFO[VTPM]: Waiting for commands from vTPM's:"]
    pos = 0
    for line in lines:                                   # in this order
        pos = con.index(line, pos) + len(line)
    # the disk: pyxl's header, version 2, with the SK's blobs in it
    head = (host.tmp / "mgr.img").read_bytes()[:18]
    assert head[:10] == b"VTPMMGRDOM" and struct.unpack(">I", head[10:14]) == (2,)


def start_vtpm2(host, domid=VTPM2, uuid=UUID_B, image="vtpm-b.img", mgr=MGR):
    """A TPM 2.0 vTPM (vtpm-stubdom `tpm2=1`) behind the manager."""
    host.create(domid, "vtpm-%d" % domid)
    host.add_vtpm(domid, mgr, uuid)
    return spawn_kernel(host, domid, "vtpm-%d" % domid, "/usr/lib/xen/boot/vtpm-stubdom.gz",
                        "tpm2=1", {"hda": str(host.tmp / image)})


def vtpm2_session(host, *commands, mgr=MGR) -> list[bytes]:
    vtpm = start_vtpm2(host, mgr=mgr)
    g = Guest(host, VTPM2, GUEST2)
    out = [g.cmd(c) for c in commands]
    g.close()
    assert vtpm.wait(30) == POWEROFF
    retire(host, VTPM2, GUEST2)
    return out


def test_vtpms_keep_their_state_across_the_managers_restart(host):
    """The manager on a TPM 2.0 chip is destroyed and made again on the same
    disk: a 1.2 vTPM keeps its EK and its owner-install flag, a 2.0 vTPM its
    NV index (Xen 4.17 makes a new SK at every boot: both would be lost)."""
    mgr = manager_up(host)
    ek, off = vtpm_session(host, READ_PUBEK, SET_OWNER_INSTALL_OFF)
    assert rc(ek) == 0 and rc(off) == 0
    retire(host, VTPM, GUEST)
    d, w = vtpm2_session(host, C.nv_define(NV_INDEX, len(NV_DATA)),
                         C.nv_write(NV_INDEX, NV_DATA))
    assert C.rc_of(d) == 0 and C.rc_of(w) == 0
    stop_manager(host, mgr)

    manager_up(host, MGR2)                               # the same disk, the same chip
    con = host.console(MGR2)
    assert "INFO[VTPM]: Loaded 2 vtpms!" in con and "first time" not in con
    assert "TPM2_Create\r\n" not in con                     # the SK was loaded, not made
    again, flags = vtpm_session(host, READ_PUBEK, PERMANENT_FLAGS, mgr=MGR2)
    assert again == ek                                   # the same vTPM, not a blank one
    assert rc(flags) == 0 and flags[OWNERSHIP] == 0      # SetOwnerInstall(FALSE) kept
    retire(host, VTPM, GUEST)
    (r,) = vtpm2_session(host, C.nv_read(NV_INDEX, len(NV_DATA)), mgr=MGR2)
    assert C.rc_of(r) == 0 and C.nv_data(r) == NV_DATA


def test_getrandom_passthrough_on_a_tpm2_chip(host):
    """A vTPM's TPM_GetRandom is answered from TPM2_GetRandom in a TPM 1.2
    response (vtpm_cmd_handler.c vtpmmgr_handle_getrandom); the vTPM would
    not start otherwise (it seeds itself from the hardware TPM)."""
    manager_up(host)
    (ek,) = vtpm_session(host, READ_PUBEK)
    assert rc(ek) == 0
    con = host.console(MGR)
    assert con.count("INFO[VTPM]: Passthrough: TPM_GetRandom") >= 2
    assert "Disallowed" not in con


def test_srk_handle_names_a_persistent_srk(host):
    """`srk_handle=` (Xen 4.17 init.c): no TPM2_CreatePrimary, the SK is made
    under the persistent key; it survives the manager's restart too."""
    tpm = host.tis.tpm
    primary = tpm.execute(C.create_primary())
    while C.rc_of(primary) == C.TPM_RC_RETRY:
        primary = tpm.execute(C.create_primary())
    assert C.rc_of(primary) == 0
    # TPM2_EvictControl(TPM_RH_OWNER, primary, 0x81000001) (Part 3 28.5)
    body = struct.pack(">II", C.TPM_RH_OWNER, C.handle_of(primary)) + \
        struct.pack(">I", len(C.PW_AUTH)) + C.PW_AUTH + struct.pack(">I", 0x81000001)
    evict = struct.pack(">HII", C.TPM_ST_SESSIONS, 10 + len(body), 0x120) + body
    assert C.rc_of(tpm.execute(evict)) == 0
    assert C.rc_of(tpm.execute(C.flush(C.handle_of(primary)))) == 0
    mgr = manager_up(host, cmdline="tpm2=1 srk_handle=81000001")
    con = host.console(MGR)
    assert "TPM2_CreatePrimary" not in con and "SRK handle" not in con
    assert "INFO[VTPM]: SK HANDLE: 0x8000000" in con
    (ek,) = vtpm_session(host, READ_PUBEK)
    retire(host, VTPM, GUEST)
    stop_manager(host, mgr)
    manager_up(host, MGR2, cmdline="tpm2=1 srk_handle=81000001")
    assert "TPM2_CreatePrimary" not in host.console(MGR2)
    assert vtpm_session(host, READ_PUBEK, mgr=MGR2) == [ek]


def test_tpm2_option_on_a_tpm12_chip_fails_as_xen(host, tmp_path):
    """A TPM 1.2 answers the TPM 2.0 commands TPM_BAD_ORDINAL (as libtpms's
    TPM 1.2 does: `swtpm socket` without --tpm2 answers 00c4 0000000a
    0000000a); the manager stops at TPM2_CreatePrimary, as Xen 4.17's (tpm2.c
    TPM_UNPACK_VERIFY, init.c TPMTRYRETURN); the blank disk stays blank."""
    host.tis.close()
    host.tis = T.TisDevice(str(tmp_path / "hwtpm12.state"), key_source=key_pool())
    host.hv.iomem._devices.insert(0, (T.TIS_BASE, T.TIS_LEN, host.tis))
    assert start_manager(host).wait(30) == CRASH
    con = host.wait_console(MGR, "Do_exit called!")
    assert "1.2 TPM (device-id" not in con and "2.0 TPM (device-id=0x1" in con
    assert ("INFO[TPM]: TPM2_CreatePrimary\r\n"
            "ERROR[TPM]: Failed with return code TPM_BAD_ORDINAL (a)\r\n") \
        in con
    assert "ERROR in tpm2_take_ownership at init.c:562 code: TPM_BAD_ORDINAL." in con
    assert "ERROR in vtpmmgr2_create at init.c:581 code: TPM_BAD_ORDINAL." in con
    assert "ERROR[VTPM]: Unable to initialize vtpmmgr domain!" in con
    assert not any((host.tmp / "mgr.img").read_bytes())


def test_no_tpm2_option_on_a_tpm20_chip_fails_as_xen(host):
    """Without `tpm2=1` mini-os's init_tpm_tis asks for TPM 1.2 timeouts; a
    TPM 2.0 refuses the 1.2 command and the driver gives up."""
    assert start_manager(host, cmdline="").wait(30) == CRASH
    con = host.wait_console(MGR, "Do_exit called!")
    assert "Could not get TPM timeouts and durations" in con
    assert "ERROR[VTPM]: Unable to initialize tpmfront device" in con
    assert not any((host.tmp / "mgr.img").read_bytes())


def test_a_disk_made_on_the_other_chip_version_is_refused(host, tmp_path):
    """A 2.0 manager's disk on a host whose chip is now a TPM 1.2, and a 1.2
    manager's disk under `tpm2=1`: refused, with what it is, untouched."""
    stop_manager(host, manager_up(host))
    img = host.tmp / "mgr.img"
    made_on_20 = sha(img)
    host.tis.close()
    host.tis = T.TisDevice(str(tmp_path / "hwtpm12.state"), key_source=key_pool())
    host.hv.iomem._devices.insert(0, (T.TIS_BASE, T.TIS_LEN, host.tis))
    assert start_manager(host, MGR2, cmdline="").wait(30) == CRASH
    con = host.wait_console(MGR2, "Do_exit called!")
    assert "ERROR[VTPM]: Unsupported disk image version number 2" in con
    assert "This disk image belongs to a manager on a TPM 2.0 chip" in con
    assert "refusing to initialize it; nothing was written." in con
    assert sha(img) == made_on_20
    retire(host, MGR2)

    img.write_bytes(bytes(16 << 20))                     # a 1.2 manager's disk
    stop_manager(host, manager_up(host, cmdline=""))
    made_on_12 = sha(img)
    assert start_manager(host, MGR2, cmdline="tpm2=1").wait(30) == CRASH
    con = host.wait_console(MGR2, "Do_exit called!")
    assert "ERROR[VTPM]: Unsupported disk image version number 1" in con
    assert "This disk image belongs to a manager on a TPM 1.2 chip" in con
    assert "refusing to initialize it; nothing was written." in con
    assert sha(img) == made_on_12


def test_a_disk_made_on_another_tpm20_chip_is_refused(host, tmp_path):
    """Another machine's TPM 2.0 cannot load the SK (its SRK differs):
    refused, the disk untouched (Xen would make a new manager over it)."""
    stop_manager(host, manager_up(host))
    img = host.tmp / "mgr.img"
    before = sha(img)
    host.tis.close()
    host.tis = T.TisDevice(str(tmp_path / "other-hwtpm20.state"), version=2)
    host.hv.iomem._devices.insert(0, (T.TIS_BASE, T.TIS_LEN, host.tis))
    assert start_manager(host, MGR2).wait(30) == CRASH
    con = host.wait_console(MGR2, "Do_exit called!")
    assert "INFO[TPM]: TPM2_Load\r\nERROR[TPM]: Failed with return code" in con
    assert "refusing to initialize it; nothing was written." in con
    assert "first time" not in con and sha(img) == before


def test_srk_handle_naming_no_key_fails_and_writes_nothing(host):
    assert start_manager(host, cmdline="tpm2=1 srk_handle=81000009").wait(30) == CRASH
    con = host.wait_console(MGR, "Do_exit called!")
    assert "TPM2_CreatePrimary" not in con
    assert "INFO[TPM]: TPM2_Create\r\nERROR[TPM]: Failed with return code" in con
    assert "ERROR in vtpmmgr2_create at init.c:625" in con
    assert not any((host.tmp / "mgr.img").read_bytes())
