"""Device and domain wiring in xenstore, as libxl writes it.

Paths, keys and permissions follow libxl (libxl_create.c libxl__domain_make,
libxl_dom.c libxl__build_post, libxl_device.c libxl__device_generic_add,
libxl_vtpm.c, libxl_disk.c, libxl_nic.c).  All functions
take a dom0 xenstore connection (`XsConnection` of pyxl.hypervisor.xenstore).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Callable

from pyxl.hypervisor import testfault
from pyxl.hypervisor.xenstore import payload_fits

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Protocol

    from pyxl.hypervisor.xenstore import XsConnection

    class XsTree(Protocol):
        """What path_cleanup needs of a xenstore connection: the daemon's
        in-process XsConnection and the xenstored socket's XsClient
        (`xl devd`) both have it."""
        def read(self, path: str, tx: int = ...) -> bytes: ...
        def directory(self, path: str, tx: int = ...) -> Sequence[str | bytes]: ...
        def rm(self, path: str, tx: int = ...) -> None: ...

DEVICE_TIMEOUT = 10.0        # LIBXL_INIT_TIMEOUT: how long a new backend gets to answer
DESTROY_TIMEOUT = 10.0       # LIBXL_DESTROY_TIMEOUT: how long a backend gets to close

# xenbus states (xen/include/public/io/xenbus.h)
XenbusStateUnknown = 0
XenbusStateInitialising = 1
XenbusStateInitWait = 2
XenbusStateInitialised = 3
XenbusStateConnected = 4
XenbusStateClosing = 5
XenbusStateClosed = 6

# What libxl__wait_device_connection waits for, InitWait, is where Linux's
# blkback and netback stay until their hotplug script has run (libxl does
# not wait at all for QEMU, which "will set the state of the device to 4
# directly").  Mini-os tpmback, a vTPM's backend, stays there only until
# its frontend is Initialised (tpmback.c new_tpmif: InitWait, then the
# frontend's state watched, connect_fe, Connected): one already
# Initialised -- a guest with xen-tpmfront loaded given a device, a stub
# domain's tpmfront started at once -- takes it on to Connected before a
# wait that reads the state a moment late sees InitWait.  A state it
# reaches only through InitWait says as much that it came up.
BACKEND_UP = (XenbusStateInitWait, XenbusStateInitialised, XenbusStateConnected)


def _tx(xs: XsConnection, fn: Callable[[int], object], retries: int = 20) -> None:
    """Run fn(tx) in a transaction, retrying on EAGAIN as libxl does."""
    for _ in range(retries):
        t = xs.transaction_start()
        try:
            fn(t)
        except BaseException:
            try:
                xs.transaction_end(t, False)
            except Exception:
                pass
            raise
        try:
            xs.transaction_end(t, True)
            return
        except OSError as e:
            if getattr(e, "name", "") != "EAGAIN":
                raise
    raise OSError("xenstore transaction kept failing")


def _write_dir(xs: XsConnection, t: int, base: str, kv: dict, perms: list[str] | None) -> None:
    xs.mkdir(base, t)
    if perms:
        xs.set_perms(base, perms, t)
    for k, v in kv.items():
        xs.write("%s/%s" % (base, k), str(v), t)


def write_domain(xs: XsConnection, domid: int, name: str, uuid: str, max_memkb: int, target_memkb: int,
                 vcpus: int, online: list[int], kernel: str, cmdline: str,
                 start_time: float) -> None:
    """The directories libxl__domain_make and libxl__build_post create;
    cpu/N/availability of each of the VCPUS says whether N is in ONLINE."""
    dom = "/local/domain/%d" % domid
    vm = "/vm/%s" % uuid
    ro = ["n0", "r%d" % domid]           # dom0 owns, the guest may read
    rw = ["n%d" % domid]                 # the guest owns

    def body(t: int) -> None:
        for p, perms in ((dom, ro), (vm, ro), ("/libxl/%d" % domid, ["n0"])):
            xs.mkdir(p, t)
            xs.set_perms(p, perms, t)
        for sub in ("cpu", "memory", "device", "control", "console"):
            xs.mkdir("%s/%s" % (dom, sub), t)
            xs.set_perms("%s/%s" % (dom, sub), ro, t)
        for sub in ("data", "drivers", "feature", "attr", "error", "control/shutdown",
                    "control/feature-poweroff", "control/feature-reboot",
                    "control/feature-suspend", "control/sysrq"):
            xs.mkdir("%s/%s" % (dom, sub), t)
            xs.set_perms("%s/%s" % (dom, sub), rw, t)
        xs.write(dom + "/control/platform-feature-multiprocessor-suspend", "1", t)
        xs.write(dom + "/control/platform-feature-xs_reset_watches", "1", t)
        xs.write(dom + "/vm", vm, t)
        xs.write(dom + "/name", name, t)
        xs.write(dom + "/domid", str(domid), t)
        xs.write(dom + "/memory/static-max", str(max_memkb), t)
        xs.write(dom + "/memory/target", str(target_memkb), t)
        for i in range(vcpus):
            xs.write("%s/cpu/%d/availability" % (dom, i), "online" if i in online else "offline", t)
        for k, v in (("type", "xenconsoled"), ("output", "pty"), ("limit", "1048576"),
                     ("tty", "/dev/pts/%d" % domid)):
            xs.write("%s/console/%s" % (dom, k), v, t)
        xs.write(vm + "/uuid", uuid, t)
        xs.write(vm + "/name", name, t)
        xs.write(vm + "/start_time", "%.2f" % start_time, t)
        xs.write(vm + "/image/ostype", "linux", t)
        xs.write(vm + "/image/kernel", kernel, t)
        # libxl__build_post ignores what libxl__xs_writev returns: a command
        # line too long for one xenstore message is just not recorded
        if payload_fits(vm + "/image/cmdline", cmdline):
            xs.write(vm + "/image/cmdline", cmdline, t)
        xs.write("/libxl/%d/type" % domid, "pv", t)

    _tx(xs, body)


def domain_paths(xs: XsConnection, domid: int, uuid: str) -> list[str]:
    """What libxl__destroy_domid removes: the domain's dirs and, for each of
    its devices, the backend's directory for it (found through the
    frontends' `backend` nodes, so the cost is per device, not per host)."""
    paths = ["/local/domain/%d" % domid, "/vm/%s" % uuid, "/libxl/%d" % domid]
    dev = "/local/domain/%d/device" % domid
    for kind in _ls(xs, dev):
        for devid in _ls(xs, "%s/%s" % (dev, kind)):
            be = read(xs, "%s/%s/%s/backend" % (dev, kind, devid))
            if be and be.rsplit("/", 1)[0] not in paths:
                paths.append(be.rsplit("/", 1)[0])      # .../backend/<kind>/<domid>
    return paths


def backend_domid_of(path: str) -> int | None:
    """/local/domain/<be>/backend/<kind>/<fe> -> be (None for other paths)."""
    parts = path.split("/")
    if len(parts) >= 6 and parts[1:3] == ["local", "domain"] and parts[4] == "backend":
        return int(parts[3]) if parts[3].isdigit() else None
    return None


def wait_backend_gone(xs: XsConnection, path: str, timeout: float,
                      alive: Callable[..., bool] = lambda: True) -> bool:
    """libxl__initiate_device_generic_remove's wait: a backend living in
    another domain (a vtpm-stubdom's tpmback) tears its own directories
    down once it sees the frontend go; give it LIBXL_DESTROY_TIMEOUT before
    removing what is left.  True if the backend cleaned up by itself.
    `alive()` is called without arguments (the host binds the backend's
    domid as the lambda's default, hence Callable[..., bool])."""
    return _await(xs, path, lambda: not _ls(xs, path), timeout, alive)


def _await(xs: XsConnection, path: str, done: Callable[[], bool], timeout: float,
           alive: Callable[..., bool]) -> bool:
    """libxl__ev_devstate_wait (libxl_event.c) over xenstore watches: a
    watch on `path` (it fires once at once, then on every change at or
    below it) and one on @releaseDomain (a domain shut down or went: is the
    one we wait on, `alive()`, still there?); `done()` is asked again at
    each event, until it holds or `timeout` has passed.  The watches are on
    a connection of their own, closed afterwards."""
    from pyxl.hypervisor.xenstore import QueueSink

    events = QueueSink()
    w = xs.store.connect(0, events)
    try:
        w.watch(path, "devstate")
        w.watch("@releaseDomain", "release")
        deadline = time.monotonic() + timeout
        while True:
            if done():
                return True
            left = deadline - time.monotonic()
            if left <= 0 or not alive():
                return False
            events.wait(left)
    finally:
        w.close()


def remove_paths(xs: XsConnection, paths: list[str]) -> None:
    for p in paths:
        try:
            xs.rm(p)
        except OSError:
            pass


def _ls(xs: XsConnection, path: str) -> list[str]:
    try:
        return list(xs.directory(path))
    except OSError:
        return []


def _exists(xs: XsConnection, path: str) -> bool:
    try:
        xs.read(path)
        return True
    except OSError:
        return False


def read(xs: XsConnection, path: str, default: str | None = None) -> str | None:
    try:
        v = xs.read(path)
    except OSError:
        return default
    return v.decode() if isinstance(v, (bytes, bytearray)) else v


# -- vbd ----------------------------------------------------------------

def vdev_to_devid(vdev: str) -> int:
    """libxl__device_disk_dev_number: xvdX / hdX / sdX (+ partition) -> devid."""
    m = re.fullmatch(r"(xvd|hd|sd)([a-z]+)(\d*)", vdev)
    if not m:
        if vdev.isdigit():
            return int(vdev)
        return -1
    prefix, letters, part = m.groups()
    disk = 0
    for ch in letters:
        disk = disk * 26 + (ord(ch) - ord("a") + 1)
    disk -= 1
    part = int(part or 0)
    if prefix == "xvd":
        if disk < 16 and part < 16:
            return (202 << 8) | (disk << 4) | part
        return (1 << 28) | (disk << 8) | part
    if prefix == "hd":
        major = (3, 22, 33, 34)[disk // 2] if disk < 8 else 0
        return (major << 8) | ((disk % 2) << 6) | part
    return (8 << 8) | (disk << 4) | part


def disk_readwrite(disk: dict) -> bool:
    """libxl_device_disk.readwrite as the libxl JSON carries it: the
    generator leaves out integers that are 0, so a disk given `,r` (or
    `ro`) has no "readwrite" key at all -- absent means read-only
    (libxl_types.idl `("readwrite", integer)`; libxlu_disk_l.l setaccess
    sets 1 for `w`/`rw`/empty and 0 for `r`/`ro`; libxl_disk.c writes the
    backend's `mode` as readwrite ? "w" : "r")."""
    return bool(disk.get("readwrite", 0))


def generic_add(xs: XsConnection, t: int, kind: str, domid: int, backend_domid: int, devid: int,
                back: dict, front: dict, ro_front: dict | None = None,
                backend_kind: str | None = None) -> tuple[str, str]:
    """libxl__device_generic_add (libxl_device.c), inside transaction `t`:
    the frontend (the guest owns it, the backend may read; `ro_front` keys
    dom0-owned, guest-readable), the backend (the backend domain owns it, the
    guest may read), and libxl's own copy of the backend keys under
    /libxl/<domid>/device (dom0 only), which the device lists read."""
    fe = "/local/domain/%d/device/%s/%d" % (domid, kind, devid)
    be = "/local/domain/%d/backend/%s/%d/%d" % (backend_domid, backend_kind or kind, domid, devid)
    lib = "/libxl/%d/device/%s/%d" % (domid, kind, devid)
    for path, perms, first, kv in ((fe, ["n%d" % domid, "r%d" % backend_domid], ("backend", be),
                                    front),
                                   (be, ["n%d" % backend_domid, "r%d" % domid],
                                    ("frontend", fe), back)):
        try:
            xs.rm(path, t)
        except OSError:
            pass
        _write_dir(xs, t, path, dict([first], **kv), perms)
    for k, v in (ro_front or {}).items():
        xs.write("%s/%s" % (fe, k), str(v), t)
        xs.set_perms("%s/%s" % (fe, k), ["n0", "r%d" % domid], t)
    try:
        xs.rm(lib, t)
    except OSError:
        pass
    _write_dir(xs, t, lib, dict({"frontend": fe, "backend": be}, **back), ["n0"])
    return fe, be


# The native protocol of a 64-bit PV guest, which libxl writes to a PV
# guest's vbd frontend (xen/include/public/io/protocols.h XEN_IO_PROTO_ABI_X86_64)
XEN_IO_PROTO_ABI_X86_64 = "x86_64-abi"


def vbd_entries(domid: int, backend_domid: int, disk: dict, devid: int) -> tuple[dict, dict]:
    """device_disk_add (libxl_disk.c): the backend and frontend keys of a
    phy disk, in libxl's order."""
    rw = disk_readwrite(disk)
    cdrom = "cdrom" if disk.get("is_cdrom") else "disk"
    back = {"params": disk.get("pdev_path") or "",
            "script": disk.get("script") or "/etc/xen/scripts/block",
            "frontend-id": domid, "online": 1, "removable": 1 if disk.get("removable") else 0,
            "bootable": 1, "state": XenbusStateInitialising, "dev": disk.get("vdev", ""),
            "type": "phy", "mode": "w" if rw else "r", "device-type": cdrom}
    if disk.get("direct_io_safe"):
        back["direct-io-safe"] = 1
    # libxl__device_disk_setdefault: discard_enable defaults to readwrite
    discard = disk.get("discard_enable")
    back["discard-enable"] = 1 if (rw if discard is None else discard) else 0
    front = {"backend-id": backend_domid, "state": XenbusStateInitialising,
             "virtual-device": devid, "device-type": cdrom,
             "protocol": XEN_IO_PROTO_ABI_X86_64}
    return back, front


def add_vbd(xs: XsConnection, domid: int, backend_domid: int, disk: dict, devid: int) -> tuple[str, str]:
    """Frontend + backend dirs of one disk (libxl__device_disk_add)."""
    back, front = vbd_entries(domid, backend_domid, disk, devid)
    out: list = []
    _tx(xs, lambda t: out.append(generic_add(xs, t, "vbd", domid, backend_domid, devid,
                                             back, front)))
    return out[-1]


# -- vif ------------------------------------------------------------------

NIC_MTU_DEFAULT = 1500       # libxl_nic.c LIBXL_DEVICE_NIC_MTU_DEFAULT


def random_mac(rand: bytes) -> str:
    """libxl__device_nic_setdefault: Xen's OUI 00:16:3e, then three bytes of
    a fresh UUID with the top bit of the first cleared."""
    return "00:16:3e:%02x:%02x:%02x" % (rand[0] & 0x7F, rand[1], rand[2])


def format_mac(mac: str | bytes | list[int]) -> str:
    """LIBXL_MAC_FMT of the libxl JSON's mac (a string or six octets)."""
    if isinstance(mac, str):
        return mac.lower()
    return ":".join("%02x" % b for b in mac)


def nic_setdefault(nic: dict, rand: bytes) -> dict:
    """libxl__device_nic_setdefault for a PV guest: mtu 1500, model rtl8139,
    a random MAC when none was given, bridge xenbr0, the vif-bridge script,
    type vif, trusted."""
    nic = dict(nic)
    nic.setdefault("mtu", NIC_MTU_DEFAULT)
    nic["mtu"] = nic["mtu"] or NIC_MTU_DEFAULT
    nic.setdefault("model", "rtl8139")
    mac = nic.get("mac")
    if not mac or format_mac(mac) == "00:00:00:00:00:00":
        nic["mac"] = random_mac(rand)
    else:
        nic["mac"] = format_mac(mac)
    nic["bridge"] = nic.get("bridge") or "xenbr0"
    nic["script"] = nic.get("script") or "vif-bridge"
    nic["nictype"] = "vif"
    nic.setdefault("trusted", True)
    return nic


def vif_entries(domid: int, backend_domid: int, nic: dict) -> tuple[dict, dict, dict]:
    """libxl__device_add_async's common keys, then libxl__set_xenstore_nic
    (libxl_nic.c): backend, frontend and dom0-owned frontend keys."""
    devid = int(nic["devid"])
    back: dict = {"frontend-id": domid, "online": 1, "state": XenbusStateInitialising}
    script = nic["script"]
    back["script"] = script if script.startswith("/") else "/etc/xen/scripts/" + script
    if nic.get("ifname"):
        back["vifname"] = nic["ifname"]
    back["mac"] = nic["mac"]
    if nic.get("ip"):
        back["ip"] = nic["ip"]
    if nic.get("gatewaydev"):
        back["gatewaydev"] = nic["gatewaydev"]
    if int(nic.get("rate_interval_usecs") or 0) > 0:
        back["rate"] = "%d,%d" % (int(nic.get("rate_bytes_per_interval") or 0),
                                  int(nic["rate_interval_usecs"]))
    if int(nic["mtu"]) != NIC_MTU_DEFAULT:
        back["mtu"] = int(nic["mtu"])
    back.update({"bridge": nic["bridge"], "handle": devid, "type": "vif",
                 "hotplug-status": ""})
    front = {"backend-id": backend_domid, "state": XenbusStateInitialising, "handle": devid,
             "mac": nic["mac"], "trusted": 1 if nic.get("trusted", True) else 0}
    return back, front, {"mtu": int(nic["mtu"])}


def add_vif(xs: XsConnection, domid: int, backend_domid: int, nic: dict) -> tuple[str, str]:
    """libxl__device_nic_add: one transaction (nic already setdefault-ed)."""
    back, front, ro_front = vif_entries(domid, backend_domid, nic)
    out: list = []
    _tx(xs, lambda t: out.append(generic_add(xs, t, "vif", domid, backend_domid,
                                             int(nic["devid"]), back, front, ro_front)))
    return out[-1]


# -- vkb --------------------------------------------------------------------

# xen/include/public/io/kbdif.h XENKBD_FIELD_*: the vkb config keys, in the
# order libxl__set_xenstore_vkb (libxl_vkb.c) writes them
VKB_FIELDS = (("feature_disable_keyboard", "feature-disable-keyboard"),
              ("feature_disable_pointer", "feature-disable-pointer"),
              ("feature_abs_pointer", "feature-abs-pointer"),
              ("feature_raw_pointer", "feature-raw-pointer"))
VKB_MT_FIELDS = (("multi_touch_width", "multi-touch-width"),
                 ("multi_touch_height", "multi-touch-height"),
                 ("multi_touch_num_contacts", "multi-touch-num-contacts"))


def vkb_backend_kind(vkb: dict) -> str:
    """libxl__device_from_vkb: a Linux backend is `vinput`, QEMU's `vkbd`."""
    return "vinput" if vkb.get("backend_type") == "linux" else "vkbd"


def vkb_entries(domid: int, backend_domid: int, vkb: dict) -> tuple[dict, dict]:
    """libxl__device_add_async's common keys, then libxl__set_xenstore_vkb."""
    back: dict = {"frontend-id": domid, "online": 1, "state": XenbusStateInitialising}
    if vkb.get("unique_id"):
        back["unique-id"] = vkb["unique_id"]
    for attr, key in VKB_FIELDS:
        if vkb.get(attr):
            back[key] = int(vkb[attr])
    if vkb.get("feature_multi_touch"):
        back["feature-multi-touch"] = int(vkb["feature_multi_touch"])
        for attr, key in VKB_MT_FIELDS:
            back[key] = int(vkb.get(attr) or 0)
    for key in ("width", "height"):
        if vkb.get(key):
            back[key] = int(vkb[key])
    return back, {"backend-id": backend_domid, "state": XenbusStateInitialising}


def add_vkb(xs: XsConnection, domid: int, backend_domid: int, vkb: dict) -> tuple[str, str]:
    back, front = vkb_entries(domid, backend_domid, vkb)
    out: list = []
    _tx(xs, lambda t: out.append(generic_add(xs, t, "vkbd", domid, backend_domid,
                                             int(vkb["devid"]), back, front,
                                             backend_kind=vkb_backend_kind(vkb))))
    return out[-1]


def vkb_info(xs: XsConnection, domid: int, devid: int) -> dict | None:
    """libxl_device_vkb_getinfo, with the list's unique-id and backend type
    (libxl__vkb_from_xenstore reads them from the backend)."""
    fe = "/local/domain/%d/device/vkbd/%d" % (domid, devid)
    lib = "/libxl/%d/device/vkbd/%d" % (domid, devid)
    be = read(xs, lib + "/backend")
    if be is None:
        return None
    return {"devid": devid, "backend_id": backend_domid_of(be) or 0, "backend": be,
            "state": _num(read(xs, fe + "/state")),
            "evtch": _num(read(xs, fe + "/event-channel")),
            "rref": _num(read(xs, fe + "/page-gref")),
            "unique_id": read(xs, be + "/unique-id"),
            "backend_type": "linux" if be.split("/")[5:6] == ["vinput"] else "qemu"}


# -- vdispl -----------------------------------------------------------------

def vdispl_entries(domid: int, backend_domid: int, vdispl: dict) -> tuple[dict, dict, dict]:
    """libxl__device_add_async's common keys, then libxl__set_xenstore_vdispl
    (libxl_vdispl.c): be-alloc and each connector's resolution and id, in
    the frontend, dom0-owned (xen/include/public/io/displif.h names)."""
    back = {"frontend-id": domid, "online": 1, "state": XenbusStateInitialising}
    front = {"backend-id": backend_domid, "state": XenbusStateInitialising}
    ro: dict = {"be-alloc": 1 if vdispl.get("be_alloc") else 0}
    for i, c in enumerate(vdispl.get("connectors") or []):
        ro["%d/resolution" % i] = "%dx%d" % (int(c.get("width") or 0), int(c.get("height") or 0))
        ro["%d/unique-id" % i] = c.get("unique_id") or ""
    return back, front, ro


def add_vdispl(xs: XsConnection, domid: int, backend_domid: int, vdispl: dict) -> tuple[str, str]:
    back, front, ro = vdispl_entries(domid, backend_domid, vdispl)
    out: list = []
    _tx(xs, lambda t: out.append(generic_add(xs, t, "vdispl", domid, backend_domid,
                                             int(vdispl["devid"]), back, front, ro)))
    return out[-1]


def vdispl_info(xs: XsConnection, domid: int, devid: int) -> dict | None:
    """libxl_device_vdispl_getinfo and libxl__device_vdispl_getconnectors:
    connectors are the frontend's numbered children, counted from 0 until
    one is missing; one without its id or resolution fails the row."""
    fe = "/local/domain/%d/device/vdispl/%d" % (domid, devid)
    lib = "/libxl/%d/device/vdispl/%d" % (domid, devid)
    be = read(xs, lib + "/backend")
    if be is None:
        return None
    conns: list[dict] = []
    while read(xs, "%s/%d" % (fe, len(conns))) is not None:
        c = "%s/%d" % (fe, len(conns))
        uid, res = read(xs, c + "/unique-id"), read(xs, c + "/resolution")
        m = re.match(r"\s*\+?(\d+)x\s*\+?(\d+)", res or "")
        if uid is None or not m:
            return None
        conns.append({"unique_id": uid, "width": int(m.group(1)) & 0xFFFFFFFF,
                      "height": int(m.group(2)) & 0xFFFFFFFF,
                      "req_rref": _num(read(xs, c + "/req-ring-ref")),
                      "req_evtch": _num(read(xs, c + "/req-event-channel")),
                      "evt_rref": _num(read(xs, c + "/evt-ring-ref")),
                      "evt_evtch": _num(read(xs, c + "/evt-event-channel"))})
    be_alloc = read(xs, fe + "/be-alloc")
    return {"devid": devid, "backend_id": backend_domid_of(be) or 0, "frontend_id": domid,
            "state": _num(read(xs, fe + "/state")),
            "be_alloc": _num(be_alloc) if be_alloc is not None else 0,
            "backend": be, "frontend": read(xs, lib + "/frontend"), "connectors": conns}


# -- vsnd -------------------------------------------------------------------

def _vsnd_params(prefix: str, params: dict, front: dict) -> None:
    """libxl__set_params_vsnd: only what is set; lists comma-separated."""
    if params.get("sample_rates"):
        front[prefix + "sample-rates"] = ",".join("%d" % r for r in params["sample_rates"])
    if params.get("sample_formats"):
        front[prefix + "sample-formats"] = ",".join(params["sample_formats"])
    for key in ("channels_min", "channels_max", "buffer_size"):
        if params.get(key):
            front[prefix + key.replace("_", "-")] = "%d" % params[key]


def vsnd_front(vsnd: dict) -> dict:
    """libxl__set_xenstore_vsnd (libxl_vsnd.c): the card's names and
    parameters, then each PCM's and each stream's, all in the frontend
    (xen/include/public/io/sndif.h field names)."""
    front: dict = {}
    if vsnd.get("long_name") is not None:
        front["long-name"] = vsnd["long_name"]
    if vsnd.get("short_name") is not None:
        front["short-name"] = vsnd["short_name"]
    _vsnd_params("", vsnd.get("params") or {}, front)
    for i, pcm in enumerate(vsnd.get("pcms") or []):
        if pcm.get("name") is not None:
            front["%d/name" % i] = pcm["name"]
        _vsnd_params("%d/" % i, pcm.get("params") or {}, front)
        for j, st in enumerate(pcm.get("streams") or []):
            if st.get("unique_id") is not None:      # libxl__xs_writev skips NULL
                front["%d/%d/unique-id" % (i, j)] = st["unique_id"]
            if st.get("type"):
                front["%d/%d/type" % (i, j)] = st["type"]
            _vsnd_params("%d/%d/" % (i, j), st.get("params") or {}, front)
    return front


def add_vsnd(xs: XsConnection, domid: int, backend_domid: int, vsnd: dict) -> tuple[str, str]:
    back = {"frontend-id": domid, "online": 1, "state": XenbusStateInitialising}
    front = dict({"backend-id": backend_domid, "state": XenbusStateInitialising},
                 **vsnd_front(vsnd))
    out: list = []
    _tx(xs, lambda t: out.append(generic_add(xs, t, "vsnd", domid, backend_domid,
                                             int(vsnd["devid"]), back, front)))
    return out[-1]


def _params_of(xs: XsConnection, path: str) -> dict:
    """libxl__params_from_xenstore: lists split at spaces and commas."""
    p: dict = {}
    for key in ("sample-rates", "sample-formats"):
        v = read(xs, "%s/%s" % (path, key))
        if v is not None:
            items = [x for x in re.split(r"[ ,]", v) if x]
            p[key.replace("-", "_")] = ([_strtoul(x) for x in items]
                                        if key == "sample-rates" else items)
    for key in ("channels-min", "channels-max", "buffer-size"):
        v = read(xs, "%s/%s" % (path, key))
        if v is not None:
            p[key.replace("-", "_")] = _strtoul(v)
    return p


def _strtoul(v: str) -> int:
    m = re.match(r"\s*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)", v)
    return int(m.group(1), 0) & 0xFFFFFFFF if m else 0


def vsnd_info(xs: XsConnection, domid: int, devid: int) -> dict | None:
    """libxl__vsnd_from_xenstore and libxl_device_vsnd_getinfo: the card as
    the frontend holds it, PCMs and streams counted from 0 until one is
    missing, each stream's ring-ref and event-channel (-1 if absent)."""
    lib = "/libxl/%d/device/vsnd/%d" % (domid, devid)
    be, fe = read(xs, lib + "/backend"), read(xs, lib + "/frontend")
    if be is None or fe is None:
        return None
    pcms: list = []
    while read(xs, "%s/%d" % (fe, len(pcms))) is not None:
        pp = "%s/%d" % (fe, len(pcms))
        streams: list = []
        while read(xs, "%s/%d" % (pp, len(streams))) is not None:
            sp = "%s/%d" % (pp, len(streams))
            streams.append({"unique_id": read(xs, sp + "/unique-id"),
                            "type": read(xs, sp + "/type"), "params": _params_of(xs, sp),
                            "req_rref": _num(read(xs, sp + "/ring-ref")),
                            "req_evtch": _num(read(xs, sp + "/event-channel"))})
        pcms.append({"name": read(xs, pp + "/name"), "params": _params_of(xs, pp),
                     "streams": streams})
    return {"devid": devid, "backend_id": backend_domid_of(be) or 0, "frontend_id": domid,
            "state": _num(read(xs, fe + "/state")), "backend": be, "frontend": fe,
            "short_name": read(xs, fe + "/short-name"),
            "long_name": read(xs, fe + "/long-name"), "params": _params_of(xs, fe),
            "pcms": pcms}


# -- vusb -------------------------------------------------------------------

def add_usbctrl(xs: XsConnection, domid: int, backend_domid: int, ctrl: dict) -> tuple[str, str]:
    """libxl__device_usbctrl_add_xenstore (libxl_usb.c) for a `pv`
    controller: the common keys, then type, usb-ver, num-ports and one
    empty `port/N` per port."""
    back: dict = {"frontend-id": domid, "online": 1, "state": XenbusStateInitialising,
                  "type": ctrl["type"], "usb-ver": ctrl["version"],
                  "num-ports": ctrl["ports"], "port": ""}
    for i in range(int(ctrl["ports"])):
        back["port/%d" % (i + 1)] = ""
    front = {"backend-id": backend_domid, "state": XenbusStateInitialising}
    out: list = []
    _tx(xs, lambda t: out.append(generic_add(xs, t, "vusb", domid, backend_domid,
                                             int(ctrl["devid"]), back, front)))
    return out[-1]


def usbctrl_info(xs: XsConnection, domid: int, devid: int) -> dict | None:
    """libxl_device_usbctrl_getinfo: the type from libxl's copy, the rest
    from the frontend and the backend (atoi; -1 where a key is missing)."""
    lib = "/libxl/%d/device/vusb/%d" % (domid, devid)
    kind, be = read(xs, lib + "/type"), read(xs, lib + "/backend")
    if kind is None or be is None:
        return None
    fe = "/local/domain/%d/device/vusb/%d" % (domid, devid)
    ports = _atoi_or(read(xs, be + "/num-ports"))
    return {"devid": devid, "type": kind, "backend_id": backend_domid_of(be) or 0,
            "state": _atoi_or(read(xs, fe + "/state")),
            "version": _atoi_or(read(xs, be + "/usb-ver")), "ports": ports}


def _atoi_or(v: str | None) -> int:
    """`tmp ? atoi(tmp) : -1` (READ_SUBPATH_INT in libxl_usb.c)."""
    if v is None:
        return -1
    m = re.match(r"\s*([+-]?\d+)", v)
    return int(m.group(1)) if m else 0


def backend_ready(xs: XsConnection, be: str, hotplug: bool) -> None:
    """What dom0's backend driver does on seeing a new device (blkback and
    netback's probe: state InitWait) and, for a vif, the hotplug script's
    `success` (xen-hotplug-common.sh: hotplug-status connected)."""
    xs.write(be + "/state", str(XenbusStateInitWait))
    if hotplug:
        xs.write(be + "/hotplug-status", "connected")


def device_ids(xs: XsConnection, domid: int, kind: str) -> list[int]:
    """libxl__device_list's walk: /libxl/<domid>/device/<kind>, in
    xenstore's order."""
    return [int(d) for d in _ls(xs, "/libxl/%d/device/%s" % (domid, kind)) if d.isdigit()]


def _num(v: str | None) -> int:
    """`val ? strtoul(val, NULL, 10) : -1` as the getinfo functions read."""
    if v is None:
        return -1
    m = re.match(r"\s*\d+", v)
    return int(m.group()) if m else 0


def device_info(xs: XsConnection, domid: int, kind: str, devid: int) -> dict | None:
    """libxl_device_{disk,nic}_getinfo: the backend path from libxl's copy,
    the state, event channel and ring references from the frontend.  None
    where libxl's copy has no backend (getinfo fails, the row is skipped)."""
    fe = "/local/domain/%d/device/%s/%d" % (domid, kind, devid)
    lib = "/libxl/%d/device/%s/%d" % (domid, kind, devid)
    be = read(xs, lib + "/backend")
    if be is None:
        return None
    # one directory listing instead of a failed read per missing key (a
    # frontend that has not connected has no ring yet): the same values
    there = set(_ls(xs, fe))

    def front(key: str) -> int:
        return _num(read(xs, fe + "/" + key)) if key in there else -1

    info = {"devid": devid, "backend_id": backend_domid_of(be) or 0, "backend": be,
            "state": front("state"), "evtch": front("event-channel"),
            "rref": front("ring-ref"), "frontend_id": domid}
    if kind == "vif":           # libxl_device_nic_getinfo's own keys
        info.update(rref_tx=front("tx-ring-ref"), rref_rx=front("rx-ring-ref"),
                    mac=read(xs, lib + "/mac") or "00:00:00:00:00:00")
    return info


def list_channels(xs: XsConnection, domid: int) -> list[dict]:
    """libxl_device_channel_list + getinfo (libxl_console.c): channels are
    the consoles with a `name` in libxl's copy, numbered in xenstore's
    order; the frontend is console devid+1."""
    rows: list[dict] = []
    base = "/libxl/%d/device/console" % domid
    for entry in _ls(xs, base):
        lib = "%s/%s" % (base, entry)
        if read(xs, lib + "/name") is None:
            continue
        devid = len(rows)
        fe = "/local/domain/%d/device/console/%d" % (domid, devid + 1)
        be = read(xs, "/libxl/%d/device/console/%d/backend" % (domid, devid + 1))
        if be is None:
            continue                      # getinfo fails: xl skips the row
        conn = read(xs, lib + "/connection") or ""
        rows.append({"devid": devid, "backend_id": backend_domid_of(be) or 0,
                     "state": _num(read(xs, fe + "/state")), "evtch": _num(read(xs, fe + "/port")),
                     "rref": _num(read(xs, fe + "/ring-ref")), "connection": conn,
                     "path": read(xs, fe + "/tty") if conn == "pty" else None})
    return rows


def remove_device(xs: XsConnection, domid: int, kind: str, devid: int, timeout: float,
                  alive: Callable[[], bool] = lambda: True) -> bool:
    """libxl__initiate_device_generic_remove: only a Connected backend is
    asked to close (online 0, state Closing) and waited for (Closed); then
    the frontend, backend and libxl's copy go.  False if the backend did
    not close within `timeout` (nothing is removed then)."""
    fe = "/local/domain/%d/device/%s/%d" % (domid, kind, devid)
    lib = "/libxl/%d/device/%s/%d" % (domid, kind, devid)
    be = read(xs, lib + "/backend") or read(xs, fe + "/backend")
    state = read(xs, be + "/state") if be else None
    if be and state is not None and state.isdigit() and int(state) == XenbusStateConnected:
        def closing(t: int) -> None:
            xs.write(be + "/online", "0", t)
            xs.write(be + "/state", str(XenbusStateClosing), t)
        _tx(xs, closing)
        if not wait_state(xs, be, XenbusStateClosed, timeout, alive):
            return False

    def destroy(t: int) -> None:          # libxl__device_destroy, run by the toolstack domain
        for p in (fe, lib, be):
            if p:
                path_cleanup(xs, t, p)
    _tx(xs, destroy)
    return True


def path_cleanup(xs: XsTree, t: int, path: str) -> None:
    """libxl__xs_path_cleanup (libxl_xshelp.c): remove `path`, then each
    parent that is left empty (no value, no children)."""
    try:
        xs.rm(path, t)
    except OSError:
        return
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        if not path:
            return
        try:
            if xs.read(path, t) not in (b"", "") or list(xs.directory(path, t)):
                return
        except OSError:
            return
        try:
            xs.rm(path, t)
        except OSError:
            return


# -- vtpm ---------------------------------------------------------------

def add_vtpm(xs: XsConnection, domid: int, backend_domid: int, devid: int, uuid: str,
             backend_alive: bool = True) -> tuple[str, str]:
    """libxl__device_vtpm_add: both dirs in one transaction, state 1/1.
    backend_alive=False (a restarted daemon writing again a device whose
    backend's domain died): the frontend's and libxl's dirs only, naming
    the backend that is gone, as xenstore kept them (vtpm-detach removes
    them)."""
    fe = "/local/domain/%d/device/vtpm/%d" % (domid, devid)
    be = "/local/domain/%d/backend/vtpm/%d/%d" % (backend_domid, domid, devid)
    back = {"frontend": fe, "frontend-id": domid, "online": 1,
            "state": XenbusStateInitialising, "handle": devid, "uuid": uuid, "resume": "False"}

    def body(t: int) -> None:
        if backend_alive:
            _write_dir(xs, t, be, back, ["n%d" % backend_domid, "r%d" % domid])
        _write_dir(xs, t, fe, {"backend": be, "backend-id": backend_domid,
                               "state": XenbusStateInitialising, "handle": devid},
                   ["n%d" % domid, "r%d" % backend_domid])
        lib = "/libxl/%d/device/vtpm/%d" % (domid, devid)
        _write_dir(xs, t, lib, dict(back, frontend=fe, backend=be), ["n0"])

    _tx(xs, body)
    return fe, be


def wait_state(xs: XsConnection, path: str, want: int | tuple[int, ...], timeout: float,
               alive: Callable[[], bool] = lambda: True) -> bool:
    """libxl__wait_for_backend / libxl__wait_device_connection
    (libxl_device.c): wait, by a watch on `path`/state, until it reads
    `want` (or one of them); False after `timeout` (LIBXL_INIT_TIMEOUT
    when adding, LIBXL_DESTROY_TIMEOUT when removing) or once `alive()`
    says the backend's domain is gone."""
    wanted = (want,) if isinstance(want, int) else want

    def done() -> bool:
        v = read(xs, path + "/state")
        return v is not None and v.isdigit() and int(v) in wanted

    return _await(xs, path + "/state", done, timeout, alive)


def wait_vtpm_backend(xs: XsConnection, be: str, timeout: float,
                      alive: Callable[[], bool] = lambda: True) -> bool:
    """libxl__wait_device_connection (libxl_device.c) for a vTPM whose
    directories were just committed: wait until its backend `be` has
    come up: InitWait, or on past it (BACKEND_UP); False after `timeout`
    or once `alive()` says the backend's domain is gone."""
    if testfault.ARMED and testfault.spec() == "hold:vtpm-backend-connected":
        wait_state(xs, be, XenbusStateConnected, timeout, alive)
    return wait_state(xs, be, BACKEND_UP, timeout, alive)


def list_vtpms(xs: XsConnection, domid: int) -> list[dict]:
    """`xl vtpm-list` rows (libxl_device_vtpm_list + getinfo)."""
    rows = []
    base = "/local/domain/%d/device/vtpm" % domid
    for dev in sorted(_ls(xs, base), key=lambda s: int(s) if s.isdigit() else 0):
        fe = "%s/%s" % (base, dev)
        be = read(xs, fe + "/backend", "") or ""
        lib = "/libxl/%d/device/vtpm/%s" % (domid, dev)
        rows.append({
            "devid": int(dev),
            "backend_domid": int(read(xs, fe + "/backend-id", "0") or 0),
            "uuid": read(xs, be + "/uuid") or read(xs, lib + "/uuid") or "",
            "frontend_state": int(read(xs, fe + "/state", "0") or 0),
            "evtch": int(read(xs, fe + "/event-channel", "-1") or -1),
            "rref": int(read(xs, fe + "/ring-ref", "-1") or -1),
            "backend": be,
        })
    return rows


def remove_vtpm(xs: XsConnection, domid: int, devid: int, timeout: float) -> bool:
    """libxl device remove: online=0, state=5 on the backend, wait for 6,
    then remove both dirs (forcibly after the timeout).  True if clean."""
    fe = "/local/domain/%d/device/vtpm/%d" % (domid, devid)
    be = read(xs, fe + "/backend")
    clean = True
    if be and _exists(xs, be):
        try:
            xs.write(be + "/online", "0")
            xs.write(be + "/state", str(XenbusStateClosing))
        except OSError:
            pass
        clean = wait_state(xs, be, XenbusStateClosed, timeout)
    for p in (fe, be, "/libxl/%d/device/vtpm/%d" % (domid, devid)):
        if p:
            try:
                xs.rm(p)
            except OSError:
                pass
    return clean
