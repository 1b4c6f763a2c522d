"""Benchmark the toolstack (not a test; prints numbers and target ratios).

    PYTHONPATH=. python bench/toolstack.py [--max-domains 500] [--runs 15]

- `pyxl list` start-up on a host with 10 domains and on one with 500,
  against the bare interpreter (`python -c pass`) and
  `python -c 'import typer'`.  All four command lines run interleaved, run
  by run, so a load spike on a shared machine hits them alike; the minimum
  is the figure (noise only adds), the median is shown too.  Targets:
  list(10) < 1.5x import typer; list(500) < 2x list(10).  `pyxl vcpu-list`
  on the 500-domain host runs with them (every vcpu of every domain), and
  `pyxl block-list` of all 500 domains (each has one disk, so 500 rows; the
  domains go in one request, each answered on its own, as xl asks libxl
  per domain).
  Targets: vcpu-list(500) and block-list(500) < 1.2x list(500).
- create -> running (the domain process exists and is scheduled: list shows
  r or b), create -> login prompt on its console, destroy -> gone.  Target:
  create to running < 150 ms.
- unique memory (USS: Private_Clean + Private_Dirty) of the daemon (10 and
  500 domains) and of booted domain processes, against an idle `python -c`.
  Target: a domain < 8 MB.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyxl.toolstack.client import Client  # noqa: E402
from pyxl.toolstack.paths import Paths  # noqa: E402

PY = sys.executable
PYXL = [PY, "-m", "pyxl"]


def uss_kb(pid: int) -> int:
    d = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k] = v.split()
    return int(d["Private_Clean"][0]) + int(d["Private_Dirty"][0])


class BenchHost:
    def __init__(self, kernel: Path):
        self.root = tempfile.mkdtemp(prefix="pyxl-bench-")
        self.kernel = kernel
        self.env = dict(os.environ, PYXL_ROOT=self.root, PYXL_HOST_MEMORY=str(64 * 1024),
                        PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in os.environ.get(
                            "PYTHONPATH", "").split(os.pathsep) if p]))
        subprocess.run(PYXL + ["list"], env=self.env, check=True, stdout=subprocess.DEVNULL)
        self.c = Client(Paths(self.root)).connect(autostart=False)
        self.n = 0

    def cfg(self, name):
        """A create request's config: libxl_domain_config JSON text."""
        return json.dumps({
            "c_info": {"type": "pv", "name": name},
            "b_info": {"max_memkb": 16384, "target_memkb": 16384, "kernel": str(self.kernel),
                       "cmdline": "console=hvc0"},
            "disks": [{"pdev_path": str(self.kernel), "vdev": "xvda", "format": "raw"}]})

    def grow(self, n: int) -> None:
        while self.n < n:
            self.c.call("create", config=self.cfg("d%d" % self.n))
            self.n += 1

    def domain_pids(self) -> list[int]:
        pids = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    cmd = open("/proc/%s/cmdline" % p, "rb").read()
                    env = open("/proc/%s/environ" % p, "rb").read()
                except OSError:
                    continue
                if ("PYXL_ROOT=" + self.root).encode() in env.split(b"\0") \
                        and b"pyxl-domain" in cmd:
                    pids.append(int(p))
        return pids

    def stop(self) -> float:
        self.c.close()
        t0 = time.perf_counter()
        subprocess.run(PYXL + ["daemon", "stop", "--force"], env=self.env, timeout=600)
        dt = time.perf_counter() - t0
        shutil.rmtree(self.root, ignore_errors=True)
        return dt


def interleaved(argvs: dict, runs: int) -> dict:
    times = {k: [] for k in argvs}
    for _ in range(runs):
        for k, (argv, env) in argvs.items():
            t = time.perf_counter()
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=True)
            times[k].append(time.perf_counter() - t)
    return {k: (min(v) * 1e3, statistics.median(v) * 1e3) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-domains", type=int, default=500)
    ap.add_argument("--runs", type=int, default=15)
    opts = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pyxl-bench-k-"))
    kernel = work / "vmlinuz"
    kernel.write_bytes(b"bench kernel")

    def line(name, value, unit, extra=""):
        print("%-46s %9.1f %s%s" % (name, value, unit, extra), flush=True)

    small = big = None
    try:
        small = BenchHost(kernel)
        c = small.c
        to_run, to_login, to_gone, stuck = [], [], [], []
        for i in range(20):
            t0 = time.perf_counter()
            domid = c.call("create", config=small.cfg("probe%d" % i))["domid"]
            while c.call("list", dom=str(domid))[0]["state"][:2] == "--":
                time.sleep(0.0005)
            to_run.append(time.perf_counter() - t0)
            while "login:" not in c.call("console_history", dom=str(domid)):
                if time.perf_counter() - t0 > 10:
                    stuck.append(domid)      # never booted: report it, don't hang
                    break
                time.sleep(0.002)
            else:
                to_login.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            c.call("destroy", dom=str(domid))
            to_gone.append(time.perf_counter() - t0)
        line("create -> running (median of 20)", statistics.median(to_run) * 1e3, "ms",
             "   target < 150 ms")
        line("create -> login prompt on the console", statistics.median(to_login) * 1e3, "ms")
        line("destroy -> gone", statistics.median(to_gone) * 1e3, "ms")
        if stuck:
            print("WARNING: domains that never reached their login prompt: %r" % stuck)

        small.grow(10)
        big = BenchHost(kernel)
        t0 = time.perf_counter()
        big.grow(opts.max_domains)
        line("create %d domains on a second host (serial)" % opts.max_domains,
             time.perf_counter() - t0, "s")
        time.sleep(2.0)

        w = interleaved({"pass": ([PY, "-c", "pass"], small.env),
                         "typer": ([PY, "-c", "import typer"], small.env),
                         "list10": (PYXL + ["list"], small.env),
                         "listN": (PYXL + ["list"], big.env),
                         "vcpulistN": (PYXL + ["vcpu-list"], big.env),
                         "blocklistN": (PYXL + ["block-list"]
                                        + ["d%d" % i for i in range(opts.max_domains)],
                                        big.env)}, opts.runs)
        for key, name in (("pass", "python -c pass"), ("typer", "python -c 'import typer'"),
                          ("list10", "pyxl list, 10 domains"),
                          ("listN", "pyxl list, %d domains" % opts.max_domains),
                          ("vcpulistN", "pyxl vcpu-list, %d domains" % opts.max_domains),
                          ("blocklistN", "pyxl block-list, %d domains" % opts.max_domains)):
            extra = "   (median %.0f)" % w[key][1]
            if key == "list10":
                extra += "   %.2fx import typer, target < 1.5x" % (w["list10"][0] / w["typer"][0])
            if key == "listN":
                extra += "   %.2fx list(10), target < 2x" % (w["listN"][0] / w["list10"][0])
            if key == "vcpulistN":
                extra += "   %.2fx list(%d), target < 1.2x" % (
                    w["vcpulistN"][0] / w["listN"][0], opts.max_domains)
            if key == "blocklistN":
                extra += "   %.2fx list(%d), target < 1.2x" % (
                    w["blocklistN"][0] / w["listN"][0], opts.max_domains)
            line(name + " (min)", w[key][0], "ms", extra)

        idle = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])
        time.sleep(0.5)
        base = uss_kb(idle.pid)
        idle.kill()
        idle.wait()
        line("python -c (idle) USS", base / 1024, "MB")
        dom_uss = statistics.median(uss_kb(p) for p in small.domain_pids())
        line("domain process USS (median, booted guest)", dom_uss / 1024, "MB",
             "   %.2fx idle python, target < 8 MB" % (dom_uss / base))
        line("daemon USS, 10 domains", uss_kb(small.c.daemon_pid) / 1024, "MB")
        line("daemon USS, %d domains" % opts.max_domains, uss_kb(big.c.daemon_pid) / 1024, "MB")
    finally:
        for h, n in ((small, 10), (big, opts.max_domains)):
            if h is not None:
                line("daemon stop --force, %d domains" % n, h.stop(), "s")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
