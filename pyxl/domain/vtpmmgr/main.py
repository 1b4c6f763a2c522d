"""The body of vtpmmgr-stubdom (seed vtpmmgr.c, init.c, vtpm_cmd_handler.c)."""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
from typing import TYPE_CHECKING, Any, Callable, Generic, Protocol, TypeVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pyxl.domain.drivers.tpm_tis import TPM_TIS_BASE, TisConnectionReplaced, TisError, TpmTis
from pyxl.domain.drivers.tpmback import TpmBack
from pyxl.domain.drivers.tpmfront import TpmFront, TpmFrontError
from pyxl.domain.minios import CONSOLE_LINGER, CONSOLE_RUN, VBD_HDA, disk_is_blank, init_blkfront
from pyxl.tpm import constants as C
from pyxl.tpm.structures import TPM_CAP_VERSION_INFO, TPM_KEY
from pyxl.tpm.marshal import Reader

from . import protocol as P
from .hwtpm import SRK_HANDLE, TPM_ET_KEYHANDLE, AuthSession, HwTpm, HwTpmError, rsa_key_parms
from .log import MgrLog
from .storage import MgrStorage, StorageFailure, uuid_str

if TYPE_CHECKING:
    from pyxl.domain.minios import Printk
    from pyxl.domain.process import Domain

WELLKNOWN_SRK_AUTH = bytes(20)
WELLKNOWN_OWNER_AUTH = b"\xff" * 20         # the seed's default (later Xen: zeros)
TPM_KEY_BIND = 0x0014
TCPA_MAX_BUFFER_LENGTH = 0x2000
RESOURCE_TYPES = (1, 2, 4, 6, 8, 5)          # KEY, AUTH, TRANS, COUNTER, DAA_TPM, CONTEXT
ENTROPY_BYTES = 128


class OptionError(ValueError):
    pass


# A hardware TPM command a daemon restart interrupted is sent again once the
# chip was brought up on the new connection (resume_hw), as tpmfront resends
# a vTPM's: at most this many sends, each retry waiting at most this long.
HW_SENDS = 3
HW_RESUME_TIMEOUT = 30.0


class Drbg:
    """Keys and IVs come from AES-256-CTR keyed by SHA-256 of hardware-TPM
    entropy and the host's (the seed: polarssl CTR-DRBG on TPM_GetRandom)."""

    def __init__(self, entropy: bytes):
        key = hashlib.sha256(entropy + os.urandom(32)).digest()
        self._enc = Cipher(algorithms.AES(key), modes.CTR(os.urandom(16))).encryptor()

    def __call__(self, n: int) -> bytes:
        return self._enc.update(bytes(n))


class Chip(Protocol):
    """What the manager's shared code uses of its hardware TPM (HwTpm for a
    TPM 1.2 chip, hwtpm2.HwTpm2 for a 2.0 one)."""

    @property
    def transmit(self) -> Callable[[bytes], bytes]: ...


_Hw = TypeVar("_Hw", bound=Chip)
_Key = TypeVar("_Key")
_T = TypeVar("_T")


class ManagerBase(Generic[_Hw, _Key]):
    """What vtpmmgr does on either chip: options, storage, tpmback, the
    vTPMs' commands.  Manager (TPM 1.2) and main2.Manager2 (TPM 2.0) bring
    up their chip (init), hold their storage key (_Key: a TPM_KEY, or a
    SealedKey) and give the storage layer load_storage_key / unbind /
    forget_storage_key."""

    storage_class: type[MgrStorage] = MgrStorage
    storage: MgrStorage
    rng: Callable[[int], bytes]
    tpmlocality: int

    def __init__(self, dom: Domain, printk: Printk):
        self.dom = dom
        self.printk = printk
        self.log = MgrLog(printk)
        self.owner_auth: bytes = WELLKNOWN_OWNER_AUTH
        self.srk_auth: bytes = WELLKNOWN_SRK_AUTH
        self.storage_key: _Key | None = None
        self.storage_key_handle = 0
        self.storage_key_usage_auth = bytes(20)
        self.oiap = AuthSession()
        self.rng = os.urandom
        self.back: TpmBack | None = None
        self.tis: TpmTis | None = None
        self.front: TpmFront | None = None
        self.hw: _Hw | None = None
        self.gen_owner_auth = False
        self.open_uuids: dict[bytes, tuple[int, int]] = {}   # uuid -> (domid, handle)
        # the hypervisor connection resume_hw last brought the chip up on
        self._hw_generation = 0
        self._hw_resumed = threading.Condition()

    @property
    def chip(self) -> _Hw:
        """The hardware TPM, once init() has brought it up."""
        assert self.hw is not None
        return self.hw

    @property
    def key(self) -> _Key:
        """The storage key, once create() has made it or the disk's header
        has given it."""
        assert self.storage_key is not None
        return self.storage_key

    @property
    def backend(self) -> TpmBack:
        """tpmback, once init() has brought it up."""
        assert self.back is not None
        return self.back

    # -- a hardware command caught by a daemon restart (not in Xen) ----------------
    def _hw_up(self) -> None:
        """resume_hw's end (whether or not the chip came back): wake the
        commands waiting to be sent again."""
        with self._hw_resumed:
            self._hw_generation = self.tis.generation if self.tis is not None \
                else self.dom.xen.generation
            self._hw_resumed.notify_all()

    def _hw_retry(self, fn: Callable[..., _T], *args: Any) -> _T:
        """fn(*args), sent again (at most HW_SENDS times in all) when a daemon
        restart interrupted its hardware command (TisConnectionReplaced),
        once resume_hw has brought the chip up on the new connection: its
        locality, OIAP session and storage key (what an UnBind uses) are
        then the new chip's.  What it runs for a vTPM (GetRandom, PCRRead,
        UnBind for LoadHashKey, and their TPM 2.0 equivalents; on a 2.0
        chip the RSA_Encrypt of SaveHashKey's binds) reads, decrypts or
        encrypts only, so asking the chip twice is safe (a
        save registering a new vTPM forgets the registration it did not
        finish, so the next one makes it again).  A chip's error is not
        retried."""
        for _ in range(HW_SENDS - 1):
            try:
                return fn(*args)
            except TisConnectionReplaced as e:
                dead = e.generation
                with self._hw_resumed:
                    if not self._hw_resumed.wait_for(lambda: self._hw_generation > dead,
                                                     HW_RESUME_TIMEOUT):
                        raise
        return fn(*args)

    # -- what each chip's manager provides ------------------------------------------
    def init(self, argv: list[str]) -> bool:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    def load_storage_key(self) -> None:
        raise NotImplementedError

    def unbind(self, block: bytes) -> bytes:
        raise NotImplementedError

    def forget_storage_key(self) -> None:
        raise NotImplementedError

    # -- options (init.c parse_cmdline_opts, bugs kept) --------------------------
    def parse_auth(self, text: str, wellknown: bytes) -> bytes:
        """The auth's 20 bytes ("random", for the owner's, is read before)."""
        if text == "well-known":
            return wellknown
        if text.startswith("hash:"):
            hexs = text[5:]
            if len(hexs) != 40:
                self.log.error("Supplied owner auth hex string `%s' must be exactly 40 characters "
                               "(20 bytes) long, length=%d\n" % (hexs, len(hexs)))
                raise OptionError(text)
            try:
                return bytes.fromhex(hexs)
            except ValueError:
                self.log.error("Supplied owner auth string `%s' is not a valid hex string\n" % hexs)
                raise OptionError(text) from None
        if text.startswith("text:"):
            return hashlib.sha1(text[5:].encode()).digest()
        self.log.error("Invalid auth string %s\n" % text)
        raise OptionError(text)

    def parse_cmdline(self, argv: list[str]) -> dict:
        opts = {"tpmdriver": "tpm_tis", "tpmiomem": TPM_TIS_BASE, "tpmirq": 0, "tpmlocality": 0}
        for arg in argv[1:]:
            try:
                # the seed compares only "owner_auth" / "srk_auth" (10 / 8 chars) and
                # hands the rest, separator included, to the auth parser
                if arg.startswith("owner_auth"):
                    if arg[10:] == "random":
                        self.gen_owner_auth = True
                    else:
                        self.owner_auth = self.parse_auth(arg[10:], WELLKNOWN_OWNER_AUTH)
                elif arg.startswith("srk_auth"):
                    self.srk_auth = self.parse_auth(arg[8:], WELLKNOWN_SRK_AUTH)
                elif arg.startswith("tpmdriver="):
                    if arg[10:] not in ("tpm_tis", "tpmfront"):
                        raise OptionError(arg)
                    opts["tpmdriver"] = arg[10:]
                elif arg.startswith("tpmiomem="):
                    m = re.match(r"0x([0-9a-fA-F]+)", arg[9:])
                    if not m:
                        raise OptionError(arg)
                    opts["tpmiomem"] = int(m.group(1), 16)
                elif arg.startswith("tpmirq="):
                    if arg[7:] == "probe":
                        opts["tpmirq"] = -1
                    else:
                        m = re.match(r"\s*\+?(\d+)", arg[7:])
                        if not m:
                            raise OptionError(arg)
                        opts["tpmirq"] = int(m.group(1))
                elif arg.startswith("tpmlocality="):
                    m = re.match(r"\s*\+?(\d+)", arg[12:])
                    if not m or int(m.group(1)) > 4:
                        raise OptionError(arg)
                    opts["tpmlocality"] = int(m.group(1))
            except OptionError:
                self.log.error("Invalid Option %s\n" % arg)
                raise
        self.log.info("Option: Using %s driver\n" % opts["tpmdriver"])
        return opts

    def _try(self, fn: Callable[[], _T], func: str, line: int, file: str = "init.c") -> _T:
        try:
            return fn()
        except HwTpmError as e:
            self.log.tryfail(func, file, line, e.rc)
            raise

    def _init_storage(self) -> bool:
        info = init_blkfront(self.dom, self.printk)
        if info is None:
            return False
        if info.readonly:
            # the seed opens it anyway and its writes fail later
            self.log.error("Block device is read only! The manager needs a writable disk.\n")
            return False
        self.printk("blk_open(device/vbd/%d) -> %d\n" % (VBD_HDA, 3))
        self.storage = self.storage_class(info.fd, self)
        return True

    # -- vtpm_cmd_handler.c ------------------------------------------------------------------
    def _open(self, uuid: bytes, who: tuple[int, int]) -> bool:
        """One live vTPM per uuid (Xen 4.17 vtpm_cmd_handler.c
        find_vtpm_verified's VTPM_FLAG_OPEN; here also for a uuid not yet
        registered): the first interface to ask for a uuid holds it until
        its device is freed."""
        holder = self.open_uuids.setdefault(bytes(uuid), who)
        if holder == who:
            return True
        t = self.backend.get(*holder)
        if t is None or t.closed:            # its device went: the close callback is behind
            self.open_uuids[bytes(uuid)] = who
            return True
        self.log.error("Attempted to open vTPM twice! %s is in use by domain %d; refusing "
                       "domain %d\n" % (uuid_str(uuid), holder[0], who[0]))
        return False

    def _closed(self, domid: int, handle: int) -> None:
        """tpmback's close callback: the interface is gone, so is its hold."""
        for u, who in list(self.open_uuids.items()):
            if who == (domid, handle):
                del self.open_uuids[u]

    def handle_cmd(self, uuid: bytes, req: bytes, who: tuple[int, int] = (0, 0)) -> bytes:
        """vtpm_cmd_handler.c vtpmmgr_handle_cmd.  A hardware TPM the driver
        cannot reach (its command still failing after _hw_retry) is
        TPM_IOERROR, as Xen's tpm.c TPM_TransmitData answers a failed write
        or read of the TPM, for the vTPM's hash-and-key requests too."""
        if len(req) >= P.HEADER_SIZE:
            tag, _size, ordinal = P.HEADER.unpack_from(req)
        else:
            tag = ordinal = 0
        if tag == P.VTPM_TAG_REQ:
            if ordinal in (P.VTPM_ORD_SAVEHASHKEY, P.VTPM_ORD_LOADHASHKEY) and \
                    not self._open(uuid, who):
                return P.HEADER.pack(P.VTPM_TAG_RSP, P.HEADER_SIZE, C.TPM_DISABLED)
            if ordinal == P.VTPM_ORD_SAVEHASHKEY:
                status = 0
                if len(req) - P.HEADER_SIZE not in P.RECORD_SIZES:
                    self.log.error("VTPM_ORD_SAVEHASHKEY hashkey too short!\n")
                    status = C.TPM_BAD_PARAMETER
                else:
                    try:
                        self._hw_retry(self.storage.save_hashkey, uuid, req[P.HEADER_SIZE:])
                    except StorageFailure as e:
                        self.log.tryfail("vtpmmgr_SaveHashKey", "vtpm_cmd_handler.c", 61, e.rc)
                        status = e.rc
                    except (TisError, TpmFrontError, OSError):    # the chip unreachable
                        self.log.tryfail("vtpmmgr_SaveHashKey", "vtpm_cmd_handler.c", 61,
                                         C.TPM_IOERROR)
                        status = C.TPM_IOERROR
                return P.HEADER.pack(P.VTPM_TAG_RSP, P.HEADER_SIZE, status)
            if ordinal == P.VTPM_ORD_LOADHASHKEY:
                try:
                    hk = self._hw_retry(self.storage.load_hashkey, uuid)
                except StorageFailure as e:
                    self.log.tryfail("vtpmmgr_LoadHashKey", "vtpm_cmd_handler.c", 78, e.rc)
                    return P.HEADER.pack(P.VTPM_TAG_RSP, P.HEADER_SIZE, e.rc)
                except (TisError, TpmFrontError, OSError):    # the chip unreachable
                    self.log.tryfail("vtpmmgr_LoadHashKey", "vtpm_cmd_handler.c", 78,
                                     C.TPM_IOERROR)
                    return P.HEADER.pack(P.VTPM_TAG_RSP, P.HEADER_SIZE, C.TPM_IOERROR)
                return P.HEADER.pack(P.VTPM_TAG_RSP, P.HEADER_SIZE + len(hk), 0) + hk
            self.log.error("Invalid vTPM Ordinal %d\n" % ordinal)
            status = C.TPM_BAD_ORDINAL
        elif tag in (0x00C1, 0x00C2, 0x00C3):
            if ordinal == C.TPM_ORD_GetRandom:
                self.log.info("Passthrough: TPM_GetRandom\n")
            elif ordinal == C.TPM_ORD_PcrRead:
                self.log.info("Passthrough: TPM_PcrRead\n")
            else:
                self.log.error("TPM Disallowed Passthrough ord=%d\n" % ordinal)
                return P.HEADER.pack(tag + 3, P.HEADER_SIZE, C.TPM_DISABLED_CMD)
            try:
                return self._hw_retry(self.chip.transmit, req[:TCPA_MAX_BUFFER_LENGTH])
            except (TisError, TpmFrontError, OSError):
                self.log.tryfail("vtpmmgr_handle_cmd", "vtpm_cmd_handler.c", 134, C.TPM_IOERROR)
                return P.HEADER.pack(tag + 3, P.HEADER_SIZE, C.TPM_IOERROR)
        else:
            self.log.error("Invalid tag=%d\n" % tag)
            status = C.TPM_BADTAG
        return P.HEADER.pack((tag + 3) & 0xFFFF, P.HEADER_SIZE, status)

    # -- vtpmmgr.c ------------------------------------------------------------------------------
    def main(self, argv: list[str]) -> int:
        self.log.info("Starting vTPM manager domain\n")
        if not self.init(argv):
            self.log.error("Unable to initialize vtpmmgr domain!\n")
            return -1

        def waiting() -> None:
            self.log.info("Waiting for commands from vTPM's:\n")
        waiting()
        back, printk = self.backend, self.printk
        while True:
            cmd = back.req_any()
            if cmd is None:
                if back.closed:
                    return 0
                self.log.error("NULL tpmcmd\n")
                waiting()
                continue
            # the lines of a run of commands, each followed by the next
            # "Waiting", go out after its last reply
            with printk.held():
                while cmd is not None:
                    back.resp(cmd, self.handle_cmd(cmd.uuid, cmd.req, (cmd.domid, cmd.handle)))
                    waiting()
                    cmd = back.req_any(timeout=CONSOLE_LINGER) \
                        if printk.kept() < CONSOLE_RUN else None


class Manager(ManagerBase[HwTpm, TPM_KEY]):
    """vtpmmgr on a TPM 1.2 chip."""

    # -- helpers the storage layer uses -------------------------------------------
    def load_storage_key(self) -> None:
        self.storage_key_handle = self.chip.load_key(SRK_HANDLE, self.key, self.srk_auth,
                                                     self.oiap)
        self.storage_key_usage_auth = bytes(20)

    def unbind(self, block: bytes) -> bytes:
        return self.chip.unbind(self.storage_key_handle, block, self.storage_key_usage_auth,
                              self.oiap)

    def forget_storage_key(self) -> None:
        self.storage_key = None
        try:
            self.chip.evict_key(self.storage_key_handle)
        except HwTpmError:
            pass
        self.storage_key_handle = 0

    # -- init.c ----------------------------------------------------------------------
    def check_tpm_version(self) -> None:
        raw = self._try(lambda: self.chip.get_capability(C.TPM_CAP_VERSION_VAL),
                        "check_tpm_version", 93)
        if len(raw) < 4:
            self.log.error("Invalid size returned by GetCapability!\n")
            raise HwTpmError(C.TPM_BAD_PARAMETER)
        v = TPM_CAP_VERSION_INFO.unmarshal(Reader(raw))
        ver = v.version
        info = self.log.info
        info("Hardware TPM:\n")
        info(" version: %d %d %d %d\n" % (ver.major, ver.minor, ver.revMajor, ver.revMinor))
        info(" specLevel: %d\n" % v.specLevel)
        info(" errataRev: %d\n" % v.errataRev)
        info(" vendorID: %s\n" % "".join(chr(b) if b else "\0" for b in v.tpmVendorID))
        info(" vendorSpecificSize: %d\n" % len(v.vendorSpecific))
        info(" vendorSpecific: ")
        self.printk(v.vendorSpecific.hex() + "\n")

    def flush_tpm(self) -> None:
        for rt in RESOURCE_TYPES:
            raw = self._try(lambda: self.chip.get_capability(C.TPM_CAP_HANDLE, struct.pack(">I", rt)),
                            "flush_tpm", 138)
            n = struct.unpack_from(">H", raw)[0] if len(raw) >= 2 else 0
            if n:
                self.log.info("Flushing %u handle(s) of type %u\n" % (n, rt))
                for i in range(n):
                    h = struct.unpack_from(">I", raw, 2 + 4 * i)[0]
                    self._try(lambda: self.chip.flush_specific(h, rt), "flush_tpm", 154)

    def try_take_ownership(self) -> None:
        try:
            pubek = self.chip.read_pubek()
        except HwTpmError as e:
            if e.rc == C.TPM_DISABLED_CMD:
                self.log.info("Failed to readEK meaning TPM has an owner. "
                              "Creating Keys off existing SRK.\n")
                return
            if e.rc != C.TPM_NO_ENDORSEMENT:
                raise HwTpmError(e.rc) from None
            pubek = self._try(self.chip.create_endorsement_key_pair, "try_take_ownership", 198)
        srk = TPM_KEY(keyUsage=C.TPM_KEY_STORAGE, authDataUsage=C.TPM_AUTH_ALWAYS,
                      algorithmParms=rsa_key_parms())
        self._try(lambda: self.chip.take_ownership(pubek, self.owner_auth, self.srk_auth, srk,
                                                 self.oiap), "try_take_ownership", 229)
        self._try(lambda: self.chip.disable_pubek_read(self.owner_auth, self.oiap),
                  "try_take_ownership", 237)

    def create(self) -> None:
        """vtpmmgr_create: own the TPM, make and load the bind key, new header."""
        osap = None
        try:
            self._try(self.try_take_ownership, "vtpmmgr_create", 389)
            self.storage_key_usage_auth = bytes(20)
            osap = self._try(lambda: self.chip.osap(TPM_ET_KEYHANDLE, SRK_HANDLE, self.srk_auth),
                             "vtpmmgr_create", 394)
            template = TPM_KEY(keyUsage=TPM_KEY_BIND, authDataUsage=C.TPM_AUTH_ALWAYS,
                               algorithmParms=rsa_key_parms())
            self.storage_key = self._try(lambda: self.chip.create_wrap_key(
                SRK_HANDLE, self.storage_key_usage_auth, self.storage_key_usage_auth,
                template, osap), "vtpmmgr_create", 404)
            self._try(self.load_storage_key, "vtpmmgr_create", 413)
            self._try(self.chip.save_state, "vtpmmgr_create", 421)
            try:
                self.storage.new_header()
            except StorageFailure as e:
                self.log.tryfail("vtpmmgr_create", "init.c", 424, e.rc)
                raise HwTpmError(e.rc) from None
        finally:
            self.log.info("Finished initialized new VTPM manager\n")
            if osap is not None and osap.handle:
                try:
                    self.chip.terminate_handle(osap.handle)
                except HwTpmError:
                    pass

    def init(self, argv: list[str]) -> bool:
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
                self.tis = TpmTis(self.dom.xen, self.printk, opts["tpmiomem"],
                                  1 << opts["tpmlocality"], max(0, opts["tpmirq"]))
            except (TisError, OSError):
                self.log.error("Unable to initialize tpmfront device\n")
                self.shutdown()
                return False
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
        self.hw = HwTpm(transmit, self.log)
        try:
            self._try(self.check_tpm_version, "vtpmmgr_init", 495)
            try:
                self.flush_tpm()
            except HwTpmError:
                self.log.error("VTPM_FlushResources failed, continuing anyway..\n")
            self.rng = Drbg(self.chip.get_random(ENTROPY_BYTES) + self.chip.get_random(ENTROPY_BYTES))
            self.chip.rng = self.rng
            if self.gen_owner_auth:
                self.owner_auth = self.rng(20)
            self.oiap = self._try(self.chip.oiap, "vtpmmgr_init", 515)
            try:
                self.storage.load_header()
            except StorageFailure:
                if not disk_is_blank(self.storage.fd):
                    # the seed re-creates the manager over whatever it could
                    # not read, losing every vTPM: only a blank disk is new
                    self.log.error("The disk holds data that is not a manager image this TPM "
                                   "can read (damaged, or made with another TPM): refusing to "
                                   "initialize it; nothing was written. Zero the image to "
                                   "start afresh.\n")
                    raise StorageFailure(C.TPM_FAIL) from None
                if not self.oiap.handle:
                    self.oiap = self._try(self.chip.oiap, "vtpmmgr_init", 521)
                self.log.info("Failed to read manager file. Assuming first time initialization.\n")
                self._try(self.create, "vtpmmgr_init", 524)
        except (HwTpmError, TisError, TpmFrontError, OSError, StorageFailure):
            self.shutdown()
            return False
        # after a daemon restart: the TPM first (the pyxl host's chip was
        # restarted with its daemon: locality, session and loaded key are
        # gone), then the vTPMs may reconnect
        self.dom.on_resume(self.resume_hw)
        self.dom.on_resume(self.backend.resume)
        return True

    def resume_hw(self) -> None:
        try:
            if self.tis is not None:
                if self.tis.resume(self.tpmlocality) < 0:
                    raise TisError(5, "no locality")
            elif self.front is not None:
                self.front.resume()
            self.oiap = self.chip.oiap()
            if self.storage_key is not None:
                self.load_storage_key()
        except (HwTpmError, TisError, TpmFrontError) as e:
            self.log.error("Hardware TPM not usable after resume: %s\n" % e)
        finally:
            self._hw_up()

    def shutdown(self) -> None:
        if self.hw is not None:
            for fn in (lambda: self.chip.evict_key(self.storage_key_handle),
                       lambda: self.chip.terminate_handle(self.oiap.handle)):
                try:
                    fn()
                except (HwTpmError, TisError, OSError):
                    pass
        if self.back is not None:
            self.back.shutdown()
        else:                        # shutdown_tpmback logs even if never started
            self.printk("Tpmback:Info Shutting down tpm backend\n")
        if self.tis is not None:
            self.tis.shutdown()
        self.log.info("VTPM Manager stopped.\n")
