"""The TPM 2.0 engine in-process (libtpms through ctypes): one per process,
the state blob with and without the volatile part, what persistent_changed
says, and the answers of a powered-off or closed engine (swtpm's: the frame
TPM_RC_FAILURE, as its mainloop writes when the TPM is not running)."""

from __future__ import annotations

import pytest

from pyxl.tpm.tpm2 import TPM2, TPM2Error, TPM2StateError
from tpm2 import client as T
from tpm2.client import rc_of

TPM_RC_INITIALIZE = 0x100
TPM_RC_FAILURE = 0x101
NV_INDEX = 0x01500030


@pytest.fixture
def tpm():
    t = TPM2()
    assert t.power_on("clear") == 0
    yield t
    t.close()


def test_one_engine_per_process(tpm):
    with pytest.raises(TPM2Error, match="one TPM 2.0 per process"):
        TPM2()
    blob = tpm.dump()
    tpm.close()
    with TPM2.load(blob) as again:                     # libtpms is free again
        assert again.power_on("clear") == 0


def test_volatile_dump_resumes_without_startup(tpm):
    assert rc_of(tpm.execute(T.pcr_extend(16, "sha256", bytes(range(32))))) == 0
    handle = T.handle_of(tpm.execute(T.create_primary()))
    pcr = tpm.execute(T.pcr_read("sha256", [16]))
    full, permanent = tpm.dump(volatile=True), tpm.dump()
    tpm.close()
    with TPM2.load(full) as t:
        assert t.power_on("clear") == 0                 # resumed: no Startup sent
        assert t.execute(T.pcr_read("sha256", [16])) == pcr
        assert rc_of(t.execute(T.flush(handle))) == 0   # the loaded primary came along
    with TPM2.load(permanent) as t:
        assert t.power_on(None) == 0
        assert rc_of(t.execute(T.get_random(8))) == TPM_RC_INITIALIZE   # waits for Startup
        assert rc_of(t.execute(T.startup())) == 0
        assert t.execute(T.pcr_read("sha256", [16]))[-32:] == bytes(32)


def test_persistent_changed_follows_nv(tpm):
    tpm.dump()
    assert not tpm.persistent_changed
    tpm.execute(T.get_random(16))
    tpm.execute(T.pcr_extend(16, "sha1", bytes(20)))
    assert not tpm.persistent_changed                   # PCRs are volatile
    assert rc_of(tpm.execute(T.nv_define(NV_INDEX, 4))) == 0
    assert tpm.persistent_changed
    blob = tpm.dump()
    assert not tpm.persistent_changed
    tpm.close()
    with TPM2.load(blob) as t:
        assert not t.persistent_changed
        t.power_on("clear")
        assert rc_of(t.execute(T.nv_write(NV_INDEX, b"abcd"))) == 0
        assert T.nv_data(t.execute(T.nv_read(NV_INDEX, 4))) == b"abcd"


def test_powered_off_and_closed_answer_failure(tpm):
    tpm.power_off()
    assert tpm.execute(T.get_random(8)) == bytes.fromhex("80010000000a00000101")
    tpm.power_on("clear")
    assert rc_of(tpm.execute(T.get_random(8))) == 0
    tpm.close()
    assert rc_of(tpm.execute(T.get_random(8))) == TPM_RC_FAILURE
    with pytest.raises(TPM2Error):
        tpm.dump()


@pytest.mark.parametrize("blob, says", [
    (b"", "not a pyxl TPM 2.0 state"),
    (b"PYXLTPM12\x00" + bytes(64), "TPM 1.2"),
    (b"PYXLTPM20\x00\x00\x01" + bytes(32), "checksum"),
])
def test_load_refuses_what_is_not_a_tpm2_state(blob, says):
    with pytest.raises(TPM2StateError, match=says):
        TPM2.load(blob)


def test_startup_types(tpm):
    with pytest.raises(ValueError):
        tpm.power_on("deactivated")                      # TPM 1.2 only
    assert tpm.save_state() == 0
    assert tpm.power_on("state") == 0
    assert tpm.power_on("state") != 0                    # no orderly TPM2_Shutdown(SU_STATE)


def test_a_missing_libtpms_is_a_clear_error(monkeypatch):
    from pyxl.tpm.tpm2 import libtpms
    monkeypatch.setattr(libtpms, "SONAME", "libtpms.so.no-such-version")
    monkeypatch.setattr(libtpms, "_LIBRARY", None)
    with pytest.raises(TPM2Error, match="cannot load libtpms.so.no-such-version.*libtpms0"):
        TPM2()


def test_a_rejected_state_is_never_replaced_by_a_new_tpm(tpm):
    from pyxl.tpm.tpm2.engine import pack_state, unpack_state
    sections = unpack_state(tpm.dump())
    tpm.close()
    perm = bytearray(sections["permall"])
    perm[20:60] = bytes(40)
    with TPM2.load(pack_state({"permall": bytes(perm)})) as t:
        for _ in range(2):                               # a retry fails the same way
            with pytest.raises(TPM2StateError, match="rejects the permanent state"):
                t.power_on("clear")
        assert rc_of(t.execute(T.get_random(8))) == TPM_RC_FAILURE
        assert unpack_state(t.dump())["permall"] == bytes(perm)   # what it was given
