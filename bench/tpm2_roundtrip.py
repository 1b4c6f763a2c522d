#!/usr/bin/env python3
"""Round-trip latency of TPM 2.0 commands: `pyxl tpm-serve --tpm2` vs
`swtpm socket --tpm2`.

Both run the same libtpms; what is measured is what pyxl adds around it (the
Python server loop, ctypes, the state write when NV changed).  Both TPMs are
started fresh in this run and driven by the same raw client over one kept TCP
connection each.  Iterations alternate between the two TPMs so drift hits
both alike.  Prints the median per operation, the ratio pyxl/swtpm and the
target (< 1.5x), and the server CPU time per command.

Where the processes run decides these figures on a VM whose idle vCPUs halt
(bench/benchutil.py): --cpu N puts the bench and both servers on vCPU N,
--split A,B the bench on A and both servers on B; without either each row
says in how many of the sampled commands (every 10th) each server ran on
the bench's vCPU, and with either, that the placement held.

  python bench/tpm2_roundtrip.py [-n 300] [--primary-n 20] [--cpu N | --split A,B]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from tpm.fixtures import PyxlServe  # noqa: E402
from tpm2 import client as T  # noqa: E402
from tpm2.client import TPM2Client  # noqa: E402
from tpm2.fixtures import Swtpm2  # noqa: E402
from benchutil import Placement, WhereRan, add_counts, add_cpu_option  # noqa: E402
from benchutil import cpu_ns, measure, where_line  # noqa: E402

TARGET = 1.5


def operations(c: TPM2Client):
    digest = os.urandom(32)
    primary = T.handle_of(c.ok(T.create_primary()))
    sealed = T.handle_of(c.ok(T.load_created(primary, c.ok(T.create_sealed(primary,
                                                                           b"bench secret")))))

    def create_primary():
        c.ok(T.flush(T.handle_of(c.ok(T.create_primary()))))

    return [("PCR_Read", lambda: c.ok(T.pcr_read("sha256", [10])), False),
            ("PCR_Extend", lambda: c.ok(T.pcr_extend(10, "sha256", digest)), False),
            ("GetRandom(32)", lambda: c.ok(T.get_random(32)), False),
            ("Unseal", lambda: c.ok(T.unseal(sealed)), False),
            ("CreatePrimary(ECC)+Flush", create_primary, True)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=300, help="iterations of the fast commands")
    ap.add_argument("--primary-n", type=int, default=30, help="iterations of CreatePrimary")
    add_cpu_option(ap, "the bench and both servers (all on one: the servers' own work, "
                   "without the cost of waking an idle vCPU)", servers="both servers")
    args = ap.parse_args()
    place = Placement.from_args(args)
    place.pin_client()                  # with --cpu N the servers started below inherit it
    pyxl_cmd = [os.environ.get("PYXL_BIN")] if os.environ.get("PYXL_BIN") else \
        [sys.executable, "-m", "pyxl"]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory(prefix="tpm2-bench-") as tmp:
        sw = Swtpm2(Path(tmp) / "swtpm").start()
        px = PyxlServe(pyxl_cmd, Path(tmp) / "pyxl", "--tpm2").start()
        clients = {"swtpm": TPM2Client(sw.addr), "pyxl": TPM2Client(px.addr)}
        pids = {"swtpm": sw.proc.pid, "pyxl": px.proc.pid}
        try:
            for k, pid in pids.items():
                place.server(k, pid)                # --split: to vCPU B
            where = WhereRan(pids)
            run_counts: dict = {}
            ops = {k: operations(c) for k, c in clients.items()}
            print("%-26s %10s %10s %7s %7s   %s" % ("median ms", "swtpm", "pyxl", "ratio",
                                                  "target", "server CPU us/op: swtpm, pyxl | "
                                                  "on bench's vCPU: swtpm, pyxl"))
            worst = []
            for i, (name, _, slow) in enumerate(ops["swtpm"]):
                n = args.primary_n if slow else args.n
                for k in ops:                          # warm-up
                    measure(ops[k][i][1], 10)
                times = {"swtpm": [], "pyxl": []}
                cpu0 = {k: cpu_ns(p) for k, p in pids.items()}
                where.reset()
                for j in range(n):                   # alternate the two, and who goes first
                    for k in (("swtpm", "pyxl") if j % 2 else ("pyxl", "swtpm")):
                        times[k] += measure(ops[k][i][1], 1)
                        where.after(k)
                cpu = {k: (cpu_ns(p) - cpu0[k]) / n / 1000 for k, p in pids.items()}
                ms = {k: statistics.median(v) for k, v in times.items()}
                ratio = ms["pyxl"] / ms["swtpm"]
                worst.append(ratio / TARGET)
                add_counts(run_counts, where.counts())
                print("%-26s %10.3f %10.3f %6.2fx %5.1fx %-4s %9.1f %9.1f | %4.0f%% %4.0f%%"
                      % (name, ms["swtpm"], ms["pyxl"], ratio, TARGET,
                         "ok" if ratio <= TARGET else "SLOW", cpu["swtpm"], cpu["pyxl"],
                         100 * where.fraction("swtpm"), 100 * where.fraction("pyxl")))
            print("(n=%d, %d for CreatePrimary; one kept TCP connection per TPM; %s)"
                  % (args.n, args.primary_n, place.describe("the bench", "swtpm and pyxl")))
            print("where they ran, sampled every %dth command: %s"
                  % (where.every, where_line(run_counts, "the bench", place)))
            return 0 if max(worst) <= 1.0 else 1
        finally:
            for c in clients.values():
                c.close()
            px.stop()
            sw.stop()


if __name__ == "__main__":
    sys.exit(main())
