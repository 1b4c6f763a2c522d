"""vtpm-stubdom's console lines: `<file>:<line>: Info: <msg>` (Error:, Debug:).

Two level schemes meet here, as in the seed: vtpm.c's own lines use syslog
numbers (error 3, info 6, debug 7) and obey `loglevel=`, while the
emulator's, vtpmblk.c's and vtpm_cmd.c's lines use the emulator's enum
(debug 0, info 1, error 2) and therefore always pass vtpm_log's
`loglevel >= priority` test.  File names and line numbers are those of the
seed tree (stubdom/vtpm @ 1f44053686, tpm_emulator 0.7.4 whose
tpm_cmd_handler.c Xen does not patch); vtpmblk.c's are those of the
two-slot version (58c2ab7588) whose disk layout we use.
"""

from __future__ import annotations

import functools
import struct

from pyxl.tpm import constants as C

from .emulog_data import ORD_DEBUG_LINE, RC_TEXT

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from pyxl.domain.minios import Printk

LOG_ERR, LOG_INFO, LOG_DEBUG = 3, 6, 7
_KIND = {"Info": LOG_INFO, "Error": LOG_ERR, "Debug": LOG_DEBUG}
# vtpm.c lines (seed)
L_DISABLED_ORD, L_INITIALIZING, L_HWPCR_FAIL = 135, 148, 161
L_WAITING, L_ATTACHED, L_ATTACH_FAIL, L_HANDLE_FAIL, L_SHUTTING = 166, 168, 170, 187, 202
L_PCR_INDEX, L_PCR_SPEC, L_BAD_OPTION = 257, 280, 287
L_MODE = {1: 295, 2: 298, 3: 301}
L_HWPCR_LIST, L_HWPCR_ROW, L_PCR_DEFAULT = 314, 323, 325
L_MAINT_OFF, L_MAINT_ON, L_LOGLEVEL, L_STARTING = 329, 336, 339, 363
L_BAD_CMDLINE, L_NO_TPMFRONT, L_NO_RNG, L_NO_BLK = 365, 372, 378, 384
# tpm_cmd_handler.c / tpm_startup.c / tpm_testing.c / tpm_data.c (0.7.4)
L_TAG_LINE: dict[int, int] = {C.TPM_TAG_RQU_AUTH2_COMMAND: 3435, C.TPM_TAG_RQU_AUTH1_COMMAND: 3443,
              C.TPM_TAG_RQU_COMMAND: 3450}
L_BAD_TAG, L_STATUS_MODE, L_UNKNOWN_ORD = 3456, 3464, 4070
L_CMD_FAILED, L_CMD_OK, L_EMU_INIT, L_EMU_SHUTDOWN, L_HANDLE = 4077, 4084, 4113, 4126, 4143
# a request's tag and ordinal; a BE uint32 (a response's return code at 6):
# one unpack each rather than an int.from_bytes of a slice per field
TAG_ORDINAL = struct.Struct(">H4xI")
U32 = struct.Struct(">I")
# rcs tpm_check_status_and_mode produces before a command runs
STATUS_MODE_RCS = {C.TPM_DISABLED, C.TPM_DEACTIVATED, C.TPM_INVALID_POSTINIT,
                   C.TPM_DISABLED_CMD}


class VtpmLog:
    def __init__(self, printk: Printk, loglevel: int = LOG_INFO):
        self.printk = printk
        self.loglevel = loglevel

    def line(self, file: str, line: int, kind: str, msg: str, *, filtered: bool = False) -> None:
        if filtered and self.loglevel < _KIND[kind]:
            return
        self.printk("%s:%d: %s: %s\n" % (file, line, kind, msg))

    # vtpm.c's own info()/error() obey loglevel
    def info(self, line: int, msg: str) -> None:
        self.line("vtpm.c", line, "Info", msg, filtered=True)

    def error(self, line: int, msg: str) -> None:
        self.line("vtpm.c", line, "Error", msg, filtered=True)

    # everything else always prints (line()'s format, without its level
    # test; the four lines of every save are printed as
    # printk(emu_format(...) % args), made once)
    def emu(self, file: str, line: int, kind: str, msg: str) -> None:
        self.printk(emu_format(file, line, kind, msg))

    def pyxl(self, kind: str, msg: str) -> None:
        """pyxl's own lines (no seed counterpart: refusals and recoveries
        the seed does not have); they always print."""
        self.printk("vtpm: %s: %s\n" % (kind, msg))

    def command(self, request: bytes, response: bytes) -> None:
        """What tpm_handle_command / tpm_execute_command print for one command."""
        if len(request) < 10 or len(response) < 10:
            self.emu("tpm_cmd_handler.c", L_HANDLE, "Debug", "tpm_handle_command()")
            return
        tag, ordinal = TAG_ORDINAL.unpack_from(request)
        self.printk(command_lines(tag, ordinal, U32.unpack_from(response, 6)[0]))


def emu_format(file: str, line: int, kind: str, msg: str) -> str:
    """emu()'s line; with a format as `msg`, that line's format."""
    return "%s:%d: %s: %s\n" % (file, line, kind, msg)


@functools.lru_cache(maxsize=256)
def command_lines(tag: int, ordinal: int, rc: int) -> str:
    """The lines tpm_handle_command / tpm_execute_command print for a
    command of this tag and ordinal answered rc: the same few over and
    over, so each is formatted once."""
    lines = [("tpm_cmd_handler.c", L_HANDLE, "Debug", "tpm_handle_command()")]
    if tag not in L_TAG_LINE:
        lines.append(("tpm_cmd_handler.c", L_BAD_TAG, "Info",
                      "The tag value sent to for a command (0x%02x) is invalid" % tag))
    else:
        lines.append(("tpm_cmd_handler.c", L_TAG_LINE[tag], "Debug", "[%s]" % C.TPM_TAG(tag).name))
        known = ORD_DEBUG_LINE.get(ordinal)
        if rc in STATUS_MODE_RCS and known is not None:
            lines.append(("tpm_cmd_handler.c", L_STATUS_MODE, "Info",
                          "tpm_check_status_and_mode(0x%02x) failed: (0x%02x) %s"
                          % (ordinal, rc, rc_text(rc))))
        elif known is None:
            lines.append(("tpm_cmd_handler.c", L_UNKNOWN_ORD, "Info",
                          "The ordinal (0x%02x) was unknown or inconsistent" % ordinal))
        else:
            name, line = known
            lines.append(("tpm_cmd_handler.c", line, "Debug", "[%s]" % name))
            if rc:
                lines.append(("tpm_cmd_handler.c", L_CMD_FAILED, "Info",
                              "TPM command failed: (0x%02x) %s" % (rc, rc_text(rc))))
            else:
                lines.append(("tpm_cmd_handler.c", L_CMD_OK, "Info", "TPM command succeeded"))
    return "".join("%s:%d: %s: %s\n" % line for line in lines)


def rc_text(rc: int) -> str:
    """tpm_error_to_string."""
    return RC_TEXT.get(rc, "Unknown TPM error")
