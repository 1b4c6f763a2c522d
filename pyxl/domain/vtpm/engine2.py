"""vtpm-stubdom with `tpm2=1`: a TPM 2.0 (libtpms, pyxl.tpm.tpm2) behind the
same tpmif ring, the same encrypted two-slot disk and the same manager
protocol as the TPM 1.2 emulator.

Xen's vtpm-stubdom only ever ran the TPM 1.2 emulator; this is pyxl's
extension.  What stays the same, so the manager cannot tell the versions
apart: the state is one blob (TPM2.dump(): libtpms's permanent state),
encrypted and written by VtpmBlk, its SHA-1 and key kept by the manager
through SaveHashKey/LoadHashKey; the locality of each ring request is handed
to libtpms.  What the start-up options mean for a TPM 2.0 (TCG PC Client
Platform TPM Profile: what a platform's firmware does at boot):

  clear        TPM2_Startup(TPM_SU_CLEAR)
  save         TPM2_Startup(TPM_SU_STATE), resuming what the last
               TPM2_Shutdown(TPM_SU_STATE) saved; when the TPM refuses
               (nothing saved), TPM2_Startup(TPM_SU_CLEAR), as firmware does
  deactivated  TPM2_Startup(TPM_SU_CLEAR), then TPM2_HierarchyControl turns
               the endorsement, storage and platform hierarchies off: nothing
               the guest does works until the next start-up (TPM 1.2's
               TPM_Startup(ST_DEACTIVATED) lasts until the next TPM_Startup)

At shutdown the vTPM sends TPM2_Shutdown(TPM_SU_STATE) where the 1.2
emulator runs TPM_SaveState.  `hwinitpcr=` cannot work (TPM 2.0 PCRs can
only be extended, and the manager reads SHA-1 PCRs of a TPM 1.2): the vTPM
refuses to serve rather than give the guest PCRs it did not ask for.

libtpms (pyxl.tpm.tpm2, through ctypes) is loaded by emulator_init, not
when this module is imported: a TPM 1.2 vTPM never pays for it.

A state on the disk that the manager vouches for but libtpms rejects (a TPM
1.2 state, a damaged blob) stops the vTPM: it is never replaced by a new,
blank TPM.  When a save fails, libtpms's own rule for a failed NV commit
applies: the command and every later one are answered TPM_RC_FAILURE
(failure mode) until the vTPM is started again from what the disk holds.
"""

from __future__ import annotations

import struct

from pyxl.domain.tpm2_frames import PW_SESSION, TPM_ST_SESSIONS

from .options import ST_DEACTIVATED, ST_SAVE

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from pyxl.tpm.tpm2 import TPM2

    from .log import VtpmLog
    from .options import Options

# TPM 2.0 Part 2 (libtpms src/tpm2/TpmTypes.h)
TPM_CC_HierarchyControl = 0x121
TPM_RH_OWNER, TPM_RH_ENDORSEMENT, TPM_RH_PLATFORM = 0x40000001, 0x4000000B, 0x4000000C
TPM_ST_NO_SESSIONS, TPM_RC_FAILURE = 0x8001, 0x101


class EngineError(Exception):
    """The TPM 2.0 cannot be started: the vTPM must not serve."""


def say(log: VtpmLog, kind: str, msg: str) -> None:
    """A console line of the TPM 2.0 engine (`tpm2: Info: ...`)."""
    log.printk("tpm2: %s: %s\n" % (kind, msg))


def rc_of(rsp: bytes) -> int:
    return int.from_bytes(rsp[6:10], "big") if len(rsp) >= 10 else -1


def hierarchy_off(tpm: TPM2, hierarchy: int) -> int:
    """TPM2_HierarchyControl(TPM_RH_PLATFORM, enable=hierarchy, state=NO)."""
    body = struct.pack(">I", TPM_RH_PLATFORM) + PW_SESSION + struct.pack(">IB", hierarchy, 0)
    req = struct.pack(">HII", TPM_ST_SESSIONS, 10 + len(body), TPM_CC_HierarchyControl) + body
    return rc_of(tpm.execute(req))


def start(tpm: TPM2, startup: int, log: VtpmLog) -> None:
    """_TPM_Init and TPM2_Startup as the start-up option says (module doc)."""
    from pyxl.tpm.tpm2.engine import TPM_CC_Startup, TPM_SU_CLEAR, command

    if startup == ST_SAVE:
        rc = tpm.power_on("state")
        say(log, "Info", "TPM2_Startup(TPM_SU_STATE): 0x%x" % rc)
        if rc:
            rc = rc_of(tpm.execute(command(TPM_CC_Startup, struct.pack(">H", TPM_SU_CLEAR))))
            say(log, "Info", "TPM2_Startup(TPM_SU_CLEAR): 0x%x" % rc)
    else:
        rc = tpm.power_on("clear")
        say(log, "Info", "TPM2_Startup(TPM_SU_CLEAR): 0x%x" % rc)
    if rc:
        raise EngineError("TPM2_Startup failed: 0x%x" % rc)
    if startup == ST_DEACTIVATED:
        for h in (TPM_RH_ENDORSEMENT, TPM_RH_OWNER, TPM_RH_PLATFORM):
            rc = hierarchy_off(tpm, h)
            if rc:
                raise EngineError("TPM2_HierarchyControl(0x%08x) failed: 0x%x" % (h, rc))
        say(log, "Info", "hierarchies disabled until the next start-up (deactivated)")


def emulator_init(blob: bytes | None, opts: Options, log: VtpmLog) -> TPM2:
    """tpm_emulator_init for a TPM 2.0: `blob`, the state the manager vouches
    for (None: the manager has never seen this uuid, a new TPM), started as
    opts.startup says.  EngineError when it cannot be started."""
    from pyxl.tpm.tpm2 import TPM2, TPM2Error, TPM2StateError

    say(log, "Debug", "TPM 2.0 (libtpms) init, startup mode %d" % opts.startup)
    if opts.hwinitpcrs:
        raise EngineError("hwinitpcr= is not supported by a TPM 2.0 vTPM")
    try:
        if blob is None:
            say(log, "Info", "initializing a new TPM 2.0")
            tpm = TPM2()
        else:
            tpm = TPM2.load(blob)
    except TPM2StateError as e:
        raise EngineError("stored state rejected: %s" % e) from None
    except TPM2Error as e:
        raise EngineError(str(e)) from None
    try:
        start(tpm, opts.startup, log)
    except (TPM2Error, EngineError) as e:
        tpm.close()
        raise EngineError(str(e)) from None
    return tpm


def failure_response() -> bytes:
    """What libtpms answers in failure mode (TpmFailureMode, ExecCommand.c),
    as after a failed _plat__NvCommit: TPM_ST_NO_SESSIONS, TPM_RC_FAILURE."""
    return struct.pack(">HII", TPM_ST_NO_SESSIONS, 10, TPM_RC_FAILURE)


def save_state(tpm: TPM2) -> bool:
    """What the 1.2 emulator's TPM_SaveState is at shutdown: TPM2_Shutdown(SU_STATE)."""
    return tpm.save_state() == 0
