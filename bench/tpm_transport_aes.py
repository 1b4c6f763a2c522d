#!/usr/bin/env python3
"""Encrypted transport sessions: `pyxl tpm-serve` vs swtpm (libtpms).

One encrypting transport session per algorithm (MGF1 XOR, AES-128 CTR,
AES-128 OFB) on each TPM, established under the SRK; then ExecuteTransport
of GetRandom(256) (256 encrypted response bytes) and of StirRandom(200) (200
encrypted command bytes), each over a new TCP connection as tcsd sends them.
The client side (HMACs, keystreams) is the test suite's
(tests/tpm/test_engine_transport_aes.py), the same for both TPMs, and
iterations alternate between them.  Prints the median ms per operation and
the ratio pyxl/swtpm against the 1.5x target for commands without RSA.

  PYTHONPATH=. python bench/tpm_transport_aes.py [-n 200] [--cpu N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "tpm"), str(ROOT / "tests"), str(ROOT)]

import engine_helpers as H  # noqa: E402
import test_engine_transport as T  # noqa: E402
import test_engine_transport_aes as A  # noqa: E402
from tpm.fixtures import PyxlServe, Swtpm  # noqa: E402
from benchutil import add_cpu_option, cpu_ns, pin  # noqa: E402

from pyxl.tpm import structures as S  # noqa: E402


Remote = H.Remote      # a served TPM (swtpm or tpm-serve) as a scenario's TPM


def prepare(tpm: Remote, swtpm: bool):
    """An EK, enabled and active (swtpm starts without), then owned -> SRK."""
    if swtpm:
        parms = S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes())
        assert H.run(tpm, 0xC1, 0x78, os.urandom(20) + parms.to_bytes()).rc == 0
        for tag, ordinal, params in ((0xC1, 0x4000000A, H.u16(0x20)),
                                     (0xC1, 0x4000000A, H.u16(0x08)),
                                     (0xC1, 0x6F, b""), (0xC1, 0x72, b"\x00")):
            assert H.run(tpm, tag, ordinal, params).rc == 0
    return H.take_ownership(tpm)


def sessions(tpm: Remote, srk):
    from cryptography.hazmat.primitives.asymmetric import rsa
    pub = rsa.RSAPublicNumbers(65537, int.from_bytes(srk.pubKey.key, "big")).public_key()
    return {"MGF1": T.Transport(tpm, T.ENCRYPT, enc_key=(A.KH_SRK, pub), key_auth=H.SRK),
            "AES-CTR": A.AesTransport(tpm, T.ENCRYPT, A.ES_CTR, srk),
            "AES-OFB": A.AesTransport(tpm, T.ENCRYPT, A.ES_OFB, srk)}


def operations(t):
    stir = H.frame(0xC1, 0x47, H.u32(200) + os.urandom(200))     # TPM_ORD_StirRandom
    return [("GetRandom(256)", lambda: t.execute(T.getrandom(256))),
            ("StirRandom(200)", lambda: t.execute(stir))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200, help="iterations per operation")
    add_cpu_option(ap, "the bench and both servers")
    args = ap.parse_args()
    pin(args.cpu)                               # the servers started below inherit it
    pyxl_cmd = [os.environ.get("PYXL_BIN")] if os.environ.get("PYXL_BIN") else \
        [sys.executable, "-m", "pyxl"]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory(prefix="tpm-aes-bench-") as tmp:
        sw = Swtpm(Path(tmp) / "swtpm").start()
        px = PyxlServe(pyxl_cmd, Path(tmp) / "pyxl").start()
        try:
            tpms = {"swtpm": Remote(sw), "pyxl": Remote(px)}
            sess = {k: sessions(tpm, prepare(tpm, k == "swtpm")) for k, tpm in tpms.items()}
            pids = {"swtpm": sw.proc.pid, "pyxl": px.proc.pid}
            print("%-28s %10s %10s %7s %7s  | server CPU us/op: swtpm, pyxl, ratio"
                  % ("median ms", "swtpm", "pyxl", "ratio", "target"))
            worst = []
            for alg in sess["swtpm"]:
                ops = {k: operations(sess[k][alg]) for k in tpms}
                for i, (name, _) in enumerate(ops["swtpm"]):
                    times = {"swtpm": [], "pyxl": []}
                    cpu0 = {k: cpu_ns(p) for k, p in pids.items()}
                    for j in range(args.n):
                        for k in (("swtpm", "pyxl") if j % 2 else ("pyxl", "swtpm")):
                            t0 = time.perf_counter()
                            ops[k][i][1]()
                            times[k].append((time.perf_counter() - t0) * 1000)
                    cpu = {k: (cpu_ns(p) - cpu0[k]) / args.n / 1000 for k, p in pids.items()}
                    ms = {k: statistics.median(v) for k, v in times.items()}
                    ratio = ms["pyxl"] / ms["swtpm"]
                    worst.append(ratio / 1.5)
                    print("%-28s %10.3f %10.3f %6.2fx %5.1fx %-4s |  %8.1f  %8.1f  %.2fx"
                          % ("%s %s" % (alg, name), ms["swtpm"], ms["pyxl"], ratio, 1.5,
                             "ok" if ratio <= 1.5 else "SLOW", cpu["swtpm"], cpu["pyxl"],
                             cpu["pyxl"] / cpu["swtpm"]))
            print("(n=%d; new TCP connection per command; %s)" % (
                args.n, "not pinned" if args.cpu is None else
                "bench, swtpm and pyxl pinned to vCPU %d" % args.cpu))
            return 0 if max(worst) <= 1.0 else 1
        finally:
            px.stop()
            sw.stop()


if __name__ == "__main__":
    sys.exit(main())
