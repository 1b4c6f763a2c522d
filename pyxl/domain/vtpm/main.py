"""The body of vtpm-stubdom (seed vtpm.c main / main_loop)."""

from __future__ import annotations

import fcntl
import hashlib
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pyxl.domain.drivers.tpmback import TpmBack
from pyxl.domain.drivers.tpmfront import TpmFront, TpmFrontError
from pyxl.tpm import TPM
from pyxl.tpm.engine import TPMStateError
from pyxl.tpm.identity import XEN_VTPM_IDENTITY

from . import log as L
from .options import OptionError, parse_cmd_line
from .vtpm_cmd import ManagerClient, ManagerError, create_error_response
from .vtpmblk import StorageError, VtpmBlk

TPM_BAD_ORDINAL, TPM_FAIL = 10, 9
TPM_CONF = 0x07            # strong persistence | generate EK | generate DAA seed
STARTUP = {1: "clear", 2: "state", 3: "deactivated"}
VBD_HDA = 768
ENTROPY_BYTES = 128        # polarssl ENTROPY_MAX_GATHER per gather
# The seed saves after every successful command (strong persistence), and the
# guide relies on it: after `tpm_version` the user is told to watch the vTPM
# save its state and the manager store its key.  Follow the guide; with False
# a save happens only when the engine's persistent state changed.
SAVE_EVERY_COMMAND = True


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
    def __init__(self, dom, printk):
        self.dom = dom
        self.printk = printk
        self.log = L.VtpmLog(printk)
        self.back = self.front = self.blk = self.tpm = None

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
        self.main_loop()
        self._close()
        return 0

    def _close(self) -> None:
        if self.front is not None:
            self.front.shutdown()
        self.back.shutdown()

    # -- storage -----------------------------------------------------------------
    def _init_vtpmblk(self) -> bool:
        log, printk = self.log, self.printk
        log.emu("vtpmblk.c", 35, "Info", "Initializing persistent NVM storage\n")
        block = self.dom.block
        fd = block.get("hda", block.get(str(VBD_HDA), block.get("xvda")))
        node = "device/vbd/%d" % VBD_HDA
        if fd is None:
            log.emu("vtpmblk.c", 38, "Error", "BLKIO: ERROR Unable to initialize blkfront")
            return False
        printk("******************* BLKFRONT for %s **********\n\n\n" % node)
        backend = self.dom.xen.read_str(node + "/backend", default="") or \
            "/local/domain/0/backend/vbd/%d/%d" % (self.dom.domid, VBD_HDA)
        printk("backend at %s\n" % backend)
        printk("%u sectors of %u bytes\n" % (os.fstat(fd).st_size // 512, 512))
        printk("**************************\n")
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            log.emu("vtpmblk.c", 42, "Error", "BLKIO: ERROR block device is read only!")
            return False
        printk("blk_open(%s) -> %d\n" % (node, 3))
        self.blk = VtpmBlk(fd, self.manager, log, self.rng)
        return True

    def store(self) -> None:
        """tpm_store_permanent_data -> write_vtpmblk."""
        blob = self.tpm.dump()
        self.log.emu("tpm_data.c", 206, "Debug", "size of permanent data: %d" % len(blob))
        try:
            self.blk.write(blob)
        except (StorageError, ManagerError):
            self.log.emu("tpm_cmd_handler.c", 4089, "Error", "tpm_store_permanent_data() failed")

    # -- main_loop() ---------------------------------------------------------------
    def emulator_init(self) -> None:
        log = self.log
        log.emu("tpm_cmd_handler.c", L.L_EMU_INIT, "Debug",
                "tpm_emulator_init(%d, 0x%08x)" % (self.opts.startup, TPM_CONF))
        tpm = None
        try:
            tpm = TPM.load(self.blk.read(), XEN_VTPM_IDENTITY)
        except (StorageError, ManagerError, TPMStateError):
            pass
        if tpm is None:
            log.emu("tpm_data.c", 120, "Info", "initializing TPM data to default values")
            tpm = TPM(XEN_VTPM_IDENTITY)
        self.tpm = tpm
        log.emu("tpm_startup.c", 29, "Info", "TPM_Init()")
        log.emu("tpm_testing.c", 243, "Info", "TPM_SelfTestFull()")
        log.emu("tpm_testing.c", 261, "Info", "Self-Test succeeded")
        log.emu("tpm_startup.c", 43, "Info", "TPM_Startup(%d)" % self.opts.startup)
        tpm.power_on(STARTUP[self.opts.startup])

    def init_hw_pcrs(self) -> bool:
        for i in range(24):
            if self.opts.hwinitpcrs >> i & 1:
                try:
                    digest = self.manager.pcr_read(i)
                except ManagerError as e:
                    self.log.emu("vtpm_pcrs.c", 35, "Error",
                                 "TPM_PCRRead failed with error : %d" % e.status)
                    return False
                self.tpm.pcrs[i] = bytes(digest).ljust(20, b"\0")[:20]
        return True

    def handle(self, req: bytes, locality: int) -> bytes:
        if not req:
            return b""
        if len(req) >= 10:
            ordinal = int.from_bytes(req[6:10], "big")
            if ordinal in self.opts.bad_ordinals:
                # the seed's format lacks its argument; we print the ordinal
                self.log.error(L.L_DISABLED_ORD, "Disabled command ordinal (%d) requested!\n"
                               % ordinal)
                return create_error_response(req, TPM_BAD_ORDINAL)
        rsp = self.tpm.execute(req, locality)
        self.log.command(req, rsp)
        if len(rsp) >= 10 and rsp[6:10] == b"\0\0\0\0" and (
                SAVE_EVERY_COMMAND or self.tpm.persistent_changed):
            self.store()
        return rsp

    def main_loop(self) -> None:
        log = self.log
        log.info(L.L_INITIALIZING, "VTPM Initializing\n")
        self.emulator_init()
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
                while True:
                    cmd = self.back.req(domid, handle)
                    if cmd is None:
                        break
                    self.back.resp(cmd, self.handle(cmd.req, cmd.locality))
        log.info(L.L_SHUTTING, "VTPM Shutting down\n")
        log.emu("tpm_cmd_handler.c", L.L_EMU_SHUTDOWN, "Debug", "tpm_emulator_shutdown()")
        log.emu("tpm_startup.c", 106, "Info", "TPM_SaveState()")
        rsp = self.tpm.execute(bytes.fromhex("00c10000000a00000098"))
        if rsp[6:10] == b"\0\0\0\0":
            self.store()
        else:
            log.emu("tpm_cmd_handler.c", 4128, "Error", "TPM_SaveState() failed")
