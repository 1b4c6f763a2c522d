"""The tpm-serve transport on its own: framing, connections, the state dir.

The server runs in-process with a recording engine, so the tests can assert
exactly which bytes reached the engine; the real engine behind the same
server is exercised in test_serve.py, test_acceptance_tools.py and
test_diff_swtpm.py.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from pyxl.tpm import serve
from pyxl.tpm.serve import Framer, ServeError, StateDir, TPMServer, error_response
from tpm.fixtures import frame, read_response

BAD_PARAM_SIZE = error_response(0x19)
GETCAP = frame(0xC1, 0x65, struct.pack(">III", 5, 4, 0x101))


class RecordingEngine:
    """Answers every command with TPM_SUCCESS + sha1(command) (+ padding the
    command may ask for), records the commands, and counts as a persistent
    change every command whose ordinal is 0x14 (as if Extend were persistent)."""

    def __init__(self):
        self.requests: list[bytes] = []
        self.persistent_changed = False
        self.generation = 0

    def execute(self, request: bytes, locality: int = 0) -> bytes:
        self.requests.append(request)
        ordinal = struct.unpack(">I", request[6:10])[0]
        if ordinal == 0x14:
            self.generation += 1
            self.persistent_changed = True
        pad = b""
        if ordinal == 0x46 and len(request) >= 14:        # "GetRandom": padding
            pad = b"\xA5" * struct.unpack(">I", request[10:14])[0]
        body = hashlib.sha1(request).digest() + pad
        return struct.pack(">HII", 0xC4, 10 + len(body), 0) + body

    def dump(self) -> bytes:
        self.persistent_changed = False
        return b"generation %d" % self.generation


def ok_response(request: bytes) -> bytes:
    body = hashlib.sha1(request).digest()
    return struct.pack(">HII", 0xC4, 30, 0) + body


@pytest.fixture
def server(tmp_path):
    """An in-process TPMServer on a free TCP port and a Unix socket."""
    engine = RecordingEngine()
    state = StateDir(str(tmp_path / "state"))
    state.lock()
    listeners = [serve.open_tcp("127.0.0.1", 0), serve.open_unix(str(tmp_path / "tpm.sock"))]
    srv = TPMServer(engine, state, listeners, log=lambda m: None)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.addr = listeners[0].sock.getsockname()
    srv.unix_path = str(tmp_path / "tpm.sock")
    yield srv
    srv.stop()
    t.join(5)
    state.unlock()
    assert not t.is_alive()


def connect(srv):
    return socket.create_connection(srv.addr, timeout=5)


def ask(sock, data, timeout=5.0):
    sock.sendall(data)
    return read_response(sock, timeout)


# ---------------------------------------------------------------- Framer

def test_framer_exact_frame_is_a_command():
    f = Framer()
    f.feed(GETCAP[:7], 0.0)
    assert f.take(0.0) is None and f.deadline is None      # no header yet: no hurry
    f.feed(GETCAP[7:12], 0.1)
    assert f.take(0.1) is None and f.deadline == pytest.approx(0.1 + serve.FRAME_GRACE)
    f.feed(GETCAP[12:], 0.1)
    assert f.take(0.1) == ("command", GETCAP)
    assert f.take(0.1) is None and f.deadline is None


def test_framer_short_frame_waits_then_is_malformed():
    f = Framer(grace=0.3)
    f.feed(GETCAP[:14], 1.0)
    assert f.take(1.2) is None
    assert f.take(1.31) == ("malformed", GETCAP[:14])


def test_framer_under_ten_bytes_waits_forever():
    f = Framer()
    f.feed(GETCAP[:6], 0.0)
    assert f.take(100.0) is None and f.deadline is None
    assert f.take(100.0, eof=True) is None


def test_framer_eof_answers_a_partial_frame_at_once():
    f = Framer()
    f.feed(GETCAP[:14], 0.0)
    assert f.take(0.0, eof=True) == ("malformed", GETCAP[:14])


def test_framer_excess_bytes_in_one_batch_are_one_malformed_command():
    f = Framer()
    f.feed(GETCAP + GETCAP, 0.0)
    assert f.take(0.0) == ("malformed", GETCAP + GETCAP)
    assert f.take(0.0) is None


def test_framer_small_paramsize_is_malformed():
    bad = GETCAP[:2] + struct.pack(">I", 6) + GETCAP[6:]
    f = Framer()
    f.feed(bad, 0.0)
    assert f.take(0.0) == ("malformed", bad)


def test_framer_oversized_frame_cut_at_input_buffer():
    big = frame(0xC1, 0x46, struct.pack(">I", 4) + bytes(8192 - 14))
    f = Framer()
    f.feed(big, 0.0)
    assert f.take(0.0) == ("malformed", big[:4096])
    # the rest is framed afresh: zero bytes, paramSize 0 -> malformed
    assert f.take(0.0) == ("malformed", big[4096:])


# ---------------------------------------------------------------- server

def test_one_connection_per_command_and_response_in_one_read(server):
    for i in range(5):
        with connect(server) as s:
            cmd = frame(0xC1, 0x65, struct.pack(">III", 5, 4, 0x100 + i))
            resp, calls = ask(s, cmd)
            assert resp == ok_response(cmd) and calls == 1
    assert len(server.engine.requests) == 5


def test_large_response_in_one_read(server):
    cmd = frame(0xC1, 0x46, struct.pack(">I", 2000))   # ~2 KiB answer
    with connect(server) as s:
        resp, calls = ask(s, cmd)
    assert len(resp) == 30 + 2000 and calls == 1


def test_many_commands_on_one_connection(server):
    with connect(server) as s:
        for i in range(20):
            cmd = frame(0xC1, 0x15, struct.pack(">I", i))
            assert ask(s, cmd)[0] == ok_response(cmd)


def test_idle_and_empty_connections_do_not_block_others(server):
    idle = connect(server)
    idle.sendall(GETCAP)
    assert read_response(idle, 5)[0] == ok_response(GETCAP)   # then stays open, idle
    empty = connect(server)                                   # sends nothing at all
    half = connect(server)
    half.sendall(GETCAP[:6])                                  # a header, never completed
    with connect(server) as s:
        assert ask(s, GETCAP)[0] == ok_response(GETCAP)
    empty.close()
    half.close()
    assert ask(idle, GETCAP)[0] == ok_response(GETCAP)
    idle.close()


def test_concurrent_clients_each_get_their_own_answers(server):
    errors = []

    def client(n):
        try:
            with connect(server) as s:
                for i in range(25):
                    cmd = frame(0xC1, 0x15, struct.pack(">II", n, i))
                    if ask(s, cmd)[0] != ok_response(cmd):
                        errors.append((n, i))
        except OSError as e:
            errors.append(e)

    ts = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert errors == [] and len(server.engine.requests) == 200


def test_split_write_is_reassembled(server):
    with connect(server) as s:
        s.sendall(GETCAP[:4])
        time.sleep(0.05)
        s.sendall(GETCAP[4:12])
        time.sleep(0.05)
        s.sendall(GETCAP[12:])
        assert read_response(s, 5)[0] == ok_response(GETCAP)
    assert server.engine.requests == [GETCAP]


def test_truncated_body_gets_bad_param_size_and_connection_stays(server):
    with connect(server) as s:
        t0 = time.monotonic()
        resp, calls = ask(s, GETCAP[:14])
        assert resp == BAD_PARAM_SIZE and calls == 1
        assert time.monotonic() - t0 < serve.FRAME_GRACE + 1.0
        assert ask(s, GETCAP)[0] == ok_response(GETCAP)
    assert server.engine.requests == [GETCAP]


@pytest.mark.parametrize("data", [
    GETCAP[:2] + struct.pack(">I", len(GETCAP) - 4) + GETCAP[6:],   # paramSize too small
    GETCAP[:2] + struct.pack(">I", 10) + GETCAP[6:],                 # paramSize 10 + params
    GETCAP[:2] + struct.pack(">I", 0) + GETCAP[6:],                  # paramSize 0
    GETCAP + GETCAP,                                                 # two in one write
    struct.pack(">HII", 0xC1, 1 << 20, 0x46) + bytes(4096 - 10),     # 1 MiB claimed
], ids=["smaller", "ten", "zero", "two-in-one", "1MiB"])
def test_malformed_frames_like_libtpms(server, data):
    with connect(server) as s:
        resp, calls = ask(s, data)
        assert resp == BAD_PARAM_SIZE and calls == 1
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(100)                       # exactly one answer, connection open
        assert ask(s, GETCAP)[0] == ok_response(GETCAP)
    assert server.engine.requests == [GETCAP]


def test_8192_byte_frame_gets_two_answers_like_swtpm(server):
    with connect(server) as s:
        s.sendall(frame(0xC1, 0x46, struct.pack(">I", 4) + bytes(8192 - 14)))
        got = b""
        s.settimeout(2)
        while len(got) < 20:
            got += s.recv(100)
        assert got == BAD_PARAM_SIZE * 2


def test_short_connection_closed_without_answer(server):
    s = connect(server)
    s.sendall(GETCAP[:6])
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    assert s.recv(100) == b""
    s.close()


def test_unix_socket(server):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(server.unix_path)
    assert ask(s, GETCAP)[0] == ok_response(GETCAP)
    s.close()


def test_state_written_before_the_answer(server):
    cmd = frame(0xC1, 0x14, struct.pack(">I", 1) + bytes(20))
    state = server.state
    for gen in (1, 2):
        with connect(server) as s:
            assert ask(s, cmd)[0] == ok_response(cmd)
        # the answer arrived, so the new state must already be on disk
        assert state.read() == b"generation %d" % gen
    with connect(server) as s:                  # no persistent change: no write
        mtime = os.stat(state.state_path).st_mtime_ns
        ask(s, GETCAP)
        assert os.stat(state.state_path).st_mtime_ns == mtime


# ---------------------------------------------------------------- state dir

def test_state_file_roundtrip_and_no_temp_left(tmp_path):
    d = StateDir(str(tmp_path / "s"))
    d.lock()
    assert d.read() is None
    d.write(b"one")
    d.write(b"two" * 1000)
    assert d.read() == b"two" * 1000
    assert sorted(os.listdir(d.path)) == ["lock", "tpm-state"]
    d.unlock()


def test_damaged_state_file_is_refused_and_kept(tmp_path):
    d = StateDir(str(tmp_path / "s"))
    d.lock()
    d.write(b"blob")
    data = open(d.state_path, "rb").read()
    open(d.state_path, "wb").write(data[:-1] + b"X")
    with pytest.raises(ServeError, match="checksum"):
        d.read()
    open(d.state_path, "wb").write(b"garbage")
    with pytest.raises(ServeError, match="not a pyxl TPM state file"):
        d.read()
    assert open(d.state_path, "rb").read() == b"garbage"
    d.unlock()


def test_second_server_refused_naming_the_holder(tmp_path):
    a = StateDir(str(tmp_path / "s"))
    a.lock()
    a.set_holder("pyxl tpm-serve pid 4242 (tcp 127.0.0.1:1)")
    b = StateDir(str(tmp_path / "s"))
    with pytest.raises(ServeError, match=r"in use by pyxl tpm-serve pid 4242 \(tcp 127.0.0.1:1\)"):
        b.lock()
    a.unlock()
    b.lock()          # free again once the holder is gone
    b.unlock()


KILL_SCRIPT = r"""
import os, sys
from pyxl.tpm.serve import StateDir
d = StateDir(sys.argv[1]); d.lock()
print("locked", flush=True)
n = 0
while True:
    n += 1
    d.write((b"%08d" % n) * (1 + n % 5000))
"""


def test_kill_during_writes_leaves_old_or_new_state(tmp_path):
    """SIGKILL a writer at random moments: the file always reads back whole."""
    sd = str(tmp_path / "s")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    seen = set()
    for delay in (0.07, 0.16, 0.29):
        p = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, sd], stdout=subprocess.PIPE,
                             env=env)
        assert p.stdout.readline() == b"locked\n"
        time.sleep(delay)
        p.kill()
        p.wait()
        p.stdout.close()
        d = StateDir(sd)
        d.lock()                  # the dead writer's lock is gone
        blob = d.read()
        d.remove_stale_temps()
        d.unlock()
        if blob is not None:
            n = int(blob[:8])
            assert blob == (b"%08d" % n) * (1 + n % 5000)
            seen.add(n)
    assert seen, "the writer never completed a write"


def test_engine_exception_becomes_tpm_fail(tmp_path):
    class Broken(RecordingEngine):
        def execute(self, request, locality=0):
            raise RuntimeError("bug")

    logs = []
    srv = TPMServer(Broken(), None, [], log=logs.append)
    assert srv.execute(GETCAP) == error_response(0x09)
    assert "engine raised" in logs[0] and "RuntimeError: bug" in logs[0]


# ---------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

valid_frames = st.builds(
    lambda tag, ordinal, params: frame(tag, ordinal, params),
    st.sampled_from([0xC1, 0xC2, 0xC3]), st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=300))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(valid_frames, st.sets(st.integers(1, 320), max_size=5)),
                min_size=1, max_size=6))
def test_framer_reassembles_any_split_of_valid_frames(frames):
    """However TCP splits a command, the engine gets exactly the command."""
    f = Framer()
    got = []
    for data, cuts in frames:
        points = sorted(c for c in cuts if c < len(data))
        for lo, hi in zip([0] + points, points + [len(data)]):
            f.feed(data[lo:hi], 0.0)
            item = f.take(0.0)
            if item:
                got.append(item)
    assert got == [("command", d) for d, _ in frames]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=5000), max_size=6))
def test_framer_never_loses_or_invents_bytes(chunks):
    """Arbitrary bytes: every byte ends up in exactly one command or malformed
    item (in order) or is still buffered, and nothing is bigger than 4096."""
    f = Framer()
    out = []
    for c in chunks:
        f.feed(c, 0.0)
        while (item := f.take(0.0)) is not None:
            out.append(item)
    while (item := f.take(10.0, eof=True)) is not None:
        out.append(item)
    assert b"".join(d for _, d in out) + bytes(f.buf) == b"".join(chunks)
    assert len(f.buf) < 10
    for kind, d in out:
        assert 0 < len(d) <= 4096
        if kind == "command":
            assert int.from_bytes(d[2:6], "big") == len(d)


def test_too_many_connections_closes_the_longest_idle(server):
    idle = [connect(server) for _ in range(serve.MAX_CONNECTIONS + 6)]
    with connect(server) as s:                      # still served
        assert ask(s, GETCAP)[0] == ok_response(GETCAP)
    idle[0].settimeout(2)
    assert idle[0].recv(10) == b""                  # the oldest were closed
    idle[-1].sendall(GETCAP)                        # the newest still work
    assert read_response(idle[-1], 5)[0] == ok_response(GETCAP)
    for s in idle:
        s.close()
