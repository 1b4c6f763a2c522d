"""Fixtures for the TPM 2.0 tests: throw-away `swtpm socket --tpm2` and
`pyxl tpm-serve --tpm2` endpoints."""

from __future__ import annotations

import pytest

from peers import need_peer
from tpm.fixtures import PyxlServe
from tpm2.fixtures import Swtpm2


@pytest.fixture
def start_swtpm2(tmp_path):
    """start_swtpm2(startup=True) -> a running swtpm TPM 2.0 (stopped afterwards)."""
    need_peer("swtpm")
    started = []

    def start(startup: bool = True, name: str = "swtpm2", unix: str | None = None) -> Swtpm2:
        s = Swtpm2(tmp_path / name, startup=startup, unix=unix)
        started.append(s)
        return s.start()

    yield start
    for s in reversed(started):
        s.stop()


@pytest.fixture
def start_serve2(tmp_path, pyxl_cmd):
    """start_serve2(*args, state=...) -> a running `pyxl tpm-serve --tpm2` on a
    free port pair with a private state dir (stopped afterwards)."""
    started = []

    def start(*args: str, state=None, unix=None) -> PyxlServe:
        s = PyxlServe(pyxl_cmd, state or tmp_path / ("state%d" % len(started)), "--tpm2", *args,
                      unix=unix, tcp=unix is None)
        started.append(s)
        return s.start()

    yield start
    for s in reversed(started):
        s.stop()
