"""Every `libxl_*.c:LINE:function` pyxl prints is the one the peer's libxl prints.

The expected positions are read from the Debian build itself (libxl_lines.py);
the comments name the call site in upstream stable-4.17 at 01140da4e8 (the
build's base), where Debian's patches have not moved it.
"""

from __future__ import annotations

import re

import pytest

from libxl_lines import LIBXENGUEST, line_of, lines_of
from pyxl.toolstack.errors import KINDS

# (fault, file, function, format string as in the source)
SITES = [
    # libxl_domain.c libxl__destroy_domid, upstream 1183
    ("DESTROY_FAILED", "libxl_domain.c", "libxl__destroy_domid", "Non-existant domain"),
    # libxl_domain.c domain_destroy_callback, upstream 1137
    ("DESTROY_FAILED", "libxl_domain.c", "domain_destroy_callback", "Unable to destroy guest"),
    # libxl_domain.c domain_destroy_cb, upstream 1064
    ("DESTROY_FAILED", "libxl_domain.c", "domain_destroy_cb", "Destruction of domain failed"),
    # the same three after a create that failed once a domain was made
    # (xl_vmcontrol.c error_out destroys it again)
    ("NAME_IN_USE", "libxl_domain.c", "libxl__destroy_domid", "Non-existant domain"),
    ("KERNEL_MISSING", "libxl_domain.c", "domain_destroy_callback", "Unable to destroy guest"),
    ("DISK_MISSING", "libxl_domain.c", "domain_destroy_cb", "Destruction of domain failed"),
    # libxl_create.c domcreate_destruction_cb, upstream 2049 (Debian: +2): Xen made
    # no domain, libxl's own destroy of INVALID_DOMID fails
    ("DOMAIN_CREATE_FAIL", "libxl_create.c", "domcreate_destruction_cb",
     "unable to destroy domain following failed creation"),
    # libxl_domain.c libxl__domain_rename, upstream 81
    ("NAME_IN_USE", "libxl_domain.c", "libxl__domain_rename",
     'Domain with name "%s" already exists.'),
    ("RENAME_DUP", "libxl_domain.c", "libxl__domain_rename",
     'Domain with name "%s" already exists.'),
    # libxl_create.c initiate_domain_create, upstream 1294 (Debian: +2)
    ("NAME_IN_USE", "libxl_create.c", "initiate_domain_create", "cannot make domain: %d"),
    # libxl_create.c initiate_domain_create, upstream 1316 (Debian: +2)
    ("DISK_MISSING", "libxl_create.c", "initiate_domain_create",
     "Unable to set disk defaults for disk %d"),
    # libxl_device.c libxl__device_disk_set_backend, upstream 455
    ("DISK_MISSING", "libxl_device.c", "libxl__device_disk_set_backend",
     "Disk vdev=%s failed to stat: %s"),
    # libxl_create.c domcreate_rebuild_done, upstream 1638 (Debian: +2)
    ("KERNEL_MISSING", "libxl_create.c", "domcreate_rebuild_done",
     "cannot (re-)build domain: %d"),
    # libxl_device.c device_backend_callback, upstream 1181
    ("DEVICE_TIMEOUT", "libxl_device.c", "device_backend_callback",
     "unable to %s device with path %s"),
    ("VTPM_ADD_TIMEOUT", "libxl_device.c", "device_backend_callback",
     "unable to %s device with path %s"),
    # libxl_create.c domcreate_attach_devices, upstream 1919 (Debian: +2)
    ("DEVICE_TIMEOUT", "libxl_create.c", "domcreate_attach_devices",
     "unable to add %s devices"),
    # libxl_domain.c destroy_domid_pci_done, upstream 1219
    ("DESTROY_SELF", "libxl_domain.c", "destroy_domid_pci_done", "xc_domain_pause failed"),
    # libxl_domain.c domain_destroy_domid_cb, upstream 1616
    ("DESTROY_SELF", "libxl_domain.c", "domain_destroy_domid_cb", "xc_domain_destroy failed"),
    ("DESTROY_SELF", "libxl_domain.c", "domain_destroy_callback", "Unable to destroy guest"),
    ("DESTROY_SELF", "libxl_domain.c", "domain_destroy_cb", "Destruction of domain failed"),
    # libxl_domain.c libxl_domain_pause, upstream 587
    ("PAUSE_NO_DOMAIN", "libxl_domain.c", "libxl_domain_pause", "Pausing domain"),
    # libxl_dom.c libxl__domain_type, upstream 37
    ("UNPAUSE_NO_DOMAIN", "libxl_dom.c", "libxl__domain_type",
     "unable to get domain type for domid=%u"),
    ("SHUTDOWN_NO_DOMAIN", "libxl_dom.c", "libxl__domain_type",
     "unable to get domain type for domid=%u"),
    ("CONSOLE_NO_DOMAIN", "libxl_dom.c", "libxl__domain_type",
     "unable to get domain type for domid=%u"),
    # libxl_create.c libxl__domain_build_info_setdefault and its caller
    ("VCPUS_BITMAP", "libxl_create.c", "libxl__domain_build_info_setdefault",
     "avail_vcpus bitmap contains too many VCPUS"),
    ("VCPUS_BITMAP", "libxl_create.c", "libxl__domain_config_setdefault",
     "Unable to set domain build info defaults"),
    # libxl_create.c libxl__domain_make: xc_domain_create failed
    ("DOMAIN_CREATE_FAIL", "libxl_create.c", "libxl__domain_make", "domain creation fail"),
    ("DOMAIN_CREATE_FAIL", "libxl_create.c", "initiate_domain_create", "cannot make domain: %d"),
    # libxl_domain.c libxl__domain_rename: the xs_write of the new name failed
    ("NAME_WRITE_FAILED", "libxl_domain.c", "libxl__domain_rename",
     "Failed to write new name `%s' for domain previously named `%s'"),
    ("NAME_WRITE_FAILED", "libxl_create.c", "initiate_domain_create", "cannot make domain: %d"),
    ("RENAME_WRITE_FAILED", "libxl_domain.c", "libxl__domain_rename",
     "Failed to write new name `%s' for domain previously named `%s'"),
    # libxl_mem.c libxl_set_memory_target, upstream 278 and 287
    ("MEM_ABOVE_STATIC_MAX", "libxl_mem.c", "libxl_set_memory_target",
     "memory_dynamic_max must be less than or equal to memory_static_max\n"),
    ("MEM_DOM0_MIN", "libxl_mem.c", "libxl_set_memory_target",
     "New target %lu for dom0 is below the minimum threshold"),
    # libxl_mem.c libxl_domain_setmaxmem, upstream 59
    ("MEM_MAX_BELOW_TARGET", "libxl_mem.c", "libxl_domain_setmaxmem",
     "memory_static_max must be greater than or or equal to memory_dynamic_max"),
    # libxl_domain.c libxl_set_vcpuonline, upstream 1863 and 1869
    ("VCPU_SET_ZERO", "libxl_domain.c", "libxl_set_vcpuonline", "Requested 0 VCPUs!"),
    ("VCPU_SET_ABOVE_MAX", "libxl_domain.c", "libxl_set_vcpuonline",
     "Requested %d VCPUs, however maxcpus is %d!"),
    # libxl_sched.c libxl__set_vcpuaffinity, upstream 62
    ("VCPU_PIN_FAILED", "libxl_sched.c", "libxl__set_vcpuaffinity", "Setting vcpu affinity"),
    # create with a hard affinity outside the pool: libxl__build_pre, upstream 350,
    # then domcreate_rebuild_done; pool= naming no pool: libxl__domain_config_setdefault,
    # upstream 1132 (Debian: +2)
    ("AFFINITY_BUILD_FAILED", "libxl_sched.c", "libxl__set_vcpuaffinity",
     "Setting vcpu affinity"),
    ("AFFINITY_BUILD_FAILED", "libxl_dom.c", "libxl__build_pre",
     "setting affinity failed on vcpu `%d'"),
    ("AFFINITY_BUILD_FAILED", "libxl_create.c", "domcreate_rebuild_done",
     "cannot (re-)build domain: %d"),
    ("AFFINITY_BUILD_FAILED", "libxl_domain.c", "libxl__destroy_domid", "Non-existant domain"),
    ("ILLEGAL_POOL", "libxl_create.c", "libxl__domain_config_setdefault",
     "Illegal pool specified: %s"),
    # libxl_sched.c sched_ratelimit_check, upstream 270
    ("SCHED_RATELIMIT_RANGE", "libxl_sched.c", "sched_ratelimit_check",
     "Ratelimit out of range, valid range is from %d to %d"),
    # libxl_cpupool.c libxl_cpupool_movedomain, upstream 437
    ("CPUPOOL_MOVE_FAILED", "libxl_cpupool.c", "libxl_cpupool_movedomain",
     "Error moving domain to cpupool"),
    # block-attach / network-attach (ops/devices.py): libxl_disk.c
    # libxl__device_from_disk, upstream 214, and device_disk_add, 335 and 343;
    # libxl_device.c libxl__device_add_async, 1998; device_addrm_aocomplete,
    # 1481 and 1486
    ("DISK_ADD_STAT", "libxl_device.c", "libxl__device_disk_set_backend",
     "Disk vdev=%s failed to stat: %s"),
    ("DISK_ADD_STAT", "libxl_device.c", "device_addrm_aocomplete", "unable to %s device"),
    ("DISK_ADD_VDEV", "libxl_disk.c", "libxl__device_from_disk",
     "Invalid or unsupported virtual disk identifier %s"),
    ("DISK_ADD_VDEV", "libxl_disk.c", "device_disk_add",
     "Invalid or unsupported virtual disk identifier %s"),
    ("DISK_ADD_EXISTS", "libxl_disk.c", "device_disk_add", "device already exists in xenstore"),
    ("DISK_ADD_NO_DOMAIN", "libxl_dom.c", "libxl__domain_type",
     "unable to get domain type for domid=%u"),
    ("DISK_REMOVE_TIMEOUT", "libxl_device.c", "device_backend_callback",
     "unable to %s device with path %s"),
    ("DISK_REMOVE_TIMEOUT", "libxl_device.c", "device_addrm_aocomplete",
     "Unable to %s %s with id %u"),
    ("NIC_ADD_NO_DOMAIN", "libxl_dom.c", "libxl__domain_type",
     "unable to get domain type for domid=%u"),
    ("NIC_ADD_EXISTS", "libxl_device.c", "libxl__device_add_async",
     "device already exists in xenstore"),
    # vkb-attach: libxl_dm.c libxl__dm_check_start, upstream 3842 (Debian: +3)
    ("VKB_DM_REQUIRED", "libxl_dm.c", "libxl__dm_check_start",
     "device model required but not running"),
    ("VKB_ADD_EXISTS", "libxl_device.c", "libxl__device_add_async",
     "device already exists in xenstore"),
    ("VKB_ADD_TIMEOUT", "libxl_device.c", "device_backend_callback",
     "unable to %s device with path %s"),
    ("VKB_ADD_TIMEOUT", "libxl_device.c", "device_addrm_aocomplete",
     "Unable to %s %s with id %u"),
    # usb commands: libxl_usb.c (RELEASE-4.17.5 lines, as the binary's)
    ("USBCTRL_PV_VERSION", "libxl_usb.c", "libxl__device_usbctrl_setdefault",
     "USB version for paravirtualized devices must be 1 or 2"),
    ("USBCTRL_PV_PORTS", "libxl_usb.c", "libxl__device_usbctrl_setdefault",
     "Number of ports for USB controller is limited to %u"),
    ("USBCTRL_DM_PORTS_1", "libxl_usb.c", "libxl__device_usbctrl_setdefault",
     "Number of ports for USB controller of version 1 is always 2"),
    ("USBCTRL_DM_PORTS_2", "libxl_usb.c", "libxl__device_usbctrl_setdefault",
     "Number of ports for USB controller of version 2 is always 6"),
    ("USBCTRL_DM_PORTS_3", "libxl_usb.c", "libxl__device_usbctrl_setdefault",
     "Number of ports for USB controller of version 3 is limited to 15"),
    ("USBCTRL_DM_VERSION", "libxl_usb.c", "libxl__device_usbctrl_setdefault",
     "Illegal USB version"),
    ("USBCTRL_QMP_FAILED", "libxl_qmp.c", "qmp_ev_lock_aquired",
     "Failed to connect to QMP socket %s"),
    ("USBCTRL_ADD_EXISTS", "libxl_usb.c", "libxl__device_usbctrl_add_xenstore",
     "device already exists in xenstore"),
    ("USBDEV_NOT_ASSIGNABLE", "libxl_usb.c", "libxl__device_usbdev_add",
     "USB device is not assignable."),
]


@pytest.fixture(scope="module")
def peer():
    from peers import need_peer

    need_peer("xl")         # xen-utils-4.17 brings the libraries; gcc brings objdump


@pytest.mark.parametrize("fault,file,func,fmt", SITES,
                         ids=["%s-%s" % (s[0], s[2]) for s in SITES])
def test_fault_positions_are_the_debian_builds(peer, fault, file, func, fmt):
    got = re.findall(r"libxl: error: %s:(\d+):%s: " % (re.escape(file), func),
                     KINDS[fault].message)
    assert got and {int(n) for n in got} <= lines_of(fmt)


def test_kernel_missing_positions(peer):
    # libxl_dom.c libxl__build_pv: `ret = xc_dom_kernel_file(dom, state->pv_kernel.path);`
    # logs "xc_dom_kernel_file failed" at upstream line 646 (one of four call sites)
    assert 646 in lines_of("xc_dom_kernel_file failed")
    msg = KINDS["KERNEL_MISSING"].message
    assert "libxl: error: libxl_dom.c:646:libxl__build_pv: xc_dom_kernel_file failed: " in msg
    # xg_dom_core.c xc_dom_malloc_filemap: xc_dom_panic(..., "failed to open file '%s': %s")
    line = line_of("failed to open file '%s': %s", LIBXENGUEST, reg="%edx")
    assert "xc: error: panic: xg_dom_core.c:%d: failed to open file " % line in msg


# positions printed outside the fault table: (file, function) -> format string
OTHER_SITES = {
    # libxl_utils.c libxl_read_file_contents, upstream 346 (config/cfgfile.py)
    ("libxl_utils.c", "libxl_read_file_contents"): "%s is not a plain file",
    # libxl_utils.c libxl_cpu_bitmap_alloc, upstream 809 (config/parse.py)
    ("libxl_utils.c", "libxl_cpu_bitmap_alloc"): "invalid number of cpus provided",
    # libxl_pci.c libxl_device_pci_assignable_list, upstream 444 (cli/absent.py)
    ("libxl_pci.c", "libxl_device_pci_assignable_list"): "Looks like pciback driver not loaded",
    # libxl_sched.c sched_credit2_domain_set, upstream 445 and 455 (credit's
    # own copies of both formats are at 238 and 248)
    ("libxl_sched.c", "sched_credit2_domain_set"): (
        "Cpu weight out of range, valid values are within range from 1 to 65535",
        "Cpu cap out of range, valid range is from 0 to %d for specified number of vcpus"),
    # libxl_sched.c libxl_sched_credit{,2}_params_get, upstream 287 and 362 (cli/resources.py)
    ("libxl_sched.c", "libxl_sched_credit_params_get"): "getting Credit scheduler parameters",
    ("libxl_sched.c", "libxl_sched_credit2_params_get"): "getting Credit2 scheduler parameters",
    # libxl_domain.c libxl_domain_core_dump, upstream 603 (cli/resources.py)
    ("libxl_domain.c", "libxl_domain_core_dump"): "Core dumping domain to %s",
    # libxl.c libxl_set_parameters, upstream 676 (cli/absent.py)
    ("libxl.c", "libxl_set_parameters"): "opening Xen hypfs",
    # libxl_cpupool.c libxl_cpupool_cpuadd / _cpuremove, upstream 302 and 365
    ("libxl_cpupool.c", "libxl_cpupool_cpuadd"): "Error moving cpu %d to cpupool",
    ("libxl_cpupool.c", "libxl_cpupool_cpuremove"): "Error removing cpu %d from cpupool",
    # cli/impossible.py: libxl_domain.c libxl_send_trigger 2207 and
    # domain_s3_resume_done 2162; libxl_qmp.c qmp_ev_lock_aquired 1334;
    # libxl_console.c libxl_vncviewer_exec 201; libxl_disk.c
    # libxl_cdrom_insert 838; libxl_pci.c libxl__device_pci_add 1677 and
    # device_pci_add_done 1803, 1809; libxl_psr.c's loggers 46, 71, 123
    ("libxl_domain.c", "libxl_send_trigger"): "Send trigger '%s' failed",
    ("libxl_domain.c", "domain_s3_resume_done"): "Send trigger '%s' failed, rc=%d",
    ("libxl_qmp.c", "qmp_ev_lock_aquired"): "Failed to connect to QMP socket %s",
    ("libxl_console.c", "libxl_vncviewer_exec"): "Cannot get vnc-port",
    ("libxl_disk.c", "libxl_cdrom_insert"): "cdrom-insert requires an HVM domain",
    ("libxl_pci.c", "libxl__device_pci_add"): "PCI device %x:%x:%x.%x is not assignable",
    ("libxl_pci.c", "libxl__device_pci_assignable_add"): (
        "Name too long", "Names may only include printable characters", "Couldn't lstat %s"),
    ("libxl_pci.c", "libxl__device_pci_assignable_remove"):
        "failed to de-quarantine %04x:%02x:%02x.%01x",
    ("libxl_pci.c", "device_pci_add_done"): (
        "libxl__device_pci_add failed for PCI device %x:%x:%x.%x (rc %d)",
        "libxl__device_pci_add failed for PCI device '%s' (rc %d)"),
    ("libxl_psr.c", "libxl__psr_log_err_msg"): "%s",
    ("libxl_psr.c", "libxl__psr_cmt_log_err_msg"): "%s",
    ("libxl_psr.c", "libxl__psr_alloc_log_err_msg"): "%s: %s",
    # cli/saverestore.py: libxl_utils.c READ_WRITE_EXACTLY(read, ...), upstream 505
    ("libxl_utils.c", "libxl_read_exactly"): ("file/stream truncated reading %s%s%s",
                                              "failed to read %s%s%s"),
    # cli/saverestore.py save_domain: READ_WRITE_EXACTLY(write, ...), upstream 506;
    # libxl_dom_suspend.c domain_suspend_common_pvcontrol_suspending 269,
    # suspend_common_wait_guest_check 342, suspend_common_wait_guest_timeout
    # 372, domain_resume_done 666; libxl_stream_write.c
    # libxl__xc_domain_save_done 347
    ("libxl_utils.c", "libxl_write_exactly"): "failed to write %s%s%s",
    ("libxl_dom_suspend.c", "domain_suspend_common_pvcontrol_suspending"):
        "guest didn't acknowledge suspend, cancelling request",
    ("libxl_dom_suspend.c", "suspend_common_wait_guest_check"):
        "guest we were suspending has been destroyed",
    ("libxl_dom_suspend.c", "suspend_common_wait_guest_timeout"):
        "guest did not suspend, timed out",
    ("libxl_dom_suspend.c", "domain_resume_done"): "xc_domain_resume failed",
    ("libxl_stream_write.c", "libxl__xc_domain_save_done"): "saving domain: %s",
    # cli/migrate.py: libxl_exec.c libxl_report_child_exitstatus 117, 120,
    # 127; libxl_domain.c libxl_domain_remus_start 448; libxl_remus.c
    # libxl__remus_setup 87
    ("libxl_exec.c", "libxl_report_child_exitstatus"): (
        "%s [%ld] exited with error status %d", "%s [%ld] unexpectedly exited status zero",
        "%s [%ld] died due to fatal signal %s%s"),
    ("libxl_domain.c", "libxl_domain_remus_start"): (
        "Unsafe mode must be enabled to replicate to /dev/null,"
        "disable network buffering and disk replication"),
    ("libxl_remus.c", "libxl__remus_setup"): "Remus: No support for network buffering",
    # cli/info.py: `uptime N` for a number naming no domain (print_domU_uptime)
    ("libxl_domain.c", "libxl_vm_get_start_time"): "Can't get start time of domain",
    # cli/migrate.py remus: libxl_no_colo.c libxl__colo_save_setup 42;
    # libxl_checkpoint_device.c device_setup_iterate 153; libxl_remus.c
    # remus_setup_done 134, libxl__remus_teardown 168
    ("libxl_no_colo.c", "libxl__colo_save_setup"): "COLO is not supported",
    ("libxl_checkpoint_device.c", "device_setup_iterate"):
        "device not handled by checkpoint (device=%s:%d/%d)",
    ("libxl_remus.c", "remus_setup_done"): "Remus: failed to setup device, rc %d",
    ("libxl_remus.c", "libxl__remus_teardown"):
        "Remus: Domain suspend terminated with rc %d, teardown Remus devices...",
}


def test_every_printed_position_is_the_debian_builds(peer):
    """Every `libxl_*.c:N:function` anywhere in pyxl's source is checked here."""
    from pathlib import Path

    import pyxl

    known: dict[tuple[str, str], set[int]] = {}
    sites = [(file, func, fmt) for _, file, func, fmt in SITES] + [
        (file, func, fmt) for (file, func), fmts in OTHER_SITES.items()
        for fmt in (fmts if isinstance(fmts, tuple) else (fmts,))] + [
        ("libxl_dom.c", "libxl__build_pv", "xc_dom_kernel_file failed")]
    for file, func, fmts in sites:
        for fmt in (fmts,) if isinstance(fmts, str) else fmts:
            known.setdefault((file, func), set()).update(lines_of(fmt))
    seen = 0
    for src in Path(pyxl.__file__).parent.rglob("*.py"):
        for file, line, func in re.findall(r"(libxl_\w+\.c):(\d+):(\w+):", src.read_text()):
            assert (file, func) in known, (src, file, func)
            assert int(line) in known[(file, func)], (src, file, line, func)
            seen += 1
    assert seen >= len(known)


def test_xc_save_messages_are_the_debian_builds(peer):
    """The libxc messages cli/saverestore.py prints (xg_sr_save.c save and
    suspend_domain, xg_resume.c modify_returncode) are format strings of the
    peer's libxenguest, reported through libxenctrl's xc_reportv
    ("%s%s%s": the message, ": ", XC_INTERNAL_ERROR's "Internal error")."""
    guest = open(LIBXENGUEST, "rb").read()
    for fmt in ("Saving domain %d, type %s", "save callback suspend() failed: %d",
                "Domain has not been suspended: shutdown %d, reason %d", "Save failed (%d = %s)",
                "Dom %d not suspended: (shutdown %d, reason %d)"):
        assert b"\0" + fmt.encode() + b"\0" in guest, fmt
    ctrl = open(LIBXENGUEST.replace("libxenguest", "libxenctrl"), "rb").read()
    assert b"\0Internal error\0" in ctrl and b"\0%s%s%s\0" in ctrl


def test_restore_positions_are_the_debian_builds(peer):
    """Where pyxl.cli.streamread and saverestore say libxl logs a restore's
    failure (libxl_stream_read.c stream_header_done, process_record,
    libxl__xc_domain_restore_done; libxl_create.c domcreate_rebuild_done)."""
    from pyxl.cli import saverestore, streamread

    sites = {
        streamread.POS_IDENT: "Invalid ident: expected 0x%016lx, got 0x%016lx",
        streamread.POS_VERSION: "Unexpected Version: expected %u, got %u",
        streamread.POS_BIG_ENDIAN: "Unable to handle big endian streams",
        streamread.POS_EMU_XENSTORE: "Received a xenstore emulator record when none was expected",
        streamread.POS_EMU_CONTEXT: "Received an emulator context record when none was expected",
        streamread.POS_CHECKPOINT_END: "Unexpected CHECKPOINT_END record in stream",
        streamread.POS_CHECKPOINT_STATE: "Unexpected CHECKPOINT_STATE record in stream",
        streamread.POS_UNRECOGNISED: "Unrecognised record 0x%08x",
        streamread.POS_RESTORE_DONE: "restoring domain",
        saverestore.POS_REBUILD: "cannot (re-)build domain: %d",
        saverestore.POS_COLO_PV: "COLO only supports HVM, unable to restore domain",
    }
    for pos, fmt in sites.items():
        assert int(pos.split(":")[1]) == line_of(fmt), (pos, fmt)
