#!/usr/bin/env python3
"""The guide's last step, timed: `tpm_version` typed in the guest vs run
against swtpm.

pyxl: a private host (PYXL_ROOT in a temp dir) running the guide's three
domains; in the guest `modprobe xen-tpmfront` and `tcsd`, then N times
`tpm_version` at its console (the host's tpm_version -> the guest's tcsd ->
/dev/tpm0 -> xen-tpmfront -> vtpm-stubdom; its state save goes through
vtpmmgr-stubdom to the TIS hardware TPM), measured from Enter to the next
prompt.  swtpm: the same tpm_version against a private tcsd on swtpm 1.2.
Also reports how long the three `pyxl create`s took.  Needs root, tcsd,
tpm-tools and swtpm.  Prints medians and the ratio pyxl/swtpm.

With --cpus G,V,M the guest, the vTPM and the manager are created with
`vcpus=1 cpus="G"` (and V, M) added to the guide's configs: where their
processes run (the simulated pCPU p is the p-th CPU this bench may use),
which the output shows as each domain's Cpus_allowed_list.

  PYTHONPATH=. python bench/walkthrough_tpm_version.py [-n 10] [--cpus 0,0,0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "tests"), str(ROOT / "tests" / "tpm"), str(ROOT)]

from console import Console, at_prompt  # noqa: E402
from fixtures import Swtpm, Tcsd  # noqa: E402


def allowed_cpus(root: Path) -> dict[str, str]:
    """Cpus_allowed_list of each domain process of the host at `root`."""
    out = {}
    for p in os.listdir("/proc"):
        try:
            cmd = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
            env = open("/proc/%s/environ" % p, "rb").read().split(b"\0")
            status = open("/proc/%s/status" % p).read()
        except OSError:
            continue
        if b"pyxl-domain" in cmd and ("PYXL_ROOT=%s" % root).encode() in env:
            name = [a for a in cmd if a.startswith(b"domid=")][0].decode()
            out[name] = [ln.split()[1] for ln in status.splitlines()
                         if ln.startswith("Cpus_allowed_list")][0]
    return out


def run_pyxl(tmp: Path, n: int, cpus: list[str] | None = None) -> dict:
    env = dict(os.environ, PYXL_ROOT=str(tmp / "root"), PYXL="%s -m pyxl" % sys.executable,
               PYTHONPATH=str(ROOT))
    os.environ.update(env)           # Console runs $PYXL with our environment
    ex = ROOT / "examples"

    def pyxl(*args):
        subprocess.run([sys.executable, "-m", "pyxl", *args], env=env, check=True,
                       capture_output=True)

    def at(i):
        return ["vcpus=1", 'cpus="%s"' % cpus[i]] if cpus else []

    def log(dom):
        p = tmp / "root" / "var/log/pyxl/console" / ("guest-%s.log" % dom)
        return p.read_bytes() if p.exists() else b""

    def wait_log(dom, text):
        while text not in log(dom):
            time.sleep(0.05)

    (tmp / "mgr.img").write_bytes(bytes(16 << 20))
    (tmp / "vtpm.img").write_bytes(bytes(8 << 20))
    (tmp / "vmlinuz").write_bytes(b"kernel")
    try:
        t0 = time.perf_counter()
        pyxl("create", "-q", str(ex / "vtpmmgr-stubdom.cfg"), 'disk=["file:%s/mgr.img,hda,w"]' % tmp,
             *at(2))
        wait_log("vtpmmgr", b"Waiting for commands from vTPM's:")
        t1 = time.perf_counter()
        pyxl("create", "-q", str(ex / "vtpm.cfg"), 'disk=["file:%s/vtpm.img,hda,w"]' % tmp, *at(1))
        wait_log("domu-vtpm", b"Waiting for frontend domain to connect..")
        t2 = time.perf_counter()
        pyxl("create", "-q", str(ex / "domu.cfg"), 'kernel="%s/vmlinuz"' % tmp, *at(0))
        t3 = time.perf_counter()
        con = Console(["console", "domu"], echo=False)
        con.wait(at_prompt, timeout=5) or (con.type(""), con.wait(at_prompt))
        con.drain(0.3)
        for cmd in ("modprobe xen-tpmfront", "tcsd"):
            start = len(con.buf)
            con.type(cmd)
            assert con.wait(at_prompt, start), cmd
        times = []
        for _ in range(n):
            start = len(con.buf)
            s = time.perf_counter()
            con.type("tpm_version")
            assert con.wait(at_prompt, start)
            times.append(time.perf_counter() - s)
            assert b"ETHZ" in con.buf[start:]
        con.detach()
        return {"tpm_version_ms": statistics.median(times) * 1000,
                "cpus_allowed": allowed_cpus(tmp / "root"),
                "create_manager_s": t1 - t0, "create_vtpm_s": t2 - t1, "create_guest_s": t3 - t2}
    finally:
        subprocess.run([sys.executable, "-m", "pyxl", "daemon", "stop", "--force"], env=env,
                       capture_output=True)


def run_swtpm(tmp: Path, n: int) -> dict:
    sw = Swtpm(tmp / "swtpm").start()
    tcsd = None
    try:
        tcsd = Tcsd(tmp / "tcsd", *sw.addr).start()
        times = []
        for _ in range(n):
            s = time.perf_counter()
            r = tcsd.tool("tpm_version")
            times.append(time.perf_counter() - s)
            assert r.rc == 0, r
        return {"tpm_version_ms": statistics.median(times) * 1000}
    finally:
        if tcsd:
            tcsd.stop()
        sw.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--cpus", help="G,V,M: the guest's, the vTPM's and the manager's pCPU")
    a = ap.parse_args()
    cpus = a.cpus.split(",") if a.cpus else None
    if cpus is not None and len(cpus) != 3:
        ap.error("--cpus takes three pCPUs: the guest's, the vTPM's, the manager's")
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "pyxl").mkdir()
        p = run_pyxl(Path(d) / "pyxl", a.n, cpus)
        s = run_swtpm(Path(d), a.n)
    out = {"n": a.n, "pyxl": p, "swtpm": s,
           "ratio_tpm_version": p["tpm_version_ms"] / s["tpm_version_ms"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
