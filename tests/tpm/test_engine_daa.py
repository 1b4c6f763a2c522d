"""TPM_DAA_Join / TPM_DAA_Sign on the engine: a full join (the issuer checks
the TPM's proof and issues a credential), a full sign verified with the DAA
verification equations, and the refusals (order of stages, handles, sizes,
issuer settings) the engine shares with libtpms (test_daa_swtpm.py)."""

from __future__ import annotations

import struct

import pytest

import daa_issuer as D
import engine_helpers as H
from pyxl.tpm import TPM
from pyxl.tpm import constants as C
from pyxl.tpm.identity import IBM_SWTPM_IDENTITY

J, SG = D.ORD_JOIN, D.ORD_SIGN


def owned_engine(identity=None):
    """An owned engine TPM (identity: IBM_SWTPM_IDENTITY to compare with libtpms)."""
    tpm = H.new_tpm(**({"identity": identity} if identity else {}))
    tpm.ek_pub = H.read_pubek(tpm)      # readable until an owner is installed
    H.take_ownership(tpm)
    return tpm


@pytest.fixture(scope="module")
def issuer():
    return D.Issuer()


# ---------------------------------------------------------------- scenarios (also run on swtpm)

def scenario_join_and_sign(tpm, issuer):
    ek = tpm.ek_pub
    cred = D.join(tpm, issuer, H.OWNER, ek)
    msg, n_v = b"attested message", b"N" * 20
    sig = D.sign(tpm, issuer, H.OWNER, cred, msg, n_v)
    assert D.verify(issuer, sig, msg, n_v)
    assert not D.verify(issuer, sig, b"another message", n_v)
    assert not D.verify(issuer, sig, msg, b"M" * 20)
    forged = D.Signature(**{**sig.__dict__, "s_v": sig.s_v + 1})
    assert not D.verify(issuer, forged, msg, n_v)
    # the same TPM signs again with the same credential; the pseudonym
    # N_V = zeta^f is the same for the same basename (linkability by choice)
    sig2 = D.sign(tpm, issuer, H.OWNER, cred, msg, n_v)
    assert D.verify(issuer, sig2, msg, n_v)
    assert sig2.N_V == sig.N_V and sig2.T != sig.T
    sig3 = D.sign(tpm, issuer, H.OWNER, cred, msg, n_v, basename=b"other")
    assert D.verify(issuer, sig3, msg, n_v) and sig3.N_V != sig.N_V
    return cred


def daa_handles(tpm):
    b = H.cap_value(tpm, 0x14, H.u32(C.TPM_RT_DAA_TPM))
    n = struct.unpack(">H", b[:2])[0]
    return list(struct.unpack(">%dI" % n, b[2:]))


def daa_free(tpm):
    return struct.unpack(">I", H.cap_value(tpm, 5, H.u32(C.TPM_CAP_PROP_DAASESS)))[0]


def daa_max(tpm):
    return struct.unpack(">I", H.cap_value(tpm, 5, H.u32(C.TPM_CAP_PROP_MAX_DAASESS)))[0]


def flush_daa(tpm, handle):
    return H.run(tpm, 0xC1, 0xBA, H.u32(handle) + H.u32(C.TPM_RT_DAA_TPM)).rc


def start_join(tpm, issuer, upto: int, settings: bytes | None = None) -> D.DAAClient:
    """A join session advanced until stage `upto` is next."""
    c = D.DAAClient(tpm, H.OWNER)
    c.handle = struct.unpack(">I", c.ok(J, 0, H.u32(1)))[0]
    if upto > 1:
        c.ok(J, 1, D.rsa_modulus(issuer.keys[0]))
    if upto > 2:
        st = settings or issuer.settings()
        c.ok(J, 2, st, D.rsa_sign(issuer.keys[0], D.H(D.rsa_modulus(issuer.keys[0])) + st))
    if upto > 3:
        c.ok(J, 3, H.u32(0))
    return c


def refusal_codes(tpm, issuer) -> list:
    """Malformed and out-of-order requests; returns every return code, in order."""
    out = []

    def note(rc):
        out.append(rc)
        return rc

    # no session: a later stage names a handle that does not exist
    c = D.DAAClient(tpm, H.OWNER)
    note(c.call(J, 3, H.u32(0), handle=0x12345678)[0])
    note(c.call(SG, 2, handle=0x12345678)[0])
    # stage 0: the count must be a non-zero u32
    note(c.call(J, 0, H.u32(0))[0])
    note(c.call(J, 0, b"\x00\x01")[0])
    note(daa_free(tpm) == daa_max(tpm))
    # as many DAA sessions as there are slots, then TPM_RESOURCES
    others = []
    while len(others) <= daa_max(tpm):
        rc, h = c.call(J, 0, H.u32(1))
        if rc:
            note(rc)
            break
        others.append(struct.unpack(">I", h)[0])
    note(daa_free(tpm))
    note(sorted(daa_handles(tpm)) == sorted(others))
    note([flush_daa(tpm, h) for h in others[1:]])
    # a stage out of order ends the session
    c.handle = others[0]
    note(len(daa_handles(tpm)))
    note(c.call(J, 5)[0])                       # stage 5 while 1 is expected
    note(c.call(J, 1, D.rsa_modulus(issuer.keys[0]))[0])   # the session is gone
    note(len(daa_handles(tpm)))
    # stage 1: the issuer key must be 256 bytes
    c = start_join(tpm, issuer, 1)
    note(c.call(J, 1, b"\x01" * 255)[0])
    # stage 2: a bad settings structure, a short signature, a bad signature
    c = start_join(tpm, issuer, 2)
    note(c.call(J, 2, issuer.settings()[:-1], b"\x00" * 256)[0])
    c = start_join(tpm, issuer, 2)
    note(c.call(J, 2, issuer.settings(), b"\x00" * 255)[0])
    c = start_join(tpm, issuer, 2)
    note(c.call(J, 2, issuer.settings(), b"\x01" * 256)[0])
    # a two-key chain whose second key is not signed by the first
    c = D.DAAClient(tpm, H.OWNER)
    c.handle = struct.unpack(">I", c.ok(J, 0, H.u32(2)))[0]
    c.ok(J, 1, D.rsa_modulus(issuer.keys[0]))
    note(c.call(J, 1, D.rsa_modulus(issuer.keys[0]), b"\x05" * 256)[0])
    # stage 3: a count of the wrong size
    c = start_join(tpm, issuer, 3)
    note(c.call(J, 3, b"\x00" * 5)[0])
    # stage 4: R0 or n that do not hash to the settings
    c = start_join(tpm, issuer, 4)
    note(c.call(J, 4, issuer.b_R1, issuer.b_n)[0])
    c = start_join(tpm, issuer, 4)
    note(c.call(J, 4, issuer.b_R0, issuer.b_n[1:])[0])
    # stage 8: NE of the wrong size
    c = start_join(tpm, issuer, 4)
    for st, x in ((4, issuer.b_R0), (5, issuer.b_R1), (6, issuer.b_S0), (7, issuer.b_S1)):
        c.ok(J, st, x, issuer.b_n)
    note(c.call(J, 8, b"\x00" * 255)[0])
    # a handle of another session, a flushed session
    c = start_join(tpm, issuer, 4)
    note(c.call(J, 4, issuer.b_R0, issuer.b_n, handle=c.handle ^ 1)[0])
    note(len(daa_handles(tpm)))                 # the real session lives on
    note(flush_daa(tpm, c.handle))
    c = start_join(tpm, issuer, 4)
    note(flush_daa(tpm, c.handle))
    note(flush_daa(tpm, c.handle))
    note(c.call(J, 4, issuer.b_R0, issuer.b_n)[0])
    # without owner authorization (tag C1), a wrong owner secret
    c = start_join(tpm, issuer, 4)
    params = (bytes([4]) + H.u32(256) + issuer.b_R0 + H.u32(256) + issuer.b_n)
    note(H.run(tpm, 0xC1, J, H.u32(c.handle) + params).rc)
    note(len(daa_handles(tpm)))
    c = start_join(tpm, issuer, 4)
    c.owner = b"x" * 20
    note(c.call(J, 4, issuer.b_R0, issuer.b_n)[0])
    note(len(daa_handles(tpm)))
    # a modulus n longer than DAA_scratch: R0^f0 mod n does not fit (TPM_SIZE)
    big_n = b"\xff" * 300
    c = start_join(tpm, issuer, 4, issuer.settings(DAA_digest_n=D.H(big_n)))
    note(c.call(J, 4, issuer.b_R0, big_n)[0])
    # truncated inputData1
    c = start_join(tpm, issuer, 4)
    sess = H.Session(tpm)
    body = bytes([4]) + H.u32(256) + issuer.b_R0 + H.u32(300) + issuer.b_n
    tr = sess.trailer(J, body, H.OWNER)
    note(H.run(tpm, 0xC2, J, H.u32(c.handle) + body + tr).rc)
    note(len(daa_handles(tpm)))
    # sign: bad settings, bad blob, settings of another issuer
    c = D.DAAClient(tpm, H.OWNER)
    note(c.call(SG, 0, issuer.settings() + b"\x00")[0])
    c.handle = struct.unpack(">I", c.ok(SG, 0, issuer.settings()))[0]
    note(c.call(SG, 1, b"\x00" * 100)[0])
    note(len(daa_handles(tpm)))
    return out


def scenario_refusals(tpm, issuer):
    codes = refusal_codes(tpm, issuer)
    return codes


def scenario_wrong_issuer_settings(tpm, issuer, cred):
    """A credential joined under one issuer settings, signed under others."""
    c = D.DAAClient(tpm, H.OWNER)
    other = issuer.settings(DAA_digest_gamma=b"\x07" * 20)
    c.handle = struct.unpack(">I", c.ok(SG, 0, other))[0]
    c.ok(SG, 1, cred.tpm_specific)
    rc1 = c.call(SG, 2, issuer.b_R0, issuer.b_n)[0]
    # the right settings, a blob of the wrong type (v0 where the TPM_DAA_TPM goes)
    c = D.DAAClient(tpm, H.OWNER)
    c.handle = struct.unpack(">I", c.ok(SG, 0, issuer.settings()))[0]
    rc2 = c.call(SG, 1, cred.v0_blob)[0]
    # right blob, then v1 where v0 goes at stage 13
    c = D.DAAClient(tpm, H.OWNER)
    c.handle = struct.unpack(">I", c.ok(SG, 0, issuer.settings()))[0]
    c.ok(SG, 1, cred.tpm_specific)
    for st, x in ((2, issuer.b_R0), (3, issuer.b_R1), (4, issuer.b_S0), (5, issuer.b_S1)):
        c.ok(SG, st, x, issuer.b_n)
    rc3 = c.call(SG, 6, issuer.b_Gamma, b"\x02" + bytes(255))[0]      # w of the wrong order
    return [rc1, rc2, rc3]


def scenario_late_refusals(tpm, issuer, cred) -> list:
    """Bad input at the later stages of an otherwise honest join / sign."""
    j = lambda *stop: D.join(tpm, issuer, H.OWNER, tpm.ek_pub, stop=stop)  # noqa: E731
    sg = lambda *stop: D.sign(tpm, issuer, H.OWNER, cred, b"m", b"n" * 20,  # noqa: E731
                              stop=stop)
    return [
        j(8, b"\x01" * 256),                             # NE not encrypted to the EK
        j(13, issuer.b_Gamma, b"\x02" * 255),            # w of the wrong size
        j(13, issuer.b_Gamma, b"\x00" * 255 + b"\x02"),  # w of the wrong order
        j(14, issuer.b_Gamma[1:]),                        # Gamma not the issuer's
        j(16, b"\x00" * 21),                             # c_h of the wrong size
        j(22, b"\x00" * 127),                            # u2 of the wrong size
        j(23, b"\x00" * 193),                            # u3 of the wrong size
        j(17, b"ignored", b"ignored"),                    # stages without input take any
        sg(1, cred.tpm_specific[:-1]),                    # a truncated blob
        sg(5, issuer.b_S0, issuer.b_n),                   # S0 where S1 goes
        sg(10, b"\x02", D.H(b"m")),                      # an unknown selector
        sg(10, b"", D.H(b"m")),
        sg(10, b"\x01", D.H(b"m")[1:]),                  # a message digest of 19 bytes
        sg(10, b"\x00", H.u32(0x40000000)),              # the SRK is no AIK
        sg(10, b"\x00", H.u32(0x01020304)),              # no such key
        sg(10, b"\x00", b"\x40\x00\x00"),
        sg(13, cred.v1_blob),                             # v1 where v0 goes
        sg(14, cred.tpm_specific),
        sg(15, cred.v0_blob),                             # v0 where v1 goes
        daa_handles(tpm),
    ]


LATE_REFUSALS = [
    C.TPM_DECRYPT_ERROR, C.TPM_DAA_INPUT_DATA1, C.TPM_DAA_WRONG_W, C.TPM_DAA_INPUT_DATA0,
    C.TPM_DAA_INPUT_DATA0, C.TPM_DAA_INPUT_DATA0, C.TPM_DAA_INPUT_DATA0, 0,
    C.TPM_DAA_INPUT_DATA0, C.TPM_DAA_INPUT_DATA0, C.TPM_DAA_INPUT_DATA0, C.TPM_DAA_INPUT_DATA0,
    C.TPM_DAA_INPUT_DATA1, C.TPM_DAA_INPUT_DATA1, C.TPM_DAA_INPUT_DATA1, C.TPM_DAA_INPUT_DATA1,
    C.TPM_DAA_INPUT_DATA0, C.TPM_DAA_INPUT_DATA0, C.TPM_DAA_INPUT_DATA0,
    [],
]


def save_context(tpm, handle, rt=C.TPM_RT_DAA_TPM):
    r = H.run(tpm, 0xC1, 0xB8, H.u32(handle) + H.u32(rt) + b"daa-label-16byte")
    return r.rc, r.body[4:] if r.rc == 0 else b""


def load_context(tpm, blob, keep):
    r = H.run(tpm, 0xC1, 0xB9, H.u32(0) + bytes([keep]) + H.u32(len(blob)) + blob)
    return r.rc, struct.unpack(">I", r.body[:4])[0] if r.rc == 0 else 0


def scenario_context(tpm, issuer) -> list:
    """DAA sessions leave the TPM with SaveContext and come back with
    LoadContext (same handle or a new one) in the middle of a join and a
    sign, which still verify; a context loads once; refusals."""
    out = []

    def swap(keep):
        def hook(stage, c):
            if c.handle and stage in (10, 13):
                rc, blob = save_context(tpm, c.handle)
                out.append(rc)
                out.append(daa_handles(tpm))
                rc, h = load_context(tpm, blob, keep)
                out.append(rc)
                out.append(h == c.handle if keep else None)
                out.append(load_context(tpm, blob, keep)[0])      # used up
                c.handle = h
        return hook

    cred = D.join(tpm, issuer, H.OWNER, tpm.ek_pub, hook=swap(1))
    sig = D.sign(tpm, issuer, H.OWNER, cred, b"m", b"n" * 20, hook=swap(0))
    out.append(D.verify(issuer, sig, b"m", b"n" * 20))
    out.append(save_context(tpm, 0x01020304)[0])
    c = start_join(tpm, issuer, 4)
    rc, blob = save_context(tpm, c.handle)
    others = [start_join(tpm, issuer, 2).handle for _ in range(daa_max(tpm))]
    out.append(load_context(tpm, blob, 0)[0])                 # no free slot
    for h in others:
        flush_daa(tpm, h)
    out.append(load_context(tpm, blob, 0)[0])                 # that used it up
    c = start_join(tpm, issuer, 4)
    rc, blob = save_context(tpm, c.handle)
    out.append(load_context(tpm, blob, 1)[0])
    out.append(load_context(tpm, blob, 1)[0])
    out.append(flush_daa(tpm, c.handle))
    out.append(daa_handles(tpm))
    return out


CONTEXT_CODES = [0, [], 0, True, C.TPM_BADCONTEXT] * 2 + [0, [], 0, None, C.TPM_BADCONTEXT] * 2 + \
    [True, C.TPM_INVALID_RESOURCE, C.TPM_RESOURCES, C.TPM_BADCONTEXT, 0, C.TPM_BADCONTEXT, 0, []]


def scenario_new_daa_proof(tpm, issuer) -> list:
    """SetCapability(TPM_SET_PERM_DATA, TPM_PD_DAAPROOF) renews the DAA secrets
    (libtpms: no authorization needed): old blobs die, the pseudonym changes."""
    cred = D.join(tpm, issuer, H.OWNER, tpm.ek_pub)
    before = D.sign(tpm, issuer, H.OWNER, cred, b"m", b"n" * 20)
    setcap = H.u32(2) + H.u32(4) + H.u32(C.TPM_PD_DAAPROOF) + H.u32(0)
    out = [H.run(tpm, 0xC1, 0x3F, setcap).rc]
    out.append(D.sign(tpm, issuer, H.OWNER, cred, b"m", b"n" * 20, stop=(1, cred.tpm_specific)))
    cred = D.join(tpm, issuer, H.OWNER, tpm.ek_pub)
    after = D.sign(tpm, issuer, H.OWNER, cred, b"m", b"n" * 20)
    out.append(D.verify(issuer, after, b"m", b"n" * 20))
    out.append(after.N_V != before.N_V)
    # other TPM_SET_PERM_DATA sub-capabilities: TPM_PD_TPMDAASEED cannot be set
    out.append(H.run(tpm, 0xC1, 0x3F, H.u32(2) + H.u32(4) + H.u32(24) + H.u32(4) + H.u32(0)).rc)
    return out


# ---------------------------------------------------------------- engine tests

def test_join_sign_verify(issuer):
    tpm = owned_engine()
    scenario_join_and_sign(tpm, issuer)
    assert daa_handles(tpm) == [] and daa_free(tpm) == daa_max(tpm) == 1


def test_join_with_a_two_key_chain():
    iss = D.Issuer(chain=2)
    tpm = owned_engine()
    cred = D.join(tpm, iss, H.OWNER, tpm.ek_pub, count=7)
    sig = D.sign(tpm, iss, H.OWNER, cred, b"m", b"n" * 20)
    assert D.verify(iss, sig, b"m", b"n" * 20)


def test_refusal_codes(issuer):
    tpm = owned_engine()
    got = refusal_codes(tpm, issuer)
    E = C
    assert got == [
        E.TPM_BAD_HANDLE, E.TPM_BAD_HANDLE, E.TPM_DAA_INPUT_DATA0, E.TPM_DAA_INPUT_DATA0, True,
        E.TPM_RESOURCES, 0, True, [], 1, E.TPM_DAA_STAGE, E.TPM_BAD_HANDLE, 0,
        E.TPM_DAA_INPUT_DATA0,
        E.TPM_DAA_INPUT_DATA0, E.TPM_DAA_INPUT_DATA1, E.TPM_DAA_ISSUER_VALIDITY,
        E.TPM_DAA_ISSUER_VALIDITY,
        E.TPM_DAA_INPUT_DATA0,
        E.TPM_DAA_INPUT_DATA0, E.TPM_DAA_INPUT_DATA1,
        E.TPM_DAA_INPUT_DATA0,
        E.TPM_BAD_HANDLE, 1, 0,
        0, E.TPM_BAD_HANDLE, E.TPM_BAD_HANDLE,
        E.TPM_BADTAG, 0, E.TPM_AUTHFAIL, 0, E.TPM_SIZE,
        E.TPM_BAD_PARAM_SIZE, 0,
        E.TPM_DAA_INPUT_DATA0, E.TPM_DAA_INPUT_DATA0, 0,
    ], got


@pytest.mark.parametrize("identity", [None, IBM_SWTPM_IDENTITY], ids=["xen", "libtpms"])
def test_late_refusals(issuer, identity):
    tpm = owned_engine(identity)
    cred = D.join(tpm, issuer, H.OWNER, tpm.ek_pub)
    got = scenario_late_refusals(tpm, issuer, cred)
    assert got == LATE_REFUSALS, [C.rc_name(x) if isinstance(x, int) else x for x in got]


def test_context_save_load(issuer):
    tpm = owned_engine()
    got = scenario_context(tpm, issuer)
    assert got == CONTEXT_CODES, got


def test_new_daa_proof(issuer):
    got = scenario_new_daa_proof(owned_engine(), issuer)
    assert got == [0, C.TPM_DAA_INPUT_DATA0, True, True, C.TPM_BAD_PARAMETER]


def test_wrong_issuer_settings(issuer):
    tpm = owned_engine()
    cred = D.join(tpm, issuer, H.OWNER, tpm.ek_pub)
    assert scenario_wrong_issuer_settings(tpm, issuer, cred) == [
        C.TPM_DAA_ISSUER_SETTINGS, C.TPM_DAA_INPUT_DATA0, C.TPM_DAA_WRONG_W]


def test_blobs_belong_to_their_tpm(issuer):
    a, b = owned_engine(), owned_engine()
    cred = D.join(a, issuer, H.OWNER, a.ek_pub)
    c = D.DAAClient(b, H.OWNER)
    c.handle = struct.unpack(">I", c.ok(SG, 0, issuer.settings()))[0]
    assert c.call(SG, 1, cred.tpm_specific)[0] == C.TPM_DAA_INPUT_DATA0


def test_rejoin_gives_the_same_f_and_a_new_ek_a_new_one(issuer):
    """f derives from tpmDAASeed, the issuer's root key and the count: the same
    TPM joining twice has the same pseudonym for a basename; the DAA secrets
    survive OwnerClear (as in libtpms) and the pseudonym with them."""
    tpm = owned_engine()
    ek = tpm.ek_pub
    sigs = []
    for _ in range(2):
        cred = D.join(tpm, issuer, H.OWNER, ek)
        sigs.append(D.sign(tpm, issuer, H.OWNER, cred, b"m", b"n" * 20))
    assert sigs[0].N_V == sigs[1].N_V
    seed = tpm.perm.daa_seed
    r, _ = H.auth1(tpm, 0x5B, b"", b"", H.OWNER)          # OwnerClear
    assert r.rc == 0 and tpm.perm.daa_seed == seed


def test_no_owner_no_daa(issuer):
    tpm = H.new_tpm()
    c = D.DAAClient(tpm, H.OWNER)
    assert c.call(J, 0, H.u32(1))[0] == C.TPM_NOSRK


def test_daa_session_survives_save_state(issuer):
    """A DAA session is TPM_STCLEAR_DATA: TPM_SaveState keeps it for
    TPM_Startup(ST_STATE), TPM_Startup(ST_CLEAR) drops it; the saved session
    goes through dump()/load()."""
    tpm = owned_engine()
    c = start_join(tpm, issuer, 4)
    assert H.run(tpm, 0xC1, 0x98).rc == 0               # SaveState
    tpm2 = TPM.load(tpm.dump(), key_source=H.key_pool())
    assert tpm2.power_on("state") == 0
    assert daa_handles(tpm2) == [c.handle]
    c.tpm = tpm2
    c.ok(J, 4, issuer.b_R0, issuer.b_n)
    assert tpm2.power_on("clear") == 0
    assert daa_handles(tpm2) == [] and daa_free(tpm2) == 1
    assert H.run(tpm2, 0xC1, 0x98).rc == 0 and tpm2.saved["daa_sessions"] == []


def test_old_state_blob_loads_with_fresh_daa_secrets():
    import json

    from pyxl.tpm import state
    tpm = owned_engine()
    blob = tpm.dump()
    body = json.loads(blob[len(state.MAGIC) + 6:-32])
    assert body["perm"]["daa"][0] == tpm.perm.daa_seed.hex()
    del body["perm"]["daa"]                              # a blob from before DAA
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    import hashlib
    old = (state.MAGIC + struct.pack(">HI", 3, len(raw)) + raw + hashlib.sha256(raw).digest())
    t2 = TPM.load(old)
    assert len(t2.perm.daa_seed) == 20 and len(t2.perm.daa_blob_key) == 16
    assert TPM.load(t2.dump()).perm.daa_proof == t2.perm.daa_proof


def test_modular_exponentiation_is_pow():
    """The engine's x^y mod n (OpenSSL's BN_mod_exp_mont_consttime) is
    CPython's pow() for an odd n, also for y = 0, x >= n, x = 0 and n = 1;
    an even n (0 included) is TPM_DAA_WRONG_W, as libtpms (OpenSSL's
    constant-time BN_mod_exp refuses it; scenario_even_modulus shows it on
    swtpm)."""
    import secrets

    from pyxl.tpm.commands.daa import _modexp
    from pyxl.tpm.engine import TPMError
    odd = secrets.randbits(2048) | (1 << 2047) | 1
    for n in (odd, 1, 3):
        for x in (secrets.randbelow(n), n + 5, 0, 1, n - 1):
            for y in (secrets.randbits(1752), 1 << 300, 65537, 1, 0):
                got = _modexp(x, y, n)
                assert got == pow(x, y, n) and type(got) is int, (n, x, y)
    for n in (odd - 1, 1 << 2047, 2, 0):
        with pytest.raises(TPMError) as e:
            _modexp(5, 3, n)
        assert e.value.rc == C.TPM_DAA_WRONG_W


def test_bn_loads_with_the_first_daa_exponentiation():
    """A TPM that runs no DAA loads neither ctypes nor the BN binding."""
    import subprocess
    import sys
    code = ("import sys; from pyxl.tpm import TPM; t = TPM(generate_ek=False); "
            "t.power_on('clear'); print('ctypes' in sys.modules, 'pyxl.tpm.bn' in sys.modules); "
            "from pyxl.tpm.commands.daa import _modexp; _modexp(2, 3, 5); "
            "print('ctypes' in sys.modules, 'pyxl.tpm.bn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True", "True"]


def test_without_libcrypto_a_stage_fails_and_its_session_ends(issuer, monkeypatch, tmp_path):
    """No libcrypto.so.3: the stage that needs an exponentiation answers
    TPM_FAIL (the engine's answer to an internal error, logged), its DAA
    session is gone, and the TPM goes on answering."""
    from pyxl.tpm import bn
    tpm = owned_engine()
    c = start_join(tpm, issuer, 4)
    monkeypatch.setattr(bn, "SONAME", str(tmp_path / "libcrypto-missing.so"))
    monkeypatch.setattr(bn, "_LIBRARY", None)
    assert c.call(J, 4, issuer.b_R0, issuer.b_n)[0] == C.TPM_FAIL
    assert daa_handles(tpm) == []
    monkeypatch.undo()
    c = start_join(tpm, issuer, 4)
    c.ok(J, 4, issuer.b_R0, issuer.b_n)


def even_key_signature(data: bytes) -> tuple[bytes, bytes]:
    """(n, s): an even 2048-bit n = 2 m (m a 2047-bit RSA modulus) and an
    s with s^65537 mod n the PKCS#1 v1.5 SHA-1 encoding of data -- a
    signature by arithmetic, under a modulus OpenSSL will not use."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2047)
    m, d = key.public_key().public_numbers().n, key.private_numbers().d
    t = bytes.fromhex("3021300906052b0e03021a05000414") + hashlib.sha1(data).digest()
    em = int.from_bytes(b"\x00\x01" + b"\xff" * (256 - len(t) - 3) + b"\x00" + t, "big")
    s = pow(em, d, m)
    if s % 2 != em % 2:
        s += m                                   # s = em (mod 2) too: s^e = em (mod 2m)
    assert pow(s, 65537, 2 * m) == em
    return D.i2b(2 * m, 256), D.i2b(s, 256)


def scenario_issuer_signatures(tpm, issuer) -> list:
    """Stage 2's signature on the issuer settings: by an even modulus (valid
    as arithmetic), as large as the modulus, on other data, by the
    chain's key (a failed stage ends its session); the return codes."""
    out = []
    st = issuer.settings()
    root = D.rsa_modulus(issuer.keys[0])
    even_n, even_sig = even_key_signature(D.H(root) + st)
    even_root_sig = even_key_signature(D.H(even_n) + st)[1]
    for key, sig in ((even_n, even_root_sig), (root, b"\xff" * 256),
                     (root, D.rsa_sign(issuer.keys[0], D.H(root) + st + b"x")), (even_n, even_sig),
                     (root, D.rsa_sign(issuer.keys[0], D.H(root) + st))):
        c = D.DAAClient(tpm, H.OWNER)
        c.handle = struct.unpack(">I", c.ok(J, 0, H.u32(1)))[0]
        c.ok(J, 1, key)
        out.append(c.call(J, 2, st, sig)[0])
    return out


ISSUER_SIGNATURES = [C.TPM_DAA_ISSUER_VALIDITY] * 4 + [0]


def test_issuer_signatures(issuer):
    assert scenario_issuer_signatures(owned_engine(), issuer) == ISSUER_SIGNATURES


def scenario_even_modulus(tpm, issuer) -> list:
    """Issuer settings naming an even n (stage 4 of the join) or an even
    Gamma (stage 13): the return codes and the DAA sessions left."""
    out = []
    for bad_n in (D.i2b(1 << 2047, 256), issuer.b_n[:-1] + b"\x00", bytes(256)):
        c = start_join(tpm, issuer, 4, issuer.settings(DAA_digest_n=D.H(bad_n)))
        out.append(c.call(J, 4, issuer.b_R0, bad_n)[0])
    even_gamma = issuer.b_Gamma[:-1] + b"\x00"
    c = start_join(tpm, issuer, 4, issuer.settings(DAA_digest_gamma=D.H(even_gamma)))
    for st, x in ((4, issuer.b_R0), (5, issuer.b_R1), (6, issuer.b_S0), (7, issuer.b_S1)):
        c.ok(J, st, x, issuer.b_n)
    c.ok(J, 8, tpm.ek_pub.encrypt(b"NE" * 10, D.OAEP_TCPA))
    for st, x in ((9, issuer.b_R0), (10, issuer.b_R1), (11, issuer.b_S0), (12, issuer.b_S1)):
        c.ok(J, st, x, issuer.b_n)
    out.append(c.call(J, 13, even_gamma, D.i2b(issuer.zeta_I, 256))[0])
    out.append(daa_handles(tpm))
    return out


EVEN_MODULUS = [C.TPM_DAA_WRONG_W] * 4 + [[]]


def test_even_modulus(issuer):
    assert scenario_even_modulus(owned_engine(), issuer) == EVEN_MODULUS
