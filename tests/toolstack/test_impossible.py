"""Commands the simulated host cannot carry out answer as xl does on such a
host: end to end through `pyxl` against a PV guest.

Expected texts are built from Xen 4.17's sources (stable-4.17 01140da4e8,
the function named beside each) with libxl's `file:line` read from the
peer's Debian libxenlight (libxl_lines.py); Xen's own answers are from
xen/arch/x86/domctl.c (XEN_DOMCTL_sendtrigger, XEN_DOMCTL_psr_cmt_op) and
xen/arch/x86/psr.c (get_socket_info).
"""

from __future__ import annotations

import pytest


@pytest.fixture
def at():
    """`at(fmt, file, func, nth=0)`: "libxl: error: FILE:LINE:FUNC: " from the
    peer; `nth` picks among the call sites of one format, in source order."""
    from libxl_lines import lines_of
    from peers import need_peer

    need_peer("xl")
    return lambda fmt, file, func, nth=0: "libxl: error: %s:%d:%s: " % (
        file, sorted(lines_of(fmt))[nth], func)


def test_triggers_on_a_pv_guest(host, at):
    assert host.create("g").returncode == 0             # domid 1, one vcpu
    # the second call site: the first is domain_s3_resume's, for qemu-trad
    send = at("Send trigger '%s' failed", "libxl_domain.c", "libxl_send_trigger", 1)
    # XEN_DOMCTL_sendtrigger: power and sleep are HVM's; INIT/RESET unknown;
    # an NMI is taken; no such vcpu or domain is ESRCH.  xl ignores failures.
    for args, err in (
            (["power"], "Domain 1:Send trigger 'power' failed: Invalid argument\n"),
            (["Sleep"], "Domain 1:Send trigger 'sleep' failed: Invalid argument\n"),
            (["init"], "Domain 1:Send trigger 'init' failed: Function not implemented\n"),
            (["reset", "3"], "Domain 1:Send trigger 'reset' failed: No such process\n")):
        p = host.run("trigger", "g", *args)
        assert (p.returncode, p.stderr) == (0, send + err), args
    p = host.run("trigger", "g", "nmi", "zero")
    assert (p.returncode, p.stderr) == (0, "Invalid vcpuid, using default vcpuid=0.\n\n")
    p = host.run("trigger", "7", "nmi")
    assert p.stderr == send + "Domain 7:Send trigger 'nmi' failed: No such process\n"
    p = host.run("trigger", "g", "s3resume")          # domain_s3_resume: no device model
    assert p.stderr == at("Send trigger '%s' failed, rc=%d", "libxl_domain.c",
                          "domain_s3_resume_done") + \
        "Domain 1:Send trigger 's3resume' failed, rc=-6\n"
    assert host.run("trigger", "g", "kick").stderr == 'Invalid trigger "kick"\n'
    p = host.run("button-press", "g", "power")
    assert (p.returncode, p.stderr) == (0, 'WARNING: "button-press" is deprecated. Please use'
                                           ' "trigger"\n' + send
                                        + "Domain 1:Send trigger 'power' failed: Invalid argument\n")
    p = host.run("button-press", "g", "reset")
    assert (p.returncode, p.stderr.splitlines()[-1]) == (1, "reset is an invalid button identifier")


def test_no_device_model_no_pci_no_rdt(host, at, tmp_path):
    assert host.create("g").returncode == 0
    p = host.run("qemu-monitor-command", "g", "info", "block")
    assert (p.returncode, p.stderr) == (1, "Invalid arguments.\n")
    p = host.run("qemu-monitor-command", "g", "info block")
    assert (p.returncode, p.stderr) == (1, at("Failed to connect to QMP socket %s", "libxl_qmp.c",
                                              "qmp_ev_lock_aquired")
                                        + "Domain 1:Failed to connect to QMP socket "
                                          "/var/run/xen/qmp-libxl-1: No such file or directory\n")
    p = host.run("vncviewer", "g")
    assert (p.returncode, p.stderr) == (1, at("Cannot get vnc-port", "libxl_console.c",
                                              "libxl_vncviewer_exec")
                                        + "Domain 1:Cannot get vnc-port\n")
    # xl_cdrom.c cd_insert: the image is stat'ed first, then libxl wants HVM
    p = host.run("cd-insert", "g", "hdc", str(tmp_path / "none.iso"))
    assert (p.returncode, p.stderr) == (1, "Cannot stat file: %s\n" % (tmp_path / "none.iso"))
    hvm = at("cdrom-insert requires an HVM domain", "libxl_disk.c", "libxl_cdrom_insert") + \
        "Domain 1:cdrom-insert requires an HVM domain\n"
    assert host.run("cd-eject", "g", "hdc").stderr == hvm
    iso = tmp_path / "x.iso"
    iso.write_bytes(b"")
    assert host.run("cd-insert", "g", "hdc", str(iso)).stderr == hvm
    # PCI: nothing passed through, nothing assignable without pciback
    p = host.run("pci-list", "g")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    p = host.run("pci-attach", "g", "0000:00:02.0")
    assert (p.returncode, p.stderr) == (1, "".join([
        at("Looks like pciback driver not loaded", "libxl_pci.c",
           "libxl_device_pci_assignable_list"),
        "Looks like pciback driver not loaded\n",
        at("PCI device %x:%x:%x.%x is not assignable", "libxl_pci.c", "libxl__device_pci_add"),
        "Domain 1:PCI device 0:0:2.0 is not assignable\n",
        at("libxl__device_pci_add failed for PCI device %x:%x:%x.%x (rc %d)", "libxl_pci.c",
           "device_pci_add_done"),
        "Domain 1:libxl__device_pci_add failed for PCI device 0:0:2.0 (rc -3)\n",
        at("unable to %s device", "libxl_device.c", "device_addrm_aocomplete"),
        "unable to add device\n"]))
    p = host.run("pci-attach", "g", "zz")
    assert (p.returncode, p.stderr) == (2, 'pci-attach: malformed PCI_SPEC_STRING "zz"\n')
    # pci-detach (do_pci_remove): the domain passes nothing through
    unable_to_remove = (at("unable to %s device", "libxl_device.c", "device_addrm_aocomplete")
                        + "unable to remove device\n")
    p = host.run("pci-detach", "g", "0000:00:02.0")
    assert (p.returncode, p.stdout, p.stderr) == (1, "", unable_to_remove)
    p = host.run("pci-detach", "7", "00:02.0")
    assert (p.returncode, p.stderr) == (1, at(
        "unable to get domain type for domid=%u", "libxl_dom.c", "libxl__domain_type")
        + "unable to get domain type for domid=7\n" + unable_to_remove)
    p = host.run("pci-detach", "g", "zz")
    assert (p.returncode, p.stderr) == (2, 'pci-detach: malformed PCI_SPEC_STRING "zz"\n')
    # -f: libxl_device_pci_destroy, the same libxl__device_pci_remove_common
    # with force, which matters only for a device found attached
    p = host.run("pci-detach", "-f", "g", "0000:00:02.0")
    assert (p.returncode, p.stdout, p.stderr) == (1, "", unable_to_remove)
    p = host.run("pci-detach", "-f", "7", "00:02.0")
    assert (p.returncode, p.stderr) == (1, at(
        "unable to get domain type for domid=%u", "libxl_dom.c", "libxl__domain_type")
        + "unable to get domain type for domid=7\n" + unable_to_remove)
    p = host.run("pci-detach", "-f", "g", "zz")
    assert (p.returncode, p.stderr) == (2, 'pci-detach: malformed PCI_SPEC_STRING "zz"\n')
    # "BDF.*": pci_multifunction_check finds no function of the slot in the
    # host's (empty) /sys/bus/pci/devices, so no function is removed: rc 0
    for flags in ((), ("-f",)):
        for dom in ("g", "7"):
            p = host.run("pci-detach", *flags, dom, "00:02.*")
            assert (p.returncode, p.stdout, p.stderr) == (0, "", ""), (flags, dom)
    # RDT: CMT off, CAT/MBA queries fail silently, sets are ENODEV
    p = host.run("psr-hwinfo")
    assert (p.returncode, p.stdout) == (253, "Cache Monitoring Technology (CMT):\n"
                                             "Enabled         : 0\n")
    p = host.run("psr-cmt-attach", "g")
    assert (p.returncode, p.stderr) == (253, "libxl: error: libxl_psr.c:71:"
                                             "libxl__psr_cmt_log_err_msg: CMT is not supported in"
                                             " this system: No such device\n")
    p = host.run("psr-cat-set", "g", "0xff")
    assert (p.returncode, p.stderr) == (253, "libxl: error: libxl_psr.c:123:"
                                             "libxl__psr_alloc_log_err_msg: L3 CAT: is not "
                                             "supported in this system\n")
    assert host.run("psr-cat-show").stderr == "Failed to get info\n"
    assert host.run("psr-cmt-show", "local-mem-bandwidth").stderr == \
        "CMT is disabled in the system\n"


def test_pci_assignable_add_and_remove_on_a_host_without_pci_devices(host, at):
    """libxl_pci.c libxl__device_pci_assignable_add: the name's checks, then
    lstat of the device in sysfs (the simulated host has none);
    libxl__device_pci_assignable_remove: by name (none has one), then by
    BDF, which Xen without an IOMMU will not de-quarantine."""
    add = "libxl__device_pci_assignable_add"
    p = host.run("pci-assignable-add", "00:02.0")
    assert (p.returncode, p.stderr) == (1, at("Couldn't lstat %s", "libxl_pci.c", add)
                                        + "Couldn't lstat /sys/bus/pci/devices/0000:00:02.0:"
                                          " No such file or directory\n")
    p = host.run("pci-assignable-add", "-n", "x" * 65, "1:2:3.4")
    assert (p.returncode, p.stderr) == (1, at("Name too long", "libxl_pci.c", add)
                                        + "Name too long\n")
    p = host.run("pci-assignable-add", "--name=a b", "1:2:3.4")
    assert p.stderr == at("Names may only include printable characters", "libxl_pci.c", add) \
        + "Names may only include printable characters\n"
    p = host.run("pci-assignable-add", "1:2:3.9")
    assert (p.returncode, p.stderr) == (2, 'pci-assignable-add: malformed BDF "1:2:3.9"\n')
    p = host.run("pci-assignable-remove", "-r", "00:1f.7")
    assert (p.returncode, p.stderr) == (1, at("failed to de-quarantine %04x:%02x:%02x.%01x",
                                              "libxl_pci.c", "libxl__device_pci_assignable_remove")
                                        + "failed to de-quarantine 0000:00:1f.7\n")
    p = host.run("pci-assignable-remove", "nic0")
    assert (p.returncode, p.stderr) == (2, "pci-assignable-remove: malformed BDF 'nic0'\n")
