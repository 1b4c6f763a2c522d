"""Bench guest: opens device/vtpm/0 (Linux semantics) and times each named
command N times; prints {name: [ms, ...]} as JSON."""

from __future__ import annotations

import json
import struct
import sys
import time

from pyxl.domain.drivers.xen_tpmfront import XenTpmFront
from pyxl.domain.xen import XenInterface

COMMANDS = {
    "PCRRead": struct.pack(">HIII", 0xC1, 14, 0x15, 10),
    "GetRandom(32)": struct.pack(">HIII", 0xC1, 14, 0x46, 32),
    "Extend": struct.pack(">HIII", 0xC1, 34, 0x14, 10) + b"\x11" * 20,
}


def main() -> None:
    n = int(sys.argv[1])
    xen = XenInterface.from_env()
    front = XenTpmFront(xen)
    front.wait_connected(30)
    out = {}
    for name, req in COMMANDS.items():
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            front.transmit(req)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = times
    front.close()
    print(json.dumps(out), flush=True)
    xen.close()


if __name__ == "__main__":
    main()
