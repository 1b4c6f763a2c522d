"""`pyxl tpm-serve --tpm2` keeps its TPM: NV contents and the owner
hierarchy's seed (the same primary key re-derived) survive a restart, a
SIGKILL included; TPM2_Shutdown(SU_STATE) at SIGTERM lets `--startup state`
resume the PCRs; a damaged or foreign state file is refused with a clear
error and left as it was, never replaced by a new TPM."""

from __future__ import annotations

import hashlib
import signal
import subprocess

import pytest

from tpm2 import client as T
from tpm2.client import TPM2Client

NV_INDEX = 0x01500020
STATE_MAGIC = b"pyxl-tpm-state\n"        # pyxl.tpm.serve.StateDir's file: magic, SHA-256, blob


def primary_public(c: TPM2Client) -> bytes:
    resp = c.ok(T.create_primary())
    c.ok(T.flush(T.handle_of(resp)))
    return T.out_public(resp)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_nv_and_owner_seed_survive_a_restart(start_serve2, tmp_path, sig):
    state = tmp_path / "st"
    s = start_serve2(state=state)
    assert "(new TPM)" in s.ready_line
    c = TPM2Client(s.addr)
    public = primary_public(c)
    c.ok(T.nv_define(NV_INDEX, 16))
    c.ok(T.nv_write(NV_INDEX, b"kept across runs"))
    c.close()
    assert s.stop(sig) == (0 if sig == signal.SIGTERM else -sig)
    s = start_serve2(state=state)
    assert "(new TPM)" not in s.ready_line
    c = TPM2Client(s.addr)
    assert primary_public(c) == public, "the owner seed changed: a new TPM was made"
    assert T.nv_data(c.ok(T.nv_read(NV_INDEX, 16))) == b"kept across runs"
    c.close()
    other = TPM2Client(start_serve2(state=tmp_path / "other").addr)
    assert primary_public(other) != public          # another TPM, another seed
    other.close()


def test_sigterm_saves_state_for_startup_state(start_serve2, tmp_path):
    state = tmp_path / "st"
    s = start_serve2(state=state)
    c = TPM2Client(s.addr)
    # PCR 10: PCRs 0-15 are the ones TPM2_Shutdown(SU_STATE) saves (TPM_PT_PCR_SAVE)
    c.ok(T.pcr_extend(10, "sha256", bytes(range(32))))
    extended = c.ok(T.pcr_read("sha256", [10]))[-32:]        # the digest (not the counter)
    c.close()
    assert s.stop(signal.SIGTERM) == 0
    s = start_serve2("--startup", "state", state=state)
    c = TPM2Client(s.addr)
    assert c.ok(T.pcr_read("sha256", [10]))[-32:] == extended != bytes(32)     # resumed
    c.close()
    assert s.stop(signal.SIGTERM) == 0
    s = start_serve2(state=state)                                # --startup clear: reset
    c = TPM2Client(s.addr)
    assert c.ok(T.pcr_read("sha256", [10])).endswith(bytes(32))
    c.close()


def serve_once(pyxl_cmd, state, *args) -> subprocess.CompletedProcess:
    return subprocess.run(pyxl_cmd + ["tpm-serve", "--tpm2", "--state", str(state),
                                      "--port", "0", *args],
                          capture_output=True, text=True, timeout=60)


def rewrap(blob: bytes) -> bytes:
    """blob in a state file with a correct outer checksum."""
    return STATE_MAGIC + hashlib.sha256(blob).digest() + blob


def damaged_states(good: bytes):
    """(name, file contents, what the error must say)."""
    n = len(STATE_MAGIC) + 32
    blob = good[n:]
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0x01
    yield "a flipped bit", bytes(flipped), "damaged"
    yield "truncated", good[:len(good) - 100], "damaged"
    inner = bytearray(blob)
    inner[40] ^= 0xFF                                    # the engine blob's own checksum
    yield "engine blob damaged", rewrap(bytes(inner)), "checksum mismatch"
    from pyxl.tpm.tpm2.engine import pack_state, unpack_state
    sections = unpack_state(blob)
    perm = bytearray(sections["permall"])
    perm[20:60] = bytes(40)                              # consistent checksums, bad content
    yield "libtpms state damaged", rewrap(pack_state({"permall": bytes(perm)})), "rejects"
    yield "a TPM 1.2 state", rewrap(b"PYXLTPM12\x00" + bytes(100)), "TPM 1.2"


def test_damaged_state_is_refused_and_left_untouched(start_serve2, pyxl_cmd, tmp_path):
    state = tmp_path / "st"
    s = start_serve2(state=state)
    c = TPM2Client(s.addr)
    c.ok(T.nv_define(NV_INDEX, 8))
    c.ok(T.nv_write(NV_INDEX, b"8 bytes!"))
    c.close()
    assert s.stop() == 0
    good = (state / "tpm-state").read_bytes()
    for name, contents, says in damaged_states(good):
        (state / "tpm-state").write_bytes(contents)
        p = serve_once(pyxl_cmd, state)
        assert p.returncode == 1, name
        assert says in p.stderr and "left untouched" in p.stderr, (name, p.stderr)
        assert "ready" not in p.stdout, name
        assert (state / "tpm-state").read_bytes() == contents, name
    (state / "tpm-state").write_bytes(good)              # and the good one still serves
    s = start_serve2(state=state)
    assert "(new TPM)" not in s.ready_line
    assert T.nv_data(TPM2Client(s.addr).ok(T.nv_read(NV_INDEX, 8))) == b"8 bytes!"


def test_a_tpm2_state_is_not_served_as_a_tpm12(start_serve2, pyxl_cmd, tmp_path):
    state = tmp_path / "st"
    assert start_serve2(state=state).stop() == 0
    before = (state / "tpm-state").read_bytes()
    p = subprocess.run(pyxl_cmd + ["tpm-serve", "--state", str(state), "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "left untouched" in p.stderr
    assert (state / "tpm-state").read_bytes() == before


@pytest.mark.parametrize("args, says", [
    (["--startup", "deactivated"], "TPM 2.0"),
    (["--vendor", "IBM"], "--tpm2"),
    (["--emulator", "libtpms"], "--tpm2"),
])
def test_tpm12_only_options_are_usage_errors(pyxl_cmd, tmp_path, args, says):
    p = serve_once(pyxl_cmd, tmp_path / "st", *args)
    assert p.returncode == 2 and says in p.stderr
    assert not (tmp_path / "st").exists()
