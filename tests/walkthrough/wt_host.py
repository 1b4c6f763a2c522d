"""A private simulated host for the walkthrough tests: its own PYXL_ROOT,
pyxl run as a subprocess, consoles driven by examples/console.py."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from pyxl.domain.linux.netns import CLONE_NEWNET

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
LIST_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([-rbpscd]{6})\s+[\d.]+$")


def squeeze(line: str) -> str:
    """tpm-tools 1.3.9 indents and aligns its fields; the guide printed
    them with single spaces.  Words and their order must match exactly."""
    return " ".join(line.split())


def procs_with_root(root: str) -> list[int]:
    """Every process that inherited this host's PYXL_ROOT (daemon, domains,
    and whatever a guest started: tcsd and its guardian)."""
    key = ("PYXL_ROOT=" + root).encode()
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            env = open("/proc/%s/environ" % p, "rb").read().split(b"\0")
            stat = open("/proc/%s/stat" % p).read()
        except OSError:
            continue
        if key in env and stat.rsplit(")", 1)[1].split()[0] != "Z":
            pids.append(int(p))
    return pids


class Host:
    def __init__(self, tmp: Path, pyxl_cmd: list[str]):
        self.dir = tmp / "guide"
        self.dir.mkdir()
        self.root = str(tmp / "root")
        self.pyxl = pyxl_cmd
        self.env = dict(os.environ, PYXL_ROOT=self.root, PYXL=" ".join(pyxl_cmd),
                        PYXL_MINIOS_BOOT_DELAY="0", CONSOLE_TIMEOUT="60",
                        PYTHONPATH=os.pathsep.join([str(REPO)] + [
                            p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.env.pop("NOTIFY_SOCKET", None)

    def run(self, *args, timeout=60) -> subprocess.CompletedProcess:
        return subprocess.run(self.pyxl + list(args), env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def console(self, mode: str, *args: str, timeout=90) -> str:
        p = subprocess.run([sys.executable, str(EXAMPLES / "console.py"), mode, *args],
                           env=self.env, capture_output=True, text=True, timeout=timeout,
                           errors="replace")
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr
        return p.stdout

    def guest(self, *commands: str) -> str:
        return self.console("type", *commands, "--", "console", "domu")

    def console_log(self, dom: str) -> str:
        """xenconsoled's log of the domain (every line since it was created)."""
        path = Path(self.root, "var/log/pyxl/console/guest-%s.log" % dom)
        return path.read_bytes().decode(errors="replace").replace("\r\n", "\n")

    def console_size(self, dom: str) -> int:
        """Where the next line of `dom`'s console log will start (a domain
        created again under the same name appends to the same log)."""
        try:
            return len(self.console_log(dom))
        except FileNotFoundError:
            return 0

    def wait_console(self, dom: str, text: str, timeout: float = 30, since: int = 0) -> str:
        """Wait until `text` is in `dom`'s console log at or after offset `since`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                log = self.console_log(dom)
            except FileNotFoundError:
                log = ""
            if text in log[since:]:
                return log
            assert time.monotonic() < deadline, "%r never appeared on %s:\n%s" % (text, dom, log)
            time.sleep(0.05)

    def domains(self) -> dict[str, tuple]:
        out = self.run("list").stdout.splitlines()
        rows = {}
        for line in out[1:]:
            m = LIST_ROW.match(line)
            assert m, line
            rows[m.group(1)] = m.groups()[1:]
        return rows

    def wait_gone(self, name: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while name in self.domains():
            assert time.monotonic() < deadline, "%s is still there" % name
            time.sleep(0.1)

    def create(self, cfg: str, *extra: str) -> None:
        p = self.run("create", str(EXAMPLES / cfg), *extra)
        assert p.returncode == 0, p.stderr

    def create_manager(self) -> None:
        """vtpmmgr-stubdom on dir/mgr.img, until its console says it serves."""
        since = self.console_size("vtpmmgr")
        self.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % (self.dir / "mgr.img"))
        self.wait_console("vtpmmgr", "INFO[VTPM]: Waiting for commands from vTPM's:", since=since)

    def create_vtpm(self, cfg: str = "vtpm.cfg") -> None:
        """The guest's vtpm-stubdom (`cfg`) on dir/vtpm.img, until it waits
        for its frontend."""
        since = self.console_size("domu-vtpm")
        self.create(cfg, 'disk=["file:%s,hda,w"]' % (self.dir / "vtpm.img"))
        self.wait_console("domu-vtpm", "Waiting for frontend domain to connect..", since=since)

    def guide_chain(self, vtpm_cfg: str = "vtpm.cfg") -> None:
        """The guide's three domains on blank images: the manager, the
        guest's vTPM (`vtpm_cfg`) and the guest (a stand-in kernel)."""
        (self.dir / "mgr.img").write_bytes(bytes(16 << 20))
        (self.dir / "vtpm.img").write_bytes(bytes(8 << 20))
        (self.dir / "vmlinuz").write_text("stand-in kernel\n")
        self.create_manager()
        self.create_vtpm(vtpm_cfg)
        self.create("domu.cfg", 'kernel="%s"' % (self.dir / "vmlinuz"))

    def stop(self) -> list[int]:
        """`pyxl daemon stop --force`; the processes still alive 10 s later."""
        self.run("daemon", "stop", "--force", timeout=60)
        deadline = time.monotonic() + 10
        while procs_with_root(self.root) and time.monotonic() < deadline:
            time.sleep(0.1)
        return procs_with_root(self.root)


def in_netns(pid: int, fn):
    """fn() run by a thread inside the network namespace of process `pid`
    (setns(2): root only); what it returns, e.g. a socket, keeps that
    namespace.  How root reaches what a guest listens on."""
    box: list = []

    def run():
        try:
            fd = os.open("/proc/%d/ns/net" % pid, os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, "setns: " + os.strerror(e))
                box.append((True, fn()))
            finally:
                os.close(fd)
        except BaseException as e:
            box.append((False, e))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value
