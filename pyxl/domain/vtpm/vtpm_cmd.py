"""What vtpm-stubdom asks the manager through its tpmfront (seed
vtpm_cmd.c): LoadHashKey / SaveHashKey, and raw TPM_GetRandom /
TPM_PcrRead that the manager passes to the hardware TPM."""

from __future__ import annotations

import struct

from pyxl.domain.drivers.tpmfront import TpmFrontError
from pyxl.domain.vtpmmgr import protocol as P

from .log import emu_format

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable

    from pyxl.domain.drivers.tpmfront import TpmFront

    from .log import VtpmLog

TPM_FAIL = 9
# How long one request to the manager may take before the vTPM gives up on
# it and answers its guest TPM_FAIL (the seed waits forever: a dead manager
# hangs every guest command).  Generous against a manager busy on the
# hardware TPM; a manager whose domain is gone is noticed within
# tpmfront.POLL.
MANAGER_TIMEOUT = 10.0
ERR_MALFORMED = "Malformed response from backend"
ERR_TPMFRONT = "Error sending command through frontend device"
SENDING_KEY = emu_format("vtpm_cmd.c", 201, "Info", "Sending encryption key to backend")


class ManagerError(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class ManagerClient:
    def __init__(self, front: TpmFront, log: VtpmLog):
        self.front = front
        self.log = log

    def _err(self, line: int, msg: str) -> None:
        self.log.emu("vtpm_cmd.c", line, "Error", msg)

    def _call(self, request: bytes, fname: str, lines: tuple[int, int, int],
              meanwhile: Callable[[], object] | None = None) -> bytes:
        """Send, check the header and status; `lines` = the seed's lines of
        the send, unpack and status checks (their error messages).
        `meanwhile()` runs while the manager works (TpmFront.cmd)."""
        front_line, unpack_line, check_line = lines
        try:
            resp = self.front.cmd(request, timeout=MANAGER_TIMEOUT, meanwhile=meanwhile)
        except TpmFrontError:
            self._err(front_line, ERR_TPMFRONT)
            raise ManagerError(TPM_FAIL) from None
        try:
            _tag, _size, status = P.unpack_header(resp)
        except ValueError:
            self._err(unpack_line, ERR_MALFORMED)
            raise ManagerError(TPM_FAIL) from None
        if status:
            self._err(check_line, "%s failed with error code (%d)" % (fname, status))
            raise ManagerError(status)
        return resp

    def get_random(self, n: int) -> bytes:
        req = struct.pack(">HIII", 0x00C1, 14, 0x46, n)
        resp = self._call(req, "TPM_GetRandom()", (113, 117, 120))
        if len(resp) < 14:
            self._err(123, ERR_MALFORMED)
            raise ManagerError(TPM_FAIL)
        size = struct.unpack_from(">I", resp, 10)[0]
        return resp[14:14 + size]

    def pcr_read(self, index: int) -> bytes:
        req = struct.pack(">HIII", 0x00C1, 14, 0x15, index)
        resp = self._call(req, "TPM_PCRRead", (239, 242, 245))
        return resp[10:30]

    def load_hashkey(self) -> bytes:
        self.log.emu("vtpm_cmd.c", 155, "Info", "Requesting Encryption key from backend")
        try:
            resp = self._call(P.pack(P.VTPM_TAG_REQ, P.VTPM_ORD_LOADHASHKEY),
                              "VTPM_LoadHashKey()", (156, 161, 164))
        except ManagerError:
            self._err(175, "VTPM_LoadHashKey failed")
            raise
        return resp[P.HEADER_SIZE:]

    def save_hashkey(self, hashkey: bytes, meanwhile: Callable[[], object] | None = None) -> None:
        """VTPM_SaveHashKey.  `meanwhile()` (the disk write) runs while the
        manager stores the record; what it raises is raised here, without
        the manager's error lines (the seed never sends after a failed
        write).  The console shows the seed's order: the write's lines,
        then this one."""
        def while_the_manager_works() -> None:
            if meanwhile is not None:
                meanwhile()
            self.log.printk(SENDING_KEY)
        try:
            self._call(P.pack(P.VTPM_TAG_REQ, P.VTPM_ORD_SAVEHASHKEY, hashkey),
                       "VTPM_SaveHashKey()", (202, 207, 210), while_the_manager_works)
        except ManagerError:
            self._err(214, "VTPM_SaveHashKey failed")
            raise


def create_error_response(request: bytes, rc: int) -> bytes:
    """The seed's 10-byte error reply, tag quirk included: AUTH1 and AUTH2
    requests get 0x00C3 (a request tag) back."""
    tag = 0x00C4
    if len(request) >= 2:
        t = int.from_bytes(request[:2], "big")
        tag = {0x00C1: 0x00C4, 0x00C2: 0x00C3, 0x00C3: 0x00C3}.get(t, t)
    return struct.pack(">HII", tag, 10, rc)
