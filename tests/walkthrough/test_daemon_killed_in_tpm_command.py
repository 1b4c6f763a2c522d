"""A guest's TPM command caught in flight by a SIGKILLed daemon is run
once and answered once the next daemon is up (pyxl's own resume: Xen's
frontends never resume, a toolstack restart leaving their rings alone;
pyxl-vtpm(7), "Exactly once across a daemon restart").

The instant is exact, not a matter of timing: the guest's vtpm-stubdom
SIGKILLs the daemon itself through the test hook
PYXL_TEST_FAULT_AT=file:<file> (pyxl/hypervisor/testfault.py), armed once
the chain is up, either as its tpmback hands the vTPM the guest's
TPM_Extend (serve:) -- the vTPM runs it only once it has resumed on the
next daemon, so the answer cannot go on the ring the request came on --
or once tpmback has written the answer on that ring, before it notified
the guest (answered:).  The guest's /dev/tpm0 is reached as its tcsd
reaches it.  The expected PCR value is TPM 1.2's extend, SHA-1 of the old
value and the digest (TPM Main Part 3, TPM_Extend), from the value read
before.

A command sent while the daemon is away waits for the next one and is run
once (pyxl-vtpm(7) again): the guest's /dev/tpm0 kills the daemon itself
as it takes the command (away:), and the next daemon is started only once
the guest has seen it go.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time

import pytest
from test_daemon_restart_vtpm import _ended, _pid_of, _tpm0, _transact
from test_pvgrub import extend, pcrs
from test_walkthrough_e2e import host  # noqa: F401  (the fixture)
from wt_host import EXAMPLES, Host, in_netns

from peers import need_peer

TPM_ORD_Extend, TPM_ORD_PcrRead = 0x14, 0x15
TPM_TAG_RSP_COMMAND = 0xC4
PCR = 10
ANSWERED_AGAIN = "Tpmback:Info Frontend %d/0: answered again, without running it twice\n"
FAILED = ("Tpmfront:Error", "Tpmback:Error", "Traceback")
# TPM 2.0 (TPM 2.0 Part 2): PCR 16 is the debug PCR, reset to zeros
TPM_CC_PCR_Extend, TPM_CC_PCR_Read = 0x182, 0x17E
TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS = 0x8001, 0x8002
TPM_RS_PW, TPM_ALG_SHA1, TPM_ALG_SHA256 = 0x40000009, 0x0004, 0x000B
PCR2 = 16
MSSIM_SEND_COMMAND, MSSIM_SESSION_END = 8, 20      # tpm2-tss tcti-mssim.c


def _chain(h) -> tuple[int, tuple[str, int]]:
    """The guide's chain, the guest's tcsd running: where its /dev/tpm0 is."""
    h.guide_chain()
    h.guest("modprobe xen-tpmfront", "tcsd")
    return _tpm0(h)


def _pcr(dev) -> bytes:
    rsp = _transact(dev, struct.pack(">HIII", 0xC1, 14, TPM_ORD_PcrRead, PCR))
    assert rsp[6:10] == b"\0\0\0\0" and len(rsp) == 30, rsp.hex()
    return rsp[10:30]


def _extend_with_daemon_killed(h, hook: str) -> str:
    """The guest extends PCR 10 while the vTPM kills the daemon at `hook`;
    the next pyxl command starts the next daemon.  The Extend is answered,
    and the PCR extended exactly once.  The vTPM's console meanwhile."""
    armed = h.dir / "fault-at"
    armed.write_text("")
    h.env["PYXL_TEST_FAULT_AT"] = "file:%s" % armed      # the domains inherit it
    dev = _chain(h)
    before = _pcr(dev)
    digest = hashlib.sha1(b"measured once").digest()
    domu = int(h.domains()["domu"][0])
    since = h.console_size("domu-vtpm")

    extend = struct.pack(">HIII", 0xC1, 34, TPM_ORD_Extend, PCR) + digest
    answer = _sent_while_killed(h, armed, "%s:%d:%d" % (hook, domu, TPM_ORD_Extend),
                                lambda: _transact(dev, extend, timeout=90))
    once = hashlib.sha1(before + digest).digest()
    assert answer == struct.pack(">HII", TPM_TAG_RSP_COMMAND, 30, 0) + once, answer.hex()
    assert _pcr(dev) == once                       # extended once, not twice
    vtpm = h.console_log("domu-vtpm")[since:]
    for failed in FAILED:
        assert failed not in vtpm, (failed, vtpm)
    return vtpm


def _sent_while_killed(h, armed, spec: str, send) -> bytes:
    """send() (the guest's command) in a thread, `spec` armed: it kills
    the daemon; once it is dead, the next pyxl command starts the next
    daemon.  What send() got."""
    daemon = _pid_of(h, b"pyxl.toolstack.daemon")
    answer: list[bytes] = []
    guest = threading.Thread(target=lambda: answer.append(send()))
    armed.write_text(spec)
    guest.start()
    deadline = time.monotonic() + 30
    while not _ended(daemon):
        assert time.monotonic() < deadline, "the vTPM did not kill the daemon"
        time.sleep(0.02)
    armed.write_text("")
    assert h.run("list").returncode == 0          # the next daemon
    guest.join(90)
    assert not guest.is_alive(), "the guest's command was never answered"
    return answer[0]


def test_guest_extend_the_vtpm_runs_across_a_daemon_restart_is_run_once(host):
    """Killed as the vTPM takes the Extend: its answer is kept by tpmback,
    the guest's xen-tpmfront finds none on the old ring and sends the
    Extend again on its new ring, and gets the kept answer."""
    _extend_with_daemon_killed(host, "serve")
    domu = int(host.domains()["domu"][0])
    vtpm = host.wait_console("domu-vtpm", ANSWERED_AGAIN % domu)     # (logged after it answered)
    assert vtpm.count(ANSWERED_AGAIN % domu) == 1, vtpm


def test_guest_extend_answered_as_the_daemon_dies_is_run_once(host):
    """Killed once the answer is on the ring: the guest takes it from
    there (the old ring's page), and sends nothing again."""
    vtpm = _extend_with_daemon_killed(host, "answered")
    assert "answered again" not in vtpm, vtpm


def test_guest_extend_sent_while_the_daemon_is_away_waits_and_is_run_once(host):
    """The daemon is away when the guest sends its Extend (killed by the
    guest's /dev/tpm0 as it takes it, testfault away:): the Extend waits
    for the next daemon, as on Xen it would wait on a ring a toolstack
    restart leaves alone, instead of failing with ENODEV, and is run once
    on the new ring.  The next daemon is started only once the guest has
    seen the break (the hook empties the armed file then)."""
    h = host
    armed = h.dir / "fault-at"
    armed.write_text("")
    h.env["PYXL_TEST_FAULT_AT"] = "file:%s" % armed
    dev = _chain(h)
    before = _pcr(dev)
    digest = hashlib.sha1(b"sent while away").digest()
    domu = int(h.domains()["domu"][0])
    daemon = _pid_of(h, b"pyxl.toolstack.daemon")
    since = h.console_size("domu-vtpm")

    answer: list[bytes] = []
    extend = struct.pack(">HIII", 0xC1, 34, TPM_ORD_Extend, PCR) + digest
    guest = threading.Thread(target=lambda: answer.append(_transact(dev, extend, timeout=90)))
    armed.write_text("away:%d:%d" % (domu, TPM_ORD_Extend))
    guest.start()
    deadline = time.monotonic() + 30
    while armed.read_text() or not _ended(daemon):     # the guest saw the daemon go
        assert time.monotonic() < deadline, "the guest did not kill the daemon"
        time.sleep(0.02)
    assert guest.is_alive() and not answer, answer      # waiting, not failed (ENODEV)
    assert h.run("list").returncode == 0                 # the next daemon
    guest.join(90)
    assert not guest.is_alive(), "the guest's Extend was never answered"

    once = hashlib.sha1(before + digest).digest()
    assert answer == [struct.pack(">HII", TPM_TAG_RSP_COMMAND, 30, 0) + once], answer
    assert _pcr(dev) == once                             # extended once
    vtpm = h.console_log("domu-vtpm")[since:]
    for failed in FAILED:
        assert failed not in vtpm, (failed, vtpm)
    assert "answered again" not in vtpm, vtpm            # nothing was in flight



def test_pvgrub_extend_sent_while_the_daemon_is_away_waits_and_is_run_once(host):
    """mini-os tpmfront, as pv-grub uses it: its TPM_Extend of the kernel
    into PCR 4 is sent while the daemon is away (pv-grub's tpmfront kills
    it as it takes the Extend, away:), waits for the next daemon and is
    run once: PCR 4 holds one measurement of the kernel (pv-grub's, as
    test_pvgrub computes it)."""
    h, d = host, host.dir
    armed = d / "fault-at"
    armed.write_text("")
    h.env["PYXL_TEST_FAULT_AT"] = "file:%s" % armed
    (d / "mgr.img").write_bytes(bytes(16 << 20))
    (d / "vtpm.img").write_bytes(bytes(8 << 20))
    kernel = b"\x7fELF pretend kernel image " * 1000
    (d / "vmlinuz").write_bytes(kernel)
    h.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % (d / "mgr.img"))
    h.wait_console("vtpmmgr", "INFO[VTPM]: Waiting for commands from vTPM's:")
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % (d / "vtpm.img"))
    h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    p = h.run("create", "-p", str(EXAMPLES / "domu-pvgrub.cfg"),
              'extra="%s/vmlinuz root=/dev/xvda1 console=hvc0"' % d)
    assert p.returncode == 0, p.stderr
    domu = int(h.domains()["domu"][0])
    daemon = _pid_of(h, b"pyxl.toolstack.daemon")
    armed.write_text("away:%d:%d" % (domu, TPM_ORD_Extend))
    h.run("unpause", "domu")
    deadline = time.monotonic() + 30
    while armed.read_text() or not _ended(daemon):     # pv-grub saw the daemon go
        assert time.monotonic() < deadline, "pv-grub did not kill the daemon"
        time.sleep(0.02)
    assert "domu" in h.domains()                         # the next daemon
    h.wait_console("domu", "login:", timeout=60)
    out = h.guest("modprobe xen-tpmfront", "cat /sys/devices/vtpm-0/pcrs")
    assert pcrs(out)[4] == extend(bytes(20), kernel), out      # measured once
    for dom in ("vtpmmgr", "domu-vtpm", "domu"):
        log = h.console_log(dom)
        for failed in FAILED + ("answered again",):
            assert failed not in log, (dom, failed, log)


# -- a TPM 2.0 vTPM (tpm2=1): the guest's /dev/tpmrm0 ------------------------------

@pytest.fixture
def host2(tmp_path, pyxl_cmd):
    need_peer("tpm2-tools")
    if os.geteuid() != 0:
        pytest.skip("the guest's private network (its /dev/tpmrm0) needs root")
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


def _chain2(h) -> tuple[int, tuple[str, int]]:
    """The guide's chain with a TPM 2.0 vTPM (examples/vtpm2.cfg), the
    guest's /dev/tpmrm0 opened once by tpm2-tools: a thread of the guest's
    process in the guest's network, and where /dev/tpmrm0 is in it."""
    h.guide_chain("vtpm2.cfg")
    h.guest("modprobe xen-tpmfront", "tpm2_pcrread sha256:16")
    pid = _pid_of(h, b"pyxl-domain\0domid=%s\0" % h.domains()["domu"][0].encode())
    own = os.readlink("/proc/%d/ns/net" % pid)
    net = []
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            if os.readlink("/proc/%d/task/%s/ns/net" % (pid, t)) != own:
                net.append(int(t))
        except OSError:
            continue                    # a thread that ended meanwhile
    assert net, "the guest has no network of its own"
    return net[0], ("127.0.0.1", 2321)          # tpm2-tss's mssim port


def _mssim(dev, command: bytes, timeout: float = 10) -> bytes:
    """One command through /dev/tpmrm0 as tpm2-tss's mssim TCTI sends it;
    b"" if the device failed it."""
    tid, addr = dev
    with in_netns(tid, lambda: socket.create_connection(addr, timeout=timeout)) as s:
        s.sendall(struct.pack(">IBI", MSSIM_SEND_COMMAND, 0, len(command)) + command)
        head = _exactly(s, 4)
        rsp = _exactly(s, struct.unpack(">I", head)[0]) if head else b""
        if rsp and _exactly(s, 4):
            s.sendall(struct.pack(">I", MSSIM_SESSION_END))
        return rsp


def _exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            return b""
        out += chunk
    return out


def _pcr16(dev) -> dict[int, bytes]:
    """TPM2_PCR_Read of PCR 16 in the SHA-1 and SHA-256 banks."""
    sel = b"".join(struct.pack(">HB3s", alg, 3, b"\0\0\x01") for alg in (TPM_ALG_SHA1, TPM_ALG_SHA256))
    body = struct.pack(">I", 2) + sel
    rsp = _mssim(dev, struct.pack(">HII", TPM_ST_NO_SESSIONS, 10 + len(body), TPM_CC_PCR_Read) + body)
    assert rsp[6:10] == b"\0\0\0\0", rsp.hex()
    off = 14                                       # after pcrUpdateCounter
    algs = []
    for _ in range(struct.unpack_from(">I", rsp, off)[0]):
        alg, size = struct.unpack_from(">HB", rsp, off + 4)
        algs.append(alg)
        off += 3 + size
    off += 4
    assert struct.unpack_from(">I", rsp, off)[0] == len(algs), rsp.hex()
    off += 4
    out = {}
    for alg in algs:
        size = struct.unpack_from(">H", rsp, off)[0]
        out[alg] = rsp[off + 2:off + 2 + size]
        off += 2 + size
    return out


@pytest.mark.parametrize("hook", ["serve", "answered"])
def test_guest_tpm2_pcr_extend_caught_by_a_daemon_restart_is_run_once(host2, hook):
    """The TPM 2.0 variant: the guest's TPM2_PCR_Extend of PCR 16 (a
    password session, SHA-1 and SHA-256 digests) through /dev/tpmrm0,
    the daemon killed by the vTPM as its tpmback hands it the command
    (serve:) or once the answer is on the ring (answered:).  Each bank
    holds its hash of the old value and that bank's digest (TPM 2.0
    Part 3, TPM2_PCR_Extend), extended once."""
    h = host2
    armed = h.dir / "fault-at"
    armed.write_text("")
    h.env["PYXL_TEST_FAULT_AT"] = "file:%s" % armed
    dev = _chain2(h)
    before = _pcr16(dev)
    assert set(before) == {TPM_ALG_SHA1, TPM_ALG_SHA256}, before
    d1, d256 = hashlib.sha1(b"tpm2 once").digest(), hashlib.sha256(b"tpm2 once").digest()
    domu = int(h.domains()["domu"][0])
    since = h.console_size("domu-vtpm")

    auth = struct.pack(">IHBH", TPM_RS_PW, 0, 0, 0)      # TPMS_AUTH_COMMAND, empty password
    digests = struct.pack(">IH", 2, TPM_ALG_SHA1) + d1 + struct.pack(">H", TPM_ALG_SHA256) + d256
    body = struct.pack(">II", PCR2, len(auth)) + auth + digests
    extend = struct.pack(">HII", TPM_ST_SESSIONS, 10 + len(body), TPM_CC_PCR_Extend) + body
    answer = _sent_while_killed(h, armed, "%s:%d:%d" % (hook, domu, TPM_CC_PCR_Extend),
                                lambda: _mssim(dev, extend, timeout=90))
    assert answer[:2] == struct.pack(">H", TPM_ST_SESSIONS) and answer[6:10] == b"\0\0\0\0", answer.hex()
    once = {TPM_ALG_SHA1: hashlib.sha1(before[TPM_ALG_SHA1] + d1).digest(),
            TPM_ALG_SHA256: hashlib.sha256(before[TPM_ALG_SHA256] + d256).digest()}
    assert _pcr16(dev) == once                     # extended once, not twice
    vtpm = h.console_log("domu-vtpm")[since:]
    for failed in FAILED:
        assert failed not in vtpm, (failed, vtpm)
    if hook == "serve":
        vtpm = h.wait_console("domu-vtpm", ANSWERED_AGAIN % domu, since=since)[since:]
    assert vtpm.count(ANSWERED_AGAIN % domu) == (1 if hook == "serve" else 0), vtpm
