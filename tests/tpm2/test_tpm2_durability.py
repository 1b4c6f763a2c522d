"""`pyxl tpm-serve --tpm2` never acknowledges a command whose state it could
not write.  The answer is libtpms's when its NV store fails: ExecuteCommand
(libtpms src/tpm2/TPMCmd/tpm/src/main/ExecCommand.c) puts the TPM in
failure mode when NvCommit fails, and TpmFailureMode answers TPM_RC_FAILURE
(0x101); the TPM then restarts from the last state written, as libtpms
does at the next _TPM_Init.

Real faults (a full tmpfs as the state directory, a lowered RLIMIT_FSIZE)
and real clients (tpm2-tools through the swtpm TCTI)."""

from __future__ import annotations

import re
import signal

import pytest

from tpm.fixtures import Tmpfs, need_root, set_fsize
from tpm2.fixtures import tool

pytestmark = pytest.mark.peer("tpm2-tools")

INDEX = "0x1500016"
OTHER = "0x1500017"
ROLLED_BACK = re.compile(r"could not save TPM state to .*No space left on device; "
                         r"answered TPM_RC_FAILURE and restarted the TPM from its last saved state")


@pytest.fixture
def disk(tmp_path):
    need_root()
    with Tmpfs(tmp_path / "disk") as t:
        yield t


def nvwrite(port, work, data: bytes):
    (work / "nv.in").write_bytes(data)
    return tool(port, "tpm2_nvwrite", INDEX, "-C", "o", "-i", "nv.in", cwd=work)


def nvread(port, work) -> bytes:
    r = tool(port, "tpm2_nvread", INDEX, "-C", "o", "-s", "32", "-o", "nv.out", cwd=work)
    assert r.rc == 0, r
    return (work / "nv.out").read_bytes()


def nv_indices(port, work) -> list[str]:
    r = tool(port, "tpm2_getcap", "handles-nv-index", cwd=work)
    assert r.rc == 0, r
    return re.findall(r"0x[0-9A-Fa-f]+", r.out)


def define(port, work, index):
    return tool(port, "tpm2_nvdefine", index, "-C", "o", "-s", "32", "-a",
                "ownerread|ownerwrite", cwd=work)


def test_nv_define_and_write_on_a_full_disk_are_refused_and_forgotten(
        disk, start_serve2, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    s = start_serve2(state=disk.path)
    assert define(s.port, work, INDEX).rc == 0
    assert nvwrite(s.port, work, b"A" * 32).rc == 0

    disk.fill()
    r = nvwrite(s.port, work, b"B" * 32)
    assert r.rc != 0 and "0x101" in r.err, r          # TPM_RC_FAILURE
    r = define(s.port, work, OTHER)
    assert r.rc != 0 and "0x101" in r.err, r
    assert ROLLED_BACK.search(s.stderr()), s.stderr()
    # the restart counts itself in the TPM's state (TPM2_Startup), which
    # cannot be written either: even a read fails while the disk is full
    r = tool(s.port, "tpm2_nvread", INDEX, "-C", "o", "-s", "32", cwd=work)
    assert r.rc != 0 and "0x101" in r.err, r

    disk.free()                                        # the same server, in memory:
    assert nvread(s.port, work) == b"A" * 32           # the write went back,
    assert [int(h, 16) for h in nv_indices(s.port, work)] == [int(INDEX, 16)]   # the index
    assert s.stop() == 0

    s = start_serve2(state=disk.path)                  # on disk: the last acknowledged state
    assert nvread(s.port, work) == b"A" * 32
    assert [int(h, 16) for h in nv_indices(s.port, work)] == [int(INDEX, 16)]
    assert nvwrite(s.port, work, b"B" * 32).rc == 0
    assert s.stop() == 0
    s = start_serve2(state=disk.path)
    assert nvread(s.port, work) == b"B" * 32           # a later write persists


def test_failed_final_write_at_sigterm_is_exit_status_1(start_serve2, tmp_path):
    s = start_serve2(state=tmp_path / "state")
    state = tmp_path / "state" / "tpm-state"
    before = state.read_bytes()
    set_fsize(s.proc.pid, len(before) // 2)
    assert s.stop(signal.SIGTERM) == 1
    assert re.search(r"could not save TPM state to .* at shutdown: .*File too large.*"
                     r"TPM2_Shutdown\(SU_STATE\)", s.stderr()), s.stderr()
    assert state.read_bytes() == before
    assert start_serve2(state=tmp_path / "state").stop() == 0
