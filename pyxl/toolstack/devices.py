"""Device and domain wiring in xenstore, as libxl writes it.

Paths, keys and permissions follow libxl (libxl_create.c libxl__domain_make,
libxl_dom.c libxl__build_post, libxl_device.c libxl__device_generic_add,
libxl_vtpm.c); see xen-vtpm-facts §4.2 for the vtpm layout.  All functions
take a dom0 xenstore connection (`XsConnection` of pyxl.hypervisor.xenstore).
"""

from __future__ import annotations

import re
import time

from pyxl.hypervisor.xenstore import payload_fits

# xenbus states (xen/include/public/io/xenbus.h)
XenbusStateUnknown = 0
XenbusStateInitialising = 1
XenbusStateInitWait = 2
XenbusStateInitialised = 3
XenbusStateConnected = 4
XenbusStateClosing = 5
XenbusStateClosed = 6


def _tx(xs, fn, retries: int = 20):
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


def _write_dir(xs, t, base: str, kv: dict, perms: list[str] | None) -> None:
    xs.mkdir(base, t)
    if perms:
        xs.set_perms(base, perms, t)
    for k, v in kv.items():
        xs.write("%s/%s" % (base, k), str(v), t)


def write_domain(xs, domid: int, name: str, uuid: str, max_memkb: int, target_memkb: int,
                 vcpus: int, kernel: str, cmdline: str, start_time: float) -> None:
    """The directories libxl__domain_make and libxl__build_post create."""
    dom = "/local/domain/%d" % domid
    vm = "/vm/%s" % uuid
    ro = ["n0", "r%d" % domid]           # dom0 owns, the guest may read
    rw = ["n%d" % domid]                 # the guest owns

    def body(t):
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
            xs.write("%s/cpu/%d/availability" % (dom, i), "online", t)
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


def domain_paths(xs, domid: int, uuid: str) -> list[str]:
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


def wait_backend_gone(xs, path: str, timeout: float, alive=lambda: True) -> bool:
    """libxl__initiate_device_generic_remove's wait: a backend living in
    another domain (a vtpm-stubdom's tpmback) tears its own directories
    down once it sees the frontend go; give it LIBXL_DESTROY_TIMEOUT before
    removing what is left.  True if the backend cleaned up by itself."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while _ls(xs, path):
        if time.monotonic() >= deadline or not alive():
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


def remove_paths(xs, paths: list[str]) -> None:
    for p in paths:
        try:
            xs.rm(p)
        except OSError:
            pass


def _ls(xs, path) -> list[str]:
    try:
        return list(xs.directory(path))
    except OSError:
        return []


def _exists(xs, path) -> bool:
    try:
        xs.read(path)
        return True
    except OSError:
        return False


def read(xs, path: str, default: str | None = None) -> str | None:
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


def add_vbd(xs, domid: int, backend_domid: int, disk: dict, devid: int) -> tuple[str, str]:
    """Frontend + backend dirs of one disk (libxl__device_disk_add)."""
    fe = "/local/domain/%d/device/vbd/%d" % (domid, devid)
    be = "/local/domain/%d/backend/vbd/%d/%d" % (backend_domid, domid, devid)
    mode = "w" if disk_readwrite(disk) else "r"

    def body(t):
        _write_dir(xs, t, be, {
            "frontend": fe, "frontend-id": domid, "params": disk.get("pdev_path", ""),
            "script": "/etc/xen/scripts/block", "online": 1, "removable": 0,
            "bootable": 1, "state": XenbusStateInitialising, "dev": disk.get("vdev", ""),
            "type": "phy", "mode": mode, "device-type": "cdrom" if disk.get("is_cdrom") else "disk",
            "discard-enable": 1,
        }, ["n%d" % backend_domid, "r%d" % domid])
        _write_dir(xs, t, fe, {
            "backend": be, "backend-id": backend_domid, "state": XenbusStateInitialising,
            "virtual-device": devid, "device-type": "disk",
        }, ["n%d" % domid, "r%d" % backend_domid])

    _tx(xs, body)
    return fe, be


# -- vtpm ---------------------------------------------------------------

def add_vtpm(xs, domid: int, backend_domid: int, devid: int, uuid: str) -> tuple[str, str]:
    """libxl__device_vtpm_add: both dirs in one transaction, state 1/1."""
    fe = "/local/domain/%d/device/vtpm/%d" % (domid, devid)
    be = "/local/domain/%d/backend/vtpm/%d/%d" % (backend_domid, domid, devid)
    back = {"frontend": fe, "frontend-id": domid, "online": 1,
            "state": XenbusStateInitialising, "handle": devid, "uuid": uuid, "resume": "False"}

    def body(t):
        _write_dir(xs, t, be, back, ["n%d" % backend_domid, "r%d" % domid])
        _write_dir(xs, t, fe, {"backend": be, "backend-id": backend_domid,
                               "state": XenbusStateInitialising, "handle": devid},
                   ["n%d" % domid, "r%d" % backend_domid])
        lib = "/libxl/%d/device/vtpm/%d" % (domid, devid)
        _write_dir(xs, t, lib, dict(back, frontend=fe, backend=be), ["n0"])

    _tx(xs, body)
    return fe, be


def wait_state(xs, path: str, want: int, timeout: float, alive=lambda: True) -> bool:
    """Poll `path`/state until it reads `want` (libxl__wait_for_backend)."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        v = read(xs, path + "/state")
        if v is not None and v.isdigit() and int(v) == want:
            return True
        if time.monotonic() >= deadline or not alive():
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def list_vtpms(xs, domid: int) -> list[dict]:
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


def remove_vtpm(xs, domid: int, devid: int, timeout: float) -> bool:
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
