"""xl's parse-error output, byte for byte, from goldens recorded with the
real xl 4.17 (tests/config/golden/make_error_goldens.py).  The first test
needs no xl; the peer test re-records each case live and compares."""

import subprocess
from pathlib import Path

import pytest

from cfgtools import xl_stderr

GOLDEN = Path(__file__).parent / "golden" / "errors"
CASES = sorted(p.stem for p in GOLDEN.glob("*.cfg"))


def golden(name):
    return (int((GOLDEN / f"{name}.rc").read_text()),
            (GOLDEN / f"{name}.stderr").read_bytes())


def pyxl(name):
    rc, lines = xl_stderr((GOLDEN / f"{name}.cfg").read_bytes(), f"{name}.cfg")
    return rc, "".join(l + "\n" for l in lines).encode("utf-8", "surrogateescape")


def test_there_are_goldens():
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", CASES)
def test_matches_golden(name):
    assert pyxl(name) == golden(name)


@pytest.mark.peer("xl")
def test_goldens_still_match_live_xl():
    from oracle.xl import XL, xl_env
    stale = []
    for name in CASES:
        p = subprocess.run([XL, "-N", "create", "-f", f"{name}.cfg"], cwd=GOLDEN,
                           env=xl_env(), capture_output=True, stdin=subprocess.DEVNULL)
        rc = p.returncode if p.returncode >= 0 else 128 - p.returncode
        if (rc, p.stderr) != golden(name):
            stale.append(name)
    assert stale == []


@pytest.mark.parametrize("name", [n for n in CASES if golden(n)[0] != 0])
def test_load_reports_golden_errors(name, monkeypatch):
    """Through the model layer's load() (pyxl.config.load): the same lines and
    exit status reach `pyxl create`."""
    from pyxl.config import ConfigError, load
    monkeypatch.chdir(GOLDEN)
    rc, stderr = golden(name)
    with pytest.raises(ConfigError) as e:
        load(f"{name}.cfg", warn=lambda line: None)
    assert e.value.exit_code == rc
    expected = stderr.decode("utf-8", "surrogateescape").split("\n")[1:-1]
    assert list(e.value.lines) == expected
