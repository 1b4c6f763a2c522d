"""usbctrl-*, usbdev-* and usb-list end to end through `pyxl` on a private
host; the controller's directories read back with Xen's xenstore-ls.

Expected values are libxl 4.17's (RELEASE-4.17.5 tools/libs/light/libxl_usb.c:
libxl__device_usbctrl_setdefault, libxl__device_usbctrl_add_xenstore,
libxl_device_usbctrl_getinfo, libxl__device_usbdev_add; libxl_dm.c
libxl__dm_check_start) and xl's (tools/xl/xl_usb.c, xl_parse.c
parse_usbctrl_config / parse_usbdev_config); libxl positions from the peer's
libxenlight (libxl_lines.py).
"""

from __future__ import annotations

from test_devices_block_nic import at, values, xenstore_ls  # noqa: F401  (fixture)


def test_usbctrl_attach_list_detach(host, at):
    assert host.create("u").returncode == 0                    # domid 1
    # no usbback in dom0: `auto` is qusb, whose QEMU a PV guest has not
    p = host.run("usbctrl-attach", "u")
    assert (p.returncode, p.stderr.splitlines()) == (1, [
        at("device model required but not running", "libxl_dm.c", "libxl__dm_check_start")
        + "Domain 1:device model required but not running",
        at("unable to %s device", "libxl_device.c", "device_addrm_aocomplete")
        + "unable to add device",
        "libxl_device_usbctrl_add failed."])
    p = host.run("usbctrl-attach", "u", "type=pv", "version=3")
    assert (p.returncode, p.stderr.splitlines()[0]) == (1, at(
        "USB version for paravirtualized devices must be 1 or 2", "libxl_usb.c",
        "libxl__device_usbctrl_setdefault")
        + "USB version for paravirtualized devices must be 1 or 2")
    p = host.run("usbctrl-attach", "u", "type=pv", "ports=32")
    assert p.stderr.splitlines()[0].endswith(
        "Number of ports for USB controller is limited to 31")
    p = host.run("usbctrl-attach", "u", "type=usb3")
    assert (p.returncode, p.stderr) == (1, "Invalid usb controller type 'usb3'\n")
    p = host.run("usbctrl-attach", "u", "frob")
    assert (p.returncode, p.stderr) == (1, "Unknown string `frob' in usbctrl spec\n")
    # a devicemodel controller goes to the guest's QEMU, which a PV guest has not
    p = host.run("usbctrl-attach", "u", "type=devicemodel")
    assert (p.returncode, p.stderr.splitlines()) == (1, [
        at("Failed to connect to QMP socket %s", "libxl_qmp.c", "qmp_ev_lock_aquired")
        + "Domain 1:Failed to connect to QMP socket /var/run/xen/qmp-libxl-1: No such file"
          " or directory",
        "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain 1:"
        "Unable to add vusb with id 0",
        "libxl_device_usbctrl_add failed."])
    p = host.run("usbctrl-attach", "u", "type=devicemodel", "version=1", "ports=3")
    assert p.stderr.splitlines()[0] == at(
        "Number of ports for USB controller of version 1 is always 2", "libxl_usb.c",
        "libxl__device_usbctrl_setdefault") + \
        "Number of ports for USB controller of version 1 is always 2"
    assert host.run("usb-list", "u").stdout == ""
    # an explicit pv controller: written as libxl writes it, then libxl's
    # wait for a usbback that never comes
    host.env["PYXL_DEVICE_TIMEOUT"] = "0.3"
    p = host.run("usbctrl-attach", "u", "type=pv", "version=1", "ports=2")
    assert (p.returncode, p.stderr.splitlines()) == (1, [
        "libxl: error: libxl_device.c:1181:device_backend_callback: Domain 1:"
        "unable to add device with path /local/domain/0/backend/vusb/1/0",
        "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain 1:"
        "Unable to add vusb with id 0",
        "libxl_device_usbctrl_add failed."])
    be = xenstore_ls(host, "/local/domain/0/backend/vusb/1")
    assert be["0"][1] == "n0,r1"
    assert values(be, "0") == {
        "frontend": "/local/domain/1/device/vusb/0", "frontend-id": "1", "online": "1",
        "state": "1", "type": "pv", "usb-ver": "1", "num-ports": "2", "port": ""}
    assert values(be, "0/port") == {"1": "", "2": ""}
    fe = xenstore_ls(host, "/local/domain/1/device/vusb")
    assert fe["0"][1] == "n1,r0"
    assert values(fe, "0") == {"backend": "/local/domain/0/backend/vusb/1/0",
                               "backend-id": "0", "state": "1"}
    # main_usblist
    assert host.run("usb-list", "u").stdout.splitlines() == [
        "Devid  Type         BE  state usb-ver ports",
        "0      pv           0   1     1       2    ",
        "  Port 1:",
        "  Port 2:"]
    p = host.run("usb-list", "u", "x")
    assert (p.returncode, p.stderr) == (255, "Invalid arguments.\n")
    p = host.run("usbctrl-detach", "u", "07")
    assert (p.returncode, p.stderr) == (1, "Unknown device 07.\n")
    assert host.run("usbctrl-detach", "u", "0").returncode == 0
    assert host.run("xenstore-read", "/local/domain/1/device/vusb").returncode == 1
    assert host.run("usb-list", "u").stdout == ""


def test_usbdev_attach_detach_without_host_devices(host, at):
    assert host.create("d").returncode == 0                    # domid 1
    # is_usbdev_assignable: no such device under /sys/bus/usb/devices
    p = host.run("usbdev-attach", "d", "hostbus=1", "hostaddr=2")
    assert (p.returncode, p.stderr.splitlines()) == (1, [
        at("USB device is not assignable.", "libxl_usb.c", "libxl__device_usbdev_add")
        + "Domain 1:USB device is not assignable.",
        "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device",
        "libxl_device_usbdev_add failed."])
    # a named controller that does not exist fails silently in libxl
    p = host.run("usbdev-attach", "d", "hostbus=1", "hostaddr=2", "controller=3")
    assert p.stderr.splitlines()[-1] == "libxl_device_usbdev_add failed."
    assert "assignable" not in p.stderr
    p = host.run("usbdev-attach", "d", "hostbus=1", "bus=2")
    assert (p.returncode, p.stderr) == (1, "Unknown string `bus=2' in usbdev spec\n")
    p = host.run("usbdev-detach", "d", "0", "1")
    assert (p.returncode, p.stderr) == (1, "Unknown device at controller 0 port 1.\n")
    p = host.run("usbdev-detach", "d", "0", "1", "2")
    assert (p.returncode, p.stderr) == (1, "Invalid arguments.\n")
    p = host.run("usbdev-detach", "nosuch", "0", "1")
    assert (p.returncode, p.stderr) == (1, "nosuch is an invalid domain identifier (rc=-6)\n")
