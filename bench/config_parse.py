#!/usr/bin/env python3
"""Config parsing speed: pyxl's cfgfile against libxlu's own parser.

    PYTHONPATH=. python bench/config_parse.py [--quick]

In-process: text -> settings for the guide's configs (examples/*.cfg) and a
generated 200-line config, with libxlu (libxlutil.so.4.17, through ctypes:
xlu_cfg_init + xlu_cfg_readdata + xlu_cfg_destroy) timed in the same run.
Whole process: a parse-only `python -c` against `python -c 'import typer'`
(the CLI's floor) and against xl's own dry run when the oracle is present.
Reports best-of-R medians and the ratio pyxl/libxlu (target: within 10x).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyxl.config import cfgfile  # noqa: E402


def generated_config(lines: int = 200) -> bytes:
    """A realistic but long config: atoms, flat and multi-line lists,
    comments, `+=`, hex/octal numbers."""
    out = [b"# generated benchmark config", b'name = "bench"', b'kernel = "/boot/vmlinuz"']
    i = 0
    while len(out) < lines:
        i += 1
        kind = i % 7
        if kind == 0:
            out.append(b"memory%d = %d" % (i, 128 * i))
        elif kind == 1:
            out.append(b'disk%d = ["file:/var/lib/xen/d%d.img,xvda,w", "phy:/dev/vg/x%d,xvdb,r"]' % (i, i, i))
        elif kind == 2:
            out.append(b"# comment line %d explaining the next setting" % i)
        elif kind == 3:
            out += [b"vif%d = [" % i, b'    "mac=00:16:3e:00:00:%02x,bridge=xenbr0", # nic' % (i % 256),
                    b'    "bridge=xenbr1",', b"]"]
        elif kind == 4:
            out.append(b'extra%d = "console=hvc0 root=/dev/xvda1"; extra%d += " quiet"' % (i, i))
        elif kind == 5:
            out.append(b"cpu_weight%d = 0x%x" % (i, i * 16))
        else:
            out.append(b"on_crash%d = 'restart'" % i)
    return b"\n".join(out[:lines]) + b"\n"


class Libxlu:
    def __init__(self):
        self.lib = ctypes.CDLL("libxlutil.so.4.17")
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        self.lib.xlu_cfg_init.restype = ctypes.c_void_p
        self.lib.xlu_cfg_init.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib.xlu_cfg_readdata.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.lib.xlu_cfg_destroy.argtypes = [ctypes.c_void_p]
        self.report = libc.fopen(b"/dev/null", b"w")

    def parse(self, data: bytes) -> int:
        lib = self.lib
        cfg = lib.xlu_cfg_init(self.report, b"bench.cfg")
        rc = lib.xlu_cfg_readdata(cfg, data, len(data))
        lib.xlu_cfg_destroy(cfg)
        return rc


def per_call(fn, data, budget=0.2, repeats=7) -> float:
    """Median over REPEATS runs of the mean time per call, in microseconds."""
    fn(data)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget / 4:
        fn(data)
        n += 1
    n = max(n, 10)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn(data)
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


def process_ms(argv, runs=15, env=None) -> float:
    subprocess.run(argv, capture_output=True, env=env)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=env)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    quick = "--quick" in sys.argv
    try:
        xlu = Libxlu()
    except OSError as e:
        sys.exit(f"libxlutil.so.4.17 not found ({e}); install xen-utils-4.17")
    inputs = {os.path.basename(p): Path(p).read_bytes()
              for p in sorted(glob.glob(str(REPO / "examples" / "*.cfg")))}
    inputs["generated-200-lines"] = generated_config(200)
    for name, data in inputs.items():   # same verdict from both parsers
        assert xlu.parse(data) == 0, name
        cfgfile.parse(data, "bench.cfg")

    pyxl_parse = lambda d: cfgfile.parse(d, "bench.cfg")  # noqa: E731
    print(f"{'in-process parse':28} {'pyxl us':>9} {'libxlu us':>10} {'ratio':>7}")
    for name, data in inputs.items():
        p = per_call(pyxl_parse, data, 0.1 if quick else 0.4)
        x = per_call(xlu.parse, data, 0.1 if quick else 0.4)
        print(f"{name:28} {p:9.1f} {x:10.1f} {p / x:6.1f}x")

    # Bytecode caching on, as for an installed package (a first warm-up run
    # writes __pycache__); otherwise every run recompiles the sources.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cfg = str(REPO / "examples" / "vtpm.cfg")
    runs = 5 if quick else 15
    typer_ms = process_ms([sys.executable, "-c", "import typer"], runs, env)
    parse_ms = process_ms([sys.executable, "-c",
                           "from pyxl.config.cfgfile import read_config; "
                           f"read_config({cfg!r}).get_string('name')"], runs, env)
    print(f"\n{'whole process':28} {'ms':>9}")
    print(f"{'python -c import typer':28} {typer_ms:9.1f}")
    print(f"{'pyxl parse-only (vtpm.cfg)':28} {parse_ms:9.1f}   "
          f"({parse_ms / typer_ms:.2f}x import typer)")
    if (REPO / "pyxl" / "cli" / "create.py").exists():
        create_ms = process_ms([sys.executable, "-m", "pyxl", "create", "-n", cfg], runs, env)
        print(f"{'pyxl create -n (vtpm.cfg)':28} {create_ms:9.1f}   "
              f"({create_ms / typer_ms:.2f}x import typer)")
    try:
        sys.path.insert(0, str(REPO / "tests"))
        from oracle.xl import XL, xl_env
        if os.access(XL, os.X_OK):
            xl_ms = process_ms([XL, "-N", "create", "-f", cfg], runs, xl_env())
            print(f"{'xl -N create (vtpm.cfg)':28} {xl_ms:9.1f}")
    except Exception as e:  # the oracle is optional here
        print(f"(xl dry run not measured: {e})")


if __name__ == "__main__":
    main()
