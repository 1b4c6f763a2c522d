"""xl's vtpm-attach, vtpm-list and vtpm-detach on the simulated host
(libxl_vtpm.c through libxl_device.c's add and remove paths).  Each
function takes the HostState (pyxl.toolstack.hostd).
"""

from __future__ import annotations

import uuid as uuidlib

from pyxl.toolstack import devices
from pyxl.toolstack.errors import Fault

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from pyxl.toolstack.hostd import HostState


def attach(st: HostState, dom_q: str, uuid: str | None, backend: str | None,
           device_timeout: float = devices.DEVICE_TIMEOUT) -> int:
    """libxl_device_vtpm_add: the next free devid, both directories
    written, then the backend awaited (InitWait, or on past it:
    devices.wait_vtpm_backend); on timeout the device is taken away
    again."""
    with st.lock:
        dom = st.resolve(dom_q)
        be_domid = 0
        if backend is not None:
            try:        # libxl__device_vtpm_setdefault resolves backend_domname
                be_domid = st.resolve(backend).domid
            except Fault:
                raise Fault("VTPM_ADD_FAILED") from None
        used = {r["devid"] for r in devices.list_vtpms(st.xs, dom.domid)}
        devid = 0
        while devid in used:
            devid += 1
        uuid = uuid or str(uuidlib.uuid4())
        devices.add_vtpm(st.xs, dom.domid, be_domid, devid, uuid)
        dom.config.setdefault("vtpms", []).append(
            {"backend_domid": be_domid, "devid": devid, "uuid": uuid})
        st.save()
    be = "/local/domain/%d/backend/vtpm/%d/%d" % (be_domid, dom.domid, devid)
    if not devices.wait_vtpm_backend(st.xs, be, device_timeout,
                                     alive=lambda: be_domid in st.table.domains):
        with st.lock:
            devices.remove_vtpm(st.xs, dom.domid, devid, 0)
            dom.config["vtpms"] = [v for v in dom.config.get("vtpms", [])
                                   if v.get("devid") != devid]
            st.save()
        raise Fault("VTPM_ADD_TIMEOUT", domid=dom.domid, path=be)
    return devid


def list_(st: HostState, dom_q: str) -> list[dict]:
    """libxl_device_vtpm_list + getinfo (a domid naming nothing: no rows)."""
    with st.lock:
        try:
            dom = st.resolve(dom_q)
        except Fault as f:
            if f.name == "NO_SUCH_DOMID":   # a number is taken as a domid: nothing there
                return []
            raise
        return devices.list_vtpms(st.xs, dom.domid)


def detach(st: HostState, dom_q: str, dev: str,
           device_timeout: float = devices.DEVICE_TIMEOUT) -> None:
    """libxl_device_vtpm_remove, the device named by uuid or devid."""
    with st.lock:
        dom = st.resolve(dom_q)
        rows = devices.list_vtpms(st.xs, dom.domid)
        hit = [r for r in rows if r["uuid"].lower() == dev.lower()] or \
            [r for r in rows if dev.isdigit() and r["devid"] == int(dev)]
        if not hit:
            raise Fault("UNKNOWN_DEVICE", dev=dev)
        devid = hit[0]["devid"]
    devices.remove_vtpm(st.xs, dom.domid, devid, device_timeout)
    with st.lock:
        dom.config["vtpms"] = [v for v in dom.config.get("vtpms", [])
                               if v.get("devid") != devid]
        st.save()
