"""TPM_DAA_Join / TPM_DAA_Sign against swtpm (libtpms): the test-side issuer
and verifier work with libtpms as with the engine, and malformed or
out-of-order stage sequences get the same return codes from both."""

from __future__ import annotations


import pytest

import daa_issuer as D
import engine_helpers as H
import test_engine_daa as E
from pyxl.tpm.identity import IBM_SWTPM_IDENTITY


owned_swtpm = H.owned_swtpm


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


def test_even_modulus_as_libtpms(start_swtpm, issuer):
    """libtpms refuses an even n or Gamma (test_engine_daa.test_even_modulus)."""
    assert E.scenario_even_modulus(owned_swtpm(start_swtpm), issuer) == E.EVEN_MODULUS


def test_issuer_signatures_as_libtpms(start_swtpm, issuer):
    """libtpms verifies the issuer's signatures with OpenSSL's RSA_verify,
    which refuses an even modulus even where the arithmetic holds
    (test_engine_daa.test_issuer_signatures)."""
    assert E.scenario_issuer_signatures(owned_swtpm(start_swtpm), issuer) == E.ISSUER_SIGNATURES


def test_context_save_load_as_libtpms(start_swtpm, issuer):
    got = [E.scenario_context(tpm, issuer)
           for tpm in (owned_swtpm(start_swtpm), E.owned_engine(IBM_SWTPM_IDENTITY))]
    assert got[0] == got[1] == E.CONTEXT_CODES


def test_new_daa_proof_as_libtpms(start_swtpm, issuer):
    got = [E.scenario_new_daa_proof(tpm, issuer)
           for tpm in (owned_swtpm(start_swtpm), E.owned_engine(IBM_SWTPM_IDENTITY))]
    assert got[0] == got[1] == [0, 0x51, True, True, 3]


def test_late_refusals_as_libtpms(start_swtpm, issuer):
    """libtpms gives E.LATE_REFUSALS, as the engine does (test_engine_daa)."""
    tpm = owned_swtpm(start_swtpm)
    cred = D.join(tpm, issuer, H.OWNER, tpm.ek_pub)
    assert E.scenario_late_refusals(tpm, issuer, cred) == E.LATE_REFUSALS


def test_save_state_keeps_daa_sessions_on_libtpms(start_swtpm, issuer):
    """libtpms saves DAA sessions with TPM_SaveState (TPM_STCLEAR_DATA) and
    TPM_Startup(ST_STATE) brings them back -- what the engine does too
    (test_engine_daa.test_daa_session_survives_save_state)."""
    from tpm.fixtures import Swtpm
    tpm = owned_swtpm(start_swtpm, name="st")
    c = E.start_join(tpm, issuer, 4)
    assert H.run(tpm, 0xC1, 0x98).rc == 0                  # SaveState
    tpm.sw.stop()
    again = Swtpm(tpm.sw.dir, startup=False).start()
    try:
        tpm.sw = again
        assert H.run(tpm, 0xC1, 0x99, H.u16(2)).rc == 0    # Startup(ST_STATE)
        assert E.daa_handles(tpm) == [c.handle]
        c.ok(D.ORD_JOIN, 4, issuer.b_R0, issuer.b_n)
        c.ok(D.ORD_JOIN, 5, issuer.b_R1, issuer.b_n)
    finally:
        again.stop()


def honest_inputs(issuer, ek_pub):
    """The honest inputData0/1 of every join stage (stage 8's NE is encrypted
    to the TPM's own EK); they need no earlier output of the TPM."""
    root = issuer.keys[0]
    st = issuer.settings()
    b = issuer
    return {
        0: (H.u32(1), b""), 1: (D.rsa_modulus(root), b""),
        2: (st, D.rsa_sign(root, D.H(D.rsa_modulus(root)) + st)), 3: (H.u32(0), b""),
        4: (b.b_R0, b.b_n), 5: (b.b_R1, b.b_n), 6: (b.b_S0, b.b_n), 7: (b.b_S1, b.b_n),
        8: (ek_pub.encrypt(b"NE" * 10, D.OAEP_TCPA), b""),
        9: (b.b_R0, b.b_n), 10: (b.b_R1, b.b_n), 11: (b.b_S0, b.b_n), 12: (b.b_S1, b.b_n),
        13: (b.b_Gamma, D.i2b(b.zeta_I, 256)), 14: (b.b_Gamma, b""), 15: (b.b_Gamma, b""),
        16: (b"c" * 20, b""), 17: (b"", b""), 18: (b"", b""), 19: (b"", b""), 20: (b"", b""),
        21: (b"", b""), 22: (b"\x01" * 128, b""), 23: (b"\x02" * 192, b""), 24: (b"", b""),
    }


def honest_sign_inputs(issuer, cred):
    b = issuer
    return {
        0: (b.settings(), b""), 1: (cred.tpm_specific, b""),
        2: (b.b_R0, b.b_n), 3: (b.b_R1, b.b_n), 4: (b.b_S0, b.b_n), 5: (b.b_S1, b.b_n),
        6: (b.b_Gamma, D.i2b(b.zeta(b"v"), 256)), 7: (b.b_Gamma, b""), 8: (b.b_Gamma, b""),
        9: (b"c" * 20, b""), 10: (b"\x01", b"m" * 20), 11: (b"", b""), 12: (b"", b""),
        13: (cred.v0_blob, b""), 14: (cred.v0_blob, b""), 15: (cred.v1_blob, b""),
    }


@pytest.mark.parametrize("ordinal", [
    pytest.param(D.ORD_JOIN, id="join", marks=pytest.mark.slow),    # ~5 s
    pytest.param(D.ORD_SIGN, id="sign")])
def test_random_stage_sequences_as_libtpms(start_swtpm, issuer, ordinal):
    """Hypothesis: runs of requests -- mostly the next honest stage, sometimes
    a stage out of order, another stage's inputs, a truncated input or a
    wrong handle -- get the same return code, request by request, from
    libtpms and the engine, and leave the same number of DAA sessions."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    tpms = [owned_swtpm(start_swtpm), E.owned_engine(IBM_SWTPM_IDENTITY)]
    if ordinal == D.ORD_JOIN:
        inputs, last = [honest_inputs(issuer, t.ek_pub) for t in tpms], 24
    else:
        inputs = [honest_sign_inputs(issuer, D.join(t, issuer, H.OWNER, t.ek_pub))
                  for t in tpms]
        last = 15
    kinds = ["next"] * 40 + ["stage", "inputs", "cut0", "cut1", "handle"]
    reached: list[int] = []

    @settings(max_examples=30, deadline=None, derandomize=True)
    @given(st.randoms(use_true_random=False))
    def run(rnd):
        moves = [(rnd.choice(kinds), rnd.randrange(last + 2), rnd.randrange(300))
                 for _ in range(rnd.randrange(10, 3 * last))]
        trace, deepest = [], []
        for tpm, honest in zip(tpms, inputs):
            for h in E.daa_handles(tpm):
                E.flush_daa(tpm, h)
            c = D.DAAClient(tpm, H.OWNER)
            nxt, rcs, deep = 0, [], 0
            for kind, k, cut in moves:
                stage, (in0, in1), handle = nxt, honest[nxt], c.handle
                if kind == "stage":
                    stage = k
                elif kind == "inputs":
                    in0, in1 = honest[min(k, last)]
                elif kind == "cut0":
                    in0 = in0[:cut % (len(in0) + 1)]
                elif kind == "cut1":
                    in1 = in1[:cut % (len(in1) + 1)]
                elif kind == "handle":
                    handle = c.handle ^ (k + 1)
                rc, out = c.call(ordinal, stage, in0, in1, handle=handle)
                rcs.append(rc)
                if rc == 0 and stage == 0:
                    c.handle, nxt = int.from_bytes(out, "big"), 1
                elif rc == 0:
                    nxt = 0 if stage == last else stage + 1
                elif c.handle not in E.daa_handles(tpm):
                    nxt = 0                 # the session died with the error
                deep = max(deep, stage if rc == 0 else 0)
            rcs.append(len(E.daa_handles(tpm)))
            trace.append(rcs)
            deepest.append(deep)
        assert trace[0] == trace[1], list(zip(moves, trace[0], trace[1]))
        reached.append(deepest[0])

    run()
    assert max(reached) == last, reached        # some runs complete
