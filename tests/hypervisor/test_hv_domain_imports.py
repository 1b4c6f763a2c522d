"""A domain process's view of Xen must stay cheap: its memory is benchmarked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

HEAVY = ["socket", "json", "subprocess", "asyncio", "selectors", "dataclasses", "typing",
         "pyxl.hypervisor.xenstore", "pyxl.hypervisor.services", "pyxl.hypervisor.grant"]


def test_domain_side_imports_nothing_heavy():
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "import pyxl.domain.xen, pyxl.domain.drivers.xenbus, pyxl.domain.drivers.tpmif\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules and m not in before))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == []
