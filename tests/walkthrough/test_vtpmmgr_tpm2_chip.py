"""The guide's chain on a host whose hardware TPM is a TPM 2.0
(PYXL_HWTPM=2.0, the manager with `extra="tpm2=1"`), through the daemon:
the guest's real TrouSerS tcsd and tpm_version on a 1.2 vTPM, the daemon
SIGKILLed (the chip is power-cycled and comes back from its state file),
then the manager destroyed and created again on the same disk: the vTPM's
state loads (the same EK), which Xen 4.17's TPM 2.0 manager cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_daemon_restart_vtpm import _kill_daemon, _sysfs, _wait_connected
from test_walkthrough_e2e import GUIDE_TPM_VERSION, host  # noqa: F401  (the fixture)
from wt_host import squeeze


def _chain(h, mgr_img, vtpm_img, kernel) -> None:
    # a second chain appends to the first one's console logs: wait for this boot's lines
    since = h.console_size("vtpmmgr")
    h.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % mgr_img, 'extra="tpm2=1"')
    h.wait_console("vtpmmgr", "Waiting for commands from vTPM's:", since=since)
    since = h.console_size("domu-vtpm")
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % vtpm_img)
    h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..", since=since)
    h.create("domu.cfg", 'kernel="%s"' % kernel)


def _shutdown_guest(h) -> None:
    assert h.run("shutdown", "-w", "domu").returncode == 0
    h.wait_gone("domu-vtpm")


@pytest.mark.slow
def test_guide_chain_on_a_tpm20_chip_survives_daemon_and_manager_restarts(host):  # noqa: F811
    h = host
    h.env["PYXL_HWTPM"] = "2.0"
    mgr_img, vtpm_img, kernel = h.dir / "mgr.img", h.dir / "vtpm.img", h.dir / "vmlinuz"
    for path, size in ((mgr_img, 16 << 20), (vtpm_img, 8 << 20)):
        with open(path, "wb") as f:
            f.truncate(size)
    kernel.write_text("stand-in kernel\n")
    _chain(h, mgr_img, vtpm_img, kernel)
    chip = Path(h.root, "var/lib/pyxl/tpm/tpm20.state")
    assert chip.exists() and not Path(h.root, "var/lib/pyxl/tpm/tpm12.state").exists()
    mlog = h.console_log("vtpmmgr")
    assert "INFO[VTPM]: Hardware : --- TPM 2.0 ---\n" in mlog
    assert "2.0 TPM (device-id=0x1 vendor-id = 1014 rev-id = 1)\n" in mlog

    out = h.guest("modprobe xen-tpmfront", "tcsd", "tpm_version").replace("\r", "")
    lines = out.splitlines()
    i = [n for n, x in enumerate(lines) if x.endswith("tpm_version")][0]
    assert [squeeze(x) for x in lines[i + 1:i + 8]] == GUIDE_TPM_VERSION.splitlines(), out
    caps, pubek = _sysfs(h, "caps", "pubek")
    vtpm = int(h.domains()["domu-vtpm"][0])

    # the daemon dies; the new one powers the chip up from tpm20.state and the
    # manager makes its SRK again and reloads its SK from the header
    saves = h.console_log("vtpmmgr").count("Saved hash and key for vtpm")
    _kill_daemon(h)
    h.env.pop("PYXL_HWTPM")                   # the host keeps the chip it has
    assert h.run("list").returncode == 0
    _wait_connected(h, vtpm)
    assert _sysfs(h, "caps", "pubek") == [caps, pubek]
    assert "Hardware TPM not usable" not in h.console_log("vtpmmgr")
    _shutdown_guest(h)                         # the vTPM saves through the reloaded SK
    mlog = h.console_log("vtpmmgr")
    assert mlog.count("Saved hash and key for vtpm") > saves, mlog[-3000:]

    # the manager destroyed and created again on the same disk
    assert h.run("destroy", "vtpmmgr").returncode == 0
    _chain(h, mgr_img, vtpm_img, kernel)
    mlog = h.console_log("vtpmmgr")
    tail = mlog[mlog.rindex("Hardware : --- TPM 2.0 ---"):]
    assert "INFO[VTPM]: Loaded 1 vtpms!\n" in tail and "first time" not in tail
    h.guest("modprobe xen-tpmfront")
    assert _sysfs(h, "caps", "pubek") == [caps, pubek]      # the same vTPM, not a blank one
    _shutdown_guest(h)
    assert h.run("destroy", "vtpmmgr").returncode == 0
