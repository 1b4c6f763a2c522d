"""Authorization (OIAP/OSAP, HMACs computed in the test), ownership, the EK,
clearing, the dictionary-attack lockout and the physical-presence commands."""

import os
import struct

import pytest

from engine_helpers import (OWNER, SRK, Session, auth1, cap_value, getcap, hmac1, key_pool,
                            new_tpm, parse_pubkey, read_pubek, run, sha1, take_ownership,
                            u16, u32)

from pyxl.tpm import TPM
from pyxl.tpm import constants as C

RC = C.TPM_RESULT


@pytest.fixture
def tpm():
    return new_tpm()


@pytest.fixture
def owned():
    t = new_tpm()
    take_ownership(t)
    return t


def capowner(tpm, secret=OWNER, sess=None, cont=False):
    return auth1(tpm, 0x66, b"", b"", secret, sess=sess, cont=cont)


def test_unowned_tpm(tpm):
    assert cap_value(tpm, 5, u32(0x111)) == b"\x00"
    r, _ = capowner(tpm)
    assert r.rc == RC.TPM_NOSRK
    pub = read_pubek(tpm)
    assert pub.key_size == 2048


def test_takeownership_then_owner_commands(owned):
    tpm = owned
    assert cap_value(tpm, 5, u32(0x111)) == b"\x01"
    r, out = capowner(tpm)
    assert r.rc == 0
    ver, nv, _vol = out[:4], *struct.unpack(">II", out[4:12])
    assert ver == bytes([1, 2, 0, 7])
    assert nv & 2 and not nv & 1 and not nv & 4      # ownership allowed, enabled, active
    assert not nv & 8                                 # readPubek cleared by TakeOwnership
    assert nv & (1 << 16)                             # readSRKPub
    # ReadPubek is refused now; the owner reads it instead
    assert run(tpm, 0xC1, 0x7C, bytes(20)).rc == RC.TPM_DISABLED_CMD
    r, out = auth1(tpm, 0x81, b"", u32(0x40000006), OWNER)
    assert r.rc == 0 and parse_pubkey(out)[0].key_size == 2048
    r, out = auth1(tpm, 0x81, b"", u32(0x40000000), OWNER)
    assert r.rc == 0
    # a second TakeOwnership, its srkParams 10 zero bytes: read as a TPM_KEY12
    # (first byte 0) whose tag is wrong, refused while parsing -- swtpm answers
    # TPM_BAD_KEY_PROPERTY to this frame too (libtpms TPM_Key_CheckTag)
    ek_params = u16(5) + u32(0) + u32(0) + bytes(10)
    assert run(tpm, 0xC2, 0x0D, ek_params).rc == RC.TPM_BAD_KEY_PROPERTY


def test_wrong_hmac_is_authfail_and_ends_session(owned):
    s = Session(owned)
    r, _ = capowner(owned, secret=b"x" * 20, sess=s, cont=True)
    assert r.rc == RC.TPM_AUTHFAIL and len(r.raw) == 10
    assert run(owned, 0xC1, 0xBA, u32(s.handle) + u32(2)).rc == RC.TPM_INVALID_AUTHHANDLE


def test_session_continues_with_rolling_nonces(owned):
    s = Session(owned)
    first = s.nonce_even
    for _ in range(3):
        r, _ = capowner(owned, sess=s, cont=True)
        assert r.rc == 0
    assert s.nonce_even != first
    # replaying the old nonce fails
    s.nonce_even = first
    r, _ = capowner(owned, sess=s, cont=True)
    assert r.rc == RC.TPM_AUTHFAIL


def test_hmac_computed_independently(owned):
    """The request HMAC and the response HMAC, built by hand from the spec."""
    r = run(owned, 0xC1, 0x0A)
    handle, even = r.body[:4], r.body[4:24]
    odd = os.urandom(20)
    digest = sha1(u32(0x66))
    auth = hmac1(OWNER, digest, even, odd, b"\x00")
    rsp = run(owned, 0xC2, 0x66, handle + odd + b"\x00" + auth)
    assert rsp.rc == 0 and rsp.tag == 0xC5
    out, new_even, cont, res = rsp.body[:12], rsp.body[12:32], rsp.body[32], rsp.body[33:53]
    assert cont == 0
    assert res == hmac1(OWNER, sha1(u32(0), u32(0x66), out), new_even, odd, b"\x00")
    # continueAuthSession FALSE ended it: tcsd's flush afterwards gets INVALID_AUTHHANDLE
    assert run(owned, 0xC1, 0xBA, handle + u32(2)).rc == RC.TPM_INVALID_AUTHHANDLE


def test_dictionary_attack_lockout_and_reset():
    now = [1000.0]
    tpm = TPM(key_source=key_pool(), clock=lambda: now[0])
    tpm.power_on()
    take_ownership(tpm)
    for _ in range(6):
        assert capowner(tpm, secret=b"bad" + bytes(17))[0].rc == RC.TPM_AUTHFAIL
    assert capowner(tpm)[0].rc == RC.TPM_DEFEND_LOCK_RUNNING
    # a non-authorized command still works during the lockout
    assert getcap(tpm, 5, u32(0x101)).rc == 0
    now[0] += 2
    assert capowner(tpm)[0].rc == 0
    # another failure doubles the wait
    assert capowner(tpm, secret=bytes(20))[0].rc == RC.TPM_AUTHFAIL
    now[0] += 1.5
    assert capowner(tpm)[0].rc == RC.TPM_DEFEND_LOCK_RUNNING
    # the owner resets the counter
    assert auth1(tpm, 0x40, b"", b"", OWNER)[0].rc == 0
    assert capowner(tpm)[0].rc == 0
    assert tpm.perm.auth_fail_count == 0


def test_change_owner_and_srk_auth(owned):
    s = Session(owned, "osap", 0x0002, 0x40000001, OWNER)
    new = b"N" * 20
    params = u16(4) + s.enc_auth(new) + u16(0x0002)
    r, _ = auth1(owned, 0x10, b"", params, None, sess=s)
    assert r.rc == 0
    assert capowner(owned)[0].rc == RC.TPM_AUTHFAIL
    assert capowner(owned, secret=new)[0].rc == 0
    s = Session(owned, "osap", 0x0002, 0x40000001, new)
    r, _ = auth1(owned, 0x10, b"", u16(4) + s.enc_auth(b"S" * 20) + u16(0x0004), None, sess=s)
    assert r.rc == 0
    assert owned.perm.srk.usage_auth == b"S" * 20
    # OIAP is not enough for ChangeAuthOwner (ADCP needs the OSAP secret)
    r, _ = auth1(owned, 0x10, b"", u16(4) + bytes(20) + u16(2), new)
    assert r.rc == RC.TPM_BAD_MODE


def test_owner_clear_like_the_xen_vtpm(owned):
    assert auth1(owned, 0x5B, b"", b"", OWNER)[0].rc == 0
    assert cap_value(owned, 5, u32(0x111)) == b"\x00"
    pf = cap_value(owned, 4, u32(0x108))
    assert pf[2] == 0 and pf[4] == 0 and pf[5] == 1     # enabled, active, readPubek again
    assert cap_value(owned, 0x0D) == b""                # the DIR area went with the owner
    read_pubek(owned)
    take_ownership(owned)                               # works again right away


def test_disable_owner_clear_and_force_clear(owned):
    assert auth1(owned, 0x5C, b"", b"", OWNER)[0].rc == 0
    assert auth1(owned, 0x5B, b"", b"", OWNER)[0].rc == RC.TPM_CLEAR_DISABLED
    assert run(owned, 0xC1, 0x5E).rc == 0              # DisableForceClear (volatile)
    assert run(owned, 0xC1, 0x5D).rc == RC.TPM_CLEAR_DISABLED
    owned.power_on("clear")
    assert run(owned, 0xC1, 0x5D).rc == 0              # ForceClear: presence is asserted
    assert cap_value(owned, 5, u32(0x111)) == b"\x00"


def test_disable_pubek_read_and_set_capability_readsrkpub(tpm):
    take_ownership(tpm)
    assert auth1(tpm, 0x3F, b"", u32(1) + u32(4) + u32(17) + u32(1) + b"\x00", OWNER)[0].rc == 0
    assert not tpm.perm.flags.readSRKPub
    assert run(tpm, 0xC1, 0x21, u32(0x40000000)).rc == RC.TPM_INVALID_KEYHANDLE
    assert auth1(tpm, 0x3F, b"", u32(1) + u32(4) + u32(17) + u32(1) + b"\x01", OWNER)[0].rc == 0
    assert run(tpm, 0xC1, 0x21, u32(0x40000000)).rc == 0
    assert auth1(tpm, 0x7E, b"", b"", OWNER)[0].rc == 0
    assert not tpm.perm.flags.readPubek


def test_physical_presence_commands_succeed(tpm):
    assert run(tpm, 0xC1, 0x71, b"\x00").rc == 0       # SetOwnerInstall FALSE
    assert not tpm.perm.flags.ownership
    assert run(tpm, 0xC1, 0x71, b"\x01").rc == 0
    assert run(tpm, 0xC1, 0x70).rc == 0                # PhysicalDisable
    assert run(tpm, 0xC1, 0x46, u32(4)).rc == RC.TPM_DISABLED
    assert run(tpm, 0xC1, 0x6F).rc == 0                # PhysicalEnable
    assert run(tpm, 0xC1, 0x72, b"\x01").rc == 0       # PhysicalSetDeactivated
    assert tpm.perm.flags.deactivated
    assert run(tpm, 0xC1, 0x72, b"\x00").rc == 0
    assert run(tpm, 0xC1, 0x74, b"p" * 20).rc == 0     # SetOperatorAuth
    assert run(tpm, 0xC1, 0x73).rc == 0                # SetTempDeactivated
    assert run(tpm, 0xC1, 0x46, u32(4)).rc == RC.TPM_DEACTIVATED
    tpm.power_on("clear")
    assert run(tpm, 0xC1, 0x46, u32(4)).rc == 0


def test_owner_set_disable(owned):
    assert auth1(owned, 0x6E, b"", b"\x01", OWNER)[0].rc == 0
    assert owned.perm.flags.disable
    assert auth1(owned, 0x6E, b"", b"\x00", OWNER)[0].rc == 0
    assert not owned.perm.flags.disable


def test_endorsement_key_lifecycle():
    tpm = TPM(key_source=key_pool(), generate_ek=False)
    tpm.power_on()
    assert run(tpm, 0xC1, 0x7C, bytes(20)).rc == RC.TPM_NO_ENDORSEMENT
    parms = struct.pack(">IHHI", 1, 3, 1, 12) + struct.pack(">III", 2048, 2, 0)
    nonce = os.urandom(20)
    r = run(tpm, 0xC1, 0x7F, nonce + parms + b"\x01" + bytes(20))   # CreateRevocableEK
    assert r.rc == 0
    pub, used = parse_pubkey(r.body)
    assert r.body[used:used + 20] == sha1(r.body[:used], nonce)
    reset = r.body[used + 20:]
    assert len(reset) == 20
    assert run(tpm, 0xC1, 0x78, nonce + parms).rc == RC.TPM_DISABLED_CMD
    assert run(tpm, 0xC1, 0x80, bytes(20)).rc == RC.TPM_AUTHFAIL
    assert run(tpm, 0xC1, 0x80, reset).rc == 0                       # RevokeTrust
    assert run(tpm, 0xC1, 0x7C, bytes(20)).rc == RC.TPM_NO_ENDORSEMENT
    assert run(tpm, 0xC1, 0x78, nonce + parms).rc == 0               # CreateEndorsementKeyPair
    assert run(tpm, 0xC1, 0x80, reset).rc == RC.TPM_PERMANENTEK


def test_xen_vtpm_always_has_an_ek(tpm):
    parms = struct.pack(">IHHI", 1, 3, 1, 12) + struct.pack(">III", 2048, 2, 0)
    assert run(tpm, 0xC1, 0x78, bytes(20) + parms).rc == RC.TPM_DISABLED_CMD


def test_flush_specific(tpm):
    s = Session(tpm)
    assert cap_value(tpm, 0x14, u32(2)) == u16(1) + u32(s.handle)
    assert run(tpm, 0xC1, 0xBA, u32(s.handle) + u32(2)).rc == 0
    assert run(tpm, 0xC1, 0xBA, u32(s.handle) + u32(2)).rc == RC.TPM_INVALID_AUTHHANDLE
    assert run(tpm, 0xC1, 0xBA, u32(0x12345678) + u32(2)).rc == RC.TPM_INVALID_AUTHHANDLE
    # no such key: swtpm answers this frame TPM_BAD_PARAMETER (TPM_Process_FlushSpecific)
    assert run(tpm, 0xC1, 0xBA, u32(0x01000000) + u32(1)).rc == RC.TPM_BAD_PARAMETER
    assert run(tpm, 0xC1, 0xBA, u32(0) + u32(99)).rc == RC.TPM_INVALID_RESOURCE


def test_session_slots_run_out(tpm):
    handles = [Session(tpm).handle for _ in range(4)]
    assert len(set(handles)) == 4
    assert run(tpm, 0xC1, 0x0A).rc == RC.TPM_RESOURCES
    assert cap_value(tpm, 5, u32(0x10A)) == u32(0)
    assert run(tpm, 0xC1, 0x96, u32(handles[0])).rc == 0            # Terminate_Handle
    assert run(tpm, 0xC1, 0x0A).rc == 0


def test_osap_for_unknown_entities(owned):
    r = run(owned, 0xC1, 0x0B, u16(1) + u32(0x01000005) + bytes(20))
    assert r.rc == RC.TPM_INVALID_KEYHANDLE
    assert run(owned, 0xC1, 0x0B, u16(0x0B) + u32(0x1234) + bytes(20)).rc == RC.TPM_BADINDEX
    assert run(owned, 0xC1, 0x0B, u16(0x0C) + u32(0) + bytes(20)).rc == RC.TPM_NOOPERATOR


def test_osap_session_only_authorizes_its_entity(owned):
    from engine_helpers import create_wrap_key, load_key2
    h = load_key2(owned, create_wrap_key(owned))
    # an OSAP session for the SRK must not authorize the use of another key
    s = Session(owned, "osap", 4, 0x40000000, SRK)
    params = s.enc_auth(b"d" * 20) + u32(0) + u32(1) + b"x"
    r, _ = auth1(owned, 0x17, u32(h), params, None, sess=s)
    assert r.rc == RC.TPM_AUTHFAIL
    # nor an owner session the SRK
    s = Session(owned, "osap", 2, 0x40000001, OWNER)
    params = s.enc_auth(b"d" * 20) + u32(0) + u32(1) + b"x"
    r, _ = auth1(owned, 0x17, u32(0x40000000), params, None, sess=s)
    assert r.rc == RC.TPM_AUTHFAIL
    # the right one does
    s = Session(owned, "osap", 1, 0x40000000, SRK)
    params = s.enc_auth(b"d" * 20) + u32(0) + u32(1) + b"x"
    r, _ = auth1(owned, 0x17, u32(0x40000000), params, None, sess=s)
    assert r.rc == 0


def test_hardware_like_identity_needs_physical_presence():
    from pyxl.tpm.identity import IBM_SWTPM_IDENTITY
    tpm = TPM(IBM_SWTPM_IDENTITY, key_source=key_pool())
    tpm.power_on()
    pf = cap_value(tpm, 4, u32(0x108))
    assert pf[2 + 15] == 0 and pf[2 + 16] == 0           # nvLocked, readSRKPub FALSE
    assert run(tpm, 0xC1, 0x15, u32(16)).body == bytes(20)
    assert run(tpm, 0xC1, 0x15, u32(17)).body == b"\xff" * 20
    for ordinal, params in ((0x6F, b""), (0x70, b""), (0x72, b"\x01"), (0x73, b""),
                            (0x74, bytes(20)), (0x5D, b""), (0x71, b"\x01")):
        assert run(tpm, 0xC1, ordinal, params).rc == RC.TPM_BAD_PRESENCE, hex(ordinal)
    assert run(tpm, 0xC1, 0x4000000A, u16(0x0020)).rc == 0       # CMD_ENABLE
    assert run(tpm, 0xC1, 0x4000000A, u16(0x0008)).rc == 0       # PRESENT
    assert run(tpm, 0xC1, 0x71, b"\x01").rc == 0
    assert run(tpm, 0xC1, 0x4000000A, u16(0x0010)).rc == 0       # NOTPRESENT
    assert run(tpm, 0xC1, 0x71, b"\x01").rc == RC.TPM_BAD_PRESENCE
    r = getcap(tpm, 0x1A)
    assert r.body[4 + 2:4 + 13] == bytes.fromhex("0102129e000203") + b"IBM\x00"


def test_owner_read_pubek(owned):
    r, out = auth1(owned, 0x7D, b"", b"", OWNER)
    assert r.rc == 0
    pub, used = parse_pubkey(out)
    assert used == len(out) and pub.public_numbers().n == owned.perm.ek.n
    assert auth1(owned, 0x7D, b"", b"", bytes(20))[0].rc == RC.TPM_AUTHFAIL


def test_clear_on_a_hardware_like_tpm_disables_it():
    from pyxl.tpm.identity import IBM_SWTPM_IDENTITY
    tpm = TPM(IBM_SWTPM_IDENTITY, key_source=key_pool())
    tpm.power_on()
    take_ownership(tpm)
    assert auth1(tpm, 0x5B, b"", b"", OWNER)[0].rc == 0
    assert tpm.perm.flags.disable and tpm.perm.flags.deactivated
    assert run(tpm, 0xC1, 0x7C, bytes(20)).rc == RC.TPM_DISABLED      # as recorded on libtpms
    assert not tpm.perm.flags.readSRKPub


def test_clear_on_the_xen_vtpm_keeps_read_srk_pub(owned):
    """The emulator's OwnerClear leaves readSRKPub as it was (libtpms clears it)."""
    from pyxl.tpm.identity import XEN_VTPM_IDENTITY
    assert owned.identity == XEN_VTPM_IDENTITY
    for value in (True, False):
        owned.perm.flags.readSRKPub = value
        assert auth1(owned, 0x5B, b"", b"", OWNER)[0].rc == 0
        pf = cap_value(owned, 4, u32(0x108))
        assert pf[2 + 16] == value                        # readSRKPub
        assert not owned.perm.flags.disable
        take_ownership(owned)


def test_authorize_migration_key(owned):
    """TPM_MIGRATIONKEYAUTH = migrationKey || scheme || SHA-1(key || scheme || tpmProof)."""
    from cryptography.hazmat.primitives.asymmetric import rsa as _rsa
    n = _rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key() \
        .public_numbers().n.to_bytes(256, "big")

    def pubkey(bits=2048, es=3, exponent=b""):
        parms = u32(bits) + u32(2) + u32(len(exponent)) + exponent
        return u32(1) + u16(es) + u16(1) + u32(len(parms)) + parms + u32(len(n)) + n

    key = pubkey()
    r, out = auth1(owned, 0x2B, b"", u16(2) + key, OWNER)            # TPM_MS_REWRAP
    assert r.rc == 0
    assert out == key + u16(2) + sha1(key + u16(2) + owned.perm.tpm_proof)
    assert auth1(owned, 0x2B, b"", u16(2) + key, bytes(20))[0].rc == RC.TPM_AUTHFAIL
    assert auth1(owned, 0x2B, b"", u16(2) + pubkey(es=1), OWNER)[0].rc == RC.TPM_INAPPROPRIATE_ENC
    for weak in (pubkey(bits=1024), pubkey(exponent=b"\x03")):
        assert auth1(owned, 0x2B, b"", u16(1) + weak, OWNER)[0].rc == RC.TPM_BAD_KEY_PROPERTY
    assert run(owned, 0xC1, 0x2B, u16(1) + key).rc == RC.TPM_BADTAG
