#!/usr/bin/env python3
"""What Python itself costs a TPM round trip on this machine, apart from
pyxl: the floors under the other benches' targets.

loop: a kept-connection TPM 1.2 PCRRead (tests/tpm/client.py's TPMClient,
    as bench/tpm_roundtrip.py --keep sends it) to swtpm, and to the least a
    Python server can do with it: epoll, recv, a fixed 30-byte answer, send
    -- tpm-serve's loop (pyxl/tpm/serve.py) without framing, engine or
    saving.  The ratio is the share of tpm_roundtrip.py's 1.5x target that
    a Python server's loop takes before any TPM work.
pair: a round trip between two Python processes over the chain's
    primitives -- the request written into a shared memfd page, one byte on
    a unix socket to notify, poll then recv to wait, the answer written
    back the same way (pyxl/domain/drivers/tpmif.py's page, the direct
    event channels of pyxl/domain/xen.py, without pyxl's drivers) --
    against the same PCRRead to swtpm.  bench/stubdom_vtpm.py's guest and
    vtpm-stubdom are two such processes, with the drivers and the TPM in
    between.

Rounds alternate; medians over all rounds.  --cpu N / --split A,B as in
the other benches (bench/benchutil.py): the bench is the client side,
swtpm, the loop's server and the pair's answering process the servers.

  PYTHONPATH=. python bench/python_floor.py [-n 2000] [-r 3] [--cpu N | --split A,B]
"""

from __future__ import annotations

import argparse
import mmap
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from benchutil import Placement, add_cpu_option, measure  # noqa: E402
from tpm.client import TPMClient  # noqa: E402
from tpm.fixtures import Swtpm, free_port, wait_port  # noqa: E402

PCRREAD = struct.pack(">HIII", 0xC1, 14, 0x15, 10)
ANSWER = bytes.fromhex("00c40000001e00000000") + bytes(20)     # PCRRead's: a 20-byte PCR

# the loop's server: one kept connection at a time is all the bench sends
LOOP = r"""
import select, socket, sys
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(4)
ep = select.epoll()
ep.register(ls.fileno(), select.EPOLLIN)
conns = {}
ANSWER = bytes.fromhex(sys.argv[2])
while True:
    for fd, _ in ep.poll(-1, 8):
        c = conns.get(fd)
        if c is None:
            s, _ = ls.accept()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conns[s.fileno()] = s
            ep.register(s.fileno(), select.EPOLLIN)
        elif c.recv(4096):
            c.send(ANSWER)
        else:
            ep.unregister(fd)
            del conns[fd]
            c.close()
"""

# the pair's answering process: argv = the page's fd, the notification socket's
PAIR = r"""
import mmap, select, socket, struct, sys
page = mmap.mmap(int(sys.argv[1]), 4096)
sock = socket.socket(fileno=int(sys.argv[2]))
poll = select.poll()
poll.register(sock, select.POLLIN)
ANSWER = bytes.fromhex(%r)
while True:
    poll.poll()
    if not sock.recv(64, socket.MSG_DONTWAIT):
        break
    n = struct.unpack_from("<I", page, 0)[0]
    request = page[8:8 + n]
    page[8:8 + len(ANSWER)] = ANSWER
    struct.pack_into("<I", page, 0, len(ANSWER))
    page[4] = 2
    sock.send(b"\1")
""" % ANSWER.hex()


def pair_client(page: mmap.mmap, sock: socket.socket) -> Callable[[bytes], bytes]:
    """The guest's side: the request on the page, a notification, a wait."""
    poll = select.poll()
    poll.register(sock, select.POLLIN)

    def round_trip(request: bytes) -> bytes:
        page[8:8 + len(request)] = request
        struct.pack_into("<I", page, 0, len(request))
        page[4] = 1
        sock.send(b"\1")
        poll.poll()
        sock.recv(64, socket.MSG_DONTWAIT)
        return page[8:8 + struct.unpack_from("<I", page, 0)[0]]
    return round_trip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=2000, help="round trips per round and kind")
    ap.add_argument("-r", type=int, default=3, help="rounds")
    add_cpu_option(ap, "the bench and every server", servers="the servers")
    args = ap.parse_args()
    place = Placement.from_args(args)
    place.pin_client()
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
        sw = Swtpm(Path(tmp) / "swtpm").start()
        try:
            assert sw.proc is not None
            place.server("swtpm", sw.proc.pid)
            port = free_port()
            loop = subprocess.Popen([sys.executable, "-c", LOOP, str(port), ANSWER.hex()])
            procs.append(loop)
            place.server("loop", loop.pid)
            if not wait_port(port, 10):
                raise SystemExit("the loop's server did not start")
            fd = os.memfd_create("tpmif-page")
            os.ftruncate(fd, 4096)
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pair = subprocess.Popen([sys.executable, "-c", PAIR, str(fd), str(theirs.fileno())],
                                    pass_fds=(fd, theirs.fileno()))
            procs.append(pair)
            theirs.close()
            place.server("pair", pair.pid)
            page = mmap.mmap(fd, 4096)
            kinds = {"swtpm": TPMClient(sw.addr, keep=True).raw,
                     "loop": TPMClient(("127.0.0.1", port), keep=True).raw,
                     "pair": pair_client(page, mine)}
            for name, send in kinds.items():
                if send(PCRREAD)[:10] != ANSWER[:10]:
                    raise SystemExit("%s: not a PCRRead answer" % name)
                measure(lambda: send(PCRREAD), 200)        # warm-up
            times: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.r):
                for name, send in kinds.items():
                    times[name] += measure(lambda: send(PCRREAD), args.n)
            med = {k: statistics.median(v) * 1000 for k, v in times.items()}     # us
            print(place.describe("the bench", "swtpm, the loop's server, the pair's other process"))
            print("median us per round trip (n=%d x %d rounds)" % (args.n, args.r))
            rows = (("swtpm", "swtpm, kept TCP connection (TPMClient)"),
                    ("loop", "loop: a Python epoll/recv/send server, same client"),
                    ("pair", "pair: two Python processes, memfd page + socket notify"))
            for key, what in rows:
                print("%-56s %7.1f   %.2fx swtpm" % (what, med[key], med[key] / med["swtpm"]))
        finally:
            for p in procs:
                p.kill()
                p.wait()
            sw.stop()


if __name__ == "__main__":
    main()
