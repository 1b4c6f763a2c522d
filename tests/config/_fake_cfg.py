"""A private stand-in for pyxl.config.cfgfile's XluConfig, for unit tests only.

It builds an XluConfig-like object from already-parsed settings (or from a
*very* small subset of the config language: one `key = value` per line,
strings, NUMBERs and lists), and implements libxlu's getter semantics
(last assignment wins, strtol base 0 for numbers, the same warnings).
The real language layer lives in pyxl/config/cfgfile.py.
"""

from __future__ import annotations

import errno
import os
import re
import sys

from pyxl.config.cstr import strtol


class FakeList:
    def __init__(self, values):
        self.values = values

    @property
    def count(self):
        return len(self.values)

    def get_item(self, i):
        if 0 <= i < len(self.values) and isinstance(self.values[i], str):
            return self.values[i]
        return None

    def get_value(self, i):
        if 0 <= i < len(self.values):
            v = self.values[i]
            return FakeList(v) if isinstance(v, list) else v
        return None


class FakeConfig:
    def __init__(self, settings, source="test.cfg", warn=None, lines=None):
        self.settings = dict(settings)  # key -> str | list
        self.source = source
        self.lines = lines or {k: i + 1 for i, k in enumerate(self.settings)}
        self.warn = warn or (lambda s: print(s, file=sys.stderr))

    def _w(self, key, msg):
        self.warn("%s:%d: warning: %s" % (self.source, self.lines.get(key, 0), msg))

    def get_value(self, key):
        v = self.settings.get(key)
        return FakeList(v) if isinstance(v, list) else v

    def _atom(self, key, dont_warn):
        if key not in self.settings:
            return None
        v = self.settings[key]
        if isinstance(v, list):
            if not dont_warn:
                self._w(key, "parameter `%s' is a list but should be a single value" % key)
            return None
        return v

    def get_string(self, key, dont_warn=False):
        return self._atom(key, dont_warn)

    def get_long(self, key, dont_warn=False):
        return self.get_bounded_long(key, -(1 << 63), (1 << 63) - 1, dont_warn)

    def get_bounded_long(self, key, lo, hi, dont_warn=False):
        s = self._atom(key, dont_warn)
        if s is None:
            return None
        val, end, erange = strtol(s, 0)
        if erange:
            if not dont_warn:
                self._w(key, "parameter `%s' could not be parsed as a number: %s"
                        % (key, os.strerror(errno.ERANGE)))
            return None
        if end == 0 or end != len(s):
            if not dont_warn:
                self._w(key, "parameter `%s' is not a valid number" % key)
            return None
        if val < lo:
            if not dont_warn:
                self._w(key, "value `%d' is smaller than minimum bound '%d'" % (val, lo))
            return None
        if val > hi:
            if not dont_warn:
                self._w(key, "value `%d' is greater than maximum bound '%d'" % (val, hi))
            return None
        return val

    def get_defbool(self, key, dont_warn=False):
        v = self.get_long(key, dont_warn)
        return None if v is None else v != 0

    def get_list(self, key, dont_warn=False):
        if key not in self.settings:
            return None
        v = self.settings[key]
        if not isinstance(v, list):
            if not dont_warn:
                self._w(key, "parameter `%s' is a single value but should be a list" % key)
            return None
        return FakeList(v)

    def get_list_as_string_list(self, key, dont_warn=False):
        lst = self.get_list(key, dont_warn)
        if lst is None:
            return None
        out = []
        for i in range(lst.count):
            it = lst.get_item(i)
            if it is None:
                break
            out.append(it)
        return out


_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|([0-9][0-9a-fx]*)|(\[)|(\])|(,))')


def _parse_value(text, i):
    m = _TOKEN.match(text, i)
    if not m:
        raise ValueError("bad value at %r" % text[i:])
    if m.group(4):
        items = []
        i = m.end()
        while True:
            m2 = _TOKEN.match(text, i)
            if m2 and m2.group(5):
                return items, m2.end()
            v, i = _parse_value(text, i)
            items.append(v)
            m2 = _TOKEN.match(text, i)
            if m2 and m2.group(6):
                i = m2.end()
    s = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(3)
    if s is None:
        raise ValueError("bad value at %r" % text[i:])
    s = re.sub(r"\\(.)", lambda mm: {"n": "\n", "t": "\t"}.get(mm.group(1), mm.group(1)), s)
    return s, m.end()


def parse_simple(text: str, source: str = "test.cfg", warn=None) -> FakeConfig:
    """key = value, one per line (lists may span lines); # comments."""
    settings, lines = {}, {}
    joined = []
    depth = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if depth == 0 and not line.strip() or line.lstrip().startswith("#"):
            continue
        if depth == 0:
            joined.append([lineno, line])
        else:
            joined[-1][1] += " " + line
        depth += line.count("[") - line.count("]")
    for lineno, line in joined:
        key, _, rest = line.partition("=")
        key = key.strip()
        v, _ = _parse_value(rest, 0)
        settings.pop(key, None)
        settings[key] = v
        lines[key] = lineno
    return FakeConfig(settings, source, warn, lines)


class ConfigParseError(Exception):
    def __init__(self, lines):
        self.lines = lines
        super().__init__("\n".join(lines))


def parse(data: bytes, path: str, warn=None) -> FakeConfig:
    """cfgfile.parse() look-alike over parse_simple (tests only)."""
    try:
        return parse_simple(data.decode("utf-8", "surrogateescape"), path, warn)
    except ValueError as e:
        raise ConfigParseError(["%s: fake parser: %s" % (path, e)])
