"""Malformed TPM 1.2 frames answered as libtpms answers them.

The frames come from tests/tpm/malformed.py: a well-formed command of every
ordinal the engine implements, truncated at every field boundary, with its
paramSize off, its sized fields' lengths short, long, past the frame, over
libtpms's allocation limit, its BOOLs out of range, bytes appended, its tag
replaced; plus randomly damaged frames.  Each goes to swtpm (libtpms) and to
the engine, both owned and enabled and reset to that state whenever a frame
changed it; the answers must be the same bytes (errors) or the same tag and
return code (successes, whose bodies carry random or vendor values).

Hypothesis draws the frames: in CI (CI=true) a fixed sequence, locally new
ones each run.  PYXL_TPM_FUZZ=N draws N frames per profile instead of 300
(`python tests/tpm/malformed.py` runs every systematic frame at once).
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import malformed as M
from peers import need_peer
from tpm.fixtures import PyxlServe, Swtpm, transact

FRAMES = M.all_frames()
EXAMPLES = int(os.environ.get("PYXL_TPM_FUZZ", "300"))

# Where the engine behaving as the Berlios emulator answers otherwise ON
# PURPOSE ("base command:mutation" glob -> reason); the default profile
# (libtpms) has none.
BERLIOS = {
    "Init:*": "the emulator runs TPM_Init sent as a command (libtpms, built "
                        "without TPM_TEST, answers TPM_BAD_ORDINAL)",
    "NV_DefineSpace:tag 0xc1*": "the emulator starts with nvLocked TRUE, so defining NV "
                                "space needs the owner's authorization",
}
PROFILES = {"libtpms": {}, "berlios": BERLIOS}


@pytest.fixture(scope="module", params=list(PROFILES))
def pair(request, tmp_path_factory):
    need_peer("swtpm")
    p = M.make_pair(tmp_path_factory.mktemp("malformed-" + request.param), request.param,
                    PROFILES[request.param])
    yield p
    p.ref.close()
    p.ref.sw.stop()


frames = st.one_of(
    st.sampled_from(FRAMES),
    st.builds(M.random_mutation, st.randoms(use_true_random=False), st.sampled_from(M.BASES)))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(f=frames)
def test_malformed_frames_answer_like_libtpms(pair, f):
    o = pair.send(f)
    assert o.same or o.declared, o.line()


def test_declared_differences_still_differ(pair):
    """Each declared difference is still one (else its declaration goes)."""
    for key in pair.declared:
        f = next(f for f in FRAMES if f.key == key or (key.endswith("*")
                                                       and f.key.startswith(key[:-1])))
        o = pair.send(f)
        assert not o.same, "%s now answers like libtpms: drop its declaration" % key


def test_fuzzer_sees_a_difference(tmp_path):
    """The comparison can fail: an engine that answers TPM_BAD_PARAM_SIZE
    where libtpms says TPM_SIZE (a sized field over TPM_ALLOC_MAX, the
    defect this test was written for) is caught."""
    need_peer("swtpm")
    p = M.make_pair(tmp_path)
    try:
        f = next(f for f in FRAMES if f.key == "StirRandom:size ALLOC_MAX+1 of field 0")
        real = p.ours.execute
        p.ours.execute = lambda data: (real(data)[:6] + (0x19).to_bytes(4, "big")
                                       if data == f.data else real(data))
        o = p.send(f)
        assert not o.same and M.rc_of(o.ref) == 0x17, o.line()
    finally:
        p.ref.close()
        p.ref.sw.stop()


# The frames of the reported defect, end to end: through `pyxl tpm-serve`
# (default profile) and swtpm, over their sockets.
DEFECT_FRAMES = {
    "sized field over TPM_ALLOC_MAX": M.assemble(M.C1, 0x47, [M.u32(0x20001)]),
    "sized field past the frame": M.assemble(M.C1, 0x47, [M.u32(0x100), b"x" * 4]),
    "BOOL 2": M.assemble(M.C1, 0x72, [M.u8(2)]),
    "auth trailer with continueAuthSession 2": M.assemble(
        M.C2, 0x5B, [M.u32(M.BOGUS_SESSION), bytes(20), M.u8(2), bytes(20)]),
    "unknown ordinal in an AUTH1 frame": M.assemble(M.C2, 0xFF, []),
    "Startup with trailing bytes": M.assemble(M.C1, 0x99, [M.u16(1), b"\0"]),
    "Startup type 0": M.assemble(M.C1, 0x99, [M.u16(0)]),
}
STARTUP_CLEAR = M.assemble(M.C1, 0x99, [M.u16(1)])


def _served(tmp_path, pyxl_cmd, started: bool):
    need_peer("swtpm")
    ref = Swtpm(tmp_path / "swtpm", startup=started).start()
    try:
        ours = PyxlServe(pyxl_cmd, tmp_path / "pyxl",
                         *(() if started else ("--no-startup",))).start()
    except Exception:
        ref.stop()
        raise
    return ref, ours


def _same(ref, ours, frame: bytes) -> None:
    a, b = transact(ref.addr, frame), transact(ours.addr, frame)
    assert a == b, "%s: swtpm %s, pyxl %s" % (frame.hex(), a.hex(), b.hex())


def test_defect_frames_through_tpm_serve(tmp_path, pyxl_cmd):
    ref, ours = _served(tmp_path, pyxl_cmd, started=True)
    try:
        for frame in DEFECT_FRAMES.values():
            _same(ref, ours, frame)
    finally:
        ours.stop()
        ref.stop()


@pytest.mark.parametrize("name", ["Startup with trailing bytes", "Startup type 0"])
def test_malformed_startup_still_starts_the_tpm(name, tmp_path, pyxl_cmd):
    """Before TPM_Startup: libtpms refuses the malformed TPM_Startup and is
    started all the same, so the well-formed one after it is refused
    (TPM_INVALID_POSTINIT) and other commands run."""
    ref, ours = _served(tmp_path, pyxl_cmd, started=False)
    try:
        pcr_read = M.assemble(M.C1, 0x15, [M.u32(0)])
        for frame in (DEFECT_FRAMES[name], STARTUP_CLEAR, pcr_read):
            _same(ref, ours, frame)
    finally:
        ours.stop()
        ref.stop()


def test_random_mutation_is_reproducible():
    """The random frames depend on the seed only (CI replays them)."""
    a = M.random_mutation(random.Random(5), M.BASES[3])
    b = M.random_mutation(random.Random(5), M.BASES[3])
    assert a.data == b.data and a.label == b.label
