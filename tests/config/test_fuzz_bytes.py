"""Arbitrary bytes never crash the parser: a config is either accepted or
rejected with xl-format lines (and a non-zero exit in the caller)."""

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgstrategies import JUNK
from pyxl.config.cfgfile import ConfigParseError, XluConfig, parse

LINE = re.compile(r"\At\.cfg:-?\d+: config parsing error near "
                  r"(`[^\n]*'|<newline>|`[^\n]*'<newline>|): .+\Z", re.S)
PYTHON = {"warning: Config file looks like it contains Python code.",
          "warning:  Arbitrary Python is no longer supported.",
          "warning:  See https://wiki.xen.org/wiki/PythonInXlConfig"}
ASSERT = re.compile(r"\Axl: libxlu_cfg\.c:\d+: xlu__cfgl_dequote: Assertion `.+' failed\.\Z")


def check(data: bytes) -> None:
    try:
        cfg = parse(data, "t.cfg", warn=lambda line: None)
    except ConfigParseError as e:
        assert e.lines, "a rejection always says why"
        for line in e.lines[:-1] if e.exit_code else e.lines:
            assert LINE.match(line) or line in PYTHON, line
        if e.exit_code is not None:
            assert e.exit_code == 134 and ASSERT.match(e.lines[-1])
        return
    assert isinstance(cfg, XluConfig)
    for key in cfg.keys():          # every getter copes with every value
        cfg.get_string(key), cfg.get_long(key), cfg.get_list(key)
        cfg.get_defbool(key), cfg.get_list_as_string_list(key)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes(data):
    check(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(JUNK + [b"x", b"=", b"1", b'"s"', b"\n", b"memory"]),
                max_size=60).map(b"".join))
def test_token_soup(data):
    check(data)


NASTY = {
    "empty": b"",
    "all-bytes": bytes(range(256)) * 4,
    "nul-only": b"\0" * 1000,
    "crlf-lines": b'x="a"\r\n' * 2000,
    "deep-open": b"x = " + b"[" * 100_000 + b"\n",
    "deep-open-close": b"x = " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "deep-then-error": b"x = " + b"[" * 9000 + b"(" + b"\n",
    "close-storm": b"]\n" * 50_000,
    "one-huge-string": b'x = "' + b"a" * 5_000_000 + b'"\n',
    "huge-list": b"x = [" + b'"a",' * 200_000 + b"]\n",
    "many-settings": b"".join(b"k%d = %d\n" % (i, i) for i in range(50_000)),
    "python-file": b"import os\nname = 'x'\nfor i in range(3):\n    print(i)\n",
    "escape-zoo": b'x = "\\x\\1\\12\\123\\q\\\\\\"\\a"\ny = \'\\\'\'\n',
    "overflowing-number": b"memory = 99999999999999999999999999999\n",
}


@pytest.mark.parametrize("name", sorted(NASTY))
def test_nasty_inputs(name):
    start = time.perf_counter()
    check(NASTY[name])
    assert time.perf_counter() - start < 10


def test_deep_nesting_is_xls_memory_exhausted():
    with pytest.raises(ConfigParseError) as e:
        parse(NASTY["deep-open"], "t.cfg")
    assert e.value.lines == ["t.cfg:1: config parsing error near `[': memory exhausted"]
