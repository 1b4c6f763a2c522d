"""The device lists of parse_config_data: pci, dtdev, ioports/irqs/iomem,
disk, p9, vtpm, vdispl, pvcalls, vsnd, channel, vif, vfb, usbctrl, usbdev,
cpuid, vkb -- each with xl's own little item syntax and messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyxl.config import cpuid as _cpuid
from pyxl.config import model as M
from pyxl.config.cstr import atoi, strtok, strtoul
from pyxl.config.errors import ConfigError

if TYPE_CHECKING:
    from pyxl.config.cfgfile import Settings, XluList
    from pyxl.config.host import HostInfo
    from pyxl.config.parse import Output

_TRIM = " \t\n\v\f\r"


def _get_list(cfg: Settings, key: str) -> XluList | None:
    if cfg.get_value(key) is None:
        return None
    return cfg.get_list(key)


def _fail(out: Output, err: ConfigError) -> ConfigError:
    return out.fail(err.lines, err.exit_code)


def _split_pair(s: str, delim: str) -> tuple[str, str] | None:
    """split_string_into_pair: the first two strtok tokens, or None."""
    toks = strtok(s, delim)
    if len(toks) < 2:
        return None
    return toks[0], toks[1]


def _strtoul0(s: str) -> int:
    return strtoul(s, 0)[0]


# ---------------------------------------------------------------- pci, io

def parse_pci_list(cfg: Settings, d: M.DomainConfig, opts: dict[str, int], rdm_policy: int,
                   out: Output) -> None:
    from pyxl.config.pci import parse_pci

    lst = _get_list(cfg, "pci")
    if lst is None:
        return
    for buf in lst.leading_strings():
        pci = M.DevicePci(msitranslate=opts["pci_msitranslate"] != 0,
                          power_mgmt=opts["pci_power_mgmt"] != 0,
                          permissive=opts["pci_permissive"] != 0,
                          seize=opts["pci_seize"] != 0,
                          rdm_policy=rdm_policy)
        d.pcidevs.append(pci)
        e = parse_pci(pci, buf, out.partial)
        if e:
            raise out.fail("unable to parse PCI_SPEC_STRING `%s' for passthrough" % buf, -e)
    pv = d.b_info.pv
    if d.pcidevs and pv is not None:
        pv.e820_host = True


def parse_io_lists(cfg: Settings, b_info: M.DomainBuildInfo, out: Output) -> None:
    from pyxl.config.ioranges import parse_iomem, parse_ioport, parse_irq

    try:
        for key, fn, attr, what in (("ioports", lambda b: parse_ioport(b, out.say), "ioports",
                                     "xl: Unable to get element #%d in ioport list"),
                                    ("irqs", parse_irq, "irqs",
                                     "xl: Unable to get element %d in irq list"),
                                    ("iomem", parse_iomem, "iomem",
                                     "xl: Unable to get element %d in iomem list")):
            lst = _get_list(cfg, key)
            if lst is None:
                continue
            vals = []
            for i in range(lst.count):
                buf = lst.get_item(i)
                if buf is None:
                    raise ConfigError(what % i)
                vals.append(fn(buf))
            setattr(b_info, attr, vals)
    except ConfigError as e:
        raise _fail(out, e)


# ---------------------------------------------------------------- devices

def parse_devices(cfg: Settings, d: M.DomainConfig, source: str, host: HostInfo, out: Output,
                  xl_defaults: dict[str, str] | None = None) -> None:
    from pyxl.config.disk import parse_disk
    from pyxl.config.vif import parse_nic
    from pyxl.config.vtpm import parse_vtpm

    lst = _get_list(cfg, "disk")
    if lst is not None:
        for buf in lst.leading_strings():
            errs: list = []
            disk = parse_disk(buf, source, errs)
            if disk is None:
                raise out.fail(errs)
            d.disks.append(disk)

    _parse_p9(cfg, d, out)

    lst = _get_list(cfg, "vtpm")
    if lst is not None:
        for i, buf in enumerate(lst.leading_strings()):
            try:
                d.vtpms.append(parse_vtpm(buf, i))
            except ConfigError as e:
                raise _fail(out, e)

    _parse_vdispl(cfg, d, out)
    _parse_pvcalls(cfg, d, out)
    _parse_vsnd(cfg, d, out)
    _parse_channels(cfg, d, out)

    lst = _get_list(cfg, "vif")
    if lst is not None:
        for i, buf in enumerate(lst.leading_strings()):
            nic = M.DeviceNic(devid=i)
            _nic_defaults(nic, xl_defaults)
            d.nics.append(nic)
            try:
                parse_nic(nic, buf, source, out.say)
            except ConfigError as e:
                raise _fail(out, e)

    if _get_list(cfg, "vif2") is not None:
        out.say("WARNING: vif2: netchannel2 is deprecated and not supported by xl")

    lst = _get_list(cfg, "vfb")
    if lst is not None:
        for buf in lst.leading_strings():
            vfb = M.DeviceVfb(devid=len(d.vfbs))
            d.vfbs.append(vfb)
            d.vkbs.append(M.DeviceVkb(devid=len(d.vkbs)))
            for tok in strtok(buf, ","):
                tok = tok.lstrip(" ")
                key, eq, val = tok.partition("=")
                if not eq:
                    break
                if key == "vnc":
                    vfb.vnc.enable = atoi(val) != 0
                elif key == "vnclisten":
                    vfb.vnc.listen = val
                elif key == "vncpasswd":
                    vfb.vnc.passwd = val
                elif key == "vncdisplay":
                    vfb.vnc.display = atoi(val)
                elif key == "vncunused":
                    vfb.vnc.findunused = atoi(val) != 0
                elif key == "keymap":
                    vfb.keymap = val
                elif key == "sdl":
                    vfb.sdl.enable = atoi(val) != 0
                elif key == "opengl":
                    vfb.sdl.opengl = atoi(val) != 0
                elif key == "display":
                    vfb.sdl.display = val
                elif key == "xauthority":
                    vfb.sdl.xauthority = val

    lst = _get_list(cfg, "usbctrl")
    if lst is not None:
        for buf in lst.leading_strings():
            ctrl = M.DeviceUsbctrl(devid=len(d.usbctrls))
            d.usbctrls.append(ctrl)
            for tok in strtok(buf, ","):
                tok = tok.lstrip(" ")
                key, eq, val = tok.partition("=")
                if eq and key == "type":
                    t = M.UsbctrlType.from_string(val)
                    if t is None:
                        raise out.fail("Invalid usb controller type '%s'" % val)
                    ctrl.type = t
                elif eq and key == "version":
                    ctrl.version = atoi(val)
                elif eq and key == "ports":
                    ctrl.ports = atoi(val)
                else:
                    raise out.fail("Unknown string `%s' in usbctrl spec" % tok)

    lst = _get_list(cfg, "usbdev")
    if lst is not None:
        for buf in lst.leading_strings():
            dev = M.DeviceUsbdev()
            d.usbdevs.append(dev)
            for tok in strtok(buf, ","):
                tok = tok.lstrip(" ")
                key, eq, val = tok.partition("=")
                if eq and key == "type":
                    t = M.UsbdevType.from_string(val)
                    if t is None:
                        # xl prints getopt's optarg here, not the value, and
                        # getopt has reset it to NULL by the time configs parse
                        raise out.fail("Invalid usb device type: (null)")
                    dev.type = t
                elif eq and key == "hostbus":
                    dev.u.hostbus = _strtoul0(val) & 0xFF
                elif eq and key == "hostaddr":
                    dev.u.hostaddr = _strtoul0(val) & 0xFF
                elif eq and key == "controller":
                    dev.ctrl = atoi(val)
                elif eq and key == "port":
                    dev.port = atoi(val)
                else:
                    raise out.fail("Unknown string `%s' in usbdev spec" % tok)

    _parse_cpuid(cfg, d.b_info, out)


def _nic_defaults(nic: M.DeviceNic, xl_defaults: dict[str, str] | None) -> None:
    """set_default_nic_values: xl.conf's vif.default.* (none by default)."""
    if not xl_defaults:
        return
    for key, attr in (("vif.default.script", "script"), ("vif.default.bridge", "bridge"),
                      ("vif.default.gatewaydev", "gatewaydev"),
                      ("vif.default.backend", "backend_domname")):
        if xl_defaults.get(key):
            setattr(nic, attr, xl_defaults[key])


def _parse_p9(cfg: Settings, d: M.DomainConfig, out: Output) -> None:
    lst = _get_list(cfg, "p9")
    if lst is None:
        return
    # xl keeps these across items: a later spec inherits what it omits
    security_model = path = tag = backend = None
    for i, buf in enumerate(lst.leading_strings()):
        p9 = M.DeviceP9()  # xl re-inits it after setting devid: -1
        d.p9s.append(p9)
        for tok in strtok(buf, ","):
            tok = tok.lstrip(" ")
            key, eq, val = tok.partition("=")
            if not eq:
                break
            if key == "security_model":
                security_model = val
            elif key == "path":
                path = val
            elif key == "tag":
                tag = val
            elif key == "backend":
                backend = val
            else:
                raise out.fail("Unknown string `%s' in 9pfs spec" % key)
        if path is None or security_model is None or tag is None:
            raise out.fail("9pfs spec missing required field!")
        p9.tag, p9.security_model, p9.path = tag, security_model, path
        if backend is not None:
            p9.backend_domname = backend


def _scan_u(s: str, i: int) -> tuple[int, int] | None:
    """sscanf %u at s[i:] -> (value, end) or None."""
    from pyxl.config.cstr import _parse
    val, neg, end, ok = _parse(s[i:], 10)
    if not ok:
        return None
    if neg:
        val = -val
    return val & 0xFFFFFFFF, i + end


def vdispl_connectors(val: str, out: Output) -> tuple[list, int]:
    """parse_vdispl_config's connectors=ID:WxH;... (xl_parse.c): the
    connectors and parse_vdispl_config's return code.  A resolution sscanf
    cannot read says so; sscanf's 1 or EOF is returned as the failure, its 0
    as success, the connectors it never reached left as xcalloc made them."""
    conns = strtok(val, ";")
    if not conns:  # (real xl crashes on strdup(NULL) here)
        raise out.fail("vdispl: empty connectors=")
    connectors: list = []
    for c in conns:
        pair = _split_pair(c, ":")
        if pair is None:  # (real xl reads an unset pointer here)
            raise out.fail("vdispl: connector `%s' has no resolution" % c)
        cp = M.ConnectorParam(unique_id=pair[0])
        connectors.append(cp)
        res = pair[1]
        rc = 0
        r = _scan_u(res, 0)
        if r is not None:
            cp.width, i = r
            rc = 1
            if res[i:i + 1] == "x":
                r = _scan_u(res, i + 1)
                if r is not None:
                    cp.height = r[0]
                    rc = 2
        elif not res.strip(_TRIM):
            rc = -1
        if rc != 2:
            out.say("Can't parse connector resolution")
            if rc:
                return connectors, rc
            connectors.extend(M.ConnectorParam() for _ in range(len(conns) - len(connectors)))
            break
    return connectors, 0


def _parse_vdispl(cfg: Settings, d: M.DomainConfig, out: Output) -> None:
    lst = _get_list(cfg, "vdispl")
    if lst is None:
        return
    for buf in lst.leading_strings():
        v = M.DeviceVdispl(devid=len(d.vdispls))
        d.vdispls.append(v)
        for tok in strtok(buf, ","):
            tok = tok.lstrip(" ")
            key, eq, val = tok.partition("=")
            if eq and key == "backend":
                v.backend_domname = val
            elif eq and key == "be-alloc":
                v.be_alloc = _strtoul0(val) != 0
            elif eq and key == "connectors":
                v.connectors, rc = vdispl_connectors(val, out)
                if rc:
                    raise out.fail([])
            else:
                raise out.fail('Unknown string "%s" in vdispl spec' % tok)
        if not v.connectors:
            raise out.fail("At least one connector should be specified.")


def _parse_pvcalls(cfg: Settings, d: M.DomainConfig, out: Output) -> None:
    lst = _get_list(cfg, "pvcalls")
    if lst is None:
        return
    for buf in lst.leading_strings():
        p = M.DevicePvcallsif(devid=len(d.pvcallsifs))
        d.pvcallsifs.append(p)
        for tok in strtok(buf, ","):
            tok = tok.lstrip(" ")
            key, eq, val = tok.partition("=")
            if not eq:
                break
            if key == "backend":
                p.backend_domname = val
            else:
                raise out.fail("Unknown string `%s' in pvcalls spec" % key)


_SND_PARAMS = ("sample-rates", "sample-formats", "channels-min", "channels-max", "buffer-size")


def _vsnd_params(params: M.VsndParams, tok: str) -> bool | None:
    """parse_vsnd_params: True when handled, False when not a params key,
    raises on a bad format."""
    key, eq, val = tok.partition("=")
    if not eq or key not in _SND_PARAMS:
        return False
    if key == "sample-rates":
        params.sample_rates = [_strtoul0(r) & 0xFFFFFFFF for r in strtok(val, ";")]
    elif key == "sample-formats":
        fmts = []
        for f in strtok(val, ";"):
            v = M.VsndPcmFormat.from_string(f)
            if v is None:
                raise ConfigError("Invalid pcm format: %s" % f)
            fmts.append(v)
        params.sample_formats = fmts
    elif key == "channels-min":
        params.channels_min = _strtoul0(val) & 0xFFFFFFFF
    elif key == "channels-max":
        params.channels_max = _strtoul0(val) & 0xFFFFFFFF
    else:
        params.buffer_size = _strtoul0(val) & 0xFFFFFFFF
    return True


def _parse_vsnd(cfg: Settings, d: M.DomainConfig, out: Output) -> None:
    lst = _get_list(cfg, "vsnd")
    if lst is None:
        return
    try:
        i = 0
        while i < lst.count:
            card_value = lst.get_value(i)
            if card_value is None or isinstance(card_value, str):   # (i < count: never None)
                from pyxl.config.parse import _line_of
                out.say("%s:%d:0: warning: value is not a list" % (out.source, _line_of(cfg, "vsnd")))
                raise ConfigError("Failed to get vsnd card list: Invalid argument")
            vsnd = M.DeviceVsnd(devid=len(d.vsnds))
            d.vsnds.append(vsnd)
            i += 1
            for item in card_value.leading_strings():
                _vsnd_item(vsnd, item)
    except ConfigError as e:
        raise _fail(out, e)


def _vsnd_item(vsnd: M.DeviceVsnd, spec: str) -> None:
    key = None
    for tok in strtok(spec, ","):
        tok = tok.lstrip(" ")
        if key is None:
            key = tok.lower()
            if key == "card":
                pass
            elif key == "pcm":
                vsnd.pcms.append(M.VsndPcm())
            elif key == "stream":
                if not vsnd.pcms:
                    vsnd.pcms.append(M.VsndPcm())
                vsnd.pcms[-1].streams.append(M.VsndStream())
            else:
                raise ConfigError("Invalid key: %s" % tok)
            continue
        k, eq, val = tok.partition("=")
        if key == "card":
            if not _vsnd_params(vsnd.params, tok):
                if eq and k == "backend":
                    vsnd.backend_domname = val
                elif eq and k == "short-name":
                    vsnd.short_name = val
                elif eq and k == "long-name":
                    vsnd.long_name = val
                else:
                    raise ConfigError("Invalid parameter: %s" % tok)
        elif key == "pcm":
            pcm = vsnd.pcms[-1]
            if not _vsnd_params(pcm.params, tok):
                if eq and k == "name":
                    pcm.name = val
                else:
                    raise ConfigError("Invalid parameter: %s" % tok)
        else:
            stream = vsnd.pcms[-1].streams[-1]
            if not _vsnd_params(stream.params, tok):
                if eq and k == "unique-id":
                    stream.unique_id = val
                elif eq and k == "type":
                    t = M.VsndStreamType.from_string(val)
                    if t is None:
                        raise ConfigError("Invalid stream type: %s" % val)
                    stream.type = t
                else:
                    raise ConfigError("Invalid parameter: %s" % tok)


def _parse_channels(cfg: Settings, d: M.DomainConfig, out: Output) -> None:
    lst = _get_list(cfg, "channel")
    if lst is None:
        return
    for buf in lst.leading_strings():
        chn = M.DeviceChannel(devid=len(d.channels))
        d.channels.append(chn)
        path = None
        pairs = strtok(buf, ",")
        if not pairs:  # (real xl crashes on strdup(NULL) here)
            raise out.fail("channel: empty channel specification")
        for pair in pairs:
            kv = _split_pair(pair, "=")
            if kv is None:
                out.partial("failed to parse channel configuration: %s" % pair)
                raise out.fail([])
            key, value = kv[0].strip(_TRIM), kv[1].strip(_TRIM)
            if key == "backend":
                chn.backend_domname = value
            elif key == "name":
                chn.name = value
            elif key == "path":
                path = value
            elif key == "connection":
                if value == "pty":
                    chn.connection = M.ChannelConnection.PTY
                elif value == "socket":
                    chn.connection = M.ChannelConnection.SOCKET
                else:
                    raise out.fail("unknown channel connection '%s'" % value)
            else:
                out.say("unknown channel parameter '%s', ignoring" % key)
        if chn.connection == M.ChannelConnection.UNKNOWN:
            raise out.fail("channel has unknown 'connection'")
        if chn.connection == M.ChannelConnection.SOCKET:
            if path is None:
                raise out.fail("channel connection 'socket' requires path=..")
            chn.u = M.ChannelSocket(path=path)


_CPUID_XEND_ERRORS = {1: "illegal leaf number", 2: "illegal subleaf number", 3: "missing colon",
                      4: "invalid register name (must be e[abcd]x)",
                      5: "policy string must be exactly 32 characters long"}
_UNUSED = 0xFFFFFFFF


def _cpuid_xend(policy: M.CpuidPolicy, s: str) -> int:
    """libxl_cpuid_parse_config_xend: "leaf[,subleaf]:eXx=<32 chars>,..." """
    v, end = strtoul(s, 0)
    if end == 0:
        return 1
    leaf, subleaf = v & 0xFFFFFFFF, _UNUSED
    if s[end:end + 1] == ",":
        rest = s[end + 1:]
        v, e2 = strtoul(rest, 0)
        if e2 == 0:
            return 2
        subleaf = v & 0xFFFFFFFF
        end = end + 1 + e2
    if s[end:end + 1] != ":":
        return 3
    entry: dict[str, int | str | None] | None = None
    for e in policy.cpuid:
        if e["leaf"] == leaf and (e.get("subleaf") if e.get("subleaf") is not None else _UNUSED) == subleaf:
            entry = e
            break
    if entry is None:
        entry = {"leaf": leaf, "subleaf": None if subleaf == _UNUSED else subleaf}
        policy.cpuid.append(entry)
    i = end + 1
    while i < len(s):
        if s[i:i + 1] != "e" or s[i + 2:i + 3] != "x":
            return 4
        reg = ord(s[i + 1]) - ord("a") if i + 1 < len(s) else -1
        eq = s.find("=", i)
        if not 0 <= reg <= 3 or eq < 0:
            return 4
        i = eq + 1
        comma = s.find(",", i)
        stop = comma if comma >= 0 else len(s)
        if stop - i != 32:
            return 5
        entry["eax ebx ecx edx".split()[reg]] = s[i:stop]
        if comma < 0:
            break
        i = comma + 1
        while i < len(s) and s[i] in " \n":
            i += 1
    return 0


def _parse_cpuid(cfg: Settings, b_info: M.DomainBuildInfo, out: Output) -> None:
    v = cfg.get_value("cpuid")
    if v is None:
        return
    if not isinstance(v, str):                 # a list: get_list would return it
        for buf in v.leading_strings():
            e = _cpuid_xend(b_info.cpuid, buf)
            if e:
                out.say('while parsing CPUID line: "%s":' % buf)
                out.say("  error #%i: %s" % (e, _CPUID_XEND_ERRORS.get(e, "unknown error")))
        return
    buf = cfg.get_string("cpuid")
    if buf is None:
        return
    toks = strtok(buf, ",")
    if not toks:
        return
    if toks[0] != "host":
        out.say('while parsing CPUID string: "%s":' % buf)
        out.say('  error: first word must be "host"')
        return
    for p in toks[1:]:
        e = _cpuid.parse_config(b_info.cpuid, p)
        if e:
            out.say('while parsing CPUID flag: "%s":' % p)
            out.say("  error #%i: %s" % (e, _cpuid.ERRORS.get(e, "unknown error")))


# ---------------------------------------------------------------- vkb

_VKB_UINTS = {"multi-touch-width": "multi_touch_width",
              "multi-touch-height": "multi_touch_height",
              "multi-touch-num-contacts": "multi_touch_num_contacts",
              "width": "width", "height": "height"}
_VKB_BOOLS = {"feature-disable-keyboard": "feature_disable_keyboard",
              "feature-disable-pointer": "feature_disable_pointer",
              "feature-abs-pointer": "feature_abs_pointer",
              "feature-raw-pointer": "feature_raw_pointer",
              "feature-multi-touch": "feature_multi_touch"}


def parse_vkb_list(cfg: Settings, d: M.DomainConfig, out: Output) -> None:
    lst = _get_list(cfg, "vkb")
    if lst is None:
        return
    for buf in lst.leading_strings():
        vkb = M.DeviceVkb(devid=len(d.vkbs))
        d.vkbs.append(vkb)
        for tok in strtok(buf, ","):
            tok = tok.lstrip(" ")
            key, eq, val = tok.partition("=")
            if eq and key == "backend":
                vkb.backend_domname = val
            elif eq and key == "backend-type":
                t = M.VkbBackend.from_string(val)
                if t is None:
                    raise out.fail('Unknown backend_type "%s" in vkb spec' % val)
                vkb.backend_type = t
            elif eq and key == "unique-id":
                vkb.unique_id = val
            elif eq and key in _VKB_BOOLS:
                setattr(vkb, _VKB_BOOLS[key], _strtoul0(val) != 0)
            elif eq and key in _VKB_UINTS:
                setattr(vkb, _VKB_UINTS[key], _strtoul0(val) & 0xFFFFFFFF)
            else:
                raise out.fail('Unknown string "%s" in vkb spec' % tok)
        if vkb.backend_type == M.VkbBackend.UNKNOWN:
            raise out.fail("backend-type should be set in vkb spec")
        if vkb.multi_touch_height or vkb.multi_touch_width or vkb.multi_touch_num_contacts:
            vkb.feature_multi_touch = True
        if vkb.feature_multi_touch and not (vkb.multi_touch_height or vkb.multi_touch_width
                                            or vkb.multi_touch_num_contacts):
            raise out.fail("multi-touch-width, multi-touch-height, multi-touch-num-contacts "
                           "should be set for multi touch in vkb spec")
