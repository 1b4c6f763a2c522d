"""The one table of faults shared by the daemon and the client.

The daemon raises `Fault(NAME, **args)`; the name and args cross the control
socket unchanged, and the client turns them into xl's exact stderr text and
exit status from this same table.  So a message such as
"foo is an invalid domain identifier (rc=-6)" reads the same whichever side
noticed the problem (Supervisor's `Faults` idea, with xl's words).

Messages may span several lines; `{...}` fields come from the fault's args.
libxl's own log lines carry a source position; pyxl names the libxl function
xl 4.17 reports from, with the line number Debian 12's libxenlight 4.17
passes (read from the binary: libxl_domain.c, libxl_dom.c and
libxl_device.c are RELEASE-4.17.5's lines, libxl_create.c two further on).
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, TextIO

# code: stable number (wire + docs), never reused; exit: xl's exit status;
# message: xl's stderr text, str.format()-ed with the fault's args.
# (A namedtuple, not a dataclass: every pyxl command imports this table.)
FaultKind = namedtuple("FaultKind", "code name exit message")


# libxl error numbers (libxl_types.idl libxl_error), as xl prints them in "rc=..."
ERROR_FAIL = -3
ERROR_INVAL = -6
ERROR_DOMAIN_NOTFOUND = -21

# libxl_dom.c libxl__domain_type, when xc_domain_getinfolist finds no such domain
_DOMAIN_TYPE = ("libxl: error: libxl_dom.c:37:libxl__domain_type:"
                " unable to get domain type for domid={domid}")

# libxl_domain.c libxl__destroy_domid, domain_destroy_callback and
# domain_destroy_cb: libxl_domain_destroy of a domain that is not there.
# xl's create_domain does this after every create that failed once a domid
# was made (xl_vmcontrol.c error_out: libxl_domain_destroy if
# libxl_domid_valid_guest(domid)): libxl's domcreate_complete has already
# destroyed the domain, and domain_create_cb still hands xl its domid.
_DESTROY_GONE = ("libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain {domid}:"
                 "Non-existant domain\n"
                 "libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain {domid}:"
                 "Unable to destroy guest\n"
                 "libxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain {domid}:"
                 "Destruction of domain failed")
# libxl__domain_make failed before Xen made a domain: domcreate_complete
# destroys guest_domid all the same, INVALID_DOMID, which libxl_domain_info
# does not find (logged without a "Domain N:"), and domcreate_destruction_cb
# says so; xl gets INVALID_DOMID back and destroys nothing more.
_DESTROY_NEVER_MADE = ("libxl: error: libxl_domain.c:1183:libxl__destroy_domid:"
                       " Non-existant domain\n"
                       "libxl: error: libxl_domain.c:1137:domain_destroy_callback:"
                       " Unable to destroy guest\n"
                       "libxl: error: libxl_create.c:2051:domcreate_destruction_cb:"
                       " unable to destroy domain following failed creation")

_KINDS = (
    # -- talking to the daemon (pyxl's own; Supervisor-style distinct diagnostics)
    FaultKind(1, "NOT_RUNNING", 1,
              "pyxl: the pyxl daemon is not running (no control socket at {path})"),
    FaultKind(2, "REFUSED", 1,
              "pyxl: the pyxl daemon refused the connection at {path}: {reason}"),
    FaultKind(3, "VERSION_MISMATCH", 1,
              "pyxl: the pyxl daemon speaks control protocol {theirs}, this pyxl speaks {ours};"
              " stop it with `pyxl daemon stop` and retry"),
    FaultKind(4, "PERMISSION", 1,
              "pyxl: permission denied on the control socket {path} (it is root-only, like privcmd)"),
    FaultKind(5, "START_FAILED", 1,
              "pyxl: could not start the pyxl daemon: {reason} (see {log})"),
    FaultKind(6, "BAD_REQUEST", 1, "pyxl: bad request: {reason}"),
    FaultKind(7, "INTERNAL", 1, "pyxl: internal error in the daemon: {reason}"),
    FaultKind(8, "DAEMON_BUSY", 1,
              "pyxl: {count} domain(s) other than Domain-0 still exist;"
              " use `pyxl daemon stop --force` to destroy them"),
    FaultKind(9, "SHUTTING_DOWN", 1, "pyxl: the pyxl daemon is shutting down"),
    FaultKind(10, "UNSAFE_HOST", 1, "pyxl: refusing the host root {root}: {reason}"),
    FaultKind(11, "ROOT_UNUSABLE", 1,
              "pyxl: cannot use {path}: {reason} (the simulated host's files there are"
              " root's: run as root, or set PYXL_ROOT to a directory of yours)"),
    # -- domains (xl's words)
    FaultKind(20, "INVALID_DOMAIN", 1, "{dom} is an invalid domain identifier (rc=-6)"),
    FaultKind(21, "NO_SUCH_DOMID", 1, "Error: Domain '{dom}' does not exist."),
    FaultKind(23, "DESTROY_DOM0", 1,
              "Not destroying domain 0; use -f to force.\n"
              "This can only be done when using a disaggregated hardware domain and toolstack.\n"),
    FaultKind(24, "DESTROY_FAILED", 1,
              _DESTROY_GONE + "\ndestroy failed (rc=-21)"),
    FaultKind(25, "NOMEM", 3, "failed to free memory for the domain"),
    FaultKind(26, "KERNEL_MISSING", 3,
              "xc: error: panic: xg_dom_core.c:205: failed to open file '{path}':"
              " No such file or directory: Internal error\n"
              "libxl: error: libxl_dom.c:646:libxl__build_pv: xc_dom_kernel_file failed:"
              " No such file or directory\n"
              "libxl: error: libxl_create.c:1640:domcreate_rebuild_done: Domain {domid}:"
              "cannot (re-)build domain: -3\n" + _DESTROY_GONE),
    FaultKind(27, "DISK_MISSING", 3,
              "libxl: error: libxl_device.c:455:libxl__device_disk_set_backend: Disk vdev={vdev}"
              " failed to stat: {path}: No such file or directory\n"
              "libxl: error: libxl_create.c:1318:initiate_domain_create: Domain {domid}:"
              "Unable to set disk defaults for disk {index}\n" + _DESTROY_GONE),
    FaultKind(28, "VTPM_BACKEND_MISSING", 1,
              "Specified vtpm backend domain `{backend}' does not exist!"),
    FaultKind(29, "NAME_IN_USE", 3,
              "libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain {domid}:"
              "Domain with name \"{name}\" already exists.\n"
              "libxl: error: libxl_create.c:1296:initiate_domain_create: Domain {domid}:"
              "cannot make domain: -6\n" + _DESTROY_GONE),
    FaultKind(30, "RENAME_DUP", 1,
              "libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain {domid}:"
              "Domain with name \"{name}\" already exists.\n"
              "Can't rename domain '{dom}'."),
    FaultKind(31, "DOMID_OF_NAME", 1,
              "Can't get domid of domain name '{name}', maybe this domain does not exist."),
    FaultKind(32, "DOMNAME_OF_ID", 1,
              "Can't get domain name of domain id '{domid}', maybe this domain does not exist."),
    FaultKind(33, "NOT_A_DOMID", 1, "Invalid domain id.\n"),
    FaultKind(34, "SHUTDOWN_FAILED", 1, "{what} failed (rc=-3)"),
    FaultKind(35, "DEVICE_TIMEOUT", 3,
              "libxl: error: libxl_device.c:1181:device_backend_callback: Domain {domid}:"
              "unable to add device with path {path}\n"
              "libxl: error: libxl_create.c:1921:domcreate_attach_devices: Domain {domid}:"
              "unable to add {kind} devices\n" + _DESTROY_GONE),
    # -- a number that names no domain: xl's find_domain takes it, libxl then fails
    FaultKind(50, "PAUSE_NO_DOMAIN", 0,     # main_pause ignores libxl_domain_pause's result
              "libxl: error: libxl_domain.c:587:libxl_domain_pause: Domain {domid}:"
              "Pausing domain: No such process"),
    FaultKind(51, "UNPAUSE_NO_DOMAIN", 0, _DOMAIN_TYPE),
    FaultKind(52, "SHUTDOWN_NO_DOMAIN", 1,
              "{verb} domain {domid}\n" + _DOMAIN_TYPE + "\n{what} failed (rc=-3)"),
    FaultKind(53, "CONSOLE_NO_DOMAIN", 1, _DOMAIN_TYPE + "\nUnable to attach console"),
    # destroy -f 0 where Domain-0 is the toolstack's own domain: Xen refuses to
    # pause (domctl.c XEN_DOMCTL_pausedomain) or kill (domain.c domain_kill) the
    # calling domain with -EINVAL; libxl logs and goes on, then fails
    FaultKind(56, "DESTROY_SELF", 1,
              "libxl: error: libxl_domain.c:1219:destroy_domid_pci_done: Domain 0:"
              "xc_domain_pause failed\n"
              "libxl: error: libxl_domain.c:1616:domain_destroy_domid_cb: Domain 0:"
              "xc_domain_destroy failed: Invalid argument\n"
              "libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain 0:"
              "Unable to destroy guest\n"
              "libxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain 0:"
              "Destruction of domain failed\n"
              "destroy failed (rc=-3)"),
    # -- xenconsole (tools/console/client/main.c), which xl console execs
    FaultKind(54, "CONSOLE_DOM0", 22, "Can't specify Domain-0"),      # exit(EINVAL)
    FaultKind(55, "CONSOLE_NO_TTY", 2,                                  # err(errno=ENOENT, ...)
              "xenconsole: Could not read tty from store: No such file or directory"),
    FaultKind(36, "VCPUS_BITMAP", 3,
              "libxl: error: libxl_create.c:220:libxl__domain_build_info_setdefault:"
              " avail_vcpus bitmap contains too many VCPUS\n"
              "libxl: error: libxl_create.c:1241:libxl__domain_config_setdefault:"
              " Unable to set domain build info defaults"),
    FaultKind(37, "DOMAIN_CREATE_FAIL", 3,
              "libxl: error: libxl_create.c:711:libxl__domain_make:"
              " domain creation fail: {reason}\n"
              "libxl: error: libxl_create.c:1296:initiate_domain_create: cannot make domain: -3\n"
              + _DESTROY_NEVER_MADE),
    # libxl__domain_config_setdefault: libxl_cpupool_qualifier_to_cpupoolid
    # found no such pool (LOGD with no domain made yet: no "Domain N:")
    FaultKind(192, "ILLEGAL_POOL", 3,
              "libxl: error: libxl_create.c:1134:libxl__domain_config_setdefault:"
              " Illegal pool specified: {pool}"),
    # libxl__build_pre: xc_vcpu_setaffinity's -EINVAL (vcpu_set_hard_affinity:
    # no CPU of the domain's pool in the hard affinity) fails the build
    FaultKind(193, "AFFINITY_BUILD_FAILED", 3,
              "libxl: error: libxl_sched.c:62:libxl__set_vcpuaffinity: Domain {domid}:"
              "Setting vcpu affinity: Invalid argument\n"
              "libxl: error: libxl_dom.c:350:libxl__build_pre: setting affinity failed on"
              " vcpu `{vcpu}'\n"
              "libxl: error: libxl_create.c:1640:domcreate_rebuild_done: Domain {domid}:"
              "cannot (re-)build domain: -3\n" + _DESTROY_GONE),
    FaultKind(38, "NAME_NOT_UTF8", 1,
              "pyxl: the domain name {shown} is not valid UTF-8: libxl would take its bytes"
              " as they are, but pyxl cannot represent such a name"),
    # 39 (NAME_TOO_LONG) is retired: long names are taken, their log files named safely
    FaultKind(45, "NAME_WRITE_FAILED", 3,
              "libxl: error: libxl_domain.c:107:libxl__domain_rename: Domain {domid}:"
              "Failed to write new name `{name}' for domain previously named `(null)'\n"
              "libxl: error: libxl_create.c:1296:initiate_domain_create: Domain {domid}:"
              "cannot make domain: -3\n" + _DESTROY_GONE),
    FaultKind(46, "RENAME_WRITE_FAILED", 1,
              "libxl: error: libxl_domain.c:107:libxl__domain_rename: Domain {domid}:"
              "Failed to write new name `{name}' for domain previously named `{old}'\n"
              "Can't rename domain '{dom}'."),
    # -- memory, vcpus, the scheduler (xl_mem.c, xl_vcpu.c, xl_sched.c over
    # libxl_mem.c, libxl_domain.c, libxl_sched.c).  {dp} is libxl__logv's
    # "Domain N:" -- empty for Domain-0, which libxl_domid_valid_guest rejects.
    # libxl's own format strings here end in "\n", to which the logger adds
    # its newline: a blank line follows.
    FaultKind(160, "MEM_ABOVE_STATIC_MAX", 1,
              "libxl: error: libxl_mem.c:278:libxl_set_memory_target: {dp}memory_dynamic_max"
              " must be less than or equal to memory_static_max\n\n"
              "cannot set domid {domid} dynamic max memory to : {mem}"),
    FaultKind(161, "MEM_DOM0_MIN", 1,
              "libxl: error: libxl_mem.c:287:libxl_set_memory_target: New target {kb} for dom0"
              " is below the minimum threshold\n"
              "cannot set domid {domid} dynamic max memory to : {mem}"),
    # LOGED: libxl appends strerror(errno) of whatever call last failed in xl
    # before it; nothing failed before it here, so pyxl prints none
    FaultKind(162, "MEM_MAX_BELOW_TARGET", 1,
              "libxl: error: libxl_mem.c:59:libxl_domain_setmaxmem: {dp}memory_static_max"
              " must be greater than or or equal to memory_dynamic_max\n"
              "cannot set domid {domid} static max memory to : {mem}"),
    FaultKind(163, "VCPU_SET_ZERO", 1,
              "libxl: error: libxl_domain.c:1863:libxl_set_vcpuonline: {dp}Requested 0 VCPUs!\n"
              "libxl_set_vcpuonline failed domid={domid} max_vcpus=0, rc: -3"),
    FaultKind(164, "VCPU_SET_ABOVE_MAX", 1,
              "libxl: error: libxl_domain.c:1869:libxl_set_vcpuonline: {dp}Requested {n} VCPUs,"
              " however maxcpus is {max}!\n"
              "libxl_set_vcpuonline failed domid={domid} max_vcpus={n}, rc: -3"),
    # xc_vcpu_setaffinity: vcpu_affinity_domctl's -EINVAL (no such vcpu, or a
    # hard affinity with no CPU of the domain's pool)
    FaultKind(165, "VCPU_PIN_FAILED", 1,
              "libxl: error: libxl_sched.c:62:libxl__set_vcpuaffinity: {dp}Setting vcpu affinity:"
              " Invalid argument\n"
              "{xl}"),
    FaultKind(166, "SCHED_WRONG", 1,
              "libxl_domain_sched_params_get returned {got} not {want}."),
    FaultKind(167, "SCHED_WEIGHT_RANGE", 1,
              "libxl: error: libxl_sched.c:445:sched_credit2_domain_set: {dp}Cpu weight out of"
              " range, valid values are within range from 1 to 65535\n"
              "libxl_domain_sched_params_set failed."),
    FaultKind(168, "SCHED_CAP_RANGE", 1,
              "libxl: error: libxl_sched.c:455:sched_credit2_domain_set: {dp}Cpu cap out of"
              " range, valid range is from 0 to {top} for specified number of vcpus\n"
              "libxl_domain_sched_params_set failed."),
    FaultKind(169, "SCHED_RATELIMIT_RANGE", 1,
              "libxl: error: libxl_sched.c:270:sched_ratelimit_check: Ratelimit out of range,"
              " valid range is from 100 to 500000\n"
              "libxl_sched_{sched}_params_set failed."),
    FaultKind(170, "UNKNOWN_CPUPOOL", 1, "unknown cpupool '{pool}'"),
    FaultKind(171, "UNKNOWN_DOMAIN_CPUPOOL", 1, "unknown domain '{dom}'"),
    FaultKind(172, "CPUPOOL_MOVE_FAILED", 1,
              "libxl: error: libxl_cpupool.c:437:libxl_cpupool_movedomain: {dp}"
              "Error moving domain to cpupool"),
    # -- vsnd commands (xl_vsnd.c over libxl_vsnd.c)
    FaultKind(184, "VSND_ADD_FAILED", 253, "libxl_device_vsnd_add failed."),
    FaultKind(185, "VSND_ADD_EXISTS", 253,
              "libxl: error: libxl_device.c:1998:libxl__device_add_async: Domain {domid}:"
              "device already exists in xenstore\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_vsnd_add failed."),
    FaultKind(186, "VSND_ADD_TIMEOUT", 253,
              "libxl: error: libxl_device.c:1181:device_backend_callback: Domain {domid}:"
              "unable to add device with path {path}\n"
              "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain {domid}:"
              "Unable to add vsnd with id {devid}\n"
              "libxl_device_vsnd_add failed."),
    # -- usb commands (xl_usb.c over libxl_usb.c); xl turns every failure into 1
    FaultKind(173, "USBCTRL_ADD_FAILED", 1, "libxl_device_usbctrl_add failed."),
    FaultKind(174, "USBCTRL_PV_VERSION", 1,
              "libxl: error: libxl_usb.c:67:libxl__device_usbctrl_setdefault: "
              "USB version for paravirtualized devices must be 1 or 2\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_usbctrl_add failed."),
    FaultKind(175, "USBCTRL_PV_PORTS", 1,
              "libxl: error: libxl_usb.c:75:libxl__device_usbctrl_setdefault: "
              "Number of ports for USB controller is limited to 31\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_usbctrl_add failed."),
    FaultKind(187, "USBCTRL_DM_PORTS_1", 1,
              "libxl: error: libxl_usb.c:88:libxl__device_usbctrl_setdefault: "
              "Number of ports for USB controller of version 1 is always 2\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_usbctrl_add failed."),
    FaultKind(188, "USBCTRL_DM_PORTS_2", 1,
              "libxl: error: libxl_usb.c:98:libxl__device_usbctrl_setdefault: "
              "Number of ports for USB controller of version 2 is always 6\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_usbctrl_add failed."),
    FaultKind(189, "USBCTRL_DM_PORTS_3", 1,
              "libxl: error: libxl_usb.c:110:libxl__device_usbctrl_setdefault: "
              "Number of ports for USB controller of version 3 is limited to 15\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_usbctrl_add failed."),
    FaultKind(190, "USBCTRL_DM_VERSION", 1,
              "libxl: error: libxl_usb.c:117:libxl__device_usbctrl_setdefault: "
              "Illegal USB version\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_usbctrl_add failed."),
    FaultKind(191, "USBCTRL_QMP_FAILED", 1,
              "libxl: error: libxl_qmp.c:1334:qmp_ev_lock_aquired: Domain {domid}:"
              "Failed to connect to QMP socket /var/run/xen/qmp-libxl-{domid}: "
              "No such file or directory\n"
              "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain {domid}:"
              "Unable to add vusb with id {devid}\n"
              "libxl_device_usbctrl_add failed."),
    FaultKind(176, "USBCTRL_DM_REQUIRED", 1,
              "libxl: error: libxl_dm.c:3845:libxl__dm_check_start: Domain {domid}:"
              "device model required but not running\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_usbctrl_add failed."),
    FaultKind(177, "USBCTRL_ADD_EXISTS", 1,
              "libxl: error: libxl_usb.c:272:libxl__device_usbctrl_add_xenstore: Domain {domid}:"
              "device already exists in xenstore\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_usbctrl_add failed."),
    FaultKind(178, "USBCTRL_ADD_TIMEOUT", 1,
              "libxl: error: libxl_device.c:1181:device_backend_callback: Domain {domid}:"
              "unable to add device with path {path}\n"
              "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain {domid}:"
              "Unable to add vusb with id {devid}\n"
              "libxl_device_usbctrl_add failed."),
    FaultKind(179, "USBCTRL_UNKNOWN", 1, "Unknown device {dev}."),
    FaultKind(180, "USBCTRL_REMOVE_FAILED", 1, "libxl_device_usbctrl_remove failed."),
    FaultKind(181, "USBDEV_NOT_ASSIGNABLE", 1,
              "libxl: error: libxl_usb.c:1732:libxl__device_usbdev_add: Domain {domid}:"
              "USB device is not assignable.\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_usbdev_add failed."),
    FaultKind(182, "USBDEV_ADD_FAILED", 1,
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_usbdev_add failed."),
    FaultKind(183, "USBDEV_UNKNOWN", 1, "Unknown device at controller {ctrl} port {port}."),
    # -- vtpm commands
    FaultKind(40, "VTPM_ADD_FAILED", 1, "libxl_device_vtpm_add failed."),
    FaultKind(41, "UNKNOWN_DEVICE", 1, "Unknown device {dev}."),
    FaultKind(42, "VTPM_REMOVE_FAILED", 1, "libxl_device_vtpm_remove failed."),
    FaultKind(43, "CONSOLE_UNAVAILABLE", 1, "Unable to attach console"),
    # -- block and network commands (xl_block.c, xl_nic.c over libxl_disk.c,
    # libxl_nic.c, libxl_device.c): device_disk_add / libxl__device_add_async
    # fail before the device exists, so device_addrm_aocomplete has no device
    # to name ("unable to add device")
    FaultKind(60, "DISK_ADD_STAT", 1,
              "libxl: error: libxl_device.c:455:libxl__device_disk_set_backend: Disk vdev={vdev}"
              " failed to stat: {path}: No such file or directory\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_disk_add failed."),
    FaultKind(61, "DISK_ADD_VDEV", 1,
              "libxl: error: libxl_disk.c:214:libxl__device_from_disk: Domain {domid}:"
              "Invalid or unsupported virtual disk identifier {vdev}\n"
              "libxl: error: libxl_disk.c:335:device_disk_add: Domain {domid}:"
              "Invalid or unsupported virtual disk identifier {vdev}\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_disk_add failed."),
    FaultKind(62, "DISK_ADD_EXISTS", 1,
              "libxl: error: libxl_disk.c:343:device_disk_add: Domain {domid}:"
              "device already exists in xenstore\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_disk_add failed."),
    FaultKind(63, "DISK_ADD_NO_DOMAIN", 1,
              _DOMAIN_TYPE + "\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_disk_add failed."),
    FaultKind(64, "DISK_NOT_CONNECTED", 1, "Error: Device {vdev} not connected."),
    FaultKind(65, "DISK_REMOVE_TIMEOUT", 1,
              "libxl: error: libxl_device.c:1181:device_backend_callback: Domain {domid}:"
              "unable to remove device with path /local/domain/0/backend/vbd/{domid}/{devid}\n"
              "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain {domid}:"
              "Unable to remove vbd with id {devid}\n"
              "libxl_device_disk_{verb} failed."),
    FaultKind(66, "NIC_ADD_FAILED", 1, "libxl_device_nic_add failed."),
    FaultKind(67, "NIC_ADD_NO_DOMAIN", 1,
              _DOMAIN_TYPE + "\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_nic_add failed."),
    FaultKind(68, "NIC_ADD_EXISTS", 1,
              "libxl: error: libxl_device.c:1998:libxl__device_add_async: Domain {domid}:"
              "device already exists in xenstore\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_nic_add failed."),
    # -- vkb commands (xl_vkb.c over libxl_vkb.c, libxl_device.c
    # libxl__device_add_async); main_vkb* return ERROR_FAIL: exit 253
    FaultKind(70, "VKB_ADD_FAILED", 253, "libxl_device_vkb_add failed."),
    FaultKind(71, "VKB_DM_REQUIRED", 253,
              "libxl: error: libxl_dm.c:3845:libxl__dm_check_start: Domain {domid}:"
              "device model required but not running\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_vkb_add failed."),
    FaultKind(72, "VKB_ADD_EXISTS", 253,
              "libxl: error: libxl_device.c:1998:libxl__device_add_async: Domain {domid}:"
              "device already exists in xenstore\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_vkb_add failed."),
    FaultKind(73, "VKB_ADD_TIMEOUT", 253,
              "libxl: error: libxl_device.c:1181:device_backend_callback: Domain {domid}:"
              "unable to add device with path {path}\n"
              "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain {domid}:"
              "Unable to add vkbd with id {devid}\n"
              "libxl_device_vkb_add failed."),
    # vkb-, vdispl-, vsnd-detach of a devid the domain has not
    FaultKind(74, "DEVID_NOT_CONNECTED", 253, "Error: Device {devid} not connected."),
    # -- vdispl commands (xl_vdispl.c over libxl_vdispl.c)
    FaultKind(75, "VDISPL_ADD_FAILED", 253, "libxl_device_vdispl_add failed."),
    FaultKind(76, "VDISPL_ADD_EXISTS", 253,
              "libxl: error: libxl_device.c:1998:libxl__device_add_async: Domain {domid}:"
              "device already exists in xenstore\n"
              "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
              "libxl_device_vdispl_add failed."),
    FaultKind(77, "VDISPL_ADD_TIMEOUT", 253,
              "libxl: error: libxl_device.c:1181:device_backend_callback: Domain {domid}:"
              "unable to add device with path {path}\n"
              "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain {domid}:"
              "Unable to add vdispl with id {devid}\n"
              "libxl_device_vdispl_add failed."),
    FaultKind(44, "VTPM_ADD_TIMEOUT", 1,
              "libxl: error: libxl_device.c:1181:device_backend_callback: Domain {domid}:"
              "unable to add device with path {path}\n"
              "libxl_device_vtpm_add failed."),
)

KINDS: dict[str, FaultKind] = {k.name: k for k in _KINDS}
assert len({k.code for k in _KINDS}) == len(_KINDS)


class Fault(Exception):
    """A named failure from the table; raise in the daemon or the client."""

    def __init__(self, name: str, /, **args: Any):
        if name not in KINDS:
            raise KeyError(name)
        self.name = name
        self.args_ = args
        super().__init__(self.message)

    @property
    def kind(self) -> FaultKind:
        return KINDS[self.name]

    @property
    def message(self) -> str:
        try:
            return self.kind.message.format(**self.args_)
        except (KeyError, IndexError):
            return self.kind.message

    @property
    def exit_code(self) -> int:
        return self.kind.exit

    def to_wire(self) -> dict:
        return {"fault": self.name, "code": self.kind.code, "args": self.args_}

    @classmethod
    def from_wire(cls, d: dict) -> "Fault":
        name = d.get("fault", "INTERNAL")
        if name not in KINDS:
            return cls("INTERNAL", reason="unknown fault %r" % name)
        return cls(name, **(d.get("args") or {}))

    def report(self, stream: TextIO | None = None) -> int:
        """Print xl's text to stderr; return the exit status."""
        import sys

        msg = self.message
        print(msg.rstrip("\n") + ("\n" if msg.endswith("\n") else ""), file=stream or sys.stderr)
        return self.exit_code
