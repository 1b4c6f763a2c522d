"""The AES scenarios of test_engine_transport_aes.py against swtpm
(libtpms): the keystreams computed there (CTR counters and OFB IVs from
MGF1 of the nonces, ADIP counters from the nonces, Sealx's SHA-1 counter,
the low-word counter wrap) must be what the real peer computes, and the
engine must answer GetCapability's TRANS_ALG / AUTH_ENCRYPT / TRANS_ES /
SYM_MODE questions exactly as swtpm does."""

from __future__ import annotations

import os

import pytest

import engine_helpers as H
import test_engine_transport_aes as A
from peers import need_peer
from pyxl.tpm import structures as S


Remote = H.Remote


@pytest.fixture
def swtpm_tpm(start_swtpm, monkeypatch):
    """Point the scenarios' new_tpm() at fresh swtpm instances, each given an
    EK and enabled and activated (a libtpms TPM starts without an EK,
    disabled and deactivated)."""
    need_peer("swtpm")
    started: list = []

    def fresh(**_):
        tpm = Remote(start_swtpm(name="swtpm%d" % len(started)))
        started.append(tpm)
        parms = S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes())
        assert H.run(tpm, 0xC1, 0x78, os.urandom(20) + parms.to_bytes()).rc == 0  # CreateEK
        assert H.run(tpm, 0xC1, 0x4000000A, H.u16(0x20)).rc == 0   # PP command enable
        assert H.run(tpm, 0xC1, 0x4000000A, H.u16(0x08)).rc == 0   # PP present
        assert H.run(tpm, 0xC1, 0x6F).rc == 0                     # PhysicalEnable
        assert H.run(tpm, 0xC1, 0x72, b"\x00").rc == 0            # PhysicalSetDeactivated
        return tpm

    monkeypatch.setattr(A, "new_tpm", fresh)
    return fresh


SCENARIOS = [
    ("aes_transport_seal_and_release", (A.ES_CTR,)),
    ("aes_transport_seal_and_release", (A.ES_OFB,)),
    ("aes_transport_nv_round_trip", (A.ES_CTR,)),
    ("aes_transport_nv_round_trip", (A.ES_OFB,)),
    ("aes_transport_context", (A.ES_OFB,)),
    ("aes_transport_wrong_mode_fails", ()),
    ("aes_adip_create_wrap_key", ()),
    ("aes_seal_change_auth_and_counter", ()),
    ("aes_osap_context", ()),
    ("aes_sealx_unseal", ()),
    ("aes_refusals", ()),
    ("aes_dsap_delegates_creation", ("row",)),     # libtpms: not on an AES owner blob
]


@pytest.mark.parametrize("scenario, args", [
    pytest.param(name, args, id="-".join([name] + [str(a) for a in args]))
    for name, args in SCENARIOS])
def test_same_on_swtpm(swtpm_tpm, scenario, args):
    getattr(A, scenario)(*args)


def test_capabilities_equal_swtpm(swtpm_tpm):
    ours = A.capability_answers(H.new_tpm(identity=A.LIBTPMS))
    theirs = A.capability_answers(swtpm_tpm())
    assert ours == theirs
