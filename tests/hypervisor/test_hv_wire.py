"""The domain <-> hypervisor wire: frames, descriptors, both socket types,
malformed input."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from pyxl.hypervisor import wire


def test_frame_round_trip_keeps_binary_args():
    f = wire.Frame(wire.XS_WRITE, ["/a", b"\x00\xff", 7], req_id=3, tx_id=9)
    data = f.encode()
    assert struct.unpack(">I", data[:4])[0] == len(data) - 4        # length prefix
    g = wire.Frame.decode(data[4:])
    assert (g.op, g.req_id, g.tx_id, g.args) == (wire.XS_WRITE, 3, 9, [b"/a", b"\x00\xff", b"7"])


@pytest.mark.parametrize("body", [b"", b"\x00" * 5, wire.Frame(1, ["abc"]).encode()[4:-1],
                                  wire.Frame(1, []).encode()[4:] + b"\x00\x00",
                                  wire.Frame(1, [], fds=[0]).encode()[4:]])   # fd announced, none came
def test_malformed_frames_raise_wire_error(body):
    with pytest.raises(wire.WireError):
        wire.Frame.decode(body)


PAIRS = {"seqpacket": lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET),
         "stream": lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)}


@pytest.mark.parametrize("kind", PAIRS)
def test_descriptors_travel_with_their_frame(kind):
    a, b = PAIRS[kind]()
    ca, cb = wire.Channel(a), wire.Channel(b)
    r, w = os.pipe()
    try:
        ca.send(wire.Frame(wire.GNT_GRANT, [2, 0], req_id=1, fds=[r]))
        ca.send(wire.Frame(wire.XS_READ, ["/x"], req_id=2))
        ca.send(wire.Frame(wire.GNT_GRANT, [3, 1], req_id=3, fds=[w]))
        f1, f2, f3 = cb.recv(), cb.recv(), cb.recv()
        assert f1.op == wire.GNT_GRANT and len(f1.fds) == 1 and f2.fds == []
        assert f3.req_id == 3 and len(f3.fds) == 1
        os.write(f3.fds[0], b"through")
        assert os.read(f1.fds[0], 7) == b"through"
        os.close(f1.fds[0]), os.close(f3.fds[0])
        a.close()
        assert cb.recv() is None
    finally:
        os.close(r), os.close(w), b.close()


@pytest.mark.parametrize("kind", PAIRS)
def test_big_frames_arrive_whole(kind):
    a, b = PAIRS[kind]()
    ca, cb = wire.Channel(a), wire.Channel(b)
    payload = bytes(range(256)) * 250                     # 64000 bytes
    t = threading.Thread(target=lambda: [ca.send(wire.Frame(wire.CONSOLE_INPUT, [payload]))
                                         for _ in range(20)])
    t.start()
    for _ in range(20):
        assert cb.recv().args == [payload]
    t.join()
    a.close(), b.close()


def test_nowait_partial_send_on_a_stream_returns_the_tail():
    a, b = PAIRS["stream"]()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ca, cb = wire.Channel(a), wire.Channel(b)
    frame = wire.Frame(wire.CONSOLE_INPUT, [b"z" * 60000])
    rest = ca.send(frame, nowait=True)
    assert rest                                          # the peer's buffer is small
    t = threading.Thread(target=a.sendall, args=(rest,))
    t.start()
    assert cb.recv().args == [b"z" * 60000]
    t.join()
    a.close(), b.close()


def test_stream_junk_is_refused():
    a, b = PAIRS["stream"]()
    a.sendall(struct.pack(">I", 10 ** 9))
    with pytest.raises(wire.WireError):
        wire.Channel(b).recv()
    a.close(), b.close()


def test_oversized_frames_are_refused():
    with pytest.raises(wire.WireError):
        wire.Frame(wire.CONSOLE_INPUT, [b"x" * (wire.MAX_FRAME + 1)]).encode()
