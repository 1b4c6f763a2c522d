"""The host platform around the stub domains: the board's TPM state is never
silently replaced, and the stub-domain kernels need not be installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from wt_host import Host


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


def test_unreadable_hardware_tpm_state_stops_the_daemon(host):
    state = Path(host.root, "var/lib/pyxl/tpm/tpm12.state")
    state.parent.mkdir(parents=True)
    state.write_bytes(b"not a TPM\n")
    p = host.run("list")
    assert p.returncode != 0 and "pyxld.log" in p.stderr
    log = Path(host.root, "var/log/pyxl/pyxld.log").read_text()
    assert "hardware TPM state %s is unreadable" % state in log
    assert "refusing to start" in log
    assert state.read_bytes() == b"not a TPM\n"          # the old chip is kept, not replaced


def test_first_boot_manufactures_the_tpm_and_stub_kernels_are_embedded(host):
    assert host.run("list").returncode == 0
    state = Path(host.root, "var/lib/pyxl/tpm/tpm12.state")
    blob = state.read_bytes()
    assert len(blob) > 256
    host.stop()
    assert host.run("list").returncode == 0              # a restarted host keeps its chip
    assert state.read_bytes() == blob
    # no /usr/lib/xen/boot here: the manager boots anyway (pyxl carries it) ...
    img = host.dir / "mgr.img"
    img.write_bytes(bytes(16 << 20))
    p = host.run("create", "-q", str(Path(__file__).parents[2] / "examples/vtpmmgr-stubdom.cfg"),
                 'disk=["file:%s,hda,w"]' % img)
    assert p.returncode == 0, p.stderr
    # ... while any other missing kernel stays xl's error
    cfg = host.dir / "g.cfg"
    cfg.write_text('name="g"\nkernel="%s/no-such-vmlinuz"\nmemory=32\n' % host.dir)
    p = host.run("create", "-q", str(cfg))
    assert p.returncode == 3 and "failed to open file" in p.stderr
