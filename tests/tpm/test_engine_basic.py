"""Framing, start-up, capabilities, PCRs, random, SHA-1 thread, self test:
the commands tcsd start-up and tpm_version need, with libtpms's error codes."""

import struct

import pytest

from engine_helpers import cap_value, frame, getcap, new_tpm, run, u16, u32

from pyxl.tpm import TPM, XEN_VTPM_IDENTITY, Identity
from pyxl.tpm import constants as C

RC = C.TPM_RESULT


@pytest.fixture
def tpm():
    return new_tpm()


def rc_of(raw: bytes) -> int:
    assert len(raw) == 10 and raw[:2] == b"\x00\xc4"
    return struct.unpack(">I", raw[6:10])[0]


GC_PCR = frame(0xC1, 0x65, u32(5) + u32(4) + u32(0x101))


@pytest.mark.parametrize("data,rc", [
    (b"", RC.TPM_BAD_PARAM_SIZE),
    (GC_PCR[:6], RC.TPM_BAD_PARAM_SIZE),
    (GC_PCR[:14], RC.TPM_BAD_PARAM_SIZE),
    (GC_PCR[:2] + u32(len(GC_PCR) + 8) + GC_PCR[6:], RC.TPM_BAD_PARAM_SIZE),
    (GC_PCR[:2] + u32(len(GC_PCR) - 4) + GC_PCR[6:], RC.TPM_BAD_PARAM_SIZE),
    (GC_PCR[:2] + u32(10) + GC_PCR[6:], RC.TPM_BAD_PARAM_SIZE),
    (GC_PCR[:2] + u32(0) + GC_PCR[6:], RC.TPM_BAD_PARAM_SIZE),
    (u16(0xC4) + GC_PCR[2:], RC.TPM_BADTAG),
    (u16(0) + GC_PCR[2:], RC.TPM_BADTAG),
    (u16(0xFFFF) + GC_PCR[2:], RC.TPM_BADTAG),
    (u16(0xC2) + GC_PCR[2:], RC.TPM_BADTAG),
    (frame(0xC2, 0x65, u32(5) + u32(4) + u32(0x101) + u32(0x01000000) + bytes(41)), RC.TPM_BADTAG),
    (frame(0xC4, 0x2D), RC.TPM_BAD_ORDINAL),       # tcsd's PhysicalDisable bug
    (frame(0xC1, 1), RC.TPM_BAD_ORDINAL),
    (frame(0xC1, 0xFF), RC.TPM_BAD_ORDINAL),
    (frame(0xC1, 0x7FFFFFFF), RC.TPM_BAD_ORDINAL),
    (frame(0xC1, 0x20000001), RC.TPM_BAD_ORDINAL),
    (frame(0xC1, 0x65), RC.TPM_BAD_PARAM_SIZE),
    (frame(0xC1, 0x65, u32(5) + u32(100) + u32(0x101)), RC.TPM_BAD_PARAM_SIZE),
    (frame(0xC1, 0x65, u32(5) + u32(4) + u32(0x101) + b"\xaa" * 8), RC.TPM_BAD_PARAM_SIZE),
    (frame(0xC1, 0x5B), RC.TPM_NOSRK),             # OwnerClear, tag C1, unowned
    (frame(0xC2, 0x0D, u16(5)), RC.TPM_BAD_PARAM_SIZE),
    (frame(0xC1, 0x14, u32(10) + bytes(10)), RC.TPM_BAD_PARAM_SIZE),
    (frame(0xC1, 0x46, u32(4) + bytes(4097 - 14)), RC.TPM_BAD_PARAM_SIZE),
    (GC_PCR * 2, RC.TPM_BAD_PARAM_SIZE),
    (frame(0xC1, 0xCC, u16(0x0019) + bytes(60)), RC.TPM_INVALID_STRUCTURE),   # wrong NV tag
    (frame(0xC1, 0x99, u16(1)), RC.TPM_INVALID_POSTINIT),
    (frame(0xC1, 0x99, u16(2)), RC.TPM_INVALID_POSTINIT),
    (frame(0xC1, 0x99, u16(7)), RC.TPM_INVALID_POSTINIT),
])
def test_malformed_frames_get_libtpms_codes(tpm, data, rc):
    assert rc_of(tpm.execute(data)) == rc
    assert tpm.internal_errors == 0


def test_tcsd_startup_and_tpm_version(tpm):
    # exactly what tcsd asks at start-up, then tpm_version's three queries
    vv = cap_value(tpm, 0x1A)
    assert vv == bytes.fromhex("0030" "01020007" "0002" "01") + b"ETHZ" + bytes(2)
    assert cap_value(tpm, 1, u32(0xB4)) in (b"\x00", b"\x01")
    assert cap_value(tpm, 1, u32(0xB6)) in (b"\x00", b"\x01")
    assert cap_value(tpm, 5, u32(0x101)) == u32(24)
    assert cap_value(tpm, 5, u32(0x102)) == u32(1)
    assert cap_value(tpm, 5, u32(0x104)) == u32(10)
    assert cap_value(tpm, 5, u32(0x103)) == bytes.fromhex("4554485a")
    assert cap_value(tpm, 5, u32(0x10D)) == u32(4)
    assert cap_value(tpm, 7) == u16(0)
    assert cap_value(tpm, 6) == bytes([1, 1, 0, 0])


def test_xen_property_values(tpm):
    timeouts = (750000, 2000000, 750000, 750000)
    assert cap_value(tpm, 5, u32(0x115)) == b"".join(u32(v) for v in timeouts)
    assert cap_value(tpm, 5, u32(0x120)) == b"".join(u32(v) for v in (3000000, 3000000, 600000000))
    assert cap_value(tpm, 5, u32(0x124)) == u32(4088)
    assert cap_value(tpm, 5, u32(0x111)) == b"\x00"
    assert cap_value(tpm, 5, u32(0x123)) == u32(4096 - 20)
    # the predefined DIR area
    assert cap_value(tpm, 0x0D) == u32(0x10000001)
    pub = cap_value(tpm, 0x11, u32(0x10000001))
    assert pub[:6] == bytes.fromhex("0018 10000001".replace(" ", ""))
    assert pub[-4:] == u32(20)


@pytest.mark.parametrize("cap,sub", [
    (0x0B, b""), (0xFF, u32(0)), (5, u32(0x1FF)), (5, b""), (5, u16(0x101)), (4, u32(0x10A)),
    (0x19, u16(2)), (0x14, u32(11)), (0x14, b""),
])
def test_bad_capability_is_bad_mode(tpm, cap, sub):
    assert getcap(tpm, cap, sub).rc == RC.TPM_BAD_MODE


def test_cap_handle_lists(tpm):
    # every list vtpmmgr flushes at start-up exists (empty); the rest as libtpms
    for rt in (1, 2, 4, 5, 6, 8):
        assert cap_value(tpm, 0x14, u32(rt)) == u16(0)
    for rt in (3, 7, 9, 10):
        assert getcap(tpm, 0x14, u32(rt)).rc == RC.TPM_BAD_PARAMETER


def test_flags(tpm):
    pf = cap_value(tpm, 4, u32(0x108))
    assert pf[:2] == u16(0x1F) and len(pf) == 22
    # disable, ownership, deactivated, readPubek ... nvLocked, readSRKPub
    assert pf[2:6] == bytes([0, 1, 0, 1])
    assert pf[2 + 15] == 1 and pf[2 + 16] == 1
    assert cap_value(tpm, 4, u32(0x109)) == u16(0x20) + bytes(5)


def test_identity_is_a_parameter():
    ident = Identity(version=(1, 2, 18, 158), errata_rev=3, vendor_id=b"IBM\x00",
                     manufacturer=0x49424D00)
    tpm = new_tpm(identity=ident)
    assert cap_value(tpm, 0x1A)[2:13] == bytes.fromhex("0102129e" "0002" "03") + b"IBM\x00"
    assert cap_value(tpm, 5, u32(0x103)) == u32(0x49424D00)
    assert XEN_VTPM_IDENTITY.vendor_id == b"ETHZ"


def test_pcr_start_values_extend_and_read(tpm):
    for i in range(24):
        r = run(tpm, 0xC1, 0x15, u32(i))
        assert r.rc == 0 and r.body == (b"\xff" * 20 if i >= 16 else bytes(20))
    d = bytes(range(20))
    import hashlib
    want = hashlib.sha1(bytes(20) + d).digest()
    r = run(tpm, 0xC1, 0x14, u32(10) + d)
    assert r.rc == 0 and r.body == want
    assert run(tpm, 0xC1, 0x15, u32(10)).body == want
    assert run(tpm, 0xC1, 0x15, u32(24)).rc == RC.TPM_BADINDEX
    assert run(tpm, 0xC1, 0x14, u32(0xFFFFFFFF) + d).rc == RC.TPM_BADINDEX


def sel(indices, size=3):
    bm = bytearray(size)
    for i in indices:
        bm[i // 8] |= 1 << (i % 8)
    return u16(size) + bytes(bm)


def test_pcr_reset_locality_rules(tpm):
    for i in range(16):
        assert run(tpm, 0xC1, 0xC8, sel([i])).rc == RC.TPM_NOTRESETABLE
    for i in (16, 23):
        assert run(tpm, 0xC1, 0xC8, sel([i])).rc == 0
        assert run(tpm, 0xC1, 0x15, u32(i)).body == bytes(20)
    for i in range(17, 23):
        assert run(tpm, 0xC1, 0xC8, sel([i])).rc == RC.TPM_NOTLOCAL
    assert run(tpm, 0xC1, 0xC8, sel([])).rc == RC.TPM_INVALID_PCR_INFO
    assert run(tpm, 0xC1, 0xC8, u16(0)).rc == RC.TPM_INVALID_PCR_INFO
    # locality 2 may reset 20-22 and extend 21/22; locality 0 may not extend 21
    assert run(tpm, 0xC1, 0xC8, sel([21]), locality=2).rc == 0
    assert run(tpm, 0xC1, 0x14, u32(21) + bytes(20)).rc == RC.TPM_BAD_LOCALITY
    assert run(tpm, 0xC1, 0x14, u32(21) + bytes(20), locality=2).rc == 0


def test_getrandom_caps_and_stir(tpm):
    for n, want in ((0, 0), (1, 1), (20, 20), (2048, 2048), (4096, 2048), (0xFFFFFFFF, 2048)):
        r = run(tpm, 0xC1, 0x46, u32(n))
        assert r.rc == 0 and r.body[:4] == u32(want) and len(r.body) == 4 + want
    a = run(tpm, 0xC1, 0x46, u32(20)).body
    b = run(tpm, 0xC1, 0x46, u32(20)).body
    assert a != b
    assert run(tpm, 0xC1, 0x47, u32(3) + b"abc").rc == 0
    assert run(tpm, 0xC1, 0x47, u32(256) + bytes(256)).rc == RC.TPM_BAD_PARAMETER


def test_sha1_thread(tpm):
    import hashlib
    assert run(tpm, 0xC1, 0xA0).rc == 0
    assert run(tpm, 0xC1, 0xA1, u32(64) + b"a" * 64).rc == 0
    r = run(tpm, 0xC1, 0xA2, u32(3) + b"abc")
    assert r.rc == 0 and r.body == hashlib.sha1(b"a" * 64 + b"abc").digest()
    assert run(tpm, 0xC1, 0xA2, u32(3) + b"abc").rc == RC.TPM_SHA_THREAD
    run(tpm, 0xC1, 0xA0)
    assert run(tpm, 0xC1, 0xA1, u32(3) + b"abc").rc == RC.TPM_SHA_ERROR
    assert run(tpm, 0xC1, 0xA2, u32(0)).rc == RC.TPM_SHA_THREAD
    # another command in between ends the thread
    run(tpm, 0xC1, 0xA0)
    run(tpm, 0xC1, 0x15, u32(0))
    assert run(tpm, 0xC1, 0xA1, u32(64) + bytes(64)).rc == RC.TPM_SHA_THREAD
    # CompleteExtend extends the PCR with the digest
    run(tpm, 0xC1, 0xA0)
    r = run(tpm, 0xC1, 0xA3, u32(9) + u32(3) + b"abc")
    d = hashlib.sha1(b"abc").digest()
    assert r.rc == 0 and r.body == d + hashlib.sha1(bytes(20) + d).digest()


def test_selftest_and_result(tpm):
    assert run(tpm, 0xC1, 0x50).rc == 0
    assert run(tpm, 0xC1, 0x53).rc == 0
    r = run(tpm, 0xC1, 0x54)
    assert r.rc == 0 and r.body == u32(8) + b"Success\x00"


def test_getticks(tpm):
    r = run(tpm, 0xC1, 0xF1)
    assert r.rc == 0 and r.body[:2] == u16(0x14) and len(r.body) == 32


def test_not_started_tpm_answers_invalid_postinit():
    tpm = TPM(generate_ek=False)
    assert getcap(tpm, 0x1A).rc == RC.TPM_INVALID_POSTINIT
    assert run(tpm, 0xC1, 0x99, u16(7)).rc == RC.TPM_BAD_PARAMETER
    assert run(tpm, 0xC1, 0x99, u16(1)).rc == 0
    assert getcap(tpm, 0x1A).rc == 0


def test_savestate_startup_state_restores_pcrs():
    tpm = new_tpm()
    run(tpm, 0xC1, 0x14, u32(3) + b"x" * 20)
    pcr3 = run(tpm, 0xC1, 0x15, u32(3)).body
    assert run(tpm, 0xC1, 0x98).rc == 0
    blob = tpm.dump()
    t2 = TPM.load(blob)
    t2.power_on("state")
    assert run(t2, 0xC1, 0x15, u32(3)).body == pcr3
    # a command after start-up invalidates the saved state
    assert t2.dump() != blob
    t3 = TPM.load(t2.dump())
    assert run(t3, 0xC1, 0x99, u16(2)).rc == RC.TPM_FAIL
    t3b = TPM.load(t2.dump())
    assert t3b.power_on("state") == RC.TPM_FAIL
    assert getcap(t3b, 6).rc == RC.TPM_INVALID_POSTINIT      # still waits for Startup
    assert t3b.power_on(None) == 0
    t4 = TPM.load(blob)
    t4.power_on("clear")
    assert run(t4, 0xC1, 0x15, u32(3)).body == bytes(20)
    t5 = TPM.load(blob)
    t5.power_on("deactivated")
    assert cap_value(t5, 4, u32(0x109))[2] == 1


def test_power_on_none_waits_for_startup():
    tpm = TPM(generate_ek=False)
    tpm.power_on("none")
    assert getcap(tpm, 6).rc == RC.TPM_INVALID_POSTINIT


def test_selection_sizes_checked_like_libtpms(tpm):
    # the size is checked before the bitmap is read
    assert run(tpm, 0xC1, 0xC8, u16(4)).rc == RC.TPM_INVALID_PCR_INFO
    assert run(tpm, 0xC1, 0xC8, u16(9) + b"\x01").rc == RC.TPM_INVALID_PCR_INFO
    assert run(tpm, 0xC1, 0xC8, u16(3) + b"\x01").rc == RC.TPM_BAD_PARAM_SIZE
    assert run(tpm, 0xC1, 0xC8, u16(2) + b"\x00\x00").rc == RC.TPM_INVALID_PCR_INFO   # empty
    # TPM_CAP_SELECT_SIZE: major 1, minor 1/2, reqSize
    assert cap_value(tpm, 0x18, bytes([1, 2]) + u16(3)) == b"\x01"
    assert cap_value(tpm, 0x18, bytes([1, 1]) + u16(4)) == b"\x00"
    assert getcap(tpm, 0x18, b"").rc == RC.TPM_BAD_PARAM_SIZE
    assert getcap(tpm, 0x18, b"\x02").rc == RC.TPM_BAD_PARAMETER
    assert getcap(tpm, 0x18, bytes([9, 9]) + u16(3)).rc == RC.TPM_BAD_PARAMETER
    assert getcap(tpm, 0x18, bytes([1, 3]) + u16(3)).rc == RC.TPM_BAD_PARAMETER
    # each checked as soon as it is read (libtpms TPM_SelectSize_Load)
    assert getcap(tpm, 0x18, b"\x01\x03").rc == RC.TPM_BAD_PARAMETER
    assert getcap(tpm, 0x18, b"\x01\x02\x00").rc == RC.TPM_BAD_PARAM_SIZE


def test_no_1_1_signed_capability_commands(tpm):
    # neither libtpms nor the emulator implements CertifySelfTest / GetCapabilitySigned
    assert cap_value(tpm, 1, u32(0x52)) == b"\x00"
    assert run(tpm, 0xC1, 0x64, bytes(40)).rc == RC.TPM_BAD_ORDINAL
