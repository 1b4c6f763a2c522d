"""`pyxl tpm-serve` as a process with the real engine: ready line, state kept
across restarts (clean or killed), TPM_SaveState on SIGTERM, --startup /
--no-startup, Unix socket, the state-dir lock and damaged state."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tpm.client import TPMClient, TPMError
from tpm.fixtures import frame, getcap, rc_of, transact

TPM_INVALID_POSTINIT = 38


def test_ready_line_names_the_chosen_port(start_serve, tmp_path):
    s = start_serve()
    assert s.port > 0
    assert "tcp 127.0.0.1:%d" % s.port in s.ready_line
    assert "state %s" % (tmp_path / "state0") in s.ready_line and "(new TPM)" in s.ready_line
    resp = transact(s.addr, getcap(0x1A))          # TPM_CAP_VERSION_VAL
    assert rc_of(resp) == 0 and b"ETHZ" in resp


def test_state_survives_sigterm_and_sigkill(start_serve, tmp_path):
    state = tmp_path / "st"
    s = start_serve(state=state)
    c = TPMClient(s.addr)
    ek = c.read_pubek().public_numbers()
    assert not c.owned()
    c.take_ownership()
    assert s.stop(signal.SIGKILL) == -signal.SIGKILL      # no chance to save at exit
    s = start_serve(state=state)
    assert "(new TPM)" not in s.ready_line
    c = TPMClient(s.addr)
    assert c.owned(), "ownership answered before the kill was lost"
    with pytest.raises(TPMError):                          # readPubek is off once owned
        c.read_pubek()
    assert s.stop() == 0
    s = start_serve(state=state)
    c = TPMClient(s.addr)
    assert c.owned()
    c.get_capability_owner()                               # the same owner secret works
    assert "stopped after" in s.stderr() and "state saved" in s.stderr()
    del ek


def test_sigterm_saves_state_for_startup_state(start_serve, tmp_path):
    state = tmp_path / "st"
    s = start_serve(state=state)
    c = TPMClient(s.addr)
    zero = c.pcr_read(10)
    extended = c.extend(10, b"\x11" * 20)
    assert extended != zero
    assert s.stop(signal.SIGTERM) == 0                      # TPM_SaveState, then saved
    s = start_serve("--startup", "state", state=state)
    assert TPMClient(s.addr).pcr_read(10) == extended       # resumed
    assert s.stop(signal.SIGINT) == 0
    s = start_serve(state=state)                            # ST_CLEAR: PCRs reset
    assert TPMClient(s.addr).pcr_read(10) == zero


def test_no_startup_leaves_tpm_waiting_for_startup(start_serve):
    s = start_serve("--no-startup")
    assert rc_of(transact(s.addr, getcap(0x1A))) == TPM_INVALID_POSTINIT
    assert rc_of(transact(s.addr, frame(0xC1, 0x99, b"\x00\x01"))) == 0   # TPM_Startup(ST_CLEAR)
    assert rc_of(transact(s.addr, getcap(0x1A))) == 0


def test_unix_socket_only(start_serve, tmp_path):
    path = str(tmp_path / "tpm.sock")
    s = start_serve("--unix-mode", "0660", unix=path, tcp=False)
    assert "unix %s" % path in s.ready_line and s.port == 0
    assert os.stat(path).st_mode & 0o777 == 0o660
    assert TPMClient(path).get_random(16)
    s.stop()
    assert not os.path.exists(path), "socket file left behind"


def test_second_server_on_same_state_is_refused(start_serve, tmp_path, pyxl_cmd):
    state = tmp_path / "st"
    first = start_serve(state=state)
    p = subprocess.run(pyxl_cmd + ["tpm-serve", "--state", str(state), "--port", "0"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "in use by pyxl tpm-serve pid %d" % first.proc.pid in p.stderr
    assert "tcp 127.0.0.1:%d" % first.port in p.stderr
    assert TPMClient(first.addr).get_random(8)          # the first one is unharmed


def test_damaged_state_is_refused_and_kept(start_serve, tmp_path, pyxl_cmd):
    state = tmp_path / "st"
    s = start_serve(state=state)
    s.stop()
    f = state / "tpm-state"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    p = subprocess.run(pyxl_cmd + ["tpm-serve", "--state", str(state), "--port", "0"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "damaged" in p.stderr, p.stderr
    assert f.read_bytes() == bytes(data)


def test_bad_options(pyxl_cmd, tmp_path):
    p = subprocess.run(pyxl_cmd + ["tpm-serve", "--state", str(tmp_path / "s"), "--port", "0",
                                   "--startup", "sideways"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--startup must be one of clear, state, deactivated" in p.stderr
    p = subprocess.run(pyxl_cmd + ["tpm-serve", "--state", str(tmp_path / "s"), "--unix",
                                   str(tmp_path / "sock"), "--unix-mode", "rw"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--unix-mode must be octal" in p.stderr
    p = subprocess.run(pyxl_cmd + ["tpm-serve", "--state", str(tmp_path / "s"), "--port", "0",
                                   "--vendor", "NOPE"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "unknown --vendor NOPE" in p.stderr
    p = subprocess.run(pyxl_cmd + ["tpm-serve", "--state", str(tmp_path / "s"), "--port", "0",
                                   "--emulator", "qemu"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--emulator must be libtpms or berlios" in p.stderr
    p = subprocess.run(pyxl_cmd + ["tpm-serve", "--state", str(tmp_path / "s"), "--port", "0",
                                   "--startup", "state"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "TPM_Startup(state) failed" in p.stderr   # nothing was saved
    assert not (tmp_path / "s" / "tpm-state").exists()


def test_locality_option_reaches_the_engine(start_serve):
    """PCR 17 may be reset only from locality 4 (TPM_NOTLOCAL elsewhere)."""
    reset17 = frame(0xC1, 0xC8, b"\x00\x03\x00\x00\x02")
    s0 = start_serve()
    assert rc_of(transact(s0.addr, reset17)) == 51              # TPM_NOTLOCAL
    s4 = start_serve("--locality", "4")
    assert rc_of(transact(s4.addr, reset17)) == 0
    assert TPMClient(s4.addr).pcr_read(17) == bytes(20)


def test_verbose_logs_every_command(pyxl_cmd, tmp_path):
    from tpm.fixtures import PyxlServe

    s = PyxlServe(pyxl_cmd + ["-v"], tmp_path / "st").start()
    try:
        transact(s.addr, getcap(0x1A))
        transact(s.addr, getcap(0x1A)[:14])           # truncated: answered after the grace
    finally:
        s.stop()
    err = s.stderr()
    assert "command ordinal 0x00000065 (18 bytes) -> rc 0 (29 bytes" in err
    assert "malformed ordinal 0x00000065 (14 bytes) -> rc 25 (10 bytes" in err
