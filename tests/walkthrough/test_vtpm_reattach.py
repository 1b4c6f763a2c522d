"""The guest's vTPM device follows `xl vtpm-detach` / `xl vtpm-attach`
as Linux's xenbus does (xenbus_probe_frontend.c: the watch on "device",
xenbus_dev_changed; drivers/char/tpm/xen-tpmfront.c: tpmfront_remove,
tpmfront_probe): with xen-tpmfront loaded, a detached device's chip goes
(/dev/tpm0 with it), an attached one is bound at once, and a vTPM
started again on its disk is reached by detach + attach alone, with the
state it saved."""

from __future__ import annotations

import time

import pytest
from test_daemon_restart_vtpm import _wait_connected
from test_vtpm_chain_crash import UUID
from test_walkthrough_e2e import host  # noqa: F401  (the fixture)


def _until(h, command: str, test, why: str, timeout: float = 20) -> str:
    """Run `command` in the guest until its output passes `test`."""
    deadline = time.monotonic() + timeout
    while True:
        out = h.guest(command)
        if test(out):
            return out
        assert time.monotonic() < deadline, (why, out)


def _dev_lines(out: str) -> list[str]:
    return [w for line in out.replace("\r", "").splitlines() for w in line.split()]


def _pubek(h) -> str:
    out = h.guest("cat /sys/devices/vtpm-0/pubek")
    assert "Modulus length: 256" in out, out
    return out[out.index("Algorithm"):]


def _attach(h, *args: str) -> None:
    p = h.run("vtpm-attach", "domu", *args)
    assert p.returncode == 0, p.stderr


def _detach(h) -> None:
    p = h.run("vtpm-detach", "domu", "0")
    assert p.returncode == 0, p.stderr


def _replace_vtpm(h) -> int:
    """domu's vtpm-stubdom destroyed and started again on its disk, then the
    guest's device detached and attached to the new one; its domid."""
    assert h.run("destroy", "domu-vtpm").returncode == 0
    h.wait_gone("domu-vtpm")
    h.create_vtpm("vtpm.cfg")
    vtpm = int(h.domains()["domu-vtpm"][0])
    _detach(h)
    _attach(h, "backend=domu-vtpm")
    return vtpm


@pytest.mark.slow
def test_guest_tpm_follows_detach_and_attach(host):  # noqa: F811
    h = host
    h.guide_chain("vtpm.cfg")
    h.guest("modprobe xen-tpmfront")
    pubek = _pubek(h)                  # made by the vTPM at its first start, then saved
    h.wait_console("vtpmmgr", "Saved hash and key for vtpm %s" % UUID)
    vtpm = int(h.domains()["domu-vtpm"][0])

    # -- detach of a live vTPM: Linux removes the chip, /dev/tpm0 goes ----------
    _detach(h)
    _until(h, "ls /dev", lambda out: "tpm0" not in _dev_lines(out), "/dev/tpm0 stayed")
    assert h.run("vtpm-list", "domu").stdout.splitlines()[1:] == []
    assert "No such file" in h.guest("cat /sys/devices/vtpm-0/pubek")

    # -- its vTPM, whose frontend went, ends (it serves one guest in its life);
    # started again on its disk, attach alone brings the chip back -------------------
    h.wait_gone("domu-vtpm")
    h.create_vtpm("vtpm.cfg")
    vtpm = int(h.domains()["domu-vtpm"][0])
    _attach(h, "backend=domu-vtpm")
    _wait_connected(h, vtpm)
    _until(h, "ls /dev", lambda out: "tpm0" in _dev_lines(out), "no /dev/tpm0")
    assert _pubek(h) == pubek          # the state it saved, through the new device
    assert "Loaded hash and key for vtpm %s" % UUID in h.console_log("vtpmmgr")

    # -- the vTPM dies under a bound device; a new one; detach + attach --------------
    vtpm = _replace_vtpm(h)
    _wait_connected(h, vtpm)           # not stuck at Initialised
    assert _pubek(h) == pubek
    out = h.guest("tcsd", "tpm_version").replace("\r", "")        # tcsd on the new /dev/tpm0
    assert "TPM 1.2 Version Info:" in out, out

    # -- the module unloaded: a device attached meanwhile is bound by modprobe ----
    h.guest("rmmod xen_tpmfront")
    assert "tpm0" not in _dev_lines(h.guest("ls /dev"))
    vtpm = _replace_vtpm(h)
    assert "tpm0" not in _dev_lines(h.guest("ls /dev"))     # no driver: no chip
    h.guest("modprobe xen-tpmfront")
    _wait_connected(h, vtpm)
    assert _pubek(h) == pubek
