"""Bench guest: opens device/vtpm/0 (Linux semantics) and times each kind
of call (KINDS, or KINDS2 for TPM 2.0) N times; prints one JSON line per
kind: {"kind": name, "times": [ms, ...]} (and, as below, "cpu", "where").

    bench_guest_domain.py N [tpm2] [step]   # tpm2: TPM 2.0 (a tpm2=1 vTPM)

Before the first kind it sends one command untimed: a new vTPM's first
successful command always saves (pyxl-vtpm(7)), which no row is about.
Each kind's set-up (KINDS2's NV index) is done untimed before it.

With `step`, before each kind it prints {"ready": name} and after it its
result, and each time waits for a line on stdin before going on: the
bench then counts the saves the stub domains printed on their consoles
in between (bench/stubdom_vtpm.py).

With BENCH_CPU_PIDS="name:pid,..." in the environment it also reports,
under the key "cpu", each named process's CPU time per call ({process:
us}; "guest" is this process), from the scheduler's own accounting
(/proc/PID/task/*/schedstat): what the chain's processes use, however
loaded the machine is; and under the key "where", how often (sampled
every 10th call) each named process ran on this process's vCPU
(bench/benchutil.py's WhereRan; the sampling's own CPU time is not
counted in the guest's)."""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

from pyxl.domain.drivers.xen_tpmfront import XenTpmFront
from pyxl.domain.tpm2_frames import TPM_ALG_SHA256, pcr_extend_request
from pyxl.domain.xen import XenInterface

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / "bench"),
                str(Path(__file__).resolve().parents[1])]
from benchutil import WhereRan, cpu_ns  # noqa: E402
from tpm2 import client as C  # noqa: E402

Send = Callable[[bytes], bytes]

# Commands that leave what a vTPM stores as it was: the chain saves nothing
# for them (bench/chain_callgrind.py counts these)
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

# TPM 1.2 Part 3, TPM_SaveState (no auth): the TPM keeps its volatile state
# in what it stores; the next command of another ordinal deletes it again
TPM_SAVESTATE = struct.pack(">HII", 0xC1, 10, 0x98)

# TPM 2.0: an ordinary NV index of the owner hierarchy (tests/tpm2/client.py's
# frames, Part 3 31: owner-authorized with the empty owner password)
NV_INDEX, NV_SIZE = 0x01000001, 8


def ok(req: bytes, rsp: bytes) -> bytes:
    """rsp, if it is a success; else the bench ends, saying which command failed."""
    if rsp[6:10] != b"\0\0\0\0":
        raise SystemExit("command 0x%x failed: %s" % (struct.unpack_from(">I", req, 6)[0],
                                                      rsp.hex()))
    return rsp


def nv_write_request(counter: int) -> bytes:
    """TPM2_NV_Write of the counter (NV_SIZE bytes) at offset 0."""
    return C.nv_write(NV_INDEX, counter.to_bytes(NV_SIZE, "big"))


def nv_setup(send: Send) -> None:
    """The NV index defined and written once (counter 0); libtpms (pyxl's
    vTPM and swtpm alike) answers the first NV_Write after the definition
    TPM_RC_RETRY, so it is sent again (C.retried)."""
    req = C.nv_define(NV_INDEX, NV_SIZE)
    ok(req, send(req))
    req = nv_write_request(0)
    ok(req, C.retried(send, req))


class Kind(NamedTuple):
    """One row of bench/stubdom_vtpm.py: frames(i), the frames of the i-th
    timed call (i from 1), sent in turn and timed as one; saves, how many
    saves the chain's design makes per call (pyxl-vtpm(7)): one for each of
    its frames that changes what the vTPM stores, none for the others; setup,
    done once, untimed, before the first call."""
    frames: Callable[[int], tuple[bytes, ...]]
    saves: int
    setup: Callable[[Send], None] = lambda send: None

    def call(self, send: Send, i: int) -> None:
        for req in self.frames(i):
            ok(req, send(req))


def same(*frames: bytes) -> Callable[[int], tuple[bytes, ...]]:
    return lambda i: frames


# The rows: first the commands the chain saves nothing for, then one whose
# every call changes the stored state.  TPM 1.2: TPM_SaveState then PCRRead,
# each a change (SaveState stores the volatile state, PCRRead deletes it
# again), timed as one pair: 2 saves per call.  TPM 2.0: TPM2_NV_Write of a
# new counter value each call: 1 save.
KINDS = {name: Kind(same(req), 0) for name, req in COMMANDS.items()}
KINDS["SaveState+PCRRead"] = Kind(same(TPM_SAVESTATE, COMMANDS["PCRRead"]), 2)
KINDS2 = {name: Kind(same(req), 0) for name, req in COMMANDS2.items()}
KINDS2["NV_Write"] = Kind(lambda i: (nv_write_request(i),), 1, nv_setup)


def main() -> None:
    n = int(sys.argv[1])
    kinds = KINDS2 if "tpm2" in sys.argv[2:] else KINDS
    step = "step" in sys.argv[2:]
    xen = XenInterface.from_env()
    front = XenTpmFront(xen)
    front.wait_connected(30)
    pids = {"guest": os.getpid()}
    for item in filter(None, os.environ.get("BENCH_CPU_PIDS", "").split(",")):
        who, pid = item.split(":")
        pids[who] = int(pid)
    where = WhereRan({who: pid for who, pid in pids.items() if who != "guest"})

    def say(what: dict) -> None:
        print(json.dumps(what), flush=True)
        if step and not sys.stdin.readline():
            raise SystemExit("the bench has gone")

    next(iter(kinds.values())).call(front.transmit, 0)      # a new vTPM's first save
    for name, kind in kinds.items():
        kind.setup(front.transmit)
        say({"ready": name})
        times = []
        where.reset()
        before = {who: cpu_ns(pid) for who, pid in pids.items()}
        sampling = where.spent_ns
        for i in range(1, n + 1):
            t0 = time.perf_counter()
            kind.call(front.transmit, i)
            times.append((time.perf_counter() - t0) * 1000)
            where.after()
        out: dict = {"kind": name, "times": times}
        if "BENCH_CPU_PIDS" in os.environ:
            out["cpu"] = {who: (cpu_ns(pid) - before[who]) / n / 1000
                          for who, pid in pids.items()}
            out["cpu"]["guest"] -= (where.spent_ns - sampling) / n / 1000
            out["where"] = where.counts()
        say(out)
    front.close()
    xen.close()


if __name__ == "__main__":
    main()
