"""`pyxl create -n` / `pyxl -N create` end to end (subprocess)."""

import json
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(pyxl_cmd, *args, cwd=None):
    return subprocess.run(pyxl_cmd + list(args), capture_output=True, text=True, cwd=cwd,
                          errors="surrogateescape", timeout=60)


def test_dryrun_prints_json_and_parsing_line(pyxl_cmd):
    r = run(pyxl_cmd, "create", "-n", str(EXAMPLES / "vtpm.cfg"))
    assert r.returncode == 0
    assert r.stderr == "Parsing config from %s\n" % (EXAMPLES / "vtpm.cfg")
    d = json.loads(r.stdout)
    assert d["vtpms"] == [{"backend_domname": "vtpmmgr", "devid": 0,
                           "uuid": "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"}]
    assert r.stdout.endswith("}\n") and '        "sched_params": {\n\n        },' in r.stdout


def test_global_N_quiet_and_extra_settings(pyxl_cmd, tmp_path):
    (tmp_path / "g.cfg").write_text('name="g"\nkernel="/k"\nmemory=128\n')
    r = run(pyxl_cmd, "-N", "create", "-q", "g.cfg", "memory=64", 'name="h"', cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    d = json.loads(r.stdout)
    assert d["c_info"]["name"] == "h" and d["b_info"]["target_memkb"] == 65536


def test_defconfig_option(pyxl_cmd, tmp_path):
    (tmp_path / "g.cfg").write_text('name="g"\nkernel="/k"\n')
    r = run(pyxl_cmd, "create", "--dryrun", "-f", "g.cfg", "vcpus=2", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["b_info"]["max_vcpus"] == 2


@pytest.mark.parametrize("args,rc,stderr", [
    (["create", "-n", "missing.cfg"], 3,
     "Failed to read config file: missing.cfg: No such file or directory\n"),
    (["create", "-n"], 6, "Config file not specified and none in save file\n"),
])
def test_exit_statuses(pyxl_cmd, tmp_path, args, rc, stderr):
    r = run(pyxl_cmd, *args, cwd=tmp_path)
    assert (r.returncode, r.stderr, r.stdout) == (rc, stderr, "")


def test_rejected_config(pyxl_cmd, tmp_path):
    (tmp_path / "b.cfg").write_text('kernel="/k"\n')
    r = run(pyxl_cmd, "create", "-n", "b.cfg", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "Parsing config from b.cfg\nDomain name must be specified.\n"


def test_second_config_file_is_a_usage_error(pyxl_cmd, tmp_path):
    r = run(pyxl_cmd, "create", "-n", "a.cfg", "b.cfg", cwd=tmp_path)
    assert r.returncode == 2 and "Usage: pyxl" in r.stdout


def test_create_help_lists_xls_options(pyxl_cmd):
    r = run(pyxl_cmd, "help", "create")
    # the option lines of Xen 4.17's xl_cmdtable.c create row
    for opt in ("-c", "-p", "-q, --quiet", "-n, --dryrun", "-d", "-e", "-F", "-f FILE, --defconfig=FILE",
                "-V, --vncviewer", "-A, --vncviewer-autopass", "--ignore-global-affinity-masks"):
        assert opt in r.stdout, opt
