"""NV storage as tpm_nvdefine / nvwrite / nvread / nvrelease drive it."""

import struct

import pytest

from engine_helpers import OWNER, Session, auth1, cap_value, new_tpm, run, take_ownership, u32

from pyxl.tpm import constants as C
from pyxl.tpm import structures as S

RC = C.TPM_RESULT
AREA_AUTH = b"a" * 20


@pytest.fixture
def owned():
    t = new_tpm()
    take_ownership(t)
    return t


def define(tpm, index, size, attrs, auth=AREA_AUTH, pcr_write=None):
    pub = S.TPM_NV_DATA_PUBLIC(index, permission=S.TPM_NV_ATTRIBUTES(attrs), dataSize=size)
    if pcr_write is not None:
        pub.pcrInfoWrite = pcr_write
    s = Session(tpm, "osap", 0x0002, 0x40000001, OWNER)
    params = pub.to_bytes() + s.enc_auth(auth)
    r, _ = auth1(tpm, 0xCC, b"", params, None, sess=s)
    return r.rc


def nv_write(tpm, index, data, offset=0, secret=None, ordinal=0xCD):
    params = u32(index) + u32(offset) + u32(len(data)) + data
    if secret is None:
        return run(tpm, 0xC1, ordinal, params).rc
    return auth1(tpm, ordinal, b"", params, secret)[0].rc


def nv_read(tpm, index, size, offset=0, secret=None, ordinal=0xCF):
    params = u32(index) + u32(offset) + u32(size)
    if secret is None:
        r = run(tpm, 0xC1, ordinal, params)
        out = r.body
    else:
        r, out = auth1(tpm, ordinal, b"", params, secret)
    if r.rc:
        return r.rc, None
    n = struct.unpack(">I", out[:4])[0]
    return 0, out[4:4 + n]


def test_owner_area(owned):
    idx = 0x00011101
    assert define(owned, idx, 32, C.TPM_NV_PER_OWNERREAD | C.TPM_NV_PER_OWNERWRITE) == 0
    assert idx in struct.unpack(">2I", cap_value(owned, 0x0D))
    pub = S.TPM_NV_DATA_PUBLIC.from_bytes(cap_value(owned, 0x11, u32(idx)))
    assert pub.permission.attributes == 0x00020002 and pub.dataSize == 32
    assert nv_write(owned, idx, b"hello-vtpm", secret=OWNER) == 0
    assert nv_read(owned, idx, 10, secret=OWNER) == (0, b"hello-vtpm")
    assert nv_read(owned, idx, 10) == (RC.TPM_AUTH_CONFLICT, None)
    assert nv_write(owned, idx, b"x") == RC.TPM_AUTH_CONFLICT
    assert nv_read(owned, idx, 33, secret=OWNER)[0] == RC.TPM_NOSPACE
    assert nv_write(owned, idx, b"x", secret=b"w" * 20) == RC.TPM_AUTHFAIL
    assert define(owned, idx, 16, 0x20002) == 0                   # redefining replaces
    assert nv_read(owned, idx, 10, secret=OWNER) == (0, b"\xff" * 10)
    assert define(owned, idx, 0, 0) == 0                          # release
    assert nv_read(owned, idx, 1, secret=OWNER)[0] == RC.TPM_BADINDEX
    # nothing to release: the checks of a new definition apply (as libtpms)
    assert define(owned, idx, 0, 0) == RC.TPM_PER_NOWRITE
    assert define(owned, idx, 0, 2) == RC.TPM_BAD_PARAM_SIZE


def test_auth_area(owned):
    idx = 0x00011102
    assert define(owned, idx, 16, C.TPM_NV_PER_AUTHREAD | C.TPM_NV_PER_AUTHWRITE) == 0
    assert nv_write(owned, idx, b"abc", secret=AREA_AUTH, ordinal=0xCE) == 0
    assert nv_read(owned, idx, 3, secret=AREA_AUTH, ordinal=0xD0) == (0, b"abc")
    assert nv_read(owned, idx, 3, secret=OWNER, ordinal=0xD0)[0] == RC.TPM_AUTHFAIL
    assert nv_read(owned, idx, 3, secret=OWNER)[0] == RC.TPM_AUTH_CONFLICT
    # OSAP on the NV entity works too
    s = Session(owned, "osap", 0x000B, idx, AREA_AUTH)
    r, out = auth1(owned, 0xD0, b"", u32(idx) + u32(0) + u32(3), None, sess=s)
    assert r.rc == 0 and out[4:] == b"abc"


def test_open_area_and_writeall(owned):
    idx = 0x00011103
    assert define(owned, idx, 4, C.TPM_NV_PER_WRITEALL) == RC.TPM_PER_NOWRITE
    assert define(owned, idx, 4, C.TPM_NV_PER_WRITEALL | C.TPM_NV_PER_PPWRITE) == 0
    assert nv_read(owned, idx, 4) == (0, b"\xff" * 4)
    assert nv_write(owned, idx, b"ab") == RC.TPM_NOT_FULLWRITE
    assert nv_write(owned, idx, b"abcd") == 0
    assert nv_read(owned, idx, 2, offset=2) == (0, b"cd")


def test_write_define_and_stclear_locks(owned):
    idx = 0x00011104
    assert define(owned, idx, 4, C.TPM_NV_PER_WRITEDEFINE | C.TPM_NV_PER_READ_STCLEAR) == 0
    assert nv_write(owned, idx, b"1234") == 0
    assert nv_write(owned, idx, b"") == 0                 # locks until redefined
    assert nv_write(owned, idx, b"5678") == RC.TPM_AREA_LOCKED
    assert nv_read(owned, idx, 0) == (0, b"")             # read lock until Startup(ST_CLEAR)
    assert nv_read(owned, idx, 4)[0] == RC.TPM_DISABLED_CMD
    owned.power_on("clear")
    assert nv_read(owned, idx, 4) == (0, b"1234")
    assert nv_write(owned, idx, b"5678") == RC.TPM_AREA_LOCKED


def test_pcr_bound_write(owned):
    idx = 0x00011105
    sel = S.TPM_PCR_SELECTION.of([7])
    cur = run(owned, 0xC1, 0x15, u32(7)).body
    import hashlib
    digest = hashlib.sha1(S.TPM_PCR_COMPOSITE(sel, cur).to_bytes()).digest()
    info = S.TPM_PCR_INFO_SHORT(sel, 0x1F, digest)
    assert define(owned, idx, 4, C.TPM_NV_PER_PPWRITE, pcr_write=info) == 0
    assert nv_write(owned, idx, b"ok!!") == 0
    run(owned, 0xC1, 0x14, u32(7) + bytes(20))
    assert nv_write(owned, idx, b"no!!") == RC.TPM_WRONGPCRVAL


def test_define_errors(owned):
    both = C.TPM_NV_PER_OWNERWRITE | C.TPM_NV_PER_AUTHWRITE
    assert define(owned, 0x11106, 4, both) == RC.TPM_AUTH_CONFLICT
    assert define(owned, 0x11107, 4, 0) == RC.TPM_PER_NOWRITE
    assert define(owned, 0x11108, 5000, 2) == RC.TPM_NOSPACE
    assert define(owned, 0x11109, 0, 2) == RC.TPM_BAD_PARAM_SIZE
    assert define(owned, 0x10000001, 20, 2) == RC.TPM_BADINDEX    # the DIR area is the TPM's
    assert define(owned, 0x10000002, 4, 0) == RC.TPM_BADINDEX      # TPM-defined (D bit)
    assert cap_value(owned, 5, u32(0x123)) == u32(4096 - 20)


def test_nv_without_owner_needs_no_auth_until_locked():
    tpm = new_tpm()
    tpm.perm.flags.nvLocked = False
    pub = S.TPM_NV_DATA_PUBLIC(0x2000, permission=S.TPM_NV_ATTRIBUTES(C.TPM_NV_PER_OWNERWRITE),
                               dataSize=8)
    assert run(tpm, 0xC1, 0xCC, pub.to_bytes() + bytes(20)).rc == 0
    assert nv_write(tpm, 0x2000, b"free") == 0            # nvLocked FALSE: no checks
    lock = S.TPM_NV_DATA_PUBLIC(0xFFFFFFFF)
    assert run(tpm, 0xC1, 0xCC, lock.to_bytes() + bytes(20)).rc == 0
    assert tpm.perm.flags.nvLocked
    assert nv_write(tpm, 0x2000, b"lock") == RC.TPM_AUTH_CONFLICT
    # index 0: a zero-length write sets bGlobalLock
    assert nv_write(tpm, 0, b"") == 0 and tpm.stclear.bGlobalLock


def test_auth_areas_need_their_own_commands_even_unlocked(owned):
    tpm = owned
    tpm.perm.flags.nvLocked = False
    pub = S.TPM_NV_DATA_PUBLIC(0x2001, permission=S.TPM_NV_ATTRIBUTES(0x40004), dataSize=4)
    assert run(tpm, 0xC1, 0xCC, pub.to_bytes() + AREA_AUTH).rc == 0
    assert nv_write(tpm, 0x2001, b"abcd") == RC.TPM_AUTH_CONFLICT
    assert nv_read(tpm, 0x2001, 4)[0] == RC.TPM_AUTH_CONFLICT
    assert nv_write(tpm, 0x2001, b"abcd", secret=AREA_AUTH, ordinal=0xCE) == 0
    assert nv_read(tpm, 0x2001, 4, secret=AREA_AUTH, ordinal=0xD0) == (0, b"abcd")


def test_dir_area_is_owner_writable(owned):
    assert nv_write(owned, 0x10000001, bytes(range(20)), secret=OWNER) == 0
    assert nv_read(owned, 0x10000001, 20) == (0, bytes(range(20)))
    assert nv_write(owned, 0x10000001, b"x", secret=OWNER) == RC.TPM_NOT_FULLWRITE
