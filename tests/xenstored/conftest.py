"""A simulated host with one guest, shared by the xenstore tool tests of a
module (creating a guest costs seconds); each test works below a path of
its own, so the tests are independent of their order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "toolstack"))

from ts_host import Host, procs_of  # noqa: E402


class XsHost(Host):
    """The host, plus Xen's real tools pointed at its xenstored socket."""

    @property
    def socket(self) -> str:
        return os.path.join(self.root, "run", "pyxl", "xenstored", "socket")

    def real(self, tool: str, *args, input=None, timeout=30, **kw) -> subprocess.CompletedProcess:
        """Debian's xenstore-<tool> (bytes in, bytes out; stdout and stderr
        captured apart unless `kw` says otherwise)."""
        env = dict(self.env, XENSTORED_PATH=self.socket)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.run(["xenstore-" + tool, *args], env=env, input=input,
                              timeout=timeout, **kw)

    def ours(self, tool: str, *args, input=None, timeout=30, **kw) -> subprocess.CompletedProcess:
        """`pyxl xenstore-<tool>`, as `real`."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.run(self.pyxl_cmd + ["xenstore-" + tool, *args], env=self.env,
                              input=input, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def xs_host(tmp_path_factory, pyxl_cmd):
    h = XsHost(tmp_path_factory.mktemp("xs") / "root", pyxl_cmd)
    try:
        p = h.create("vm")
        assert p.returncode == 0, p.stderr
        # the guest has booted once its drivers announce what they support
        h.wait_for(lambda: h.run("xenstore-read", "/local/domain/1/control/feature-poweroff")
                   .stdout == "1\n", timeout=30, what="the guest's feature-poweroff")
        yield h
    finally:
        h.cleanup()
    left = procs_of(h.root)
    assert not left, "processes left behind: %r" % left
