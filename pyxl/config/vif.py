"""vif= specifications: xl_parse.c parse_nic_config + libxlu_vif.c rate parsing.

xl ignores parse_nic_config's return value, so most mistakes only print a
message and the NIC is still created; only mtu/devid conversions and rate
errors are fatal (exit 1).  Items are split with strtok(",") and leading
blanks skipped; trailing blanks stay in the values.
"""

from __future__ import annotations

import re
from typing import Callable

from pyxl.config.cstr import ERANGE, ULONG_MAX, get_errno, strtoul, strtoul_erange, wrap_int
from pyxl.config.errors import ConfigError
from pyxl.config.model import NIC_COLO_FIELDS, DeviceNic, NicType

UINT32_MAX = (1 << 32) - 1
UINT64_MAX = (1 << 64) - 1

_STRING_KEYS = {"bridge": "bridge", "gatewaydev": "gatewaydev", "ip": "ip",
                "script": "script", "backend": "backend_domname", "vifname": "ifname",
                "model": "model", "forwarddev": "coloft_forwarddev"}
for _k in NIC_COLO_FIELDS:
    if _k != "coloft_forwarddev":
        _STRING_KEYS[_k] = _k

_RATE_RE = re.compile(r"[0-9]+[GMK]?[Bb]/s\Z")
_INTERVAL_RE = re.compile(r"[0-9]+[mu]?s?\Z")


def _rate_err(source: str, msg: str, rate: str) -> ConfigError:
    return ConfigError("%s: config parsing error in vif: %s in `%s'" % (source, msg, rate))


def parse_rate(rate: str, source: str) -> tuple[int, int]:
    """xlu_vif_parse_rate -> (bytes_per_interval, interval_usecs); raises
    ConfigError (exit 1) with xl's message."""
    at = rate.find("@")
    amount, interval = (rate, None) if at < 0 else (rate[:at], rate[at + 1:])
    if amount == "":
        raise _rate_err(source, "no rate specified", rate)
    if not _RATE_RE.match(amount):
        raise _rate_err(source, "invalid rate", amount)
    tmp, end, _ = strtoul_erange(amount, 0)
    # errno is not cleared first: an ERANGE left by any earlier conversion
    # (a getter's overflow, say) makes xl call a good rate an overflow
    if tmp == 0 or tmp > UINT32_MAX or get_errno() == ERANGE:
        raise _rate_err(source, "rate overflow", amount)
    unit = amount[end:]
    tmp *= {"G": 10**9, "M": 10**6, "K": 1000}.get(unit[:1], 1)
    if unit[:1] == "b" or unit[1:2] == "b":
        tmp //= 8
    bytes_per_sec = tmp
    usecs = 50000
    if interval is not None:
        if not _INTERVAL_RE.match(interval):
            raise _rate_err(source, "invalid replenishment interval", interval)
        t, end, _ = strtoul_erange(interval, 0)
        if t == 0 or t > UINT32_MAX or get_errno() == ERANGE:
            raise _rate_err(source, "replenishment interval overflow", interval)
        u = interval[end:end + 1]
        if u in ("s", ""):
            t *= 10**6
        elif u == "m":
            t *= 1000
        if t > UINT32_MAX:
            raise _rate_err(source, "replenishment interval overflow", interval)
        usecs = t
    if usecs and bytes_per_sec > UINT64_MAX // usecs:
        raise _rate_err(source, "rate overflow", rate)
    return bytes_per_sec * usecs // 1000000, usecs


def _parse_ulong(s: str) -> int:
    val, end = strtoul(s, 10)
    if end == 0 or val == ULONG_MAX:
        raise ConfigError('xl: failed to convert "%s" to number' % s)
    return val


def _parse_mac(buf: str, start: int) -> tuple[list[int], bool]:
    """The octet loop of parse_nic_config, reading the strtok'd buffer the way
    the C code does (it steps one byte past each octet, whatever it is).
    -> (list of octets set, ok)"""
    octets: list[int] = []
    p = start
    for _ in range(6):
        rest = buf[p:].split("\0", 1)[0] if p < len(buf) else ""
        val, end = strtoul(rest, 16)
        val &= 0xFFFFFFFF
        if end == 0 or val > 255:
            return octets, False
        octets.append(val)
        p = p + end + 1
    return octets, True


def parse_nic(nic: DeviceNic, spec: str, source: str, say: Callable[[str], None],
              whole: bool = False) -> None:
    """Apply one vif spec to `nic` (already holding its devid and defaults).
    Messages go to `say`; fatal errors raise ConfigError.  With `whole`, the
    spec is one parse_nic_config token, commas and all (as `xl
    network-attach` passes each of its arguments)."""
    # strtok(buf, ","): each token ends at the first ',' after it, which
    # becomes a NUL in the buffer; keep that buffer for the mac quirk.
    chars = list(spec)
    tokens = []
    i, n = 0, len(spec)
    if whole:
        tokens, i = [0], n
    while i < n:
        while i < n and spec[i] == ",":
            i += 1
        if i >= n:
            break
        j = i
        while j < n and spec[j] != ",":
            j += 1
        tokens.append(i)
        if j < n:
            chars[j] = "\0"
        i = j + 1
    buf = "".join(chars) + "\0" * 16
    for start in tokens:
        while buf[start] == " ":
            start += 1
        token = buf[start:].split("\0", 1)[0]
        key, eq, val = token.partition("=")
        if eq and key == "type":
            if val == "vif":
                nic.nictype = NicType.VIF
            elif val == "ioemu":
                nic.nictype = NicType.VIF_IOEMU
            else:
                say("Invalid parameter `type'.")
        elif eq and key == "mac":
            octets, ok = _parse_mac(buf, start + 4)
            mac = list(nic.mac or (0,) * 6)
            mac[:len(octets)] = octets
            nic.mac = tuple(mac)
            if not ok:
                say("Invalid parameter `mac'.")
        elif eq and key == "netdev":
            say("the netdev parameter is deprecated, please use gatewaydev instead")
            nic.gatewaydev = val
        elif eq and key == "rate":
            nic.rate_bytes_per_interval, nic.rate_interval_usecs = parse_rate(val, source)
        elif eq and key in _STRING_KEYS:
            setattr(nic, _STRING_KEYS[key], val)
        elif eq and key == "accel":
            say("the accel parameter for vifs is currently not supported")
        elif eq and key == "devid":
            nic.devid = wrap_int(_parse_ulong(val))
        elif eq and key == "mtu":
            nic.mtu = wrap_int(_parse_ulong(val))
        elif token == "trusted":
            nic.trusted = True
        elif token == "untrusted":
            nic.trusted = False
        else:
            say("unrecognized argument `%s'" % token)
