#!/usr/bin/env python3
"""Latency of the certified-migration-key (CMK) commands: `pyxl tpm-serve`
vs swtpm (libtpms), both started fresh here and owned.

Each TPM migrates a CMK to a storage key of its own (the MA-approved
destination may live on the same TPM), so every step can be repeated with
the same inputs: CMK_ApproveMA (an HMAC), CMK_CreateTicket (an RSA signature
check: a public-key operation), CMK_CreateBlob and CMK_ConvertMigration (an RSA private operation and
an encryption each), CMK_CreateKey (key generation).  Every request opens its
own OIAP/OSAP session, on both sides alike.  Iterations alternate between the
two TPMs; prints medians and the ratio pyxl/swtpm against the targets of
bench/tpm_roundtrip.py (1.5x, 1.2x for RSA-bound commands).

  python bench/tpm_cmk.py [-n 40] [--rsa-n 6]
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
import test_engine_cmk as K  # noqa: E402
from pyxl.tpm import structures as S  # noqa: E402
from tpm.fixtures import PyxlServe, Swtpm  # noqa: E402


Remote = H.Remote      # a served TPM (swtpm or tpm-serve) as a scenario's TPM


def own(tpm, needs_ek: bool) -> None:
    if needs_ek:    # swtpm starts without an EK, disabled and deactivated
        parms = S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes())
        for ordinal, params in ((0x78, os.urandom(20) + parms.to_bytes()),
                                (0x4000000A, H.u16(0x20)), (0x4000000A, H.u16(0x08)),
                                (0x6F, b""), (0x72, b"\x00")):
            assert H.run(tpm, 0xC1, ordinal, params).rc == 0
    H.take_ownership(tpm)


def operations(tpm):
    """The CMK steps on one TPM, each a callable that checks its own result."""
    parent, pub = K.dest_storage_key(tpm)
    setup = K.Setup(tpm, K.sha1(pub))
    mka = K.authorize(tpm, pub, K.MS_RESTRICT_MIGRATE)
    restrict = setup.restrict(pub)
    signed = K.sha1(restrict)
    sig = setup.ma.sign(signed)
    rc, ticket = K.create_ticket(tpm, setup.ma, signed, sig=sig)
    assert rc == 0
    rc, rnd, out = K.create_blob(tpm, mka, setup.source, setup.msa, setup.key.encData)
    assert rc == 0
    key = setup.key.copy()
    key.encData = out

    def ok(result):
        assert result[0] == 0, result[0]

    return [
        ("CMK_ApproveMA", lambda: ok(K.approve_ma(tpm, setup.msa)), False),
        # a public-key operation only: not RSA-bound in the roundtrip bench's sense
        ("CMK_CreateTicket", lambda: ok(K.create_ticket(tpm, setup.ma, signed, sig=sig)), False),
        ("CMK_CreateBlob", lambda: ok(K.create_blob(tpm, mka, setup.source, setup.msa,
                                                    setup.key.encData)), True),
        ("CMK_ConvertMigration", lambda: ok(K.convert(tpm, parent, restrict, ticket, key,
                                                      setup.msa, rnd)), True),
        ("CMK_CreateKey(2048)", lambda: ok(K.create_cmk(tpm, setup.approval, setup.msa)), True),
    ]


def measure(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=40, help="iterations per command")
    ap.add_argument("--rsa-n", type=int, default=6, help="iterations of CMK_CreateKey")
    args = ap.parse_args()
    pyxl_cmd = [os.environ.get("PYXL_BIN")] if os.environ.get("PYXL_BIN") else \
        [sys.executable, "-m", "pyxl"]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory(prefix="tpm-cmk-bench-") as tmp:
        sw = Swtpm(Path(tmp) / "swtpm").start()
        px = PyxlServe(pyxl_cmd, Path(tmp) / "pyxl").start()
        try:
            tpms = {"swtpm": Remote(sw), "pyxl": Remote(px)}
            own(tpms["swtpm"], True)
            own(tpms["pyxl"], False)
            ops = {k: operations(t) for k, t in tpms.items()}
            print("%-22s %10s %10s %7s %7s" % ("median ms", "swtpm", "pyxl", "ratio", "target"))
            worst = []
            for i, (name, _, rsa_bound) in enumerate(ops["swtpm"]):
                n = args.rsa_n if name.startswith("CMK_CreateKey") else args.n
                times = {"swtpm": [], "pyxl": []}
                for j in range(n):               # alternate the TPMs and who goes first
                    for k in (("swtpm", "pyxl") if j % 2 else ("pyxl", "swtpm")):
                        times[k].append(measure(ops[k][i][1]))
                ms = {k: statistics.median(v) for k, v in times.items()}
                ratio = ms["pyxl"] / ms["swtpm"]
                target = 1.2 if rsa_bound else 1.5
                worst.append(ratio / target)
                print("%-22s %10.2f %10.2f %6.2fx %5.1fx %s"
                      % (name, ms["swtpm"], ms["pyxl"], ratio, target,
                         "ok" if ratio <= target else "SLOW"))
            print("(n=%d, %d for key generation; a new TCP connection per request)"
                  % (args.n, args.rsa_n))
            return 0 if max(worst) <= 1.0 else 1
        finally:
            px.stop()
            sw.stop()


if __name__ == "__main__":
    sys.exit(main())
