"""Bench guest: opens device/vtpm/0 (Linux semantics) and times each named
command N times; prints {name: [ms, ...]} as JSON.

    bench_guest_domain.py N [tpm2]     # tpm2: TPM 2.0 commands (a tpm2=1 vTPM)

With BENCH_CPU_PIDS="name:pid,..." in the environment it also reports,
under the key "cpu", each named process's CPU time per command of each
kind ({name: {process: us}}; "guest" is this process), from the
scheduler's own accounting (/proc/PID/task/*/schedstat): what the chain's
processes use, however loaded the machine is; and under the key "where",
for each kind, how often (sampled every 10th command) each named process
ran on this process's vCPU (bench/benchutil.py's WhereRan; the sampling's
own CPU time is not counted in the guest's)."""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from pathlib import Path

from pyxl.domain.drivers.xen_tpmfront import XenTpmFront
from pyxl.domain.tpm2_frames import TPM_ALG_SHA256, pcr_extend_request
from pyxl.domain.xen import XenInterface

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from benchutil import WhereRan, cpu_ns  # noqa: E402

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
    pids = {"guest": os.getpid()}
    for item in filter(None, os.environ.get("BENCH_CPU_PIDS", "").split(",")):
        who, pid = item.split(":")
        pids[who] = int(pid)
    out: dict = {}
    cpu: dict = {}
    where_ran: dict = {}
    where = WhereRan({who: pid for who, pid in pids.items() if who != "guest"})
    for name, req in commands.items():
        times = []
        where.reset()
        before = {who: cpu_ns(pid) for who, pid in pids.items()}
        sampling = where.spent_ns
        for _ in range(n):
            t0 = time.perf_counter()
            rsp = front.transmit(req)
            if rsp[6:10] != b"\0\0\0\0":
                raise SystemExit("%s failed: %s" % (name, rsp.hex()))
            times.append((time.perf_counter() - t0) * 1000)
            where.after()
        cpu[name] = {who: (cpu_ns(pid) - before[who]) / n / 1000 for who, pid in pids.items()}
        cpu[name]["guest"] -= (where.spent_ns - sampling) / n / 1000
        out[name] = times
        where_ran[name] = where.counts()
    if "BENCH_CPU_PIDS" in os.environ:
        out["cpu"] = cpu
        out["where"] = where_ran
    front.close()
    print(json.dumps(out), flush=True)
    xen.close()


if __name__ == "__main__":
    main()
