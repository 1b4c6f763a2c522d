"""The guide's vTPM chain survives a SIGKILLed daemon.

The daemon holds the simulated hypervisor (xenstore, event channels,
grants); killing it loses every ring the split drivers had set up.  The
next pyxl command starts a new daemon that adopts the live domains and
writes their devices' xenstore directories afresh; each domain dials back
in and its drivers resume as Linux's xenbus frontends do after a restore
(fresh ring page, fresh event channel, the XenbusState handshake again).
The vTPM's engine -- PCRs included -- lives on in the vtpm-stubdom process.

A vTPM saves only when what it stores changed (pyxl-vtpm(7), "What happens
to a vTPM's state"), so the saves made across a restart -- the vTPM's state
reaching the manager over the ring the next daemon set up -- are made by
commands that change it: the guest's tpm_takeownership, and a PCRRead
after TPM_SaveState (which deletes the state SaveState kept).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest
from test_walkthrough_e2e import GUIDE_TPM_VERSION, host  # noqa: F401  (the fixture)
from wt_host import EXAMPLES, Host, in_netns, procs_with_root, squeeze

TPM_ORD_Extend, TPM_ORD_PcrRead = 0x14, 0x15
# TPM 1.2 Part 3, TPM_SaveState (no auth): the TPM keeps its volatile state
# in what it stores, until the next command of another ordinal deletes it
TPM_SAVESTATE = bytes.fromhex("00c10000000a00000098")
PCR = 10
SAVED = "Saved hash and key for vtpm"


def _pid_of(host, needle: bytes) -> int:
    pids = [p for p in procs_with_root(host.root) if needle in _read(p, "cmdline")]
    assert len(pids) == 1, (needle, pids)
    return pids[0]


def _read(pid: int, what: str) -> bytes:
    try:
        return open("/proc/%d/%s" % (pid, what), "rb").read()
    except OSError:
        return b""


def _tpm0(host) -> tuple[int, tuple[str, int]]:
    """Where the guest's /dev/tpm0 is reachable: the tcsd's pid (whose
    network namespace is the guest's) and the address it was given."""
    for p in procs_with_root(host.root):
        env = dict(e.split(b"=", 1) for e in _read(p, "environ").split(b"\0") if b"=" in e)
        if b"TCSD_TCP_DEVICE_PORT" in env:
            return p, (env[b"TCSD_TCP_DEVICE_HOSTNAME"].decode(), int(env[b"TCSD_TCP_DEVICE_PORT"]))
    raise AssertionError("the guest's tcsd is not running")


def _connect(dev, timeout: float = 10) -> socket.socket:
    """open() of the guest's /dev/tpm0, from inside the guest's network."""
    pid, addr = dev
    return in_netns(pid, lambda: socket.create_connection(addr, timeout=timeout))


def _transact(dev, request: bytes, timeout: float = 10) -> bytes:
    """One write()+read() on the guest's /dev/tpm0; b"" if the device failed it."""
    with _connect(dev, timeout) as s:
        s.sendall(request)
        return _response(s)


def _response(s: socket.socket) -> bytes:
    """The read() of a response; b"" (or what came) if the device failed it."""
    out = b""
    while len(out) < 10 or len(out) < struct.unpack_from(">I", out, 2)[0]:
        chunk = s.recv(4096)
        if not chunk:
            return out
        out += chunk
    return out


def _submitted(pid: int, request: bytes) -> bool:
    """Whether a tpmif shared page of process `pid` (the guest's ring, a
    memfd it granted) holds `request` in state SUBMIT (tpmif.h: u32 length,
    u8 state, three more bytes, then the packet)."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            maps = [line.split() for line in f if "memfd:pyxl-page" in line]
        with open("/proc/%d/mem" % pid, "rb") as mem:
            for fields in maps:
                mem.seek(int(fields[0].split("-")[0], 16))
                head = mem.read(8 + len(request))
                if head[4] == 1 and struct.unpack_from("<I", head)[0] == len(request) \
                        and head[8:] == request:
                    return True
    except OSError:
        pass
    return False


def _pcr_line(text: str) -> str:
    m = re.search(r"^PCR-%02d: ([0-9A-F ]+)$" % PCR, text, re.M)
    assert m, text
    return m.group(1).strip()


def _kill_daemon(host) -> None:
    dpid = _pid_of(host, b"pyxl.toolstack.daemon")
    os.kill(dpid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _ended(dpid):
        assert time.monotonic() < deadline, "the daemon did not die"
        time.sleep(0.02)


def _ended(pid: int) -> bool:
    """Every thread has exited (a zombie leader's other threads may still
    hold the daemon's sockets and lock)."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return True
    return all(_read(pid, "task/%s/stat" % t).rsplit(b")", 1)[-1].split()[:1] in ([], [b"Z"], [b"X"])
               for t in tids)


def _wait_count(host, dom: str, line: str, n: int, timeout: float = 20) -> None:
    """Wait until `line` appears at least n times on dom's console log."""
    deadline = time.monotonic() + timeout
    while host.console_log(dom).count(line) < n:
        assert time.monotonic() < deadline, (dom, line, host.console_log(dom)[-3000:])
        time.sleep(0.05)


def _wait_saves(host, n: int, timeout: float = 20) -> None:
    """Wait until the manager has stored the vTPM's state n times (its
    console line follows the answer)."""
    _wait_count(host, "vtpmmgr", SAVED, n, timeout)


def _wait_connected(host, vtpm_domid: int, timeout: float = 20) -> list[str]:
    """vtpm-list until the guest's frontend is Connected again (it only
    gets there after the backend connected to its new ring)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = host.run("vtpm-list", "domu").stdout.splitlines()
        if len(rows) == 2 and rows[1].split()[1] == str(vtpm_domid) and rows[1].split()[4] == "4":
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)


@pytest.mark.slow
def test_vtpm_chain_survives_sigkilled_daemon(host):  # noqa: F811
    p = subprocess.run(["bash", str(EXAMPLES / "walkthrough.sh"), str(host.dir)],
                       env=dict(host.env, KEEP_RUNNING="1"), capture_output=True, text=True,
                       timeout=120, errors="replace")
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr
    rows = host.domains()
    mgr, vtpm, domu = (int(rows[n][0]) for n in ("vtpmmgr", "domu-vtpm", "domu"))

    # the guest extends a PCR through /dev/tpm0 (volatile vTPM state)
    dev = _tpm0(host)
    digest = bytes(range(20))
    rsp = _transact(dev, struct.pack(">HII I", 0xC1, 34, TPM_ORD_Extend, PCR) + digest)
    assert rsp[6:10] == b"\0\0\0\0" and len(rsp) == 30, rsp.hex()
    before = _pcr_line(host.guest("cat /sys/devices/vtpm-0/pcrs"))
    assert before != " ".join(["00"] * 20)
    _wait_saves(host, 1)                # the new vTPM's first save, in the walk-through
    saves = host.console_log("vtpmmgr").count(SAVED)
    ring = host.run("vtpm-list", "domu").stdout.splitlines()[1].split()

    # -- the daemon is SIGKILLed; the next command starts a new one -----------------
    _kill_daemon(host)
    p = host.run("list")
    assert p.returncode == 0, p.stderr
    assert set(host.domains()) == {"Domain-0", "vtpmmgr", "domu-vtpm", "domu"}
    assert {n: int(r[0]) for n, r in host.domains().items() if n != "Domain-0"} == \
        {"vtpmmgr": mgr, "domu-vtpm": vtpm, "domu": domu}

    # the guest's frontend set up a fresh ring, the vTPM reconnected to it
    vl = _wait_connected(host, vtpm)
    assert vl[1].split()[2] == ring[2]                       # same uuid
    # (the console lines follow the connection: wait for them, do not race them)
    host.wait_console("domu-vtpm", "Tpmback:Info Frontend %d/0 resumed\n" % domu)
    _wait_count(host, "domu-vtpm", "Tpmback:Info Frontend %d/0 connected\n" % domu, 2)
    host.wait_console("domu-vtpm", "Tpmfront:Info Resuming: reconnecting to the backend\n")
    _wait_count(host, "vtpmmgr", "Tpmback:Info Frontend %d/0 connected\n" % vtpm, 2)

    # the guide's tpm_version through the same running tcsd, on the same vTPM
    out = host.guest("tpm_version").replace("\r", "")
    lines = out.splitlines()
    i = [n for n, x in enumerate(lines) if x.endswith("tpm_version")][0]
    assert [squeeze(x) for x in lines[i + 1:i + 8]] == GUIDE_TPM_VERSION.splitlines(), out
    assert _pcr_line(host.guest("cat /sys/devices/vtpm-0/pcrs")) == before
    assert host.console_log("vtpmmgr").count(SAVED) == saves      # nothing changed: no save
    # ... and the vTPM's state still reaches the manager (its new ring to
    # vtpmmgr): the guest takes ownership, a change the vTPM saves
    out = host.guest("tpm_takeownership -y -z").replace("\r", "").splitlines()
    assert out[-2].endswith("tpm_takeownership -y -z") and out[-1] == "root@domu:~# ", out
    saves += 1
    _wait_saves(host, saves)
    assert "tpm_store_permanent_data() failed" not in host.console_log("domu-vtpm")

    # -- a command in flight when the daemon dies is answered once the next is up ---
    # (pyxl's own: Linux fails it on a resume, but a Xen toolstack restart
    # leaves the ring alone, and the command completes).  After a SaveState
    # the PCRRead in flight is a change the vTPM saves: over its ring to the
    # manager, which the daemon's death took too.
    assert _transact(dev, TPM_SAVESTATE)[6:10] == b"\0\0\0\0"
    saves += 1
    _wait_saves(host, saves)
    vpid = _pid_of(host, b"pyxl-domain\0domid=%d\0" % vtpm)
    os.kill(vpid, signal.SIGSTOP)                 # the vTPM cannot answer meanwhile
    s = _connect(dev, timeout=60)
    try:
        request = struct.pack(">HIII", 0xC1, 14, TPM_ORD_PcrRead, PCR)
        s.sendall(request)
        domu_pid = _pid_of(host, b"pyxl-domain\0domid=%d\0" % domu)
        deadline = time.monotonic() + 10
        while not _submitted(domu_pid, request):      # on the ring, unanswered
            assert time.monotonic() < deadline, "the request never reached the ring"
            time.sleep(0.02)
        _kill_daemon(host)
        assert host.run("list").returncode == 0       # the next daemon
    finally:
        os.kill(vpid, signal.SIGCONT)
    with s:
        rsp = _response(s)                            # sent again on the new ring
    assert rsp[6:10] == b"\0\0\0\0" and " ".join("%02X" % b for b in rsp[10:30]) == before
    saves += 1
    _wait_saves(host, saves)                      # its save reached the manager
    assert "tpm_store_permanent_data() failed" not in host.console_log("domu-vtpm")
    _wait_connected(host, vtpm)
    rsp = _transact(dev, struct.pack(">HIII", 0xC1, 14, TPM_ORD_PcrRead, PCR))
    assert rsp[6:10] == b"\0\0\0\0"
    assert " ".join("%02X" % b for b in rsp[10:30]) == before

    # -- and the guide's teardown works as before ----------------------------------
    p = host.run("shutdown", "-w", "domu")
    assert p.returncode == 0 and "Domain %d has been shut down, reason code 0" % domu in p.stderr
    host.wait_gone("domu-vtpm")
    assert "tpm_store_permanent_data() failed" not in host.console_log("domu-vtpm")
    assert host.run("destroy", "vtpmmgr").returncode == 0
    assert set(host.domains()) == {"Domain-0"}


@pytest.fixture
def bare_host(tmp_path, pyxl_cmd):
    """A host without the guest's tcsd: needs no peer and no root."""
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


def _sysfs(host, *names: str) -> list[str]:
    """The guest's `cat` of each chip attribute, in one console session."""
    out = host.guest(*("cat /sys/devices/vtpm-0/%s" % n for n in names)).replace("\r", "")
    parts = out.split("root@domu:~# ")
    assert len(parts) == len(names) + 1, out
    return [p[p.index("\n") + 1:] for p in parts[:-1]]      # each: the command's echo, its output


@pytest.mark.slow
def test_guest_sysfs_tpm_survives_sigkilled_daemon_without_tcsd(bare_host):
    """The same chain built command by command; the guest's TPM is read
    through its sysfs files (each a few real TPM commands over the ring),
    and the vTPM's save as its guest shuts down reaches the manager."""
    h = bare_host
    mgr_img, vtpm_img, kernel = h.dir / "mgr.img", h.dir / "vtpm.img", h.dir / "vmlinuz"
    for path, size in ((mgr_img, 16 << 20), (vtpm_img, 8 << 20)):
        with open(path, "wb") as f:
            f.truncate(size)
    kernel.write_text("stand-in kernel\n")
    h.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % mgr_img)
    h.wait_console("vtpmmgr", "Waiting for commands from vTPM's:")
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % vtpm_img)
    h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    h.create("domu.cfg", 'kernel="%s"' % kernel)
    h.guest("modprobe xen-tpmfront")
    caps, pubek = _sysfs(h, "caps", "pubek")
    assert caps.startswith("Manufacturer: 0x4554485a\n"), caps
    assert "Modulus length: 256\n" in pubek
    vtpm = int(h.domains()["domu-vtpm"][0])
    ring = _wait_connected(h, vtpm)[1].split()

    _kill_daemon(h)
    assert h.run("list").returncode == 0
    again = _wait_connected(h, vtpm)[1].split()
    assert again[2] == ring[2]                         # the same device (uuid)
    assert _sysfs(h, "caps", "pubek") == [caps, pubek]
    h.wait_console("domu-vtpm", "Tpmfront:Info Resuming: reconnecting to the backend\n")
    saves = h.console_log("vtpmmgr").count(SAVED)

    p = h.run("shutdown", "-w", "domu")
    assert p.returncode == 0, p.stderr
    h.wait_gone("domu-vtpm")
    # reading caps and EK saves nothing; the vTPM's save as it shuts down
    # (TPM_SaveState keeps its volatile state: a change) reaches the manager
    # over the ring the next daemon set up
    _wait_saves(h, saves + 1)
    assert "tpm_store_permanent_data() failed" not in h.console_log("domu-vtpm")
    assert "Tpmback:Error" not in h.console_log("domu-vtpm")
    assert h.run("destroy", "vtpmmgr").returncode == 0


@pytest.mark.slow
def test_vtpm_stubdom_survives_a_daemon_killed_during_its_start(bare_host):
    """The daemon is SIGKILLed right after `create domu-vtpm` returned (before
    the stub domain's HELLO), and as soon as its console shows each step
    of its start: the backend's and the frontend's initialisation, the
    frontend's handshake with the manager.  Each time the next daemon
    lists the vTPM running, and it gets to waiting for its guest with no
    failed step."""
    h = bare_host
    mgr_img, vtpm_img = h.dir / "mgr.img", h.dir / "vtpm.img"
    for path, size in ((mgr_img, 16 << 20), (vtpm_img, 8 << 20)):
        with open(path, "wb") as f:
            f.truncate(size)
    h.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % mgr_img)
    h.wait_console("vtpmmgr", "Waiting for commands from vTPM's:")
    monitor = os.path.join(h.root, "var/log/pyxl/xl-domu-vtpm.log")
    console = os.path.join(h.root, "var/log/pyxl/console/guest-domu-vtpm.log")
    for step in (None, "Init TPM BACK", "Init TPM Front", "Waiting for backend connection..",
                 "Tpmfront:Info Backend Connected"):
        seen = os.path.getsize(console) if os.path.exists(console) else 0
        h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % vtpm_img)
        if step is not None:
            deadline = time.monotonic() + 30
            while step not in h.console_log("domu-vtpm")[seen:]:
                assert time.monotonic() < deadline, (step, h.console_log("domu-vtpm")[seen:])
                time.sleep(0.002)
        _kill_daemon(h)
        rows = h.domains()               # a new daemon
        assert "domu-vtpm" in rows and rows["domu-vtpm"][3][3] != "s", (step, rows)
        deadline = time.monotonic() + 30
        while "Waiting for frontend domain to connect.." not in h.console_log("domu-vtpm")[seen:]:
            assert time.monotonic() < deadline, (step, h.console_log("domu-vtpm")[seen:])
            time.sleep(0.05)
        log = h.console_log("domu-vtpm")[seen:]
        for failed in ("Tpmfront:Error", "Tpmback:Error", "Unable to",
                       "Error sending command through frontend device"):
            assert failed not in log, (step, log)
        with open(monitor) as f:
            assert "has shut down" not in f.read(), step
        assert h.run("destroy", "domu-vtpm").returncode == 0
        os.unlink(monitor)
