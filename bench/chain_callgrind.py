#!/usr/bin/env python3
"""User-space instructions per guest TPM command through the guide's chain,
per process: the guest (xen-tpmfront), vtpm-stubdom and vtpmmgr-stubdom,
each run under valgrind's callgrind -- counts the machine's load does not
change, unlike bench/stubdom_vtpm.py's times.

The chain is bench/stubdom_vtpm.py's (an in-process Hypervisor with the
TIS hardware TPM, which is this process and not counted); the domains'
processes start under callgrind with instrumentation off.  The commands
are tests/stubdom/bench_guest_domain.py's COMMANDS (COMMANDS2 with
--tpm2), those the chain answers without a save (the new vTPM's first
save is made by the first warm-up command); stubdom_vtpm.py's rows that
save are not counted.  For each kind of command the guest sends a few
first (warm-up), then every process is counted (callgrind_control -z, -i
on ... -i off, -d) over N commands of that kind.  Kernel time (system
calls, task switches) is not in these counts.  With --top,
callgrind_annotate's functions with the most instructions (inclusive) in
each process, for the first kind.

  PYTHONPATH=. python bench/chain_callgrind.py [-n 100] [--tpm2] [--top 25]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "stubdom"), str(ROOT / "tests"), str(ROOT)]

from bench_guest_domain import COMMANDS, COMMANDS2  # noqa: E402
from hv_harness import Host  # noqa: E402
from stubdom_vtpm import start_chain  # noqa: E402


WARM = 20
PROCS = ("guest", "vtpm", "manager")

# The guest: for each kind, WARM commands, then "ready"; N commands on "go";
# then "done".  Each line of stdin answers one of its lines.
GUEST = r"""
import sys
from pyxl.domain.drivers.xen_tpmfront import XenTpmFront
from pyxl.domain.xen import XenInterface
n, warm, reqs = int(sys.argv[1]), int(sys.argv[2]), [bytes.fromhex(h) for h in sys.argv[3:]]
xen = XenInterface.from_env()
front = XenTpmFront(xen)
front.wait_connected(300)
for req in reqs:
    for _ in range(warm):
        front.transmit(req)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(n):
        if front.transmit(req)[6:10] != bytes(4):
            raise SystemExit("failed: " + req.hex())
    print("done", flush=True)
    sys.stdin.readline()
front.close()
xen.close()
"""


def _grind(out: str) -> tuple[str, ...]:
    return ("valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=" + out)


def _control(pids: dict[str, int], *args: str) -> None:
    for pid in pids.values():
        subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=True)


def _annotate(path: str) -> list[str]:
    """callgrind_annotate's rows, inclusive: the total first."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if re.match(r"\s*[\d,]+ \(", ln)]


def _count(row: str) -> int:
    return int(row.split(None, 1)[0].replace(",", ""))


def run(tmp: Path, n: int, tpm2: bool, top: int, keep: str | None) -> None:
    commands = COMMANDS2 if tpm2 else COMMANDS
    host = Host(tmp)
    closed = False
    outs = {who: str(tmp / ("%s.cg" % who)) for who in PROCS}
    try:
        mgr, vtpm = start_chain(host, tmp, tpm2, timeout=600,
                                prefix=lambda who: _grind(outs[who]))
        guest = host.spawn(3, ["-c", GUEST, str(n), str(WARM)]
                           + [r.hex() for r in commands.values()],
                           stdin=subprocess.PIPE, prefix=_grind(outs["guest"]))
        assert guest.stdin is not None and guest.stdout is not None
        pids = {"guest": guest.pid, "vtpm": vtpm.pid, "manager": mgr.pid}
        for i, name in enumerate(commands):
            if guest.stdout.readline().strip() != b"ready":
                raise SystemExit(guest.stderr.read().decode() if guest.stderr else "guest failed")
            _control(pids, "-z")
            _control(pids, "-i", "on")
            guest.stdin.write(b"go\n")
            guest.stdin.flush()
            if guest.stdout.readline().strip() != b"done":
                raise SystemExit("guest failed")
            _control(pids, "-i", "off")
            _control(pids, "-d")
            guest.stdin.write(b"next\n")
            guest.stdin.flush()
        guest.wait(600)
        host.close()                    # the stub domains end, their files complete
        closed = True
        print("%-14s %s %10s" % ("instructions", " ".join("%10s" % w for w in PROCS), "chain"))
        for i, name in enumerate(commands):
            per = {who: _count(_annotate("%s.%d" % (outs[who], i + 1))[0]) / n for who in PROCS}
            print("%-14s %s %10.0f" % (name, " ".join("%10.0f" % per[w] for w in PROCS),
                                       sum(per.values())), flush=True)
        if keep:
            for f in tmp.glob("*.cg.*"):
                shutil.copy(f, keep)
        if top:
            for who in PROCS:
                print("== %s, %s: top %d functions, inclusive, per command" % (
                    who, next(iter(commands)), top))
                for row in _annotate(outs[who] + ".1")[:top]:
                    print("%10.0f %s" % (_count(row) / n, row.split(None, 1)[1][:150]))
    finally:
        if not closed:
            host.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100, help="commands of each kind counted")
    ap.add_argument("--tpm2", action="store_true", help="a tpm2=1 vTPM and TPM 2.0 commands")
    ap.add_argument("--top", type=int, default=0, help="functions to list per process")
    ap.add_argument("--keep", metavar="DIR", help="copy callgrind's files there (for callgrind_annotate)")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed")
    with tempfile.TemporaryDirectory() as d:
        run(Path(d), args.n, args.tpm2, args.top, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
