"""Bench guest: opens device/vtpm/0 (Linux semantics) and times each named
command N times; prints {name: [ms, ...]} as JSON.

    bench_guest_domain.py N [tpm2]     # tpm2: TPM 2.0 commands (a tpm2=1 vTPM)"""

from __future__ import annotations

import json
import struct
import sys
import time

from pyxl.domain.drivers.xen_tpmfront import XenTpmFront
from pyxl.domain.tpm2_frames import TPM_ALG_SHA256, pcr_extend_request
from pyxl.domain.xen import XenInterface

COMMANDS = {
    "PCRRead": struct.pack(">HIII", 0xC1, 14, 0x15, 10),
    "GetRandom(32)": struct.pack(">HIII", 0xC1, 14, 0x46, 32),
    "Extend": struct.pack(">HIII", 0xC1, 34, 0x14, 10) + b"\x11" * 20,
}
# TPM 2.0 Part 3: TPM2_PCR_Read of sha256 PCR 10 (TPML_PCR_SELECTION: one
# bank, 3 select bytes), TPM2_PCR_Extend of PCR 10 in the sha256 bank
COMMANDS2 = {
    "PCR_Read": struct.pack(">HIIIHB3s", 0x8001, 20, 0x17E, 1, 0x000B, 3, b"\x00\x04\x00"),
    "PCR_Extend": pcr_extend_request(10, [(TPM_ALG_SHA256, b"\x11" * 32)]),
}


def main() -> None:
    n = int(sys.argv[1])
    commands = COMMANDS2 if sys.argv[2:] == ["tpm2"] else COMMANDS
    xen = XenInterface.from_env()
    front = XenTpmFront(xen)
    front.wait_connected(30)
    out = {}
    for name, req in commands.items():
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            rsp = front.transmit(req)
            if rsp[6:10] != b"\0\0\0\0":
                raise SystemExit("%s failed: %s" % (name, rsp.hex()))
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = times
    front.close()
    print(json.dumps(out), flush=True)
    xen.close()


if __name__ == "__main__":
    main()
