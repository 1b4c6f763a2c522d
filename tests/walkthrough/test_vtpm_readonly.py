"""A disk given `,r` is read-only end to end, through the real toolstack:
Xen 4.17's xl leaves "readwrite" out of the libxl JSON for it, blkback
writes `mode = "r"` and opens the image read-only, and the vTPM manager
refuses it with a console line instead of writing its header into it."""

from __future__ import annotations

import hashlib
import json

import pytest
from wt_host import EXAMPLES, Host

from oracle.xl import run_xl_text
from peers import need_peer


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


def test_readonly_manager_disk(host):
    need_peer("xl")
    img = host.dir / "vtpmmgr.img"
    img.write_bytes(bytes(1 << 20))
    before = hashlib.sha256(img.read_bytes()).hexdigest()
    text = (EXAMPLES / "vtpmmgr-stubdom.cfg").read_text().replace(
        "file:/var/vtpmmgr-stubdom.img,hda,w", "file:%s,hda,r" % img)
    text += 'on_crash="preserve"\n'
    cfg = host.dir / "vtpmmgr-ro.cfg"
    cfg.write_text(text)
    xl = run_xl_text(text)                       # what Xen 4.17's xl makes of it
    assert xl.rc == 0, xl.stderr
    assert "readwrite" not in json.loads(xl.stdout)["disks"][0]
    p = host.run("create", str(cfg))
    assert p.returncode == 0, p.stderr
    con = host.wait_console("vtpmmgr", "Do_exit called!")
    assert "ERROR[VTPM]: Block device is read only! The manager needs a writable disk." in con
    domid = host.domains()["vtpmmgr"][0]
    mode = host.run("xenstore-read", "/local/domain/0/backend/vbd/%s/768/mode" % domid)
    assert mode.stdout.strip() == "r", mode
    assert hashlib.sha256(img.read_bytes()).hexdigest() == before
    assert host.run("destroy", "vtpmmgr").returncode == 0
