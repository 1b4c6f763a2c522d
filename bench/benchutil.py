"""What several benches share: the scheduler's CPU accounting of a process,
the placement options (--cpu N, --split A,B) and a record of where the
client and the servers actually ran.

Why placement matters on the development VM: its idle vCPUs halt to the
host at once, so a server on another vCPU than its client pays a vCPU
wake-up and cold caches for every message, and a server on the client's
vCPU does not.  The scheduler keeps a task where it is, so which case an
unpinned run measures is decided once, early, and differs from run to run.
The benches therefore take a placement and print where the processes ran:

  (none)      the scheduler's choice; the figures say in how many of the
              sampled commands each server ran on its client's vCPU
  --cpu N     everything on vCPU N: each side's own work, no wake-ups
  --split A,B the client side on vCPU A, the servers on vCPU B: the
              cross-vCPU case, the same for both sides
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def cpu_ns(pid: int) -> int:
    """CPU time process pid's threads have used (ns), from the scheduler's
    own accounting (/proc/PID/task/*/schedstat).  Unlike wall time it
    hardly depends on how loaded the machine is."""
    total = 0
    for task in Path("/proc/%d/task" % pid).iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass                    # a thread that ended meanwhile
    return total


def _split(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("want two vCPU numbers, A,B: %r" % text) from None
    if a == b:
        raise argparse.ArgumentTypeError("A and B must differ (all on one vCPU: --cpu N)")
    return a, b


def add_cpu_option(ap: argparse.ArgumentParser, what: str,
                   client: str = "the bench (the client)",
                   servers: str = "the servers") -> None:
    """--cpu N (everything on one vCPU) and --split A,B (client side on A,
    servers on B); read them back with Placement.from_args."""
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--cpu", type=int, metavar="N", help="pin %s to vCPU N" % what)
    g.add_argument("--split", type=_split, metavar="A,B",
                   help="pin %s to vCPU A and %s to vCPU B (the cross-vCPU case, "
                   "alike for both sides)" % (client, servers))


def pin(cpu: int | None) -> None:
    """Pin this process to vCPU `cpu` (None: leave it free); every process
    it starts afterwards inherits the affinity."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def tids(pid: int) -> list[int]:
    """The threads (task ids) of process pid."""
    return [int(t) for t in os.listdir("/proc/%d/task" % pid)]


class Placement:
    """Where a bench puts its processes: `cpu` (all on one vCPU), `split`
    (client side on A, servers on B) or neither (the scheduler's choice)."""

    def __init__(self, cpu: int | None = None, split: tuple[int, int] | None = None):
        self.cpu, self.split = cpu, split
        have = os.sched_getaffinity(0)
        for n in ([cpu] if cpu is not None else []) + list(split or ()):
            if n not in have:
                raise SystemExit("vCPU %d is not one this process may use (%s)"
                                 % (n, ",".join(map(str, sorted(have)))))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Placement":
        return cls(args.cpu, args.split)

    @property
    def client_cpu(self) -> int | None:
        return self.cpu if self.split is None else self.split[0]

    @property
    def server_cpu(self) -> int | None:
        return self.cpu if self.split is None else self.split[1]

    def pin_client(self) -> None:
        """Pin this thread -- and so every thread and process it starts
        afterwards -- to the client's vCPU (with --cpu, the only one)."""
        pin(self.client_cpu)

    def server(self, name: str, pid: int) -> None:
        """With --split, move every thread of the started server process pid
        to vCPU B (threads it starts later inherit that); with --cpu it
        inherited vCPU N from this process already."""
        if self.split is None:
            return
        for tid in tids(pid):
            try:
                os.sched_setaffinity(tid, {self.split[1]})
            except ProcessLookupError:
                pass                            # a thread that ended meanwhile

    @contextlib.contextmanager
    def on_server_cpu(self) -> Iterator[None]:
        """Run the block in this thread on the servers' vCPU (with --split;
        otherwise where it is): for work that stands for the servers', such
        as the durable writes the chain bench measures as its floor -- the
        stub domains make theirs on vCPU B, and a write's completion
        interrupt reaches a task cheaper on the vCPU that takes the disk's
        interrupts than on the other."""
        if self.split is None:
            yield
            return
        os.sched_setaffinity(0, {self.split[1]})
        try:
            yield
        finally:
            os.sched_setaffinity(0, {self.split[0]})

    def describe(self, client: str, servers: str) -> str:
        """Which processes this placement puts where, for the output."""
        if self.cpu is not None:
            return "pinned: %s, %s all on vCPU %d" % (client, servers, self.cpu)
        if self.split is not None:
            return "split: %s on vCPU %d; %s on vCPU %d" % (client, self.split[0],
                                                          servers, self.split[1])
        return "not pinned: %s, %s free on vCPUs %s" % (
            client, servers, ",".join(map(str, sorted(os.sched_getaffinity(0)))))


def measure(fn: Callable[[], object], n: int) -> list[float]:
    """fn() n times, each timed: milliseconds."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def disk_irqs(path: str | Path) -> str:
    """Which vCPUs take the completion interrupts of the disk holding
    `path` (its device's MSI vectors, /proc/irq/N/effective_affinity_list),
    e.g. "virtio1-req.0 on vCPU 1": a durable write waited for on another
    vCPU costs a wake-up more."""
    st = os.stat(path)
    dev = Path(os.path.realpath("/sys/dev/block/%d:%d" % (os.major(st.st_dev),
                                                          os.minor(st.st_dev))))
    for d in (dev, *dev.parents):
        if (d / "msi_irqs").is_dir():
            out = []
            for irq in sorted(os.listdir(d / "msi_irqs"), key=int):
                base = Path("/proc/irq") / irq
                names = [n.name for n in base.iterdir() if n.is_dir()] if base.is_dir() else []
                if names and not any(n.endswith("config") for n in names):
                    cpus = (base / "effective_affinity_list").read_text().strip()
                    out.append("%s on vCPU %s" % ("/".join(names), cpus))
            return ", ".join(out) or "unknown"
    return "unknown"


class _Proc:
    """The vCPU a process last ran on: field 39 (processor) of the stat of
    its thread that ran most since the last look (for one thread, that
    thread's), read through kept file descriptors (a few us)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.fds: dict[int, tuple[int, int]] = {}           # tid -> (stat, schedstat)
        self.ran: dict[int, int] = {}                       # tid -> run ns at the last look
        self.looks = 0

    def _open(self) -> None:
        self.close()
        for tid in tids(self.pid):
            base = "/proc/%d/task/%d/" % (self.pid, tid)
            try:
                self.fds[tid] = (os.open(base + "stat", os.O_RDONLY),
                                 os.open(base + "schedstat", os.O_RDONLY))
            except FileNotFoundError:
                pass

    def close(self) -> None:
        for fds in self.fds.values():
            for fd in fds:
                os.close(fd)
        self.fds = {}

    def cpu(self) -> int:
        if self.looks % 32 == 0:                            # threads started since
            self._open()
        self.looks += 1
        try:
            if len(self.fds) == 1:
                (stat, _), = self.fds.values()
            else:
                best, stat = -1, -1
                for tid, (st, ss) in self.fds.items():
                    ran = int(os.pread(ss, 64, 0).split()[0])
                    if ran - self.ran.get(tid, 0) > best:
                        best, stat = ran - self.ran.get(tid, 0), st
                    self.ran[tid] = ran
            return int(os.pread(stat, 1024, 0).rsplit(b")", 1)[1].split()[36])
        except (OSError, ValueError, IndexError):           # a thread ended: look again
            self.looks = 0
            return -1


class WhereRan:
    """Sampled every `every`-th command: the vCPU this thread (the client)
    runs on and the one each named server process last ran on, i.e. where
    it served the command just answered.  Counts per server how often the
    two were the same vCPU -- what decides an unpinned figure on a VM whose
    idle vCPUs halt -- and, with a placement, shows whether it held.
    `spent_ns` is the CPU time the sampling itself took in this thread, for
    a bench to take off the client's CPU figure."""

    def __init__(self, servers: dict[str, int], every: int = 10):
        self.every = every
        self.me = os.open("/proc/thread-self/stat", os.O_RDONLY)   # bound to this thread
        self.procs = {name: _Proc(pid) for name, pid in servers.items()}
        self.n: dict[str, int] = {}
        self.spent_ns = 0
        self.reset()

    def reset(self) -> None:
        """Start counting afresh (e.g. for the next row of a table)."""
        self.same = {name: 0 for name in self.procs}
        self.total = {name: 0 for name in self.procs}
        self.client_cpus: set[int] = set()
        self.server_cpus: dict[str, set[int]] = {name: set() for name in self.procs}

    def after(self, *names: str) -> None:
        """Call after each command that `names` (default: all servers) served."""
        key = ",".join(names)
        self.n[key] = n = self.n.get(key, 0) + 1
        if n % self.every:
            return
        t0 = time.thread_time_ns()
        me = int(os.pread(self.me, 1024, 0).rsplit(b")", 1)[1].split()[36])
        self.client_cpus.add(me)
        for name in names or self.procs:
            cpu = self.procs[name].cpu()
            if cpu < 0:
                continue
            self.server_cpus[name].add(cpu)
            self.total[name] += 1
            self.same[name] += cpu == me
        self.spent_ns += time.thread_time_ns() - t0

    def fraction(self, name: str) -> float:
        """Share of the samples in which `name` ran on the client's vCPU."""
        return self.same[name] / self.total[name] if self.total[name] else float("nan")

    def counts(self) -> dict[str, list]:
        """The counts as plain data (for JSON): name -> [same, samples, its vCPUs]."""
        return {name: [self.same[name], self.total[name], sorted(self.server_cpus[name])]
                for name in self.procs} | {"client": [0, 0, sorted(self.client_cpus)]}

    def close(self) -> None:
        os.close(self.me)
        for p in self.procs.values():
            p.close()


def where_line(counts: dict[str, list], client: str, placement: Placement,
               client_side: tuple[str, ...] = ()) -> str:
    """One line from WhereRan.counts() (or several added up): for each
    sampled process, in how many samples it ran on the client's vCPU; with
    a placement, whether it held (the client and the processes named in
    `client_side` on the client's vCPU, every other one on the servers')."""
    parts = []
    bad = []
    ccpus = counts["client"][2]
    for name, (same, total, cpus) in counts.items():
        if name == "client":
            continue
        parts.append("%s %d/%d = %.0f%% (ran on %s)" % (
            name, same, total, 100 * same / total if total else float("nan"),
            ",".join(map(str, cpus)) or "-"))
        want = placement.client_cpu if name in client_side else placement.server_cpu
        if want is not None and set(cpus) - {want}:
            bad.append(name)
    if placement.client_cpu is not None and set(ccpus) - {placement.client_cpu}:
        bad.append(client)
    return "%s on vCPU %s; on its vCPU: %s%s" % (
        client, ",".join(map(str, ccpus)) or "-", ", ".join(parts),
        "; PLACEMENT NOT HELD for " + ", ".join(bad) if bad else "")


def add_counts(into: dict[str, list], more: dict[str, list]) -> None:
    """Add up WhereRan.counts() of several runs (JSON lists)."""
    for name, (same, total, cpus) in more.items():
        have = into.setdefault(name, [0, 0, []])
        have[0] += same
        have[1] += total
        have[2] = sorted(set(have[2]) | set(cpus))
