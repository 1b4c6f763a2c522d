"""The private simulated host the toolstack tests run against (see conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from waiting import until

REPO = Path(__file__).resolve().parents[2]
MKDOM = Path(__file__).with_name("mkdom.py")


def cmdline(pid: int) -> bytes:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""          # gone meanwhile


def procs_of(root: str) -> list[int]:
    """Every daemon and domain process of the host at `root` (PYXL_ROOT in
    their environment, which domains inherit from the daemon)."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            cmd = open("/proc/%s/cmdline" % p, "rb").read()
            env = open("/proc/%s/environ" % p, "rb").read()
        except OSError:
            continue
        if ("PYXL_ROOT=" + root).encode() in env.split(b"\0") \
                and (b"pyxl.toolstack.daemon" in cmd or b"pyxl-domain" in cmd.split(b"\0")):
            pids.append(int(p))
    return pids


def domain_pids(root: str) -> dict[int, int]:
    """domid -> pid of the host's domain processes (`pyxl-domain domid=N ...`)."""
    out = {}
    for p in procs_of(root):
        args = cmdline(p).split(b"\0")
        if b"pyxl-domain" in args:
            for a in args:
                if a.startswith(b"domid=") and a[6:].isdigit():
                    out[int(a[6:])] = p
    return out


def gone(pid: int) -> bool:
    """The process has ended: every thread of it has exited (a zombie
    leader whose other threads still run has not released its files yet:
    its sockets and locks are still there)."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return True
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    return False
        except OSError:
            pass
    return True


def kill_daemon(host) -> None:
    """SIGKILL the host's daemon and wait until it is dead."""
    pids = [p for p in procs_of(host.root) if b"pyxl.toolstack.daemon" in cmdline(p)]
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    host.wait_for(lambda: gone(pids[0]), what="the daemon's death")


class Host:
    def __init__(self, root: Path, pyxl_cmd: list[str]):
        self.root = str(root)
        self.pyxl_cmd = pyxl_cmd
        self.env = dict(os.environ, PYXL_ROOT=self.root,
                        PYTHONPATH=os.pathsep.join([str(REPO)] + [
                            p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.env.pop("NOTIFY_SOCKET", None)
        self.kernel = str(root.parent / "vmlinuz")
        Path(self.kernel).write_bytes(b"\x7fELF not really a kernel")

    def run(self, *args, input=None, timeout=30, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.pyxl_cmd + [str(a) for a in args], capture_output=True,
                              text=True, env=self.env, input=input, timeout=timeout, **kw)

    def config(self, name: str, memory: int = 64, **extra) -> dict:
        cfg = {"c_info": {"type": "pv", "name": name},
               "b_info": {"max_memkb": memory * 1024, "target_memkb": memory * 1024,
                          "kernel": self.kernel, "cmdline": "console=hvc0"}}
        for k, v in extra.items():
            cfg[k] = v
        return cfg

    def create(self, name: str, *flags, cfg: dict | None = None, **extra):
        cfg = cfg or self.config(name, **extra)
        return subprocess.run([sys.executable, str(MKDOM), json.dumps(cfg), *flags],
                              capture_output=True, text=True, env=self.env, timeout=60)

    def mkdom_argv(self, name: str, *flags, **extra) -> list[str]:
        return [sys.executable, str(MKDOM), json.dumps(self.config(name, **extra)), *flags]

    def domains(self) -> dict[str, dict]:
        from pyxl.toolstack.client import Client
        from pyxl.toolstack.paths import Paths

        with Client(Paths(self.root)).connect() as c:
            return {d["name"]: d for d in c.call("list")}

    def call(self, op, **args):
        from pyxl.toolstack.client import Client
        from pyxl.toolstack.paths import Paths

        with Client(Paths(self.root)).connect() as c:
            return c.call(op, **args)

    def wait_for(self, pred, timeout=10.0, what="condition"):
        return until(pred, timeout, what, interval=0.02)

    def console_log(self, name: str) -> str:
        p = Path(self.root, "var/log/pyxl/console/guest-%s.log" % name)
        return p.read_text(errors="replace") if p.exists() else ""

    def cleanup(self) -> None:
        try:
            self.run("daemon", "stop", "--force", timeout=30)
        except Exception:
            pass
        left = procs_of(self.root)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.wait_for(lambda: all(gone(p) for p in left), what="the host's processes to end")
        except AssertionError:
            pass                 # the fixture names what is left




def expect(child, pattern, host: "Host"):
    """child.expect(pattern), but a failure says what the host saw."""
    import pexpect

    try:
        return child.expect(pattern)
    except (pexpect.EOF, pexpect.TIMEOUT) as e:
        if not child.isalive():
            child.close()
        logs = ""
        for p in sorted(Path(host.root, "var/log/pyxl").rglob("*.log*")):
            logs += "\n--- %s\n%s" % (p, p.read_text(errors="replace")[-1500:])
        raise AssertionError("expected %r; got %s; before=%r; exit=%r signal=%r%s"
                             % (pattern, type(e).__name__, child.before, child.exitstatus,
                                child.signalstatus, logs)) from None
