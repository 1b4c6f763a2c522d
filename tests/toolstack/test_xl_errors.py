"""xl's stderr, byte for byte, when libxl fails: end to end through `pyxl`.

Each expected text is built from the C source at stable-4.17 01140da4e8 (the
function named beside it) with the line numbers compiled into the peer's
Debian libxenlight (libxl_lines.py).
"""

from __future__ import annotations

import pytest

from libxl_lines import LIBXENGUEST, destroyed_again, line_of


@pytest.fixture
def at(peer_xl):
    """`at(fmt, file, func)`: libxl's "libxl: error: FILE:LINE:FUNC: " prefix."""
    return lambda fmt, file, func: "libxl: error: %s:%d:%s: " % (file, line_of(fmt), func)


@pytest.fixture
def peer_xl():
    from peers import need_peer

    need_peer("xl")


def test_destroy_of_a_number_that_names_no_domain(host, at):
    # xl_vmcontrol.c destroy_domain -> libxl_domain_destroy; libxl_domain.c
    # libxl__destroy_domid ("Non-existant domain"), domain_destroy_callback,
    # domain_destroy_cb; then "destroy failed (rc=%d)" with ERROR_DOMAIN_NOTFOUND
    p = host.run("destroy", "99")
    assert (p.returncode, p.stderr) == (1, "".join([
        at("Non-existant domain", "libxl_domain.c", "libxl__destroy_domid"),
        "Domain 99:Non-existant domain\n",
        at("Unable to destroy guest", "libxl_domain.c", "domain_destroy_callback"),
        "Domain 99:Unable to destroy guest\n",
        at("Destruction of domain failed", "libxl_domain.c", "domain_destroy_cb"),
        "Domain 99:Destruction of domain failed\n",
        "destroy failed (rc=-21)\n"]))


def test_create_with_a_missing_disk_names_the_made_domain(host, at, tmp_path):
    # libxl_create.c initiate_domain_create: libxl__domain_make (domid 1), then
    # libxl__device_disk_setdefault -> libxl_device.c libxl__device_disk_set_backend
    # LOGE "Disk vdev=%s failed to stat: %s"; then LOGD "Unable to set disk defaults"
    img = tmp_path / "no.img"
    cfg = host.config("nodisk", disks=[{"pdev_path": str(img), "vdev": "xvda",
                                        "format": "raw", "readwrite": 1}])
    p = host.create("nodisk", cfg=cfg)
    assert (p.returncode, p.stderr) == (3, "".join([
        at("Disk vdev=%s failed to stat: %s", "libxl_device.c",
           "libxl__device_disk_set_backend"),
        "Disk vdev=xvda failed to stat: %s: No such file or directory\n" % img,
        at("Unable to set disk defaults for disk %d", "libxl_create.c",
           "initiate_domain_create"),
        "Domain 1:Unable to set disk defaults for disk 0\n"] + [l + "\n" for l in destroyed_again(1)]))
    # the made domain was torn down, its domid used up (libxl__domain_make ran)
    assert host.create("next").returncode == 0
    assert host.domains()["next"]["domid"] == 2


def test_create_with_a_missing_kernel(host, tmp_path):
    # xg_dom_core.c xc_dom_malloc_filemap: xc_dom_panic "failed to open file"; libxl_dom.c
    # libxl__build_pv "xc_dom_kernel_file failed" (upstream line 646); libxl_create.c
    # domcreate_rebuild_done "cannot (re-)build domain: %d"
    kernel = tmp_path / "no-such-kernel"
    cfg = host.config("nok")
    cfg["b_info"]["kernel"] = str(kernel)
    p = host.create("nok", cfg=cfg)
    panic = line_of("failed to open file '%s': %s", LIBXENGUEST, reg="%edx")
    rebuild = line_of("cannot (re-)build domain: %d")
    assert (p.returncode, p.stderr.splitlines()) == (3, [
        "xc: error: panic: xg_dom_core.c:%d: failed to open file '%s':"
        " No such file or directory: Internal error" % (panic, kernel),
        "libxl: error: libxl_dom.c:646:libxl__build_pv: xc_dom_kernel_file failed:"
        " No such file or directory",
        "libxl: error: libxl_create.c:%d:domcreate_rebuild_done: Domain 1:"
        "cannot (re-)build domain: -3" % rebuild] + destroyed_again(1))


def test_reboot_log_as_xl_create_domain_writes_it(host):
    """xl-NAME.log across a reboot: xl_vmcontrol.c create_domain logs "Waiting for
    domain" once per domain it starts; handle_domain_death the action, the
    cleanup; DOMAIN_RESTART_NORMAL "Done. Rebooting now" before `goto start`."""
    import re
    from pathlib import Path

    assert host.create("rb").returncode == 0
    host.wait_for(lambda: "login" in host.console_log("rb"), what="boot")
    assert host.run("reboot", "rb").returncode == 0
    log = Path(host.root, "var/log/pyxl/xl-rb.log")
    host.wait_for(lambda: "(domid 2)" in log.read_text(), what="the restarted domain")
    lines = log.read_text().splitlines()
    pid = re.fullmatch(r"Waiting for domain rb \(domid 1\) to die \[pid (\d+)\]", lines[0])
    assert pid, lines
    assert lines[1:] == [
        "Domain 1 has shut down, reason code 1 0x1",
        "Action for shutdown reason code 1 is restart",
        "Domain 1 needs to be cleaned up: destroying the domain",
        "Done. Rebooting now",
        "Waiting for domain rb (domid 2) to die [pid %s]" % pid.group(1)]


def test_numbers_that_name_no_domain(host, at):
    """find_domain takes any number as a domid (libxl_domain_qualifier_to_domid);
    libxl then fails on it."""
    domain_type = at("unable to get domain type for domid=%u", "libxl_dom.c",
                     "libxl__domain_type") + "unable to get domain type for domid=99\n"
    cases = [
        # xl_vmcontrol.c pause_domain ignores libxl_domain_pause's -3
        (("pause", "99"), 0, at("Pausing domain", "libxl_domain.c", "libxl_domain_pause")
         + "Domain 99:Pausing domain: No such process\n"),
        # libxl__domain_unpause: libxl__domain_type first; unpause_domain ignores it
        (("unpause", "99"), 0, domain_type),
        # shutdown_domain: libxl_domain_shutdown -> libxl__domain_pvcontrol_available
        (("shutdown", "99"), 1, "Shutting down domain 99\n" + domain_type
         + "shutdown failed (rc=-3)\n"),
        (("reboot", "99"), 1, "Rebooting domain 99\n" + domain_type + "reboot failed (rc=-3)\n"),
        # main_rename -> libxl_domain.c libxl__domain_rename: the new name's uniqueness
        # first, then libxl_domain_info's ERROR_DOMAIN_NOTFOUND, which it does not log
        (("rename", "99", "Domain-0"), 1,
         at('Domain with name "%s" already exists.', "libxl_domain.c", "libxl__domain_rename")
         + 'Domain 99:Domain with name "Domain-0" already exists.\n'
         "Can't rename domain '99'.\n"),
        (("rename", "99", "x"), 1, "Can't rename domain '99'.\n"),
        # main_console: libxl_primary_console_exec -> libxl__primary_console_find
        (("console", "99"), 1, domain_type + "Unable to attach console\n"),
    ]
    for args, rc, err in cases:
        p = host.run(*args)
        assert (p.returncode, p.stderr) == (rc, err), args


def test_more_numbers_that_name_no_domain(host, at):
    """The same, command by command, with stdout: each row names the xl
    function and the libxl call whose failure makes the text."""

    def head(fmt, *cols):
        return fmt % cols + "\n"
    start_time = at("Can't get start time of domain", "libxl_domain.c",
                    "libxl_vm_get_start_time") + "Domain 99:Can't get start time of domain\n"
    affinity = at("Setting vcpu affinity", "libxl_sched.c", "libxl__set_vcpuaffinity") \
        + "Domain 99:Setting vcpu affinity: No such process\n"
    cases = [
        # main_list: libxl_domain_info's ERROR_DOMAIN_NOTFOUND
        (("list", "99"), 1, "", "Error: Domain '99' does not exist.\n"),
        (("list", "-l", "99"), 1, "", "Error: Domain '99' does not exist.\n"),
        # vcpuset (xl_vcpu.c): with the host check, libxl_domain_info fails: return 1
        (("vcpu-set", "99", "1"), 1, "", ""),
        # main_vcpupin: a hard affinity asks libxl_domain_info for the global masks
        (("vcpu-pin", "99", "0", "0"), 1, "", "Could not get domain info\n"),
        # ... not with -i, nor for a soft affinity only: libxl__set_vcpuaffinity's
        # XEN_DOMCTL_setvcpuaffinity is ESRCH (common/domctl.c)
        (("vcpu-pin", "-i", "99", "0", "0"), 1, "", affinity + "Could not set affinity for vcpu `0'.\n"),
        (("vcpu-pin", "99", "3", "-", "0"), 1, "", affinity + "Could not set affinity for vcpu `3'.\n"),
        # main_sysrq: libxl_send_sysrq writes <dompath>/control/sysrq unchecked
        (("sysrq", "99", "s"), 0, "", ""),
        # print_uptime / print_domU_uptime: libxl_vm_get_start_time logs, no row
        (("uptime", "99"), 0, head("%-33s %4s %s", "Name", "ID", "Uptime"), start_time),
        (("uptime", "-s", "99"), 0, "", start_time),
        # main_vtpmdetach: libxl_devid_to_device_vtpm / _uuid_to_: no device list
        (("vtpm-detach", "99", "0"), 1, "", "Unknown device 0.\n"),
        (("vtpm-detach", "99", "d9e1d6b8-07d0-4ba3-9f8c-1a3c5e1a2b3c"), 1, "",
         "Unknown device d9e1d6b8-07d0-4ba3-9f8c-1a3c5e1a2b3c.\n"),
        # main_blocklist, main_networklist, main_vtpmlist, main_channellist: the
        # header, then libxl__device_list finds nothing (NULL, not logged): skipped
        (("block-list", "99"), 0, head("%-5s %-3s %-6s %-5s %-6s %-8s %-30s", "Vdev", "BE",
                                      "handle", "state", "evt-ch", "ring-ref", "BE-path"), ""),
        (("network-list", "99"), 0, head("%-3s %-2s %-17s %-6s %-5s %-6s %5s/%-5s %-30s", "Idx",
                                        "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-",
                                        "rx-ring-ref", "BE-path"), ""),
        (("vtpm-list", "99"), 0, head("%-3s %-2s %-36s %-6s %-5s %-6s %-5s %-10s", "Idx", "BE",
                                     "Uuid", "handle", "state", "evt-ch", "ring-ref",
                                     "BE-path"), ""),
        (("channel-list", "99"), 0, head("%-3s %-2s %-5s %-6s %8s %-10s %-30s", "Idx", "BE",
                                        "state", "evt-ch", "ring-ref", "connection", ""), ""),
        # main_domname: libxl_domid_to_name finds no <dompath>/name
        (("domname", "99"), 1, "",
         "Can't get domain name of domain id '99', maybe this domain does not exist.\n"),
        # main_cpupoolmigrate: libxl_domid_to_name, before any pool is looked at
        (("cpupool-migrate", "99", "Pool-0"), 1, "", "unknown domain '99'\n"),
    ]
    for args, rc, out, err in cases:
        p = host.run(*args)
        assert (p.returncode, p.stdout, p.stderr) == (rc, out, err), args
    # the sysrq key went where libxl_send_sysrq wrote it
    assert host.run("xenstore-read", "/local/domain/99/control/sysrq").stdout == "s\n"


def test_console_as_xl_console_and_xenconsole(host):
    """xl_console.c main_console: without -t, libxl_primary_console_exec (-n is not
    used); with -t, libxl_console_exec execs xenconsole (tools/console/client/
    main.c), which refuses Domain-0 with exit(EINVAL) and otherwise waits 5 s
    (get_pty_fd) for a tty the domain does not have, then err(errno=ENOENT)."""
    import subprocess
    import time

    import pexpect

    p = host.run("console", "0")
    assert (p.returncode, p.stderr) == (22, "Can't specify Domain-0\n")
    p = host.run("console", "-t", "vuart", "0")
    assert (p.returncode, p.stderr) == (22, "Can't specify Domain-0\n")
    assert host.create("con").returncode == 0
    host.wait_for(lambda: "root@con:~#" in host.console_log("con"), what="shell prompt")
    start = time.monotonic()
    waits = [subprocess.Popen(host.pyxl_cmd + ["console", *a, "con"], env=host.env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for a in (["-t", "vuart"], ["-t", "pv", "-n", "1"], ["-t", "serial", "-n", "2"])]
    for w in waits:
        out, err = w.communicate(timeout=30)
        assert (w.returncode, out, err) == (
            2, "", "xenconsole: Could not read tty from store: No such file or directory\n")
    assert time.monotonic() - start >= 5
    # no -t: the primary console, whatever -n says
    child = pexpect.spawn(host.pyxl_cmd[0], host.pyxl_cmd[1:] + ["console", "-n", "3", "con"],
                          env=host.env, timeout=15, encoding="utf-8")
    child.expect(r"root@con:~# ")
    child.send("\x1d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_shutdown_ww_waits_for_death(host):
    """main_shutdown_or_reboot: -w counts a shutdown or a death, -ww only a death
    (wait_for_domain_deaths(..., wait_for_it == 1))."""
    import subprocess
    import threading

    assert host.create("ww", on_poweroff="preserve").returncode == 0
    host.wait_for(lambda: "login" in host.console_log("ww"), what="boot")
    w = subprocess.Popen(host.pyxl_cmd + ["shutdown", "-ww", "ww"], env=host.env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, w.kill)
    watchdog.start()
    try:
        assert [w.stderr.readline() for _ in range(4)] == [
            "Shutting down domain 1\n", "Waiting for 1 domains\n",
            "Domain 1 has been shut down, reason code 0\n",
            "Domain 1 continue waiting for death\n"]
        assert host.domains()["ww"]["state"] == "---s--"     # preserved, still there
        assert host.run("destroy", "ww").returncode == 0
        assert w.stderr.read() == "Domain 1 has been destroyed\n"
        assert w.wait() == 0
    finally:
        watchdog.cancel()
        w.kill()
        w.wait()


def test_destroy_f_0_fails_as_on_the_toolstack_domain(host, at):
    """destroy_domain(0, force=1) -> libxl_domain_destroy: Xen's domctl refuses to
    pause (XEN_DOMCTL_pausedomain: d == current->domain) and domain_kill refuses
    to kill the calling domain, both -EINVAL; libxl_domain.c destroy_domid_pci_done
    logs the first and goes on, domain_destroy_domid_cb reports the child's exit
    status (errno EINVAL), then the callbacks fail with ERROR_FAIL."""
    p = host.run("destroy", "-f", "0")
    assert (p.returncode, p.stderr) == (1, "".join([
        at("xc_domain_pause failed", "libxl_domain.c", "destroy_domid_pci_done"),
        "Domain 0:xc_domain_pause failed\n",
        at("xc_domain_destroy failed", "libxl_domain.c", "domain_destroy_domid_cb"),
        "Domain 0:xc_domain_destroy failed: Invalid argument\n",
        at("Unable to destroy guest", "libxl_domain.c", "domain_destroy_callback"),
        "Domain 0:Unable to destroy guest\n",
        at("Destruction of domain failed", "libxl_domain.c", "domain_destroy_cb"),
        "Domain 0:Destruction of domain failed\n",
        "destroy failed (rc=-3)\n"]))
    assert "Domain-0" in host.domains()


def _create_text(host, tmp_path, name: str, extra: str):
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text('name="%s"\nkernel="%s"\nmemory=64\n%s' % (name, host.kernel, extra))
    p = host.run("create", cfg)
    lines = p.stderr.splitlines()
    assert lines[:1] == ["Parsing config from %s" % cfg], p.stderr
    return p.returncode, lines[1:]


def test_create_with_a_hard_affinity_outside_its_pool(host, at, tmp_path):
    # libxl_dom.c libxl__build_pre: libxl_set_vcpuaffinity per vcpu; Xen's
    # vcpu_set_hard_affinity (sched/core.c) is -EINVAL when the mask has no
    # online CPU of the domain's pool; libxl_sched.c libxl__set_vcpuaffinity
    # LOGED "Setting vcpu affinity", libxl__build_pre LOG "setting affinity
    # failed on vcpu `%d'", then domcreate_rebuild_done; the domain made is
    # destroyed again by xl
    host.env["PYXL_HOST_CPUS"] = "4"
    assert host.run("cpupool-cpu-remove", "Pool-0", "2-3").returncode == 0
    rc, lines = _create_text(host, tmp_path, "pinned", 'vcpus=2\ncpus=["0", "2-3"]\n')
    assert (rc, lines) == (3, [
        at("Setting vcpu affinity", "libxl_sched.c", "libxl__set_vcpuaffinity")
        + "Domain 1:Setting vcpu affinity: Invalid argument",
        at("setting affinity failed on vcpu `%d'", "libxl_dom.c", "libxl__build_pre")
        + "setting affinity failed on vcpu `1'",
        at("cannot (re-)build domain: %d", "libxl_create.c", "domcreate_rebuild_done")
        + "Domain 1:cannot (re-)build domain: -3"] + destroyed_again(1))
    assert "pinned" not in host.domains()
    # within the pool it is taken; the failed one used up domid 1
    rc, _ = _create_text(host, tmp_path, "fits", 'vcpus=2\ncpus=["0", "1-3"]\n')
    assert rc == 0
    assert host.domains()["fits"]["domid"] == 2


def test_create_in_a_pool_that_does_not_exist(host, at, tmp_path):
    # libxl_create.c libxl__domain_config_setdefault: libxl_cpupool_qualifier_to_cpupoolid
    # finds no pool; LOGD with no domain made yet; initiate_domain_create's
    # error_out before libxl__domain_make: no domid used, nothing destroyed
    rc, lines = _create_text(host, tmp_path, "lost", 'pool="nope"\n')
    assert (rc, lines) == (3, [
        at("Illegal pool specified: %s", "libxl_create.c", "libxl__domain_config_setdefault")
        + "Illegal pool specified: nope"])
    assert host.create("next").returncode == 0
    assert host.domains()["next"]["domid"] == 1
