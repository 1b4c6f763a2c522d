"""/dev/tpmrm0's space (pyxl/domain/linux/tpmrm.py) on libtpms's TPM 2.0 in
this process: what one open() of the device loaded is flushed when it is
closed, as Linux's tpm2-space.c does; a session the client context-saved
is the client's to keep."""

from __future__ import annotations

import struct

from pyxl.domain.linux.tpmrm import Space
from pyxl.tpm.tpm2 import TPM2
from tpm2 import client as C

TPM_CAP_HANDLES = 1
# TPM 2.0 Part 2: the handle ranges TPM2_GetCapability(TPM_CAP_HANDLES) lists
HR_TRANSIENT, HR_LOADED_SESSION, HR_SAVED_SESSION = 0x80000000, 0x02000000, 0x03000000


def handles(tpm, first: int) -> list[int]:
    rsp = tpm.execute(C.get_capability(TPM_CAP_HANDLES, first, 64))
    assert C.rc_of(rsp) == 0
    (n,) = struct.unpack_from(">I", rsp, 15)
    return [struct.unpack_from(">I", rsp, 19 + 4 * i)[0] for i in range(n)]


def start_hmac_session() -> bytes:
    """TPM2_StartAuthSession(tpmKey NULL, bind NULL): an unsalted, unbound
    HMAC session with SHA-256, no symmetric algorithm."""
    body = struct.pack(">II", 0x40000007, 0x40000007) + C.b2(bytes(32)) + C.b2(b"") + \
        struct.pack(">BHH", 0x00, C.ALG["null"], C.ALG["sha256"])
    return struct.pack(">HII", 0x8001, 10 + len(body), 0x176) + body


def test_close_flushes_what_the_space_loaded():
    with TPM2() as tpm:
        assert tpm.power_on("clear") == 0
        a, b = Space(tpm.execute), Space(tpm.execute)
        p1 = C.handle_of(a.command(C.create_primary()))
        p2 = C.handle_of(a.command(C.create_primary()))
        s = C.handle_of(a.command(start_hmac_session()))
        kept = C.handle_of(b.command(C.create_primary()))
        assert C.rc_of(a.command(C.flush(p2))) == 0          # flushed by the client: forgotten
        saved = a.command(C.context_save(s))                  # the client keeps this session
        assert C.rc_of(saved) == 0
        assert set(handles(tpm, HR_TRANSIENT)) == {p1, kept}
        a.close()
        assert handles(tpm, HR_TRANSIENT) == [kept]           # the other open() is untouched
        assert handles(tpm, HR_SAVED_SESSION) == [s]          # still saved, the client's
        assert handles(tpm, HR_LOADED_SESSION) == []
        assert C.rc_of(tpm.execute(C.context_load(saved))) == 0
        b.close()
        assert handles(tpm, HR_TRANSIENT) == []
