#!/usr/bin/env python3
"""Marshal/unmarshal cost of the TPM 1.2 structures the engine handles per
command (a key blob, PCR info, a sealed blob, an NV area's public part, the
permanent flags): the best of several timeit runs, in microseconds.

  python bench/tpm_structures.py [-n 20000]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyxl.tpm import structures as S  # noqa: E402


def samples() -> list[S.TPMStruct]:
    parms = S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes())
    info = S.TPM_PCR_INFO_LONG(1, 31, S.TPM_PCR_SELECTION.of([0, 7]),
                               S.TPM_PCR_SELECTION.of([1]), b"a" * 20, b"b" * 20)
    key = S.TPM_KEY12(keyUsage=0x11, algorithmParms=parms, PCRInfo=info.to_bytes(),
                      pubKey=S.TPM_STORE_PUBKEY(bytes(256)), encData=bytes(256))
    sealed = S.TPM_STORED_DATA12(sealInfo=info.to_bytes(), encData=bytes(256))
    return [key, info, sealed, S.TPM_NV_DATA_PUBLIC(0x1234, dataSize=6), S.TPM_PERMANENT_FLAGS()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000)
    n = ap.parse_args().n
    for v in samples():
        wire, cls = v.to_bytes(), type(v)
        m = min(timeit.repeat(v.to_bytes, number=n, repeat=7)) / n * 1e6
        u = min(timeit.repeat(lambda: cls.from_bytes(wire), number=n, repeat=7)) / n * 1e6
        print("%-20s marshal %6.2f us  unmarshal %6.2f us" % (cls.__name__, m, u))


if __name__ == "__main__":
    main()
