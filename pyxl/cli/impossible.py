"""xl commands whose operation the simulated host cannot carry out, with
xl's exact answer on such a host: a PV guest has no device model (no ACPI
buttons, no QMP, no VNC, no emulated CD-ROM), the host has no PCI device
bound to pciback and no RDT (CMT/CAT/MBA) in its CPUs.

Each handler follows its main_* function (tools/xl) down through libxl to
the hypervisor's answer; libxl's log lines carry the Debian 4.17.5 binary's
`file:line` (tests/toolstack/libxl_lines.py reads them back from it).
"""

from __future__ import annotations

import os
import re
import sys

from pyxl.cli._common import call, faults

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts
    from pyxl.config.model import DevicePci

# libxl_dom.c libxl__domain_type, when xc_domain_getinfo finds no domain
_DOMAIN_TYPE = ("libxl: error: libxl_dom.c:37:libxl__domain_type: "
                "unable to get domain type for domid=%d\n")
# libxl_device.c device_addrm_aocomplete, for a device that was never made
_UNABLE_TO_ADD = ("libxl: error: libxl_device.c:1486:device_addrm_aocomplete: "
                  "unable to add device\n")


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()


def _logd(pos: str, domid: int, msg: str) -> str:
    """libxl's LOGD(ERROR, domid, ...) line: "libxl: error: POS: Domain N:MSG"."""
    return "libxl: error: %s: Domain %d:%s\n" % (pos, domid, msg)


def _find(dom: str) -> tuple[int, int | None]:
    """find_domain (xl_utils.c): a name that names no domain ends xl
    ("... is an invalid domain identifier (rc=-6)", a Fault); a number is
    taken as it is.  -> (domid, vcpus), vcpus None where no such domain."""
    from pyxl.toolstack.errors import Fault

    try:
        rows = call("list", dom=dom, rows=True)
    except Fault as f:
        if f.name == "NO_SUCH_DOMID":
            return min(int(dom), 2**64 - 1) & 0xFFFFFFFF, None
        raise
    return int(rows[0][0]), int(rows[0][3])


def _strtol(s: str) -> tuple[int, bool]:
    """C strtol(s, &end, 10) as an int: (value, whether any digit was read)."""
    m = re.match(r"[ \t\n\r\f\v]*([+-]?)(\d+)", s)
    if not m:
        return 0, False
    v = int(m.group(2)) * (-1 if m.group(1) == "-" else 1)
    v = max(-2**63, min(v, 2**63 - 1))
    return ((v + 2**31) % 2**32) - 2**31, True     # stored into an int


# -- triggers (xl_misc.c main_trigger, button_press; libxl_domain.c) ---------

# libxl_types.idl libxl_trigger, in its order
_TRIGGERS = ("unknown", "power", "sleep", "nmi", "init", "reset", "s3resume")


def _send_trigger(domid: int, vcpus: int | None, trigger: str, vcpuid: int) -> None:
    """libxl_send_trigger: XEN_DOMCTL_sendtrigger on a PV domain (Xen's
    arch/x86/domctl.c): an NMI is taken, the power and sleep buttons are
    HVM's (EINVAL), INIT and RESET unknown (ENOSYS); no such domain or vcpu
    is ESRCH.  s3resume needs an HVM device model (domain_s3_resume).
    libxl logs the failure; xl ignores it."""
    if trigger == "s3resume":
        text = _DOMAIN_TYPE % domid if vcpus is None else ""
        _err(text + _logd("libxl_domain.c:2162:domain_s3_resume_done", domid,
                          "Send trigger 's3resume' failed, rc=-6"))
        return
    if vcpus is None or (vcpuid & 0xFFFFFFFF) >= vcpus:
        errno = "No such process"
    elif trigger == "nmi":
        return
    elif trigger in ("init", "reset"):
        errno = "Function not implemented"
    else:
        errno = "Invalid argument"
    _err(_logd("libxl_domain.c:2207:libxl_send_trigger", domid,
               "Send trigger '%s' failed: %s" % (trigger, errno)))


@faults
def trigger(opts: Opts | None, args: list[str]) -> int:
    """main_trigger: the trigger's name (libxl_trigger_from_string, any
    case), an optional vcpu (strtol; not a number: a warning, vcpu 0)."""
    domid, vcpus = _find(args[0])
    name = args[1]
    if name.lower() not in _TRIGGERS:
        _err('Invalid trigger "%s"\n' % name)
        return 1
    vcpuid = 0
    if len(args) > 2:
        vcpuid, digits = _strtol(args[2])
        if vcpuid == 0 and not digits:
            _err("Invalid vcpuid, using default vcpuid=0.\n\n")
    _send_trigger(domid, vcpus, name.lower(), vcpuid)
    return 0


@faults
def button_press(opts: Opts | None, args: list[str]) -> int:
    """main_button_press: deprecated for `trigger`; power or sleep."""
    from pyxl.cli import table, xlopt

    _err('WARNING: "button-press" is deprecated. Please use "trigger"\n')
    opts, args = xlopt.def_getopt(table.BY_NAME["button-press"], args)
    domid, vcpus = _find(args[0])
    if args[1] not in ("power", "sleep"):
        _err("%s is an invalid button identifier\n" % args[1])
        return 1
    _send_trigger(domid, vcpus, args[1], 0)
    return 0


# -- device model: QMP, VNC, CD-ROM ------------------------------------------

@faults
def qemu_monitor_command(opts: Opts | None, args: list[str]) -> int:
    """main_qemu_monitor_command: libxl_qemu_monitor_command connects to the
    domain's QMP socket (libxl_qmp.c qmp_ev_lock_aquired); a PV guest has no
    device model listening there."""
    domid, vcpus = _find(args[0])
    if len(args) > 2:
        _err("Invalid arguments.\n")
        return 1
    _err(_logd("libxl_qmp.c:1334:qmp_ev_lock_aquired", domid,
               "Failed to connect to QMP socket /var/run/xen/qmp-libxl-%d: "
               "No such file or directory" % domid))
    return 1


@faults
def vncviewer(opts: Opts | None, args: list[str]) -> int:
    """main_vncviewer: libxl_vncviewer_exec reads console/vnc-port, which
    only a device model's VNC server writes; xl then fails."""
    domid, _ = _find(args[0])
    _err(_logd("libxl_console.c:201:libxl_vncviewer_exec", domid, "Cannot get vnc-port"))
    return 1


def _cd_insert(dom: str, vdev: str, phys: str | None) -> int:
    """cd_insert (xl_cdrom.c): the spec is parsed and the image stat'ed
    before libxl_cdrom_insert, which wants an HVM domain."""
    from pyxl.config.disk import parse_disk
    from pyxl.config.model import DiskFormat

    domid, vcpus = _find(dom)
    spec = "vdev=%s,access=r,devtype=cdrom,target=%s" % (vdev, phys or "")
    out: list = []
    disk = parse_disk(spec, "command line", out)
    if disk is None:
        _err("".join(line + "\n" for line in out))
        return 1
    if disk.format != DiskFormat.EMPTY:
        try:
            os.stat(disk.pdev_path or "")
        except OSError:
            _err("Cannot stat file: %s\n" % disk.pdev_path)
            return 1
    if vcpus is None:
        _err(_DOMAIN_TYPE % domid)
        return 1
    _err(_logd("libxl_disk.c:838:libxl_cdrom_insert", domid,
               "cdrom-insert requires an HVM domain"))
    return 1


@faults
def cd_insert(opts: Opts | None, args: list[str]) -> int:
    return _cd_insert(args[0], args[1], args[2])


@faults
def cd_eject(opts: Opts | None, args: list[str]) -> int:
    return _cd_insert(args[0], args[1], None)


# -- PCI passthrough (xl_pci.c; libxl_pci.c) ---------------------------------

_NO_PCIBACK = ("libxl: error: libxl_pci.c:444:libxl_device_pci_assignable_list: "
               "Looks like pciback driver not loaded\n")


@faults
def pci_list(opts: Opts | None, args: list[str]) -> int:
    """main_pcilist: libxl_device_pci_list finds no passed-through device
    (none can be assigned here), so xl prints nothing, not even a header."""
    _find(args[0])
    return 0


@faults
def pci_attach(opts: Opts | None, args: list[str]) -> int:
    """main_pciattach: the spec parsed (xlu_pci_parse_spec_string; a bad
    one exits 2), then libxl__device_pci_add asks whether the device is
    assignable: with no pciback driver nothing is."""
    from pyxl.config.model import DevicePci
    from pyxl.config.pci import parse_pci

    domid, vcpus = _find(args[0])
    spec = args[1]
    pci = DevicePci()
    if parse_pci(pci, spec, lambda s: _err(s)):
        _err('pci-attach: malformed PCI_SPEC_STRING "%s"\n' % spec)
        return 2
    if pci.name:
        # name2bdf: no device of that name (ERROR_NOTFOUND)
        _err(_logd("libxl_pci.c:1803:device_pci_add_done", domid,
                   "libxl__device_pci_add failed for PCI device '%s' (rc -23)" % pci.name)
             + _UNABLE_TO_ADD)
        return 1
    bdf = "%x:%x:%x.%x" % (pci.domain, pci.bus, pci.dev, pci.func)
    # its HVM check asks for the domain's type first
    _err((_DOMAIN_TYPE % domid if vcpus is None else "") + _NO_PCIBACK
         + _logd("libxl_pci.c:1677:libxl__device_pci_add", domid,
                 "PCI device %s is not assignable" % bdf)
         + _logd("libxl_pci.c:1809:device_pci_add_done", domid,
                 "libxl__device_pci_add failed for PCI device %s (rc -3)" % bdf)
         + _UNABLE_TO_ADD)
    return 1


@faults
def pci_detach(opts: Opts | None, args: list[str]) -> int:
    """main_pcidetach (xl_pci.c pcidetach): the spec parsed (a bad one
    exits 2), then libxl_device_pci_remove, or with -f
    libxl_device_pci_destroy; both run libxl__device_pci_remove_common
    (libxl_pci.c), where `force` only matters once a device is found
    attached, which none is here:

    - a named device is looked up first (name2bdf: none has a name here,
      ERROR_NOTFOUND, not logged);
    - "BDF.*" asks pci_multifunction_check for the functions of that slot
      in /sys/bus/pci/devices: the host has none, so there is nothing to
      remove and the removal succeeds (exit 0, nothing printed);
    - otherwise do_pci_remove asks for the domain's type, then lists the
      domain's passed-through devices (libxl_device_pci_list: none, NULL):
      ERROR_FAIL, which device_addrm_aocomplete reports; exit 1."""
    from pyxl.config.model import PCI_FUNC_ALL, DevicePci
    from pyxl.config.pci import parse_pci

    domid, vcpus = _find(args[0])
    spec = args[1]
    pci = DevicePci()
    if parse_pci(pci, spec, lambda s: _err(s)):
        _err('pci-detach: malformed PCI_SPEC_STRING "%s"\n' % spec)
        return 2
    if not pci.name and pci.vfunc_mask == PCI_FUNC_ALL:
        return 0
    _err((_DOMAIN_TYPE % domid if vcpus is None and not pci.name else "")
         + "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: "
           "unable to remove device\n")
    return 1


def _parse_bdf(text: str) -> DevicePci | None:
    """xlu_pci_parse_bdf: a DevicePci, or None where xl says "malformed"
    (what follows the BDF is not looked at)."""
    from pyxl.config.model import DevicePci
    from pyxl.config.pci import _NoFunction, parse_bdf

    pci = DevicePci()
    try:
        if parse_bdf(pci, text) is None:
            return None
    except _NoFunction:
        return None
    return pci


def _bdf(pci: DevicePci) -> str:
    return "%04x:%02x:%02x.%01x" % (pci.domain, pci.bus, pci.dev, pci.func)   # PCI_BDF


@faults
def pci_assignable_add(opts: Opts | None, args: list[str]) -> int:
    """main_pciassignable_add: libxl__device_pci_assignable_add checks the
    name, then looks for the device in sysfs: the simulated host has none."""
    name = None
    for k, v in opts or []:
        if k == "n":
            name = v
    pci = _parse_bdf(args[0])
    if pci is None:
        _err('pci-assignable-add: malformed BDF "%s"\n' % args[0])
        return 2
    pos = "libxl: error: libxl_pci.c:%d:libxl__device_pci_assignable_add: "
    if name is not None and len(name.encode()) > 64:
        _err(pos % 777 + "Name too long\n")
    elif name is not None and not all(0x21 <= b <= 0x7E for b in name.encode()):
        _err(pos % 783 + "Names may only include printable characters\n")
    else:
        _err(pos % 792 + "Couldn't lstat /sys/bus/pci/devices/%s: No such file or directory\n"
             % _bdf(pci))
    return 1


@faults
def pci_assignable_remove(opts: Opts | None, args: list[str]) -> int:
    """main_pciassignable_remove: by name first (no device has one here,
    ERROR_NOTFOUND), then by BDF: Xen without an IOMMU refuses to
    de-quarantine it (iommu_do_domctl: EOPNOTSUPP)."""
    pci = _parse_bdf(args[0])
    if pci is None:
        _err("pci-assignable-remove: malformed BDF '%s'\n" % args[0])
        return 2
    _err("libxl: error: libxl_pci.c:906:libxl__device_pci_assignable_remove: "
         "failed to de-quarantine %s\n" % _bdf(pci))
    return 1


# -- Intel RDT (xl_psr.c; libxl_psr.c): this host's CPUs have none -----------
# Xen answers XEN_DOMCTL_psr_cmt_op with ENODEV when CMT is off
# (arch/x86/domctl.c), psr_get_info / psr_set_val with ENODEV when no socket
# has a PSR feature (arch/x86/psr.c get_socket_info); an unknown domain is
# ESRCH before any of that (common/domctl.c).

def _psr_cmt_op(dom: str) -> int:
    domid, vcpus = _find(dom)
    if vcpus is None:
        _err("libxl: error: libxl_psr.c:46:libxl__psr_log_err_msg: "
             "invalid domain ID: No such process\n")
    else:
        _err("libxl: error: libxl_psr.c:71:libxl__psr_cmt_log_err_msg: "
             "CMT is not supported in this system: No such device\n")
    return -3 & 0xFF                 # main_psr_cmt_* return ERROR_FAIL


@faults
def psr_cmt_attach(opts: Opts | None, args: list[str]) -> int:
    return _psr_cmt_op(args[0])


@faults
def psr_cmt_detach(opts: Opts | None, args: list[str]) -> int:
    return _psr_cmt_op(args[0])


@faults
def psr_hwinfo(opts: Opts | None, args: list[str]) -> int:
    """main_psr_hwinfo: CMT reported disabled; the CAT and MBA queries fail
    without a message (libxl_psr_get_hw_info logs nothing) and their
    ERROR_FAIL is the exit status."""
    flags = {k for k, _ in opts or []}
    every = not flags
    ret = 0
    if every or "m" in flags:
        print("Cache Monitoring Technology (CMT):")
        print("%-16s: %s" % ("Enabled", "0"))
    if every or "a" in flags or "b" in flags:
        ret = -3 & 0xFF
    return ret


@faults
def psr_cmt_show(opts: Opts | None, args: list[str]) -> int:
    """main_psr_cmt_show: the monitor type, an optional domain, then
    psr_cmt_show finds CMT disabled."""
    from pyxl.cli.main import print_help

    if args[0] not in ("cache-occupancy", "total-mem-bandwidth", "local-mem-bandwidth"):
        print_help("psr-cmt-show")
        return 2
    if len(args) == 2:
        _find(args[1])
    elif len(args) > 2:
        print_help("psr-cmt-show")
        return 2
    _err("CMT is disabled in the system\n")
    return -1 & 0xFF


def _psr_show(name: str, args: list[str], level: int | None) -> int:
    """psr_val_show: the level checked, then libxl_psr_get_hw_info fails."""
    from pyxl.cli.main import print_help

    if len(args) == 1:
        _find(args[0])
    elif len(args) > 1:
        print_help(name)
        return 2
    if level is not None and level not in (2, 3):
        _err("Input lvl %d is wrong\n" % level)
        return 1
    _err("Failed to get info\n")
    return -3 & 0xFF


@faults
def psr_cat_show(opts: Opts | None, args: list[str]) -> int:
    from pyxl.config.cstr import atoi

    level = 3
    for k, v in opts or []:
        if k == "l":
            assert v is not None        # "l:" takes an argument
            level = atoi(v)
    return _psr_show("psr-cat-show", args, level)


@faults
def psr_mba_show(opts: Opts | None, args: list[str]) -> int:
    return _psr_show("psr-mba-show", args, None)


def _psr_set(name: str, feature: str, opts: Opts | None, args: list[str]) -> int:
    """libxl_psr_set_val on this host's one socket (a --socket list naming
    only others sets nothing)."""
    from pyxl.cli.main import print_help

    if len(args) != 2:
        print_help(name)
        return 2 if name == "psr-cat-set" else 1
    domid, vcpus = _find(args[0])
    sockets = [v for k, v in opts or [] if k == "s" and v is not None]     # "s:" takes an argument
    if sockets and not _names_socket_zero(sockets):
        return 0
    if vcpus is None:
        _err("libxl: error: libxl_psr.c:46:libxl__psr_log_err_msg: "
             "invalid domain ID: No such process\n")
    else:
        _err("libxl: error: libxl_psr.c:123:libxl__psr_alloc_log_err_msg: "
             "%s: is not supported in this system\n" % feature)
    return -3 & 0xFF


def _names_socket_zero(values: list[str]) -> bool:
    """Whether xl's --socket ranges ("0,2-3") set bit 0 (parse_range)."""
    for value in values:
        for item in value.strip().split(","):
            lo, _, hi = item.partition("-")
            try:
                start = int(lo, 0) if lo.strip() else 0
                end = int(hi, 0) if hi.strip() else start
            except ValueError:
                continue
            if start <= 0 <= end:
                return True
    return False


@faults
def psr_cat_set(opts: Opts | None, args: list[str]) -> int:
    """main_psr_cat_cbm_set: the level and CDP choice, then the CBM set."""
    from pyxl.config.cstr import atoi

    level, data, code = 3, False, False
    for k, v in opts or []:
        if k == "l":
            assert v is not None        # "l:" takes an argument
            level = atoi(v)
        elif k == "d":
            data = True
        elif k == "c":
            code = True
    if level == 2:
        feature = "L2 CAT"
    elif level == 3:
        if data and code:
            _err("Cannot handle -c and -d at the same time\n")
            return 1
        feature = "CDP" if (data or code) else "L3 CAT"
    else:
        _err("Input lvl %d is wrong\n" % level)
        return 1
    return _psr_set("psr-cat-set", feature, opts, args)


@faults
def psr_mba_set(opts: Opts | None, args: list[str]) -> int:
    return _psr_set("psr-mba-set", "MBA", opts, args)
