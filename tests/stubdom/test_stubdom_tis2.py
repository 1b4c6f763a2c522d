"""The host's TPM 2.0 behind the TIS/PTP FIFO (TisDevice(version=2)) and
mini-os's init_tpm2_tis: what the registers say (QEMU tpm_tis_common.c's
values for a 2.0 chip), the chip's state kept by its file across a power
cycle, a damaged state never replaced, and how the host picks its chip."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tpm"))
from engine_helpers import key_pool  # noqa: E402

from pyxl.domain.drivers.tpm2_tis import TpmTis2  # noqa: E402
from pyxl.hypervisor import tis as T  # noqa: E402
from pyxl.hypervisor.iomem import IoMem  # noqa: E402
from pyxl.toolstack import platform as P  # noqa: E402
from test_stubdom_tis import DirectXen, rd  # noqa: E402
from tpm2 import client as C  # noqa: E402

NV = 0x01500020


def driver(dev):
    io = IoMem()
    io.add_device(T.TIS_BASE, T.TIS_LEN, dev)
    io.permit(7, 0xFED40, 1)
    lines = []
    return TpmTis2(DirectXen(io, 7), lines.append), lines


def test_registers_and_init_tpm2_tis(tmp_path):
    dev = T.TisDevice(str(tmp_path / "tpm20.state"), version=2)
    try:
        # QEMU: TPM_TIS_CAPABILITIES_SUPPORTED2_0 = interrupts | low level |
        # 64-byte transfers (3 << 9) | interface 1.3 for TPM 2.0 (3 << 28)
        assert rd(dev, 0, T.INTF_CAPABILITY, 4) == 0x30000697
        tis, lines = driver(dev)
        assert lines[:4] == ["============= Init TPM2 TIS Driver ==============\n",
                             "IOMEM Machine Base Address: FED40000\n", "Enabled Localities: 0 \n",
                             "2.0 TPM (device-id=0x1 vendor-id = 1014 rev-id = 1)\n"]
        assert rd(dev, 0, T.STS + 3) == 0x04            # STS.tpmFamily = 01: TPM 2.0
        assert dev.commands == 1                         # tpm2_selftest, nothing else
        rsp = tis.transmit(C.get_random(16))
        assert C.rc_of(rsp) == 0 and struct.unpack_from(">H", rsp, 10)[0] == 16
    finally:
        dev.close()


def test_chip_state_survives_a_power_cycle_and_is_never_replaced(tmp_path):
    path = tmp_path / "tpm20.state"
    dev = T.TisDevice(str(path), version=2)
    try:
        tis, _ = driver(dev)
        assert C.rc_of(tis.transmit(C.nv_define(NV, 4))) == 0
        assert C.rc_of(tis.transmit(C.nv_write(NV, b"kept"))) == 0
    finally:
        dev.close()                                     # the daemon goes away
    dev = T.TisDevice(str(path), version=2)              # the next one powers it up
    try:
        tis, _ = driver(dev)
        assert C.nv_data(tis.transmit(C.nv_read(NV, 4))) == b"kept"
    finally:
        dev.close()
    blob = path.read_bytes()
    path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ValueError, match="unreadable"):
        T.TisDevice(str(path), version=2)
    assert path.read_bytes() != blob and len(path.read_bytes()) == len(blob)   # left alone
    T.TisDevice(str(tmp_path / "again.state"), version=2).close()   # libtpms was given back


class Paths:
    def __init__(self, lib_dir):
        self.lib_dir = str(lib_dir)


def test_the_host_picks_its_chip_and_keeps_it(tmp_path):
    paths = Paths(tmp_path)
    assert P.hardware_tpm_version(paths, {}) == 1              # the default: a TPM 1.2
    assert P.hardware_tpm_version(paths, {"PYXL_HWTPM": "2.0"}) == 2
    with pytest.raises(P.PlatformError, match="1.2 or 2.0"):
        P.hardware_tpm_version(paths, {"PYXL_HWTPM": "3"})
    os.environ["PYXL_HWTPM"] = "2.0"
    try:
        tis = P.attach_hardware_tpm(paths, type("Hv", (), {"iomem": IoMem()})())
    finally:
        del os.environ["PYXL_HWTPM"]
    tis.close()
    assert (tmp_path / "tpm" / "tpm20.state").exists()
    assert not (tmp_path / "tpm" / "tpm12.state").exists()
    assert P.hardware_tpm_version(paths, {}) == 2              # the chip the host has
    T.TisDevice(str(tmp_path / "tpm" / "tpm12.state"), key_source=key_pool())
    assert P.hardware_tpm_version(paths, {}) == 2              # a 1.2 state does not switch it
    assert P.hardware_tpm_version(paths, {"PYXL_HWTPM": "1.2"}) == 1
