"""Real peer programs the suite measures pyxl against.

A test that needs a peer asks for it with `need_peer(name)`.  When the peer is
missing the test is skipped -- unless PYXL_REQUIRE_PEERS=1 (as CI sets it),
in which case it fails: a CI run must never pass by silently skipping the
comparisons with the real xl, tcsd, tpm-tools and swtpm.
"""

from __future__ import annotations

import os
import shutil

import pytest

# peer name -> (programs that must exist, Debian package that provides them)
PEERS = {
    "xl": (["/usr/lib/xen-4.17/bin/xl", "gcc"], "xen-utils-4.17 gcc"),
    "tcsd": (["tcsd"], "trousers"),
    "tpm-tools": (["tpm_version", "tpm_takeownership", "tpm_sealdata"], "tpm-tools"),
    "swtpm": (["swtpm"], "swtpm swtpm-tools"),
    "xenstore-utils": (["xenstore-ls", "xenstore-read", "xenstore-write", "xenstore-rm",
                        "xenstore-list", "xenstore-exists", "xenstore-chmod", "xenstore-watch"],
                       "xenstore-utils"),
    "tpm2-tools": (["tpm2_getcap", "tpm2_pcrread", "tpm2_createprimary", "tpm2_unseal"],
                   "tpm2-tools"),
}

SBIN = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]


def which(prog: str) -> str | None:
    if os.path.isabs(prog):
        return prog if os.access(prog, os.X_OK) else None
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN)
    return shutil.which(prog, path=path)


def required() -> bool:
    return os.environ.get("PYXL_REQUIRE_PEERS", "") not in ("", "0")


def need_peer(name: str) -> None:
    progs, pkg = PEERS[name]
    missing = [p for p in progs if which(p) is None]
    if not missing:
        return
    msg = f"peer {name!r} missing ({', '.join(missing)}; apt-get install {pkg})"
    if required():
        pytest.fail(msg + " and PYXL_REQUIRE_PEERS is set", pytrace=False)
    pytest.skip(msg)
