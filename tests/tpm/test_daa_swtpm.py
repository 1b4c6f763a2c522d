"""TPM_DAA_Join / TPM_DAA_Sign against swtpm (libtpms): the test-side issuer
and verifier work with libtpms as with the engine, and malformed or
out-of-order stage sequences get the same return codes from both."""

from __future__ import annotations

import os

import pytest

import daa_issuer as D
import engine_helpers as H
import test_engine_daa as E
from pyxl.tpm import structures as S
from pyxl.tpm.identity import IBM_SWTPM_IDENTITY
from test_migration_swtpm import Remote


def owned_swtpm(start_swtpm, name="swtpm"):
    tpm = Remote(start_swtpm(name=name))
    # a libtpms TPM starts without an EK, disabled and deactivated
    parms = S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes())
    assert H.run(tpm, 0xC1, 0x78, os.urandom(20) + parms.to_bytes()).rc == 0
    assert H.run(tpm, 0xC1, 0x4000000A, H.u16(0x20)).rc == 0   # PP command enable
    assert H.run(tpm, 0xC1, 0x4000000A, H.u16(0x08)).rc == 0   # PP present
    assert H.run(tpm, 0xC1, 0x6F).rc == 0                     # PhysicalEnable
    assert H.run(tpm, 0xC1, 0x72, b"\x00").rc == 0            # PhysicalSetDeactivated
    tpm.ek_pub = H.read_pubek(tpm)
    H.take_ownership(tpm)
    return tpm


@pytest.fixture(scope="module")
def issuer():
    return D.Issuer()


def test_join_sign_verify_on_libtpms(start_swtpm, issuer):
    tpm = owned_swtpm(start_swtpm)
    E.scenario_join_and_sign(tpm, issuer)
    assert E.daa_handles(tpm) == [] and E.daa_free(tpm) == E.daa_max(tpm) == 2


def test_refusal_codes_as_libtpms(start_swtpm, issuer):
    sw = E.refusal_codes(owned_swtpm(start_swtpm), issuer)
    eng = E.refusal_codes(E.owned_engine(IBM_SWTPM_IDENTITY), issuer)
    assert eng == sw


def test_wrong_issuer_settings_as_libtpms(start_swtpm, issuer):
    got = []
    for tpm in (owned_swtpm(start_swtpm), E.owned_engine(IBM_SWTPM_IDENTITY)):
        cred = D.join(tpm, issuer, H.OWNER, tpm.ek_pub)
        got.append(E.scenario_wrong_issuer_settings(tpm, issuer, cred))
    assert got[0] == got[1]


def test_blobs_cross_implementations(start_swtpm, issuer):
    """A libtpms DAA blob means nothing to the engine and the reverse
    (each seals with its own daaBlobKey / daaProof): the same refusal."""
    sw, eng = owned_swtpm(start_swtpm), E.owned_engine(IBM_SWTPM_IDENTITY)
    codes = []
    for src, dst in ((sw, eng), (eng, sw)):
        cred = D.join(src, issuer, H.OWNER, src.ek_pub)
        c = D.DAAClient(dst, H.OWNER)
        c.handle = int.from_bytes(c.ok(D.ORD_SIGN, 0, issuer.settings()), "big")
        codes.append(c.call(D.ORD_SIGN, 1, cred.tpm_specific)[0])
    assert codes[0] == codes[1] == 0x51


def test_context_save_load_as_libtpms(start_swtpm, issuer):
    got = [E.scenario_context(tpm, issuer)
           for tpm in (owned_swtpm(start_swtpm), E.owned_engine(IBM_SWTPM_IDENTITY))]
    assert got[0] == got[1] == E.CONTEXT_CODES


@pytest.mark.slow   # ~7 s: twenty partial joins and signs on each TPM
def test_late_refusals_as_libtpms(start_swtpm, issuer):
    got = []
    for tpm in (owned_swtpm(start_swtpm), E.owned_engine(IBM_SWTPM_IDENTITY)):
        cred = D.join(tpm, issuer, H.OWNER, tpm.ek_pub)
        got.append(E.scenario_late_refusals(tpm, issuer, cred))
    assert got[0] == got[1] == E.LATE_REFUSALS
