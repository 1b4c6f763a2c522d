#!/usr/bin/env python3
"""Bytecodes per TPM 1.2 command in tpm-serve's code, by function: a count,
not a timing, so the machine's load does not change it.

The engine and tpm-serve's per-command path (TPMServer._readable: recv,
framing, execute, persist, send; not epoll) run in this process over a
socket pair; sys.settrace with f_trace_opcodes counts the bytecodes each
Python function executes while the server handles the command.  Operations:
OIAP + GetCapabilityOwner (an authorized command on a fresh OIAP session, the
pair bench/tpm_roundtrip.py times), PCRRead, and ExecuteTransport under an
MGF1 and an AES-128-CTR transport session (GetRandom(256), StirRandom(200):
bench/tpm_transport_aes.py's commands).  C functions (hashlib, struct,
socket) are not counted: callgrind counts those (README, Performance).

  PYTHONPATH=. python bench/tpm_bytecodes.py [-n 50] [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "tpm"), str(ROOT / "tests"), str(ROOT)]

import engine_helpers as H  # noqa: E402
import test_engine_transport as T  # noqa: E402
import test_engine_transport_aes as A  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from pyxl.tpm import serve as S  # noqa: E402
from pyxl.tpm.identity import XEN_VTPM_IDENTITY, behaving_as  # noqa: E402

counts: collections.Counter[str] = collections.Counter()
calls: collections.Counter[str] = collections.Counter()


def _tracer(frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
    frame.f_trace_opcodes = True
    code = frame.f_code
    key = "%s:%s" % (os.path.basename(code.co_filename), code.co_qualname)
    if event == "call":
        calls[key] += 1

    def local(frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        if event == "opcode":
            counts[key] += 1
        return local
    return local


class Served:
    """The engine behind tpm-serve's per-command path, over a socket pair,
    with execute(frame) for the test helpers; only the server side traced."""

    def __init__(self) -> None:
        # tpm-serve's default identity (--vendor ETHZ behaving as libtpms)
        self.tpm = H.new_tpm(identity=behaving_as(XEN_VTPM_IDENTITY, "libtpms"))
        self.state = S.StateDir(tempfile.mkdtemp(prefix="tpm-bytecodes-") + "/state")
        self.state.lock()
        self.server = S.TPMServer(self.tpm, self.state, [])
        self.client, theirs = socket.socketpair()
        theirs.setblocking(False)
        self.conn = S.Conn(theirs, "bench", S.Framer(), time.monotonic())
        self.server.conns[theirs] = self.conn
        self.traced = False

    def execute(self, frame: bytes, locality: int = 0) -> bytes:
        self.client.sendall(frame)
        if self.traced:
            sys.settrace(_tracer)
        try:
            self.server._readable(self.conn)
        finally:
            sys.settrace(None)
        return self.client.recv(65536)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=50, help="commands counted per operation")
    ap.add_argument("--top", type=int, default=25, help="functions shown per operation")
    args = ap.parse_args()
    tpm = Served()
    srk = H.take_ownership(tpm)
    pub = rsa.RSAPublicNumbers(65537, int.from_bytes(srk.pubKey.key, "big")).public_key()
    mgf1 = T.Transport(tpm, T.ENCRYPT, enc_key=(A.KH_SRK, pub), key_auth=H.SRK)
    ctr = A.AesTransport(tpm, T.ENCRYPT, A.ES_CTR, srk)
    stir = H.frame(0xC1, 0x47, H.u32(200) + os.urandom(200))      # TPM_ORD_StirRandom
    pcr = H.frame(0xC1, 0x15, H.u32(10))
    ops: list[tuple[str, Callable[[], object]]] = [
        ("OIAP + GetCapabilityOwner", lambda: H.auth1(tpm, 0x66, b"", b"", H.OWNER)),
        ("PCRRead", lambda: tpm.execute(pcr)),
        ("ExecuteTransport MGF1 GetRandom(256)", lambda: mgf1.execute(T.getrandom(256))),
        ("ExecuteTransport MGF1 StirRandom(200)", lambda: mgf1.execute(stir)),
        ("ExecuteTransport AES-CTR GetRandom(256)", lambda: ctr.execute(T.getrandom(256))),
        ("ExecuteTransport AES-CTR StirRandom(200)", lambda: ctr.execute(stir))]
    for name, fn in ops:
        for _ in range(3):
            fn()
        counts.clear()
        calls.clear()
        tpm.traced = True
        for _ in range(args.n):
            fn()
        tpm.traced = False
        print("== %s: %.0f bytecodes per operation" % (name, sum(counts.values()) / args.n))
        for key, v in counts.most_common(args.top):
            print("  %7.1f  %5.2f calls  %s" % (v / args.n, calls[key] / args.n, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
