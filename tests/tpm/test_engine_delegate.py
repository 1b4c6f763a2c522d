"""Delegation's family table: Delegate_Manage and Delegate_ReadTable, with
the response HMACs checked here, per identity (libtpms-like IBM: the
unowned form works; the emulator: it always fails), and in the state blob."""

import hashlib
import json
import struct

import pytest

from engine_helpers import (OWNER, Session, auth1, getcap, hmac1, key_pool, new_tpm, run, sha1,
                            take_ownership, u16, u32)

from pyxl.tpm import TPM
from pyxl.tpm import constants as C
from pyxl.tpm.identity import IBM_SWTPM_IDENTITY
from pyxl.tpm.state import MAGIC

RC = C.TPM_RESULT
CREATE, ENABLE, ADMIN, INVALIDATE = 1, 2, 3, 4


def manage_params(family, op, data):
    return u32(family) + u32(op) + u32(len(data)) + data


def manage(tpm, family, op, data=b"", sess=None):
    """Owner-authorised Delegate_Manage -> (rc, retData)."""
    r, out = auth1(tpm, 0xD2, b"", manage_params(family, op, data), OWNER, sess=sess)
    return r.rc, out[4:] if r.rc == 0 else None


def table(tpm):
    """Delegate_ReadTable -> [(label, familyID, verificationCount, flags)], delegate bytes."""
    r = run(tpm, 0xC1, 0xDB)
    assert r.rc == 0, r
    n = struct.unpack(">I", r.body[:4])[0]
    fam = r.body[4:4 + n]
    rows = []
    for i in range(0, n, 15):
        tag, label, fid, count, flags = struct.unpack(">HBIII", fam[i:i + 15])
        assert tag == 0x0025
        rows.append((label, fid, count, flags))
    dn = struct.unpack(">I", r.body[4 + n:8 + n])[0]
    assert len(r.body) == 8 + n + dn
    return rows, r.body[8 + n:]


@pytest.fixture
def owned():
    t = new_tpm()
    take_ownership(t)
    return t


def test_owner_manages_families(owned):
    assert table(owned) == ([], b"")
    assert manage(owned, 0, CREATE, b"\x0a") == (0, u32(1))
    assert manage(owned, 0, CREATE, b"\x0b") == (0, u32(2))
    assert manage(owned, 1, ENABLE, b"\x01") == (0, b"")
    assert manage(owned, 2, ADMIN, b"\x01") == (0, b"")
    assert table(owned)[0] == [(0x0a, 1, 1, 0x1), (0x0b, 2, 1, 0x2)]
    assert manage(owned, 1, ENABLE, b"\x00") == (0, b"")
    assert manage(owned, 1, ENABLE, b"")[0] == RC.TPM_BAD_PARAM_SIZE
    assert manage(owned, 0, CREATE, b"ab")[0] == RC.TPM_BAD_PARAM_SIZE
    assert manage(owned, 7, ENABLE, b"\x01")[0] == RC.TPM_BADINDEX
    assert manage(owned, 1, 9)[0] == RC.TPM_BAD_PARAMETER
    assert manage(owned, 1, INVALIDATE) == (0, b"")
    assert table(owned)[0] == [(0x0b, 2, 1, 0x2)]
    r, _ = auth1(owned, 0xD2, b"", manage_params(2, ENABLE, b"\x01"), bytes(20))
    assert r.rc == RC.TPM_AUTHFAIL
    # the table is full after 16 families
    for i in range(15):
        assert manage(owned, 0, CREATE, bytes([i]))[0] == 0
    assert manage(owned, 0, CREATE, b"\x99")[0] == RC.TPM_NOSPACE
    # OwnerClear empties the table; family IDs keep counting
    assert auth1(owned, 0x5B, b"", b"", OWNER)[0].rc == 0
    assert table(owned)[0] == []
    take_ownership(owned)
    assert manage(owned, 0, CREATE, b"\x01") == (0, u32(18))


def test_manage_ends_sessions_per_identity():
    # the emulator (Xen vTPM): every other session ends, the command's own continues
    t = new_tpm()
    take_ownership(t)
    other = Session(t)
    own = Session(t)
    assert manage(t, 0, CREATE, b"\x01", sess=own)[0] == 0
    assert other.handle not in t.sessions
    # libtpms: every OSAP session ends, the command's own too (continueAuthSession FALSE)
    t = TPM(IBM_SWTPM_IDENTITY, key_source=key_pool())
    t.power_on()
    assert run(t, 0xC1, 0x4000000A, (0x0020).to_bytes(2, "big")).rc == 0
    assert run(t, 0xC1, 0x4000000A, (0x0008).to_bytes(2, "big")).rc == 0
    take_ownership(t)
    oiap = Session(t)
    osap = Session(t, "osap", C.TPM_ET_OWNER, C.TPM_KH_OWNER, OWNER)
    sess = Session(t, "osap", C.TPM_ET_OWNER, C.TPM_KH_OWNER, OWNER)
    tr = sess.trailer(0xD2, manage_params(0, CREATE, b"\x01"), cont=True)
    r = run(t, 0xC2, 0xD2, manage_params(0, CREATE, b"\x01") + tr)
    assert r.rc == 0, r
    sess.check_response(0xD2, r, r.body[:-41], r.body[-41:])
    assert r.body[-41 + 20] == 0                       # continueAuthSession FALSE
    assert oiap.handle in t.sessions
    assert osap.handle not in t.sessions and sess.handle not in t.sessions


def test_unowned_manage_per_identity():
    t = new_tpm()                                       # the emulator: always TPM_AUTHFAIL
    assert run(t, 0xC1, 0xD2, manage_params(0, CREATE, b"\x01")).rc == RC.TPM_AUTHFAIL
    t = TPM(IBM_SWTPM_IDENTITY, key_source=key_pool())  # libtpms: allowed, counted, lockable
    t.power_on()
    assert run(t, 0xC1, 0xD2, manage_params(0, CREATE, b"\x01")).body == u32(4) + u32(1)
    assert run(t, 0xC1, 0xD2, manage_params(1, ADMIN, b"\x01")).rc == 0
    assert run(t, 0xC1, 0xD2, manage_params(1, ENABLE, b"\x01")).rc == RC.TPM_DELEGATE_LOCK
    assert t.perm.no_owner_nv_write == 2
    t.perm.no_owner_nv_write = 64
    assert run(t, 0xC1, 0xD2, manage_params(0, CREATE, b"\x02")).rc == RC.TPM_MAXNVWRITES
    assert table(t)[0] == [(1, 1, 1, 0x2)]


def test_families_survive_dump_and_load(owned):
    manage(owned, 0, CREATE, b"\x05")
    manage(owned, 1, ENABLE, b"\x01")
    t2 = TPM.load(owned.dump(), key_source=key_pool())
    t2.power_on()
    assert table(t2)[0] == [(5, 1, 1, 0x1)]
    assert manage(t2, 0, CREATE, b"\x06") == (0, u32(2))
    # a format-1 blob (before the family table) still loads, with an empty table
    blob = owned.dump()
    n = struct.unpack(">I", blob[len(MAGIC) + 2:len(MAGIC) + 6])[0]
    body = json.loads(blob[len(MAGIC) + 6:len(MAGIC) + 6 + n])
    for k in ("families", "last_family_id", "no_owner_nv_write"):
        del body["perm"][k]
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    v1 = MAGIC + struct.pack(">HI", 1, len(raw)) + raw + hashlib.sha256(raw).digest()
    t3 = TPM.load(v1, key_source=key_pool())
    t3.power_on()
    assert table(t3)[0] == [] and t3.perm.last_family_id == 0


# ---------------------------------------------------------------- owner delegation + DSAP

DELAUTH = b"D" * 20
PER_OWNERREADINTERNALPUB = 1 << 18       # Part 2 20.2.1 per1 bits
PER_CREATEOWNERDELEGATION = 1 << 1


def delegate_public(family, per1, label=7, count=0, pcr_select=b"\0\0\0", digest=bytes(20),
                    locality=0x1F):
    """TPM_DELEGATE_PUBLIC built by hand (Part 2 20.6)."""
    pcr = struct.pack(">H", len(pcr_select)) + pcr_select + bytes([locality]) + digest
    perms = struct.pack(">HIII", 0x001A, 1, per1, 0)         # TPM_DEL_OWNER_BITS
    return struct.pack(">HB", 0x001B, label) + pcr + perms + u32(family) + u32(count)


def create_owner_delegation(tpm, pub, secret=DELAUTH, increment=False, sess=None):
    """-> (rc, blob) via an owner OSAP session (or sess), ADIP-encrypted secret."""
    sess = sess or Session(tpm, "osap", C.TPM_ET_OWNER, C.TPM_KH_OWNER, OWNER)
    params = bytes([increment]) + pub + sess.enc_auth(secret)
    r, out = auth1(tpm, 0xD5, b"", params, None, sess=sess)
    if r.rc:
        return r.rc, None
    assert r.body[-41 + 20] == 0                   # continueAuthSession FALSE
    n = struct.unpack(">I", out[:4])[0]
    assert len(out) == 4 + n
    return 0, out[4:]


class DSAP(Session):
    """A DSAP session: the shared secret is HMAC(delegation secret, evenDSAP || oddDSAP)."""

    def __init__(self, tpm, entity_type, value, secret=DELAUTH, expect=0, key=0):
        self.tpm = tpm
        odd = bytes(range(20))
        r = run(tpm, 0xC1, 0x11, u16(entity_type) + u32(key) + odd + u32(len(value)) + value)
        self.rc = r.rc
        assert r.rc == expect, r
        if r.rc:
            return
        assert len(r.body) == 44
        self.handle = struct.unpack(">I", r.body[:4])[0]
        self.nonce_even = r.body[4:24]
        self.shared = hmac1(secret, r.body[24:44], odd)
        self.kind = "osap"


def read_internal_pub(tpm, sess):
    return auth1(tpm, 0x81, b"", u32(0x40000000), None, sess=sess)[0]


@pytest.fixture
def family(owned):
    assert manage(owned, 0, CREATE, b"\x01") == (0, u32(1))
    assert manage(owned, 1, ENABLE, b"\x01") == (0, b"")
    return owned


def test_owner_blob_opens_dsap_for_delegated_ordinals_only(family):
    t = family
    pub = delegate_public(1, PER_OWNERREADINTERNALPUB)
    rc, blob = create_owner_delegation(t, pub)
    assert rc == 0
    # TPM_DELEGATE_OWNER_BLOB: tag, pub (verificationCount set to the family's), digest, areas
    assert blob[:2] == b"\x00\x2a"
    assert blob[2:2 + len(pub)] == pub[:-4] + u32(1)
    assert blob[2 + len(pub):22 + len(pub)] != bytes(20)
    assert DELAUTH not in blob                      # the secret is encrypted
    # no additionalArea, a 32-byte sealed area (libtpms's sizes), sealed afresh each time
    assert blob[22 + len(pub):][:8] == u32(0) + u32(32) and len(blob) == len(pub) + 62
    again = create_owner_delegation(t, pub)[1]
    assert again[-32:] != blob[-32:]
    s = DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob)
    assert read_internal_pub(t, s).rc == 0           # HMAC'ed with the DSAP shared secret
    r, _ = auth1(t, 0x40, b"", b"", None, sess=DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob))
    assert r.rc == RC.TPM_AUTHFAIL                   # ResetLockValue: bit 17 not delegated
    # the owner's secret is not the delegate's
    wrong = DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob, secret=OWNER)
    assert read_internal_pub(t, wrong).rc == RC.TPM_AUTHFAIL
    # a DSAP session cannot stand for a key
    r, _ = auth1(t, 0x21, u32(0x40000000), b"", None, sess=DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob))
    assert r.rc == RC.TPM_AUTHFAIL
    # a tampered blob (per1 widened) fails its integrity check
    i = blob.index(struct.pack(">HII", 0x001A, 1, PER_OWNERREADINTERNALPUB))
    bad = bytearray(blob)
    bad[i + 6:i + 10] = u32(0xFFFFFFFF)
    DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, bytes(bad), expect=RC.TPM_AUTHFAIL)
    DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, b"junk", expect=RC.TPM_WRONG_ENTITYTYPE)
    DSAP(t, C.TPM_ET_DEL_KEY_BLOB, blob, expect=RC.TPM_WRONG_ENTITYTYPE)  # not a key blob
    # a disabled family refuses; a new verification count retires older blobs
    assert manage(t, 1, ENABLE, b"\x00")[0] == 0
    DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob, expect=RC.TPM_DISABLED_CMD)
    assert manage(t, 1, ENABLE, b"\x01")[0] == 0
    rc, blob2 = create_owner_delegation(t, pub, increment=True)
    assert rc == 0 and blob2[2 + len(pub) - 4:2 + len(pub)] == u32(2)
    DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob, expect=RC.TPM_FAMILYCOUNT)
    assert read_internal_pub(t, DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob2)).rc == 0
    # bad requests
    assert create_owner_delegation(t, delegate_public(9, 1))[0] == RC.TPM_BADINDEX
    keybits = pub.replace(struct.pack(">HI", 0x001A, 1), struct.pack(">HI", 0x001A, 2))
    assert create_owner_delegation(t, keybits)[0] == RC.TPM_BAD_PARAMETER
    r, _ = auth1(t, 0xD5, b"", b"\0" + pub + bytes(20), OWNER)       # OIAP: no ADIP
    assert r.rc == RC.TPM_BAD_MODE


def test_delegate_hands_on_at_most_its_rights_and_pcr_binding(family):
    t = family
    rc, blob = create_owner_delegation(
        t, delegate_public(1, PER_CREATEOWNERDELEGATION | PER_OWNERREADINTERNALPUB))
    assert rc == 0
    sub = delegate_public(1, PER_OWNERREADINTERNALPUB)
    rc, sub_blob = create_owner_delegation(t, sub, b"S" * 20,
                                           sess=DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob))
    assert rc == 0
    s = DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, sub_blob, secret=b"S" * 20)
    assert read_internal_pub(t, s).rc == 0
    more = delegate_public(1, PER_OWNERREADINTERNALPUB | 1 << 16)
    assert create_owner_delegation(t, more, sess=DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob))[0] \
        == RC.TPM_AUTHFAIL
    # bound to PCR 16's current value: usable until PCR 16 changes
    pcr16 = run(t, 0xC1, 0x15, u32(16)).body
    composite = sha1(u16(3) + b"\0\0\x01" + u32(20) + pcr16)
    rc, bound = create_owner_delegation(
        t, delegate_public(1, PER_OWNERREADINTERNALPUB, pcr_select=b"\0\0\x01", digest=composite))
    assert rc == 0
    assert read_internal_pub(t, DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, bound)).rc == 0
    assert run(t, 0xC1, 0x14, u32(16) + b"x" * 20).rc == 0
    s = DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, bound)
    assert read_internal_pub(t, s).rc == RC.TPM_WRONGPCRVAL


def load_owner_delegation(tpm, index, blob, secret=OWNER):
    params = u32(index) + u32(len(blob)) + blob
    return auth1(tpm, 0xD8, b"", params, secret)[0].rc


def test_delegate_rows_load_list_authorize_and_persist(family):
    t = family
    pub = delegate_public(1, PER_OWNERREADINTERNALPUB, label=0x42)
    rc, blob = create_owner_delegation(t, pub)
    assert rc == 0
    assert load_owner_delegation(t, 4, blob) == RC.TPM_BADINDEX
    assert load_owner_delegation(t, 2, blob, secret=bytes(20)) == RC.TPM_AUTHFAIL
    assert run(t, 0xC1, 0xD8, u32(2) + u32(len(blob)) + blob).rc == RC.TPM_AUTHFAIL
    assert load_owner_delegation(t, 2, blob) == 0
    rows, delegates = table(t)
    assert delegates == u32(2) + pub[:-4] + u32(1)
    assert read_internal_pub(t, DSAP(t, C.TPM_ET_DEL_ROW, u32(2))).rc == 0
    DSAP(t, C.TPM_ET_DEL_ROW, u32(1), expect=RC.TPM_BADINDEX)
    # the row survives dump/load
    t2 = TPM.load(t.dump(), key_source=key_pool())
    t2.power_on()
    assert table(t2)[1] == delegates
    assert read_internal_pub(t2, DSAP(t2, C.TPM_ET_DEL_ROW, u32(2))).rc == 0
    # OwnerClear empties the delegate table
    assert auth1(t2, 0x5B, b"", b"", OWNER)[0].rc == 0
    assert table(t2) == ([], b"")


def test_dsap_and_owner_delegation_advertised():
    t = new_tpm()
    for o in (0x11, 0x75, 0xD4, 0xD5, 0xD8, 0xD6, 0xD1):
        assert getcap(t, 0x01, u32(o)).body == u32(1) + b"\x01"
    assert getcap(t, 0x01, u32(0x09)).body == u32(1) + b"\x00"   # no such ordinal
    assert getcap(t, 0x03, u16(6)).body == u32(1) + b"\x01"     # TPM_CAP_PID: DSAP
    assert getcap(t, 0x03, u16(7)).body == u32(1) + b"\x01"     # transport sessions


def verify_delegation(tpm, blob):
    return run(tpm, 0xC1, 0xD6, u32(len(blob)) + blob).rc


def update_verification(tpm, data, secret=OWNER, sess=None):
    r, out = auth1(tpm, 0xD1, b"", u32(len(data)) + data, secret, sess=sess)
    if r.rc:
        return r.rc, None
    assert struct.unpack(">I", out[:4])[0] == len(out) - 4
    return 0, out[4:]


def test_verify_and_update_verification(family):
    t = family
    pub = delegate_public(1, PER_OWNERREADINTERNALPUB | 1 << 5)   # + UpdateVerification
    rc, blob = create_owner_delegation(t, pub)
    assert rc == 0 and verify_delegation(t, blob) == 0
    assert load_owner_delegation(t, 0, blob) == 0
    bad = blob[:-1] + bytes([blob[-1] ^ 1])
    assert verify_delegation(t, bad) == RC.TPM_AUTHFAIL
    assert verify_delegation(t, b"\x00\x99" + blob[2:]) == RC.TPM_BAD_PARAMETER
    # a new verification count retires the blob and the row ...
    assert create_owner_delegation(t, pub, increment=True)[0] == 0
    assert verify_delegation(t, blob) == RC.TPM_FAMILYCOUNT
    DSAP(t, C.TPM_ET_DEL_ROW, u32(0), expect=RC.TPM_FAMILYCOUNT)
    # ... until the owner updates them
    assert update_verification(t, blob, secret=bytes(20))[0] == RC.TPM_AUTHFAIL
    rc, fresh = update_verification(t, blob)
    assert rc == 0 and fresh[:2 + len(pub)] == blob[:2 + len(pub) - 4] + u32(2)
    assert verify_delegation(t, fresh) == 0
    assert read_internal_pub(t, DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, fresh)).rc == 0
    assert update_verification(t, u32(0)) == (0, b"")
    assert table(t)[1] == u32(0) + pub[:-4] + u32(2)
    # a delegate with the UpdateVerification bit may update rows of its family
    assert update_verification(t, u32(0), sess=DSAP(t, C.TPM_ET_DEL_ROW, u32(0))) == (0, b"")
    assert update_verification(t, u32(3))[0] == RC.TPM_BADINDEX
    assert manage(t, 1, ENABLE, b"\x00")[0] == 0
    assert verify_delegation(t, fresh) == RC.TPM_DISABLED_CMD


KEY_PER_GETPUBKEY = 1 << 5          # Part 2 20.2.3 key per1 bits
KEY_PER_SEAL = 1 << 1


def key_public(family, per1):
    pub = delegate_public(family, per1)
    return pub.replace(struct.pack(">HI", 0x001A, 1), struct.pack(">HI", 0x001A, 2))


def create_key_delegation(tpm, handle, key_auth, pub, secret=DELAUTH, sess=None):
    sess = sess or Session(tpm, "osap", C.TPM_ET_KEYHANDLE, handle, key_auth)
    params = pub + sess.enc_auth(secret)
    r, out = auth1(tpm, 0xD4, u32(handle), params, None, sess=sess)
    if r.rc:
        return r.rc, None
    assert struct.unpack(">I", out[:4])[0] == len(out) - 4
    return 0, out[4:]


def test_key_delegation(family):
    from engine_helpers import create_wrap_key, load_key2
    t = family
    kauth = b"k" * 20
    h = load_key2(t, create_wrap_key(t, usage_auth=kauth))
    rc, blob = create_key_delegation(t, h, kauth, key_public(1, KEY_PER_GETPUBKEY))
    assert rc == 0 and blob[:2] == b"\x00\x27" and DELAUTH not in blob
    # pubKeyDigest = SHA-1 of the key's TPM_STORE_PUBKEY, as GetPubKey shows it
    r, pubkey = auth1(t, 0x21, u32(h), b"", kauth)
    assert r.rc == 0
    store_pubkey = pubkey[-(4 + 256):]
    plen = len(key_public(1, 0))
    assert blob[2 + plen + 20:2 + plen + 40] == sha1(store_pubkey)
    assert verify_delegation(t, blob) == 0
    # DSAP on the blob stands for that key, for GetPubKey only
    s = DSAP(t, C.TPM_ET_DEL_KEY_BLOB, blob, key=h)
    r, out = auth1(t, 0x21, u32(h), b"", None, sess=s)
    assert r.rc == 0 and out == pubkey
    s = DSAP(t, C.TPM_ET_DEL_KEY_BLOB, blob, key=h)
    r, _ = auth1(t, 0x21, u32(0x40000000), b"", None, sess=s)
    assert r.rc == RC.TPM_AUTHFAIL                   # another key (the SRK)
    assert read_internal_pub(t, DSAP(t, C.TPM_ET_DEL_KEY_BLOB, blob, key=h)).rc == RC.TPM_AUTHFAIL
    run_dsap = run(t, 0xC1, 0x11, u16(C.TPM_ET_DEL_KEY_BLOB) + u32(0x40000000) + bytes(20)
                   + u32(len(blob)) + blob)
    assert run_dsap.rc == RC.TPM_KEYNOTFOUND         # the blob names another key
    rc, seal_only = create_key_delegation(t, h, kauth, key_public(1, KEY_PER_SEAL))
    assert rc == 0
    r, _ = auth1(t, 0x21, u32(h), b"", None, sess=DSAP(t, C.TPM_ET_DEL_KEY_BLOB, seal_only, key=h))
    assert r.rc == RC.TPM_AUTHFAIL                   # GetPubKey's bit is clear
    # owner bits cannot make a key blob; a wrong key secret is refused
    assert create_key_delegation(t, h, kauth, delegate_public(1, 1))[0] == RC.TPM_BAD_PARAMETER
    assert create_key_delegation(t, h, bytes(20), key_public(1, 1))[0] == RC.TPM_AUTHFAIL


def set_owner_pointer(tpm, et, ev):
    return run(tpm, 0xC1, 0x75, u16(et) + u32(ev)).rc


def test_set_owner_pointer_makes_the_owner_a_delegate(family):
    t = family
    rc, blob = create_owner_delegation(t, delegate_public(1, PER_OWNERREADINTERNALPUB))
    assert rc == 0 and load_owner_delegation(t, 1, blob) == 0
    assert set_owner_pointer(t, C.TPM_ET_DEL_ROW, 3) == RC.TPM_BADINDEX
    assert set_owner_pointer(t, C.TPM_ET_KEYHANDLE, 1) == RC.TPM_BAD_PARAMETER
    assert set_owner_pointer(t, C.TPM_ET_DEL_ROW, 1) == 0
    # OIAP and OSAP "owner" sessions now use the row's secret and rights
    assert auth1(t, 0x81, b"", u32(0x40000000), DELAUTH)[0].rc == 0
    assert auth1(t, 0x81, b"", u32(0x40000000), OWNER)[0].rc == RC.TPM_AUTHFAIL
    assert auth1(t, 0x40, b"", b"", DELAUTH)[0].rc == RC.TPM_AUTHFAIL
    osap = Session(t, "osap", C.TPM_ET_OWNER, C.TPM_KH_OWNER, DELAUTH)
    assert read_internal_pub(t, osap).rc == 0
    # kept by SaveState / Startup(ST_STATE), reset by Startup(ST_CLEAR)
    assert run(t, 0xC1, 0x98).rc == 0
    assert t.power_on("state") == 0
    assert auth1(t, 0x81, b"", u32(0x40000000), DELAUTH)[0].rc == 0
    t.power_on("clear")
    assert auth1(t, 0x81, b"", u32(0x40000000), OWNER)[0].rc == 0
    assert set_owner_pointer(t, C.TPM_ET_DEL_ROW, 1) == 0
    assert set_owner_pointer(t, C.TPM_ET_OWNER, 0) == 0
    assert auth1(t, 0x81, b"", u32(0x40000000), OWNER)[0].rc == 0


def test_dsap_session_context_keeps_the_delegation(family):
    t = family
    rc, blob = create_owner_delegation(t, delegate_public(1, PER_OWNERREADINTERNALPUB))
    assert rc == 0
    s = DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob)
    r = run(t, 0xC1, 0xB8, u32(s.handle) + u32(2) + b"L" * 16)   # SaveContext, TPM_RT_AUTH
    assert r.rc == 0 and s.handle not in t.sessions
    ctx = r.body[4:]
    r = run(t, 0xC1, 0xB9, u32(s.handle) + b"\x00" + u32(len(ctx)) + ctx)   # LoadContext
    assert r.rc == 0
    s.handle = struct.unpack(">I", r.body)[0]
    r, _ = auth1(t, 0x40, b"", b"", None, sess=s, cont=True)
    assert r.rc == RC.TPM_AUTHFAIL               # still only what was delegated
    s = DSAP(t, C.TPM_ET_DEL_OWNER_BLOB, blob)
    r = run(t, 0xC1, 0xB8, u32(s.handle) + u32(2) + b"L" * 16)
    ctx = r.body[4:]
    r = run(t, 0xC1, 0xB9, u32(s.handle) + b"\x00" + u32(len(ctx)) + ctx)
    s.handle = struct.unpack(">I", r.body)[0]
    assert read_internal_pub(t, s).rc == 0       # and it still authorizes that


def test_owner_clear_by_pointer_delegate_points_back_to_the_owner(family):
    t = family
    rc, blob = create_owner_delegation(t, delegate_public(1, 1 << 16))    # OwnerClear
    assert rc == 0 and load_owner_delegation(t, 0, blob) == 0
    assert set_owner_pointer(t, C.TPM_ET_DEL_ROW, 0) == 0
    assert auth1(t, 0x5B, b"", b"", OWNER)[0].rc == RC.TPM_AUTHFAIL
    assert auth1(t, 0x5B, b"", b"", DELAUTH)[0].rc == 0
    take_ownership(t)
    assert auth1(t, 0x81, b"", u32(0x40000000), OWNER)[0].rc == 0
