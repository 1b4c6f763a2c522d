"""Daemon operations for xl's PV device commands: block-*, network-*
(libxl_disk.c, libxl_nic.c and libxl_device.c's add and remove paths).

Dom0 is the backend domain of these devices, so the daemon plays dom0's
blkback and netback and runs their hotplug scripts: a new backend goes to
InitWait, which is what libxl__wait_device_connection waits for, and a vif
gets `hotplug-status connected`.  Removal is libxl's: only a Connected
backend is asked to close and waited for; `force` (block-detach -f,
libxl_device_disk_destroy) does not wait.
"""

from __future__ import annotations

import os
import uuid as uuidlib

from pyxl.toolstack import devices
from pyxl.toolstack.errors import Fault
from pyxl.toolstack.ops import Op
from pyxl.toolstack.devices import DESTROY_TIMEOUT, DEVICE_TIMEOUT

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, Callable, TypeAlias

    from pyxl.hypervisor.domain import Domain
    from pyxl.hypervisor.xenstore import XsConnection
    from pyxl.toolstack.daemon import Daemon
    from pyxl.toolstack.hostd import HostState

    # devices.<kind>_info(xs, domid, devid) and devices.add_<kind>(xs, domid, backend_domid, cfg)
    Info: TypeAlias = Callable[[XsConnection, int, int], dict | None]
    Add: TypeAlias = Callable[[XsConnection, int, int, dict], tuple[str, str]]


def _timeout(a: dict[str, Any], default: float) -> float:
    t = a.get("device_timeout")
    return float(t) if t is not None else default


def _domain(st: HostState, dom_q: str, fault: str, **args: object) -> Domain:
    """The domain for a libxl device call: a name that names no domain was
    refused by xl already (libxl_domain_qualifier_to_domid, find_domain); a
    number that names none fails in libxl with `fault`."""
    try:
        return st.resolve(dom_q)
    except Fault as f:
        if f.name == "NO_SUCH_DOMID":
            raise Fault(fault, domid=dom_q, **args) from None
        raise


def _rows(st: HostState, dom_q: str, kind: str, info: Info | None = None) -> list:
    """libxl_device_<kind>_list + getinfo (`info(xs, domid, devid)`, by
    default devices.device_info for `kind`), with the host lock held: a
    domid with nothing there lists nothing."""
    try:
        dom = st.resolve(dom_q)
    except Fault as f:
        if f.name == "NO_SUCH_DOMID":
            return []
        raise
    if info is None:
        rows = [devices.device_info(st.xs, dom.domid, kind, i)
                for i in devices.device_ids(st.xs, dom.domid, kind)]
    else:
        rows = [info(st.xs, dom.domid, i) for i in devices.device_ids(st.xs, dom.domid, kind)]
    return [r for r in rows if r is not None]


def _list(d: Daemon, a: dict[str, Any], kind: str, info: Info | None) -> list:
    with d.state.lock:
        return _rows(d.state, a["dom"], kind, info)


# -- block ------------------------------------------------------------------

def block_attach(d: Daemon, a: dict[str, Any]) -> int:
    """libxl_device_disk_add: setdefault (the image is stat'ed), the vdev
    checked, both directories written in one transaction, then blkback
    opens the image and goes to InitWait.  The disk joins the domain's
    saved configuration (device_add_domain_config)."""
    st = d.state
    disk = dict(a["disk"])
    with st.lock:
        dom = _domain(st, a["dom"], "DISK_ADD_NO_DOMAIN")
        vdev = disk.get("vdev") or ""
        path = disk.get("pdev_path") or ""
        if path and not os.path.exists(path):
            raise Fault("DISK_ADD_STAT", domid=dom.domid, vdev=vdev, path=path)
        devid = devices.vdev_to_devid(vdev)
        if devid < 0:
            raise Fault("DISK_ADD_VDEV", domid=dom.domid, vdev=vdev)
        if devid in devices.device_ids(st.xs, dom.domid, "vbd"):
            raise Fault("DISK_ADD_EXISTS", domid=dom.domid)
        fd = -1
        if path:
            flags = os.O_RDWR if devices.disk_readwrite(disk) else os.O_RDONLY
            try:
                fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOCTTY)
            except OSError as e:
                raise Fault("DISK_ADD_STAT", domid=dom.domid, vdev=vdev,
                            path="%s: %s" % (path, os.strerror(e.errno or 0))) from None
        _, be = devices.add_vbd(st.xs, dom.domid, 0, disk, devid)
        if fd >= 0:
            st.disk_fds.setdefault(dom.domid, []).append((vdev, fd))
            size = os.fstat(fd).st_size
            st.xs.write(be + "/sectors", str(size // 512))
            st.xs.write(be + "/sector-size", "512")
        devices.backend_ready(st.xs, be, hotplug=False)
        dom.config.setdefault("disks", []).append(disk)
        st.save()
    return devid


def block_list(d: Daemon, a: dict[str, Any]) -> list:
    """libxl_device_disk_list + libxl_device_disk_getinfo for one domain."""
    st = d.state
    with st.lock:
        return _rows(st, a["dom"], "vbd")


def block_list_each(d: Daemon, a: dict[str, Any]) -> list[dict[str, Any]]:
    """main_blocklist's loop: block_list for each domain in turn, in one
    request (a request per domain cost more than the lists themselves on a
    host of hundreds).  Each domain's answer stands alone, as each of xl's
    libxl calls does: {"ok": true, "result": rows} or the Fault's wire form."""
    st = d.state
    if not isinstance(a["doms"], list):
        raise Fault("BAD_REQUEST", reason="block_list_each: doms is a list of domains")
    out: list[dict[str, Any]] = []
    with st.lock:
        # names to domids in one pass (resolve looks a name up among all domains)
        domid_of = {d.name: str(d.domid) for d in st.table.domains.values()}
        for q in a["doms"]:
            q = str(q)
            if not q.isdigit():          # all digits is a domid, whatever a name says
                q = domid_of.get(q, q)
            try:
                out.append({"ok": True, "result": _rows(st, q, "vbd")})
            except Fault as f:
                out.append({"ok": False, **f.to_wire()})
    return out


def block_detach(d: Daemon, a: dict[str, Any]) -> None:
    """libxl_vdev_to_device_disk, then libxl_device_disk_safe_remove (the
    backend must close in time, else nothing is removed) or, with force,
    libxl_device_disk_destroy."""
    st = d.state
    force = bool(a.get("force"))
    with st.lock:
        dom = _domain(st, a["dom"], "DISK_NOT_CONNECTED", vdev=a["vdev"])
        devid = devices.vdev_to_devid(a["vdev"])
        if devid < 0 or devid not in devices.device_ids(st.xs, dom.domid, "vbd"):
            raise Fault("DISK_NOT_CONNECTED", vdev=a["vdev"])
        vdev = devices.read(st.xs, "/libxl/%d/device/vbd/%d/dev" % (dom.domid, devid)) or ""
    ok = devices.remove_device(st.xs, dom.domid, "vbd", devid,
                               0 if force else _timeout(a, DESTROY_TIMEOUT),
                               alive=lambda: dom.domid in st.table.domains)
    if not ok and not force:
        raise Fault("DISK_REMOVE_TIMEOUT", domid=dom.domid, devid=devid,
                    verb="safe_remove")
    if not ok:
        devices.remove_device(st.xs, dom.domid, "vbd", devid, 0, alive=lambda: False)
    with st.lock:
        keep = []
        for v, fd in st.disk_fds.get(dom.domid, []):
            if v == vdev:
                os.close(fd)
            else:
                keep.append((v, fd))
        st.disk_fds[dom.domid] = keep
        dom.config["disks"] = [x for x in dom.config.get("disks") or []
                               if devices.vdev_to_devid(x.get("vdev") or "") != devid]
        st.save()


# -- network ----------------------------------------------------------------

def network_attach(d: Daemon, a: dict[str, Any]) -> int:
    """libxl_device_nic_add: setdefault (a MAC in Xen's OUI when none was
    given, backend resolved), the next free devid (libxl__device_nextid),
    the vif wired as libxl__set_xenstore_nic writes it; netback and
    vif-bridge answer.  The nic joins the saved configuration with the
    devid, type and MAC libxl__update_config_nic copies back."""
    st = d.state
    nic = dict(a["nic"])
    with st.lock:
        dom = _domain(st, a["dom"], "NIC_ADD_NO_DOMAIN")
        be_domid = 0
        if nic.get("backend_domname"):
            try:
                be_domid = st.resolve(nic["backend_domname"]).domid
            except Fault:
                raise Fault("NIC_ADD_FAILED") from None
        used = devices.device_ids(st.xs, dom.domid, "vif")
        if int(nic.get("devid", -1)) < 0:      # libxl__device_nextid: the last one's + 1
            nic["devid"] = used[-1] + 1 if used else 0
        elif int(nic["devid"]) in used:
            raise Fault("NIC_ADD_EXISTS", domid=dom.domid)
        full = devices.nic_setdefault(nic, uuidlib.uuid4().bytes)
        _, be = devices.add_vif(st.xs, dom.domid, be_domid, full)
        if be_domid == 0:
            devices.backend_ready(st.xs, be, hotplug=True)
        nic.update(devid=full["devid"], mac=full["mac"], nictype="vif")
        dom.config.setdefault("nics", []).append(nic)
        st.save()
    return int(full["devid"])


def network_list(d: Daemon, a: dict[str, Any]) -> list:
    """libxl_device_nic_list + libxl_device_nic_getinfo for one domain."""
    st = d.state
    with st.lock:
        return _rows(st, a["dom"], "vif")


def network_detach(d: Daemon, a: dict[str, Any]) -> None:
    """libxl_devid_to_device_nic / libxl_mac_to_device_nic, then
    libxl_device_nic_remove: a backend that does not close in time is
    removed anyway (LIBXL__FORCE_AUTO)."""
    st = d.state
    dev = a["dev"]
    with st.lock:
        dom = _domain(st, a["dom"], "UNKNOWN_DEVICE", dev=dev)
        rows = _rows(st, a["dom"], "vif")
        if ":" in dev:
            hit = [r for r in rows if r["mac"].lower() == dev.lower()]
        else:
            hit = [r for r in rows if r["devid"] == _atoi(dev)]
        if not hit:
            raise Fault("UNKNOWN_DEVICE", dev=dev)
        devid = hit[0]["devid"]
    if not devices.remove_device(st.xs, dom.domid, "vif", devid, _timeout(a, DESTROY_TIMEOUT),
                                 alive=lambda: dom.domid in st.table.domains):
        devices.remove_device(st.xs, dom.domid, "vif", devid, 0, alive=lambda: False)
    with st.lock:
        dom.config["nics"] = [n for n in dom.config.get("nics") or []
                              if int(n.get("devid", -1)) != devid]
        st.save()


# -- vkb --------------------------------------------------------------------

def vkb_attach(d: Daemon, a: dict[str, Any]) -> int:
    """libxl_device_vkb_add through libxl__device_add_async: a QEMU backend
    needs the domain's device model, which a PV guest here has not
    (libxl__dm_check_start); a Linux (vinput) backend is wired and waited
    for as long as libxl waits (LIBXL_INIT_TIMEOUT); none runs in dom0, so
    the device is left as libxl leaves it and the command fails."""
    st = d.state
    vkb = dict(a["vkb"])
    timeout = _timeout(a, DEVICE_TIMEOUT)
    with st.lock:
        try:
            dom = st.resolve(a["dom"])
        except Fault as f:
            if f.name == "NO_SUCH_DOMID":
                raise Fault("VKB_ADD_FAILED") from None
            raise
        be_domid = 0
        if vkb.get("backend_domname"):
            try:
                be_domid = st.resolve(vkb["backend_domname"]).domid
            except Fault:
                raise Fault("VKB_ADD_FAILED") from None
        vkb.setdefault("backend_type", "qemu")     # libxl__device_vkb_setdefault
        used = devices.device_ids(st.xs, dom.domid, "vkbd")
        if int(vkb.get("devid", -1)) < 0:
            vkb["devid"] = used[-1] + 1 if used else 0
        if vkb["backend_type"] == "qemu":
            raise Fault("VKB_DM_REQUIRED", domid=dom.domid)
        if int(vkb["devid"]) in used:
            raise Fault("VKB_ADD_EXISTS", domid=dom.domid)
        _, be = devices.add_vkb(st.xs, dom.domid, be_domid, vkb)
        dom.config.setdefault("vkbs", []).append(vkb)
        st.save()
    if not devices.wait_state(st.xs, be, devices.XenbusStateInitWait, timeout,
                              alive=lambda: be_domid in st.table.domains):
        raise Fault("VKB_ADD_TIMEOUT", domid=dom.domid, path=be, devid=vkb["devid"])
    return int(vkb["devid"])


def vkb_list(d: Daemon, a: dict[str, Any]) -> list:
    """libxl_device_vkb_list + libxl_device_vkb_getinfo for one domain."""
    return _list(d, a, "vkbd", devices.vkb_info)


def vkb_detach(d: Daemon, a: dict[str, Any]) -> None:
    """libxl_devid_to_device_vkb, then libxl_device_vkb_remove."""
    _detach(d, a, "vkbd", "vkbs", "DEVID_NOT_CONNECTED")


# -- vdispl -----------------------------------------------------------------

def _attach_frontend(d: Daemon, a: dict[str, Any], arg: str, kind: str, cfg_key: str, add: Add, fault: str) -> int:
    """libxl__device_add_async for a PV device that no dom0 backend serves:
    the device (a[arg]) is wired as `add` writes it and waited for; with no
    backend it fails as libxl does on timeout, the device left in place
    (libxl_device.c device_backend_callback).  A devid of -1 is
    libxl__device_nextid's: the last id in xenstore's order, plus one.
    Faults are FAULT_FAILED / _EXISTS / _TIMEOUT."""
    st = d.state
    dev = dict(a[arg])
    timeout = _timeout(a, DEVICE_TIMEOUT)
    with st.lock:
        try:
            dom = st.resolve(a["dom"])
        except Fault as f:
            if f.name == "NO_SUCH_DOMID":
                raise Fault(fault + "_FAILED") from None
            raise
        be_domid = 0
        if dev.get("backend_domname"):
            try:
                be_domid = st.resolve(dev["backend_domname"]).domid
            except Fault:
                raise Fault(fault + "_FAILED") from None
        used = devices.device_ids(st.xs, dom.domid, kind)
        if int(dev.get("devid", -1)) < 0:
            dev["devid"] = used[-1] + 1 if used else 0
        elif int(dev["devid"]) in used:
            raise Fault(fault + "_EXISTS", domid=dom.domid)
        _, be = add(st.xs, dom.domid, be_domid, dev)
        dom.config.setdefault(cfg_key, []).append(dev)
        st.save()
    if not devices.wait_state(st.xs, be, devices.XenbusStateInitWait, timeout,
                              alive=lambda: be_domid in st.table.domains):
        raise Fault(fault + "_TIMEOUT", domid=dom.domid, path=be, devid=dev["devid"])
    return int(dev["devid"])


def vdispl_attach(d: Daemon, a: dict[str, Any]) -> int:
    """libxl_device_vdispl_add, wired as libxl__set_xenstore_vdispl writes it."""
    return _attach_frontend(d, a, "vdispl", "vdispl", "vdispls", devices.add_vdispl, "VDISPL_ADD")


def vdispl_list(d: Daemon, a: dict[str, Any]) -> list:
    """libxl_device_vdispl_list + libxl_device_vdispl_getinfo for one domain."""
    return _list(d, a, "vdispl", devices.vdispl_info)


def vdispl_detach(d: Daemon, a: dict[str, Any]) -> None:
    """libxl_devid_to_device_vdispl, then libxl_device_vdispl_remove."""
    _detach(d, a, "vdispl", "vdispls", "DEVID_NOT_CONNECTED")


# -- vsnd -------------------------------------------------------------------

def vsnd_attach(d: Daemon, a: dict[str, Any]) -> int:
    """libxl_device_vsnd_add, wired as libxl__set_xenstore_vsnd writes it."""
    return _attach_frontend(d, a, "vsnd", "vsnd", "vsnds", devices.add_vsnd, "VSND_ADD")


def vsnd_list(d: Daemon, a: dict[str, Any]) -> list:
    """libxl_device_vsnd_list + libxl_device_vsnd_getinfo for one domain."""
    return _list(d, a, "vsnd", devices.vsnd_info)


def vsnd_detach(d: Daemon, a: dict[str, Any]) -> None:
    """libxl_devid_to_device_vsnd, then libxl_device_vsnd_remove."""
    _detach(d, a, "vsnd", "vsnds", "DEVID_NOT_CONNECTED")


# -- usb --------------------------------------------------------------------

USBIF_MAX_PORTNR = 31       # xen/include/public/io/usbif.h


def usbctrl_attach(d: Daemon, a: dict[str, Any]) -> int:
    """libxl_device_usbctrl_add (libxl_usb.c) on a PV guest.  The simulated
    dom0 has no usbback driver (usbback_is_loaded: no
    /sys/bus/usb/drivers/usbback), so an `auto` controller becomes `qusb`,
    whose QEMU backend a PV guest here has not: libxl__dm_check_start
    refuses it; a `devicemodel` one is asked of a QEMU that is not there.  An explicit `pv` controller is wired as
    libxl__device_usbctrl_add_xenstore writes it and waited for
    (libxl__wait_device_connection, LIBXL_INIT_TIMEOUT); with no usbback
    nothing answers, and the controller stays as libxl leaves it."""
    st = d.state
    ctrl = dict(a["usbctrl"])
    timeout = _timeout(a, DEVICE_TIMEOUT)
    with st.lock:
        dom = _domain(st, a["dom"], "USBCTRL_ADD_FAILED")
        kind = ctrl.get("type") or "auto"
        if kind == "auto":
            kind = "qusb"                      # usbback_is_loaded() == 0
        version = int(ctrl.get("version") or 0) or 2
        ports = int(ctrl.get("ports") or 0)
        if kind == "devicemodel":
            # QEMU's fixed controllers: uhci 2 ports, ehci 6, xhci up to 15
            if version not in (1, 2, 3):
                raise Fault("USBCTRL_DM_VERSION")
            fixed = {1: 2, 2: 6}.get(version)
            if fixed and ports and ports != fixed:
                raise Fault("USBCTRL_DM_PORTS_%d" % version)
            ports = fixed or ports or 8
            if ports > 15:
                raise Fault("USBCTRL_DM_PORTS_3")
        else:
            if version not in (1, 2):
                raise Fault("USBCTRL_PV_VERSION")
            ports = ports or 8
            if not 1 <= ports <= USBIF_MAX_PORTNR:
                raise Fault("USBCTRL_PV_PORTS")
        used = devices.device_ids(st.xs, dom.domid, "vusb")
        devid = int(ctrl.get("devid", -1))
        if devid < 0:
            devid = max(used) + 1 if used else 0        # libxl__device_nextid
        if kind == "devicemodel":
            # recorded in the saved configuration, then handed to the
            # domain's QEMU over QMP (libxl__device_usbctrl_add_hvm): a PV
            # guest here has none to connect to; libxl takes its xenstore
            # entries back (libxl__device_usbctrl_del_xenstore)
            ctrl.update(type=kind, version=version, ports=ports, devid=devid)
            dom.config.setdefault("usbctrls", []).append(ctrl)
            st.save()
            raise Fault("USBCTRL_QMP_FAILED", domid=dom.domid, devid=devid)
        if kind == "qusb":
            raise Fault("USBCTRL_DM_REQUIRED", domid=dom.domid)
        if devid in used:
            raise Fault("USBCTRL_ADD_EXISTS", domid=dom.domid)
        ctrl.update(type=kind, version=version, ports=ports, devid=devid)
        _, be = devices.add_usbctrl(st.xs, dom.domid, 0, ctrl)
        dom.config.setdefault("usbctrls", []).append(ctrl)
        st.save()
    if not devices.wait_state(st.xs, be, devices.XenbusStateInitWait, timeout):
        raise Fault("USBCTRL_ADD_TIMEOUT", domid=dom.domid, path=be, devid=devid)
    return devid


def usb_list(d: Daemon, a: dict[str, Any]) -> list:
    """libxl_device_usbctrl_list + libxl_device_usbctrl_getinfo for one domain."""
    return _list(d, a, "vusb", devices.usbctrl_info)


def usbctrl_detach(d: Daemon, a: dict[str, Any]) -> None:
    """libxl_devid_to_device_usbctrl (an unknown one named as xl was given
    it), then libxl_device_usbctrl_remove: the controller's devices first
    (none can be attached here), then the generic removal of a PV
    controller."""
    _detach(d, a, "vusb", "usbctrls", "USBCTRL_UNKNOWN", dev=a["name"])


def usbdev_attach(d: Daemon, a: dict[str, Any]) -> None:
    """libxl_device_usbdev_add: a named controller must exist (else the add
    fails without a word); then is_usbdev_assignable looks for the host
    device hostbus.hostaddr under /sys/bus/usb/devices, where the simulated
    host has none."""
    st = d.state
    ctrl = int(a["usbdev"].get("ctrl", -1))
    with st.lock:
        try:
            dom = st.resolve(a["dom"])
            domid, used = dom.domid, devices.device_ids(st.xs, dom.domid, "vusb")
        except Fault as f:
            if f.name != "NO_SUCH_DOMID":
                raise
            domid, used = int(a["dom"]), []
    if ctrl != -1 and ctrl not in used:
        raise Fault("USBDEV_ADD_FAILED")
    raise Fault("USBDEV_NOT_ASSIGNABLE", domid=domid)


def usbdev_detach(d: Daemon, a: dict[str, Any]) -> None:
    """libxl_ctrlport_to_device_usbdev: no port of any controller holds a
    host device (none can be assigned on this host)."""
    st = d.state
    with st.lock:
        _domain(st, a["dom"], "USBDEV_UNKNOWN", ctrl=a["ctrl"], port=a["port"])
    raise Fault("USBDEV_UNKNOWN", ctrl=a["ctrl"], port=a["port"])


def _detach(d: Daemon, a: dict[str, Any], kind: str, config_key: str, fault: str, **fault_args: object) -> None:
    """libxl_devid_to_device_<kind>, then libxl_device_<kind>_remove: a
    backend that does not close in time is removed anyway."""
    st = d.state
    devid = int(a["devid"])
    with st.lock:
        dom = _domain(st, a["dom"], fault, devid=devid, **fault_args)
        if devid not in devices.device_ids(st.xs, dom.domid, kind):
            raise Fault(fault, devid=devid, **fault_args)
    if not devices.remove_device(st.xs, dom.domid, kind, devid, _timeout(a, DESTROY_TIMEOUT),
                                 alive=lambda: dom.domid in st.table.domains):
        devices.remove_device(st.xs, dom.domid, kind, devid, 0, alive=lambda: False)
    with st.lock:
        dom.config[config_key] = [v for v in dom.config.get(config_key) or []
                                  if int(v.get("devid", -1)) != devid]
        st.save()


def channel_list(d: Daemon, a: dict[str, Any]) -> list:
    """libxl_device_channel_list + getinfo for one domain."""
    st = d.state
    with st.lock:
        try:
            dom = st.resolve(a["dom"])
        except Fault as f:
            if f.name == "NO_SUCH_DOMID":
                return []
            raise
        return devices.list_channels(st.xs, dom.domid)


def _atoi(s: str) -> int:
    """C atoi: leading whitespace, a sign, digits; anything else ends it."""
    import re

    m = re.match(r"\s*([+-]?\d+)", s)
    return int(m.group(1)) if m else 0


OPS: dict[str, Op] = {
    "block_attach": Op(block_attach, ("dom", "disk"), ("device_timeout",)),
    "block_list": Op(block_list, ("dom",)),
    "block_list_each": Op(block_list_each, ("doms",)),
    "block_detach": Op(block_detach, ("dom", "vdev"), ("force", "device_timeout")),
    "network_attach": Op(network_attach, ("dom", "nic"), ("device_timeout",)),
    "network_list": Op(network_list, ("dom",)),
    "network_detach": Op(network_detach, ("dom", "dev"), ("device_timeout",)),
    "channel_list": Op(channel_list, ("dom",)),
    "vkb_attach": Op(vkb_attach, ("dom", "vkb"), ("device_timeout",)),
    "vkb_list": Op(vkb_list, ("dom",)),
    "vkb_detach": Op(vkb_detach, ("dom", "devid"), ("device_timeout",)),
    "vdispl_attach": Op(vdispl_attach, ("dom", "vdispl"), ("device_timeout",)),
    "vdispl_list": Op(vdispl_list, ("dom",)),
    "vdispl_detach": Op(vdispl_detach, ("dom", "devid"), ("device_timeout",)),
    "vsnd_attach": Op(vsnd_attach, ("dom", "vsnd"), ("device_timeout",)),
    "vsnd_list": Op(vsnd_list, ("dom",)),
    "vsnd_detach": Op(vsnd_detach, ("dom", "devid"), ("device_timeout",)),
    "usbctrl_attach": Op(usbctrl_attach, ("dom", "usbctrl"), ("device_timeout",)),
    "usbctrl_detach": Op(usbctrl_detach, ("dom", "devid", "name"), ("device_timeout",)),
    "usb_list": Op(usb_list, ("dom",)),
    "usbdev_attach": Op(usbdev_attach, ("dom", "usbdev")),
    "usbdev_detach": Op(usbdev_detach, ("dom", "ctrl", "port")),
}
