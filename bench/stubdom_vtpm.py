#!/usr/bin/env python3
"""Guest-to-vTPM round trips through the stub-domain chain vs swtpm plus
the durable writes the chain's design needs for each kind of command.

pyxl: a guest domain process (Linux xen-tpmfront semantics) -> tpmif v2
shared page + event channel -> vtpm-stubdom process (TPM engine) -- and,
for a command that changed what the vTPM stores, its save: the vTPM's disk
written and flushed, then SaveHashKey to vtpmmgr-stubdom, which binds the
new key and writes and flushes its own disk before it answers -- all on an
in-process Hypervisor with the TIS hardware-TPM model.  A command that
leaves the stored state as the last save left it is answered with no save
(pyxl-vtpm(7), "What happens to a vTPM's state").

The rows (tests/stubdom/bench_guest_domain.py's KINDS and KINDS2), each
with the durable writes the design needs per call ("writes": 2 per save,
the vTPM's slot and the manager's record):
  PCRRead, GetRandom(32), Extend (TPM 1.2), PCR_Read, PCR_Extend (TPM 2.0,
      a `tpm2=1` vTPM): nothing stored changes, no save: 0 writes.
  SaveState+PCRRead (TPM 1.2): TPM_SaveState, then PCRRead, timed as one
      pair; each changes the stored state (SaveState stores the volatile
      state, the next command of another ordinal deletes it; the simplest
      repeatable change that needs no owner and no authorization): 2 saves,
      4 writes per pair.
  NV_Write (TPM 2.0): TPM2_NV_Write of a new 8-byte counter value each call
      to an NV index defined once, untimed, under the owner hierarchy and
      written with the (empty) owner password: 1 save, 2 writes.
Each vTPM is new; its first command (a save, whatever it is) is sent
before the rows, untimed.

The bench checks, in the same run, that the chain made exactly the saves
each row claims: between kinds the guest waits for the bench, which counts
the save lines the stub domains printed on their consoles (the vTPM's
"Sending encryption key to backend", the manager's "Saved hash and key for
vtpm"), and it stops (SystemExit) if a row's counts are not its saves per
call times the calls.

Peer, in the same run: swtpm, TPM 1.2 over a new TCP connection per
command (as tcsd talks to it) and, printed apart, over one kept connection
(as the guest's tpmfront channel is), TPM 2.0 over a kept connection (as
tpm2-abrmd does), the same frames.  swtpm makes no durable write of its own
for any row (strace: for TPM2_NV_Write and TPM_SaveState it writes a temp
file and renames it over its state file, for the PCRRead after SaveState it
unlinks the saved state: no fsync or fdatasync); on this ext4 disk such a
replace-by-rename still costs it about 0.1 ms, in neither a TPM's work nor
a durable write, so its state directory is on tmpfs (/dev/shm, removed
afterwards), which changes nothing for the rows where it writes no file.
Its floor: swtpm's round trip + the row's writes, each a 4 KiB pwrite +
fdatasync on a preallocated file on the chain's disk (the temporary
directory), measured in this run.  The target is pyxl <= 2 x floor.
Rounds alternate pyxl and peer; medians over all rounds.

Also printed: the CPU time each process used per call (the scheduler's
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
per kind of command, in how many sampled calls (every 10th) each server
ran on its client's vCPU: the guest's for the chain, this process's for
swtpm; with a placement, that it held.

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

from bench_guest_domain import KINDS, KINDS2, Kind  # noqa: E402
from hv_harness import HERE, Host, spawn_kernel  # noqa: E402
from benchutil import Placement, WhereRan, add_counts, add_cpu_option  # noqa: E402
from benchutil import cpu_ns, disk_irqs, where_line  # noqa: E402

from pyxl.hypervisor import tis as T  # noqa: E402

TARGET = 2.0
WRITES_PER_SAVE = 2   # durable writes per save: the vTPM's slot, the manager's record
KEPT = "kept:"        # swtpm's TPM 1.2 figures over one kept connection
TMPFS = "/dev/shm"    # swtpm's state directory: its file writes are not durable anyway
# What each stub domain prints once per save (pyxl/domain/vtpm/vtpm_cmd.py
# SENDING_KEY, pyxl/domain/vtpmmgr/storage.py save_hashkey): domid, line
SAVE_LINES = {"vtpm": (2, "Sending encryption key to backend"),
              "manager": (1, "Saved hash and key for vtpm")}
QUIET = 0.1           # s a console stays unchanged before its save lines are counted


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


def saves_printed(host: Host, at_least: dict[str, int] | None = None,
                  timeout: float = 30) -> dict[str, int]:
    """How many saves each stub domain has printed on its console, counted
    once its console has not changed for QUIET seconds -- a stub domain
    writes the lines of a run of commands after the run's last answer
    (pyxl/domain/minios.py) -- and, given at_least, once it shows that many
    (or `timeout` has passed)."""
    deadline = time.monotonic() + timeout
    last: tuple[int, ...] = ()
    since = time.monotonic()
    while True:
        logs = {who: host.console(domid) for who, (domid, _) in SAVE_LINES.items()}
        now = time.monotonic()
        sizes = tuple(map(len, logs.values()))
        if sizes != last:
            last, since = sizes, now
        counts = {who: logs[who].count(line) for who, (_, line) in SAVE_LINES.items()}
        if now > deadline or (now - since >= QUIET and all(
                counts[who] >= (at_least or {}).get(who, 0) for who in counts)):
            return counts
        time.sleep(0.01)


def run_pyxl(tmp: Path, n: int, tpm2: bool, place: Placement) -> dict:
    """The guest's calls through the chain, kind by kind: {name: [ms]}, and
    under "cpu", "where" and "saves" each kind's CPU per call, placement
    samples and the saves counted on the consoles (checked against the
    kind's claim)."""
    host = Host(tmp)
    try:
        mgr, vtpm = start_chain(host, tmp, tpm2, started=place.server)   # --split: to vCPU B
        pids = "vtpm:%d,manager:%d,hypervisor:%d" % (vtpm.pid, mgr.pid, os.getpid())
        p = host.spawn(3, [str(HERE / "bench_guest_domain.py"), str(n), "step"]
                       + (["tpm2"] if tpm2 else []),
                       env={"BENCH_CPU_PIDS": pids}, stdin=subprocess.PIPE)
        assert p.stdin is not None and p.stdout is not None and p.stderr is not None

        def guest_says() -> dict:
            line = p.stdout.readline()
            if not line:
                p.wait(30)
                raise SystemExit("the bench guest failed: " + p.stderr.read().decode())
            return json.loads(line)

        def go_on() -> None:
            p.stdin.write(b"go\n")
            p.stdin.flush()

        out: dict = {"cpu": {}, "where": {}, "saves": {}}
        for name, kind in (KINDS2 if tpm2 else KINDS).items():
            assert guest_says() == {"ready": name}
            before = saves_printed(host)
            go_on()
            res = guest_says()
            claimed = kind.saves * n
            after = saves_printed(host, {who: c + claimed for who, c in before.items()})
            saves = {who: after[who] - before[who] for who in after}
            if any(c != claimed for c in saves.values()):
                raise SystemExit("%s: the row claims %d saves in %d calls (%d per call); the "
                                 "consoles show %s" % (name, claimed, n, kind.saves, ", ".join(
                                     "%s %d" % it for it in saves.items())))
            out[name] = res["times"]
            out["cpu"][name] = res["cpu"]
            out["where"][name] = res["where"]
            out["saves"][name] = saves
            go_on()
        p.stdin.close()
        if p.wait(60):
            raise SystemExit("the bench guest failed: " + p.stderr.read().decode())
        return out
    finally:
        host.close()


def timed(fn: Callable[[int], object], n: int, where: WhereRan | None = None) -> list[float]:
    """fn(1) .. fn(n), each timed (ms)."""
    times = []
    for i in range(1, n + 1):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
        if where:
            where.after()
    return times


def run_swtpm(n: int, tpm2: bool, place: Placement) -> dict:
    """The same calls to swtpm, its state directory on tmpfs: {name: [ms]}
    (TPM 1.2 also KEPT + name), "cpu" and "where" as run_pyxl's."""
    with tempfile.TemporaryDirectory(dir=TMPFS) as d:
        if tpm2:
            from tpm2.client import TPM2Client
            from tpm2.fixtures import Swtpm2
            sw = Swtpm2(Path(d)).start()
            c = TPM2Client(sw.addr, keep=True)
            send, kinds = c.send, KINDS2
        else:
            from tpm.client import TPMClient
            from tpm.fixtures import Swtpm
            sw = Swtpm(Path(d)).start()
            c = TPMClient(sw.addr)
            send, kinds = c.raw, KINDS
            kept = TPMClient(sw.addr, keep=True)
        try:
            assert sw.proc is not None
            place.server("swtpm", sw.proc.pid)          # --split: to vCPU B
            where = WhereRan({"swtpm": sw.proc.pid})
            out: dict = {"cpu": {}, "where": {}}
            for name, kind in kinds.items():
                kind.setup(send)
                kind.call(send, 0)      # swtpm's first command also finishes its start-up
                where.reset()
                before = cpu_ns(sw.proc.pid), cpu_ns(os.getpid()), where.spent_ns
                out[name] = timed(lambda i: kind.call(send, i), n, where)
                out["cpu"][name] = {"swtpm": (cpu_ns(sw.proc.pid) - before[0]) / n / 1000,
                                    "client": (cpu_ns(os.getpid()) - before[1]
                                               - (where.spent_ns - before[2])) / n / 1000}
                out["where"][name] = where.counts()
                if not tpm2:
                    # TPM 1.2 over one kept connection too: tpmfront's channel is kept
                    # (swtpm serves one connection at a time: closed before the next kind)
                    kind.call(kept.raw, 0)
                    where.reset()
                    out[KEPT + name] = timed(lambda i: kind.call(kept.raw, i), n, where)
                    out["where"][KEPT + name] = where.counts()
                    kept.close()
            where.close()
            return out
        finally:
            sw.stop()


def durable_write(tmp: Path, n: int) -> list[float]:
    """A 4 KiB pwrite + fdatasync into a preallocated image: what each of a
    save's two writes costs on this disk (vtpmblk.c / vtpm_storage.c writes)."""
    path = tmp / "floor.img"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, bytes(1 << 20), 0)
        os.fsync(fd)
        block = os.urandom(4096)
        return timed(lambda i: (os.pwrite(fd, block, 4096), os.fdatasync(fd)), n)
    finally:
        os.close(fd)


def table(rows: list[tuple[str, Kind, str]], px: dict, sw: dict, w: float) -> None:
    """One line per (name, kind, swtpm's key): the row's writes, swtpm, the
    floor (swtpm + writes x w), pyxl, the target (TARGET x floor), the ratio."""
    print("%-18s %6s %8s %8s %8s %8s %7s  %s" % (
        "median ms", "writes", "swtpm", "floor", "pyxl", "target", "ratio",
        "(pyxl / floor; floor = swtpm + writes x durable write)"))
    for name, kind, peer in rows:
        writes = WRITES_PER_SAVE * kind.saves
        p, s = statistics.median(px[name]), statistics.median(sw[peer])
        floor = s + writes * w
        print("%-18s %6d %8.3f %8.3f %8.3f %8.3f %7.2f  %s" % (
            name, writes, s, floor, p, TARGET * floor, p / floor,
            "met" if p <= TARGET * floor else "missed (< %.1fx)" % TARGET))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200, help="calls of each kind per round")
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
    saves: dict = {}
    floor: list[float] = []
    for _ in range(args.r):
        for tpm2 in (False, True):
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d)
                os.mkdir(tmp / "p")
                chain_res = run_pyxl(tmp / "p", args.n, tpm2, place)
                with place.on_server_cpu():     # the servers make the writes
                    floor += durable_write(tmp, args.n)
                swtpm_res = run_swtpm(args.n, tpm2, place)
            for name, per in chain_res.pop("saves").items():
                for who, c in per.items():
                    saves.setdefault(name, {}).setdefault(who, 0)
                    saves[name][who] += c
            for is_pyxl, into, res in ((True, px, chain_res), (False, sw, swtpm_res)):
                for name, per in res.pop("cpu").items():
                    for who, us in per.items():
                        cpu.setdefault(name, {}).setdefault(who, []).append(us)
                for name, counts in res.pop("where").items():
                    add_counts(where.setdefault((is_pyxl, name), {}), counts)
                for name, t in res.items():
                    into.setdefault(name, []).extend(t)
    kinds = {**KINDS, **KINDS2}
    w = statistics.median(floor)
    print("durable write (4 KiB pwrite + fdatasync, same disk as the chain's images): %.3f ms; "
          "%d per save" % (w, WRITES_PER_SAVE))
    print("swtpm's state on tmpfs (it makes no durable write of its own)")
    table([(name, kind, name) for name, kind in kinds.items()], px, sw, w)
    print("TPM 1.2 against swtpm over one kept connection (tpmfront's channel is kept;"
          " the rows above open one per command, as tcsd does):")
    table([(name, kind, KEPT + name) for name, kind in KINDS.items()], px, sw, w)
    print("Saves the chain made per call (save lines on the consoles: the vTPM's "
          "\"%s\", the manager's \"%s\"; checked against each row):"
          % (SAVE_LINES["vtpm"][1], SAVE_LINES["manager"][1]))
    calls = args.n * args.r
    for name, kind in kinds.items():
        print("%-18s vtpm %d, manager %d in %d calls: %g per call, as claimed" % (
            name, saves[name]["vtpm"], saves[name]["manager"], calls, kind.saves))
    print("CPU us per call (schedstat, medians over rounds):")
    for name in kinds:
        c = {who: statistics.median(v) for who, v in cpu[name].items()}
        chain = ("guest", "vtpm", "manager", "hypervisor")
        print("%-18s %s = %.0f | swtpm %.0f + client %.0f = %.0f" % (
            name, " + ".join("%s %.0f" % (who, c[who]) for who in chain),
            sum(c[who] for who in chain), c["swtpm"], c["client"], c["swtpm"] + c["client"]))
    print("Where they ran, sampled every 10th call (server n/samples on the client's vCPU):")
    for name in kinds:
        print("%-18s chain: %s" % (name, where_line(where[True, name], "the guest", place,
                                                           ("hypervisor",))))
        for key in [name] + ([KEPT + name] if name in KINDS else []):
            print("%-18s swtpm%s: %s" % ("", " kept" if key != name else "",
                                         where_line(where[False, key], "this process", place)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
