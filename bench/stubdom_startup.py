#!/usr/bin/env python3
"""Stub domains' own start-up: vtpmmgr-stubdom and vtpm-stubdom, from the
domain process's start to their console line, against the start of a bare
Python process that imports cryptography's AES (the least a Python stub
domain must load).

pyxl: the domains start as the toolstack starts them (pyxl.domain.process
with a spec, on an in-process Hypervisor with the TIS hardware-TPM model),
with the seed's `sleep(2)` set to 0 (PYXL_MINIOS_BOOT_DELAY), and are
timed to "INFO[VTPM]: Waiting for commands from vTPM's:" (manager) and
"Waiting for frontend domain to connect.." (vTPM).  Each round first boots
on blank images (first boot: the manager takes ownership of the hardware
TPM and makes its RSA-2048 bind key; the vTPM makes its EK), then boots
both again on the images that first boot left (the usual case).  The
peer: `python -c 'from cryptography...ciphers import Cipher, algorithms,
modes'`, start to exit, run between pyxl's boots.  Medians of the rounds.
Each figure also as CPU time (the domain process's when its line is seen,
from schedstat; the peer's from wait4), which the machine's load and where
the scheduler puts the processes change much less than the wall clock.
pyxl's modules are byte-compiled first, as an installed package's are (this
machine sets PYTHONDONTWRITEBYTECODE, which would otherwise make every
domain compile them from source).

  PYTHONPATH=. python bench/stubdom_startup.py [-n 5]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "stubdom"), str(ROOT / "tests"), str(ROOT)]

from hv_harness import HERE, Host, spawn_kernel  # noqa: E402

from pyxl.hypervisor import tis as T  # noqa: E402

MGR_READY = "Waiting for commands from vTPM's:"
VTPM_READY = "Waiting for frontend domain to connect.."
PEER = "from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes"
TARGET = 4.0


def wait_line(host: Host, domid: int, text: str, timeout: float = 120) -> float:
    """perf_counter() when `text` is first seen in the domain's console log
    (polled every millisecond: the bench's own resolution)."""
    path = host.log_path(domid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if text.encode() in path.read_bytes():
                return time.perf_counter()
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    raise SystemExit("%r never appeared on console %d:\n%s" % (text, domid, host.console(domid)))


def cpu_s(pid: int) -> float:
    """CPU time a process has run so far (every thread's, from
    /proc/PID/task/*/schedstat: nanoseconds, not clock ticks)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def boot_pair(tmp: Path, host_dir: Path) -> tuple[float, float, float, float]:
    """Boot the manager and then the vTPM on tmp's images: (mgr s, vtpm s,
    mgr CPU s, vtpm CPU s), CPU time being the domain process's when its
    line is seen.  A guest then sends the vTPM one round of commands, so
    the vTPM saves its state and the next boot finds an existing vTPM."""
    host = Host(host_dir)
    try:
        host.tis = T.TisDevice(str(tmp / "hwtpm.state"))
        host.hv.iomem.add_device(T.TIS_BASE, T.TIS_LEN, host.tis)
        host.create(1, "vtpmmgr")
        host.hv.iomem.permit(1, 0xFED40, 5)
        t0 = time.perf_counter()
        p = spawn_kernel(host, 1, "vtpmmgr", "vtpmmgr-stubdom.gz", "", {"hda": str(tmp / "mgr.img")})
        mgr = wait_line(host, 1, MGR_READY) - t0
        mgr_cpu = cpu_s(p.pid)
        host.create(2, "vtpm")
        host.add_vtpm(2, 1, "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839")
        t0 = time.perf_counter()
        p = spawn_kernel(host, 2, "vtpm", "vtpm-stubdom.gz", "", {"hda": str(tmp / "vtpm.img")})
        vtpm = wait_line(host, 2, VTPM_READY) - t0
        vtpm_cpu = cpu_s(p.pid)
        host.create(3, "guest")
        host.add_vtpm(3, 2, "d6e0a5f4-3b2c-4d1e-8f90-123456789abc")
        guest = host.spawn(3, [str(HERE / "bench_guest_domain.py"), "1"])
        _out, err = guest.communicate(timeout=120)
        if guest.returncode:
            raise SystemExit(err.decode())
        return mgr, vtpm, mgr_cpu, vtpm_cpu
    finally:
        host.close()


def peer() -> tuple[float, float]:
    """(wall s, CPU s) of one peer process, start to exit."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", PEER])
    _pid, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit("the peer failed")
    return wall, ru.ru_utime + ru.ru_stime


def rsa_keygen_ms() -> float:
    """One RSA-2048 key generation, as the TPM engines make them (the
    manager's first boot makes the SRK and its bind key, a new vTPM its EK)."""
    from pyxl.tpm.crypto import generate_rsa
    t0 = time.perf_counter()
    generate_rsa(2048)
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=5, help="rounds (default 5)")
    args = ap.parse_args()
    compileall.compile_dir(str(ROOT / "pyxl"), quiet=1)
    first: list[tuple[float, float, float, float]] = []
    again: list[tuple[float, float, float, float]] = []
    peers: list[tuple[float, float]] = []
    keygen: list[float] = []
    for i in range(args.n):
        keygen.append(rsa_keygen_ms())
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            for name, mb in (("mgr.img", 16), ("vtpm.img", 8)):
                with open(tmp / name, "wb") as f:
                    f.truncate(mb << 20)
            peers.append(peer())
            os.mkdir(tmp / "h1")
            first.append(boot_pair(tmp, tmp / "h1"))
            peers.append(peer())
            os.mkdir(tmp / "h2")
            again.append(boot_pair(tmp, tmp / "h2"))
    p = statistics.median(w for w, _c in peers) * 1000
    pc = statistics.median(c for _w, c in peers) * 1000
    ms = lambda rows, k: statistics.median(r[k] for r in rows) * 1000   # noqa: E731
    print("python + cryptography AES import (peer): %.1f ms; target %.0fx = %.0f ms"
          % (p, TARGET, TARGET * p))
    print("%-34s %9s %9s %7s %12s %12s %9s" % ("median of %d, boot delay 0" % args.n, "pyxl ms",
                                             "peer ms", "ratio", "pyxl CPU ms", "peer CPU ms",
                                             "CPU ratio"))
    for label, k in (("vtpmmgr-stubdom, existing image", 0), ("vtpm-stubdom, existing image", 1)):
        print("%-34s %9.1f %9.1f %7.2f %12.1f %12.1f %9.2f"
              % (label, ms(again, k), p, ms(again, k) / p, ms(again, k + 2), pc,
                 ms(again, k + 2) / pc))
    for label, k in (("vtpmmgr-stubdom, first boot", 0), ("vtpm-stubdom, first boot", 1)):
        print("%-34s %9.1f %9.1f %7.2f  (%+.0f ms against an existing image)"
              % (label, ms(first, k), p, ms(first, k) / p, ms(first, k) - ms(again, k)))
    print("one RSA-2048 key generation: %.1f ms (first boot: the manager's hardware TPM "
          "makes two, a new vTPM one)" % statistics.median(keygen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
