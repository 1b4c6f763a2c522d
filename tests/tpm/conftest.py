"""Fixtures for the TPM tests: throw-away swtpm and `pyxl tpm-serve` endpoints."""

from __future__ import annotations

import pytest

from peers import need_peer
from tpm.fixtures import PyxlServe, Swtpm


@pytest.fixture
def start_swtpm(tmp_path):
    """start_swtpm(startup=True) -> a running swtpm TPM 1.2 (stopped afterwards)."""
    need_peer("swtpm")
    started = []

    def start(startup: bool = True, name: str = "swtpm") -> Swtpm:
        s = Swtpm(tmp_path / name, startup=startup)
        started.append(s)
        return s.start()

    yield start
    for s in reversed(started):
        s.stop()


@pytest.fixture
def start_serve(tmp_path, pyxl_cmd):
    """start_serve(*args, state=..., unix=...) -> a running `pyxl tpm-serve`
    on a free port with a private state dir (stopped afterwards)."""
    started = []

    def start(*args: str, state=None, unix=None, tcp=True) -> PyxlServe:
        s = PyxlServe(pyxl_cmd, state or tmp_path / ("state%d" % len(started)), *args,
                      unix=unix, tcp=tcp)
        started.append(s)
        return s.start()

    yield start
    for s in reversed(started):
        s.stop()
