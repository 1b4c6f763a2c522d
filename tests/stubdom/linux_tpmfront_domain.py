"""A guest domain using Linux's xen-tpmfront semantics: probe, wait for the
backend, render the sysfs files, run a TPM_Extend, then close."""

from __future__ import annotations

import hashlib
import json
import struct

from pyxl.domain.drivers.xen_tpmfront import XenTpmFront, caps_text, pcrs_text, pubek_text
from pyxl.domain.xen import XenInterface


def main() -> None:
    xen = XenInterface.from_env()
    front = XenTpmFront(xen)
    ok = front.wait_connected(30)
    out = {"connected": ok, "state": xen.read_str("device/vtpm/0/state")}
    if ok:
        out["caps"] = caps_text(front.transmit)
        out["pubek"] = pubek_text(front.transmit)
        ext = front.transmit(struct.pack(">HIII", 0xC1, 34, 0x14, 16) + hashlib.sha1(b"x").digest())
        out["extend_rc"] = struct.unpack_from(">I", ext, 6)[0]
        out["pcrs"] = pcrs_text(front.transmit)
        front.close()
    print(json.dumps(out), flush=True)
    xen.close()


if __name__ == "__main__":
    main()
