#!/usr/bin/env python3
"""DAA cost: a full TPM_DAA_Join (25 stages) and TPM_DAA_Sign (16 stages) on
`pyxl tpm-serve` vs swtpm (libtpms), both fresh, owned, driven by the same
test-side issuer and verifier (tests/tpm/daa_issuer.py) over TCP.  Only the
time spent waiting for the TPM is counted (the issuer's and host's own
arithmetic is the same for both); runs alternate between the two TPMs.
Prints the median TPM time per join and per sign, and the ratio pyxl/swtpm
(target: within 1.5x -- the work is modular exponentiation, with OpenSSL's BN
on both sides), then the same for the CPU time the TPM's
process ran (Linux schedstat, summed over its threads), which a machine
busy with other work disturbs much less than the waiting time.

  python bench/tpm_daa.py [-n 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "tpm"), str(ROOT / "tests"), str(ROOT)]

import daa_issuer as D  # noqa: E402
import engine_helpers as H  # noqa: E402
from test_daa_swtpm import owned_swtpm  # noqa: E402
from tpm.fixtures import PyxlServe, Swtpm, transact  # noqa: E402
from benchutil import cpu_ns  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """The CPU time process pid's threads have run (s)."""
    return cpu_ns(pid) / 1e9


class Timed:
    """A TPM endpoint that adds up the time its commands take."""

    def __init__(self, addr, pid: int):
        self.addr = addr
        self.pid = pid
        self.spent = 0.0

    def execute(self, req: bytes, locality: int = 0) -> bytes:
        t = time.perf_counter()
        try:
            return transact(self.addr, req)
        finally:
            self.spent += time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=5, help="joins and signs per TPM")
    args = ap.parse_args()
    pyxl_cmd = [os.environ.get("PYXL_BIN")] if os.environ.get("PYXL_BIN") else \
        [sys.executable, "-m", "pyxl"]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    issuer = D.Issuer()
    with tempfile.TemporaryDirectory(prefix="tpm-bench-") as tmp:
        sw = Swtpm(Path(tmp) / "swtpm").start()
        px = PyxlServe(pyxl_cmd, Path(tmp) / "pyxl").start()
        try:
            tpms = {"swtpm": owned_swtpm(lambda name: sw), "pyxl": Timed(px.addr, px.proc.pid)}
            tpms["pyxl"].ek_pub = H.read_pubek(tpms["pyxl"])
            H.take_ownership(tpms["pyxl"])
            timed = {"swtpm": Timed(sw.addr, sw.proc.pid), "pyxl": tpms["pyxl"]}
            timed["swtpm"].ek_pub = tpms["swtpm"].ek_pub
            times = {(k, m): {"join": [], "sign": []} for k in timed for m in ("wait", "cpu")}
            for _ in range(args.n):
                for k, t in timed.items():
                    t.spent, cpu = 0.0, cpu_seconds(t.pid)
                    cred = D.join(t, issuer, H.OWNER, t.ek_pub)
                    times[k, "wait"]["join"].append(t.spent)
                    times[k, "cpu"]["join"].append(cpu_seconds(t.pid) - cpu)
                    t.spent, cpu = 0.0, cpu_seconds(t.pid)
                    sig = D.sign(t, issuer, H.OWNER, cred, b"bench", b"n" * 20)
                    times[k, "wait"]["sign"].append(t.spent)
                    times[k, "cpu"]["sign"].append(cpu_seconds(t.pid) - cpu)
                    assert D.verify(issuer, sig, b"bench", b"n" * 20)
        finally:
            px.stop()
            sw.stop()
    print("%-10s %12s %12s %8s" % ("op", "pyxl ms", "swtpm ms", "ratio"))
    for m in ("wait", "cpu"):
        for op in ("join", "sign"):
            a = statistics.median(times["pyxl", m][op]) * 1000
            b = statistics.median(times["swtpm", m][op]) * 1000
            print("%-10s %12.1f %12.1f %7.2fx" % (op + " " + m, a, b, a / b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
