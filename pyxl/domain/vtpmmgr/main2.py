"""vtpmmgr-stubdom on a TPM 2.0 chip (Xen 4.17 stubdom/vtpmmgr init.c
vtpmmgr2_init / vtpmmgr2_create / tpm2_take_ownership, vtpmmgr.c main
with extra="tpm2=1").

The start-up is Xen's: options (srk_handle=<hex> too), storage, tpmback,
init_tpm2_tis, "TPM 2.0 access ...ok", flush_tpm2, entropy from
TPM2_GetRandom, then load the disk or -- only on a blank one -- create:
the SRK (TPM2_CreatePrimary under the owner hierarchy, unless srk_handle=
names a persistent one), the SK under it (TPM2_Create + TPM2_Load), a new
header.  Unlike Xen, the SK's blobs are kept in the header (storage2.py),
so after a restart the manager loads the same SK and every vTPM's
hash and key unbind again; Xen regenerates the SK at every boot and its
man page says the path "cannot persist data".
"""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING, Callable

from pyxl.domain.drivers.tpm2_tis import TpmTis2
from pyxl.domain.drivers.tpm_tis import TisError
from pyxl.domain.drivers.tpmback import TpmBack
from pyxl.domain.drivers.tpmfront import TpmFront, TpmFrontError
from pyxl.domain.minios import disk_is_blank
from pyxl.tpm import constants as C

from . import protocol as P

from .hwtpm import HwTpmError
from .hwtpm2 import MAX_LOADED_OBJECTS, TRANSIENT_FIRST, HwTpm2, SealedKey
from .main import ENTROPY_BYTES, TCPA_MAX_BUFFER_LENGTH, Drbg, ManagerBase, OptionError
from .storage import StorageFailure
from .storage2 import MgrStorage2

if TYPE_CHECKING:
    from pyxl.domain.minios import Printk
    from pyxl.domain.process import Domain

TPM2_EXTRA_OPT = "tpm2=1"          # vtpmmgr.h; vtpmmgr.c parse_cmdline_hw compares whole args
GETRANDOM_REQ_SIZE = 14             # sizeof_TPM_RQU_GetRandom: header + u32
SRK_AUTH_AREA = bytes(20)          # tpm2_take_ownership: the SRK's password area, 20 zeros


def wants_tpm2(argv: list[str]) -> bool:
    """vtpmmgr.c parse_cmdline_hw."""
    return TPM2_EXTRA_OPT in argv[1:]


class Manager2(ManagerBase[HwTpm2, SealedKey]):
    """vtpmmgr on a TPM 2.0 chip."""

    storage_class = MgrStorage2

    def __init__(self, dom: Domain, printk: Printk):
        super().__init__(dom, printk)
        self.srk_handle = 0            # 0: make the SRK (tpm2_take_ownership)
        self.srk_persistent = False
        self.srk_ready = False         # the SRK is there for this boot
        self.sk_handle = 0

    # -- init.c parse_cmdline_opts: srk_handle=%x ------------------------------
    def parse_cmdline(self, argv: list[str]) -> dict:
        for arg in argv[1:]:
            if arg.startswith("srk_handle="):
                m = re.match(r"\s*(?:0[xX])?([0-9a-fA-F]+)", arg[11:])
                if not m or not 0 <= int(m.group(1), 16) <= 0xFFFFFFFF:
                    self.log.error("Invalid Option %s\n" % arg)
                    raise OptionError(arg)
                self.srk_handle = int(m.group(1), 16)
                self.srk_persistent = self.srk_handle != 0
        return super().parse_cmdline(argv)

    # -- the storage layer's hooks ---------------------------------------------------
    def load_storage_key(self) -> None:
        if not self.srk_ready:
            self._srk()
        self.sk_handle = self.chip.load(self.srk_handle, SRK_AUTH_AREA, self.key)
        self.storage_key_handle = self.sk_handle

    def bind(self, data: bytes) -> bytes:
        return self.chip.bind(self.sk_handle, data)

    def unbind(self, block: bytes) -> bytes:
        return self.chip.unbind(self.sk_handle, block)

    def forget_storage_key(self) -> None:
        self.storage_key = None
        if self.sk_handle:
            try:
                self.chip.flush_context(self.sk_handle)
            except HwTpmError:
                pass
        self.sk_handle = self.storage_key_handle = 0

    # -- init.c ------------------------------------------------------------------------
    def take_ownership(self) -> None:
        """tpm2_take_ownership: the SRK, a primary key of the owner hierarchy."""
        self.srk_handle = self._try(self.chip.create_primary_srk, "tpm2_take_ownership", 562)
        self.srk_ready = True
        self.log.info("SRK handle: 0x%X\n" % self.srk_handle)

    def create(self) -> None:
        """vtpmmgr2_create."""
        try:
            if not self.srk_persistent and not self.srk_ready:
                self._try(self.take_ownership, "vtpmmgr2_create", 581)
            self.storage_key = self._try(lambda: self.chip.create_sk(self.srk_handle,
                                                                   SRK_AUTH_AREA),
                                         "vtpmmgr2_create", 625)
            self._try(self.load_storage_key, "vtpmmgr2_create", 626)
            self.log.info("SK HANDLE: 0x%X\n" % self.sk_handle)
            try:
                self.storage.new_header()
            except StorageFailure as e:
                self.log.tryfail("vtpmmgr2_create", "init.c", 635, e.rc)
                raise HwTpmError(e.rc) from None
        finally:
            self.log.info("Finished initialized new VTPM manager\n")

    def flush_tpm(self) -> None:
        """flush_tpm2: FlushContext on the first transient handles, results ignored."""
        for h in range(TRANSIENT_FIRST, TRANSIENT_FIRST + MAX_LOADED_OBJECTS):
            try:
                self.chip.flush_context(h)
            except HwTpmError:
                pass

    def _srk(self) -> None:
        """The SRK for this boot: the persistent one, or the owner's primary
        made again (tpm2_take_ownership; the same key: the same template
        under the same owner seed)."""
        if self.srk_persistent:
            self.chip.read_public(self.srk_handle)     # it must be there
            self.srk_ready = True
        else:
            self.take_ownership()

    def init(self, argv: list[str]) -> bool:
        """vtpmmgr2_init."""
        self.log.info("Hardware : --- TPM 2.0 ---\n")
        try:
            opts = self.parse_cmdline(argv)
        except OptionError:
            self.log.error("Command line parsing failed! exiting..\n")
            self.shutdown()
            return False
        if not self._init_storage():
            self.log.error("Unable to initialize storage subsystem!\n")
            self.shutdown()
            return False
        self.back = TpmBack(self.dom.xen, self.printk, close_callback=self._closed)
        if opts["tpmdriver"] == "tpm_tis":
            try:
                self.tis = TpmTis2(self.dom.xen, self.printk, opts["tpmiomem"],
                                   1 << opts["tpmlocality"], max(0, opts["tpmirq"]))
            except (TisError, OSError):
                self.log.error("Unable to initialize tpmfront device\n")
                self.shutdown()
                return False
            self.printk("init_tpm2_tis()       ...ok\n")
            self.tis.open()
            self.tis.request_locality(opts["tpmlocality"])
            self.tpmlocality = opts["tpmlocality"]
            transmit: Callable[[bytes], bytes] = self.tis.transmit
        else:
            try:
                self.front = TpmFront(self.dom.xen, self.printk)
            except TpmFrontError:
                self.log.error("Unable to initialize tpmfront device\n")
                self.shutdown()
                return False
            self.printk("tpmfront_open(device/vtpm/0) -> 3\n")
            transmit = self.front.cmd
        self.printk("TPM 2.0 access ...ok\n")
        self.hw = HwTpm2(transmit, self.log)
        try:
            self.flush_tpm()
            try:                 # entropy_gather: a failing source is not fatal
                entropy = self.chip.get_random(ENTROPY_BYTES)
            except HwTpmError:
                entropy = b""
            self.rng = Drbg(entropy)
            if self.gen_owner_auth:
                self.owner_auth = self.rng(20)
            try:
                self.storage.load_header()
            except StorageFailure:
                if not disk_is_blank(self.storage.fd):
                    # Xen makes a new manager over whatever it could not read
                    self.log.error("The disk holds data that is not a manager image this TPM "
                                   "can read (damaged, or made with another TPM): refusing to "
                                   "initialize it; nothing was written. Zero the image to "
                                   "start afresh.\n")
                    raise
                self.log.info("Assuming first time initialization.\n")
                self._try(self.create, "vtpmmgr2_init", 743)
        except (HwTpmError, TisError, TpmFrontError, OSError, StorageFailure):
            self.shutdown()
            return False
        self.dom.on_resume(self.resume_hw)
        self.dom.on_resume(self.backend.resume)
        return True

    def resume_hw(self) -> None:
        """After a daemon restart the chip was power-cycled: its transient
        SRK and SK are gone; make the SRK again and load the SK from its
        blobs (what keeping them on disk allows)."""
        try:
            if self.tis is not None:
                if self.tis.resume(self.tpmlocality) < 0:
                    raise TisError(5, "no locality")
            elif self.front is not None:
                self.front.resume()
            self.srk_ready = False
            if self.storage_key is not None:
                self.load_storage_key()
        except (HwTpmError, TisError, TpmFrontError) as e:
            self.log.error("Hardware TPM not usable after resume: %s\n" % e)
        finally:
            self._hw_up()

    # -- vtpm_cmd_handler.c ------------------------------------------------------------
    def handle_cmd(self, uuid: bytes, req: bytes, who: tuple[int, int] = (0, 0)) -> bytes:
        """vtpmmgr_handle_cmd; a vTPM's TPM_GetRandom becomes TPM2_GetRandom
        with a TPM 1.2 answer (vtpmmgr_handle_getrandom, its hw_is_tpm2
        branch).  Everything else as on a 1.2 chip (a TPM_PcrRead reaches the
        2.0 chip as it is, and fails there, as in Xen)."""
        try:
            tag, _size, ordinal = P.unpack_header(req)
        except ValueError:
            tag = ordinal = 0
        if tag not in (0x00C1, 0x00C2, 0x00C3) or ordinal != C.TPM_ORD_GetRandom:
            return super().handle_cmd(uuid, req, who)
        self.log.info("Passthrough: TPM_GetRandom\n")
        if len(req) != GETRANDOM_REQ_SIZE:
            return P.HEADER.pack(0x00C4, P.HEADER_SIZE, C.TPM_BAD_PARAMETER)
        n = min(struct.unpack_from(">I", req, P.HEADER_SIZE)[0],
                TCPA_MAX_BUFFER_LENGTH - GETRANDOM_REQ_SIZE)
        try:
            data = self._hw_retry(self.chip.get_random, n)
        except HwTpmError as e:
            self.log.tryfail("vtpmmgr_handle_getrandom", "vtpm_cmd_handler.c", 818, e.rc)
            return P.HEADER.pack(tag + 3, P.HEADER_SIZE, e.rc)
        except (TisError, TpmFrontError, OSError):
            return P.HEADER.pack(tag + 3, P.HEADER_SIZE, C.TPM_IOERROR)
        return P.HEADER.pack(C.TPM_TAG_RSP_COMMAND, P.HEADER_SIZE + 4 + len(data), 0) + \
            struct.pack(">I", len(data)) + data

    def shutdown(self) -> None:
        """vtpmmgr_shutdown on a 2.0 chip: tpmback, flush_tpm2, the driver."""
        if self.back is not None:
            self.back.shutdown()
        else:
            self.printk("Tpmback:Info Shutting down tpm backend\n")
        if self.hw is not None:
            try:
                self.flush_tpm()
            except (TisError, OSError):
                pass
        if self.tis is not None:
            self.tis.shutdown()
        self.log.info("VTPM Manager stopped.\n")
