"""The host root under attack: names that climb out of the log directory,
roots and directories prepared by another user, logs others can read, the
domain config on a command line, tpm-serve deleting a file.  Each test is
the attack, run end to end through the installed pyxl."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from nobody import as_nobody
from ts_host import cmdline, procs_of


def _tree(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            yield Path(dirpath, n)


def _running(host, name):
    return host.wait_for(lambda: host.domains().get(name, {}).get("state", "")[:1] in "rb",
                         what="%s running" % name)


# -- a domain name is never a path ----------------------------------------

def test_a_domain_name_cannot_put_its_logs_outside_the_root(host, tmp_path):
    """xenconsoled writes guest-NAME.log with the name as found (tools/console/
    daemon/io.c, create_domain_log); a name made of ../ must not climb out."""
    console = Path(host.root, "var/log/pyxl/console")
    outside = tmp_path / "outside"
    # guest-../ becomes a directory, the next ../ leads back to console/
    hostile = "../../" + os.path.relpath(outside / "proof", console)
    host.create("../pre")
    host.create(hostile)        # the name may be refused; either way nothing escapes
    assert not outside.exists(), sorted(map(str, _tree(outside)))
    assert [p for p in _tree(Path(host.root)) if "proof" in p.name
            and p.parent not in (console, console.parent)] == []      # guest-*, xl-*.log
    assert all(p.is_file() for p in console.iterdir()), list(console.iterdir())


def test_rename_cannot_move_a_log_outside_the_root(host, tmp_path):
    console = Path(host.root, "var/log/pyxl/console")
    outside = tmp_path / "outside"
    outside.mkdir()
    host.create("../pre")
    assert host.create("vm").returncode == 0
    _running(host, "vm")
    hostile = "../../" + os.path.relpath(outside / "moved", console)
    try:
        host.call("rename", dom="vm", name=hostile)
    except Exception:
        pass                    # refused: fine, as long as nothing moved
    assert list(outside.iterdir()) == []
    logs = [p for p in console.iterdir() if p.name.endswith(".log")]
    assert len(logs) >= 1 and all(p.is_file() for p in console.iterdir())


# -- a root others could have prepared is refused ---------------------------

def _one_line_refusal(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], r.stderr


def test_a_root_prepared_by_another_user_is_refused(shared, shared_host):
    """nobody makes the host's tree in /tmp with pyxld.log a link to a file
    of root's; root's daemon must not start there, let alone append to it."""
    victim = shared / "victim"
    victim.write_bytes(b"precious\n")
    victim.chmod(0o600)
    att = shared / "att"
    assert as_nobody("mkdir", "-p", att / "var/log/pyxl").returncode == 0
    assert as_nobody("ln", "-s", victim, att / "var/log/pyxl/pyxld.log").returncode == 0
    h = shared_host("att")
    r = h.run("list")
    _one_line_refusal(r, str(att), "owned by uid 65534")
    assert victim.read_bytes() == b"precious\n"
    assert procs_of(h.root) == []
    r = h.run("daemon", "start", "-F")
    _one_line_refusal(r, str(att), "owned by uid 65534")
    assert victim.read_bytes() == b"precious\n"


def test_a_linked_daemon_log_is_not_followed(host, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    log = Path(host.root, "var/log/pyxl")
    log.mkdir(parents=True, mode=0o700)
    (log / "pyxld.log").symlink_to(victim)
    r = host.run("list")
    _one_line_refusal(r, "pyxld.log", "symbolic link")
    assert victim.read_bytes() == b"precious\n"
    assert (log / "pyxld.log").is_symlink()


def test_a_world_writable_run_dir_is_refused(shared, shared_host):
    """With run/pyxl writable by all, nobody could replace control.sock (and
    take every later pyxl command's config); the daemon refuses the root."""
    h = shared_host()
    run = Path(h.root, "run/pyxl")
    run.mkdir(parents=True)
    run.chmod(0o777)
    r = h.run("list")
    _one_line_refusal(r, str(run), "writable by group or others")
    assert not (run / "control.sock").exists()
    r = h.run("daemon", "start", "-F")
    _one_line_refusal(r, str(run), "writable by group or others")
    assert procs_of(h.root) == []
    assert as_nobody("touch", run / "control.sock").returncode == 0    # what it would allow
    r = h.run("list")
    _one_line_refusal(r, str(run))


# -- what the host writes is its own --------------------------------------

def test_logs_and_state_are_private(shared_host):
    h = shared_host()
    log = Path(h.root, "var/log/pyxl")
    log.mkdir(parents=True)
    (log / "pyxld.log").write_text("an older pyxl's log\n")
    (log / "pyxld.log").chmod(0o644)
    assert h.create("vm").returncode == 0
    _running(h, "vm")
    assert h.run("dmesg").returncode == 0
    root = Path(h.root)
    made = [p for p in _tree(root) if "pyxl" in p.relative_to(root).parts
            and not p.name.endswith(".pid")]     # run/pyxl, var/lib/pyxl, var/log/pyxl
    assert any(p.name == "guest-vm.log" for p in made)
    loose = ["%s %o" % (p, stat.S_IMODE(p.lstat().st_mode)) for p in made
             if stat.S_IMODE(p.lstat().st_mode) & 0o077 and not p.is_socket()]
    assert loose == []
    for p in (log / "pyxld.log", log / "console/guest-vm.log", log / "console/hypervisor.log"):
        assert as_nobody("cat", p).returncode != 0, p


def test_no_config_value_is_on_any_command_line(host):
    """/proc/PID/cmdline is readable by every user: the spec a domain is
    started from goes to it another way."""
    secret = "vncpasswd-" + uuid.uuid4().hex
    cfg = host.config("vm")
    cfg["b_info"]["cmdline"] = "console=hvc0 pw=" + secret
    cfg["vfbs"] = [{"devid": 0, "vnc": {"enable": "True", "passwd": secret}}]
    r = host.create("vm", cfg=cfg)
    assert r.returncode == 0, r.stderr
    # the domain got its spec: the guest prints its kernel command line
    host.wait_for(lambda: secret in host.console_log("vm"), what="the guest's command line")
    doms = [p for p in procs_of(host.root) if b"pyxl-domain" in cmdline(p)]
    assert doms
    every = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    assert [p for p in every if secret.encode() in cmdline(p)] == []


# -- tpm-serve --unix ---------------------------------------------------------

def _serve(pyxl_cmd, tmp_path, unix: Path, timeout=30) -> subprocess.Popen:
    return subprocess.Popen(pyxl_cmd + ["tpm-serve", "--state", str(tmp_path / "state"),
                                        "--unix", str(unix)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_tpm_serve_unix_never_deletes_a_regular_file(pyxl_cmd, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me\n")
    p = _serve(pyxl_cmd, tmp_path, f)
    try:
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 1, err
    assert "not a socket" in err and str(f) in err
    assert f.read_text() == "keep me\n"


def test_tpm_serve_unix_replaces_a_dead_servers_socket(pyxl_cmd, tmp_path):
    path = tmp_path / "tpm.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()                     # the file stays; nobody listens
    p = _serve(pyxl_cmd, tmp_path, path)
    try:
        line = p.stdout.readline()
        assert "ready" in line and "unix %s" % path in line, (line, p.stderr.read())
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(str(path))
        c.close()
    finally:
        p.terminate()
        p.wait(30)
    assert not path.exists()      # its own socket, removed on the way out


def test_tpm_serve_unix_refuses_a_live_socket(pyxl_cmd, tmp_path):
    path = tmp_path / "tpm.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    try:
        p = _serve(pyxl_cmd, tmp_path, path)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 1 and "in use" in err
        assert path.exists()
    finally:
        s.close()


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "/abs", "."])
def test_names_map_into_their_directory(name, tmp_path):
    from pyxl.toolstack.paths import Paths

    p = Paths(str(tmp_path))
    for f in (p.console_log(name), p.monitor_log(name)):
        assert os.path.dirname(f) in (p.log_dir, os.path.join(p.log_dir, "console"))
        assert os.path.basename(f) not in (".", "..") and "/" not in os.path.basename(f)
