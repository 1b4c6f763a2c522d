"""xl_parse.c parse_config_data: settings -> libxl_domain_config.

`parse_config(cfg, source, out, host)` reads every key Xen 4.17's xl reads,
in xl's order (the order decides which message comes first), and returns a
DomainConfig.  `cfg` is an XluConfig (pyxl.config.cfgfile) or anything with
the same getters.  Messages that xl prints and carries on after go to
`out.say(line)`; a failure raises ConfigError with xl's message and exit
status.  Messages that xl prints without a newline go to `out.partial`.
"""

from __future__ import annotations

import os
import uuid as _uuid
from typing import TYPE_CHECKING, Callable, Iterable

from pyxl.config import model as M
from pyxl.config.cpumap import parse_cpurange, parse_range
from pyxl.config.cstr import set_errno, strtok, strtol, strtoul, wrap_int, wrap_u32, wrap_u64
from pyxl.config.errors import ConfigError
from pyxl.config.host import DEFAULT_HOST, HostInfo

if TYPE_CHECKING:
    from pyxl.config.cfgfile import Settings, XluList
from pyxl.config.uuidparse import parse_uuid

INT_MAX = (1 << 31) - 1
ERROR_FAIL = -3
XENFIRMWAREDIR = "/usr/lib/xen-4.17/boot"
HVM_BELOW_4G_MMIO_START = 0xF0000000
HVM_BELOW_4G_MMIO_LENGTH = (1 << 32) - HVM_BELOW_4G_MMIO_START
XEN_HVM_MCA_CAP_LMCE = 1 << 0


class Output:
    """stderr as xl writes it: whole lines, plus fragments printed without a
    newline that end up glued to the next line."""

    def __init__(self, say: Callable[[str], object] | None = None,
                 say_partial: Callable[[str], object] | None = None):
        self.lines: list[str] = []
        self._say = say
        self._say_partial = say_partial
        self._pending = ""
        self.source = ""     # the config's name in located messages

    def say(self, line: str) -> None:
        line = self._pending + line
        self._pending = ""
        if self._say is not None:
            self._say(line)
        else:
            self.lines.append(line)

    def partial(self, text: str) -> None:
        self._pending += text

    def take_pending(self) -> str:
        p, self._pending = self._pending, ""
        return p

    def fail(self, lines: str | Iterable[str], exit_code: int = 1) -> ConfigError:
        if isinstance(lines, str):
            lines = [lines]
        lines = list(lines)
        p = self.take_pending()
        if p and lines:
            lines = [p + lines[0]] + lines[1:]
        elif p:  # xl exits right after a message without a newline
            e = ConfigError([p], exit_code)
            e.no_newline = True
            return e
        return ConfigError(lines, exit_code)

    def flush(self) -> None:
        """End of output: a fragment still pending is written as is."""
        p = self.take_pending()
        if p:
            if self._say_partial is not None:
                self._say_partial(p)
            else:
                self.say(p)


# ---------------------------------------------------------------- getters

class _ErrnoTracking:
    """The XluConfig, plus the errno side effect of libxlu's number getters:
    xlu_cfg_get_bounded_long clears errno and runs strtol on a plain atom.
    Other attributes (XluConfig's `line_of`, `setting`) are the config's."""

    def __init__(self, cfg: Settings):
        self._cfg = cfg

    def __getattr__(self, name: str) -> object:
        return getattr(self._cfg, name)

    def get_value(self, key: str) -> str | XluList | None:
        return self._cfg.get_value(key)

    def get_string(self, key: str, dont_warn: bool = False) -> str | None:
        return self._cfg.get_string(key, dont_warn)

    def get_list(self, key: str, dont_warn: bool = False) -> XluList | None:
        return self._cfg.get_list(key, dont_warn)

    def _strtol_errno(self, key: str) -> None:
        setting = getattr(self._cfg, "setting", None)
        s = setting(key) if setting is not None else None
        if s is None or not isinstance(s.value, str) or s.op == "+=":
            return
        set_errno(0)
        strtol(str(s.value), 0)     # sets ERANGE on overflow

    def get_bounded_long(self, key: str, lo: int, hi: int, dont_warn: bool = False) -> int | None:
        self._strtol_errno(key)
        return self._cfg.get_bounded_long(key, lo, hi, dont_warn)

    def get_long(self, key: str, dont_warn: bool = False) -> int | None:
        self._strtol_errno(key)
        return self._cfg.get_long(key, dont_warn)

    def get_defbool(self, key: str, dont_warn: bool = False) -> bool | None:
        self._strtol_errno(key)
        return self._cfg.get_defbool(key, dont_warn)


def _value_kind(cfg: Settings, key: str) -> str | None:
    v = cfg.get_value(key)
    if v is None:
        return None
    return "string" if isinstance(v, str) else "list"


def _string_list(cfg: Settings, key: str, dont_warn: bool) -> tuple[int | str, list[str] | None]:
    """xlu_cfg_get_list_as_string_list -> (rc, list): rc 0, 'ESRCH', 'EINVAL'."""
    kind = _value_kind(cfg, key)
    if kind is None:
        return "ESRCH", None
    lst = cfg.get_list(key, dont_warn)
    if lst is None:
        return "EINVAL", None
    return 0, lst.leading_strings()


def _list_of(cfg: Settings, key: str) -> XluList:
    """The value of `key`, which _value_kind found to be a list."""
    lst = cfg.get_list(key, True)
    assert lst is not None
    return lst


def _line_of(cfg: Settings, key: str) -> int:
    f = getattr(cfg, "line_of", None)
    return f(key) if f is not None else 0


def _get_long(cfg: Settings, key: str, dont_warn: bool = False) -> int | None:
    return cfg.get_long(key, dont_warn)


# ---------------------------------------------------------------- helpers

_ACTIONS = {"destroy": M.ActionOnShutdown.DESTROY, "restart": M.ActionOnShutdown.RESTART,
            "rename-restart": M.ActionOnShutdown.RESTART_RENAME,
            "preserve": M.ActionOnShutdown.PRESERVE,
            "coredump-destroy": M.ActionOnShutdown.COREDUMP_DESTROY,
            "coredump-restart": M.ActionOnShutdown.COREDUMP_RESTART,
            "soft-reset": M.ActionOnShutdown.SOFT_RESET}


def _prefix_of(buf: str, word: str) -> bool:
    """strncmp(buf, word, strlen(buf)) == 0"""
    return word[:len(buf)] == buf if len(buf) <= len(word) else False


def _basename(path: str | None) -> str:
    """libxl_basename (NULL -> NULL, which strcmp would crash on; xl only
    calls it with a kernel set or not -- treat None as no match)."""
    if path is None:
        return ""
    return os.path.basename(path) if not path.endswith("/") else ""


def _split_string_list(s: str, delims: str) -> list[str]:
    toks = strtok(s, delims)
    return toks


def _parse_cmdline(cfg: Settings, out: Output) -> str | None:
    buf = cfg.get_string("cmdline")
    root = cfg.get_string("root")
    extra = cfg.get_string("extra")
    if buf is not None:
        if root is not None or extra is not None:
            out.say("Warning: ignoring root= and extra= in favour of cmdline=")
        return buf
    if root is not None and extra is not None:
        return "root=%s %s" % (root, extra)
    if root is not None:
        return "root=%s" % root
    return extra


def _vcpu_affinity(b_info: M.DomainBuildInfo, lst: XluList | None, buf: str | None, num_cpus: int,
                   is_hard: bool, host: HostInfo, out: Output) -> None:
    if buf is not None or num_cpus > b_info.max_vcpus:
        num_cpus = b_info.max_vcpus
    maps: list = [None] * max(num_cpus, 0)
    if buf is None:
        assert lst is not None             # the caller gives a list or a string
        j = 0
        while True:
            item = lst.get_item(j) if j < lst.count else None
            if item is None or j >= num_cpus:
                break
            bm = M.Bitmap.cpus(host)
            err = parse_cpurange(item, bm, host)
            if err:
                raise out.fail(err)
            maps[j] = bm
            j += 1
        b_info.numa_placement = False
    else:
        bm = M.Bitmap.cpus(host)
        err = parse_cpurange(buf, bm, host)
        if err:
            raise out.fail(err)
        for i in range(num_cpus):
            maps[i] = bm.copy()
        if not is_hard:
            b_info.numa_placement = False
    if is_hard:
        b_info.vcpu_hard_affinity = maps
    else:
        b_info.vcpu_soft_affinity = maps


def _parse_vnuma(cfg: Settings, b_info: M.DomainBuildInfo, host: HostInfo, out: Output) -> None:
    kind = _value_kind(cfg, "vnuma")
    if kind != "list":
        return
    vnuma = _list_of(cfg, "vnuma")
    num = vnuma.count
    if not num:
        return
    nodes = [M.VnodeInfo(distances=[0] * num) for _ in range(num)]
    b_info.vnuma_nodes = nodes
    if b_info.max_vcpus < 0:
        out.say("libxl: error: libxl_utils.c:809:libxl_cpu_bitmap_alloc: "
                "invalid number of cpus provided")
        raise out.fail("libxl_node_bitmap_alloc failed.")
    vcpu_parsed = [M.Bitmap.cpus(host, b_info.max_vcpus) for _ in range(num)]
    max_vcpus = 0
    max_memkb = 0
    for i in range(num):
        p = nodes[i]
        spec = vnuma.get_value(i)
        if spec is None or isinstance(spec, str):    # (i < count: never None)
            out.say("%s:%d:0: warning: value is not a list" % (out.source, _line_of(cfg, "vnuma")))
            raise out.fail("xl: cannot get vnode config option list")
        for k in range(spec.count):
            opt = spec.get_value(k)
            if not isinstance(opt, str):
                continue
            parts = strtok(opt, "=")
            if len(parts) < 2:
                raise out.fail('xl: failed to split "%s" into pair' % opt)
            option = parts[0].strip(" \t\n\v\f\r")
            value = parts[1].strip(" \t\n\v\f\r")
            if option == "pnode":
                val = _parse_ulong(value, out)
                if val >= host.nr_nodes:
                    raise out.fail("xl: invalid pnode number: %d" % val)
                p.pnode = val
                b_info.numa_placement = False
            elif option == "size":
                val = _parse_ulong(value, out)
                p.memkb = wrap_u64(val << 10)
                max_memkb = wrap_u64(max_memkb + p.memkb)
            elif option == "vcpus":
                for cpu_spec in strtok(value, ","):
                    r = parse_range(cpu_spec)
                    if r is None:
                        continue  # xl ignores the result (s/e keep stale values)
                    s, e = r
                    if e - s > 4096:
                        raise out.fail("xl: vnuma specifies more vcpus than pcpus, "
                                       "use maxvcpus= to override this check.")
                    for c in range(s, e + 1):
                        vcpu_parsed[i].set(c)
                        max_vcpus += 1
            elif option == "vdistances":
                for j, d in enumerate(strtok(value, ",")):
                    val = _parse_ulong(d, out)
                    if j < len(p.distances):
                        p.distances[j] = wrap_u32(val)
    if b_info.max_vcpus != 0:
        if b_info.max_vcpus != max_vcpus:
            raise out.fail("xl: vnuma vcpus and maxvcpus= mismatch")
    else:
        if host.nr_cpus < max_vcpus:
            raise out.fail("xl: vnuma specifies more vcpus than pcpus, "
                           "use maxvcpus= to override this check.")
        b_info.max_vcpus = max_vcpus
    if b_info.max_memkb != M.MEMKB_DEFAULT and b_info.max_memkb != max_memkb:
        raise out.fail("xl: maxmem and vnuma memory size mismatch")
    b_info.max_memkb = max_memkb
    for i, p in enumerate(nodes):
        p.vcpus = vcpu_parsed[i]


def _parse_ulong(s: str, out: Output) -> int:
    val, end = strtoul(s, 10)
    if end == 0 or val == (1 << 64) - 1:
        raise out.fail('xl: failed to convert "%s" to number' % s)
    return val


# ---------------------------------------------------------------- main

def parse_config(cfg: Settings, source: str, out: Output | None = None,
                 host: HostInfo = DEFAULT_HOST, *,
                 xl_defaults: dict[str, str] | None = None) -> M.DomainConfig:
    """parse_config_data(): the whole of xl's reading of a config."""
    from pyxl.config import devices

    out = out or Output()
    out.source = source
    cfg = _ErrnoTracking(cfg)
    set_errno(0)
    d = M.DomainConfig()
    c_info, b_info = d.c_info, d.b_info

    s = cfg.get_string("init_seclabel")
    if s is not None:
        c_info.ssid_label = s
    s = cfg.get_string("seclabel")
    if s is not None:
        if c_info.ssid_label is not None:
            b_info.exec_ssid_label = s
        else:
            c_info.ssid_label = s

    c_info.run_hotplug_scripts = True

    buf = cfg.get_string("type")
    if buf is not None:
        if _prefix_of(buf, "hvm"):
            c_info.type = M.DomainType.HVM
        elif _prefix_of(buf, "pv"):
            c_info.type = M.DomainType.PV
        elif _prefix_of(buf, "pvh"):
            c_info.type = M.DomainType.PVH
        else:
            raise out.fail("Invalid domain type %s." % buf)

    buf = cfg.get_string("builder")
    if buf is not None:
        if _prefix_of(buf, "hvm"):
            builder_type = M.DomainType.HVM
        elif _prefix_of(buf, "generic"):
            builder_type = M.DomainType.PV
        else:
            raise out.fail("Invalid domain type %s." % buf)
        if c_info.type != M.DomainType.INVALID and c_info.type != builder_type:
            raise out.fail('Contradicting "builder" and "type" options specified.')
        c_info.type = builder_type

    if c_info.type == M.DomainType.INVALID:
        c_info.type = M.DomainType.PV

    c_info.hap = _defbool(cfg, "hap", c_info.hap)

    name = cfg.get_string("name")
    if name is None:
        raise out.fail("Domain name must be specified.")
    c_info.name = name

    buf = cfg.get_string("uuid")
    if buf is not None:
        u = parse_uuid(buf)
        if u is None:
            raise out.fail("Failed to parse UUID: %s" % buf)
        c_info.uuid = u
    else:
        c_info.uuid = _uuid.uuid4()

    c_info.oos = _defbool(cfg, "oos", c_info.oos)

    buf = cfg.get_string("pool")
    if buf is not None:
        c_info.pool_name = buf

    b_info.init_type(c_info.type)

    pvh = b_info.pvh
    if pvh is not None:
        pvh.pvshim = _defbool(cfg, "pvshim", pvh.pvshim)
        for key in ("pvshim_path", "pvshim_cmdline", "pvshim_extra"):
            v = cfg.get_string(key)
            if v is not None:
                setattr(pvh, key, v)

    if xl_defaults is not None and xl_defaults.get("blkdev_start"):
        b_info.blkdev_start = xl_defaults["blkdev_start"]

    sp = b_info.sched_params
    for key, attr in (("cpu_weight", "weight"), ("cap", "cap"), ("period", "period"),
                      ("slice", "slice"), ("latency", "latency"), ("extratime", "extratime")):
        l = _get_long(cfg, key)
        if l is not None:
            setattr(sp, attr, wrap_int(l))

    l = _get_long(cfg, "memory")
    if l is not None:
        b_info.target_memkb = wrap_u64(l * 1024)
    l = _get_long(cfg, "maxmem")
    if l is not None:
        b_info.max_memkb = wrap_u64(l * 1024)

    vcpus = 0
    l = _get_long(cfg, "vcpus")
    if l is not None:
        vcpus = l
        n = wrap_int(l)   # libxl_cpu_bitmap_alloc takes an int
        if n < 0:
            out.say("libxl: error: libxl_utils.c:809:libxl_cpu_bitmap_alloc: "
                    "invalid number of cpus provided")
            raise out.fail("Unable to allocate cpumap")
        if n > 1 << 24:
            raise out.fail("pyxl: vcpus=%d is too large for this host" % l)
        bm = M.Bitmap.cpus(host, n)
        for i in range(min(l, bm.nbits)):
            bm.set(i)
        b_info.avail_vcpus = bm

    l = _get_long(cfg, "maxvcpus")
    if l is not None:
        b_info.max_vcpus = wrap_int(l)

    buf = cfg.get_string("vuart")
    if buf is not None:
        v = M.VuartType.from_string(buf)
        if v is None:
            raise out.fail('ERROR: invalid value "%s" for "vuart"' % buf)
        b_info.arch_arm.vuart = v

    _parse_vnuma(cfg, b_info, host, out)

    if b_info.max_memkb == M.MEMKB_DEFAULT:
        b_info.max_memkb = b_info.target_memkb
    if b_info.max_vcpus == 0:
        b_info.max_vcpus = wrap_int(vcpus)
    if b_info.max_vcpus < vcpus:
        raise out.fail("xl: maxvcpus < vcpus")

    for key, is_hard in (("cpus", True), ("cpus_soft", False)):
        kind = _value_kind(cfg, key)
        if kind == "list":
            lst = _list_of(cfg, key)
            _vcpu_affinity(b_info, lst, None, lst.count, is_hard, host, out)
        elif kind == "string":
            buf = cfg.get_string(key)
            if buf is not None:
                _vcpu_affinity(b_info, None, buf, 0, is_hard, host, out)

    for key in ("max_grant_frames", "max_maptrack_frames", "max_grant_version"):
        if cfg.get_value(key) is None:
            continue  # xl.conf default (none: the IDL default)
        l = cfg.get_bounded_long(key, 0, INT_MAX, True)
        if l is None:
            raise out.fail([])  # xl exits 1 without a word
        if key == "max_grant_version":
            b_info.max_grant_version = wrap_int(l)
        else:
            setattr(b_info, key, wrap_u32(l))

    b_info.claim_mode = True

    for key, dflt in (("on_poweroff", "destroy"), ("on_reboot", "restart"),
                      ("on_watchdog", "destroy"), ("on_crash", "destroy"),
                      ("on_soft_reset", "soft-reset")):
        buf = cfg.get_string(key)
        if buf is None:
            buf = dflt
        a = _ACTIONS.get(buf)
        if a is None:
            raise out.fail('Unknown %s action "%s" specified' % (key, buf))
        setattr(d, key, a)

    pv = b_info.pv
    if pv is not None:
        pv.e820_host = _defbool(cfg, "e820_host", pv.e820_host)

    pci_opts = {}
    for key in ("pci_msitranslate", "pci_power_mgmt", "pci_permissive", "pci_seize"):
        l = _get_long(cfg, key)
        pci_opts[key] = wrap_int(l) if l is not None else 0

    # rdm= writes u.hvm.rdm even for PV/PVH guests, where that memory is not
    # part of the printed union but is read back as the pci default policy.
    hvm = b_info.hvm
    if hvm is not None:
        rdm_mem = hvm.rdm
    else:
        rdm_mem = M.RdmReserve(strategy=0, policy=M.RdmReservePolicy.STRICT)
    buf = cfg.get_string("rdm")
    if buf is not None:
        from pyxl.config.pci import parse_rdm
        r = parse_rdm(buf, out.partial)
        if r is not None:
            rdm_mem.strategy, rdm_mem.policy = r

    devices.parse_pci_list(cfg, d, pci_opts, rdm_mem.policy, out)

    kind = _value_kind(cfg, "dtdev")
    lst = cfg.get_list("dtdev") if kind is not None else None
    if lst is not None:
        d.dtdevs = [M.DeviceDtdev(path=p) for p in lst.leading_strings()]

    buf = cfg.get_string("passthrough")
    if buf is not None:
        v = M.Passthrough.from_string(buf)
        if v is None:
            raise out.fail("ERROR: unknown passthrough option '%s'" % buf)
        c_info.passthrough = v

    l = _get_long(cfg, "shadow_memory")
    if l is not None:
        b_info.shadow_memkb = wrap_u64(l * 1024)

    b_info.disable_migrate = _defbool(cfg, "nomigrate", b_info.disable_migrate)

    l = _get_long(cfg, "tsc_mode", True)
    if l is not None:
        try:
            sname = M.TscMode(l).name.lower()
        except ValueError:
            sname = None
        out.say('WARNING: specifying "tsc_mode" as an integer is deprecated. '
                "Please use the named parameter variant. %s%s%s"
                % ('e.g. tsc_mode="' if sname else "", sname or "", '"' if sname else ""))
        if l < 0 or l > 3:
            raise out.fail('ERROR: invalid value %d for "tsc_mode"' % l)
        b_info.tsc_mode = M.TscMode(l)
    else:
        buf = cfg.get_string("tsc_mode")
        if buf is not None:
            out.say('got a tsc mode string: "%s"' % buf)
            v = M.TscMode.from_string(buf)
            if v is None:
                raise out.fail('ERROR: invalid value "%s" for "tsc_mode"' % buf)
            b_info.tsc_mode = v

    l = _get_long(cfg, "rtc_timeoffset")
    if l is not None:
        b_info.rtc_timeoffset = wrap_u32(l)

    if _get_long(cfg, "vncviewer") is not None:
        out.say('WARNING: ignoring "vncviewer" option. Use "-V" option of '
                '"xl create" to automatically spawn vncviewer.')

    b_info.localtime = _defbool(cfg, "localtime", b_info.localtime)

    l = _get_long(cfg, "videoram")
    if l is not None:
        b_info.video_memkb = wrap_u64(l * 1024)

    l = _get_long(cfg, "max_event_channels")
    if l is not None:
        b_info.event_channels = wrap_u32(l)

    for key in ("kernel", "ramdisk", "device_tree"):
        v = cfg.get_string(key)
        if v is not None:
            setattr(b_info, key, v)
    b_info.cmdline = _parse_cmdline(cfg, out)

    c_info.driver_domain = _defbool(cfg, "driver_domain", c_info.driver_domain)
    b_info.acpi = _defbool(cfg, "acpi", b_info.acpi)

    v = cfg.get_string("bootloader")
    if v is not None:
        b_info.bootloader = v
    rc, sl = _string_list(cfg, "bootloader_args", True)
    if rc == 0:
        b_info.bootloader_args = sl
    elif rc == "EINVAL":
        buf = cfg.get_string("bootloader_args")
        if buf is not None:
            out.say('WARNING: Specifying "bootloader_args" as a string is deprecated. '
                    "Please use a list of arguments.")
            b_info.bootloader_args = _split_string_list(buf, " \t\n")

    l = _get_long(cfg, "timer_mode", True)
    if l is not None:
        try:
            sname = M.TimerMode(l).name.lower()
        except ValueError:
            sname = None
        if b_info.type == M.DomainType.PV:
            raise out.fail('ERROR: "timer_mode" option is not supported for PV guests.', 3)
        out.say('WARNING: specifying "timer_mode" as an integer is deprecated. '
                "Please use the named parameter variant. %s%s%s"
                % ('e.g. timer_mode="' if sname else "", sname or "", '"' if sname else ""))
        if l < 0 or l > 3:
            raise out.fail('ERROR: invalid value %d for "timer_mode"' % l)
        b_info.timer_mode = M.TimerMode(l)
    else:
        buf = cfg.get_string("timer_mode")
        if buf is not None:
            if b_info.type == M.DomainType.PV:
                raise out.fail('ERROR: "timer_mode" option is not supported for PV guests.', 3)
            v = M.TimerMode.from_string(buf)
            if v is None:
                raise out.fail('ERROR: invalid value "%s" for "timer_mode"' % buf)
            b_info.timer_mode = v

    b_info.nested_hvm = _defbool(cfg, "nestedhvm", b_info.nested_hvm)

    hvm = b_info.hvm                          # set exactly for an HVM guest
    if hvm is not None:
        _parse_hvm_build(cfg, b_info, hvm, out)
    else:
        buf = cfg.get_string("firmware")
        if buf is not None:
            if b_info.kernel is not None:
                raise out.fail("ERROR: both kernel and firmware specified")
            if not _prefix_of(buf, "pvgrub32") and not _prefix_of(buf, "pvgrub64"):
                raise out.fail("ERROR: only pvgrub{32|64} supported as firmware options")
            b_info.kernel = "%s/%s.bin" % (XENFIRMWAREDIR, buf)
        if b_info.bootloader is None and b_info.kernel is None:
            raise out.fail("Neither kernel nor bootloader specified")

    l = _get_long(cfg, "altp2m", True)
    if l is not None:
        if l < 0 or l > 3:
            raise out.fail('ERROR: invalid value %d for "altp2m"' % l)
        b_info.altp2m = M.Altp2mMode(l)
    else:
        buf = cfg.get_string("altp2m")
        if buf is not None:
            v = M.Altp2mMode.from_string(buf)
            if v is None:
                raise out.fail('ERROR: invalid value "%s" for "altp2m"' % buf)
            b_info.altp2m = v

    l = _get_long(cfg, "vmtrace_buf_kb", True)
    if l is not None and l:
        b_info.vmtrace_buf_kb = wrap_int(l)

    devices.parse_io_lists(cfg, b_info, out)
    devices.parse_devices(cfg, d, source, host, out, xl_defaults)
    _parse_device_model(cfg, d, out)
    devices.parse_vkb_list(cfg, d, out)

    c_info.xend_suspend_evtchn_compat = _defbool(cfg, "xend_suspend_evtchn_compat",
                                                 c_info.xend_suspend_evtchn_compat)
    v = cfg.get_defbool("msr_relaxed")
    if v is not None:
        b_info.arch_x86.msr_relaxed = v
        out.say("WARNING: msr_relaxed will be removed in future versions.")
        out.say("If it fixes an issue you are having please report to "
                "xen-devel@lists.xenproject.org.")
    b_info.vpmu = _defbool(cfg, "vpmu", b_info.vpmu)
    return d


def _defbool(cfg: Settings, key: str, current: bool | None,
             dont_warn: bool = False) -> bool | None:
    v = cfg.get_defbool(key, dont_warn)
    return current if v is None else v


def _parse_hvm_build(cfg: Settings, b_info: M.DomainBuildInfo, hvm: M.HvmBuildInfo,
                     out: Output) -> None:
    if _basename(b_info.kernel) == "hvmloader":
        out.say('WARNING: you seem to be using "kernel" directive to override HVM guest '
                'firmware. Ignore that. Use "firmware_override" instead if you really '
                "want a non-default firmware")
        b_info.kernel = None
    v = cfg.get_string("firmware_override")
    if v is not None:
        hvm.firmware = v
    v = cfg.get_string("bios_path_override")
    if v is not None:
        hvm.system_firmware = v
    buf = cfg.get_string("bios")
    if buf is not None:
        bt = M.BiosType.from_string(buf)
        if bt is None:
            raise out.fail('ERROR: invalid value "%s" for "bios"' % buf)
        hvm.bios = bt
    elif hvm.system_firmware is not None:
        out.say("WARNING: bios_path_override given without specific bios name")

    for key in ("pae", "acpi_s3", "acpi_s4", "acpi_laptop_slate", "nx", "hpet", "vpt_align"):
        setattr(hvm, key, _defbool(cfg, key, getattr(hvm, key)))
    b_info.apic = _defbool(cfg, "apic", b_info.apic)

    kind = _value_kind(cfg, "viridian")
    if kind == "list":
        lst = _list_of(cfg, "viridian")
        n = lst.count
        if n:
            enable = hvm.viridian_enable = M.Bitmap(64)
            disable = hvm.viridian_disable = M.Bitmap(64)
        for i in range(n):
            buf = lst.get_item(i)
            if buf is None:  # (real xl crashes on a NULL item here)
                raise out.fail("xl: viridian item %d is not a string" % i, 3)
            if buf == "all":
                enable.set_any()
            elif buf == "defaults":
                hvm.viridian = True
            else:
                s, r = enable, disable
                if buf.startswith("!"):
                    s, r = r, s
                    buf = buf[1:]
                v = M.ViridianEnlightenment.from_string(buf)
                if v is None:
                    raise out.fail("xl: unknown viridian enlightenment '%s'" % buf, 3)
                s.set(int(v))
                r.reset(int(v))
    elif kind == "string":
        hvm.viridian = _defbool(cfg, "viridian", hvm.viridian, True)

    l = cfg.get_long("mmio_hole")
    if l is not None:
        hvm.mmio_hole_memkb = wrap_u64(l * 1024)
        size = wrap_u64(hvm.mmio_hole_memkb * 1024)
        if size < HVM_BELOW_4G_MMIO_LENGTH or size > HVM_BELOW_4G_MMIO_START:
            raise out.fail('ERROR: invalid value %d for "mmio_hole"' % l)

    v = cfg.get_defbool("altp2mhvm")
    if v is not None:
        hvm.altp2m = v
        out.say('WARNING: Specifying "altp2mhvm" is deprecated. Please use "altp2m" instead.')

    for key in ("smbios_firmware", "acpi_firmware"):
        v = cfg.get_string(key)
        if v is not None:
            setattr(hvm, key, v)

    buf = cfg.get_string("ms_vm_genid")
    if buf is not None:
        if buf == "generate":
            hvm.ms_vm_genid = M.MsVmGenid(bytes=os.urandom(16))
        elif buf == "none":
            pass
        else:
            raise out.fail('ERROR: "ms_vm_genid" option must be "generate" or "none"')

    l = cfg.get_long("rdm_mem_boundary")
    if l is not None:
        hvm.rdm_mem_boundary_memkb = wrap_u64(l * 1024)

    kind = _value_kind(cfg, "mca_caps")
    if kind == "list":
        lst = _list_of(cfg, "mca_caps")
        for i in range(lst.count):
            buf = lst.get_item(i)
            if buf is None:  # (real xl crashes on a NULL item here)
                raise out.fail("ERROR: mca_caps item %d is not a string." % i, 3)
            if buf == "lmce":
                hvm.mca_caps |= XEN_HVM_MCA_CAP_LMCE
            else:
                raise out.fail("ERROR: unrecognized MCA capability '%s'." % buf, 3)
    elif kind == "string":
        raise out.fail("ERROR: unable to parse mca_caps.", 3)

    buf = cfg.get_string("firmware")
    if buf is not None:
        bt = M.BiosType.from_string(buf)
        if bt is not None:
            hvm.bios = bt
        elif _prefix_of(buf, "uefi"):
            hvm.bios = M.BiosType.OVMF
        elif not _prefix_of(buf, "bios"):
            hvm.firmware = buf


def _parse_device_model(cfg: Settings, d: M.DomainConfig, out: Output) -> None:
    c_info, b_info = d.c_info, d.b_info
    buf = cfg.get_string("device_model")
    if buf is not None:
        out.say("WARNING: ignoring device_model directive.")
        out.say('WARNING: Use "device_model_override" instead if you really want a '
                "non-default device_model")
        if "stubdom-dm" in buf:
            if c_info.type == M.DomainType.HVM:
                out.say('WARNING: Or use "device_model_stubdomain_override" if you  '
                        "want to enable stubdomains")
            else:
                out.say('WARNING: ignoring "device_model_stubdomain_override" directive '
                        "for pv guest")
    v = cfg.get_string("device_model_override")
    if v is not None:
        b_info.device_model = v
    buf = cfg.get_string("device_model_version")
    if buf is not None:
        if buf == "qemu-xen-traditional":
            b_info.device_model_version = M.DeviceModelVersion.QEMU_XEN_TRADITIONAL
        elif buf == "qemu-xen":
            b_info.device_model_version = M.DeviceModelVersion.QEMU_XEN
        else:
            raise out.fail('Unknown device_model_version "%s" specified' % buf)
    elif b_info.device_model is not None:
        out.say("WARNING: device model override given without specific DM version")
    b_info.device_model_stubdomain = _defbool(cfg, "device_model_stubdomain_override",
                                              b_info.device_model_stubdomain)
    v = cfg.get_string("device_model_stubdomain_seclabel")
    if v is not None:
        b_info.device_model_ssid_label = v
    v = cfg.get_string("device_model_user")
    if v is not None:
        b_info.device_model_user = v
    for key in ("stubdomain_kernel", "stubdomain_cmdline", "stubdomain_ramdisk"):
        v = cfg.get_string(key)
        if v is not None:
            setattr(b_info, key, v)
    l = cfg.get_long("stubdomain_memory")
    if l is not None:
        b_info.stubdomain_memkb = wrap_u64(l * 1024)

    for suffix, attr in (("", "extra"), ("_pv", "extra_pv"), ("_hvm", "extra_hvm")):
        key = "device_model_args" + suffix
        rc, sl = _string_list(cfg, key, False)
        if rc == 0:
            setattr(b_info, attr, sl)
        elif rc != "ESRCH":
            raise out.fail("xl: Unable to parse %s." % key, 3)

    if c_info.type == M.DomainType.PV and not d.vfbs:
        l = cfg.get_long("vnc")
        if l:
            vfb = M.DeviceVfb(devid=len(d.vfbs))
            d.vfbs.append(vfb)
            d.vkbs.append(M.DeviceVkb(devid=len(d.vkbs)))
            _top_level_vnc(cfg, vfb.vnc)
            _top_level_sdl(cfg, vfb.sdl)
            v = cfg.get_string("keymap")
            if v is not None:
                vfb.keymap = v
    else:
        # for PVH (and PV with vfb=) this writes the hvm union member's
        # memory, which is not printed: parse for the messages only.
        scratch = b_info.hvm if b_info.hvm is not None else M.HvmBuildInfo()
        _top_level_vnc(cfg, scratch.vnc)
        _top_level_sdl(cfg, scratch.sdl)

    b_info.dm_restrict = _defbool(cfg, "dm_restrict", b_info.dm_restrict)

    hvm = b_info.hvm
    if hvm is not None:
        _parse_hvm_devices(cfg, b_info, hvm, out)

    buf = cfg.get_string("gic_version", True)
    if buf is not None:
        v = M.GicVersion.from_string(buf)
        if v is None:
            raise out.fail('Unknown gic_version "%s" specified' % buf, 3)
        b_info.arch_arm.gic_version = v
    buf = cfg.get_string("tee", True)
    if buf is not None:
        v = M.TeeType.from_string(buf)
        if v is None:
            raise out.fail('Unknown tee "%s" specified' % buf, 3)
        b_info.tee = v


def _top_level_vnc(cfg: Settings, vnc: M.VncInfo) -> None:
    vnc.enable = _defbool(cfg, "vnc", vnc.enable)
    v = cfg.get_string("vnclisten")
    if v is not None:
        vnc.listen = v
    v = cfg.get_string("vncpasswd")
    if v is not None:
        vnc.passwd = v
    l = cfg.get_long("vncdisplay")
    if l is not None:
        vnc.display = wrap_int(l)
    vnc.findunused = _defbool(cfg, "vncunused", vnc.findunused)


def _top_level_sdl(cfg: Settings, sdl: M.SdlInfo) -> None:
    sdl.enable = _defbool(cfg, "sdl", sdl.enable)
    sdl.opengl = _defbool(cfg, "opengl", sdl.opengl)
    v = cfg.get_string("display")
    if v is not None:
        sdl.display = v
    v = cfg.get_string("xauthority")
    if v is not None:
        sdl.xauthority = v


def _parse_hvm_devices(cfg: Settings, b_info: M.DomainBuildInfo, hvm: M.HvmBuildInfo,
                       out: Output) -> None:
    buf = cfg.get_string("vga")
    if buf is not None:
        kinds = {"stdvga": M.VgaInterfaceType.STD, "cirrus": M.VgaInterfaceType.CIRRUS,
                 "none": M.VgaInterfaceType.NONE, "qxl": M.VgaInterfaceType.QXL}
        if buf not in kinds:
            raise out.fail('Unknown vga "%s" specified' % buf)
        hvm.vga.kind = kinds[buf]
    else:
        l = cfg.get_long("stdvga")
        if l is not None:
            hvm.vga.kind = M.VgaInterfaceType.STD if l else M.VgaInterfaceType.CIRRUS

    buf = cfg.get_string("hdtype")
    if buf is not None:
        v = M.Hdtype.from_string(buf)
        if v is None:
            raise out.fail('ERROR: invalid value "%s" for "hdtype"' % buf)
        hvm.hdtype = v

    v = cfg.get_string("keymap")
    if v is not None:
        hvm.keymap = v
    sp = hvm.spice
    sp.enable = _defbool(cfg, "spice", sp.enable)
    l = cfg.get_long("spiceport")
    if l is not None:
        sp.port = wrap_int(l)
    l = cfg.get_long("spicetls_port")
    if l is not None:
        sp.tls_port = wrap_int(l)
    v = cfg.get_string("spicehost")
    if v is not None:
        sp.host = v
    sp.disable_ticketing = _defbool(cfg, "spicedisable_ticketing", sp.disable_ticketing)
    v = cfg.get_string("spicepasswd")
    if v is not None:
        sp.passwd = v
    sp.agent_mouse = _defbool(cfg, "spiceagent_mouse", sp.agent_mouse)
    sp.vdagent = _defbool(cfg, "spicevdagent", sp.vdagent)
    sp.clipboard_sharing = _defbool(cfg, "spice_clipboard_sharing", sp.clipboard_sharing)
    l = cfg.get_long("spiceusbredirection")
    if l is not None:
        sp.usbredirection = wrap_int(l)
    v = cfg.get_string("spice_image_compression")
    if v is not None:
        sp.image_compression = v
    v = cfg.get_string("spice_streaming_video")
    if v is not None:
        sp.streaming_video = v
    hvm.nographic = _defbool(cfg, "nographic", hvm.nographic)

    l = cfg.get_long("gfx_passthru", True)
    if l is not None:
        hvm.gfx_passthru = bool(l)
    else:
        buf = cfg.get_string("gfx_passthru")
        if buf is not None:
            v = M.GfxPassthruKind.from_string(buf)
            if v is None:
                raise out.fail('ERROR: invalid value "%s" for "gfx_passthru"' % buf)
            hvm.gfx_passthru_kind = v
            hvm.gfx_passthru = True

    for key, list_attr, str_attr in (("serial", "serial_list", "serial"),):
        rc, sl = _string_list(cfg, key, True)
        if rc == 0:
            setattr(hvm, list_attr, sl)
        elif rc == "EINVAL":
            v = cfg.get_string(key)
            if v is None:
                raise out.fail("xl: Unable to parse serial.", 3)
            setattr(hvm, str_attr, v)
    v = cfg.get_string("boot")
    if v is not None:
        hvm.boot = v
    hvm.usb = _defbool(cfg, "usb", hvm.usb)
    l = cfg.get_long("usbversion")
    if l is not None:
        hvm.usbversion = wrap_int(l)
    rc, sl = _string_list(cfg, "usbdevice", True)
    if rc == 0:
        hvm.usbdevice_list = sl
    elif rc == "EINVAL":
        v = cfg.get_string("usbdevice")
        if v is None:
            raise out.fail("xl: Unable to parse usbdevice.", 3)
        hvm.usbdevice = v
    hvm.vkb_device = _defbool(cfg, "vkb_device", hvm.vkb_device)
    v = cfg.get_string("soundhw")
    if v is not None:
        hvm.soundhw = v
    hvm.xen_platform_pci = _defbool(cfg, "xen_platform_pci", hvm.xen_platform_pci)

    if hvm.vnc.listen and hvm.vnc.display and ":" in hvm.vnc.listen:
        raise out.fail("ERROR: Display specified both in vnclisten and vncdisplay!")

    buf = cfg.get_string("vendor_device")
    if buf is not None:
        v = M.VendorDevice.from_string(buf)
        if v is None:
            raise out.fail("xl: unknown vendor_device '%s'" % buf, 3)
        hvm.vendor_device = v


def apply_global_affinity_masks(d: M.DomainConfig, host: HostInfo, out: Output) -> None:
    """xl create's apply_global_affinity_masks with xl.conf's default masks
    (all CPUs): each hard affinity map is cut to the host-sized mask and an
    empty result is an error.  (Skipped by create -i.)"""
    b_info = d.b_info
    for i, m in enumerate(b_info.vcpu_hard_affinity):
        if m is None:
            # (real xl reads an uninitialised map here and crashes)
            raise out.fail("cpus: no affinity for vcpu %d: the cpus list item is not a string" % i)
        mask = M.Bitmap.cpus(host)
        mask.set_any()
        nbits = min(m.nbits, mask.nbits)
        res = M.Bitmap(nbits, [b for b in m.bits if b < nbits])
        if res.is_empty():
            raise out.fail("vcpu hard affinity map is empty")
        b_info.vcpu_hard_affinity[i] = res
