"""The state blob: everything persistent survives dump/load exactly and keeps
working; volatile state follows TPM_SaveState / TPM_Startup."""

import struct
from pathlib import Path

import pytest

from engine_helpers import (OWNER, Session, auth1, cap_value, create_wrap_key, key_pool,
                            load_key2, new_tpm, run, take_ownership, u16, u32)

from pyxl.tpm import TPM, TPMStateError
from pyxl.tpm import constants as C
from pyxl.tpm import structures as S
from pyxl.tpm.state import FORMAT_VERSION, MAGIC

RC = C.TPM_RESULT


def rich_tpm():
    tpm = new_tpm()
    take_ownership(tpm)
    s = Session(tpm, "osap", 2, 0x40000001, OWNER)
    pub = S.TPM_NV_DATA_PUBLIC(0x1234, permission=S.TPM_NV_ATTRIBUTES(0x20002), dataSize=6)
    assert auth1(tpm, 0xCC, b"", pub.to_bytes() + s.enc_auth(b"n" * 20), None, sess=s)[0].rc == 0
    assert auth1(tpm, 0xCD, b"", u32(0x1234) + u32(0) + u32(6) + b"nvdata", OWNER)[0].rc == 0
    s = Session(tpm, "osap", 2, 0x40000001, OWNER)
    r, out = auth1(tpm, 0xDC, b"", s.enc_auth(b"c" * 20) + b"CTR0", None, sess=s)
    cid = struct.unpack(">I", out[:4])[0]
    auth1(tpm, 0xDD, b"", u32(cid), b"c" * 20)
    assert run(tpm, 0xC1, 0x74, b"o" * 20).rc == 0                     # operator auth
    auth1(tpm, 0x66, b"", b"", b"wrong".ljust(20, b"."))                # one DA failure
    auth1(tpm, 0x3F, b"", u32(1) + u32(4) + u32(17) + u32(1) + b"\x00", OWNER)
    return tpm, cid


def test_rich_state_round_trips_and_keeps_working():
    tpm, cid = rich_tpm()
    blob = tpm.dump()
    assert blob.startswith(MAGIC)
    assert struct.unpack(">H", blob[len(MAGIC):len(MAGIC) + 2])[0] == FORMAT_VERSION
    t2 = TPM.load(blob, key_source=key_pool())
    assert t2.dump() == blob
    t2.power_on()
    assert t2.perm.auth_fail_count == 1
    assert not t2.perm.flags.readSRKPub and t2.perm.flags.operator
    assert auth1(t2, 0x66, b"", b"", OWNER)[0].rc == 0                  # owner auth
    r, out = auth1(t2, 0xCF, b"", u32(0x1234) + u32(0) + u32(6), OWNER)
    assert out[4:] == b"nvdata"
    r = run(t2, 0xC1, 0xDE, u32(cid))
    assert S.TPM_COUNTER_VALUE.from_bytes(r.body).label == b"CTR0"
    # the SRK still unwraps keys made before the dump, the EK is the same
    blob_key = create_wrap_key(tpm)
    assert load_key2(t2, blob_key)
    assert t2.perm.ek.n == tpm.perm.ek.n and t2.perm.tpm_proof == tpm.perm.tpm_proof


def test_volatile_state_is_not_in_the_dump_without_savestate():
    tpm, _ = rich_tpm()
    run(tpm, 0xC1, 0x14, u32(5) + b"e" * 20)
    h = load_key2(tpm, create_wrap_key(tpm))
    t2 = TPM.load(tpm.dump(), key_source=key_pool())
    t2.power_on("clear")
    assert run(t2, 0xC1, 0x15, u32(5)).body == bytes(20)
    assert cap_value(t2, 7) == u16(0)
    assert t2.power_on("state") == RC.TPM_FAIL
    # with TPM_SaveState: PCRs and keys come back with ST_STATE
    assert run(tpm, 0xC1, 0x98).rc == 0
    t3 = TPM.load(tpm.dump(), key_source=key_pool())
    assert t3.power_on("state") == 0
    assert run(t3, 0xC1, 0x15, u32(5)).body == run(tpm, 0xC1, 0x15, u32(5)).body
    assert cap_value(t3, 7) == u16(1) + u32(h)
    # resettable PCRs come back at their start value
    assert run(t3, 0xC1, 0x15, u32(16)).body == b"\xff" * 20


def test_sessions_never_survive():
    tpm = new_tpm()
    s = Session(tpm)
    run(tpm, 0xC1, 0x98)
    t2 = TPM.load(tpm.dump())
    t2.power_on("state")
    assert run(t2, 0xC1, 0xBA, u32(s.handle) + u32(2)).rc == RC.TPM_INVALID_AUTHHANDLE


def test_persistent_changed():
    tpm = new_tpm()
    tpm.dump()
    assert not tpm.persistent_changed
    for _ in range(3):
        run(tpm, 0xC1, 0x65, u32(5) + u32(4) + u32(0x101))
        run(tpm, 0xC1, 0x14, u32(1) + bytes(20))
        run(tpm, 0xC1, 0x46, u32(8))
    assert not tpm.persistent_changed                     # PCRs are volatile
    take_ownership(tpm)
    assert tpm.persistent_changed
    tpm.dump()
    assert not tpm.persistent_changed
    auth1(tpm, 0x66, b"", b"", bytes(20))                 # a DA failure is persistent
    assert tpm.persistent_changed


def test_corrupt_blobs_raise_tpm_state_error():
    blob = new_tpm().dump()
    body_at = len(MAGIC) + 6
    future = MAGIC + struct.pack(">H", FORMAT_VERSION + 1) + blob[len(MAGIC) + 2:]
    for bad in (blob[:len(MAGIC)], future, blob[:body_at] + b"[" + blob[body_at + 1:]):
        with pytest.raises(TPMStateError):
            TPM.load(bad)


def test_fresh_tpm_makes_its_ek_once():
    calls = []

    def source(bits):
        calls.append(bits)
        return key_pool()(bits)
    tpm = TPM(key_source=source)
    assert calls == [2048]
    TPM.load(tpm.dump(), key_source=source).power_on()
    assert calls == [2048]


def test_fields_added_later_load_with_defaults():
    import hashlib
    import json
    tpm, cid = rich_tpm()
    blob = tpm.dump()
    n = struct.unpack(">I", blob[len(MAGIC) + 2:len(MAGIC) + 6])[0]
    body = json.loads(blob[len(MAGIC) + 6:len(MAGIC) + 6 + n])
    for k in ("context_key", "evict_keys", "audited", "audit_counter", "counters",
              "counter_floor"):
        del body["perm"][k]
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    old = MAGIC + struct.pack(">HI", FORMAT_VERSION, len(raw)) + raw + hashlib.sha256(raw).digest()
    t2 = TPM.load(old)
    t2.power_on()
    assert auth1(t2, 0x66, b"", b"", OWNER)[0].rc == 0
    assert t2.perm.counters == {} and t2.perm.audited == set()


def test_a_required_secret_that_is_null_is_refused_not_loaded_as_none():
    """tpmProof is never absent (libtpms TPM_PermanentData_Load reads it
    unconditionally): a blob whose tpm_proof is null (checksum intact) is
    refused rather than loaded as a TPM without one."""
    import hashlib
    import json
    blob = new_tpm().dump()
    n = struct.unpack(">I", blob[len(MAGIC) + 2:len(MAGIC) + 6])[0]
    body = json.loads(blob[len(MAGIC) + 6:len(MAGIC) + 6 + n])
    body["perm"]["tpm_proof"] = None
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    bad = MAGIC + struct.pack(">HI", FORMAT_VERSION, len(raw)) + raw + hashlib.sha256(raw).digest()
    with pytest.raises(TPMStateError):
        TPM.load(bad)


def test_a_state_written_by_main_loads_and_dumps_byte_identical():
    # written by main (commit 45cfbbb): owner, SRK, an NV area, a counter,
    # operator auth, a DA failure, and TPM_SaveState with a loaded key
    blob = (Path(__file__).parent / "data" / "state-main.blob").read_bytes()
    tpm = TPM.load(blob)
    assert tpm.dump() == blob
    assert tpm.power_on("state") == 0
    assert cap_value(tpm, 7)[:2] == u16(1)                     # the saved key is back
    assert run(tpm, 0xC1, 0x15, u32(5)).body != bytes(20)       # and the extended PCR
