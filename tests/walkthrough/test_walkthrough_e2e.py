"""Xen's vTPM guide, run for real: examples/walkthrough.sh against a private
host root, then what the guide promises about persistence.

One host, one daemon: vtpmmgr-stubdom (hardware TPM through TIS), the
guest's vtpm-stubdom, and the Linux guest whose `tcsd` and `tpm_version`
are Debian's TrouSerS and tpm-tools talking to the guest's /dev/tpm0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peers import need_peer

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
UUID = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
GUIDE_TPM_VERSION = """TPM 1.2 Version Info:
Chip Version: 1.2.0.7
Spec Level: 2
Errata Revision: 1
TPM Vendor ID: ETHZ
TPM Version: 01010000
Manufacturer Info: 4554485a"""
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


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    need_peer("tcsd")
    need_peer("tpm-tools")
    if os.geteuid() != 0:
        pytest.skip("tcsd only accepts a root:tss config file: needs root")
    h = Host(tmp_path, pyxl_cmd)
    yield h
    h.run("daemon", "stop", "--force", timeout=60)
    deadline = time.monotonic() + 10
    while procs_with_root(h.root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert procs_with_root(h.root) == [], "processes outlived the host"


@pytest.mark.slow
def test_guide_walkthrough_and_vtpm_persistence(host):
    # -- the guide, as examples/walkthrough.sh runs it ----------------------------
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(EXAMPLES / "walkthrough.sh"), str(host.dir)],
                       env=dict(host.env, KEEP_RUNNING="1"), capture_output=True, text=True,
                       timeout=180, errors="replace")
    out = p.stdout
    assert p.returncode == 0, out[-4000:] + p.stderr
    lines = [ln.rstrip("\r") for ln in out.splitlines()]
    assert "INFO[VTPM]: Waiting for commands from vTPM's:" in lines
    assert "vtpm.c:166: Info: Waiting for frontend domain to connect.." in lines
    i = lines.index("root@domu:~# tpm_version")
    assert [squeeze(x) for x in lines[i + 1:i + 8]] == GUIDE_TPM_VERSION.splitlines()
    assert lines[i + 8] == "root@domu:~# "
    walk_s = time.monotonic() - t0

    rows = host.domains()
    assert set(rows) == {"Domain-0", "vtpmmgr", "domu-vtpm", "domu"}
    mgr, vtpm, domu = (int(rows[n][0]) for n in ("vtpmmgr", "domu-vtpm", "domu"))
    assert mgr < vtpm < domu
    assert rows["vtpmmgr"][1:3] == ("16", "1") and rows["domu-vtpm"][1] == "8"
    for name in ("vtpmmgr", "domu-vtpm", "domu"):
        assert rows[name][3][2:] == "----", rows      # running or blocked, nothing else

    vlog = host.console_log("domu-vtpm")
    assert "vtpm.c:168: Info: VTPM attached to Frontend %d/0\n" % domu in vlog
    assert "Tpmback:Info Frontend %d/0 connected\n" % domu in vlog
    assert re.search(r"vtpmblk\.c:\d+: Info: Wrote \d+ bytes to NVM persistent storage\n", vlog)
    assert "vtpm_cmd.c:201: Info: Sending encryption key to backend\n" in vlog
    mlog = host.console_log("vtpmmgr")
    assert "INFO[VTPM]: Registered vtpm %s\n" % UUID in mlog
    assert "INFO[VTPM]: Saved hash and key for vtpm %s\n" % UUID in mlog

    vl = host.run("vtpm-list", "domu").stdout.splitlines()
    assert vl[0].split() == ["Idx", "BE", "Uuid", "handle", "state", "evt-ch", "ring-ref",
                             "BE-path"]
    assert vl[1].split()[:2] == ["0", str(vtpm)] and vl[1].split()[4] == "4"   # Connected

    # -- persistence: the same disk and uuid give the same TPM -----------------------
    ek = host.guest("cat /sys/devices/vtpm-0/pubek")
    assert "Modulus length: 256\n" in ek and ek.count("\n") > 20
    p = host.run("shutdown", "-w", "domu")
    assert p.returncode == 0 and "Domain %d has been shut down, reason code 0" % domu in p.stderr
    host.wait_gone("domu-vtpm")          # the seed vTPM powers off when its guest leaves
    host.create("vtpm.cfg", 'disk=["file:%s/home/user/domu/vtpm.img,hda,w"]' % host.dir)
    host.create("domu.cfg", 'kernel="%s/home/user/domu/vmlinuz"' % host.dir)
    again = host.guest("modprobe xen-tpmfront", "cat /sys/devices/vtpm-0/pubek")
    body = lambda s: s[s.index("Algorithm:"):s.rindex("root@domu")]   # noqa: E731
    assert body(again) == body(ek)
    assert "INFO[VTPM]: Loaded hash and key for vtpm %s\n" % UUID in host.console_log("vtpmmgr")

    # the guest's tcsd dies with the guest
    host.guest("tcsd")
    assert any(b"pyxl-guest-tcsd-" in open("/proc/%d/cmdline" % q, "rb").read()
               for q in procs_with_root(host.root))
    assert host.run("destroy", "domu").returncode == 0
    deadline = time.monotonic() + 10
    while any(b"pyxl-guest-tcsd-" in _cmdline(q) for q in procs_with_root(host.root)):
        assert time.monotonic() < deadline, "the guest's tcsd outlived it"
        time.sleep(0.1)
    print("walkthrough.sh took %.1f s" % walk_s)


def _cmdline(pid: int) -> bytes:
    try:
        return open("/proc/%d/cmdline" % pid, "rb").read()
    except OSError:
        return b""
