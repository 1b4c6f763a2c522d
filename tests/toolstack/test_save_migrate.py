"""`save`, `migrate` and `remus` on the simulated host, whose Linux guest
cannot suspend: its kernel is built without CONFIG_HIBERNATE_CALLBACKS, so
drivers/xen/manage.c neither advertises control/feature-suspend nor
acknowledges a "suspend" request, and libxl's suspend times out after its
60 s (libxl_dom_suspend.c domain_suspend_common_pvcontrol_suspending)."""

from __future__ import annotations

import re
import time

import pytest

from test_restore import XC_EOF, XC_HEAD, _at, _failed


def test_guest_ignores_suspend_and_does_not_acknowledge_it(host):
    """manage.c shutdown_handler: "Only acknowledge commands which we are
    prepared to handle"; the request stays, the guest logs (pr_info, on the
    console at Debian's default loglevel 7) and goes on running."""
    assert host.create("vm").returncode == 0
    host.wait_for(lambda: "login:" in host.console_log("vm"), what="boot")
    host.wait_for(lambda: host.run("xenstore-read", "/local/domain/1/control/feature-poweroff")
                  .stdout == "1\n", what="the guest's control watch")
    assert host.run("xenstore-read", "/local/domain/1/control/feature-suspend").stdout == "\n"
    assert host.run("xenstore-write", "/local/domain/1/control/shutdown", "suspend").returncode == 0
    host.wait_for(lambda: "xen:manage: Ignoring shutdown request: suspend"
                  in host.console_log("vm"), what="the guest's answer")
    assert host.run("xenstore-read", "/local/domain/1/control/shutdown").stdout == "suspend\n"
    assert host.domains()["vm"]["reason"] is None
    # a request it handles is still acknowledged and obeyed
    assert host.run("xenstore-write", "/local/domain/1/control/shutdown", "poweroff").returncode == 0
    host.wait_for(lambda: "vm" not in host.domains(), what="poweroff")


# The expected texts are xl 4.17's, from its source (tools/xl/xl_saverestore.c
# save_domain, xl_migrate.c migrate_domain, main_remus), libxl's
# (libxl_dom_suspend.c, libxl_stream_write.c libxl__xc_domain_save_done,
# libxl_exec.c libxl_report_child_exitstatus), libxc's (xg_sr_save.c
# suspend_domain and save, xg_resume.c modify_returncode, reported by
# xc_private.c xc_reportv with XC_INTERNAL_ERROR's "Internal error") and
# xentoollog's stdio logger ("CONTEXT: LEVEL: MESSAGE[: strerror]"); the
# libxl positions are Debian's binary's (test_libxl_positions.py).
def _suspend_failure(domid: int) -> list[str]:
    return [
        "xc: info: Saving domain %d, type x86 PV" % domid,
        "libxl: error: libxl_dom_suspend.c:269:domain_suspend_common_pvcontrol_suspending:"
        " Domain %d:guest didn't acknowledge suspend, cancelling request" % domid,
        "xc: error: Domain has not been suspended: shutdown 0, reason 0: Internal error",
        "xc: error: Save failed (0 = Success): Internal error",
        "libxl: error: libxl_stream_write.c:347:libxl__xc_domain_save_done: Domain %d:"
        "saving domain: domain did not respond to suspend request: Success" % domid]


def _resume_failure(domid: int) -> list[str]:
    return ["xc: error: Dom %d not suspended: (shutdown 0, reason 0): Internal error" % domid,
            "libxl: error: libxl_dom_suspend.c:666:domain_resume_done: Domain %d:"
            "xc_domain_resume failed: Invalid argument" % domid]


def _subsequence(lines: list[str], want: list[str]) -> bool:
    it = iter(lines)
    return all(any(w == line for line in it) for w in want)


def _receiver(host) -> str:
    import shlex

    return shlex.join(host.pyxl_cmd + ["migrate-receive"])


# libxl's 60 s wait is what this test checks (it asserts that at least 60 s
# passed), so a run-wide --timeout of 60 s or less would always stop it
# there; its own waits are bounded (150 s for the four commands), and the
# marker keeps the project's 300 s (pyproject.toml) whatever the command line
# gives.
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_save_and_migrate_time_out_as_xl_does_and_leave_the_domain_running(host, tmp_path):
    """All wait libxl's 60 s for the acknowledgement at the same time;
    remus -F -n -b of a domain without disks gets as far as its first
    checkpoint (libxl__remus_setup, then libxl__domain_save)."""
    import json
    import struct
    import subprocess

    for name in ("sv", "mg", "ak", "rm"):
        assert host.create(name).returncode == 0
    doms = host.domains()
    sv, mg, ak, rm = (doms[n]["domid"] for n in ("sv", "mg", "ak", "rm"))
    for name in ("sv", "mg", "ak", "rm"):
        host.wait_for(lambda: "login:" in host.console_log(name), what="boot")
    out = tmp_path / "sv.save"
    t0 = time.monotonic()
    save = subprocess.Popen(host.pyxl_cmd + ["save", "sv", str(out)], env=host.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mig = subprocess.Popen(host.pyxl_cmd + ["migrate", "-s", "", "mg", _receiver(host)],
                           env=host.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    rem = subprocess.Popen(host.pyxl_cmd + ["remus", "-F", "-n", "-b", "rm", "ignored"],
                           env=host.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    # "ak": the test acknowledges for its guest (as mini-os acknowledges any
    # request), and the domain then does not shut down: libxl's second 60 s
    # (domain_suspend_common_wait_guest) runs out instead
    ak_save = subprocess.Popen(host.pyxl_cmd + ["save", "ak", str(tmp_path / "ak.save")],
                               env=host.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    node = "/local/domain/%d/control/shutdown" % ak
    host.wait_for(lambda: host.run("xenstore-read", node).stdout == "suspend\n",
                  what="the suspend request")
    assert host.run("xenstore-write", node, "").returncode == 0
    s_out, s_err = save.communicate(timeout=150)
    m_out, m_err = mig.communicate(timeout=150)
    a_out, a_err = ak_save.communicate(timeout=150)
    r_out, r_err = rem.communicate(timeout=150)
    assert time.monotonic() - t0 >= 60          # libxl's own wait, not shortened
    assert (ak_save.returncode, a_out) == (1, "")
    assert a_err.splitlines()[1:] == [
        "xc: info: Saving domain %d, type x86 PV" % ak,
        "libxl: error: libxl_dom_suspend.c:372:suspend_common_wait_guest_timeout: Domain %d:"
        "guest did not suspend, timed out" % ak,
        "xc: error: save callback suspend() failed: 0: Internal error",
        "xc: error: Save failed (0 = Success): Internal error",
        "libxl: error: libxl_stream_write.c:347:libxl__xc_domain_save_done: Domain %d:"
        "saving domain: domain responded to suspend request: Success" % ak,
        "Failed to save domain, resuming domain"] + _resume_failure(ak)

    # save: xl's lines in order, exit 1
    data = out.read_bytes()
    magic, order, mandatory, optional, optlen = struct.unpack_from("=32sIIII", data)
    assert (magic, order, mandatory, optional) == (
        b"Xen saved domain, xl format\n \0 \r", 0x01020304, 3, 0)
    assert (save.returncode, s_out) == (1, "")
    assert s_err.splitlines() == (
        ["Saving to %s new xl format (info 0x3/0x0/%d)" % (out, optlen)]
        + _suspend_failure(sv) + ["Failed to save domain, resuming domain"]
        + _resume_failure(sv))
    # the file holds xl's header, the configuration (its length, the JSON,
    # its '\0'), then libxl's stream header and LIBXC_CONTEXT record
    # (libxl_sr_stream_format.h) and libxc's image header (xg_sr_stream_format.h)
    (clen,) = struct.unpack_from("=I", data, 48)
    assert clen == optlen - 4
    config = json.loads(data[52:52 + clen - 1])
    assert config["c_info"]["name"] == "sv" and "domid" not in config["c_info"]
    rest = data[48 + optlen:]
    assert rest[:24] == b"LibxlFmt" + struct.pack(">II", 2, 0) + struct.pack("=II", 1, 0)
    assert rest[24:32] == b"\xff" * 8 and rest[32:36] == b"XENF"

    # migrate: the sender's and the receiver's lines, each in its order
    assert (mig.returncode, m_out) == (1, "")
    lines = m_err.splitlines()
    # the receiver reads up to libxc's first record, which the sender never
    # sends: it fails when the sender gives up (test_restore.py has the texts)
    incoming = max(sv, mg, ak, rm) + 1
    receiver = ["migration target: Ready to receive domain.",
                "Loading new save file <incoming migration stream>"
                " (new xl fmt info 0x3/0x0/%d)" % optlen,
                " Savefile contains xl domain config in JSON format",
                "Parsing config from <saved>"] + _failed(
        incoming, *XC_HEAD, *XC_EOF, "libxl: error: %s: restoring domain: Success"
        % _at("restoring domain")) + ["migration target: Domain creation failed (code -3)."]
    assert _subsequence(lines, receiver), m_err
    sender = (["Saving to migration stream new xl format (info 0x3/0x0/%d)" % optlen]
              + _suspend_failure(mg) + ["migration sender: libxl_domain_suspend failed (rc=-8)"])
    assert _subsequence(lines, sender), m_err
    assert re.fullmatch(r"libxl: info: libxl_exec\.c:117:libxl_report_child_exitstatus:"
                        r" migration transport process \[\d+\] exited with error status 1",
                        lines[-2]), m_err
    assert lines[-1] == "Migration failed, failed to suspend at sender."

    # remus: the save's failure, then libxl__remus_teardown (at warning),
    # whose remus_teardown_done completes with the teardown's rc (0): so
    # not "Failed to suspend domain at primary." but a resume
    assert (rem.returncode, r_out) == (1, "")
    assert r_err.splitlines() == _suspend_failure(rm) + [
        "libxl: warning: libxl_remus.c:168:libxl__remus_teardown: Domain %d:Remus: Domain"
        " suspend terminated with rc -8, teardown Remus devices..." % rm,
        "Remus: Backup failed? resuming domain at primary."] + _resume_failure(rm)

    # what is left: both domains running, never paused, the requests cancelled
    doms = host.domains()
    assert doms["ak"]["reason"] is None
    for name, domid in (("sv", sv), ("mg", mg), ("rm", rm)):
        assert doms[name]["reason"] is None and not doms[name]["paused"]
        assert host.run("xenstore-read", "/local/domain/%d/control/shutdown" % domid
                        ).stdout == "\n"
        assert "xen:manage: Ignoring shutdown request: suspend" in host.console_log(name)

    # the saved file restored (its domain gone first: the name is free)
    assert host.run("destroy", "sv").returncode == 0
    p = host.run("restore", out)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr.splitlines() == [
        "Loading new save file %s (new xl fmt info 0x3/0x0/%d)" % (out, optlen),
        " Savefile contains xl domain config in JSON format",
        "Parsing config from <saved>"] + _failed(
        incoming + 1, *XC_HEAD, *XC_EOF, "libxl: error: %s: restoring domain: Success"
        % _at("restoring domain"))
    assert "sv" not in host.domains()


def test_migrate_whose_transport_fails_reports_it_as_xl_does(host):
    """migrate_do_preamble: no banner, the child's exit status, exit 1."""
    assert host.create("vm").returncode == 0
    p = host.run("migrate", "-s", "", "vm", "echo oops >&2; exit 3")
    lines = p.stderr.splitlines()
    assert p.returncode == 1 and lines[:2] == [
        "oops", "libxl: error: libxl_utils.c:505:libxl_read_exactly:"
        " file/stream truncated reading banner from migration receiver stream"], p.stderr
    assert re.fullmatch(r"libxl: info: libxl_exec\.c:117:libxl_report_child_exitstatus:"
                        r" migration transport process \[\d+\] exited with error status 3",
                        lines[2]), p.stderr
    assert len(lines) == 3
    assert host.domains()["vm"]["reason"] is None


def test_remus_stops_at_libxls_first_check(host):
    """libxl_domain_remus_start: -b, -n and -d need -F; libxl__remus_setup:
    Debian's libxenlight has no network buffering.  xl then resumes the
    domain, which was never suspended."""
    assert host.create("vm").returncode == 0
    domid = host.domains()["vm"]["domid"]
    p = host.run("remus", "-b", "vm", "ignored")
    assert p.returncode == 1
    assert p.stderr.splitlines() == [
        "libxl: error: libxl_domain.c:448:libxl_domain_remus_start: Domain %d:Unsafe mode must"
        " be enabled to replicate to /dev/null,disable network buffering and disk replication"
        % domid, "Remus: Backup failed? resuming domain at primary."] + _resume_failure(domid)
    p = host.run("remus", "-s", "", "vm", _receiver(host) + " -r")
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    assert _subsequence(lines, [
        "Saving to migration stream new xl format (info 0x3/0x0/%d)"
        % (int(re.search(r"info 0x3/0x0/(\d+)", p.stderr).group(1))),
        "libxl: error: libxl_remus.c:87:libxl__remus_setup: Domain %d:Remus: No support for"
        " network buffering" % domid, "Remus: Backup failed? resuming domain at primary."]
        + _resume_failure(domid)), p.stderr
    assert "migration target: Ready to receive domain." in lines
    p = host.run("remus", "-p", "vm", "ignored")
    assert (p.returncode, p.stderr) == (255, "Option -p must be used in conjunction with -c")
    # no such domain: libxl__domain_type fails, and xl finds the primary gone
    p = host.run("remus", "-b", "99", "ignored")
    assert (p.returncode, p.stderr) == (0, "libxl: error: libxl_dom.c:37:libxl__domain_type:"
                                           " unable to get domain type for domid=99\n"
                                           "Remus: Primary domain has been destroyed.\n")
    # COLO (-c): Debian's libxenlight is built with libxl_no_colo.c
    p = host.run("remus", "-c", "-u", "-s", "", "vm", _receiver(host) + " --colo")
    assert p.returncode == 1
    assert _subsequence(p.stderr.splitlines(), [
        "libxl: error: libxl_no_colo.c:42:libxl__colo_save_setup: Domain %d:COLO is not"
        " supported" % domid, "COLO: Backup failed? resuming domain at primary."]
        + _resume_failure(domid)), p.stderr
    assert host.domains()["vm"]["reason"] is None


def _xl_oracle(*args):
    import subprocess

    from oracle.xl import XL, _need_xl, xl_env

    _need_xl()
    return subprocess.run([XL, *args], env=xl_env(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.peer("xl")
def test_remus_colo_checks_are_xls(host):
    """main_remus's perror lines for -c, compared with the real xl on the
    same domain id: what errno xl's earlier calls left is its own."""
    assert host.create("vm").returncode == 0
    domid = str(host.domains()["vm"]["domid"])
    for args in (["-c", "-b"], ["-c", "-n"], ["-c", "-i", "20"], ["-c", "-d"]):
        xl = _xl_oracle("remus", *args, domid, "h")
        p = host.run("remus", *args, domid, "h")
        assert (p.returncode, p.stdout, p.stderr) == (xl.returncode, xl.stdout, xl.stderr), args
    # the first line, after which the real xl goes on to a Xen it cannot reach
    xl = _xl_oracle("remus", "-c", domid, "h")
    p = host.run("remus", "-c", "-s", "", domid, _receiver(host) + " --colo")
    assert p.stderr.splitlines()[0] == xl.stderr.splitlines()[0]
    assert p.returncode == 1


def test_remus_without_netbuf_needs_drbd_disks(host, tmp_path):
    """libxl__remus_setup with -F -n: each disk (unless -d) is asked of
    block-drbd-probe (libxl_remus_disk_drbd.c match_async_exec, with xl's
    stdio); a file is no DRBD device, its exit status is logged
    (libxl_aoutils.c async_exec_done), no other checkpoint ops take a vbd
    (libxl_checkpoint_device.c device_setup_iterate), setup fails before
    the guest is asked anything, and xl resumes the domain."""
    import subprocess

    from pyxl.cli.migrate import DRBD_PROBE

    img = tmp_path / "disk.img"
    img.write_bytes(bytes(1 << 20))
    cfg = host.config("vm", disks=[{"pdev_path": str(img), "vdev": "xvda", "format": "raw",
                                    "readwrite": 1}])
    assert host.create("vm", cfg=cfg).returncode == 0
    domid = host.domains()["vm"]["domid"]
    probe = subprocess.run([DRBD_PROBE, str(img)], capture_output=True, text=True)
    assert probe.returncode != 0
    p = host.run("remus", "-F", "-n", "-b", "vm", "ignored")
    assert (p.returncode, p.stdout) == (1, probe.stdout)
    lines = p.stderr.splitlines()
    n = len(probe.stderr.splitlines())
    assert lines[:n] == probe.stderr.splitlines()
    assert re.fullmatch(r"libxl: error: libxl_exec\.c:117:libxl_report_child_exitstatus: "
                        + re.escape("%s %s" % (DRBD_PROBE, img))
                        + r" \[\d+\] exited with error status %d" % probe.returncode,
                        lines[n]), p.stderr
    # xvda: 202 << 8 (libxl__device_disk_dev_number); ERROR_CHECKPOINT_DEVICE_NOT_SUPPORTED
    assert lines[n + 1:] == [
        "libxl: error: libxl_checkpoint_device.c:153:device_setup_iterate: device not handled"
        " by checkpoint (device=vbd:0/51712)",
        "libxl: error: libxl_remus.c:134:remus_setup_done: Domain %d:Remus: failed to setup"
        " device, rc -19" % domid,
        "Remus: Backup failed? resuming domain at primary."] + _resume_failure(domid)
    assert host.run("xenstore-read", "/local/domain/%d/control/shutdown" % domid
                    ).stdout == "\n"


def test_save_to_a_file_it_cannot_open_asks_the_guest_nothing(host, tmp_path):
    """save_domain: the configuration first, then open(O_WRONLY|O_CREAT|O_TRUNC);
    failing, xl exits 1 before libxl_domain_suspend."""
    assert host.create("vm").returncode == 0
    host.wait_for(lambda: host.run("xenstore-read", "/local/domain/1/control/feature-poweroff")
                  .stdout == "1\n", what="the guest's control watch")
    path = tmp_path / "no" / "such" / "dir"
    p = host.run("save", "vm", path)
    assert (p.returncode, p.stdout, p.stderr) == (
        1, "", "Failed to open temp file %s for writing\n" % path)
    assert host.run("xenstore-read", "/local/domain/1/control/shutdown").stdout == "\n"
    p = host.run("save", "nosuch", path)
    assert (p.returncode, p.stderr) == (1, "nosuch is an invalid domain identifier (rc=-6)\n")
