"""vtpm-stubdom with `tpm2=1` without domains: the engine on the vTPM's
two-slot disk (VtpmBlk, a manager keeping the hash+key), the start-up
options' TPM 2.0 meanings, and what it refuses.  Expected answers come from
`swtpm socket --tpm2` (the same commands sent to it) or from the TPM 2.0
specification's PCR extend rule."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from pyxl.domain.vtpm import engine2
from pyxl.domain.vtpm import log as L
from pyxl.domain.vtpm.vtpm_cmd import ManagerError
from pyxl.domain.vtpm.options import ST_CLEAR, ST_DEACTIVATED, ST_SAVE, parse_cmd_line
from pyxl.domain.vtpm.vtpmblk import VtpmBlk
from pyxl.tpm.tpm2.engine import pack_state
from test_stubdom_vtpm_parts import FakeManager
from tpm2 import client as C
from tpm2.fixtures import Swtpm2

D256 = bytes(range(32))


def opts(*args):
    return parse_cmd_line(["vtpm", "tpm2=1", *args], L.VtpmLog(lambda s: None))


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "vtpm.img"
    path.write_bytes(bytes(1 << 20))
    fd = os.open(path, os.O_RDWR)
    lines = []
    blk = VtpmBlk(fd, FakeManager(), L.VtpmLog(lines.append), os.urandom)
    yield blk, lines
    os.close(fd)


def start(blk, *args):
    """What Vtpm.emulator_init hands the engine: the state the manager
    vouches for, or None for a uuid it has never seen (ManagerError 3,
    TPM_BAD_PARAMETER: "Unrecognized uuid!")."""
    try:
        blob = blk.read()
    except ManagerError as e:
        assert e.status == 3
        blob = None
    return engine2.emulator_init(blob, opts(*args), L.VtpmLog(lambda s: None))


def pcr10(tpm) -> bytes:
    """PCR 10: one of 0-15, which TPM2_Shutdown(STATE) saves (PC Client profile)."""
    rsp = tpm.execute(C.pcr_read("sha256", [10]))
    assert C.rc_of(rsp) == 0
    return rsp[-32:]


def test_tpm2_option():
    assert opts().tpm2 and not parse_cmd_line(["vtpm"], L.VtpmLog(lambda s: None)).tpm2
    assert opts("tpm2=0").tpm2 is False and opts().startup == ST_CLEAR
    assert opts("save").startup == ST_SAVE and opts("deactivated").startup == ST_DEACTIVATED


def test_state_through_the_disk_and_the_startup_modes(disk):
    """clear: TPM2_Startup(CLEAR) resets PCRs; save: what TPM2_Shutdown(STATE)
    saved comes back; NV and the owner seed persist either way."""
    blk, _ = disk
    tpm = start(blk)
    try:
        assert C.rc_of(tpm.execute(C.pcr_extend(10, "sha256", D256))) == 0
        primary = C.out_public(tpm.execute(C.create_primary()))
        assert C.rc_of(tpm.execute(C.nv_define(0x1500016, 8))) == 0
        assert C.rc_of(tpm.execute(C.nv_write(0x1500016, b"8 bytes!"))) == 0
        assert engine2.save_state(tpm)
        blk.write(tpm.dump())
    finally:
        tpm.close()
    extended = hashlib.sha256(bytes(32) + D256).digest()
    for mode, want in (("save", extended), ("clear", bytes(32))):
        tpm = start(blk, mode)
        try:
            assert pcr10(tpm) == want, mode
            assert C.nv_data(tpm.execute(C.nv_read(0x1500016, 8))) == b"8 bytes!"
            assert C.out_public(tpm.execute(C.create_primary())) == primary
            assert engine2.save_state(tpm)
            if mode == "save":
                blk.write(tpm.dump())
        finally:
            tpm.close()


def test_save_with_nothing_saved_starts_clear(disk):
    blk, _ = disk
    tpm = start(blk, "save")                 # a new TPM: TPM2_Startup(STATE) is refused
    try:
        assert pcr10(tpm) == bytes(32)
    finally:
        tpm.close()


@pytest.mark.peer("swtpm")
def test_deactivated_refuses_the_hierarchies_as_swtpm_does(disk, tmp_path):
    """`deactivated`: the hierarchies are turned off until the next start-up;
    the answers are swtpm's to the same HierarchyControl commands."""
    probes = [C.create_primary(), C.create_primary(hierarchy=0x4000000B),
              C.nv_define(0x1500016, 8), C.pcr_extend(16, "sha256", D256)]
    sw = Swtpm2(tmp_path / "swtpm").start()
    try:
        cl = C.TPM2Client(sw.addr)
        for h in (engine2.TPM_RH_ENDORSEMENT, engine2.TPM_RH_OWNER, engine2.TPM_RH_PLATFORM):
            body = struct.pack(">I", engine2.TPM_RH_PLATFORM) + engine2.PW_SESSION + \
                struct.pack(">IB", h, 0)
            assert C.rc_of(cl(struct.pack(">HII", 0x8002, 10 + len(body), 0x121) + body)) == 0
        want = [C.rc_of(cl(p)) for p in probes]
        cl.close()
    finally:
        sw.stop()
    assert want[:3] != [0, 0, 0] and want[3] == 0
    blk, _ = disk
    tpm = start(blk, "deactivated")
    try:
        assert [C.rc_of(tpm.execute(p)) for p in probes] == want
    finally:
        tpm.close()


def test_a_state_libtpms_rejects_stops_the_vtpm(disk):
    """Never a blank TPM in place of a stored one: a TPM 1.2 state, or a
    damaged TPM 2.0 one, the manager vouches for is refused."""
    blk, _ = disk
    blk.write(b"PYXLTPM12" + bytes(100))
    with pytest.raises(engine2.EngineError, match="TPM 1.2 state"):
        start(blk)
    blk.write(pack_state({"permall": b"not libtpms's"}))
    with pytest.raises(engine2.EngineError, match="libtpms rejects"):
        start(blk)
    # and a later start still finds the engine free (nothing leaked)
    blk.write(b"PYXLTPM12" + bytes(100))
    with pytest.raises(engine2.EngineError):
        start(blk)


def test_hwinitpcr_is_refused(disk):
    blk, _ = disk
    with pytest.raises(engine2.EngineError, match="hwinitpcr"):
        start(blk, "hwinitpcr=0")
