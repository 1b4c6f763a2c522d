"""A vTPM whose image does not authenticate, through the real toolstack:
vtpm-stubdom says why on its console, writes nothing and crashes (and,
on_crash=destroy, is gone), so creating the guest fails the way xl's does
when a vtpm backend domain is missing -- instead of the guest getting a
blank TPM that the first save writes over the old one."""

from __future__ import annotations

import hashlib

import pytest
from test_vtpm_manager_death import _chain
from wt_host import EXAMPLES, Host


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


@pytest.mark.slow
def test_damaged_vtpm_image_is_refused_not_replaced(host):
    h = host
    _chain(h)
    h.guest("cat /sys/devices/vtpm-0/pubek")              # the vTPM's state is saved
    p = h.run("shutdown", "-w", "domu")
    assert p.returncode == 0, p.stderr
    h.wait_gone("domu-vtpm")
    img = h.dir / "vtpm.img"
    data = bytearray(img.read_bytes())
    for slot in (0, 1):
        data[slot * len(data) // 2 + 64] ^= 1
    img.write_bytes(bytes(data))
    before = hashlib.sha256(data).hexdigest()

    log_before = len(h.console_log("domu-vtpm"))
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % img)
    h.wait_gone("domu-vtpm")                              # crashed, destroyed
    con = h.console_log("domu-vtpm")[log_before:]
    assert "refusing to start, the disk is left untouched" in con
    assert "initializing TPM data to default values" not in con
    p = h.run("create", str(EXAMPLES / "domu.cfg"), 'kernel="%s"' % (h.dir / "vmlinuz"))
    assert p.returncode != 0, p.stderr
    assert "Specified vtpm backend domain `domu-vtpm' does not exist!" in p.stderr
    assert hashlib.sha256(img.read_bytes()).hexdigest() == before
    assert h.run("destroy", "vtpmmgr").returncode == 0
