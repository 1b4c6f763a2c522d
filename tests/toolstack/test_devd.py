"""`pyxl devd` end to end: main_devd (tools/xl/xl_misc.c), do_daemonize
(xl_utils.c) and libxl_device_events_handler (libxl_device.c) at Xen
stable-4.17, on the simulated host's dom0.

A backend is written into dom0's backend directory with Debian's
xenstore-write (as another toolstack would write it); what devd must then
do comes from libxl's source: a new backend that reaches InitWait gets its
hotplug script, whose end writes `hotplug-status connected`
(tools/hotplug/Linux/xen-hotplug-common.sh `success`); one that is offline
and Closed is removed with its empty parents (libxl__device_destroy,
libxl__xs_path_cleanup) and libxl/<domid> under dom0's home goes with the
guest's last device (check_and_maybe_remove_guest).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from libxl_lines import line_of, lines_of
from ts_host import gone

SCRIPT = "/etc/xen/scripts/vif-bridge"


@pytest.fixture
def xs(host):
    """Debian's xenstore-read/-write/-exists on the host's xenstored socket."""
    from peers import need_peer

    need_peer("xenstore-utils")
    assert host.run("list").returncode == 0            # the host is up
    env = dict(host.env, XENSTORED_PATH=os.path.join(host.root, "run/pyxl/xenstored/socket"))

    class Xs:
        def write(self, *kv):
            subprocess.run(["xenstore-write", *kv], env=env, check=True, timeout=30)

        def read(self, path):
            p = subprocess.run(["xenstore-read", path], env=env, capture_output=True,
                               text=True, timeout=30)
            return p.stdout.rstrip("\n") if p.returncode == 0 else None

        def exists(self, path):
            return subprocess.run(["xenstore-exists", path], env=env,
                                  timeout=30).returncode == 0
    return Xs()


def _backend(xs, domid, devid, state, script=SCRIPT):
    be = "/local/domain/0/backend/vif/%d/%d" % (domid, devid)
    kv = [be + "/frontend-id", str(domid), be + "/online", "1", be + "/type", "vif"]
    if script:
        kv += [be + "/script", script]
    xs.write(*kv, be + "/state", str(state))
    return be


@pytest.fixture
def devd(host):
    """Start `pyxl devd ARGS...` in the foreground; stopped with SIGTERM."""
    procs = []

    def start(*args, glob=()):
        p = subprocess.Popen(host.pyxl_cmd + [*glob, "devd", "-F", *args], env=host.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p
    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=30)


def test_foreground_runs_the_script_and_removes_the_closed_backend(host, xs, devd):
    assert host.create("g").returncode == 0
    domid = host.domains()["g"]["domid"]
    early = _backend(xs, domid, 7, 2)          # already in InitWait when devd starts
    xs.write("/local/domain/0/libxl/%d/dummy" % domid, "x")
    p = devd()
    host.wait_for(lambda: xs.read(early + "/hotplug-status") == "connected",
                  what="the script for the backend already in InitWait")
    be = _backend(xs, domid, 8, 1)             # a new one: waited for until InitWait
    assert xs.read(be + "/hotplug-status") is None
    xs.write(be + "/state", "2")
    host.wait_for(lambda: xs.read(be + "/hotplug-status") == "connected",
                  what="the script for the new backend")

    # offline and Closed: removed; online but Closed: left alone
    xs.write(early + "/online", "0", early + "/state", "6")
    host.wait_for(lambda: not xs.exists(early), what="the closed backend's removal")
    assert xs.exists(be)
    assert xs.exists("/local/domain/0/libxl/%d" % domid)      # the guest has a device left
    xs.write(be + "/online", "0", be + "/state", "6")
    host.wait_for(lambda: not xs.exists("/local/domain/0/backend/vif/%d" % domid),
                  what="the last backend's removal, with its empty parent")
    host.wait_for(lambda: not xs.exists("/local/domain/0/libxl/%d" % domid),
                  what="libxl/<domid> going with the guest's last device")

    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out, err) == (0, "", "")


def test_a_backend_without_a_script(host, xs, devd):
    # libxl_linux.c libxl__hotplug_nic: LOGED(ERROR, ...) with xs_read's ENOENT
    assert host.create("g").returncode == 0
    domid = host.domains()["g"]["domid"]
    p = devd()
    be = _backend(xs, domid, 3, 2, script=None)
    nic_line = min(lines_of("unable to read script from %s"))   # nic's comes first in the file
    expected = ("libxl: error: libxl_linux.c:%d:libxl__hotplug_nic: Domain %d:"
                "unable to read script from %s: No such file or directory\n"
                % (nic_line, domid, be))
    line = p.stderr.readline()
    assert line == expected
    assert xs.read(be + "/hotplug-status") is None
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)

    # xl -T: xtl_logger_stdio.c's SHOW_DATE and SHOW_PID prefixes; the
    # backend still in InitWait is met again by the handler's first scan
    p = devd(glob=("-T",))
    line = p.stderr.readline()
    m = re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \[(\d+)\] (.*\n)\Z", line)
    assert m, line
    assert int(m.group(1)) == p.pid
    assert m.group(2) == expected
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)


def test_daemonized_writes_its_pidfile_and_logs_privately(host, xs, tmp_path):
    pidfile = tmp_path / "devd.pid"
    p = host.run("devd", "-p", pidfile)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    host.wait_for(lambda: pidfile.exists() and pidfile.read_text().endswith("\n"),
                  what="the pid file")
    pid = int(pidfile.read_text())
    try:
        cmd = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")
        assert b"devd" in cmd
        assert os.getsid(pid) == pid               # daemon(): a session of its own
        assert oct(pidfile.stat().st_mode & 0o777) == oct(0o600)
        log = os.path.join(host.root, "var/log/pyxl/xldevd.log")
        assert oct(os.stat(log).st_mode & 0o777) == oct(0o600)
        assert host.create("g").returncode == 0
        domid = host.domains()["g"]["domid"]
        be = _backend(xs, domid, 4, 2)
        host.wait_for(lambda: xs.read(be + "/hotplug-status") == "connected",
                      what="the daemon's script")
    finally:
        os.kill(pid, signal.SIGTERM)
    host.wait_for(lambda: gone(pid), what="devd's end on SIGTERM")


def test_a_symlinked_pidfile_or_log_is_not_followed(host, xs, tmp_path):
    target = tmp_path / "target"
    target.write_text("keep\n")
    link = tmp_path / "devd.pid"
    link.symlink_to(target)
    p = host.run("devd", "-p", link)
    assert p.returncode == 0                     # the daemon fails after the command returned
    log = os.path.join(host.root, "var/log/pyxl/xldevd.log")
    host.wait_for(lambda: "Unable to open pidfile" in open(log).read(), what="the log line")
    assert open(log).read().endswith(
        "Unable to open pidfile: Too many levels of symbolic links\n")
    assert target.read_text() == "keep\n"

    os.unlink(log)
    os.symlink(target, log)
    p = host.run("devd")
    # CHK_SYSCALL in do_daemonize, then child_report (xl.c) in the command
    lines = p.stderr.splitlines()
    assert p.returncode == 253, p.stderr
    assert lines[0] == ("xl: fatal error: xl_utils.c:277: Too many levels of symbolic links: "
                        "logfile = open(fullname, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)")
    assert lines[1].startswith("libxl: error: libxl_exec.c:%d:libxl_report_child_exitstatus: "
                               "domain monitoring daemonizing child ["
                               % line_of("%s [%ld] exited with error status %d"))
    assert lines[1].endswith("] exited with error status 1")
    assert target.read_text() == "keep\n"


def test_the_host_stopping_ends_devd(host, xs, devd):
    """xenstored gone (the host's daemon stopped): devd says so and ends
    instead of spinning on a dead connection."""
    assert host.create("g").returncode == 0
    be = _backend(xs, host.domains()["g"]["domid"], 2, 2)
    p = devd()
    host.wait_for(lambda: xs.read(be + "/hotplug-status") == "connected",
                  what="devd at work")
    assert host.run("daemon", "stop", "--force").returncode == 0
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out) == (1, "")
    assert err == "pyxl: devd: lost the xenstore connection: Bad file descriptor\n"
