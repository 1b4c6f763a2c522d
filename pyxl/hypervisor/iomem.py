"""I/O memory: which machine pages a domain may touch (xl's `iomem=`), and
the host devices behind them.

On Xen a PV domain given `iomem=["fed40,5"]` maps those machine frames and
its loads and stores reach the chip.  Here the chip is a Python device
owned by the host, so an access is a trapped MMIO operation: the domain
sends (address, width, data) over its hypervisor socket, the hypervisor
checks the domain's iomem permission for that page and hands the access
to the device mapped there.  A `count` > 1 is a string access of `width`
bytes each at the same address (rep movs on a FIFO register): one round
trip for a burst.
"""

from __future__ import annotations

import errno as _errno
import threading
from typing import Protocol


class MmioDevice(Protocol):
    """A device mapped into the machine address space (the TIS's pages)."""

    def read(self, offset: int, width: int, count: int = 1) -> bytes: ...

    def write(self, offset: int, width: int, data: bytes) -> None: ...

PAGE_SHIFT = 12
MAX_STRING = 4096


class IoMem:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._permits: dict[int, list[tuple[int, int]]] = {}   # domid -> [(pfn, nr)]
        self._devices: list[tuple[int, int, MmioDevice]] = []   # (base, length, device)

    # -- the toolstack's side ------------------------------------------------
    def permit(self, domid: int, start_pfn: int, nr_pages: int) -> None:
        """XEN_DOMCTL_iomem_permission (what xl does for each iomem= entry)."""
        if start_pfn < 0 or nr_pages <= 0:
            raise OSError(_errno.EINVAL, "bad iomem range")
        with self._lock:
            self._permits.setdefault(domid, []).append((start_pfn, nr_pages))

    def domain_destroyed(self, domid: int) -> None:
        with self._lock:
            self._permits.pop(domid, None)

    def add_device(self, base: int, length: int, device: MmioDevice) -> None:
        """Put `device` (read(offset, width, count) -> bytes,
        write(offset, width, data)) at machine address `base`."""
        with self._lock:
            self._devices.append((base, length, device))

    # -- a domain's access -----------------------------------------------------
    def _resolve(self, domid: int, addr: int, width: int) -> tuple[MmioDevice, int]:
        if width not in (1, 2, 4):
            raise OSError(_errno.EINVAL, "MMIO width must be 1, 2 or 4")
        pfn = addr >> PAGE_SHIFT
        with self._lock:
            if domid != 0 and not any(s <= pfn < s + n for s, n in self._permits.get(domid, [])):
                raise OSError(_errno.EPERM, "domain %d has no iomem permission for pfn %#x"
                              % (domid, pfn))
            for base, length, dev in self._devices:
                if base <= addr and addr + width <= base + length:
                    return dev, addr - base
        raise OSError(_errno.ENXIO, "no device at %#x" % addr)

    def read(self, domid: int, addr: int, width: int, count: int = 1) -> bytes:
        if not 1 <= count <= MAX_STRING:
            raise OSError(_errno.EINVAL, "bad MMIO count")
        dev, off = self._resolve(domid, addr, width)
        return dev.read(off, width, count)

    def write(self, domid: int, addr: int, width: int, data: bytes) -> None:
        if not data or len(data) % width or len(data) > MAX_STRING * width:
            raise OSError(_errno.EINVAL, "bad MMIO data")
        dev, off = self._resolve(domid, addr, width)
        dev.write(off, width, data)
