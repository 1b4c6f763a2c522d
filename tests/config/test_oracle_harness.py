"""The oracle itself answers like xl does (so differential tests mean something)."""

import re

import pytest

from oracle.xl import FIXED_UUID, run_many, run_xl_dryrun, run_xl_text

pytestmark = pytest.mark.peer("xl")


def test_guide_config_json(tmp_path):
    cfg = tmp_path / "g.cfg"
    cfg.write_text('name="domu"\nkernel="/k"\nmemory=128\n')
    r = run_xl_dryrun(cfg)
    assert r.rc == 0, r.stderr
    assert r.stderr_lines == [f"Parsing config from {cfg}"]
    assert '"name": "domu"' in r.stdout and FIXED_UUID in r.stdout
    assert '"max_memkb": 131072' in r.stdout


def test_syntax_error_and_extras():
    r = run_xl_text(b'name="a"\nkernel="/k"\nx =\n', name="bad.cfg")
    assert r.rc == 1
    assert r.stderr_lines[1:] == [
        "bad.cfg:2: config parsing error near <newline>: syntax error, "
        "unexpected NEWLINE, expecting STRING or NUMBER or '['",
        "Failed to parse config: Invalid argument"]
    r = run_xl_text(b'name="a"\nkernel="/k"\n', ["memory=64"])
    assert r.rc == 0 and '"target_memkb": 65536' in r.stdout


def test_fake_host_and_random_uuid():
    a, b = run_many([b'name="a"\nkernel="/k"\nvcpus=1\ncpus="all"\n'] * 2, fixed_uuid=False)
    assert a.rc == b.rc == 0
    assert FIXED_UUID not in a.stdout and a.stdout != b.stdout  # random uuids
    # cpus="all" on a 2-pCPU host: a bitmap rounded up to 8 bits
    hard = a.stdout.split('"vcpu_hard_affinity"')[1].split("]")[0]
    assert [int(x) for x in re.findall(r"\d+", hard)] == list(range(8))
