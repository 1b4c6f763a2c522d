"""Test-only fault points of the daemon (the daemon-restart tests): the
daemon SIGKILLs itself at an exact instant, so a test can see what its
domains do when it dies there.  Unset, nothing is read.

PYXL_TEST_FAULT_AT=<spec>, or =file:<file> whose content is the spec (read
at each fault point; empty: none yet), for a test to arm the hook at an
instant of its choosing rather than at the daemon's start.  Specs:

request:<domain name>:<path>
    on reading that domain's request whose first argument is <path> (a
    xenstore request's path as the domain wrote it; a register access's
    address, in decimal), leaving it unanswered (services.py).
tpm:<ordinal>
    when the host's hardware TPM is started (STS.tpmGo) on a command with
    that ordinal (TPM 1.2) or command code (TPM 2.0), in decimal, before
    the chip runs it: the command its driver waits for is in flight
    (tis.py).

Other values are the toolstack's own (pyxl/toolstack/spawn.py).
"""

from __future__ import annotations

import os
import signal

_ENV = os.environ.get("PYXL_TEST_FAULT_AT", "")
_FILE = _ENV[len("file:"):] if _ENV.startswith("file:") else ""
ARMED = _ENV.startswith(("file:", "request:", "tpm:"))   # a fault point here may fire


def spec() -> str:
    """The spec armed now ("" if none)."""
    if not _FILE:
        return _ENV
    try:
        with open(_FILE) as f:
            return f.read().strip()
    except OSError:
        return ""


def at(point: str) -> None:
    """Die here if `point` is the spec armed now."""
    if spec() == point:
        os.kill(os.getpid(), signal.SIGKILL)
