"""What several benches share: the scheduler's CPU accounting of a process
and the --cpu option that pins a whole run to one vCPU."""

from __future__ import annotations

import argparse
import os
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


def add_cpu_option(ap: argparse.ArgumentParser, what: str) -> None:
    ap.add_argument("--cpu", type=int, metavar="N", help="pin %s to vCPU N" % what)


def pin(cpu: int | None) -> None:
    """Pin this process to vCPU `cpu` (None: leave it free); every process
    it starts afterwards inherits the affinity."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
