#!/usr/bin/env python3
"""User-space instructions per TPM 1.2 command: `pyxl tpm-serve` vs swtpm,
each run under valgrind's callgrind -- a count the machine's load does not
change, unlike times.

Both servers start under callgrind with instrumentation off, are owned,
warmed up, then counted (callgrind_control -i on/off) over N commands per
operation: OIAP + GetCapabilityOwner on one kept connection (the pair
bench/tpm_roundtrip.py times), PCRRead on a kept connection, and PCRRead on
a new connection per command (as tcsd sends them; swtpm serves one
connection at a time, so the kept one is closed first).  Kernel time (the
system calls, task switches) is not in these counts.

  PYTHONPATH=. python bench/tpm_callgrind.py [-n 300]
  PYXL_PATH=/other/checkout python bench/tpm_callgrind.py   # another build's tpm-serve
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from tpm.client import TPMClient, TPMError  # noqa: E402
from tpm.fixtures import free_port_pair, wait_port  # noqa: E402

OPS = ("OIAP+GetCapabilityOwner", "PCRRead", "PCRRead, new connection")


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def count(name: str, cmd: list[str], port: int, n: int, tmp: str, cwd: str) -> dict[str, float]:
    out = "%s/%s.cg" % (tmp, name)
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                          "--callgrind-out-file=" + out] + cmd,
                         cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(port, 120, lambda: p.poll() is None):
            raise RuntimeError("%s did not start under valgrind" % name)
        kept = TPMClient(("127.0.0.1", port), keep=True, timeout=600)
        new = TPMClient(("127.0.0.1", port), keep=False, timeout=600)
        try:
            kept.read_pubek()
        except TPMError:
            kept.create_ek()       # swtpm starts without an EK
        if not kept.owned():
            kept.take_ownership()
        fns: dict[str, Callable[[], object]] = {
            OPS[0]: lambda: kept.get_capability_owner(),
            OPS[1]: lambda: kept.pcr_read(10),
            OPS[2]: lambda: new.pcr_read(10)}
        for op in OPS:
            if op == OPS[2]:
                kept.close()
            for _ in range(20):
                fns[op]()
            _control(p.pid, "-z")
            _control(p.pid, "-i", "on")
            for _ in range(n):
                fns[op]()
            _control(p.pid, "-i", "off")
            _control(p.pid, "-d", op.replace(" ", "_"))
    finally:
        p.terminate()
        p.wait()
    dumps = sorted((f for f in os.listdir(tmp) if re.fullmatch(re.escape(name) + r"\.cg\.\d+", f)),
                   key=lambda f: int(f.rsplit(".", 1)[1]))
    result = {}
    for op, f in zip(OPS, dumps):
        with open(os.path.join(tmp, f)) as fh:
            total = next(int(line.split()[1]) for line in fh if line.startswith("totals:"))
        result[op] = total / n
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=300, help="commands counted per operation")
    args = ap.parse_args()
    pyxl_path = os.environ.get("PYXL_PATH", str(ROOT))
    os.environ["PYTHONPATH"] = pyxl_path      # `-m pyxl` also puts its cwd first: run it there
    with tempfile.TemporaryDirectory(prefix="tpm-callgrind-") as tmp:
        res = {}
        for name in ("swtpm", "pyxl"):
            port = free_port_pair()
            state = os.path.join(tmp, name)
            os.makedirs(state)
            if name == "swtpm":
                cmd = ["swtpm", "socket", "--tpmstate", "dir=" + state,
                       "--server", "type=tcp,port=%d,bindaddr=127.0.0.1" % port,
                       "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1" % (port + 1),
                       "--flags", "not-need-init,startup-clear"]
            else:
                cmd = [sys.executable, "-m", "pyxl", "tpm-serve", "--state", state,
                       "--port", str(port)]
            res[name] = count(name, cmd, port, args.n, tmp, pyxl_path)
    print("%-26s %10s %10s %7s" % ("instructions per command", "swtpm", "pyxl", "ratio"))
    for op in OPS:
        print("%-26s %10.0f %10.0f %6.2fx" % (op, res["swtpm"][op], res["pyxl"][op],
                                             res["pyxl"][op] / res["swtpm"][op]))
    print("(callgrind, user space only; n=%d; pyxl from %s)" % (args.n, pyxl_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
