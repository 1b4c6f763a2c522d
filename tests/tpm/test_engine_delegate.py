"""Delegation's family table: Delegate_Manage and Delegate_ReadTable, with
the response HMACs checked here, per identity (libtpms-like IBM: the
unowned form works; the emulator: it always fails), and in the state blob."""

import hashlib
import json
import struct

import pytest

from engine_helpers import (OWNER, Session, auth1, key_pool, new_tpm, run, take_ownership, u32)

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
