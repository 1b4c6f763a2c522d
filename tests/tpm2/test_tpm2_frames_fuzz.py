"""Generated frames, most of them broken, one write each, to `pyxl tpm-serve
--tpm2` and `swtpm socket --tpm2` over kept connections: the answers must be
the same bytes.  Both run libtpms, so what this checks is the framing around
it -- the part pyxl wrote.  Frames are at least 10 bytes and never shorter
than their paramSize says (swtpm would wait for the rest of those)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tpm2.client import TPM2Client

pytestmark = pytest.mark.peer("swtpm")

# command codes whose answers are deterministic whatever the parameters
# (GetRandom and the key-making ones would differ by nature)
CODES = [0x17A, 0x17E, 0x182, 0x144, 0x145, 0x165, 0x17F, 0x999, 0x0, 0x65, 0x20000000]
TAGS = [0x8001, 0x8002, 0x00C1, 0x00C2, 0x0000, 0xFFFF]


@st.composite
def frames(draw):
    tag = draw(st.sampled_from(TAGS) | st.integers(0, 0xFFFF))
    cc = draw(st.sampled_from(CODES))
    body = draw(st.binary(max_size=64))
    length = 10 + len(body)
    size = draw(st.sampled_from([length, 0, 9, 10, length - 1]) | st.integers(0, length))
    trailing = draw(st.binary(max_size=8))
    return struct.pack(">HII", tag, size, cc) + body + trailing


@pytest.fixture
def pair(start_swtpm2, start_serve2):
    sw, px = start_swtpm2(), start_serve2()
    clients = TPM2Client(sw.addr), TPM2Client(px.addr)
    yield clients
    for c in clients:
        c.close()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.lists(frames(), min_size=1, max_size=6))
def test_generated_frames_answered_as_swtpm(pair, data):
    swtpm, pyxl = pair
    for frame in data:
        assert pyxl.send(frame).hex() == swtpm.send(frame).hex(), frame.hex()
