"""The daemon: autostart under a lock, handshake faults, stop rules, adoption."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ts_host import cmdline, domain_pids, gone, kill_daemon, procs_of
from pyxl.toolstack import protocol
from pyxl.toolstack.client import Client
from pyxl.toolstack.errors import KINDS, Fault
from pyxl.toolstack.paths import Paths


def daemon_pids(host):
    return [p for p in procs_of(host.root)
            if b"pyxl.toolstack.daemon" in cmdline(p)]


def test_fault_table_is_one_consistent_table():
    codes = [k.code for k in KINDS.values()]
    assert len(codes) == len(set(codes))
    f = Fault("INVALID_DOMAIN", dom="nosuch")
    assert f.message == "nosuch is an invalid domain identifier (rc=-6)"
    assert Fault.from_wire(json.loads(json.dumps(f.to_wire()))).message == f.message
    assert Fault("NAME_IN_USE", domid=3, name="x").exit_code == 3


def test_autostart_race_starts_exactly_one_daemon(host):
    procs = [subprocess.Popen(host.pyxl_cmd + ["list"], env=host.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.splitlines()[0].startswith("Name                                        ID   Mem")
        assert out.splitlines()[1].startswith("Domain-0 ")
    assert len(daemon_pids(host)) == 1
    sock = Path(host.root, "run/pyxl/control.sock")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600


def test_not_running_refused_and_version_mismatch_are_distinct(tmp_path):
    paths = Paths(str(tmp_path))
    paths.make_dirs()
    with pytest.raises(Fault) as e:
        Client(paths).connect(autostart=False)
    assert e.value.name == "NOT_RUNNING"
    assert "not running" in e.value.message
    # a daemon speaking another protocol version
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(paths.control_socket)
    srv.listen(1)

    def serve():
        c, _ = srv.accept()
        ch = protocol.Channel(c)
        ch.recv()
        ch.send({"hello": protocol.MAGIC, "version": protocol.VERSION + 1, "pid": 1})
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    with pytest.raises(Fault) as e:
        Client(paths).connect(autostart=False)
    t.join()
    assert e.value.name == "VERSION_MISMATCH"
    assert "protocol %d" % (protocol.VERSION + 1) in e.value.message
    # something that accepts and hangs up: refused, not "not running"
    t = threading.Thread(target=lambda: srv.accept()[0].close())
    t.start()
    with pytest.raises(Fault) as e:
        Client(paths).connect(autostart=False)
    t.join()
    assert e.value.name == "REFUSED"
    srv.close()


def test_daemon_refuses_a_client_of_another_version(host):
    assert host.run("list").returncode == 0
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(host.root, "run/pyxl/control.sock"))
    ch = protocol.Channel(s)
    ch.send({"hello": protocol.MAGIC, "version": 999})
    reply = ch.recv()
    assert reply["ok"] is False and reply["fault"] == "VERSION_MISMATCH"
    assert ch.recv() is None
    s.close()


def test_second_foreground_daemon_refuses(host):
    assert host.run("list").returncode == 0
    p = host.run("daemon", "start", "-F", timeout=20)
    assert p.returncode == 1
    assert "already running" in p.stderr


def test_stop_refuses_with_guests_unless_forced(host):
    assert host.create("g1").returncode == 0
    p = host.run("daemon", "stop")
    assert p.returncode == 1
    assert "1 domain(s) other than Domain-0 still exist" in p.stderr
    assert "g1" in host.domains()
    p = host.run("daemon", "stop", "--force")
    assert p.returncode == 0, p.stderr
    assert procs_of(host.root) == []
    assert host.run("daemon", "status").returncode == 3


def test_sigkill_daemon_then_adopt_live_and_record_dead(host):
    assert host.create("alive").returncode == 0
    assert host.create("doomed", on_crash="preserve").returncode == 0
    before = host.domains()
    kill_daemon(host)
    doomed_pid = domain_pids(host.root)[before["doomed"]["domid"]]
    os.kill(doomed_pid, signal.SIGKILL)
    host.wait_for(lambda: gone(doomed_pid), what="the domain's death")
    # the next command starts a new daemon, which adopts "alive" and finds "doomed" crashed
    p = host.run("list")
    assert p.returncode == 0, p.stderr
    after = host.domains()
    assert after["alive"]["domid"] == before["alive"]["domid"]
    assert after["alive"]["state"] in ("-b----", "r-----")
    assert after["doomed"]["state"] == "---sc-"
    assert len(daemon_pids(host)) == 1
    # the adopted domain's console still works: what it wrote while no daemon
    # listened was kept (as in the console ring) and arrives once it is back
    host.wait_for(lambda: "login:" in host.call("console_history", dom="alive")
                  or "login:" in host.console_log("alive"), what="console after adoption")


def test_console_output_a_killed_daemon_never_took_is_logged_once_by_the_next(host, tmp_path):
    """The daemon dies on the guest's console kick, before taking what the
    ring holds (testfault console:<name>): the output stays on the ring
    page, and the next daemon, given the page back when the guest
    reconnects, logs it -- once, after what came before it."""
    fault = tmp_path / "fault"
    fault.write_text("")
    host.env["PYXL_TEST_FAULT_AT"] = "file:%s" % fault
    assert host.create("vm").returncode == 0
    host.wait_for(lambda: "login:" in host.console_log("vm"), what="boot")
    daemon = daemon_pids(host)
    fault.write_text("console:vm")
    host.run("sysrq", "vm", "h")        # the guest prints the help line, and kicks
    host.wait_for(lambda: all(gone(p) for p in daemon), what="the daemon's fault point")
    help_line = "sysrq: HELP : loglevel(0-9) reboot(b) crash(c)"
    assert help_line not in host.console_log("vm")       # never taken
    fault.write_text("")
    assert host.run("list").returncode == 0              # a new daemon adopts vm
    host.wait_for(lambda: help_line in host.console_log("vm"), what="the help line")
    log = host.console_log("vm")
    assert log.count(help_line) == 1
    assert log.count("login:") == 1 and log.index("login:") < log.index(help_line)


def test_adopted_domain_reconnects_and_obeys_shutdown(host):
    assert host.create("vm").returncode == 0
    host.wait_for(lambda: "login:" in host.console_log("vm"), what="boot")
    kill_daemon(host)
    assert host.run("list").returncode == 0          # a new daemon adopts vm
    # the guest dials back in and re-arms its control/shutdown watch
    host.wait_for(lambda: host.run("xenstore-read", "/local/domain/1/control/feature-poweroff")
                  .stdout == "1\n", what="guest reconnect")
    p = host.run("shutdown", "-w", "vm")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ("Shutting down domain 1\nWaiting for 1 domains\n"
                        "Domain 1 has been shut down, reason code 0\n")
    host.wait_for(lambda: "vm" not in host.domains(), what="on_poweroff")


def test_control_socket_turns_domain_processes_away(tmp_path):
    """The daemon knows a peer by SO_PEERCRED: a pid that is a domain's is refused."""
    from pyxl.hypervisor.domain import Domain
    from pyxl.toolstack.hostd import HostState

    paths = Paths(str(tmp_path))
    paths.make_dirs()
    st = HostState(paths, lambda m: None)
    a, b = socket.socketpair()
    assert not st.peer_is_domain(a)
    st.table.domains[5] = Domain(5, "guest", "u", 1024, 1024, pid=os.getpid())
    assert st.peer_is_domain(a)
    a.close()
    b.close()
    st.hv.close()


def test_foreground_daemon_under_a_service_manager(host, tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    env = dict(host.env, NOTIFY_SOCKET=str(tmp_path / "notify"))
    proc = subprocess.Popen(host.pyxl_cmd + ["daemon", "start", "-F"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert notify.recv(100) == b"READY=1"
        assert host.run("list").returncode == 0          # served by this daemon
        assert host.call("daemon_status")["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "serving" in err and "stopped" in err
    assert not os.path.exists(os.path.join(host.root, "run/pyxl/control.sock"))


def test_garbage_on_the_control_socket_costs_one_connection(host):
    assert host.run("list").returncode == 0
    for junk in (b"not json\n", b'{"hello": "pyxl-control", "version": 1}\n{"op": 3}\n',
                 b"\xff" * 70000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(host.root, "run/pyxl/control.sock"))
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
    p = host.run("list")
    assert p.returncode == 0 and "Domain-0" in p.stdout


def _as_nobody(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup",
                           "--clear-groups"] + argv, capture_output=True, text=True,
                          env=env, timeout=60, cwd="/")


def _python_for_nobody(env: dict) -> list[str]:
    """An interpreter user nobody may run, with pyxl and its dependencies
    importable (the venv's may live below a private home)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        if _as_nobody([exe, "-c", "import typer, lark"], env).returncode == 0:
            return [exe]
    pytest.skip("no Python that user nobody can run with pyxl's dependencies")


def test_daemon_start_by_a_user_who_cannot_use_the_root_is_one_line(tmp_path):
    """Not root, on a host root that is root's: one line saying so, exit 1,
    no traceback -- for `daemon start` and `daemon start -F` (a command that
    would start the daemon already said it in one line)."""
    import shutil
    import sysconfig
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    top = tempfile.mkdtemp(prefix="pyxl-nobody-")
    try:
        os.chmod(top, 0o755)
        root = os.path.join(top, "root")
        os.mkdir(root, 0o700)                      # root's, as /run, /var/lib, /var/log are
        repo = str(Path(__file__).resolve().parents[2])
        env = {"PATH": "/usr/bin:/bin", "PYXL_ROOT": root, "HOME": "/nonexistent",
               "PYTHONPATH": os.pathsep.join([repo, sysconfig.get_paths()["purelib"],
                                              sysconfig.get_paths()["platlib"]])}
        py = _python_for_nobody(env)
        p = _as_nobody(py + ["-m", "pyxl", "list"], env)
        assert (p.returncode, p.stderr) == (1, (
            "pyxl: permission denied on the control socket %s/run/pyxl/control.sock"
            " (it is root-only, like privcmd)\n" % root))
        for args in (["daemon", "start"], ["daemon", "start", "-F"]):
            p = _as_nobody(py + ["-m", "pyxl"] + args, env)
            assert p.returncode == 1, (args, p.stderr)
            assert re.fullmatch(
                r"pyxl: cannot use %s/\S+: Permission denied \(the simulated host's files"
                r" there are root's: run as root, or set PYXL_ROOT to a directory of yours\)\n"
                % re.escape(root), p.stderr), (args, p.stderr)
        assert os.listdir(root) == []
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_daemon_that_dies_before_it_is_ready_is_reported_at_once(host):
    """The client waits for the readiness byte on a pipe only the daemon
    holds: a daemon that refuses to start (a chip that does not exist)
    closes it by ending, and the client says so with its exit status,
    long before START_TIMEOUT."""
    import time

    env = dict(host.env, PYXL_HWTPM="3.0")
    t0 = time.monotonic()
    p = subprocess.run(host.pyxl_cmd + ["list"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert time.monotonic() - t0 < 10
    assert p.returncode == 1
    assert p.stderr == ("pyxl: could not start the pyxl daemon: exit status 1 (see %s)\n"
                        % Paths(host.root).daemon_log)
    assert "PYXL_HWTPM" in Path(Paths(host.root).daemon_log).read_text()


def test_reaper_sees_every_change_without_a_timer(host):
    """The reaper (monitor.reap_loop) sleeps with no timeout: each event
    below reaches it only through a domain's pidfd or its wake pipe, so a
    path that changed the watched pidfds without waking it would leave the
    event unhandled (the waits below would time out)."""
    def booted(name):
        host.wait_for(lambda: "login:" in host.console_log(name), what="%s boots" % name)

    def pid_of(name):
        return domain_pids(host.root)[host.domains()[name]["domid"]]

    # a new domain's pidfd (spawn), then its shutdown: on_poweroff destroys it
    assert host.create("a").returncode == 0
    booted("a")
    assert host.run("shutdown", "-w", "a").returncode == 0
    host.wait_for(lambda: "a" not in host.domains(), what="a destroyed after its shutdown")
    # a crash: the domain's process killed; on_crash=preserve keeps it listed
    assert host.create("b", on_crash="preserve").returncode == 0
    os.kill(pid_of("b"), signal.SIGKILL)
    host.wait_for(lambda: host.domains()["b"]["state"] == "---sc-", what="b's crash")
    # destroy (teardown.kill drops the pidfd), then a domain made after it
    assert host.create("c").returncode == 0
    assert host.run("destroy", "c").returncode == 0
    assert host.create("d", on_reboot="restart").returncode == 0
    booted("d")
    old = host.domains()["d"]["domid"]
    # a reboot: the restarted domain's new pidfd is watched too
    assert host.run("reboot", "d").returncode == 0
    host.wait_for(lambda: host.domains().get("d", {}).get("domid", old) != old, what="d's restart")
    os.kill(pid_of("d"), signal.SIGKILL)
    host.wait_for(lambda: "d" not in host.domains(), what="the restarted d's crash")
    # an adopted domain's pidfd (a restarted daemon)
    assert host.create("e").returncode == 0
    kill_daemon(host)
    assert host.run("list").returncode == 0
    os.kill(pid_of("e"), signal.SIGKILL)
    host.wait_for(lambda: "e" not in host.domains(), what="the adopted e's crash")
