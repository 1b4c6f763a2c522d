"""`pyxl tpm-serve` never acknowledges a command whose state it could not
write: the client gets the answer libtpms gives when its NV write callback
fails -- TPM_FAIL, TPM_PermanentAll_NVStore in libtpms src/tpm12/
tpm_permanent.c -- the TPM goes back to the last state written, and the
server keeps serving.

The faults are real: the state directory is a small tmpfs that is filled up
(root only), or the server's RLIMIT_FSIZE is lowered under it (prlimit).
The clients are the real ones: TrouSerS tcsd and tpm-tools, as in
test_acceptance_tools.py.
"""

from __future__ import annotations

import re
import signal
import struct
from pathlib import Path

import pytest

from peers import need_peer
from pyxl.tpm.serve import StateDir, TPMServer
from tpm.fixtures import (PyxlServe, Tcsd, Tmpfs, frame, getcap, need_root, rc_of,
                          set_fsize, transact)

NV_INDEX = "0x00011101"
TPM_FAIL_CODE = "code=0009"        # how tpm-tools print the TPM's TPM_FAIL
ROLLED_BACK = re.compile(r"could not save TPM state to .*; answered TPM_FAIL and "
                         r"restarted the TPM from its last saved state")


@pytest.fixture
def disk(tmp_path):
    need_root()
    with Tmpfs(tmp_path / "disk") as t:
        yield t


def owner_installed(addr) -> bool:
    """TPM_GetCapability(TPM_CAP_PROPERTY, TPM_CAP_PROP_OWNER): a BOOL."""
    resp = transact(addr, getcap(0x05, struct.pack(">I", 0x111)))
    assert rc_of(resp) == 0 and struct.unpack(">I", resp[10:14])[0] == 1, resp.hex()
    return resp[14] != 0


class Host:
    """tpm-serve on DIR and a tcsd in front of it; restartable."""

    def __init__(self, pyxl_cmd, state_dir: Path, work: Path):
        self.pyxl_cmd = pyxl_cmd
        self.state_dir = state_dir
        self.work = work
        self.serve: PyxlServe | None = None
        self.tcsd: Tcsd | None = None
        self.starts = 0

    def start(self) -> "Host":
        self.serve = PyxlServe(self.pyxl_cmd, self.state_dir).start()
        self.starts += 1
        self.tcsd = Tcsd(self.work / ("tcsd%d" % self.starts), "127.0.0.1",
                         self.serve.port).start()
        return self

    def stop(self) -> int | None:
        self.tcsd.stop()
        return self.serve.stop()

    def tool(self, *argv: str):
        return self.tcsd.tool(*argv)

    def nvread(self) -> bytes:
        out = self.work / "nv.out"
        r = self.tool("tpm_nvread", "-i", NV_INDEX, "-s", "32", "-z", "-f", str(out))
        assert r.rc == 0, str(r)
        return out.read_bytes()

    def nvwrite(self, data: bytes):
        src = self.work / "nv.in"
        src.write_bytes(data)
        return self.tool("tpm_nvwrite", "-i", NV_INDEX, "-z", "-f", str(src))


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    need_peer("tcsd")
    need_peer("tpm-tools")
    need_root()
    hosts = []

    def make(state_dir: Path) -> Host:
        h = Host(pyxl_cmd, state_dir, tmp_path)
        hosts.append(h)
        return h.start()
    yield make
    for h in hosts:
        if h.serve.proc.poll() is None:
            h.stop()


def test_takeownership_on_a_full_disk_is_refused_and_forgotten(disk, host):
    h = host(disk.path)                       # the state directory is the tmpfs
    disk.fill()
    r = h.tool("tpm_takeownership", "-y", "-z")
    assert r.rc != 0 and TPM_FAIL_CODE in r.err, str(r)
    assert len(ROLLED_BACK.findall(h.serve.stderr())) == 1, h.serve.stderr()
    assert not owner_installed(h.serve.addr)  # the TPM in memory went back too
    r = h.tool("tpm_version")                 # and it still serves
    assert r.rc == 0, str(r)

    disk.free()
    assert h.stop() == 0
    h.start()
    assert not owner_installed(h.serve.addr)  # what is on disk: the last acknowledged state
    r = h.tool("tpm_takeownership", "-y", "-z")
    assert r.rc == 0, str(r)
    assert h.stop() == 0
    h.start()
    assert owner_installed(h.serve.addr)      # and a later command persists


def test_nv_write_beyond_rlimit_fsize_is_refused_and_forgotten(tmp_path, host):
    """The server's RLIMIT_FSIZE lowered below its state file's size: the
    kernel refuses the rewrite (EFBIG)."""
    h = host(tmp_path / "state")
    r = h.tool("tpm_takeownership", "-y", "-z")
    assert r.rc == 0, str(r)
    r = h.tool("tpm_nvdefine", "-i", NV_INDEX, "-s", "32", "-p", "OWNERWRITE|OWNERREAD",
               "-y", "-z")
    assert r.rc == 0, str(r)
    r = h.nvwrite(b"A" * 32)
    assert r.rc == 0, str(r)

    size = (tmp_path / "state" / "tpm-state").stat().st_size
    set_fsize(h.serve.proc.pid, size // 2)
    r = h.nvwrite(b"B" * 32)
    assert r.rc != 0 and TPM_FAIL_CODE in r.err, str(r)
    assert len(ROLLED_BACK.findall(h.serve.stderr())) == 1, h.serve.stderr()
    assert "File too large" in h.serve.stderr()
    assert h.nvread() == b"A" * 32           # the TPM in memory went back

    set_fsize(h.serve.proc.pid, None)
    assert h.stop() == 0
    h.start()
    assert h.nvread() == b"A" * 32           # the last acknowledged state
    r = h.nvwrite(b"B" * 32)
    assert r.rc == 0, str(r)
    assert h.stop() == 0
    h.start()
    assert h.nvread() == b"B" * 32           # a later write persists


def test_failed_final_write_at_sigterm_is_exit_status_1(tmp_path, pyxl_cmd):
    """TPM_SaveState's state cannot be written: exit 1 and say so; the
    state file keeps the last answered command's state (RLIMIT_FSIZE below
    its size: the kernel refuses the write with EFBIG)."""
    serve = PyxlServe(pyxl_cmd, tmp_path / "state").start()
    state = tmp_path / "state" / "tpm-state"
    before = state.read_bytes()
    set_fsize(serve.proc.pid, len(before) // 2)
    assert serve.stop(signal.SIGTERM) == 1
    err = serve.stderr()
    assert re.search(r"could not save TPM state to .* at shutdown: .*File too large.*"
                     r"TPM_SaveState", err), err
    assert state.read_bytes() == before
    # and the state left is a good one
    assert PyxlServe(pyxl_cmd, tmp_path / "state").start().stop() == 0


class Stub:
    """An engine whose every command changes its state (as TPM_TakeOwnership)."""

    persistent_changed = False

    def execute(self, request: bytes, locality: int = 0) -> bytes:
        self.persistent_changed = True
        return struct.pack(">HII", 0xC4, 10, 0)

    def dump(self) -> bytes:
        return b"state"


def test_without_a_state_to_return_to_the_server_gives_up(disk):
    """Nothing written yet to roll back to: TPM_FAIL, one line, and the
    loop is told to stop (run() then exits with status 1)."""
    state = StateDir(str(disk.path / "s"))
    state.lock()
    logs = []
    srv = TPMServer(Stub(), state, [], log=logs.append)
    disk.fill()
    try:
        assert srv.execute(frame(0xC1, 0x0D)) == struct.pack(">HII", 0xC4, 10, 0x09)
        assert srv.fatal and srv._stop
        assert logs == [srv.fatal] and "No space left on device" in srv.fatal \
            and "stopping" in srv.fatal
        assert not srv.save_state_and_stop()
    finally:
        state.unlock()
        disk.free()
