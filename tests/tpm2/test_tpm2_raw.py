"""Raw TPM 2.0 frames to `pyxl tpm-serve --tpm2` and `swtpm socket --tpm2`
over a kept connection, answer by answer: capabilities, PCRs, GetRandom,
a primary key saved and loaded back as a context, and garbage frames (each
answered, the connection kept); then swtpm's control channel on port + 1."""

from __future__ import annotations

import socket
import struct

import pytest

from tpm2 import client as T
from tpm2.client import TPM2Client, ctrl, rc_of

pytestmark = pytest.mark.peer("swtpm")

TPM_RC_INITIALIZE = 0x100
TPM_RC_LOCALITY = 0x907
TPM_RC_COMMAND_SIZE = 0x142


def stream():
    """(label, bytes to send in one write, how to compare the answer)."""
    d20, d32 = bytes(range(20)), bytes(range(32))
    yield "caps algs", T.get_capability(0, 0, 64), "bytes"
    yield "caps commands", T.get_capability(2, 0x11F, 128), "bytes"
    yield "caps pcrs", T.get_capability(5, 0, 1), "bytes"
    yield "caps fixed properties", T.get_capability(6, 0x100, 64), "bytes"
    yield "caps variable properties", T.get_capability(6, 0x200, 64), "bytes"
    yield "pcr read", T.pcr_read("sha1", [16]), "bytes"
    yield "extend sha1", T.pcr_extend(16, "sha1", d20), "bytes"
    yield "extend sha256", T.pcr_extend(16, "sha256", d32), "bytes"
    yield "extend pcr 17 at locality 0", T.pcr_extend(17, "sha256", d32), "bytes"
    yield "pcr read after", T.pcr_read("sha256", [16, 17, 23]), "bytes"
    yield "pcr read sha1 after", T.pcr_read("sha1", [16]), "bytes"
    yield "random 16", T.get_random(16), "size"
    yield "random 100", T.get_random(100), "size"
    yield "create primary", T.create_primary(), "size"
    yield "context save", T.context_save(0x80000000), "size"
    yield "flush", T.flush(0x80000000), "bytes"
    yield "startup again", T.startup(), "bytes"
    # garbage, as a broken or hostile client sends it
    yield "paramSize < 10", struct.pack(">HII", 0x8001, 6, 0x17B) + b"\0\x10", "bytes"
    yield "bad tag", struct.pack(">HII", 0x1234, 12, 0x17B) + b"\0\x10", "bytes"
    yield "TPM 1.2 frame", struct.pack(">HIIII", 0xC1, 18, 0x65, 6, 0), "bytes"
    yield "unknown command", struct.pack(">HII", 0x8001, 10, 0x999), "bytes"
    yield "trailing bytes", T.get_random(8) + b"\0\0\0", "bytes"
    yield "two commands in one write", T.get_random(8) * 2, "bytes"
    yield "all zeros", bytes(64), "bytes"
    yield "still serving", T.pcr_read("sha256", [16]), "bytes"


def answers(addr) -> list[tuple[str, bytes]]:
    c = TPM2Client(addr)
    out = []
    try:
        for label, data, how in stream():
            resp = c.send(data)
            if label == "context save" and rc_of(resp) == 0:
                loaded = c.send(T.context_load(resp))       # and back: the same handle
                out.append(("context load", loaded))
            if how == "size":
                resp = resp[:10] + struct.pack(">I", len(resp))
            out.append((label, resp))
    finally:
        c.close()
    return out


def test_same_frames_same_answers(start_swtpm2, start_serve2):
    sw = start_swtpm2()
    px = start_serve2()
    expected = answers(sw.addr)
    got = answers(px.addr)
    assert [label for label, _ in got] == [label for label, _ in expected]
    for (label, want), (_, have) in zip(expected, got):
        assert have.hex() == want.hex(), label
    by_label = dict(expected)
    assert rc_of(by_label["extend pcr 17 at locality 0"]) == TPM_RC_LOCALITY
    assert rc_of(by_label["startup again"]) == TPM_RC_INITIALIZE
    assert rc_of(by_label["trailing bytes"]) == TPM_RC_COMMAND_SIZE
    assert rc_of(by_label["context load"]) == 0 and rc_of(by_label["create primary"]) == 0


def oversized(addr, n: int) -> bytes:
    """Everything answered to one write of n bytes (a header claiming n) on
    a new connection, until the server has been quiet for a second."""
    data = (struct.pack(">HII", 0x8001, n, 0x17A) + bytes(range(256)) * 40)[:n]
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(data)
        s.settimeout(1.0)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            pass
    return out


@pytest.mark.parametrize("n", [4096, 4100, 4105, 4106, 5000, 8300])
def test_oversized_frames_cut_as_swtpm_cuts_them(start_swtpm2, start_serve2, n):
    """swtpm --tpm2 reads 4105 bytes at most (the buffer and a TCG command
    prefix): what is beyond is the next command."""
    sw, px = start_swtpm2(), start_serve2()
    want = oversized(sw.addr, n)
    assert want and oversized(px.addr, n).hex() == want.hex()


def tcg(command: bytes, locality: int = 0) -> bytes:
    """swtpm's TCG prefix: TPM2_SEND_COMMAND, locality, size."""
    return struct.pack(">IBI", 8, locality, len(command)) + command


def prefixed_session(addr) -> list[tuple[str, bytes]]:
    c = TPM2Client(addr)
    out = []
    for label, data in [
            ("prefixed getcap", tcg(T.get_capability(6, 0x100, 2))),
            ("prefixed extend pcr 17 at locality 3", tcg(T.pcr_extend(17, "sha256", bytes(32)), 3)),
            ("plain extend pcr 17: the locality stayed 3", T.pcr_extend(17, "sha256", bytes(32))),
            ("prefixed back to locality 0", tcg(T.pcr_read("sha256", [17]))),
            ("plain extend pcr 17 at locality 0", T.pcr_extend(17, "sha256", bytes(32))),
            ("prefixed, wrong inner size", tcg(T.get_random(8)[:-1] + b"\0\0")),
            ("prefixed, two bytes behind it", tcg(b"\x80\x01")),
            ("prefixed garbage", tcg(bytes(range(40)))),
            ("plain after all that", T.pcr_read("sha256", [17]))]:
        c.sock = c.sock or c._connect()
        c.sock.sendall(data)
        c.sock.settimeout(1.0)
        got = b""
        try:                                   # the prefixed answer: size, response, ack
            while len(got) < 4 or len(got) < 4 + int.from_bytes(got[:4], "big") + 4:
                chunk = c.sock.recv(65536)
                if not chunk:
                    break
                got += chunk
                if data[:4] != b"\0\0\0\x08" and len(got) >= 10 and \
                        len(got) >= int.from_bytes(got[2:6], "big"):
                    break
        except socket.timeout:
            pass
        out.append((label, got))
    c.close()
    return out


def test_tcg_prefixed_commands_as_swtpm(start_swtpm2, start_serve2):
    sw, px = start_swtpm2(), start_serve2()
    expected = prefixed_session(sw.addr)
    got = prefixed_session(px.addr)
    for (label, want), (_, have) in zip(expected, got):
        assert have.hex() == want.hex(), label
    by_label = dict(expected)
    assert by_label["prefixed getcap"][-4:] == bytes(4)                 # the ack
    assert rc_of(by_label["prefixed extend pcr 17 at locality 3"][4:]) == 0
    assert rc_of(by_label["plain extend pcr 17: the locality stayed 3"]) == 0
    assert rc_of(by_label["plain extend pcr 17 at locality 0"]) == TPM_RC_LOCALITY


def ctrl_session(tpm) -> list[tuple[str, bytes]]:
    """Control messages, each checked through the command port too."""
    c = TPM2Client(tpm.addr)
    out = [("locality 5", ctrl(tpm.port, struct.pack(">IB", 5, 5))),
           ("locality 3", ctrl(tpm.port, struct.pack(">IB", 5, 3))),
           ("extend pcr 17 at locality 3", c.send(T.pcr_extend(17, "sha256", bytes(32)))),
           ("locality 0", ctrl(tpm.port, struct.pack(">IB", 5, 0))),
           ("pcr 17", c.send(T.pcr_read("sha256", [17]))),
           ("unknown control command", ctrl(tpm.port, struct.pack(">I", 0x99))),
           ("init with a 5-byte body", ctrl(tpm.port, struct.pack(">IIB", 2, 0, 0))),
           # incomplete: no answer, the connection closed after swtpm's 0.5 s
           ("init with a 3-byte body", ctrl(tpm.port, struct.pack(">I3s", 2, bytes(3)))),
           ("2 bytes", ctrl(tpm.port, b"\0\0")),
           ("extend pcr 16", c.send(T.pcr_extend(16, "sha256", bytes(32)))),
           ("init", ctrl(tpm.port, struct.pack(">II", 2, 0))),
           ("command before startup", c.send(T.get_random(8))),
           ("startup", c.send(T.startup())),
           ("pcr 16 after the power cycle", c.send(T.pcr_read("sha256", [16])))]
    c.close()
    return out


def test_control_channel_as_swtpm(start_swtpm2, start_serve2):
    sw = start_swtpm2()
    px = start_serve2()
    expected = ctrl_session(sw)
    got = ctrl_session(px)
    for (label, want), (_, have) in zip(expected, got):
        assert have.hex() == want.hex(), label
    by_label = dict(expected)
    assert rc_of(by_label["command before startup"]) == TPM_RC_INITIALIZE
    assert by_label["2 bytes"] == by_label["init with a 3-byte body"] == b""
    assert by_label["pcr 16 after the power cycle"].endswith(bytes(32))
    # capabilities: pyxl offers a subset of swtpm's, and what the TCTI uses
    (caps_sw,) = struct.unpack(">Q", ctrl(sw.port, struct.pack(">I", 1)))
    (caps_px,) = struct.unpack(">Q", ctrl(px.port, struct.pack(">I", 1)))
    assert caps_px & ~caps_sw == 0 and caps_px & 0b1011 == 0b1011   # INIT SHUTDOWN SET_LOCALITY
    # CMD_SHUTDOWN: answered, then both stop (pyxl: state saved, exit 0)
    assert ctrl(px.port, struct.pack(">I", 3)) == ctrl(sw.port, struct.pack(">I", 3)) == bytes(4)
    assert px.proc.wait(30) == 0 and sw.proc.wait(30) == 0
    assert "state saved" in px.stderr()
