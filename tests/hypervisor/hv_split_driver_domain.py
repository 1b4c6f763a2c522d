"""A domain process for the split-driver integration test.

Run as `python hv_split_driver_domain.py frontend|backend` with PYXL_XEN_FD
set; talks only through its XenInterface, like a real stub domain would, and
prints one JSON line describing what it saw.
"""

from __future__ import annotations

import json
import sys

from pyxl.domain.drivers import xenbus
from pyxl.domain.drivers.tpmif import TPMIF_STATE_CANCEL, TPMIF_STATE_SUBMIT, SharedPage
from pyxl.domain.xen import XenInterface

TIMEOUT = 10.0


def answer(request: bytes, locality: int) -> bytes:
    """A stand-in for the TPM: something the frontend can check."""
    return b"RSP" + bytes([locality]) + request[::-1]


def backend(xen: XenInterface) -> dict:
    xen.watch("backend/vtpm", "be")
    found = None
    while found is None:
        if xen.read_watch(TIMEOUT, token="be") is None:
            raise SystemExit("no frontend appeared")
        for fe in (xen.directory("backend/vtpm") if xen.exists("backend/vtpm") else []):
            for devid in xen.directory(f"backend/vtpm/{fe}"):
                found = (int(fe), int(devid))
    fe, devid = found
    be_path = f"{xen.home}/backend/vtpm/{fe}/{devid}"
    fe_path = xen.read_str(f"{be_path}/frontend")
    uuid = xen.read_str(f"{be_path}/uuid")
    xen.write(f"{be_path}/feature-protocol-v2", "1")
    xenbus.switch_state(xen, be_path, xenbus.XenbusStateInitWait)

    if xenbus.wait_for_state(xen, fe_path, {xenbus.XenbusStateInitialised,
                                            xenbus.XenbusStateConnected}, TIMEOUT) is None:
        raise SystemExit("frontend never initialised")
    if xen.read_str(f"{fe_path}/feature-protocol-v2", default="0") != "1":
        raise SystemExit("vTPM protocol 2 required")
    ring_ref = int(xen.read_str(f"{fe_path}/ring-ref"))
    remote_port = int(xen.read_str(f"{fe_path}/event-channel"))
    mapping = xen.map_grant(fe, ring_ref)
    port = xen.evtchn_bind_interdomain(fe, remote_port)
    xen.write(f"{be_path}/ready", "1")
    xenbus.switch_state(xen, be_path, xenbus.XenbusStateConnected)

    page = SharedPage(mapping.buf)
    served = cancels = 0
    while True:
        fired = xen.evtchn_wait(port, timeout=0.2)
        if fired is not None:
            if page.state == TPMIF_STATE_SUBMIT:
                request, locality = page.request()
                page.finish(answer(request, locality))
                served += 1
                xen.evtchn_notify(port)
            elif page.state == TPMIF_STATE_CANCEL:
                page.idle()
                cancels += 1
                xen.evtchn_notify(port)
        if xenbus.read_state(xen, fe_path) in (xenbus.XenbusStateClosing,
                                               xenbus.XenbusStateClosed,
                                               xenbus.XenbusStateUnknown):
            break
    # disconnect: unmap and unbind before saying Closed, so the front may free
    xenbus.switch_state(xen, be_path, xenbus.XenbusStateClosing)
    xen.unmap_grant(mapping)
    xen.evtchn_close(port)
    xenbus.switch_state(xen, be_path, xenbus.XenbusStateClosed)
    return {"role": "backend", "domid": xen.domid, "frontend": [fe, devid], "uuid": uuid,
            "served": served, "cancels": cancels}


def frontend(xen: XenInterface) -> dict:
    fe_path = f"{xen.home}/device/vtpm/0"
    be_path = xen.read_str(f"{fe_path}/backend")
    be_id = int(xen.read_str(f"{fe_path}/backend-id"))

    page = xen.alloc_page()
    shared = SharedPage(page.buf)
    shared.init()
    ref = xen.grant_access(page, be_id)
    port = xen.evtchn_alloc_unbound(be_id)

    def publish(tx):
        xen.write(f"{fe_path}/ring-ref", str(ref), tx)
        xen.write(f"{fe_path}/event-channel", str(port), tx)
        xen.write(f"{fe_path}/feature-protocol-v2", "1", tx)
    xen.transaction(publish)
    xenbus.switch_state(xen, fe_path, xenbus.XenbusStateInitialised)

    if xenbus.wait_for_state(xen, be_path, xenbus.XenbusStateConnected, TIMEOUT) is None:
        raise SystemExit("backend never connected")
    if xen.read_str(f"{be_path}/feature-protocol-v2", default="0") != "1":
        raise SystemExit("vTPM protocol 2 required")
    xenbus.switch_state(xen, fe_path, xenbus.XenbusStateConnected)

    # the bind left our port pending; consume it like Linux's first interrupt
    xen.evtchn_wait(port, timeout=0.5)
    results = []
    requests = [(b"\x00\xc1\x00\x00\x00\x0a\x00\x00\x00\x99", 0), (b"hello", 2),
                (bytes(range(256)) * 15, 0)]
    for request, locality in requests:
        shared.submit(request, locality)
        xen.evtchn_notify(port)
        if xen.evtchn_wait(port, timeout=TIMEOUT) is None:
            raise SystemExit("no response")
        results.append({"state": shared.state, "ok": shared.response() == answer(request, locality),
                        "length": shared.length})
    # CANCEL while the backend is idle: it answers IDLE and notifies
    shared.cancel()
    xen.evtchn_notify(port)
    if xen.evtchn_wait(port, timeout=TIMEOUT) is None:
        raise SystemExit("cancel not acknowledged")
    cancel_state = shared.state
    mapped_while_busy = False
    try:
        xen.end_access(ref)
    except OSError as e:
        mapped_while_busy = e.errno == 16      # EBUSY: the backend still maps it

    xenbus.switch_state(xen, fe_path, xenbus.XenbusStateClosing)
    if xenbus.wait_for_state(xen, be_path, xenbus.XenbusStateClosed, TIMEOUT) is None:
        raise SystemExit("backend never closed")
    xen.end_access(ref)                        # now it may be freed
    xen.evtchn_close(port)
    xenbus.switch_state(xen, fe_path, xenbus.XenbusStateClosed)
    xen.console_write(f"frontend {xen.domid} done\n")
    return {"role": "frontend", "domid": xen.domid, "backend": be_id, "results": results,
            "cancel_state": cancel_state, "busy_while_mapped": mapped_while_busy}


def main() -> None:
    xen = XenInterface.from_env()
    out = {"frontend": frontend, "backend": backend}[sys.argv[1]](xen)
    print(json.dumps(out), flush=True)
    xen.close()


if __name__ == "__main__":
    main()
