"""mini-os tpm_tis: the TIS 1.2 driver vtpmmgr-stubdom uses to reach the
hardware TPM through the iomem pages xl gave it (`iomem=["fed40,5"]`).

    tis = TpmTis(xen, printk, baseaddr=0xFED40000, localities=1 << 0)
    rsp = tis.transmit(request)

Register accesses are the domain's MMIO operations (XenInterface.mmio_read
/ mmio_write); a FIFO burst is one string access.  Polling mode only (the
seed never got interrupts working either: irq probing is unimplemented).
Init follows mini-os: map the enabled localities' pages, request the
first one, print DID/VID/RID and the interface capabilities, enable the
interrupt sources, read TIS timeouts (GetCapability PROPERTY 0x115, must
be 30 bytes) and durations (0x120, must be 26 bytes, else init fails),
then ContinueSelfTest.
"""

from __future__ import annotations

import errno
import struct
import threading
import time

from pyxl.hypervisor.tis import (ACCESS, ACCESS_ACTIVE_LOCALITY, ACCESS_REQUEST_PENDING,
                                 ACCESS_REQUEST_USE, ACCESS_VALID, DATA_FIFO, DID_VID,
                                 INT_ENABLE, INTF_CAPABILITY, RID, STS, STS_COMMAND_READY,
                                 STS_DATA_AVAIL, STS_EXPECT, STS_GO, STS_VALID)

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable

    from pyxl.domain.xen import XenInterface

TPM_TIS_BASE = 0xFED40000
TPM_BUFSIZE = 2048
TPM_TIMEOUT = 0.005                 # poll interval (msleep(5))
TIS_SHORT_TIMEOUT, TIS_LONG_TIMEOUT = 0.750, 2.0
HEADER = 10
CAPS = ((0x100, "Burst Count Static"), (0x80, "Command Ready Int Support"),
        (0x40, "Interrupt Edge Falling"), (0x20, "Interrupt Edge Rising"),
        (0x10, "Interrupt Level Low"), (0x08, "Interrupt Level High"),
        (0x04, "Locality Change Int Support"), (0x02, "Sts Valid Int Support"),
        (0x01, "Data Avail Int Support"))
INT_SOURCES = 0x80 | 0x04 | 0x01 | 0x02     # cmdReady | localityChange | dataAvail | stsValid
TPM_CAP_PROP, TIS_TIMEOUT, TIS_DURATION = 5, 0x115, 0x120


class TisError(OSError):
    """A failed TPM transfer; `errno` is the Linux driver's error number."""

    errno: int

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)


class TisConnectionReplaced(TisError):
    """A command the daemon restart interrupted: a register access failed
    EPIPE because the hypervisor connection the driver set the device up on
    (`generation`) was replaced.  Nothing is wrong with the chip; the
    command can be sent again once resume() has run.  Not in mini-os."""

    def __init__(self, generation: int) -> None:
        super().__init__(errno.EPIPE, "hypervisor connection replaced")
        self.generation = generation


def getcap_prop(subcap: int) -> bytes:
    return struct.pack(">HIIIII", 0x00C1, 22, 0x65, TPM_CAP_PROP, 4, subcap)


class TpmTis:
    # mini-os init_tpm_tis's lines (TpmTis2 has init_tpm2_tis's)
    BANNER = "============= Init TPM TIS Driver ==============\n"
    BAD_LOCALITIES = "init_tpm_tis() Invalid locality specification! %X\n"
    NO_MAP = "Unable to map iomem page a address 0x%x\n"
    FAMILY = "1.2"

    def __init__(self, xen: XenInterface, printk: Callable[[str], None],
                 baseaddr: int = TPM_TIS_BASE, localities: int = 1,
                 irq: int = 0):
        self.xen, self.printk = xen, printk
        self.locality = -1
        # the hypervisor connection the device's state (the locality held, a
        # command in the FIFO) lives in: a register access made after a
        # daemon restart fails instead of reaching the new one's device
        self.generation = xen.generation
        # one command at a time, and resume() only between commands: the
        # xenbus-resume thread must not reset the locality under a command
        self._lock = threading.Lock()
        self.timeout_a = self.timeout_c = self.timeout_d = TIS_SHORT_TIMEOUT
        self.timeout_b = TIS_LONG_TIMEOUT
        self.durations = [0.0, 0.0, 0.0]
        self.fd = -1
        printk(self.BANNER)
        if localities & ~0x1F:
            printk(self.BAD_LOCALITIES % localities)
            raise TisError(22, "bad localities")
        printk("IOMEM Machine Base Address: %X\n" % baseaddr)
        self.baseaddr = baseaddr
        self.enabled = localities or 0x1F
        printk("Enabled Localities: " + "".join("%d " % i for i in range(5)
                                                if self.enabled >> i & 1) + "\n")
        for i in range(5):
            if not self.enabled >> i & 1:
                continue
            try:                                   # ioremap: needs iomem permission
                self._r(i, ACCESS)
            except OSError:
                printk(self.NO_MAP % (baseaddr + 0x1000 * i))
                raise TisError(1, "iomem not permitted") from None
            if self.locality < 0 and self.request_locality(i) < 0:
                printk("Unable to request locality %d??\n" % i)
                raise TisError(16, "locality")
        didvid = self._r(self.locality, DID_VID, 4)
        self.did, self.vid = didvid >> 16, didvid & 0xFFFF
        self.rid = self._r(self.locality, RID)
        printk("%s TPM (device-id=0x%X vendor-id = %X rev-id = %X)\n"
               % (self.FAMILY, self.did, self.vid, self.rid))
        caps = self._r(self.locality, INTF_CAPABILITY, 4)
        printk("TPM interface capabilities (0x%x):\n" % caps)
        for bit, text in CAPS:
            if caps & bit:
                printk("\t%s\n" % text)
        mask = self._r(self.locality, INT_ENABLE, 4) | INT_SOURCES
        self._w(self.locality, INT_ENABLE, mask, 4)
        if irq:
            printk("IRQ probing not implemented\n")
        self._start()

    def _start(self) -> None:
        """init_tpm_tis's end: timeouts and durations, ContinueSelfTest."""
        printk = self.printk
        if not self.get_timeouts():
            printk("Could not get TPM timeouts and durations\n")
            raise TisError(22, "timeouts")
        self.transmit(bytes.fromhex("00c10000000a00000053"))     # ContinueSelfTest

    # -- register access --------------------------------------------------------
    def _addr(self, loc: int, reg: int) -> int:
        return self.baseaddr + 0x1000 * loc + reg

    def _r(self, loc: int, reg: int, width: int = 1) -> int:
        return int.from_bytes(self.xen.mmio_read(self._addr(loc, reg), width,
                                                 generation=self.generation), "little")

    def _w(self, loc: int, reg: int, value: int, width: int = 1) -> None:
        self.xen.mmio_write(self._addr(loc, reg), value.to_bytes(width, "little"), width,
                            generation=self.generation)

    def _check_locality(self, loc: int) -> bool:
        want = ACCESS_ACTIVE_LOCALITY | ACCESS_VALID
        return bool(self.enabled >> loc & 1) and self._r(loc, ACCESS) & want == want

    def request_locality(self, loc: int) -> int:
        if not self.enabled >> loc & 1:
            self.printk("tpm_tis_change_locality() Tried to change to locality %d, "
                        "but it is disabled or invalid!\n" % loc)
            return -1
        if self._check_locality(loc):
            self.locality = loc
            return loc
        self._w(loc, ACCESS, ACCESS_REQUEST_USE)
        stop = time.monotonic() + self.timeout_a
        while True:
            if self._check_locality(loc):
                self.locality = loc
                return loc
            if time.monotonic() >= stop:
                break
            time.sleep(TPM_TIMEOUT)
        self.printk("REQ LOCALITY FAILURE\n")
        return -1

    def release_locality(self, loc: int, force: bool = False) -> None:
        want = ACCESS_REQUEST_PENDING | ACCESS_VALID
        if self.enabled >> loc & 1 and (force or self._r(loc, ACCESS) & want == want):
            self._w(loc, ACCESS, ACCESS_ACTIVE_LOCALITY)

    def _status(self) -> int:
        """TPM_STS as one 32-bit read: the status in bits 0-7, burstCount in
        8-23 (as Linux's tpm_tis_core get_burstcount reads it).  mini-os's
        tpm_tis_status reads the status byte and get_burstcount the two
        burstCount bytes after it; here each is one trapped round trip to
        the device, so the driver reads them together and uses the value it
        read -- the status a wait_for_stat saw, the burstCount beside it --
        instead of reading STS again straight after (the register cannot
        change in between but by the driver's own access)."""
        return self._r(self.locality, STS, 4)

    def _wait_for_stat(self, mask: int, timeout: float) -> int:
        """wait_for_stat (polling): the last TPM_STS read (_status), whose
        status has every bit of `mask` unless the timeout passed."""
        sts = self._status()
        if sts & mask == mask:
            return sts
        stop = time.monotonic() + timeout
        while time.monotonic() < stop:
            time.sleep(TPM_TIMEOUT)
            sts = self._status()
            if sts & mask == mask:
                break
        return sts

    def _burstcount(self, sts: int) -> int:
        """get_burstcount, starting from the TPM_STS just read."""
        stop = time.monotonic() + self.timeout_d
        while True:
            n = sts >> 8 & 0xFFFF
            if n:
                return n
            if time.monotonic() >= stop:
                return -1
            time.sleep(TPM_TIMEOUT)
            sts = self._status()

    # -- send / receive -------------------------------------------------------------
    def send(self, buf: bytes) -> None:
        if self.request_locality(self.locality) < 0:
            raise TisError(16, "locality")
        sts = self._status()
        if not sts & STS_COMMAND_READY:
            self._w(self.locality, STS, STS_COMMAND_READY)
            sts = self._wait_for_stat(STS_COMMAND_READY, self.timeout_b)
            if not sts & STS_COMMAND_READY:
                raise TisError(62, "not ready")
        count = 0
        while count < len(buf) - 1:
            burst = self._burstcount(sts)
            if burst < 0:
                raise TisError(16, "burst count")
            chunk = buf[count:min(count + burst, len(buf) - 1)]
            self.xen.mmio_write(self._addr(self.locality, DATA_FIFO), chunk, 1,
                                generation=self.generation)
            count += len(chunk)
            sts = self._wait_for_stat(STS_VALID, self.timeout_c)
            if not sts & STS_EXPECT:
                self._w(self.locality, STS, STS_COMMAND_READY)
                raise TisError(5, "TPM does not expect more data")
        self._w(self.locality, DATA_FIFO, buf[-1])
        if self._wait_for_stat(STS_VALID, self.timeout_c) & STS_EXPECT:
            self._w(self.locality, STS, STS_COMMAND_READY)
            raise TisError(5, "TPM expects more data")
        self._w(self.locality, STS, STS_GO)

    def _recv_data(self, count: int, sts: int | None = None) -> bytes:
        """recv_data: up to `count` bytes, a burst at a time.  `sts`: the
        TPM_STS read just before, if any (tpm_transmit's last poll)."""
        want = STS_DATA_AVAIL | STS_VALID
        out = bytearray()
        while len(out) < count:
            if sts is None or sts & want != want:
                sts = self._wait_for_stat(want, self.timeout_c)
                if sts & want != want:
                    break
            burst = self._burstcount(sts)
            if burst < 0:
                break
            n = min(burst, count - len(out))
            out += self.xen.mmio_read(self._addr(self.locality, DATA_FIFO), 1, n,
                                      generation=self.generation)
            sts = None
        return bytes(out)

    def recv(self, sts: int | None = None) -> bytes:
        """tpm_tis_recv; `sts` as for _recv_data."""
        try:
            head = self._recv_data(HEADER, sts)
            if len(head) < HEADER:
                self.printk("Error reading tpm cmd header\n")
                raise TisError(5, "header")
            expected = struct.unpack_from(">I", head, 2)[0]
            if expected > TPM_BUFSIZE or expected < HEADER:
                raise TisError(5, "response too large")
            rest = self._recv_data(expected - HEADER)
            if len(rest) < expected - HEADER:
                self.printk("Unable to read rest of tpm command size=%d expected=%d\n"
                            % (HEADER + len(rest), expected))
                raise TisError(62, "short response")
            if self._wait_for_stat(STS_VALID, self.timeout_c) & STS_DATA_AVAIL:
                self.printk("Error: left over data\n")
                raise TisError(5, "left over data")
            return head + rest
        finally:
            self._w(self.locality, STS, STS_COMMAND_READY)
            self.release_locality(self.locality)

    def _duration(self, ordinal: int) -> float:
        return 120.0 if not any(self.durations) else max(self.durations)

    def resume(self, locality: int) -> int:
        """After a daemon restart (the domain resumed on a new hypervisor,
        whose device is a power-cycled chip): once a command in flight has
        failed, take the device of the current connection and request
        `locality` again; request_locality's value.  Not in mini-os, which
        never resumes."""
        with self._lock:
            self.generation = self.xen.generation
            self.locality = -1
            return self.request_locality(locality)

    def transmit(self, buf: bytes) -> bytes:
        """tpm_transmit (polling): send, wait for dataAvail, receive.  A
        daemon restart under it fails it with TisConnectionReplaced (a
        register access's EPIPE), a chip's failure with TisError."""
        with self._lock:
            generation = self.generation
            try:
                return self._transmit(buf)
            except TisError:
                raise
            except OSError as e:
                if e.errno != errno.EPIPE:
                    raise
                raise TisConnectionReplaced(generation) from e

    def _transmit(self, buf: bytes) -> bytes:
        if len(buf) < HEADER:
            raise TisError(61, "no data")
        count = struct.unpack_from(">I", buf, 2)[0]
        if count == 0:
            raise TisError(61, "no data")
        if count > TPM_BUFSIZE or count > len(buf):
            self.printk("Error: invalid count value %x %x \n" % (count, TPM_BUFSIZE))
            raise TisError(7, "too big")
        try:
            self.send(buf[:count])
        except TisError as e:
            self.printk("tpm_transmit: tpm_send: error %d\n" % -e.errno)
            raise
        ordinal = struct.unpack_from(">I", buf, 6)[0]
        stop = time.monotonic() + self._duration(ordinal)
        while True:
            sts = self._status()
            if sts & (STS_DATA_AVAIL | STS_VALID) == STS_DATA_AVAIL | STS_VALID:
                break
            if sts & 0xFF == STS_COMMAND_READY:
                self.printk("TPM Error: Operation Canceled\n")
                raise TisError(125, "canceled")
            if time.monotonic() >= stop:
                self._w(self.locality, STS, STS_COMMAND_READY)
                self.printk("TPM Operation Timed out\n")
                raise TisError(62, "timed out")
            time.sleep(TPM_TIMEOUT)
        try:
            return self.recv(sts)
        except TisError as e:
            self.printk("tpm_transmit: tpm_recv: error %d\n" % -e.errno)
            raise

    def get_timeouts(self) -> bool:
        try:
            rsp = self.transmit(getcap_prop(TIS_TIMEOUT))
        except TisError as e:
            self.printk("transmit failed %d\n" % -e.errno)
            rsp = None
        if rsp is not None:
            rc = struct.unpack_from(">I", rsp, 6)[0]
            if len(rsp) == HEADER:
                self.printk("A TPM error (%d) occurred attempting to determine the timeouts\n" % rc)
                self.printk("transmit failed %d\n" % rc)
            elif rc != 0 or len(rsp) != HEADER + 4 + 16:
                return False
            else:
                vals = struct.unpack_from(">IIII", rsp, 14)
                scale = 1000 if vals[0] and vals[0] < 1000 else 1
                names = ("timeout_a", "timeout_b", "timeout_c", "timeout_d")
                for name, v in zip(names, vals):
                    if v:
                        setattr(self, name, v * scale / 1e6)
        try:
            rsp = self.transmit(getcap_prop(TIS_DURATION))
        except TisError:
            return False
        rc = struct.unpack_from(">I", rsp, 6)[0]
        if len(rsp) == HEADER:
            self.printk("A TPM error (%d) occurred attempting to determine the durations\n" % rc)
        if rc != 0 or len(rsp) != HEADER + 4 + 12:
            return False
        self.durations = [v / 1e6 for v in struct.unpack_from(">III", rsp, 14)]
        if self.durations[0] < 0.010:
            self.durations = [1.0, self.durations[1] * 1000, self.durations[2] * 1000]
            self.printk("Adjusting TPM timeout parameters\n")
        return True

    def open(self, fd: int = 3) -> int:
        """tpm_tis_open: mini-os hands out the next free file descriptor."""
        if self.fd < 0:
            self.fd = fd
            self.printk("tpm_tis_open() -> %d\n" % self.fd)
        return self.fd

    def shutdown(self) -> None:
        self.printk("Shutting down tpm_tis device\n")
        try:
            self._w(self.locality, INT_ENABLE, 0x7FFFFFFF, 4)
        except OSError:
            pass
