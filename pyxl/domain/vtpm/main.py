"""The body of vtpm-stubdom (seed vtpm.c main / main_loop)."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, cast

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pyxl.domain.drivers.tpmback import TpmBack
from pyxl.domain.drivers.tpmfront import TpmFront, TpmFrontError
from pyxl.domain.minios import CONSOLE_LINGER, CONSOLE_RUN, VBD_HDA, init_blkfront
from . import engine2
from . import log as L
from .options import OptionError, Options, parse_cmd_line
from .vtpm_cmd import ManagerClient, ManagerError, create_error_response
from .vtpmblk import StorageError, VtpmBlk, slot_bytes

if TYPE_CHECKING:
    from pyxl.domain.minios import Printk
    from pyxl.domain.process import Domain
    from pyxl.tpm import TPM
    from pyxl.tpm.tpm2 import TPM2

TPM_BAD_PARAMETER, TPM_DISABLED, TPM_BAD_ORDINAL, TPM_FAIL = 3, 7, 10, 9
TPM_CONF = 0x07            # strong persistence | generate EK | generate DAA seed
STARTUP = {1: "clear", 2: "state", 3: "deactivated"}
GROWTH = 2                 # each slot must have room for the start-up state to double
ENTROPY_BYTES = 128        # polarssl ENTROPY_MAX_GATHER per gather
# The seed's emulator (TPM_CONF_STRONG_PERSISTENCE) saves after every
# successful command, even one that changed nothing it stores (PCRRead,
# GetCapability, Extend: PCRs are not in what it stores).  pyxl saves when
# what it would store differs from the last durable save, or nothing was ever
# saved: a new vTPM's first successful command always saves, which is the
# save the guide has the user watch after tcsd and tpm_version.  A save of
# the same state again would leave the disk holding that same state, so none
# is made: no write, no SaveHashKey, none of the save's console lines
# (pyxl-vtpm(7), "When a vTPM saves").
DATA_SIZE = L.emu_format("tpm_data.c", 206, "Debug", "size of permanent data: %d")


class Drbg:
    """The seed seeds polarssl's CTR-DRBG from the hardware TPM (via the
    manager); here AES-256-CTR keyed by SHA-256 of that entropy and the
    host's, so a weak or absent hardware source cannot make keys predictable."""

    def __init__(self, entropy: bytes):
        key = hashlib.sha256(entropy + os.urandom(32)).digest()
        self._enc = Cipher(algorithms.AES(key), modes.CTR(os.urandom(16))).encryptor()

    def __call__(self, n: int) -> bytes:
        return self._enc.update(bytes(n))


class Vtpm:
    # set by main() as it brings each part up
    opts: Options
    back: TpmBack
    manager: ManagerClient
    rng: Drbg
    blk: VtpmBlk
    tpm: TPM | TPM2           # which one: opts.tpm2

    def __init__(self, dom: Domain, printk: Printk):
        self.dom = dom
        self.printk = printk
        self.log = L.VtpmLog(printk)
        self.front: TpmFront | None = None
        self.initial: bytes = b""
        self.durable: bytes | None = None
        self.failed = False          # a TPM 2.0 whose save failed: failure mode

    # -- main() ----------------------------------------------------------------
    def main(self, argv: list[str]) -> int:
        log = self.log
        log.info(L.L_STARTING, "starting TPM Emulator (1.2.0.7-475)")
        try:
            self.opts = parse_cmd_line(argv, log)
        except OptionError:
            log.error(L.L_BAD_CMDLINE, "Error parsing commandline\n")
            return -1
        xen = self.dom.xen
        self.back = TpmBack(xen, self.printk)
        # after a daemon restart: the backend waits for the guest's new ring,
        # the frontend brings a new ring to the manager (a restart during its
        # own handshake: TpmFront starts that over itself)
        self.dom.on_resume(self.back.resume)
        try:
            self.front = TpmFront(xen, self.printk)
        except TpmFrontError:
            log.error(L.L_NO_TPMFRONT, "Unable to initialize tpmfront device")
            self.back.shutdown()
            return 0
        self.dom.on_resume(self.front.resume)
        self.manager = ManagerClient(self.front, log)
        try:
            self.rng = Drbg(self.manager.get_random(ENTROPY_BYTES)
                            + self.manager.get_random(ENTROPY_BYTES))
        except ManagerError:
            log.error(L.L_NO_RNG, "Unable to initialize RNG")
            self._close()
            return 0
        if not self._init_vtpmblk():
            log.error(L.L_NO_BLK, "Unable to initialize Blkfront persistent storage")
            self._close()
            return 0
        ok = self.main_loop()
        self._close()
        return 0 if ok else -1

    def _close(self) -> None:
        if self.front is not None:
            self.front.shutdown()
        self.back.shutdown()

    # -- storage -----------------------------------------------------------------
    def _init_vtpmblk(self) -> bool:
        log = self.log
        log.emu("vtpmblk.c", 35, "Info", "Initializing persistent NVM storage\n")
        info = init_blkfront(self.dom, self.printk)
        if info is None:
            log.emu("vtpmblk.c", 38, "Error", "BLKIO: ERROR Unable to initialize blkfront")
            return False
        if info.readonly:
            log.emu("vtpmblk.c", 42, "Error", "BLKIO: ERROR block device is read only!")
            return False
        self.printk("blk_open(device/vbd/%d) -> %d\n" % (VBD_HDA, 3))
        self.blk = VtpmBlk(info.fd, self.manager, log, self.rng)
        return True

    def store(self) -> bool:
        """tpm_store_permanent_data -> write_vtpmblk, when what a save would
        store differs from what the disk holds: nothing saved yet (a new
        vTPM), or the engine's persistent state changed since the last
        durable save.  False when the state could not be saved: the changes
        are then undone (the emulator keeps them, answers success, and
        loses them at the next start)."""
        blob = self.tpm.dump() if self.durable is None else self.tpm.dump_if_changed()
        if blob is None:
            return True                      # the disk holds this state already
        self.log.printk(DATA_SIZE % len(blob))
        try:
            self.blk.write(blob)
        except (StorageError, ManagerError):
            self.log.emu("tpm_cmd_handler.c", 4089, "Error", "tpm_store_permanent_data() failed")
            if self.opts.tpm2:
                # libtpms cannot undo part of its state: as after a failed
                # NV commit it goes to failure mode (engine2.failure_response)
                self.failed = True
                self.log.pyxl("Error", "the state could not be saved: this and every later "
                              "command is answered TPM_RC_FAILURE until the vTPM restarts")
                return False
            # PCRs and sessions stay; loaded keys are unloaded
            cast("TPM", self.tpm).revert(self.durable or self.initial)
            self.log.pyxl("Error", "the state could not be saved: the command is answered "
                          "TPM_FAIL and its changes are undone")
            return False
        self.durable = blob
        return True

    # -- main_loop() ---------------------------------------------------------------
    def refuse(self, why: str) -> bool:
        self.log.pyxl("Error", why + "; refusing to start, the disk is left untouched")
        return False

    def restore(self) -> tuple[bool, bytes | None]:
        """read_vtpmblk, without the seed's fallback to a blank TPM on any
        failure: (True, state) for the state the manager vouches for, (True,
        None) for a uuid the manager has never seen (a new vTPM, or a new
        uuid given to wipe one: a new TPM), (False, None) when the state
        does not authenticate (refused, said why)."""
        try:
            return True, self.blk.read()
        except ManagerError as e:
            if e.status == TPM_DISABLED:           # the manager's "Attempted to open vTPM twice!"
                return self.refuse("the manager refused this vTPM's uuid: another live vTPM "
                                   "has it"), None
            if e.status != TPM_BAD_PARAMETER:      # the manager's "Unrecognized uuid!"
                return self.refuse("the manager did not give this vTPM its key (error %d)"
                                   % e.status), None
            if not self.blk.blank():
                self.log.pyxl("Info", "the manager holds no state for this uuid (a new uuid): "
                              "starting a new TPM; the disk's old contents will be overwritten")
            return True, None
        except StorageError:
            return self.refuse("no slot of the disk holds the state the manager has for this "
                               "vTPM's uuid (a damaged disk, or another vTPM's)"), None

    def fits(self, state: bytes) -> bool:
        """The disk has two slots with room for `state` to grow (GROWTH)."""
        need = 2 * slot_bytes(GROWTH * len(state))
        if self.blk.size < need:
            return self.refuse("the disk (%d bytes) is too small: two slots with room for "
                               "this vTPM's state (%d bytes) to double need %d bytes"
                               % (self.blk.size, len(state), need))
        return True

    def emulator_init(self) -> bool:
        log = self.log
        ok, blob = self.restore()
        if not ok:
            return False
        if self.opts.tpm2:                 # pyxl's TPM 2.0 vTPM (engine2.py)
            tpm2 = engine2.emulator_init(blob, self.opts, log)
            self.initial = tpm2.dump()
            self.durable = blob
            if not self.fits(self.initial):
                tpm2.close()
                return False
            self.tpm = tpm2
            return True
        # the TPM 1.2 engine is imported here, as libtpms is in engine2: a
        # vTPM loads only the engine it runs
        from pyxl.tpm import TPM, TPMStateError, XEN_VTPM_IDENTITY

        log.emu("tpm_cmd_handler.c", L.L_EMU_INIT, "Debug",
                "tpm_emulator_init(%d, 0x%08x)" % (self.opts.startup, TPM_CONF))
        if blob is None:
            log.emu("tpm_data.c", 120, "Info", "initializing TPM data to default values")
            tpm = TPM(XEN_VTPM_IDENTITY)
        else:
            try:
                tpm = TPM.load(blob, XEN_VTPM_IDENTITY)
            except TPMStateError as e:
                return self.refuse("the saved state does not load (%s)" % e)
        # what a failed save goes back to; durable: what the disk holds
        self.initial = tpm.dump()
        self.durable = self.initial if self.blk.current is not None else None
        if not self.fits(self.initial):
            return False
        self.tpm = tpm
        log.emu("tpm_startup.c", 29, "Info", "TPM_Init()")
        log.emu("tpm_testing.c", 243, "Info", "TPM_SelfTestFull()")
        log.emu("tpm_testing.c", 261, "Info", "Self-Test succeeded")
        log.emu("tpm_startup.c", 43, "Info", "TPM_Startup(%d)" % self.opts.startup)
        tpm.power_on(STARTUP[self.opts.startup])
        return True

    def init_hw_pcrs(self) -> bool:
        if self.opts.tpm2:
            return True                    # engine2 refuses hwinitpcr= at start-up
        tpm = cast("TPM", self.tpm)
        for i in range(24):
            if self.opts.hwinitpcrs >> i & 1:
                try:
                    digest = self.manager.pcr_read(i)
                except ManagerError as e:
                    self.log.emu("vtpm_pcrs.c", 35, "Error",
                                 "TPM_PCRRead failed with error : %d" % e.status)
                    return False
                tpm.pcrs[i] = bytes(digest).ljust(20, b"\0")[:20]
        return True

    def handle(self, req: bytes, locality: int) -> bytes:
        if not req:
            return b""
        if len(req) >= 10:
            ordinal = L.U32.unpack_from(req, 6)[0]
            if ordinal in self.opts.bad_ordinals:
                # the seed's format lacks its argument; we print the ordinal
                self.log.error(L.L_DISABLED_ORD, "Disabled command ordinal (%d) requested!\n"
                               % ordinal)
                return create_error_response(req, TPM_BAD_ORDINAL)
        if self.failed:
            return engine2.failure_response()
        rsp = self.tpm.execute(req, locality)
        if not self.opts.tpm2:             # tpm_emulator's lines describe TPM 1.2 commands
            self.log.command(req, rsp)
        if len(rsp) >= 10 and rsp[6:10] == b"\0\0\0\0":
            if not self.store():             # no acknowledgement without durability
                return engine2.failure_response() if self.opts.tpm2 \
                    else create_error_response(req, TPM_FAIL)
        return rsp

    def main_loop(self) -> bool:
        """False when the vTPM refused its state (nothing served, nothing saved)."""
        log = self.log
        log.info(L.L_INITIALIZING, "VTPM Initializing\n")
        try:
            if not self.emulator_init():
                return False
        except engine2.EngineError as e:
            engine2.say(log, "Error", "Unable to start the TPM 2.0: %s" % e)
            return False
        if not self.init_hw_pcrs():
            log.error(L.L_HWPCR_FAIL, "Failed to initialize PCRs with hardware TPM values")
        else:
            log.info(L.L_WAITING, "Waiting for frontend domain to connect..")
            who = self.back.wait_for_frontend_connect()
            if who is None:
                log.error(L.L_ATTACH_FAIL, "Unable to attach to a frontend")
            else:
                domid, handle = who
                log.info(L.L_ATTACHED, "VTPM attached to Frontend %u/%u" % (domid, handle))
                self.blk.prepare()
                while True:
                    cmd = self.back.req(domid, handle)
                    if cmd is None:
                        break
                    # the lines of a run of commands go out after its last reply
                    with self.printk.held():
                        while cmd is not None:
                            self.back.resp(cmd, self.handle(cmd.req, cmd.locality))
                            # the next save's key and cipher, if the last save did not
                            # draw them while the manager worked
                            self.blk.prepare()
                            cmd = self.back.req(domid, handle, timeout=CONSOLE_LINGER) \
                                if self.printk.kept() < CONSOLE_RUN else None
        log.info(L.L_SHUTTING, "VTPM Shutting down\n")
        if self.opts.tpm2:
            if engine2.save_state(cast("TPM2", self.tpm)):
                self.store()
            else:
                engine2.say(log, "Error", "TPM2_Shutdown(TPM_SU_STATE) failed")
            return True
        log.emu("tpm_cmd_handler.c", L.L_EMU_SHUTDOWN, "Debug", "tpm_emulator_shutdown()")
        log.emu("tpm_startup.c", 106, "Info", "TPM_SaveState()")
        rsp = self.tpm.execute(bytes.fromhex("00c10000000a00000098"))
        if rsp[6:10] == b"\0\0\0\0":
            self.store()
        else:
            log.emu("tpm_cmd_handler.c", 4128, "Error", "TPM_SaveState() failed")
        return True
