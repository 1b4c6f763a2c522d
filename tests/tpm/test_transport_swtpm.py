"""The transport-session scenarios of test_engine_transport.py run against
swtpm (libtpms): the same client code, HMACs, MGF1 stream, log chain and
signature check must hold for the real peer as for the engine."""

from __future__ import annotations

import os

import pytest

import engine_helpers as H
import test_engine_transport as T
from peers import need_peer
from pyxl.tpm import structures as S


Remote = H.Remote


@pytest.fixture
def swtpm_tpm(start_swtpm, monkeypatch):
    need_peer("swtpm")

    def fresh(**_):
        tpm = Remote(start_swtpm(name="swtpm%d" % len(started)))
        started.append(tpm)
        # a libtpms TPM starts without an EK, disabled and deactivated
        parms = S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes())
        assert H.run(tpm, 0xC1, 0x78, os.urandom(20) + parms.to_bytes()).rc == 0
        assert H.run(tpm, 0xC1, 0x4000000A, H.u16(0x20)).rc == 0   # PP command enable
        assert H.run(tpm, 0xC1, 0x4000000A, H.u16(0x08)).rc == 0   # PP present
        assert H.run(tpm, 0xC1, 0x6F).rc == 0                     # PhysicalEnable
        assert H.run(tpm, 0xC1, 0x72, b"\x00").rc == 0            # PhysicalSetDeactivated
        return tpm

    def owned():
        tpm = fresh()
        H.take_ownership(tpm)
        return tpm

    started: list = []
    monkeypatch.setattr(T, "new_tpm", fresh)
    monkeypatch.setattr(T, "owned", owned)


@pytest.mark.parametrize("scenario", [
    "test_plain_logged_session_and_signed_release",
    "test_encrypted_session_wraps_authorized_commands",
    "test_exclusive_session_ends_on_any_other_command",
    "test_wrapped_flush_of_its_own_session_ends_it",
    "test_flush_specific_and_pid",
    "test_save_and_load_context_of_a_transport_session",
])
def test_same_on_swtpm(swtpm_tpm, scenario):
    getattr(T, scenario)()
