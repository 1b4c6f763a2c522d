"""A second local user for the attack tests: nobody, through setpriv."""

from __future__ import annotations

import subprocess

AS_NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]


def as_nobody(*argv, **kw) -> subprocess.CompletedProcess:
    """Run argv as the unprivileged user nobody."""
    return subprocess.run(AS_NOBODY + [str(a) for a in argv], capture_output=True, text=True,
                          timeout=30, **kw)
