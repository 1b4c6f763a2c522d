#!/usr/bin/env python3
"""Guest-to-vTPM round trips through the stub-domain chain vs swtpm plus
the durable writes the chain must make.

pyxl: a guest domain process (Linux xen-tpmfront semantics) -> tpmif v2
shared page + event channel -> vtpm-stubdom process (TPM engine; every
successful command saves the state: the disk written and flushed, then
SaveHashKey to vtpmmgr-stubdom, which binds the new key and writes and
flushes its own disk before it answers) -- all on an in-process
Hypervisor with the TIS hardware-TPM model.  TPM 1.2 (PCRRead, Extend,
GetRandom) and TPM 2.0 (a `tpm2=1` vTPM: PCR_Read, PCR_Extend).

Peer, in the same run and the same temporary directory: swtpm, TPM 1.2
over a new TCP connection per command (as tcsd talks to it) and, printed
apart, over one kept connection (as the guest's tpmfront channel is),
TPM 2.0 over a kept connection (as tpm2-abrmd does), plus the floor of the two durable
writes every acknowledged command needs here (the vTPM's image, then the
manager's): a 4 KiB pwrite + fdatasync on a preallocated file in the same
directory, measured in this run.  The target is pyxl <= 2 x (swtpm + 2
writes).  Rounds alternate pyxl and peer; medians over all rounds.

Also printed: the CPU time each process used per command (the scheduler's
own accounting, /proc/PID/task/*/schedstat; medians over the rounds),
which hardly depends on how loaded the machine is: the guest, vtpm-stubdom,
vtpmmgr-stubdom and this process (the in-process hypervisor), against
swtpm and its client.

Where the processes run decides these figures on a VM whose idle vCPUs
halt (bench/benchutil.py).  With --cpu N the whole run (this process, the
domains, swtpm) is pinned to vCPU N: no process waits for another vCPU to
wake up, which on such a VM costs each hop more than the work.  With
--split A,B the client side -- the guest and this process (the in-process
hypervisor, and swtpm's client) -- is on vCPU A, and the servers --
vtpm-stubdom, vtpmmgr-stubdom (moved there as they start) and swtpm -- on
vCPU B: every hop of both sides crosses vCPUs, the same for both; the
floor's writes are made on vCPU B too, where the chain's saves are.
Without either, the scheduler decides.  In every case the bench prints,
per kind of command, in how many sampled commands (every 10th) each
server ran on its client's vCPU: the guest's for the chain, this
process's for swtpm; with a placement, that it held.

  PYTHONPATH=. python bench/stubdom_vtpm.py [-n 200] [-r 3] [--cpu N | --split A,B]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "stubdom"), str(ROOT / "tests"), str(ROOT)]

from bench_guest_domain import COMMANDS, COMMANDS2  # noqa: E402
from hv_harness import HERE, Host, spawn_kernel  # noqa: E402
from benchutil import Placement, WhereRan, add_counts, add_cpu_option  # noqa: E402
from benchutil import cpu_ns, disk_irqs, where_line  # noqa: E402

from pyxl.hypervisor import tis as T  # noqa: E402

TARGET = 2.0
WRITES = 2            # durable writes per acknowledged command: the vTPM's disk, the manager's
KEPT = "kept:"        # swtpm's TPM 1.2 figures over one kept connection


def start_chain(host: Host, tmp: Path, tpm2: bool, timeout: float = 120,
                prefix: Callable[[str], tuple[str, ...]] = lambda who: (),
                started: Callable[[str, int], object] = lambda who, pid: None
                ) -> tuple[subprocess.Popen, subprocess.Popen]:
    """The guide's chain on `host` up to the guest: the TIS hardware TPM,
    fresh images, vtpmmgr-stubdom (domain 1) and vtpm-stubdom (domain 2)
    each at its console line, and the guest's (domain 3) vTPM device.
    prefix(who): a command to run that domain's Python under; started(who,
    pid): called as each starts (a placement).  -> (manager, vtpm)."""
    host.tis = T.TisDevice(str(tmp / "hwtpm.state"))
    host.hv.iomem.add_device(T.TIS_BASE, T.TIS_LEN, host.tis)
    for name, mb in (("mgr.img", 16), ("vtpm.img", 8)):
        with open(tmp / name, "wb") as f:
            f.truncate(mb << 20)
    host.create(1, "vtpmmgr")
    host.hv.iomem.permit(1, 0xFED40, 5)
    mgr = spawn_kernel(host, 1, "vtpmmgr", "vtpmmgr-stubdom.gz", "",
                       {"hda": str(tmp / "mgr.img")}, prefix=prefix("manager"))
    started("manager", mgr.pid)
    host.wait_console(1, "Waiting for commands from vTPM's:", timeout)
    host.create(2, "vtpm")
    host.add_vtpm(2, 1, "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839")
    vtpm = spawn_kernel(host, 2, "vtpm", "vtpm-stubdom.gz", "tpm2=1" if tpm2 else "",
                        {"hda": str(tmp / "vtpm.img")}, prefix=prefix("vtpm"))
    started("vtpm", vtpm.pid)
    host.wait_console(2, "Waiting for frontend domain to connect..", timeout)
    host.create(3, "guest")
    host.add_vtpm(3, 2, "d6e0a5f4-3b2c-4d1e-8f90-123456789abc")
    return mgr, vtpm


def run_pyxl(tmp: Path, n: int, tpm2: bool, place: Placement) -> dict:
    host = Host(tmp)
    try:
        mgr, vtpm = start_chain(host, tmp, tpm2, started=place.server)   # --split: to vCPU B
        pids = "vtpm:%d,manager:%d,hypervisor:%d" % (vtpm.pid, mgr.pid, os.getpid())
        p = host.spawn(3, [str(HERE / "bench_guest_domain.py"), str(n)] + (["tpm2"] if tpm2 else []),
                       env={"BENCH_CPU_PIDS": pids})
        out, err = p.communicate(timeout=600)
        if p.returncode:
            raise SystemExit(err.decode())
        return json.loads(out)
    finally:
        host.close()


def timed(fn, n: int, where: WhereRan | None = None) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
        if where:
            where.after()
    return times


def run_swtpm(tmp: Path, n: int, tpm2: bool, place: Placement) -> dict:
    if tpm2:
        from tpm2.client import TPM2Client
        from tpm2.fixtures import Swtpm2
        sw = Swtpm2(tmp).start()
        c = TPM2Client(sw.addr, keep=True)
        send, commands = c.send, COMMANDS2
    else:
        from tpm.client import TPMClient
        from tpm.fixtures import Swtpm
        sw = Swtpm(tmp).start()
        c = TPMClient(sw.addr)
        send, commands = c.raw, COMMANDS
        kept = TPMClient(sw.addr, keep=True)
    try:
        assert sw.proc is not None
        place.server("swtpm", sw.proc.pid)          # --split: to vCPU B
        where = WhereRan({"swtpm": sw.proc.pid})
        out: dict = {"cpu": {}, "where": {}}
        for name, req in commands.items():
            send(req)                       # swtpm's first command also finishes its start-up
            where.reset()
            before = cpu_ns(sw.proc.pid), cpu_ns(os.getpid()), where.spent_ns
            out[name] = timed(lambda: send(req), n, where)
            out["cpu"][name] = {"swtpm": (cpu_ns(sw.proc.pid) - before[0]) / n / 1000,
                                "client": (cpu_ns(os.getpid()) - before[1]
                                           - (where.spent_ns - before[2])) / n / 1000}
            out["where"][name] = where.counts()
            if not tpm2:
                # TPM 1.2 over one kept connection too: tpmfront's channel is kept
                # (swtpm serves one connection at a time: closed before the next kind)
                kept.raw(req)
                where.reset()
                out[KEPT + name] = timed(lambda: kept.raw(req), n, where)
                out["where"][KEPT + name] = where.counts()
                kept.close()
        where.close()
        return out
    finally:
        sw.stop()


def durable_write(tmp: Path, n: int) -> list[float]:
    """A 4 KiB pwrite + fdatasync into a preallocated image: what each save
    of the chain costs on this disk (vtpmblk.c / vtpm_storage.c writes)."""
    path = tmp / "floor.img"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, bytes(1 << 20), 0)
        os.fsync(fd)
        block = os.urandom(4096)
        return timed(lambda: (os.pwrite(fd, block, 4096), os.fdatasync(fd)), n)
    finally:
        os.close(fd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200, help="commands of each kind per round")
    ap.add_argument("-r", type=int, default=3, help="rounds (default 3)")
    add_cpu_option(ap, "the whole run (bench, domains, swtpm)",
                   client="the guest and this process (hypervisor, swtpm's client)",
                   servers="vtpm-stubdom, vtpmmgr-stubdom and swtpm")
    args = ap.parse_args()
    if not shutil.which("swtpm"):
        raise SystemExit("swtpm is needed (the peer)")
    place = Placement.from_args(args)
    place.pin_client()                  # inherited by every process started here
    print(place.describe("the guest, this process (hypervisor, swtpm's client)",
                         "vtpm-stubdom, vtpmmgr-stubdom, swtpm"))
    print("the disk's interrupts: %s (a save waited for on another vCPU costs a wake-up more)"
          % disk_irqs(tempfile.gettempdir()))
    px: dict = {}
    sw: dict = {}
    cpu: dict = {}
    where: dict = {}
    floor: list[float] = []
    for r in range(args.r):
        for tpm2 in (False, True):
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d)
                os.mkdir(tmp / "p")
                os.mkdir(tmp / "s")
                for into, res in ((px, run_pyxl(tmp / "p", args.n, tpm2, place)),
                                  (sw, None)):
                    if res is None:
                        with place.on_server_cpu():     # the servers make the writes
                            floor += durable_write(tmp, args.n)
                        res = run_swtpm(tmp / "s", args.n, tpm2, place)
                    for name, per in res.pop("cpu").items():
                        for who, us in per.items():
                            cpu.setdefault(name, {}).setdefault(who, []).append(us)
                    for name, counts in res.pop("where").items():
                        add_counts(where.setdefault((into is px, name), {}), counts)
                    for name, t in res.items():
                        into.setdefault(name, []).extend(t)
    w = statistics.median(floor)
    print("durable write (4 KiB pwrite + fdatasync, same disk): %.3f ms; %d per command"
          % (w, WRITES))
    print("%-14s %8s %8s %9s %8s %7s  %s" % ("median ms", "swtpm", "+writes", "pyxl",
                                             "target", "ratio", "(pyxl / (swtpm + writes))"))
    for name in list(COMMANDS) + list(COMMANDS2):
        p, s = statistics.median(px[name]), statistics.median(sw[name])
        peer = s + WRITES * w
        print("%-14s %8.3f %8.3f %9.3f %8.3f %7.2f  %s" % (
            name, s, peer, p, TARGET * peer, p / peer,
            "met" if p <= TARGET * peer else "missed (< %.1fx)" % TARGET))
    print("TPM 1.2 against swtpm over one kept connection (tpmfront's channel is kept;"
          " the rows above open one per command, as tcsd does):")
    for name in COMMANDS:
        p, s = statistics.median(px[name]), statistics.median(sw[KEPT + name])
        peer = s + WRITES * w
        print("%-14s %8.3f %8.3f %9.3f %8.3f %7.2f  %s" % (
            name, s, peer, p, TARGET * peer, p / peer,
            "met" if p <= TARGET * peer else "missed (< %.1fx)" % TARGET))
    print("CPU us per command (schedstat, medians over rounds):")
    for name in list(COMMANDS) + list(COMMANDS2):
        c = {who: statistics.median(v) for who, v in cpu[name].items()}
        chain = ("guest", "vtpm", "manager", "hypervisor")
        print("%-14s %s = %.0f | swtpm %.0f + client %.0f = %.0f" % (
            name, " + ".join("%s %.0f" % (who, c[who]) for who in chain),
            sum(c[who] for who in chain), c["swtpm"], c["client"], c["swtpm"] + c["client"]))
    print("Where they ran, sampled every 10th command (server n/samples on the client's vCPU):")
    for name in list(COMMANDS) + list(COMMANDS2):
        print("%-14s chain: %s" % (name, where_line(where[True, name], "the guest", place,
                                                           ("hypervisor",))))
        for peer in [name] + ([KEPT + name] if name in COMMANDS else []):
            print("%-14s swtpm%s: %s" % ("", " kept" if peer != name else "",
                                         where_line(where[False, peer], "this process", place)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
