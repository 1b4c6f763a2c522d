"""Benchmark the xenstored socket (not a test; prints numbers).

    PYTHONPATH=. python bench/xenstored_socket.py

A READ round trip over the daemon's xenstored socket (xs_wire framing,
dom0's view: what Xen's tools and pyxl's xenstore-* commands use), against
the same READ over a domain's internal wire (pyxl.hypervisor.wire, what
every domain process uses), both served by one in-process Hypervisor and
timed in the same run; then whole `xenstore-read` processes: Debian's
(if installed) against `pyxl xenstore-read`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyxl.domain.xen import XenInterface  # noqa: E402
from pyxl.hypervisor.services import Hypervisor  # noqa: E402
from pyxl.hypervisor.xenstored import XenstoredServer  # noqa: E402
from pyxl.toolstack.xsclient import XsClient  # noqa: E402

N = int(os.environ.get("XSD_BENCH_N", "3000"))
PROCS = int(os.environ.get("XSD_BENCH_PROCS", "20"))


def per_call_us(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    base = tempfile.mkdtemp(prefix="pyxl-xsd-bench-")
    hv = Hypervisor()
    hv.domain_created(1, name="bench")
    hv.xs().write("/local/domain/1/data/x", b"value")
    os.makedirs(os.path.join(base, "run", "pyxl"), 0o700)
    # laid out as a host root, so `pyxl xenstore-read` (PYXL_ROOT=base) finds it
    srv = XenstoredServer(hv, os.path.join(base, "run", "pyxl", "xenstored"))
    srv.start()
    dom = XenInterface(hv.connect_domain(1), 1)
    sock = XsClient.open(srv.path)
    try:
        rounds = []
        for _ in range(3):      # interleaved, so load on the machine hits both alike
            rounds.append((per_call_us(lambda: sock.read("/local/domain/1/data/x"), N),
                           per_call_us(lambda: dom.read("data/x"), N)))
        s = min(r[0] for r in rounds)
        w = min(r[1] for r in rounds)
        print("READ round trip: xenstored socket %.1f us, domain wire %.1f us, ratio %.2fx"
              % (s, w, s / w))
        real = shutil.which("xenstore-read")
        env = dict(os.environ, XENSTORED_PATH=srv.path, PYXL_ROOT=base,
                   PYTHONPATH=str(REPO))
        cmds = [("pyxl xenstore-read", [sys.executable, "-m", "pyxl", "xenstore-read"])]
        if real:
            cmds.insert(0, ("Debian's xenstore-read", [real]))
        for name, argv in cmds:
            t = time.perf_counter()
            for _ in range(PROCS):
                subprocess.run(argv + ["/local/domain/1/data/x"], env=env, check=True,
                               capture_output=True)
            print("%s process: %.1f ms" % (name, (time.perf_counter() - t) / PROCS * 1e3))
    finally:
        sock.close()
        srv.stop()
        hv.close()
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
