"""The domain configuration model: libxl_domain_config as Python dataclasses.

Every struct, field name, field order, enum and default mirrors Xen 4.17's
tools/libs/light/libxl_types.idl, because two things depend on it: the
toolstack builds domains from these objects, and libxl_json.py prints them
exactly as libxl_domain_config_to_json does (key order = IDL order, a field
is printed only when it differs from its IDL default).

Conventions
  * integers are plain ints holding the C value (already wrapped to the
    field's C width by whoever sets them, see `wrap`);
  * fields whose IDL default is a sentinel (MemKB, sched params, devid, ...)
    default to that sentinel (constants below), so "unset" means "== init";
  * strings are str or None (None = NULL; "" is a real, printed value);
  * defbools are Optional[bool] (None = libxl's "default");
  * enums are IntEnum classes named as in libxl; a field may also hold a raw
    int outside the enum (xl sometimes stores uninitialised memory; JSON
    prints such a value as null);
  * bitmaps are `Bitmap`, string lists list[str] (None or [] = empty).

Each dataclass field carries its IDL type in `metadata["t"]`; libxl_json.py
walks those.
"""

from __future__ import annotations

import enum
import uuid as _uuid
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Optional, Self, TypeVar

if TYPE_CHECKING:
    from pyxl.config.host import HostInfo

MEMKB_DEFAULT = (1 << 64) - 1          # LIBXL_MEMKB_DEFAULT
MAX_GRANT_DEFAULT = (1 << 32) - 1      # LIBXL_MAX_GRANT_DEFAULT
INVALID_GFN = (1 << 64) - 1            # LIBXL_INVALID_GFN
SCHED_PARAM_DEFAULT = -1               # LIBXL_DOMAIN_SCHED_PARAM_*_DEFAULT
TIMER_MODE_DEFAULT = -1
DEVID_DEFAULT = -1
PCI_FUNC_ALL = (1 << 32) - 1
# What xl leaves in a field it never initialised (printed as null, like the
# out-of-range value the real binary finds on its stack).
UNINITIALISED = -0x21524111


def wrap(value: int, bits: int, signed: bool = False) -> int:
    """C integer conversion: reduce `value` to a `bits`-wide (un)signed int."""
    value &= (1 << bits) - 1
    if signed and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


# ---------------------------------------------------------------- field kinds
# Each returns a dataclass field (typed Any, as dataclasses.field is, so that
# it can stand for the attribute's own type) carrying its IDL type.

def _f(t: str, default: Any = None, **meta: Any) -> Any:
    meta["t"] = t
    if callable(default) and not isinstance(default, (int, str, enum.Enum)):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def integer(init: int = 0) -> Any:
    return _f("int", init, init=init)


def uint(bits: int, init: int = 0) -> Any:
    return _f("uint", init, init=init, bits=bits)


def memkb() -> Any:
    return _f("uint", MEMKB_DEFAULT, init=MEMKB_DEFAULT, bits=64)


def string() -> Any:
    return _f("string", None)


def defbool() -> Any:
    return _f("defbool", None)


def boolean() -> Any:
    return _f("bool", False)


def uuidf() -> Any:
    return _f("uuid", None)


def mac() -> Any:
    return _f("mac", None)


def bitmap() -> Any:
    return _f("bitmap", None)


def string_list() -> Any:
    return _f("string_list", None)


def key_value_list() -> Any:
    return _f("key_value_list", None)


def enumf(cls: type[enum.Enum], init: int | None = None) -> Any:
    if init is None:
        init = 0
    return _f("enum", init, enum=cls, init=init)


def struct(cls: type[Struct]) -> Any:
    return _f("struct", cls, cls=cls)


def array(elem: object, **meta: Any) -> Any:
    return _f("array", list, elem=elem, **meta)


def devid() -> Any:
    return _f("int", DEVID_DEFAULT, init=DEVID_DEFAULT)


def domid() -> Any:
    return _f("uint", 0, init=0, bits=32)


# ---------------------------------------------------------------- structs

class Struct:
    """Base of the IDL structs: keyword construction, repr and equality over
    the dataclass fields.  (dataclass(init=False, ...) + these generic
    methods instead of dataclass's generated code: the model is imported on
    every `pyxl create`, and generating ~60 __init__s costs tens of ms.)"""

    __slots__ = ()
    _defaults: tuple = ()
    # every subclass is made a dataclass by @idl_struct
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def __init__(self, **kw: Any):
        for name, default, factory in self._defaults:
            if name in kw:
                object.__setattr__(self, name, kw.pop(name))
            else:
                object.__setattr__(self, name, factory() if factory is not None else default)
        if kw:
            raise TypeError("%s has no field %s" % (type(self).__name__, ", ".join(kw)))

    def __repr__(self) -> str:
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % (n, getattr(self, n)) for n, _, _ in self._defaults))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n, _, _ in self._defaults
                   if n != "source")

    __hash__ = None  # type: ignore[assignment]  # equal by value, so unhashable


_S = TypeVar("_S", bound=Struct)


def idl_struct(cls: type[_S]) -> type[_S]:
    """@dataclass for an IDL struct: fields (with their IDL metadata) without
    generated methods; Struct supplies __init__/__repr__/__eq__."""
    cls = dataclass(init=False, repr=False, eq=False)(cls)
    cls._defaults = tuple(
        (f.name, f.default, None if f.default_factory is MISSING else f.default_factory)
        for f in fields(cls))
    return cls


# ---------------------------------------------------------------- bitmap

class Bitmap:
    """libxl_bitmap: a fixed number of bytes; setting a bit beyond it is a no-op."""

    __slots__ = ("nbits", "bits")

    def __init__(self, nbits: int, bits: Iterable[int] = ()):
        self.nbits = (nbits + 7) // 8 * 8
        self.bits = {b for b in bits if 0 <= b < self.nbits}

    @classmethod
    def cpus(cls, host: HostInfo, n: int = 0) -> Bitmap:
        """libxl_cpu_bitmap_alloc: n bits, or the host's CPU count when 0."""
        return cls(n or host.nr_cpus)

    def set(self, bit: int) -> None:
        if 0 <= bit < self.nbits:
            self.bits.add(bit)

    def reset(self, bit: int) -> None:
        self.bits.discard(bit)

    def set_any(self) -> None:
        self.bits = set(range(self.nbits))

    def is_empty(self) -> bool:
        return not self.bits

    def copy(self) -> "Bitmap":
        return Bitmap(self.nbits, self.bits)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.bits))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bitmap) and (self.nbits, self.bits) == (other.nbits, other.bits)

    def __repr__(self) -> str:
        return "Bitmap(%d, %s)" % (self.nbits, sorted(self.bits))


# ---------------------------------------------------------------- enums

class LibxlEnum(enum.IntEnum):
    """An IDL Enumeration; libxl's to_string is the lower-cased name."""

    @property
    def libxl_name(self) -> str:
        return self.name.lower()

    @classmethod
    def from_string(cls, s: str) -> Self | None:
        """libxl_<enum>_from_string: case-insensitive; None when unknown."""
        low = s.lower()
        for m in cls:
            if m.name.lower() == low:
                return m
        return None


class DomainType(LibxlEnum):
    INVALID = -1
    HVM = 1
    PV = 2
    PVH = 3


class RdmReserveStrategy(LibxlEnum):
    IGNORE = 0
    HOST = 1


class RdmReservePolicy(LibxlEnum):
    INVALID = -1
    STRICT = 0
    RELAXED = 1


class ChannelConnection(LibxlEnum):
    UNKNOWN = 0
    PTY = 1
    SOCKET = 2


class DeviceModelVersion(LibxlEnum):
    UNKNOWN = 0
    QEMU_XEN_TRADITIONAL = 1
    QEMU_XEN = 2


class DiskFormat(LibxlEnum):
    UNKNOWN = 0
    QCOW = 1
    QCOW2 = 2
    VHD = 3
    RAW = 4
    EMPTY = 5
    QED = 6


class DiskBackend(LibxlEnum):
    UNKNOWN = 0
    PHY = 1
    TAP = 2
    QDISK = 3
    STANDALONE = 4


class DiskSpecification(LibxlEnum):
    UNKNOWN = 0
    XEN = 1
    VIRTIO = 2


class DiskTransport(LibxlEnum):
    UNKNOWN = 0
    MMIO = 1


class NicType(LibxlEnum):
    UNKNOWN = 0
    VIF_IOEMU = 1
    VIF = 2


class ActionOnShutdown(LibxlEnum):
    DESTROY = 1
    RESTART = 2
    RESTART_RENAME = 3
    PRESERVE = 4
    COREDUMP_DESTROY = 5
    COREDUMP_RESTART = 6
    SOFT_RESET = 7


class TscMode(LibxlEnum):
    DEFAULT = 0
    ALWAYS_EMULATE = 1
    NATIVE = 2
    NATIVE_PARAVIRT = 3


class GfxPassthruKind(LibxlEnum):
    DEFAULT = 0
    IGD = 1


class TimerMode(LibxlEnum):
    UNKNOWN = -1
    DELAY_FOR_MISSED_TICKS = 0
    NO_DELAY_FOR_MISSED_TICKS = 1
    NO_MISSED_TICKS_PENDING = 2
    ONE_MISSED_TICK_PENDING = 3


class BiosType(LibxlEnum):
    UNKNOWN = 0
    ROMBIOS = 1
    SEABIOS = 2
    OVMF = 3


class Scheduler(LibxlEnum):
    UNKNOWN = 0
    SEDF = 4
    CREDIT = 5
    CREDIT2 = 6
    ARINC653 = 7
    RTDS = 8
    NULL = 9


class VgaInterfaceType(LibxlEnum):
    UNKNOWN = 0
    CIRRUS = 1
    STD = 2
    NONE = 3
    QXL = 4


class VendorDevice(LibxlEnum):
    NONE = 0
    XENSERVER = 1


class ViridianEnlightenment(LibxlEnum):
    BASE = 0
    FREQ = 1
    TIME_REF_COUNT = 2
    REFERENCE_TSC = 3
    HCALL_REMOTE_TLB_FLUSH = 4
    APIC_ASSIST = 5
    CRASH_CTL = 6
    SYNIC = 7
    STIMER = 8
    HCALL_IPI = 9
    EX_PROCESSOR_MASKS = 10
    NO_VP_LIMIT = 11
    CPU_HOTPLUG = 12


class Hdtype(LibxlEnum):
    IDE = 1
    AHCI = 2


class VuartType(LibxlEnum):
    UNKNOWN = 0
    SBSA_UART = 1


class VkbBackend(LibxlEnum):
    UNKNOWN = 0
    QEMU = 1
    LINUX = 2


class Passthrough(LibxlEnum):
    DEFAULT = 0
    DISABLED = 1
    ENABLED = 2
    SYNC_PT = 3
    SHARE_PT = 4


class GicVersion(LibxlEnum):
    DEFAULT = 0
    V2 = 0x20
    V3 = 0x30


class TeeType(LibxlEnum):
    NONE = 0
    OPTEE = 1


class Altp2mMode(LibxlEnum):
    DISABLED = 0
    MIXED = 1
    EXTERNAL = 2
    LIMITED = 3


class UsbctrlType(LibxlEnum):
    AUTO = 0
    PV = 1
    DEVICEMODEL = 2
    QUSB = 3


class UsbdevType(LibxlEnum):
    HOSTDEV = 1


class VsndPcmFormat(LibxlEnum):
    S8 = 1
    U8 = 2
    S16_LE = 3
    S16_BE = 4
    U16_LE = 5
    U16_BE = 6
    S24_LE = 7
    S24_BE = 8
    U24_LE = 9
    U24_BE = 10
    S32_LE = 11
    S32_BE = 12
    U32_LE = 13
    U32_BE = 14
    F32_LE = 15
    F32_BE = 16
    F64_LE = 17
    F64_BE = 18
    IEC958_SUBFRAME_LE = 19
    IEC958_SUBFRAME_BE = 20
    MU_LAW = 21
    A_LAW = 22
    IMA_ADPCM = 23
    MPEG = 24
    GSM = 25


class VsndStreamType(LibxlEnum):
    P = 1
    C = 2


# ---------------------------------------------------------------- small structs

@idl_struct
class IoportRange(Struct):
    first: int = uint(32)
    number: int = uint(32)


@idl_struct
class IomemRange(Struct):
    start: int = uint(64)
    number: int = uint(64)
    gfn: int = _f("uint", INVALID_GFN, init=INVALID_GFN, bits=64)


@idl_struct
class VgaInterfaceInfo(Struct):
    kind: int = enumf(VgaInterfaceType, VgaInterfaceType.UNKNOWN)


@idl_struct
class VncInfo(Struct):
    enable: Optional[bool] = defbool()
    listen: Optional[str] = string()
    passwd: Optional[str] = string()
    display: int = integer()
    findunused: Optional[bool] = defbool()


@idl_struct
class SpiceInfo(Struct):
    enable: Optional[bool] = defbool()
    port: int = integer()
    tls_port: int = integer()
    host: Optional[str] = string()
    disable_ticketing: Optional[bool] = defbool()
    passwd: Optional[str] = string()
    agent_mouse: Optional[bool] = defbool()
    vdagent: Optional[bool] = defbool()
    clipboard_sharing: Optional[bool] = defbool()
    usbredirection: int = integer()
    image_compression: Optional[str] = string()
    streaming_video: Optional[str] = string()


@idl_struct
class SdlInfo(Struct):
    enable: Optional[bool] = defbool()
    opengl: Optional[bool] = defbool()
    display: Optional[str] = string()
    xauthority: Optional[str] = string()


@idl_struct
class DomainCreateInfo(Struct):
    type: int = enumf(DomainType, DomainType.INVALID)
    hap: Optional[bool] = defbool()
    oos: Optional[bool] = defbool()
    ssidref: int = uint(32)
    ssid_label: Optional[str] = string()
    name: Optional[str] = string()
    domid: int = domid()
    uuid: Optional[_uuid.UUID] = uuidf()
    xsdata: Optional[dict] = key_value_list()
    platformdata: Optional[dict] = key_value_list()
    poolid: int = uint(32)
    pool_name: Optional[str] = string()
    run_hotplug_scripts: Optional[bool] = defbool()
    driver_domain: Optional[bool] = defbool()
    passthrough: int = enumf(Passthrough)
    xend_suspend_evtchn_compat: Optional[bool] = defbool()


@idl_struct
class DomainSchedParams(Struct):
    sched: int = enumf(Scheduler)
    weight: int = integer(SCHED_PARAM_DEFAULT)
    cap: int = integer(SCHED_PARAM_DEFAULT)
    period: int = integer(SCHED_PARAM_DEFAULT)
    budget: int = integer(SCHED_PARAM_DEFAULT)
    extratime: int = integer(SCHED_PARAM_DEFAULT)
    slice: int = integer(SCHED_PARAM_DEFAULT)
    latency: int = integer(SCHED_PARAM_DEFAULT)


@idl_struct
class VnodeInfo(Struct):
    memkb: int = memkb()
    distances: list = array("uint32")
    pnode: int = uint(32)
    vcpus: Optional[Bitmap] = bitmap()


@idl_struct
class RdmReserve(Struct):
    strategy: int = enumf(RdmReserveStrategy)
    policy: int = enumf(RdmReservePolicy, RdmReservePolicy.INVALID)


@idl_struct
class MsVmGenid(Struct):
    bytes: bytes = b"\0" * 16

    def is_zero(self) -> bool:
        return not any(self.bytes)


@idl_struct
class CpuidPolicy(Struct):
    """libxl_cpuid_policy_list: xend-style leaf entries and MSR filters."""
    # each entry: {"leaf": int, "subleaf": int|None, "eax": str|None, ...}
    cpuid: list = field(default_factory=list)
    # each entry: {"index": int, "policy": 64-character filter}
    msr: list = field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.cpuid and not self.msr


# ---------------------------------------------------------------- build info

@idl_struct
class HvmBuildInfo(Struct):
    firmware: Optional[str] = string()
    bios: int = enumf(BiosType)
    pae: Optional[bool] = defbool()
    apic: Optional[bool] = defbool()
    acpi: Optional[bool] = defbool()
    acpi_s3: Optional[bool] = defbool()
    acpi_s4: Optional[bool] = defbool()
    acpi_laptop_slate: Optional[bool] = defbool()
    nx: Optional[bool] = defbool()
    viridian: Optional[bool] = defbool()
    viridian_enable: Optional[Bitmap] = bitmap()
    viridian_disable: Optional[Bitmap] = bitmap()
    timeoffset: Optional[str] = string()
    hpet: Optional[bool] = defbool()
    vpt_align: Optional[bool] = defbool()
    mmio_hole_memkb: int = memkb()
    timer_mode: int = enumf(TimerMode, TIMER_MODE_DEFAULT)
    nested_hvm: Optional[bool] = defbool()
    altp2m: Optional[bool] = defbool()
    system_firmware: Optional[str] = string()
    smbios_firmware: Optional[str] = string()
    acpi_firmware: Optional[str] = string()
    hdtype: int = enumf(Hdtype, Hdtype.IDE)
    nographic: Optional[bool] = defbool()
    vga: VgaInterfaceInfo = struct(VgaInterfaceInfo)
    vnc: VncInfo = struct(VncInfo)
    keymap: Optional[str] = string()
    sdl: SdlInfo = struct(SdlInfo)
    spice: SpiceInfo = struct(SpiceInfo)
    gfx_passthru: Optional[bool] = defbool()
    gfx_passthru_kind: int = enumf(GfxPassthruKind)
    serial: Optional[str] = string()
    boot: Optional[str] = string()
    usb: Optional[bool] = defbool()
    usbversion: int = integer()
    usbdevice: Optional[str] = string()
    vkb_device: Optional[bool] = defbool()
    soundhw: Optional[str] = string()
    xen_platform_pci: Optional[bool] = defbool()
    usbdevice_list: Optional[list] = string_list()
    vendor_device: int = enumf(VendorDevice)
    ms_vm_genid: MsVmGenid = _f("ms_vm_genid", MsVmGenid)
    serial_list: Optional[list] = string_list()
    rdm: RdmReserve = struct(RdmReserve)
    rdm_mem_boundary_memkb: int = memkb()
    mca_caps: int = uint(64)


@idl_struct
class PvBuildInfo(Struct):
    kernel: Optional[str] = string()
    slack_memkb: int = memkb()
    bootloader: Optional[str] = string()
    bootloader_args: Optional[list] = string_list()
    cmdline: Optional[str] = string()
    ramdisk: Optional[str] = string()
    features: Optional[str] = _f("string", None, const=True)
    e820_host: Optional[bool] = defbool()


@idl_struct
class PvhBuildInfo(Struct):
    pvshim: Optional[bool] = defbool()
    pvshim_path: Optional[str] = string()
    pvshim_cmdline: Optional[str] = string()
    pvshim_extra: Optional[str] = string()


@idl_struct
class ArchArm(Struct):
    gic_version: int = enumf(GicVersion, GicVersion.DEFAULT)
    vuart: int = enumf(VuartType)


@idl_struct
class ArchX86(Struct):
    msr_relaxed: Optional[bool] = defbool()


# keyed by int: a build info's type may hold a value outside the enum
UNION_MEMBERS: dict[int, tuple[str, type[Struct]]] = {DomainType.HVM: ("hvm", HvmBuildInfo),
                 DomainType.PV: ("pv", PvBuildInfo),
                 DomainType.PVH: ("pvh", PvhBuildInfo)}


@idl_struct
class DomainBuildInfo(Struct):
    max_vcpus: int = integer()
    avail_vcpus: Optional[Bitmap] = bitmap()
    cpumap: Optional[Bitmap] = bitmap()
    nodemap: Optional[Bitmap] = bitmap()
    vcpu_hard_affinity: list = array("bitmap")
    vcpu_soft_affinity: list = array("bitmap")
    numa_placement: Optional[bool] = defbool()
    tsc_mode: int = enumf(TscMode)
    max_memkb: int = memkb()
    target_memkb: int = memkb()
    video_memkb: int = memkb()
    shadow_memkb: int = memkb()
    iommu_memkb: int = memkb()
    rtc_timeoffset: int = uint(32)
    exec_ssidref: int = uint(32)
    exec_ssid_label: Optional[str] = string()
    localtime: Optional[bool] = defbool()
    disable_migrate: Optional[bool] = defbool()
    cpuid: CpuidPolicy = _f("cpuid", CpuidPolicy)
    blkdev_start: Optional[str] = string()
    vnuma_nodes: list = array(VnodeInfo)
    max_grant_frames: int = uint(32, MAX_GRANT_DEFAULT)
    max_maptrack_frames: int = uint(32, MAX_GRANT_DEFAULT)
    # an `integer` compared with (uint32_t)~0 in C: -1 is the default
    max_grant_version: int = _f("int", -1, init=-1)
    device_model_version: int = enumf(DeviceModelVersion)
    device_model_stubdomain: Optional[bool] = defbool()
    stubdomain_memkb: int = memkb()
    stubdomain_kernel: Optional[str] = string()
    stubdomain_cmdline: Optional[str] = string()
    stubdomain_ramdisk: Optional[str] = string()
    device_model: Optional[str] = string()
    device_model_ssidref: int = uint(32)
    device_model_ssid_label: Optional[str] = string()
    device_model_user: Optional[str] = string()
    extra: Optional[list] = string_list()
    extra_pv: Optional[list] = string_list()
    extra_hvm: Optional[list] = string_list()
    sched_params: DomainSchedParams = struct(DomainSchedParams)
    ioports: list = array(IoportRange)
    irqs: list = array("uint32")
    iomem: list = array(IomemRange)
    claim_mode: Optional[bool] = defbool()
    event_channels: int = uint(32)
    kernel: Optional[str] = string()
    cmdline: Optional[str] = string()
    ramdisk: Optional[str] = string()
    device_tree: Optional[str] = string()
    acpi: Optional[bool] = defbool()
    bootloader: Optional[str] = string()
    bootloader_args: Optional[list] = string_list()
    timer_mode: int = enumf(TimerMode, TIMER_MODE_DEFAULT)
    nested_hvm: Optional[bool] = defbool()
    apic: Optional[bool] = defbool()
    dm_restrict: Optional[bool] = defbool()
    tee: int = enumf(TeeType, TeeType.NONE)
    # KeyedUnion u, keyed by `type` (printed as "type.hvm" / "type.pv" / "type.pvh")
    type: int = _f("keyvar", DomainType.INVALID)
    u: object = _f("union", None)
    arch_arm: ArchArm = struct(ArchArm)
    arch_x86: ArchX86 = struct(ArchX86)
    altp2m: int = enumf(Altp2mMode, Altp2mMode.DISABLED)
    vmtrace_buf_kb: int = integer()
    vpmu: Optional[bool] = defbool()

    def init_type(self, t: int) -> None:
        """libxl_domain_build_info_init_type."""
        self.type = t
        member = UNION_MEMBERS.get(t)
        self.u = member[1]() if member else None

    @property
    def hvm(self) -> HvmBuildInfo | None:
        return self.u if isinstance(self.u, HvmBuildInfo) else None

    @property
    def pv(self) -> PvBuildInfo | None:
        return self.u if isinstance(self.u, PvBuildInfo) else None

    @property
    def pvh(self) -> PvhBuildInfo | None:
        return self.u if isinstance(self.u, PvhBuildInfo) else None


# ---------------------------------------------------------------- devices

@idl_struct
class DeviceVfb(Struct):
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()
    devid: int = devid()
    vnc: VncInfo = struct(VncInfo)
    sdl: SdlInfo = struct(SdlInfo)
    keymap: Optional[str] = string()


@idl_struct
class DeviceVkb(Struct):
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()
    devid: int = devid()
    backend_type: int = enumf(VkbBackend)
    unique_id: Optional[str] = string()
    feature_disable_keyboard: bool = boolean()
    feature_disable_pointer: bool = boolean()
    feature_abs_pointer: bool = boolean()
    feature_raw_pointer: bool = boolean()
    feature_multi_touch: bool = boolean()
    width: int = uint(32)
    height: int = uint(32)
    multi_touch_width: int = uint(32)
    multi_touch_height: int = uint(32)
    multi_touch_num_contacts: int = uint(32)


@idl_struct
class DeviceDisk(Struct):
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()
    pdev_path: Optional[str] = string()
    vdev: Optional[str] = string()
    backend: int = enumf(DiskBackend)
    format: int = enumf(DiskFormat)
    script: Optional[str] = string()
    removable: int = integer()
    readwrite: int = integer()
    is_cdrom: int = integer()
    direct_io_safe: bool = boolean()
    discard_enable: Optional[bool] = defbool()
    specification: int = enumf(DiskSpecification)
    transport: int = enumf(DiskTransport)
    irq: int = uint(32)
    base: int = uint(64)
    colo_enable: Optional[bool] = defbool()
    colo_restore_enable: Optional[bool] = defbool()
    colo_host: Optional[str] = string()
    colo_port: int = integer()
    colo_export: Optional[str] = string()
    active_disk: Optional[str] = string()
    hidden_disk: Optional[str] = string()
    trusted: Optional[bool] = defbool()


NIC_COLO_FIELDS = (
    "coloft_forwarddev",
    "colo_sock_mirror_id", "colo_sock_mirror_ip", "colo_sock_mirror_port",
    "colo_sock_compare_pri_in_id", "colo_sock_compare_pri_in_ip", "colo_sock_compare_pri_in_port",
    "colo_sock_compare_sec_in_id", "colo_sock_compare_sec_in_ip", "colo_sock_compare_sec_in_port",
    "colo_sock_compare_notify_id", "colo_sock_compare_notify_ip", "colo_sock_compare_notify_port",
    "colo_sock_redirector0_id", "colo_sock_redirector0_ip", "colo_sock_redirector0_port",
    "colo_sock_redirector1_id", "colo_sock_redirector1_ip", "colo_sock_redirector1_port",
    "colo_sock_redirector2_id", "colo_sock_redirector2_ip", "colo_sock_redirector2_port",
    "colo_filter_mirror_queue", "colo_filter_mirror_outdev",
    "colo_filter_redirector0_queue", "colo_filter_redirector0_indev", "colo_filter_redirector0_outdev",
    "colo_filter_redirector1_queue", "colo_filter_redirector1_indev", "colo_filter_redirector1_outdev",
    "colo_compare_pri_in", "colo_compare_sec_in", "colo_compare_out", "colo_compare_notify_dev",
    "colo_sock_sec_redirector0_id", "colo_sock_sec_redirector0_ip", "colo_sock_sec_redirector0_port",
    "colo_sock_sec_redirector1_id", "colo_sock_sec_redirector1_ip", "colo_sock_sec_redirector1_port",
    "colo_filter_sec_redirector0_queue", "colo_filter_sec_redirector0_indev",
    "colo_filter_sec_redirector0_outdev",
    "colo_filter_sec_redirector1_queue", "colo_filter_sec_redirector1_indev",
    "colo_filter_sec_redirector1_outdev",
    "colo_filter_sec_rewriter0_queue",
    "colo_checkpoint_host", "colo_checkpoint_port",
)


@idl_struct
class DeviceNic(Struct):
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()
    devid: int = devid()
    mtu: int = integer()
    model: Optional[str] = string()
    mac: Optional[tuple] = mac()
    ip: Optional[str] = string()
    bridge: Optional[str] = string()
    ifname: Optional[str] = string()
    script: Optional[str] = string()
    nictype: int = enumf(NicType)
    rate_bytes_per_interval: int = uint(64)
    rate_interval_usecs: int = uint(32)
    gatewaydev: Optional[str] = string()
    # the COLO strings (NIC_COLO_FIELDS) follow here, all plain strings
    coloft_forwarddev: Optional[str] = string()
    colo_sock_mirror_id: Optional[str] = string()
    colo_sock_mirror_ip: Optional[str] = string()
    colo_sock_mirror_port: Optional[str] = string()
    colo_sock_compare_pri_in_id: Optional[str] = string()
    colo_sock_compare_pri_in_ip: Optional[str] = string()
    colo_sock_compare_pri_in_port: Optional[str] = string()
    colo_sock_compare_sec_in_id: Optional[str] = string()
    colo_sock_compare_sec_in_ip: Optional[str] = string()
    colo_sock_compare_sec_in_port: Optional[str] = string()
    colo_sock_compare_notify_id: Optional[str] = string()
    colo_sock_compare_notify_ip: Optional[str] = string()
    colo_sock_compare_notify_port: Optional[str] = string()
    colo_sock_redirector0_id: Optional[str] = string()
    colo_sock_redirector0_ip: Optional[str] = string()
    colo_sock_redirector0_port: Optional[str] = string()
    colo_sock_redirector1_id: Optional[str] = string()
    colo_sock_redirector1_ip: Optional[str] = string()
    colo_sock_redirector1_port: Optional[str] = string()
    colo_sock_redirector2_id: Optional[str] = string()
    colo_sock_redirector2_ip: Optional[str] = string()
    colo_sock_redirector2_port: Optional[str] = string()
    colo_filter_mirror_queue: Optional[str] = string()
    colo_filter_mirror_outdev: Optional[str] = string()
    colo_filter_redirector0_queue: Optional[str] = string()
    colo_filter_redirector0_indev: Optional[str] = string()
    colo_filter_redirector0_outdev: Optional[str] = string()
    colo_filter_redirector1_queue: Optional[str] = string()
    colo_filter_redirector1_indev: Optional[str] = string()
    colo_filter_redirector1_outdev: Optional[str] = string()
    colo_compare_pri_in: Optional[str] = string()
    colo_compare_sec_in: Optional[str] = string()
    colo_compare_out: Optional[str] = string()
    colo_compare_notify_dev: Optional[str] = string()
    colo_sock_sec_redirector0_id: Optional[str] = string()
    colo_sock_sec_redirector0_ip: Optional[str] = string()
    colo_sock_sec_redirector0_port: Optional[str] = string()
    colo_sock_sec_redirector1_id: Optional[str] = string()
    colo_sock_sec_redirector1_ip: Optional[str] = string()
    colo_sock_sec_redirector1_port: Optional[str] = string()
    colo_filter_sec_redirector0_queue: Optional[str] = string()
    colo_filter_sec_redirector0_indev: Optional[str] = string()
    colo_filter_sec_redirector0_outdev: Optional[str] = string()
    colo_filter_sec_redirector1_queue: Optional[str] = string()
    colo_filter_sec_redirector1_indev: Optional[str] = string()
    colo_filter_sec_redirector1_outdev: Optional[str] = string()
    colo_filter_sec_rewriter0_queue: Optional[str] = string()
    colo_checkpoint_host: Optional[str] = string()
    colo_checkpoint_port: Optional[str] = string()
    trusted: Optional[bool] = defbool()


@idl_struct
class DevicePci(Struct):
    func: int = uint(8)
    dev: int = uint(8)
    bus: int = uint(8)
    domain: int = integer()
    vdevfn: int = uint(32)
    vfunc_mask: int = uint(32)
    msitranslate: bool = boolean()
    power_mgmt: bool = boolean()
    permissive: bool = boolean()
    seize: bool = boolean()
    rdm_policy: int = enumf(RdmReservePolicy, RdmReservePolicy.INVALID)
    name: Optional[str] = string()


@idl_struct
class DeviceRdm(Struct):
    start: int = uint(64)
    size: int = uint(64)
    policy: int = enumf(RdmReservePolicy, RdmReservePolicy.INVALID)


@idl_struct
class DeviceUsbctrl(Struct):
    type: int = enumf(UsbctrlType)
    devid: int = devid()
    version: int = integer()
    ports: int = integer()
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()


@idl_struct
class UsbdevHostdev(Struct):
    hostbus: int = uint(8)
    hostaddr: int = uint(8)


@idl_struct
class DeviceUsbdev(Struct):
    ctrl: int = devid()
    port: int = integer()
    # KeyedUnion u keyed by `type` (only hostdev exists)
    type: int = _f("keyvar", 0)   # no init_val: 0, which names no member
    u: "UsbdevHostdev" = _f("union", UsbdevHostdev)


@idl_struct
class DeviceDtdev(Struct):
    path: Optional[str] = string()


@idl_struct
class DeviceVtpm(Struct):
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()
    devid: int = devid()
    uuid: Optional[_uuid.UUID] = uuidf()


@idl_struct
class DeviceP9(Struct):
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()
    tag: Optional[str] = string()
    path: Optional[str] = string()
    security_model: Optional[str] = string()
    devid: int = devid()


@idl_struct
class DevicePvcallsif(Struct):
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()
    devid: int = devid()


@idl_struct
class ChannelSocket(Struct):
    path: Optional[str] = string()


@idl_struct
class DeviceChannel(Struct):
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()
    devid: int = devid()
    name: Optional[str] = string()
    # KeyedUnion u keyed by `connection`: only socket carries data
    connection: int = _f("keyvar", ChannelConnection.UNKNOWN)
    u: object = _f("union", None)


@idl_struct
class ConnectorParam(Struct):
    unique_id: Optional[str] = string()
    width: int = uint(32)
    height: int = uint(32)


@idl_struct
class DeviceVdispl(Struct):
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()
    devid: int = devid()
    be_alloc: bool = boolean()
    connectors: list = array(ConnectorParam)


@idl_struct
class VsndParams(Struct):
    sample_rates: list = array("uint32")
    sample_formats: list = array(VsndPcmFormat)
    channels_min: int = uint(32)
    channels_max: int = uint(32)
    buffer_size: int = uint(32)


@idl_struct
class VsndStream(Struct):
    unique_id: Optional[str] = string()
    type: int = enumf(VsndStreamType)
    params: VsndParams = struct(VsndParams)


@idl_struct
class VsndPcm(Struct):
    name: Optional[str] = string()
    params: VsndParams = struct(VsndParams)
    streams: list = array(VsndStream)


@idl_struct
class DeviceVsnd(Struct):
    backend_domid: int = domid()
    backend_domname: Optional[str] = string()
    devid: int = devid()
    short_name: Optional[str] = string()
    long_name: Optional[str] = string()
    params: VsndParams = struct(VsndParams)
    pcms: list = array(VsndPcm)


# ---------------------------------------------------------------- the config

@idl_struct
class DomainConfig(Struct):
    c_info: DomainCreateInfo = struct(DomainCreateInfo)
    b_info: DomainBuildInfo = struct(DomainBuildInfo)
    disks: list = array(DeviceDisk)
    nics: list = array(DeviceNic)
    pcidevs: list = array(DevicePci)
    rdms: list = array(DeviceRdm)
    dtdevs: list = array(DeviceDtdev)
    vfbs: list = array(DeviceVfb)
    vkbs: list = array(DeviceVkb)
    vtpms: list = array(DeviceVtpm)
    p9s: list = array(DeviceP9)
    pvcallsifs: list = array(DevicePvcallsif)
    vdispls: list = array(DeviceVdispl)
    vsnds: list = array(DeviceVsnd)
    channels: list = array(DeviceChannel)
    usbctrls: list = array(DeviceUsbctrl)
    usbdevs: list = array(DeviceUsbdev)
    on_poweroff: int = enumf(ActionOnShutdown, ActionOnShutdown.DESTROY)
    on_reboot: int = enumf(ActionOnShutdown, ActionOnShutdown.DESTROY)
    on_watchdog: int = enumf(ActionOnShutdown, ActionOnShutdown.DESTROY)
    on_crash: int = enumf(ActionOnShutdown, ActionOnShutdown.DESTROY)
    on_soft_reset: int = enumf(ActionOnShutdown, ActionOnShutdown.DESTROY)

    # the config file text this was parsed from (not part of libxl's JSON);
    # the toolstack keeps it like xl keeps the config for `xl list -l`.
    source: Optional[str] = field(default=None, compare=False, repr=False,
                                  metadata={"t": "private"})
