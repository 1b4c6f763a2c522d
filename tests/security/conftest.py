"""Hosts for the attack tests: a private one (tmp_path) and one under a
sticky, world-writable directory of /tmp, where a second local user
(nobody, through setpriv) can reach and prepare things."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "toolstack"))

from ts_host import Host, procs_of  # noqa: E402


def _finish(h: Host) -> None:
    h.cleanup()
    left = procs_of(h.root)
    assert not left, "processes left behind: %r" % left


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    h = Host(tmp_path / "root", pyxl_cmd)
    yield h
    _finish(h)


@pytest.fixture
def shared():
    """A directory like /tmp (root's, mode 1777): every user may create
    entries in it, nobody may touch another's."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as a second user")
    d = Path(tempfile.mkdtemp(prefix="pyxl-sec-", dir="/tmp"))
    d.chmod(0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def shared_host(shared, pyxl_cmd):
    """A host whose root lies in `shared`; its owner (root) makes it."""
    hosts = []

    def make(name: str = "host") -> Host:
        h = Host(shared / name, pyxl_cmd)
        hosts.append(h)
        return h
    yield make
    for h in hosts:
        _finish(h)
