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


@pytest.mark.parametrize("extra", [
    ["memory=64", "x=", "y = ]"],
    ["x=]"],
    ["memory=64", "memory+=1"],
    ["a=(", "b=1"],
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
