"""The guide's chain with real domain processes: vtpmmgr-stubdom (TIS ->
host TPM) <- vtpm-stubdom <- a guest frontend sending TPM 1.2 commands;
restart of the vTPM restores its state through the manager; restart of
the manager reloads its disk."""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tpm"))
from engine_helpers import key_pool  # noqa: E402

from hv_harness import HERE, Host, spawn_kernel  # noqa: E402
from pyxl.hypervisor import tis as T  # noqa: E402

MGR, VTPM, GUEST = 1, 2, 3
UUID = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
CLIENT = str(HERE / "tpm_client_domain.py")


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    h.tis = T.TisDevice(str(tmp_path / "hwtpm.state"), key_source=key_pool())
    h.hv.iomem.add_device(T.TIS_BASE, T.TIS_LEN, h.tis)
    for name, mb in (("mgr.img", 16), ("vtpm.img", 8)):
        with open(tmp_path / name, "wb") as f:
            f.truncate(mb << 20)
    yield h
    h.close()


def start_manager(host, cmdline=""):
    host.create(MGR, "vtpmmgr")
    host.hv.iomem.permit(MGR, 0xFED40, 5)                 # iomem=["fed40,5"]
    return spawn_kernel(host, MGR, "vtpmmgr", "/usr/lib/xen/boot/vtpmmgr-stubdom.gz", cmdline,
                        {"hda": str(host.tmp / "mgr.img")})


def start_vtpm(host, cmdline=""):
    host.create(VTPM, "domu-vtpm")
    host.add_vtpm(VTPM, MGR, UUID)                        # vtpm=["backend=vtpmmgr,uuid=..."]
    return spawn_kernel(host, VTPM, "domu-vtpm", "/usr/lib/xen/boot/vtpm-stubdom.gz", cmdline,
                        {"hda": str(host.tmp / "vtpm.img")})


def run_guest(host, *commands):
    host.create(GUEST, "domu")
    host.add_vtpm(GUEST, VTPM, "d6e0a5f4-3b2c-4d1e-8f90-123456789abc")
    p = host.spawn(GUEST, [CLIENT, *[c.hex() for c in commands]])
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    return [bytes.fromhex(x) for x in json.loads(out)]


def wait_gone(host, path, timeout=20):
    deadline = time.monotonic() + timeout
    while host.read(path + "/state") is not None:
        assert time.monotonic() < deadline, path + " still there"
        time.sleep(0.02)


def frame(ordinal, params=b"", tag=0xC1):
    return struct.pack(">HII", tag, 10 + len(params), ordinal) + params


VERSION = frame(0x65, struct.pack(">II", 0x1A, 0))        # GetCapability(VERSION_VAL)
EXTEND = frame(0x14, struct.pack(">I", 10) + hashlib.sha1(b"measured").digest())
PCRREAD10 = frame(0x15, struct.pack(">I", 10))


def test_guide_chain_and_persistence(host):
    mgr = start_manager(host)
    con = host.wait_console(MGR, "INFO[VTPM]: Waiting for commands from vTPM's:\r\n")
    assert "INFO[VTPM]: Starting vTPM manager domain\r\n" in con
    assert "INFO[VTPM]: Option: Using tpm_tis driver\r\n" in con
    assert ("============= Init TPM TIS Driver ==============\r\n"
            "IOMEM Machine Base Address: FED40000\r\nEnabled Localities: 0 \r\n"
            "1.2 TPM (device-id=0x1 vendor-id = 1014 rev-id = 1)\r\n") in con
    assert "INFO[VTPM]: Hardware TPM:\r\nINFO[VTPM]:  version: 1 2 18 158\r\n" in con
    assert ("INFO[VTPM]: Invalid ID string in disk image!\r\n" in con.replace("ERROR", "INFO"))
    assert "INFO[VTPM]: Failed to read manager file. Assuming first time initialization.\r\n" in con
    assert "INFO[TPM]: TPM_TakeOwnership\r\n" in con and "INFO[TPM]: TPM_CreateWrapKey\r\n" in con
    assert "INFO[VTPM]: Saved new manager disk header.\r\n" in con
    assert "INFO[VTPM]: Finished initialized new VTPM manager\r\n" in con
    assert (host.tmp / "mgr.img").read_bytes()[:14] == b"VTPMMGRDOM\0\0\0\1"
    assert host.tis.tpm.owned

    vtpm = start_vtpm(host, "loglevel=debug")
    vcon = host.wait_console(VTPM, "vtpm.c:166: Info: Waiting for frontend domain to connect..\r\n")
    assert vcon.startswith('"main" "loglevel=debug" \r\n'
                           "vtpm.c:363: Info: starting TPM Emulator (1.2.0.7-475)\r\n"
                           "vtpm.c:295: Info: Startup mode is `clear'\r\n"
                           "vtpm.c:325: Info: All PCRs initialized to default values\r\n"
                           "vtpm.c:329: Info: TPM Maintenance Commands disabled\r\n"
                           "vtpm.c:339: Info: Log level set to debug\r\n"
                           "============= Init TPM BACK ================\r\n"
                           "============= Init TPM Front ================\r\n")
    assert "vtpm_cmd.c:164: Error: VTPM_LoadHashKey() failed with error code (3)\r\n" in vcon
    assert "tpm_data.c:120: Info: initializing TPM data to default values\r\n" in vcon
    host.wait_console(MGR, "INFO[VTPM]: Passthrough: TPM_GetRandom\r\n")
    host.wait_console(MGR, f"ERROR[VTPM]: LoadKey failure: Unrecognized uuid! {UUID}\r\n")

    v, e, r = run_guest(host, VERSION, EXTEND, PCRREAD10)
    assert v[:10] == struct.pack(">HII", 0xC4, len(v), 0) and v[23:27] == b"ETHZ"
    assert e[6:10] == b"\0\0\0\0"
    pcr10 = hashlib.sha1(bytes(20) + hashlib.sha1(b"measured").digest()).digest()
    assert r[10:30] == pcr10
    vcon = host.wait_console(VTPM, "vtpm.c:202: Info: VTPM Shutting down\r\n")
    assert f"vtpm.c:168: Info: VTPM attached to Frontend {GUEST}/0\r\n" in vcon
    assert "tpm_cmd_handler.c:3811: Debug: [TPM_ORD_Extend]\r\n" in vcon
    assert "vtpmblk.c:89: Info: Wrote " in vcon
    assert "vtpm_cmd.c:201: Info: Sending encryption key to backend\r\n" in vcon
    vtpm.wait(30)
    assert vtpm.returncode == 64                           # powered off (reason 0)
    host.wait_console(MGR, f"INFO[VTPM]: Registered vtpm {UUID}\r\n")
    host.wait_console(MGR, f"INFO[VTPM]: Saved hash and key for vtpm {UUID}\r\n")

    # xl shutdown of a seed stub domain: mini-os prints and keeps running
    host.xs.write(f"/local/domain/{MGR}/control/shutdown", "poweroff")
    host.wait_console(MGR, "Shutting down (poweroff)\r\nShutdown requested: 0\r\n")
    assert mgr.poll() is None

    # a second life for the vTPM: same disk, same uuid -> same state
    host.destroy(VTPM)
    host.destroy(GUEST)
    wait_gone(host, f"/local/domain/{MGR}/backend/vtpm/{VTPM}/0")   # tpmback freed it
    host.log_path(VTPM).unlink()
    vtpm = start_vtpm(host)
    host.wait_console(VTPM, "Waiting for frontend domain to connect..")
    assert "(slot " in host.console(VTPM)
    host.wait_console(MGR, f"INFO[VTPM]: Loaded hash and key for vtpm {UUID}\r\n")
    (r,) = run_guest(host, PCRREAD10)
    assert r[10:30] == bytes(20)          # PCRs are volatile: Startup(ST_CLEAR) reset them
    vtpm.wait(30)

    # the manager restarts and finds its disk
    mgr.kill()
    mgr.wait(5)
    host.destroy(MGR)
    host.destroy(VTPM)
    host.destroy(GUEST)
    host.log_path(MGR).unlink()
    start_manager(host)
    con = host.wait_console(MGR, "Waiting for commands from vTPM's:")
    assert "INFO[VTPM]: Loaded 1 vtpms!\r\n" in con and "Failed to read manager" not in con
    assert f"INFO[VTPM]: Registered vtpm {UUID}\r\n" in con


def test_manager_seed_option_bug_crashes_the_domain(host):
    mgr = start_manager(host, "owner_auth=well-known")
    assert mgr.wait(30) == 64 + 3                         # SHUTDOWN_crash
    # the hypervisor writes the console log on its own thread: the domain may
    # be gone before its last lines are in the file
    con = host.wait_console(MGR, "Do_exit called!\r\n")
    assert ("ERROR[VTPM]: Invalid auth string =well-known\r\n"
            "ERROR[VTPM]: Invalid Option owner_auth=well-known\r\n"
            "ERROR[VTPM]: Command line parsing failed! exiting..\r\n"
            "Tpmback:Info Shutting down tpm backend\r\n"
            "INFO[VTPM]: VTPM Manager stopped.\r\n"
            "ERROR[VTPM]: Unable to initialize vtpmmgr domain!\r\n") in con
    assert con.endswith("main returned -1\r\nDo_exit called!\r\n")
    assert host.tis.commands == 0                          # never touched the TPM
