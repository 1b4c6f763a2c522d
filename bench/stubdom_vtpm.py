#!/usr/bin/env python3
"""Guest-to-vTPM round trips through the stub-domain chain vs swtpm.

pyxl: a guest domain process (Linux xen-tpmfront semantics) -> tpmif v2
shared page + event channel -> vtpm-stubdom process (TPM engine; a command
that changes persistent state also writes the disk and sends SaveHashKey to
vtpmmgr-stubdom, which binds it through the TIS hardware-TPM model) -- all on
an in-process Hypervisor.  swtpm: the same commands over its TCP socket (a
new connection per command, as tcsd does), state in a directory.  Prints
median ms per command and the ratio pyxl/swtpm.

  PYTHONPATH=. python bench/stubdom_vtpm.py [-n 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "stubdom"), str(ROOT / "tests"), str(ROOT)]

from bench_guest_domain import COMMANDS  # noqa: E402
from hv_harness import HERE, Host, spawn_kernel  # noqa: E402

from pyxl.hypervisor import tis as T  # noqa: E402


def run_pyxl(tmp: Path, n: int) -> dict:
    host = Host(tmp)
    try:
        host.tis = T.TisDevice(str(tmp / "hwtpm.state"))
        host.hv.iomem.add_device(T.TIS_BASE, T.TIS_LEN, host.tis)
        for name, mb in (("mgr.img", 16), ("vtpm.img", 8)):
            with open(tmp / name, "wb") as f:
                f.truncate(mb << 20)
        host.create(1, "vtpmmgr")
        host.hv.iomem.permit(1, 0xFED40, 5)
        spawn_kernel(host, 1, "vtpmmgr", "vtpmmgr-stubdom.gz", "", {"hda": str(tmp / "mgr.img")})
        host.wait_console(1, "Waiting for commands from vTPM's:", 120)
        host.create(2, "vtpm")
        host.add_vtpm(2, 1, "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839")
        spawn_kernel(host, 2, "vtpm", "vtpm-stubdom.gz", "", {"hda": str(tmp / "vtpm.img")})
        host.wait_console(2, "Waiting for frontend domain to connect..", 120)
        host.create(3, "guest")
        host.add_vtpm(3, 2, "d6e0a5f4-3b2c-4d1e-8f90-123456789abc")
        p = host.spawn(3, [str(HERE / "bench_guest_domain.py"), str(n)])
        out, err = p.communicate(timeout=600)
        if p.returncode:
            raise SystemExit(err.decode())
        return json.loads(out)
    finally:
        host.close()


def run_swtpm(tmp: Path, n: int) -> dict | None:
    if not shutil.which("swtpm"):
        return None
    from tpm.client import TPMClient
    from tpm.fixtures import Swtpm
    sw = Swtpm(tmp / "swtpm").start()
    try:
        c = TPMClient(sw.addr)
        out = {}
        for name, req in COMMANDS.items():
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                c.raw(req)
                times.append((time.perf_counter() - t0) * 1000)
            out[name] = times
        return out
    finally:
        sw.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(Path(d) / "p")
        px = run_pyxl(Path(d) / "p", args.n)
        sw = run_swtpm(Path(d), args.n)
    print("%-16s %10s %10s %7s" % ("median ms", "swtpm", "pyxl", "ratio"))
    for name in COMMANDS:
        p = statistics.median(px[name])
        s = statistics.median(sw[name]) if sw else float("nan")
        print("%-16s %10.3f %10.3f %7.2f" % (name, s, p, p / s if sw else float("nan")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
