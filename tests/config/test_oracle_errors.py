"""Differential tests against the live xl 4.17 oracle: generated config
texts, accept/reject and the exact libxlu stderr lines; KEY=VALUE extras."""

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from cfgstrategies import configs
from cfgtools import parse_error_lines, rejected_by_libxlu, xl_stderr
from oracle.xl import run_xl_text
from pyxl.config.cfgfile import ConfigParseError, read_config

pytestmark = pytest.mark.peer("xl")

def pyxl_lines(data):
    rc, lines = xl_stderr(data, "t.cfg")
    return rc != 0, lines[1:]


def shell_rc(r):
    return 128 - r.rc if r.rc < 0 else r.rc


# 150 generated configs, one xl run each (~20 ms); no shrinking -- the
# failing text is in the message and each step would rerun xl.
@pytest.mark.slow
@settings(max_examples=150, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(configs())
def test_generated_configs_match_xl(data):
    r = run_xl_text(data)
    rejected, lines = pyxl_lines(data)
    assert rejected == rejected_by_libxlu(r), f"text {data!r}: xl said {r.stderr!r}"
    if rejected:
        assert lines == parse_error_lines(r), f"text {data!r}"
        assert xl_stderr(data)[0] == shell_rc(r), f"text {data!r}"


@pytest.mark.parametrize("extra", [
    ["memory=64", "x=", "y = ]"],
    ["x=]"],
    ["memory=64", "memory+=1"],
    ["a=(", "b=1"],
    ["x=["],
    ["x=1 y"],
])
def test_extras_are_appended_like_xl(tmp_path, extra):
    for body in (b'name="a"\nkernel="/k"', b'name="a"\nkernel="/k"\n'):
        r = run_xl_text(body, extra)
        cfgpath = tmp_path / "t.cfg"
        cfgpath.write_bytes(body)
        try:
            read_config(str(cfgpath), extra, warn=lambda l: None)
            mine = None
        except ConfigParseError as e:
            mine = [l.replace(str(cfgpath), "t.cfg") for l in e.lines]
            mine.append("Failed to parse config: Invalid argument")
        if rejected_by_libxlu(r):
            assert mine == parse_error_lines(r)
        else:
            assert mine is None


MEMORY_VALUES = [
    b'512', b'0777', b'0x10', b'"512"', b'" 12"', b'"\\t12"', b'"+12"', b'"-5"',
    b'"-0x10"', b'"00"', b'"0x"', b'"0x1g"', b'"08"', b'"abc"', b'""', b'"12 "',
    b'"9223372036854775807"', b'"9223372036854775808"', b'"-9223372036854775809"',
    b'12abc', b'1e5', b'[512]', b'[]', b'"1"\nmemory+="2"', b'"3"\nmemory+=4',
]


@pytest.mark.parametrize("value", MEMORY_VALUES)
def test_get_long_matches_xl_on_memory(value):
    """xl reads memory with xlu_cfg_get_long: same value (JSON target_memkb
    = memory * 1024, wrapped to 64 bits) or the same warning."""
    import re
    text = b'name="a"\nkernel="/k"\nmemory=' + value + b"\n"
    r = run_xl_text(text)
    warnings = []
    cfg = read_config_text(text, warnings.append)
    got = cfg.get_long("memory")
    xl_warnings = [l for l in r.stderr_lines if "warning" in l and "`memory'" in l]
    assert warnings == xl_warnings
    m = re.search(r'"target_memkb": (\d+)', r.stdout)
    if got is None:
        assert m is None
    else:
        assert int(m.group(1)) == (got * 1024) % 2**64


def read_config_text(text, warn):
    from pyxl.config.cfgfile import parse
    return parse(text, "t.cfg", warn=warn)


# -- against libxlu in-process (tests/oracle/libxlu.py): many inputs, fast --

SYMBOLS = [b"x", b"1", b'"s"', b"\n", b"#c\n", b"=", b"+=", b";", b"[", b"]",
           b",", b"(", b"@"]


def mine(data):
    from pyxl.config.cfgfile import ConfigParseError, parse
    try:
        parse(data, "t.cfg", warn=lambda line: None)
        return 0, []
    except ConfigParseError as e:
        return 22, e.lines          # libxlu returns EINVAL


def test_every_short_token_sequence_matches_libxlu():
    """All sequences of up to 3 tokens (blank-separated and glued), plus
    3000 random ones of 4..8 tokens: same verdict, same reported lines.
    (Offline, every sequence of up to 4 tokens -- 61,882 inputs -- agreed.)"""
    import itertools
    import random
    from oracle.libxlu import libxlu
    lib = libxlu()
    inputs = [sep.join(seq) for k in range(4)
              for seq in itertools.product(SYMBOLS, repeat=k) for sep in (b" ", b"")]
    rnd = random.Random(4_17)
    inputs += [b" ".join(rnd.choices(SYMBOLS, k=rnd.randint(4, 8))) for _ in range(3000)]
    bad = []
    for data in inputs:
        rc, lines = lib.parse(data)
        got_rc, got = mine(data)
        if (rc != 0) != (got_rc != 0) or (rc and lines != got):
            bad.append((data, lines, got))
    assert bad == []
