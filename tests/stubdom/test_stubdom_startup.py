"""What a stub domain loads to reach its console line: the start-up path
imports only what it uses (no bench here; bench/stubdom_startup.py times it).

Each check runs a fresh interpreter, as the toolstack starts a domain
(`python -S`), and looks at sys.modules after the imports a stub domain's
boot makes before its console line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from pyxl.domain.drivers.tpmback import parse_uuid, uuid_text
from pyxl.domain.minios import disk_is_blank

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-S", "-c",
         "import sys; sys.path[:0] = [%r] + %r\n%s\nimport json; print(json.dumps(sorted(sys.modules)))"
         % (REPO, [p for p in sys.path if "site-packages" in p], code)],
        check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_manager_loads_no_tpm_engine():
    """vtpmmgr-stubdom speaks to the hardware TPM in wire structures: the
    TPM 1.2 engine, its commands and libtpms (ctypes) stay out of it, though
    the TIS register layout it imports lives beside the hardware TPM's model."""
    mods = loaded_after("import pyxl.domain.vtpmmgr.main, pyxl.domain.vtpmmgr.main2")
    assert "pyxl.tpm.structures" in mods           # what it does use: the check can fail
    for name in ("pyxl.tpm.engine", "pyxl.tpm.commands", "pyxl.tpm.tpm2", "ctypes", "uuid"):
        assert name not in mods, name


def test_vtpm_loads_its_engine_only_when_it_starts_it():
    """vtpm-stubdom imports the TPM 1.2 engine in emulator_init, where it
    is started (a TPM 2.0 vTPM never loads it)."""
    mods = loaded_after("import pyxl.domain.vtpm.main")
    assert "pyxl.tpm.constants" in mods
    for name in ("pyxl.tpm.engine", "pyxl.tpm.structures", "pyxl.tpm.commands", "uuid"):
        assert name not in mods, name
    assert "pyxl.tpm.engine" in loaded_after("from pyxl.tpm import TPM")


def test_structure_layouts_compile_when_first_used():
    """A structure's read/write functions are generated at its first use,
    and the generated functions are the ones every later use gets."""
    mods = loaded_after("from pyxl.tpm import structures as S\n"
                        "lay = object.__getattribute__(S.TPM_CAP_VERSION_INFO, '_layout')\n"
                        "import sys\n"
                        "try:\n"
                        "    object.__getattribute__(lay, 'read')\n"
                        "    sys.exit('compiled at import')\n"
                        "except AttributeError:\n"
                        "    pass\n"
                        "k = S.TPM_CAP_VERSION_INFO()\n"
                        "assert S.TPM_CAP_VERSION_INFO.from_bytes(k.to_bytes()) == k\n"
                        "assert object.__getattribute__(lay, 'read') is lay.read\n")
    assert "pyxl.tpm.structures" in mods


@pytest.mark.parametrize("raw", [bytes(16), b"\xff" * 16, bytes(range(16)), os.urandom(16)])
def test_uuid_forms_are_pythons(raw):
    """tpmback's uuid text and parsing agree with Python's uuid module."""
    text = str(uuid.UUID(bytes=raw))
    assert uuid_text(raw) == text
    assert parse_uuid(text) == raw
    assert parse_uuid(text.upper()) == raw
    assert parse_uuid(text[:-1]) is None
    assert parse_uuid("{%s}" % text) is None       # uuid.UUID would take it; xenbus_read_uuid not


@pytest.mark.parametrize("at", [None, 0, (1 << 20) - 1, 1 << 20, (3 << 20) + 6])
def test_disk_is_blank_finds_any_byte(tmp_path, at):
    """A first boot's blank-disk check (compared a megabyte at a time) still
    sees one non-zero byte anywhere, the last partial megabyte included."""
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate((3 << 20) + 7)
        if at is not None:
            f.seek(at)
            f.write(b"\x01")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert disk_is_blank(fd) is (at is None)
    finally:
        os.close(fd)
