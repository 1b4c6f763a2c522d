"""The host's hardware TPM: a TPM 1.2 behind the TCG PC Client TPM
Interface Specification (TIS 1.2) register model at 0xFED40000.

    tis = TisDevice(state_path)            # loads or manufactures the chip
    hv.iomem.add_device(TIS_BASE, TIS_LEN, tis)

Five localities, one 4 KiB page each (base + 0x1000 * l).  Per page:
ACCESS (0x00), INT_ENABLE (0x08), INT_VECTOR (0x0C), INT_STATUS (0x10),
INTF_CAPABILITY (0x14), STS (0x18) with burstCount (0x19-0x1A),
DATA_FIFO (0x24), DID_VID (0xF00), RID (0xF04).  Only the active locality
may use STS and the FIFO; other localities read 0xFF there.  A command is
written byte by byte into the FIFO (STS.expect stays set until the length
in header bytes 2..5 has arrived), started with STS.tpmGo, and its
response read back while STS.dataAvail is set; STS.commandReady aborts or
readies.  ACCESS.requestUse / activeLocality (relinquish) / seize arbitrate
localities, with pendingRequest shown to the active one.

The chip itself is pyxl's TPM 1.2 engine presenting a hardware identity
(IBM's, as swtpm/libtpms; DID_VID 0x00011014 as QEMU's TIS shows it), or,
with version=2, a TPM 2.0 (libtpms, pyxl.tpm.tpm2) behind the same FIFO
interface as the TCG PC Client Platform TPM Profile (PTP) defines it for a
2.0 chip; as QEMU's tpm_tis_common.c presents a 2.0 chip, INTF_CAPABILITY
then reports interface version 1.3-for-TPM-2.0 (bits 28-30 = 3) and 64-byte
transfers (bits 9-10 = 3), and STS.tpmFamily (bits 26-27) reads 1.  A 2.0
chip holds the process's one libtpms: nothing else in the daemon uses it
(vTPM stub domains run in processes of their own).  Its
state lives in one file under the host root, rewritten atomically
(pyxl.fsutil.atomic_write: temp file, fsync, rename, directory fsync) after
every command that changed it, so a host crash
leaves the previous or the new state, never a torn one.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import TYPE_CHECKING, cast

from pyxl.fsutil import atomic_write

from . import testfault

if TYPE_CHECKING:
    from pyxl.tpm import TPM
    from pyxl.tpm.crypto import KeySource
    from pyxl.tpm.identity import Identity
    from pyxl.tpm.tpm2.engine import TPM2

# The chip's engines are imported when a TisDevice is made, not with this
# module: the register layout below is also what the domains' TIS drivers
# (pyxl.domain.drivers.tpm_tis) import, and vtpmmgr-stubdom must not load a
# TPM engine (nor libtpms) to learn where STS is.

TIS_BASE = 0xFED40000
TIS_LOCALITIES = 5
TIS_PAGE = 0x1000
TIS_LEN = TIS_PAGE * TIS_LOCALITIES

ACCESS, INT_ENABLE, INT_VECTOR, INT_STATUS = 0x00, 0x08, 0x0C, 0x10
INTF_CAPABILITY, STS, BURST_LO, BURST_HI, DATA_FIFO = 0x14, 0x18, 0x19, 0x1A, 0x24
DID_VID, RID = 0xF00, 0xF04

ACCESS_VALID, ACCESS_ACTIVE_LOCALITY, ACCESS_BEEN_SEIZED = 0x80, 0x20, 0x10
ACCESS_SEIZE, ACCESS_REQUEST_PENDING, ACCESS_REQUEST_USE = 0x08, 0x04, 0x02
ACCESS_ESTABLISHMENT = 0x01
STS_VALID, STS_COMMAND_READY, STS_GO, STS_DATA_AVAIL, STS_EXPECT = 0x80, 0x40, 0x20, 0x10, 0x08
STS_RESPONSE_RETRY = 0x02
# interrupt capabilities (none is ever raised: the model is polled)
INTF_CAPS = 0x80 | 0x10 | 0x04 | 0x02 | 0x01    # cmdReady, level low, locality, stsValid, dataAvail
# a TPM 2.0 behind the FIFO (PTP; QEMU tpm_tis_common.c TPM_TIS_CAPABILITIES_SUPPORTED2_0)
INTF_CAPS_TPM2 = INTF_CAPS | 3 << 28 | 3 << 9     # interface 1.3 for TPM 2.0, 64-byte transfers
STS_TPM_FAMILY2_0 = 1 << 26                      # STS byte 3 = 0x04

IDLE, READY, RECEPTION, COMPLETION = range(4)
MAX_BURST = 0xFFFF         # burstCount is 16 bits
MAX_BUFFER = 4096


class TisDevice:
    did_vid = 0x00011014
    rid = 0x01

    def __init__(self, state_path: str | None = None, *, identity: Identity | None = None,
                 key_source: KeySource | None = None, version: int = 1):
        """identity: the chip's (default IBM's, as swtpm/libtpms present)."""
        from pyxl.tpm import TPM, TPMStateError
        from pyxl.tpm.identity import IBM_SWTPM_IDENTITY

        identity = identity or IBM_SWTPM_IDENTITY
        self.state_path = state_path
        self.version = version
        self.intf_caps = INTF_CAPS_TPM2 if version == 2 else INTF_CAPS
        self.lock = threading.Lock()
        blob = None
        if state_path and os.path.exists(state_path):
            with open(state_path, "rb") as f:
                blob = f.read()
        self.tpm: TPM | TPM2
        if version == 2:
            self.tpm = self._load_tpm2(blob)
        else:
            try:
                self.tpm = TPM.load(blob, identity, key_source=key_source) if blob is not None \
                    else TPM(identity, key_source=key_source)   # manufacture: makes its EK
            except TPMStateError as e:
                raise TPMStateError("hardware TPM state %s is unreadable: %s"
                                    % (state_path, e))
            self.tpm.power_on("clear")        # the platform boots: TPM_Init + Startup(ST_CLEAR)
        self._save()
        self.active: int | None = None
        self.pending = [False] * TIS_LOCALITIES
        self.seized = [False] * TIS_LOCALITIES
        self.int_enable = [0] * TIS_LOCALITIES
        self.int_vector = [0] * TIS_LOCALITIES
        self._reset_fifo(IDLE)
        self.commands = 0

    def _load_tpm2(self, blob: bytes | None) -> TPM2:
        """The 2.0 chip: its firmware's _TPM_Init + TPM2_Startup(SU_CLEAR).  A
        state libtpms rejects is an error, never a new chip."""
        from pyxl.tpm import TPMStateError
        from pyxl.tpm.tpm2.engine import TPM2, TPM2StateError

        try:
            tpm = TPM2.load(blob) if blob is not None else TPM2()
        except TPM2StateError as e:
            raise TPMStateError("hardware TPM state %s is unreadable: %s"
                                % (self.state_path, e)) from None
        try:
            tpm.power_on("clear")
        except TPM2StateError as e:
            tpm.close()
            raise TPMStateError("hardware TPM state %s is unreadable: %s"
                                % (self.state_path, e)) from None
        return tpm

    def close(self) -> None:
        """Power the chip off (a 2.0 chip gives libtpms back)."""
        if self.version == 2:
            with self.lock:
                cast("TPM2", self.tpm).close()

    def _save(self) -> None:
        if self.state_path:
            blob = self.tpm.dump_if_changed()
            if blob is not None:
                atomic_write(self.state_path, blob)

    def _reset_fifo(self, state: int) -> None:
        self.state = state
        self.cmd = bytearray()
        self.rsp = b""
        self.rsp_pos = 0

    # -- registers -----------------------------------------------------------
    def _expected(self) -> int | None:
        if len(self.cmd) < 6:
            return None
        return struct.unpack_from(">I", self.cmd, 2)[0]

    def _sts(self) -> int:
        v = STS_VALID
        if self.state == READY:
            v |= STS_COMMAND_READY
        elif self.state == RECEPTION:
            exp = self._expected()
            if exp is None or len(self.cmd) < exp:
                v |= STS_EXPECT
        elif self.state == COMPLETION and self.rsp_pos < len(self.rsp):
            v |= STS_DATA_AVAIL
        return v

    def _burst(self) -> int:
        """burstCount as QEMU's tpm_tis_common.c reports it: the room left in
        the command buffer, or what is left of the response to read."""
        if self.state in (READY, RECEPTION):
            return min(MAX_BURST, MAX_BUFFER - len(self.cmd))
        if self.state == COMPLETION:
            return min(MAX_BURST, len(self.rsp) - self.rsp_pos)
        return 0

    def _read8(self, loc: int, reg: int) -> int:
        if reg == ACCESS:
            v = ACCESS_VALID | ACCESS_ESTABLISHMENT
            if self.active == loc:
                v |= ACCESS_ACTIVE_LOCALITY
                if any(p for i, p in enumerate(self.pending) if i != loc):
                    v |= ACCESS_REQUEST_PENDING
            if self.seized[loc]:
                v |= ACCESS_BEEN_SEIZED
            return v
        if INT_ENABLE <= reg < INT_ENABLE + 4:
            return self.int_enable[loc] >> 8 * (reg - INT_ENABLE) & 0xFF
        if reg == INT_VECTOR:
            return self.int_vector[loc]
        if INT_STATUS <= reg < INT_STATUS + 4:
            return 0
        if INTF_CAPABILITY <= reg < INTF_CAPABILITY + 4:
            return self.intf_caps >> 8 * (reg - INTF_CAPABILITY) & 0xFF
        if DID_VID <= reg < DID_VID + 4:
            return self.did_vid >> 8 * (reg - DID_VID) & 0xFF
        if reg == RID:
            return self.rid
        if self.active != loc:
            return 0xFF
        if reg == STS:
            return self._sts()
        if reg == BURST_LO:
            return self._burst() & 0xFF
        if reg == BURST_HI:
            return self._burst() >> 8
        if reg == STS + 3 and self.version == 2:
            return STS_TPM_FAMILY2_0 >> 24
        if reg == DATA_FIFO:
            if self.state == COMPLETION and self.rsp_pos < len(self.rsp):
                b = self.rsp[self.rsp_pos]
                self.rsp_pos += 1
                return b
            return 0xFF
        return 0xFF

    def _grant_next(self) -> None:
        for loc in range(TIS_LOCALITIES - 1, -1, -1):      # highest waiting locality first
            if self.pending[loc]:
                self.pending[loc] = False
                self.active = loc
                return

    def _write8(self, loc: int, reg: int, val: int) -> None:
        if reg == ACCESS:
            if val & ACCESS_ACTIVE_LOCALITY:               # relinquish
                self.pending[loc] = False
                if self.active == loc:
                    self.active = None
                    self._reset_fifo(IDLE)
                    self._grant_next()
            if val & ACCESS_SEIZE and self.active is not None and loc > self.active:
                self.seized[self.active] = True
                self.active = loc
                self._reset_fifo(IDLE)
            if val & ACCESS_REQUEST_USE:
                if self.active is None:
                    self.active = loc
                    self.seized[loc] = False
                elif self.active != loc:
                    self.pending[loc] = True
            return
        if INT_ENABLE <= reg < INT_ENABLE + 4:
            sh = 8 * (reg - INT_ENABLE)
            self.int_enable[loc] = self.int_enable[loc] & ~(0xFF << sh) | val << sh
            return
        if reg == INT_VECTOR:
            self.int_vector[loc] = val & 0x0F
            return
        if self.active != loc:
            return                                          # writes from other localities are dropped
        if reg == STS:
            if val & STS_COMMAND_READY:
                self._reset_fifo(READY)                      # ready, or abort what was going on
            elif val & STS_GO and self.state == RECEPTION:
                exp = self._expected()
                if exp is not None and len(self.cmd) >= exp:
                    self._execute(loc)
            return
        if reg == DATA_FIFO:
            if self.state in (READY, RECEPTION):
                self.state = RECEPTION
                exp = self._expected()
                if (exp is None or len(self.cmd) < exp) and len(self.cmd) < MAX_BUFFER:
                    self.cmd.append(val)

    def _execute(self, loc: int) -> None:
        if testfault.ARMED and len(self.cmd) >= 10:
            testfault.at("tpm:%d" % struct.unpack_from(">I", self.cmd, 6)[0])
        rsp = self.tpm.execute(bytes(self.cmd), loc)
        self.commands += 1
        self._save()
        self.rsp, self.rsp_pos, self.state = rsp, 0, COMPLETION
        self.cmd = bytearray()

    # -- the iomem device interface ------------------------------------------
    def read(self, offset: int, width: int, count: int = 1) -> bytes:
        loc, reg = divmod(offset, TIS_PAGE)
        out = bytearray()
        with self.lock:
            for _ in range(count):
                for i in range(width):
                    out.append(self._read8(loc, reg + i))
        return bytes(out)

    def write(self, offset: int, width: int, data: bytes) -> None:
        loc, reg = divmod(offset, TIS_PAGE)
        with self.lock:
            for i in range(0, len(data), width):
                for j in range(width):
                    self._write8(loc, reg + j, data[i + j])
