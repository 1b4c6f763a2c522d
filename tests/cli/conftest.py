"""tests/cli: the command line against the real xl, and on a private host."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "toolstack"))

from ts_host import Host, procs_of  # noqa: E402


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    """A private simulated host (as tests/toolstack's), left with no process behind."""
    h = Host(tmp_path / "root", pyxl_cmd)
    yield h
    h.cleanup()
    assert not procs_of(h.root), "processes left behind"
