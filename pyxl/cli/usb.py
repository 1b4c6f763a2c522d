"""`pyxl usbctrl-attach | usbctrl-detach | usbdev-attach | usbdev-detach |
usb-list` (xl_usb.c); handlers take (opts, args) after def_getopt."""

from __future__ import annotations

import json
import sys

from pyxl.cli._common import call, faults

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts
    from pyxl.config.model import Struct


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text + "\n")


def _find_domain(dom: str) -> None:
    """find_domain (xl_utils.c): a name must name a domain."""
    if not dom.isdigit():
        call("list", dom=dom, rows=True)       # INVALID_DOMAIN


def _tree(obj: Struct) -> dict:
    from pyxl.config.libxl_json import render, struct_tree

    tree: dict = json.loads(render(struct_tree(obj)))
    return tree


@faults
def usbctrl_attach(opts: Opts | None, args: list[str]) -> int:
    """main_usbctrl_attach: find_domain, then parse_usbctrl_config on each
    further argument; any failure of libxl_device_usbctrl_add is exit 1."""
    from pyxl.config import model as M
    from pyxl.config.cstr import atoi

    _find_domain(args[0])
    ctrl = M.DeviceUsbctrl()
    for tok in args[1:]:
        key, eq, val = tok.partition("=")
        if eq and key == "type":
            t = M.UsbctrlType.from_string(val)
            if t is None:
                _err("Invalid usb controller type '%s'" % val)
                return 1
            ctrl.type = t
        elif eq and key == "version":
            ctrl.version = atoi(val)
        elif eq and key == "ports":
            ctrl.ports = atoi(val)
        else:
            _err("Unknown string `%s' in usbctrl spec" % tok)
            return 1
    call("usbctrl_attach", dom=args[0], usbctrl=_tree(ctrl))
    return 0


@faults
def usbctrl_detach(opts: Opts | None, args: list[str]) -> int:
    """main_usbctrl_detach: the devid is atoi's; an unknown one is named as
    it was typed."""
    from pyxl.config.cstr import atoi

    _find_domain(args[0])
    call("usbctrl_detach", dom=args[0], devid=atoi(args[1]), name=args[1])
    return 0


@faults
def usbdev_attach(opts: Opts | None, args: list[str]) -> int:
    """main_usbdev_attach: find_domain, then parse_usbdev_config on each
    further argument."""
    from pyxl.config import model as M
    from pyxl.config.cstr import atoi
    from pyxl.config.devices import _strtoul0

    _find_domain(args[0])
    dev = M.DeviceUsbdev()
    for tok in args[1:]:
        key, eq, val = tok.partition("=")
        if eq and key == "type":
            t = M.UsbdevType.from_string(val)
            if t is None:
                # sic: xl prints getopt's optarg, NULL once options are parsed
                _err("Invalid usb device type: (null)")
                return 1
            dev.type = t
        elif eq and key == "hostbus":
            dev.u.hostbus = _strtoul0(val) & 0xFF
        elif eq and key == "hostaddr":
            dev.u.hostaddr = _strtoul0(val) & 0xFF
        elif eq and key == "controller":
            dev.ctrl = atoi(val)
        elif eq and key == "port":
            dev.port = atoi(val)
        else:
            _err("Unknown string `%s' in usbdev spec" % tok)
            return 1
    call("usbdev_attach", dom=args[0], usbdev={"ctrl": dev.ctrl, "port": dev.port})
    return 0


@faults
def usbdev_detach(opts: Opts | None, args: list[str]) -> int:
    """main_usbdev_detach: find_domain, atoi controller and port, at most
    three arguments."""
    from pyxl.config.cstr import atoi

    _find_domain(args[0])
    ctrl, port = atoi(args[1]), atoi(args[2])
    if len(args) > 3:
        _err("Invalid arguments.")
        return 1
    call("usbdev_detach", dom=args[0], ctrl=ctrl, port=port)
    return 0


@faults
def usb_list(opts: Opts | None, args: list[str]) -> int:
    """main_usblist: one header per controller (sic: xl repeats it), its
    row, then one line per port; no host device can sit in one here."""
    _find_domain(args[0])
    if len(args) > 1:
        _err("Invalid arguments.")
        return 255                              # exit(-1)
    for r in call("usb_list", dom=args[0]):
        print("%-6s %-12s %-3s %-5s %-7s %-5s" % (
            "Devid", "Type", "BE", "state", "usb-ver", "ports"))
        print("%-6d %-12s %-3d %-5d %-7d %-5d" % (
            r["devid"], r["type"], r["backend_id"], r["state"], r["version"], r["ports"]))
        for j in range(1, r["ports"] + 1):
            print("  Port %d:" % j)
    return 0
