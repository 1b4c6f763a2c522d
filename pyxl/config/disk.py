"""disk= specifications (xl-disk-configuration(5)), as Xen 4.17's xl parses them.

A port of libxlu_disk_l.l + libxlu_disk.c.  The spec is scanned the way the
flex scanner does: at each position every rule is tried, the longest match
wins (trailing context `/...` counts towards the length but is not consumed),
ties go to the earlier rule.  The rule table below is the one compiled into
the 4.17 *binary*: its generated scanner predates the `trusted`/`untrusted`
rules of the 4.17 source, so those words are positional parameters there.

Errors are collected as xl's messages; several can be printed for one spec
(the scanner keeps going after most errors).  Any error fails the config
with exit status 1.
"""

from __future__ import annotations

import re

from pyxl.config.model import DeviceDisk, DiskBackend, DiskFormat, DiskSpecification

# (name, head regex, trailing-context regex or None)
_RULES = [
    ("ws", r"[ \t\n]+", r"(?:[^ \t\n].*)?"),
    ("format", r"format=[^,]*,?", None),
    ("cdrom", r"cdrom,?", None),
    ("devtype_cdrom", r"devtype=cdrom,?", None),
    ("devtype_disk", r"devtype=disk,?", None),
    ("devtype_bad", r"devtype=[^,]*,?", None),
    ("access", r"access=[^,]*,?", None),
    ("backend", r"backend=[^,]*,?", None),
    ("backendtype", r"backendtype=[^,]*,?", None),
    ("specification", r"specification=[^,]*,?", None),
    ("vdev", r"vdev=[^,]*,?", None),
    ("script", r"script=[^,]*,?", None),
    ("direct_io_safe", r"direct-io-safe,?", None),
    ("discard", r"discard,?", None),
    ("no_discard", r"no-discard,?", None),
    ("colo", r"colo,?", None),
    ("no_colo", r"no-colo,?", None),
    ("colo_host", r"colo-host=[^,]*,?", None),
    ("colo_port", r"colo-port=[^,]*,?", None),
    ("colo_export", r"colo-export=[^,]*,?", None),
    ("active_disk", r"active-disk=[^,]*,?", None),
    ("hidden_disk", r"hidden-disk=[^,]*,?", None),
    ("target", r"target=.*", None),
    ("unknown_param", r"[a-z][-a-z0-9]*=[^,],?", None),
    ("depr_format", r"(?:raw|qcow2?|vhd):", r".*"),
    ("depr_script", r"(?:iscsi|e?nbd|drbd):", r".*"),
    ("depr", r"tapdisk:", r".*"),
    ("depr", r"tap2?:", r".*"),
    ("depr", r"aio:", r".*"),
    ("depr", r"ioemu:", r".*"),
    ("depr", r"file:", r".*"),
    ("depr", r"phy:", r".*"),
    ("depr_unknown", r"[a-z][a-z0-9]*:", r"(?:[^a-z0-9].*)?"),
    ("positional", r"[^=,]*,|[^=,]+,?", None),
    ("bad", r".", None),
]
_COMPILED = [(n, re.compile(h), re.compile(t) if t is not None else None) for n, h, t in _RULES]

_FORMATS = {"": DiskFormat.RAW, "raw": DiskFormat.RAW, "qcow": DiskFormat.QCOW,
            "qcow2": DiskFormat.QCOW2, "vhd": DiskFormat.VHD, "empty": DiskFormat.EMPTY,
            "qed": DiskFormat.QED}
_BACKENDS = {"phy": DiskBackend.PHY, "tap": DiskBackend.TAP, "qdisk": DiskBackend.QDISK,
             "standalone": DiskBackend.STANDALONE}
_SPECS = {"xen": DiskSpecification.XEN, "virtio": DiskSpecification.VIRTIO}
_SAVED = {"backend": "backend_domname", "vdev": "vdev", "script": "script",
          "colo_host": "colo_host", "colo_export": "colo_export",
          "active_disk": "active_disk", "hidden_disk": "hidden_disk", "target": "pdev_path"}
_WHAT = {"colo_host": "colo-host", "colo_export": "colo-export", "active_disk": "active-disk",
         "hidden_disk": "hidden-disk", "backend": "backend"}


def _next_token(spec: str, pos: int) -> tuple[str, str]:
    """-> (rule name, yytext) of flex's choice at `pos` (< len(spec))."""
    best: tuple[int, str, str] | None = None
    for name, head, trail in _COMPILED:
        m = head.match(spec, pos)
        if not m:
            continue
        hl = m.end() - pos
        total = hl
        if trail is not None:
            tm = trail.match(spec, m.end())
            if tm is None:      # flex: no trailing context, no match
                continue
            total += tm.end() - m.end()
        if best is None or total > best[0]:
            best = (total, name, spec[pos:pos + hl])
    # "positional" and "bad" between them match any character, as flex's
    # catch-all rules do, so some rule always matches before the end.
    assert best is not None
    return best[1], best[2]


def _strip(text: str, ch: str) -> str:
    return text[:-1] if text.endswith(ch) else text


class _Ctx:
    def __init__(self, source: str, spec: str, disk: DeviceDisk, out: list):
        self.source, self.spec, self.disk, self.out = source, spec, disk, out
        self.err = False
        self.had_depr_prefix = False
        self.access_set = False

    def error(self, near: str | None, message: str) -> None:
        near_txt = ": near `%s'" % near if near is not None else ""
        self.out.append("%s: config parsing error in disk specification: %s%s in `%s'"
                        % (self.source, message, near_txt, self.spec))
        self.err = True

    def savestring(self, what: str, attr: str, value: str) -> None:
        cur = getattr(self.disk, attr)
        if cur:  # non-empty: respecifying is an error (an empty one is overwritten)
            self.error(value, what + " respecified")
            return
        setattr(self.disk, attr, value)

    def dset(self, attr: str, value: int, text: str) -> None:
        cur = getattr(self.disk, attr)
        if cur != 0 and cur != value:
            self.error(text, attr + " respecified")
        else:
            setattr(self.disk, attr, value)

    def setformat(self, s: str) -> None:
        if s in _FORMATS:
            self.dset("format", _FORMATS[s], s)
        else:
            self.error(s, "unknown value for format")

    def setaccess(self, s: str) -> None:
        if s in ("r", "ro"):
            self.disk.readwrite = 0
        elif s in ("rw", "w", ""):
            self.disk.readwrite = 1
        else:
            self.error(s, "unknown value for access")

    def vdev_and_devtype(self, s: str) -> bool:
        colon = s.rfind(":")
        if colon < 0:
            return False
        self.savestring("vdev", "vdev", s[:colon])
        devtype = s[colon + 1:]
        if devtype == "cdrom":
            self.disk.is_cdrom = 1
        elif devtype == "disk":
            self.disk.is_cdrom = 0
        else:
            self.error(devtype, "unknown deprecated type")
        return True


def _scan(c: _Ctx, spec: str) -> None:
    pos = 0
    d = c.disk
    while pos < len(spec):
        name, text = _next_token(spec, pos)
        pos += len(text)
        if name == "ws":
            continue
        eq = text.find("=")
        if name in ("format", "access", "backendtype", "specification", "colo_port",
                    "vdev", "script", "backend", "colo_host", "colo_export",
                    "active_disk", "hidden_disk", "target"):
            value = _strip(text, ",")[eq + 1:]
            if name == "format":
                c.setformat(value)
            elif name == "access":
                c.setaccess(value)
            elif name == "backendtype":
                if value in _BACKENDS:
                    c.dset("backend", _BACKENDS[value], value)
                else:
                    c.error(value, "unknown value for backendtype")
            elif name == "specification":
                if value in _SPECS:
                    c.dset("specification", _SPECS[value], value)
                else:
                    c.error(value, "unknown value for specification")
            elif name == "colo_port":
                from pyxl.config.cstr import atoi
                port = atoi(value)
                if port:
                    d.colo_port = port
                else:
                    c.error(value, "unknown value for colo_port")
            else:
                c.savestring(_WHAT.get(name, name), _SAVED[name], value)
        elif name in ("cdrom", "devtype_cdrom"):
            d.is_cdrom = 1
        elif name == "devtype_disk":
            d.is_cdrom = 0
        elif name == "devtype_bad":
            c.error(text, "unknown value for type")
        elif name == "direct_io_safe":
            d.direct_io_safe = True
        elif name == "discard":
            d.discard_enable = True
        elif name == "no_discard":
            d.discard_enable = False
        elif name == "colo":
            d.colo_enable = True
        elif name == "no_colo":
            d.colo_enable = False
        elif name == "unknown_param":
            c.error(text, "unknown parameter")
        elif name == "depr_format":
            c.had_depr_prefix = True
            c.setformat(_strip(text, ":"))
        elif name == "depr_script":
            c.had_depr_prefix = True
            c.savestring("script", "script", "block-" + _strip(text, ":"))
        elif name == "depr":
            c.had_depr_prefix = True
        elif name == "depr_unknown":
            c.error(text, "unknown deprecated disk prefix")
            return
        elif name == "positional":
            text = _strip(text, ",")
            if c.err:
                pass  # previous errors may just lead to subsequent ones
            elif d.pdev_path is None:
                c.savestring("target", "pdev_path", text)
            elif not c.had_depr_prefix and d.format == DiskFormat.UNKNOWN:
                if not d.pdev_path and c.vdev_and_devtype(text):
                    d.format = DiskFormat.EMPTY
                else:
                    c.setformat(text)
            elif d.vdev is None:
                if not c.vdev_and_devtype(text):
                    c.savestring("vdev", "vdev", text)
            elif not c.access_set:
                c.access_set = True
                c.setaccess(text)
            else:
                c.error(text, "too many positional parameters")
                return
        else:  # "bad": LEXERR swallows the rest of the line
            rest = spec[pos:]
            nl = rest.find("\n")
            rest = rest if nl < 0 else rest[:nl]
            if not rest and (nl < 0):
                return  # flex reaches end of buffer first: no message
            c.error(text + rest, "bad disk syntax")
            return


def parse_disk(spec: str | list[str], source: str, out: list) -> DeviceDisk | None:
    """xlu_disk_parse for one spec, or for several making up one disk (as
    `xl block-attach` passes its arguments): the scanner's state carries
    over from one to the next, and the first erroneous one stops it.
    Error lines are appended to `out`; returns None on error."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    disk = DeviceDisk()
    disk.readwrite = 1
    c = _Ctx(source, specs[0] if specs else "", disk, out)
    for one in specs:
        c.spec = one
        _scan(c, one)
        if c.err:
            return None
    if disk.format == DiskFormat.UNKNOWN:
        disk.format = DiskFormat.RAW
    if disk.is_cdrom:
        disk.removable = 1
        disk.readwrite = 0
        if not disk.pdev_path:
            disk.format = DiskFormat.EMPTY
    if disk.vdev is None:
        c.error(None, "no vdev specified")
        return None
    if disk.pdev_path is None and not disk.removable:
        c.error(None, "no target specified (and device not removable)")
        return None
    return disk
