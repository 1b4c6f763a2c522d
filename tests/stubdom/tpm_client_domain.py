"""A guest domain that opens device/vtpm/0 with a frontend, sends the TPM
commands given as hex arguments, prints the responses as a JSON list of
hex strings and closes (leaving the xenstore dirs, as a shut-down guest's
toolstack would remove them)."""

from __future__ import annotations

import json
import sys

from pyxl.domain.drivers.tpmfront import TpmFront
from pyxl.domain.minios import make_printk
from pyxl.domain.xen import XenInterface


def main() -> None:
    xen = XenInterface.from_env()
    front = TpmFront(xen, make_printk(xen.console_write), timeout=30)
    out = [front.cmd(bytes.fromhex(a), timeout=60).hex() for a in sys.argv[1:]]
    front.shutdown()
    xen.rm("device/vtpm/0")               # the guest is gone: its device dir vanishes
    print(json.dumps(out), flush=True)
    xen.close()


if __name__ == "__main__":
    main()
