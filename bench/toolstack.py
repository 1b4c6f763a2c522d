"""Benchmark the toolstack (not a test; prints numbers and target ratios).

    PYTHONPATH=. python bench/toolstack.py [--max-domains 500]

- `pyxl list` start-up with 10 and with 500 domains, against the bare
  interpreter (`python -c pass`) and `python -c 'import typer'` run in the
  same process tree, same machine, same moment (targets: list(10) < 1.5x
  import typer; list(500) < 2x list(10)).
- create -> running (the domain process exists and is scheduled: list shows
  r or b) and create -> login prompt on its console; destroy -> gone
  (target: create to running < 150 ms).
- unique memory (USS: Private_Clean + Private_Dirty) of the daemon and of
  domain processes (target: a domain < 8 MB), against `python -c` idling.
"""

from __future__ import annotations

import argparse
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


def uss_kb(pid: int) -> int:
    d = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k] = v.split()
    return int(d["Private_Clean"][0]) + int(d["Private_Dirty"][0])


def wall(argv, env, runs) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-domains", type=int, default=500)
    ap.add_argument("--runs", type=int, default=15)
    opts = ap.parse_args()
    py = sys.executable
    root = tempfile.mkdtemp(prefix="pyxl-bench-")
    env = dict(os.environ, PYXL_ROOT=root, PYXL_HOST_MEMORY=str(64 * 1024),
               PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in os.environ.get(
                   "PYTHONPATH", "").split(os.pathsep) if p]))
    os.environ.update(PYXL_ROOT=root)
    kernel = Path(root, "vmlinuz")
    Path(root).mkdir(exist_ok=True)
    kernel.write_bytes(b"bench kernel")
    pyxl = [py, "-m", "pyxl"]
    results = []

    def report(name, value, unit, target=None, ratio_of=None):
        line = "%-44s %10.1f %s" % (name, value, unit)
        if ratio_of:
            line += "   (%.2fx %s)" % (value / ratio_of[1], ratio_of[0])
        if target:
            line += "   target %s" % target
        results.append(line)
        print(line, flush=True)

    def cfg(name):
        return {"c_info": {"type": "pv", "name": name},
                "b_info": {"max_memkb": 16384, "target_memkb": 16384, "kernel": str(kernel),
                           "cmdline": "console=hvc0"}}

    try:
        subprocess.run(pyxl + ["list"], env=env, check=True, stdout=subprocess.DEVNULL)
        c = Client(Paths(root)).connect(autostart=False)
        t_pass = wall([py, "-c", "pass"], env, opts.runs)
        t_typer = wall([py, "-c", "import typer"], env, opts.runs)
        report("python -c pass", t_pass * 1e3, "ms")
        report("python -c 'import typer'", t_typer * 1e3, "ms")

        # create -> running / login, destroy -> gone
        to_run, to_login, to_gone = [], [], []
        for i in range(20):
            t0 = time.perf_counter()
            domid = c.call("create", config=cfg("probe%d" % i))["domid"]
            while c.call("list", dom=str(domid))[0]["state"][:2] == "--":
                time.sleep(0.0005)
            to_run.append(time.perf_counter() - t0)
            while "login:" not in c.call("console_history", dom=str(domid)):
                time.sleep(0.002)
            to_login.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            c.call("destroy", dom=str(domid))
            to_gone.append(time.perf_counter() - t0)
        report("create -> running (median of 20)", statistics.median(to_run) * 1e3, "ms",
               "< 150 ms")
        report("create -> login prompt on console", statistics.median(to_login) * 1e3, "ms")
        report("destroy -> gone", statistics.median(to_gone) * 1e3, "ms")

        for i in range(10):
            c.call("create", config=cfg("d%d" % i))
        time.sleep(1.0)
        t10 = wall(pyxl + ["list"], env, opts.runs)
        report("pyxl list, 10 domains", t10 * 1e3, "ms", "< 1.5x import typer",
               ("import typer", t_typer * 1e3))
        doms = c.call("list")
        daemon_pid = c.daemon_pid
        report("daemon USS, 10 domains", uss_kb(daemon_pid) / 1024, "MB")

        pids = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    if root.encode() in open("/proc/%s/cmdline" % p, "rb").read() and \
                            b"pyxl-domain" in open("/proc/%s/cmdline" % p, "rb").read():
                        pids.append(int(p))
                except OSError:
                    pass
        idle = subprocess.Popen([py, "-c", "import time; time.sleep(30)"])
        time.sleep(0.5)
        base = uss_kb(idle.pid)
        idle.kill()
        dom_uss = statistics.median(uss_kb(p) for p in pids)
        report("python -c (idle) USS", base / 1024, "MB")
        report("domain process USS (median, booted guest)", dom_uss / 1024, "MB", "< 8 MB",
               ("idle python", base / 1024))

        n = len(doms) - 1
        t0 = time.perf_counter()
        while n < opts.max_domains:
            c.call("create", config=cfg("d%d" % n))
            n += 1
        report("create %d more domains (serial)" % (opts.max_domains - 10),
               time.perf_counter() - t0, "s")
        time.sleep(2.0)
        tN = wall(pyxl + ["list"], env, opts.runs)
        report("pyxl list, %d domains" % opts.max_domains, tN * 1e3, "ms", "< 2x list(10)",
               ("list(10)", t10 * 1e3))
        report("daemon USS, %d domains" % opts.max_domains, uss_kb(daemon_pid) / 1024, "MB")
        c.close()
    finally:
        t0 = time.perf_counter()
        subprocess.run(pyxl + ["daemon", "stop", "--force"], env=env, timeout=600)
        print("daemon stop --force: %.1f s" % (time.perf_counter() - t0))
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
