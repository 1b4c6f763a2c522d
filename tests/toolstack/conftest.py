"""A private simulated host per test: its own PYXL_ROOT, its own daemon,
and a cleanup that leaves no daemon or domain process behind."""

from __future__ import annotations

import pytest

from ts_host import Host, procs_of


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    h = Host(tmp_path / "root", pyxl_cmd)
    yield h
    h.cleanup()
    left = procs_of(h.root)
    assert not left, "processes left behind: %r" % left
