"""The guide's chain through the real toolstack when vtpmmgr-stubdom is
SIGKILLed: the daemon reaps it (on_crash=destroy), the guest's TPM keeps
answering what needs no save instead of hanging, a command that changes
what the vTPM stores fails (its save cannot reach the manager) and is
undone, and a new manager on the same disk, re-attached with
vtpm-detach/vtpm-attach, gets the vTPM's saves again with its PCRs intact.
And a guest that goes away still takes its vtpm-stubdom with it while the
manager is dead.

A vTPM saves only when what it stores changed (pyxl-vtpm(7), "What happens
to a vTPM's state"): reading PCRs saves nothing, so the save is made by
TPM_TakeOwnership, through the guest's tcsd and tpm-tools."""

from __future__ import annotations

import os
import signal
import time

import pytest
from test_daemon_restart_vtpm import _pid_of
from wt_host import Host

from peers import need_peer

UUID = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
SAVED = "Saved hash and key for vtpm %s" % UUID
TAKE_OWNERSHIP = "tpm_takeownership -y -z"
# tpm-tools' report of TPM_FAIL (9), the vTPM's answer to a command whose
# save failed (pyxl-vtpm(7), "What happens to a vTPM's state")
OWNERSHIP_FAILED = "Tspi_TPM_TakeOwnership failed: 0x00000009 - layer=tpm, code=0009 (9)"


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


def _chain(h):
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
    return mgr_img


def _pcrs(h) -> str:
    out = h.guest("cat /sys/devices/vtpm-0/pcrs").replace("\r", "")
    assert "PCR-00:" in out, out
    return out[out.index("PCR-00:"):out.rindex("root@domu")]


def _guest_tool(h, command: str) -> str:
    """What `command` printed on the guest's console (between its echo and
    the next prompt)."""
    out = h.guest(command).replace("\r", "")
    echo = out.index(command + "\n") + len(command) + 1
    return out[echo:out.rindex("root@domu")]


def _kill_manager(h) -> None:
    domid = int(h.run("domid", "vtpmmgr").stdout)
    os.kill(_pid_of(h, b"pyxl-domain\0domid=%d\0" % domid), signal.SIGKILL)
    h.wait_gone("vtpmmgr")                                 # reaped: on_crash=destroy


@pytest.mark.slow
def test_killed_manager_then_a_new_one(host):
    need_peer("tcsd")
    need_peer("tpm-tools")
    if os.geteuid() != 0:
        pytest.skip("tcsd only accepts a root:tss config file: needs root")
    h = host
    mgr_img = _chain(h)
    h.guest("tcsd")
    before = _pcrs(h)
    h.wait_console("vtpmmgr", SAVED)                       # the new vTPM's first save
    _kill_manager(h)
    t0 = time.monotonic()
    assert _pcrs(h) == before                              # answered, not hung
    assert time.monotonic() - t0 < 20
    assert "tpm_store_permanent_data() failed" not in h.console_log("domu-vtpm")   # no save
    # a command that changes what the vTPM stores: its save fails, so it
    # fails and is undone (the owner is not kept)
    since = h.console_size("domu-vtpm")
    assert OWNERSHIP_FAILED in _guest_tool(h, TAKE_OWNERSHIP)
    h.wait_console("domu-vtpm", "tpm_store_permanent_data() failed", since=since)

    h.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % mgr_img)
    deadline = time.monotonic() + 30                      # the new manager's lines follow the old
    while h.console_log("vtpmmgr").count("Starting vTPM") < 2 or \
            "Waiting for commands" not in h.console_log("vtpmmgr").split("Starting vTPM")[-1]:
        assert time.monotonic() < deadline, h.console_log("vtpmmgr")[-3000:]
        time.sleep(0.05)
    assert "Loaded 1 vtpms!" in h.console_log("vtpmmgr").split("Starting vTPM")[-1]
    for args in (("vtpm-detach", "domu-vtpm", "0"),
                 ("vtpm-attach", "domu-vtpm", "backend=vtpmmgr", "uuid=" + UUID)):
        p = h.run(*args)
        assert p.returncode == 0, p.stderr
    saved = h.console_log("vtpmmgr").count(SAVED)
    assert _pcrs(h) == before
    # the failed TakeOwnership left no owner: taking ownership again
    # succeeds, and its save reaches the new manager
    assert _guest_tool(h, TAKE_OWNERSHIP) == ""             # silent: the guest took ownership
    deadline = time.monotonic() + 20                      # the save's line follows the answer
    while h.console_log("vtpmmgr").count(SAVED) <= saved:
        assert time.monotonic() < deadline, h.console_log("vtpmmgr")[-3000:]
        time.sleep(0.05)
    h.wait_console("domu-vtpm", "Tpmfront:Info Reconnected to backend")
    p = h.run("shutdown", "-w", "domu")
    assert p.returncode == 0, p.stderr
    h.wait_gone("domu-vtpm")
    assert h.run("destroy", "vtpmmgr").returncode == 0


@pytest.mark.slow
def test_guest_gone_takes_its_vtpm_while_the_manager_is_dead(host):
    h = host
    _chain(h)
    _kill_manager(h)
    assert h.run("destroy", "domu").returncode == 0
    h.wait_gone("domu-vtpm", timeout=20)
    h.wait_console("domu-vtpm", "vtpm.c:202: Info: VTPM Shutting down")
