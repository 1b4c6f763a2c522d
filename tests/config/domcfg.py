"""Helpers for the cfg-model tests (not a test module): run pyxl's config
loading in-process the way `pyxl create -n` does, and compare its answer
with an oracle answer (rc, stdout JSON, stderr)."""

from __future__ import annotations

import json
import os
import re
from typing import NamedTuple

from pyxl.config import ConfigError, config_text, load_data, to_json

FIXED_UUID = "deadbeef-dead-4ead-8ead-deaddeadbeef"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Answer(NamedTuple):
    rc: int
    stdout: str
    stderr: str


def run_pyxl(path: str, extra=(), *, cwd: str | None = None) -> Answer:
    """`pyxl create -n -f PATH EXTRA...` in-process (messages name PATH as given)."""
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        err: list[str] = []
        tail: list[str] = []
        try:
            data = config_text(path, list(extra))
        except ConfigError as e:
            return Answer(e.exit_code, "", "".join(line + "\n" for line in e.lines))
        err.append("Parsing config from %s" % path)
        try:
            d = load_data(data, path, warn=err.append, warn_partial=tail.append)
        except ConfigError as e:
            return Answer(e.exit_code, "", "".join(line + "\n" for line in err) + e.text())
        return Answer(0, to_json(d), "".join(line + "\n" for line in err) + "".join(tail))
    finally:
        os.chdir(old)


def normalise(expected: dict, actual: dict) -> None:
    """Make a generated uuid / ms_vm_genid comparable: where the oracle shows
    its fixed sentinel (xl generated it), pyxl must show a well-formed one."""
    ec, ac = expected.get("c_info", {}), actual.get("c_info", {})
    if ec.get("uuid") == FIXED_UUID:
        assert UUID_RE.match(ac.get("uuid", "")), "pyxl printed no generated uuid"
        ac["uuid"] = FIXED_UUID
    eh = expected.get("b_info", {}).get("type.hvm", {})
    ah = actual.get("b_info", {}).get("type.hvm", {})
    if "ms_vm_genid" in eh:
        assert len(ah.get("ms_vm_genid", [])) == 16
        ah["ms_vm_genid"] = eh["ms_vm_genid"]


_PCI_FAIL = re.compile(r"(?:Unknown PCI_SPEC_STRING option: .*?)?"
                       r"(unable to parse PCI_SPEC_STRING `(.*)' for passthrough)$", re.M)


def _uninitialised_pci(stderr: str) -> str:
    """xl reads an unset sscanf %n for a PCI BDF without a function ("00:02"):
    whether it then prints "Unknown PCI_SPEC_STRING option: ..." depends on
    stack garbage.  Drop that fragment for such specs (exit status is 6
    either way)."""
    from pyxl.config.pci import _NoFunction, parse_bdf
    from pyxl.config.model import DevicePci

    def fix(m):
        try:
            parse_bdf(DevicePci(), m.group(2))
        except _NoFunction:
            return m.group(1)
        return m.group(0)
    return _PCI_FAIL.sub(fix, stderr)


def differences(expected: Answer, actual: Answer, *, stderr: bool = True) -> list[str]:
    """[] when pyxl answered like xl (JSON compared as data, and its bytes when
    no uuid had to be normalised)."""
    diffs = []
    if expected.rc == actual.rc == 6:
        expected = expected._replace(stderr=_uninitialised_pci(expected.stderr))
    if expected.rc != actual.rc:
        diffs.append("exit status: xl %d, pyxl %d" % (expected.rc, actual.rc))
    if expected.rc == 0 and actual.rc == 0:
        e, a = json.loads(expected.stdout), json.loads(actual.stdout)
        normalise(e, a)
        if e != a:
            diffs.append("JSON differs:\n  xl:   %s\n  pyxl: %s" % (json.dumps(e), json.dumps(a)))
        elif FIXED_UUID not in expected.stdout and "ms_vm_genid" not in expected.stdout \
                and expected.stdout != actual.stdout:
            diffs.append("JSON text differs (layout)")
    if stderr and expected.stderr != actual.stderr:
        diffs.append("stderr:\n  xl:   %r\n  pyxl: %r" % (expected.stderr, actual.stderr))
    return diffs
