"""A domain process for the tpmback/tpmfront tests: `backend` answers every
request with a recognisable echo until told to stop; `frontend N` opens
device/vtpm/0, sends N requests, closes, and (with `reopen`) does it again."""

from __future__ import annotations

import json
import sys

from pyxl.domain.drivers.tpmback import TpmBack
from pyxl.domain.drivers.tpmfront import TpmFront, TpmFrontError
from pyxl.domain.minios import make_printk
from pyxl.domain.xen import XenInterface


def answer(req: bytes, locality: int) -> bytes:
    return b"RSP" + bytes([locality]) + req[::-1]


def backend(xen, printk) -> dict:
    events = []
    back = TpmBack(xen, printk, open_callback=lambda d, h: events.append(["open", d, h]),
                   close_callback=lambda d, h: events.append(["close", d, h]))
    first = back.wait_for_frontend_connect(timeout=20)
    served = []
    while True:
        cmd = back.req_any(timeout=20)
        if cmd is None:
            break
        if cmd.req == b"quit":
            back.resp(cmd, b"bye")
            break
        served.append([cmd.domid, cmd.handle, cmd.uuid_str, cmd.locality, len(cmd.req)])
        back.resp(cmd, answer(cmd.req, cmd.locality))
    back.shutdown()
    return {"first": list(first), "served": served, "events": events}


def frontend(xen, printk, n: int, reopen: bool, quit: bool) -> dict:
    results = []
    for round_ in range(2 if reopen else 1):
        try:
            front = TpmFront(xen, printk, timeout=20)
        except TpmFrontError as e:
            return {"error": str(e)}
        for i in range(n):
            req = bytes([round_, i]) * (1 + 300 * i)
            front.set_locality(i % 5)
            rsp = front.cmd(req, timeout=20)
            results.append(rsp == answer(req, i % 5))
        if quit and round_ == (1 if reopen else 0):
            results.append(front.cmd(b"quit", timeout=20) == b"bye")
        front.shutdown()
    return {"results": results}


def main() -> None:
    xen = XenInterface.from_env()
    printk = make_printk(xen.console_write)
    role = sys.argv[1]
    if role == "backend":
        out = backend(xen, printk)
    else:
        out = frontend(xen, printk, int(sys.argv[2]), "reopen" in sys.argv, "quit" in sys.argv)
    print(json.dumps(out), flush=True)
    xen.close()


if __name__ == "__main__":
    main()
