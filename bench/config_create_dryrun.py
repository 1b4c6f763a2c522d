"""Benchmark config loading against the real xl 4.17 (not a test; prints numbers).

    PYTHONPATH=. python bench/config_create_dryrun.py [N]

Three figures over the hand-written corpus (tests/config/corpus, ~180 files):
- the real `xl -N create -f CFG` per file (process start included, through
  the oracle shim in tests/oracle),
- `pyxl create -n CFG` per file as a process,
- pyxl in-process: config_text + load_data + to_json per file (what the
  toolstack daemon pays), and the ratio of each to xl.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from oracle.xl import XL, xl_env  # noqa: E402

from pyxl.config import ConfigError, config_text, load_data, to_json  # noqa: E402

CORPUS = REPO / "tests" / "config" / "corpus"


def per_file(files, argv_for, env=None):
    t = time.perf_counter()
    for f in files:
        subprocess.run(argv_for(f), cwd=CORPUS, env=env, capture_output=True)
    return (time.perf_counter() - t) / len(files)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    files = sorted(p.name for p in CORPUS.glob("*.cfg"))[:n]
    xl = per_file(files, lambda f: [XL, "-N", "create", "-f", f], env=xl_env())
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = per_file(files, lambda f: [sys.executable, "-m", "pyxl", "create", "-n", f], env=env)
    os.chdir(CORPUS)
    rounds = 5
    t = time.perf_counter()
    for _ in range(rounds):
        for f in files:
            try:
                to_json(load_data(config_text(f), f, warn=lambda s: None))
            except ConfigError:
                pass
    inproc = (time.perf_counter() - t) / (rounds * len(files))
    print("configs: %d" % len(files))
    print("xl -N create (process):     %7.2f ms/config" % (xl * 1e3))
    print("pyxl create -n (process):   %7.2f ms/config  (%.1fx xl)" % (proc * 1e3, proc / xl))
    print("pyxl load+to_json (in-proc):%7.2f ms/config  (%.2fx xl)" % (inproc * 1e3, inproc / xl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
