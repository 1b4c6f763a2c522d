"""The domain <-> hypervisor wire: frames, descriptors, malformed input."""

from __future__ import annotations

import os

import pytest

from pyxl.hypervisor import wire


def test_frame_round_trip_keeps_binary_args():
    f = wire.Frame(wire.XS_WRITE, ["/a", b"\x00\xff", 7], req_id=3, tx_id=9)
    g = wire.Frame.decode(f.encode())
    assert (g.op, g.req_id, g.tx_id, g.args) == (wire.XS_WRITE, 3, 9, [b"/a", b"\x00\xff", b"7"])
    assert g.int(2) == 7 and g.str(0) == "/a"


@pytest.mark.parametrize("data", [b"", b"\x00" * 5, wire.Frame(1, ["abc"]).encode()[:-1],
                                  wire.Frame(1, []).encode() + b"\x00\x00"])
def test_malformed_frames_raise_wire_error(data):
    with pytest.raises(wire.WireError):
        wire.Frame.decode(data)


def test_bad_argument_types_raise_wire_error():
    f = wire.Frame(1, ["x", b"\xff"])
    with pytest.raises(wire.WireError):
        f.int(0)
    with pytest.raises(wire.WireError):
        f.str(1)
    with pytest.raises(wire.WireError):
        f.int(5)


def test_descriptors_travel_with_their_frame():
    a, b = wire.socketpair()
    r, w = os.pipe()
    try:
        wire.send_frame(a, wire.Frame(wire.GNT_GRANT, [2, 0], req_id=1, fds=[r]))
        wire.send_frame(a, wire.Frame(wire.XS_READ, ["/x"], req_id=2))
        f1, f2 = wire.recv_frame(b), wire.recv_frame(b)
        assert f1.op == wire.GNT_GRANT and len(f1.fds) == 1 and f2.fds == []
        os.write(w, b"through")
        assert os.read(f1.fds[0], 7) == b"through"
        os.close(f1.fds[0])
        a.close()
        assert wire.recv_frame(b) is None
    finally:
        os.close(r), os.close(w), b.close()


def test_oversized_frames_are_refused():
    with pytest.raises(wire.WireError):
        wire.Frame(wire.CONSOLE_WRITE, [b"x" * (wire.MAX_FRAME + 1)]).encode()
