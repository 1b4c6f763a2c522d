"""The host's TIS 1.2 TPM device and mini-os's tpm_tis driver: register
behaviour, locality arbitration, command/response through the FIFO, the
iomem permission check, atomic persistence."""

from __future__ import annotations

import errno
import struct
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tpm"))
from engine_helpers import key_pool  # noqa: E402

from pyxl.domain.drivers.tpm_tis import TisConnectionReplaced, TpmTis  # noqa: E402
from pyxl.hypervisor import tis as T  # noqa: E402
from pyxl.hypervisor.iomem import IoMem  # noqa: E402

GETRANDOM = struct.pack(">HIII", 0xC1, 14, 0x46, 16)


class DirectXen:
    """MMIO through an IoMem, as the hypervisor dispatches it (in-process).
    `generation` and the accesses' generation= as XenInterface's: an
    access bound to a connection since replaced fails EPIPE."""

    generation = 0

    def __init__(self, iomem, domid):
        self.iomem, self.domid = iomem, domid

    def _check(self, generation):
        if generation is not None and generation != self.generation:
            raise OSError(errno.EPIPE, "hypervisor connection replaced")

    def mmio_read(self, addr, width=1, count=1, generation=None):
        self._check(generation)
        return self.iomem.read(self.domid, addr, width, count)

    def mmio_write(self, addr, data, width=1, generation=None):
        self._check(generation)
        self.iomem.write(self.domid, addr, width, bytes(data))


@pytest.fixture
def dev(tmp_path):
    return T.TisDevice(str(tmp_path / "tpm.state"), key_source=key_pool())


def rd(dev, loc, reg, width=1):
    return int.from_bytes(dev.read(loc * T.TIS_PAGE + reg, width), "little")


def wr(dev, loc, reg, val):
    dev.write(loc * T.TIS_PAGE + reg, 1, bytes([val]))


def test_register_protocol_by_hand(dev):
    assert rd(dev, 0, T.ACCESS) == T.ACCESS_VALID | T.ACCESS_ESTABLISHMENT
    assert rd(dev, 0, T.STS) == 0xFF                      # not the active locality
    wr(dev, 0, T.ACCESS, T.ACCESS_REQUEST_USE)
    assert rd(dev, 0, T.ACCESS) & T.ACCESS_ACTIVE_LOCALITY
    wr(dev, 2, T.ACCESS, T.ACCESS_REQUEST_USE)            # another locality asks
    assert rd(dev, 0, T.ACCESS) & T.ACCESS_REQUEST_PENDING
    assert not rd(dev, 2, T.ACCESS) & T.ACCESS_ACTIVE_LOCALITY
    assert rd(dev, 0, T.DID_VID, 4) == 0x00011014 and rd(dev, 0, T.RID) == 1
    wr(dev, 0, T.STS, T.STS_COMMAND_READY)
    assert rd(dev, 0, T.STS) == T.STS_VALID | T.STS_COMMAND_READY
    for b in GETRANDOM[:-1]:
        wr(dev, 0, T.DATA_FIFO, b)
        assert rd(dev, 0, T.STS) & T.STS_EXPECT
    wr(dev, 0, T.DATA_FIFO, GETRANDOM[-1])
    assert rd(dev, 0, T.STS) == T.STS_VALID                # complete: expect cleared
    wr(dev, 0, T.STS, T.STS_GO)
    assert rd(dev, 0, T.STS) == T.STS_VALID | T.STS_DATA_AVAIL
    assert rd(dev, 0, T.BURST_LO, 2) == 30                 # 10 + 4 + 16 bytes waiting
    rsp = dev.read(T.DATA_FIFO, 1, 30)
    assert rsp[:10] == struct.pack(">HII", 0xC4, 30, 0) and rsp[10:14] == b"\0\0\0\x10"
    assert rd(dev, 0, T.STS) == T.STS_VALID                # drained
    wr(dev, 0, T.ACCESS, T.ACCESS_ACTIVE_LOCALITY)         # relinquish -> 2 gets it
    assert rd(dev, 2, T.ACCESS) & T.ACCESS_ACTIVE_LOCALITY
    assert dev.commands == 1


def test_driver_init_and_transmit_with_iomem_permission(dev):
    io = IoMem()
    io.add_device(T.TIS_BASE, T.TIS_LEN, dev)
    lines = []
    with pytest.raises(OSError):
        TpmTis(DirectXen(io, 5), lines.append)             # no iomem= for domain 5
    assert "Unable to map iomem page a address 0xfed40000\n" in lines
    io.permit(7, 0xFED40, 1)                               # iomem=["fed40,1"]
    lines = []
    tis = TpmTis(DirectXen(io, 7), lines.append)
    assert lines[:4] == ["============= Init TPM TIS Driver ==============\n",
                         "IOMEM Machine Base Address: FED40000\n", "Enabled Localities: 0 \n",
                         "1.2 TPM (device-id=0x1 vendor-id = 1014 rev-id = 1)\n"]
    assert lines[4] == "TPM interface capabilities (0x97):\n"
    assert dev.commands == 3                               # timeouts, durations, ContinueSelfTest
    rsp = tis.transmit(GETRANDOM)
    assert len(rsp) == 30 and rsp[6:10] == b"\0\0\0\0"
    with pytest.raises(OSError):                           # locality 1 is not permitted
        io.read(7, T.TIS_BASE + 0x1000, 1)


def test_state_persists_atomically(tmp_path):
    path = tmp_path / "hwtpm"
    d1 = T.TisDevice(str(path), key_source=key_pool())
    ek1 = d1.tpm.perm.ek.n
    assert path.exists() and not list(tmp_path.glob("*.tmp.*"))
    d2 = T.TisDevice(str(path), key_source=key_pool())
    assert d2.tpm.perm.ek.n == ek1
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError):
        T.TisDevice(str(path), key_source=key_pool())


def test_locality_2_with_only_its_page(dev):
    """vtpm-platforms.txt: extra="tpmlocality=2", iomem=["fed42,1"]."""
    io = IoMem()
    io.add_device(T.TIS_BASE, T.TIS_LEN, dev)
    io.permit(9, 0xFED42, 1)
    lines = []
    tis = TpmTis(DirectXen(io, 9), lines.append, localities=1 << 2)
    assert lines[2] == "Enabled Localities: 2 \n" and tis.locality == 2
    # the chip sees locality 2: PCR 21/22 extends are allowed only there (PC client)
    ext = struct.pack(">HIII", 0xC1, 34, 0x14, 21) + bytes(20)
    assert tis.transmit(ext)[6:10] == b"\0\0\0\0"


def test_a_daemon_restart_under_a_command_fails_it_and_resume_waits_for_it(dev, tmp_path):
    """The daemon is killed while the manager reads a response from the
    FIFO, and the domain's xenbus-resume thread resumes the driver (its
    resume handler) before the command's thread runs again.  The command
    fails (EPIPE), none of its accesses reaches the new hypervisor's chip,
    and resume() waits for it rather than reset the locality under it (the
    reset made the command's cleanup crash the manager: release_locality(-1))."""
    io = IoMem()
    io.add_device(T.TIS_BASE, T.TIS_LEN, dev)
    io.permit(7, 0xFED40, 1)
    xen = DirectXen(io, 7)
    tis = TpmTis(xen, [].append)
    # the new daemon's chip: the same state file, power-cycled
    new_dev = T.TisDevice(str(tmp_path / "tpm.state"), key_source=key_pool())
    new_io = IoMem()
    new_io.add_device(T.TIS_BASE, T.TIS_LEN, new_dev)
    new_io.permit(7, 0xFED40, 1)
    seen = []
    new_dev_read, new_dev_write = new_dev.read, new_dev.write
    new_dev.read = lambda *a: seen.append(a) or new_dev_read(*a)
    new_dev.write = lambda *a: seen.append(a) or new_dev_write(*a)
    resumed = []
    resumer = threading.Thread(target=lambda: resumed.append(tis.resume(0)))
    fifo_read = io.read

    def read(domid, addr, width, count=1):
        out = fifo_read(domid, addr, width, count)
        if addr == T.TIS_BASE + T.DATA_FIFO and not resumer.is_alive() and not resumed:
            xen.iomem, xen.generation = new_io, 1      # the break, and the resume
            resumer.start()
            resumer.join(0.5)       # the handler runs now, unless it waits for this command
        return out
    io.read = read
    with pytest.raises(OSError) as e:
        tis.transmit(GETRANDOM)
    assert e.value.errno == errno.EPIPE
    # told apart from a chip's failure: the manager sends it again after the resume
    assert isinstance(e.value, TisConnectionReplaced) and e.value.generation == 0
    resumer.join(10)
    assert resumed == [0] and tis.locality == 0
    # the new chip saw the resume's locality request, nothing of the old command
    assert seen and all(a[0] & 0xFFF == T.ACCESS for a in seen), seen
    before = len(seen)
    assert new_dev.commands == 0
    rsp = tis.transmit(GETRANDOM)                      # the resumed driver works on the new chip
    assert len(rsp) == 30 and rsp[6:10] == b"\0\0\0\0" and new_dev.commands == 1
    assert len(seen) > before


def _traced_tis(dev, note):
    """mini-os's driver on `dev` at locality 0, each register access after
    its set-up reported as note("r"/"w", offset in the locality's page,
    width, byte count)."""
    io = IoMem()
    io.add_device(T.TIS_BASE, T.TIS_LEN, dev)
    io.permit(7, 0xFED40, 1)
    tis = TpmTis(DirectXen(io, 7), lambda line: None)
    read, write = io.read, io.write

    def traced_read(d, a, w, n=1):
        note("r", a & 0xFFF, w, n)
        return read(d, a, w, n)

    def traced_write(d, a, w, data):
        note("w", a & 0xFFF, w, len(data))
        return write(d, a, w, data)
    io.read, io.write = traced_read, traced_write
    return tis


class SmallFifo(T.TisDevice):
    """A chip whose FIFO takes and gives 8 bytes at a time (burstCount 8),
    as small real chips do."""

    def _burst(self):
        return min(8, super()._burst())


def test_the_driver_moves_no_more_than_burstcount_bytes_per_access(tmp_path):
    """mini-os get_burstcount reads burstCount's two bytes (STS+1, STS+2) and
    recv_data / tpm_tis_send move that many bytes per burst, no more."""
    dev = SmallFifo(str(tmp_path / "tpm.state"), key_source=key_pool())
    fifo = []

    def note(kind, addr, width, n):
        if addr == T.DATA_FIFO:
            fifo.append(n)
    tis = _traced_tis(dev, note)
    ext = struct.pack(">HIII", 0xC1, 34, 0x14, 3) + bytes(range(20))
    rsp = tis.transmit(ext)                            # 34 bytes in, 30 out
    assert rsp[:10] == struct.pack(">HII", 0xC4, 30, 0)
    assert fifo == [8, 8, 8, 8, 1, 1] + [8, 2] + [8, 8, 4], fifo   # the last byte alone, as mini-os


def test_a_command_is_14_register_accesses(dev):
    """Per command: ACCESS (locality held?), STS (ready? and burstCount in
    the same 32-bit read), the FIFO but the last byte, STS (expect), the
    last byte, STS, tpmGo, STS (dataAvail), the header, STS, the rest, STS
    (nothing left), commandReady, ACCESS (release_locality).  mini-os
    reads STS again after each wait_for_stat and burstCount apart from it:
    each a round trip to the device here, for a value just read."""
    seen = []
    tis = _traced_tis(dev, lambda kind, addr, width, n: seen.append((kind, addr, width)))
    assert len(tis.transmit(GETRANDOM)) == 30
    sts, fifo = ("r", T.STS, 4), T.DATA_FIFO
    assert seen == [("r", T.ACCESS, 1), sts, ("w", fifo, 1), sts, ("w", fifo, 1), sts,
                    ("w", T.STS, 1), sts, ("r", fifo, 1), sts, ("r", fifo, 1), sts,
                    ("w", T.STS, 1), ("r", T.ACCESS, 1)], seen
