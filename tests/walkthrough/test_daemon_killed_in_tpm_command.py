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
import struct
import threading
import time

from test_daemon_restart_vtpm import _ended, _pid_of, _tpm0, _transact
from test_walkthrough_e2e import host  # noqa: F401  (the fixture)

TPM_ORD_Extend, TPM_ORD_PcrRead = 0x14, 0x15
TPM_TAG_RSP_COMMAND = 0xC4
PCR = 10
ANSWERED_AGAIN = "Tpmback:Info Frontend %d/0: answered again, without running it twice\n"
FAILED = ("Tpmfront:Error", "Tpmback:Error", "Traceback")


def _chain(h) -> tuple[int, tuple[str, int]]:
    """The guide's chain, the guest's tcsd running: where its /dev/tpm0 is."""
    d = h.dir
    (d / "mgr.img").write_bytes(bytes(16 << 20))
    (d / "vtpm.img").write_bytes(bytes(8 << 20))
    (d / "vmlinuz").write_text("stand-in kernel\n")
    h.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % (d / "mgr.img"))
    h.wait_console("vtpmmgr", "INFO[VTPM]: Waiting for commands from vTPM's:")
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % (d / "vtpm.img"))
    h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    h.create("domu.cfg", 'kernel="%s"' % (d / "vmlinuz"))
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
    vtpm = _extend_with_daemon_killed(host, "serve")
    domu = int(host.domains()["domu"][0])
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
