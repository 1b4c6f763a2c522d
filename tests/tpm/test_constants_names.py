"""pyxl/tpm/constants.py: every C.NAME is a name defined in the file's text,
where mypy, editors and grep-by-definition find it, and the generated block of
module-level aliases is what scripts/gen_tpm_constants.py makes of the classes."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from pyxl.tpm import constants as C

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_tpm_constants.py"
SOURCE = Path(C.__file__).read_text()


def _generator():
    spec = importlib.util.spec_from_file_location("gen_tpm_constants", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _defined_names(source: str) -> set[str]:
    """Names a static reader sees bound at module level."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_generated_block_is_current():
    r = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_check_notices_a_member_without_its_alias():
    gen = _generator()
    grown = SOURCE.replace("    TPM_ORD_OIAP = 0x0000000A\n",
                           "    TPM_ORD_OIAP = 0x0000000A\n    TPM_ORD_Imaginary = 0x000000FF\n")
    assert grown != SOURCE
    assert "TPM_ORD_Imaginary = TPM_ORD.TPM_ORD_Imaginary\n" in gen.render(grown)
    assert gen.render(SOURCE) == SOURCE


def test_every_member_is_a_module_level_name():
    defined = _defined_names(SOURCE)
    for cls in vars(C).values():
        if isinstance(cls, type) and issubclass(cls, int) and cls.__module__ == C.__name__:
            for name, member in cls.__members__.items():
                if name.startswith("TPM_"):
                    assert name in defined, "%s.%s" % (cls.__name__, name)
                    assert getattr(C, name) is member


def test_every_use_of_C_resolves_statically():
    """Each C.NAME in pyxl/ and tests/ (modules importing constants as C)."""
    defined = _defined_names(SOURCE)
    imports_c = re.compile(r"^\s*from (\.\.?|pyxl\.tpm) import constants as C\b", re.M)
    missing = []
    used = 0
    for path in sorted(list((ROOT / "pyxl").rglob("*.py")) + list((ROOT / "tests").rglob("*.py"))):
        text = path.read_text()
        if path.name == Path(__file__).name or not imports_c.search(text):
            continue
        for m in re.finditer(r"\bC\.([A-Za-z_][A-Za-z0-9_]*)", text):
            used += 1
            if m.group(1) not in defined:
                missing.append("%s: C.%s" % (path.relative_to(ROOT), m.group(1)))
    assert used > 1000                         # the scan did find the users
    assert not missing, missing
