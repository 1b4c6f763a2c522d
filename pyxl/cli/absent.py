"""xl commands for features the simulated host does not have.

Where xl's answer on a host lacking the feature is well defined, it is given
here exactly: no FLASK security module (getenforce, setenforce, loadpolicy),
no pciback driver (pci-assignable-list), no hypervisor file system
(set-parameters).
"""

from __future__ import annotations

import os
import sys

from pyxl.fsutil import strerror

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()


# Xen without FLASK answers every xsm_op with -ENOSYS (xen/include/xsm/dummy.h
# xsm_do_xsm_op); xc_flask_op returns -1 with errno ENOSYS and libxl_flask_*
# pass that on, which main_* return: exit status 255.

def getenforce(opts: None, args: list[str]) -> int:
    """main_getenforce (xl_flask.c): no arguments read at all."""
    print("Flask XSM Disabled")
    return -1 & 0xFF


def setenforce(opts: None, args: list[str]) -> int:
    """main_setenforce: argv[optind] without getopt; 0/1/permissive/enforcing."""
    from pyxl.cli.main import print_help

    mode = args[0] if args else None
    if mode is None or (mode not in ("0", "1")
                        and mode.lower() not in ("permissive", "enforcing")):
        print_help("setenforce")
        return 2
    _err("Flask XSM disabled\n")
    return -1 & 0xFF


def loadpolicy(opts: None, args: list[str]) -> int:
    """main_loadpolicy: the policy file is opened and read before Xen is asked."""
    from pyxl.cli.main import print_help

    if not args:
        print_help("loadpolicy")
        return 2
    name = args[0]
    try:
        fd = os.open(name, os.O_RDONLY)
    except OSError as e:
        _err("Error occurred opening policy file '%s': %s\n" % (name, strerror(e)))
        return -1 & 0xFF
    try:
        try:
            size = os.stat(name).st_size
        except OSError as e:
            # sic: xl's message has no space between "about" and "policy"
            _err("Error occurred retrieving information about"
                 "policy file '%s': %s\n" % (name, strerror(e)))
            return -1 & 0xFF
        try:
            while size > 0:
                chunk = os.read(fd, min(size, 1 << 20))
                if not chunk:
                    break
                size -= len(chunk)
        except OSError as e:
            _err("Unable to read new Flask policy file: %s\n" % strerror(e))
            return -1 & 0xFF
    finally:
        os.close(fd)
    _err("Flask XSM disabled\n")
    return -1 & 0xFF


def pci_assignable_list(opts: Opts, args: list[str]) -> int:
    """main_pciassignable_list (xl_pci.c) on a host without the pciback driver:
    libxl_device_pci_assignable_list fails to open
    /sys/bus/pci/drivers/pciback, logs this (the text and its libxl_pci.c
    line are the real xl 4.17.5's) and xl lists nothing, exit 0."""
    _err("libxl: error: libxl_pci.c:444:libxl_device_pci_assignable_list: "
         "Looks like pciback driver not loaded\n")
    return 0


def set_parameters(opts: Opts | None, args: list[str]) -> int:
    """main_set_parameters (xl_misc.c) on a Xen built without CONFIG_HYPFS,
    as the simulated hypervisor is: libxl_set_parameters (libxl.c) fails in
    xenhypfs_open, whose __HYPERVISOR_hypfs_op is do_ni_hypercall's
    -ENOSYS, and xl names the parameters it could not set."""
    _err("libxl: error: libxl.c:676:libxl_set_parameters: opening Xen hypfs: "
         "Function not implemented\n"
         "cannot set parameters: %s\n" % args[0])
    return 1
