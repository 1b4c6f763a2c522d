"""A guest domain that keeps device/vtpm/0 open: one TPM command per hex
line on stdin, one hex response line (or "ERR <text>") on stdout; at end
of input it closes the frontend and removes its device dir, as a guest
that goes away does."""

from __future__ import annotations

import sys

from pyxl.domain.drivers.tpmfront import TpmFront, TpmFrontError
from pyxl.domain.minios import make_printk
from pyxl.domain.xen import XenInterface


def main() -> None:
    xen = XenInterface.from_env()
    front = TpmFront(xen, make_printk(xen.console_write), timeout=30)
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            print(front.cmd(bytes.fromhex(line.strip()), timeout=60).hex(), flush=True)
        except TpmFrontError as e:
            print("ERR %s" % e, flush=True)
    front.shutdown()
    xen.rm("device/vtpm/0")
    xen.close()


if __name__ == "__main__":
    main()
