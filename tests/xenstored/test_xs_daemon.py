"""The daemon's xenstored socket over its life: pyxl's xenstore commands
start the host's daemon as every pyxl command does, the socket is there
while the daemon runs, and gone once it stops."""

from __future__ import annotations

import os

from ts_host import Host, procs_of


def test_commands_start_the_daemon_and_the_socket_goes_with_it(tmp_path, pyxl_cmd):
    h = Host(tmp_path / "root", pyxl_cmd)
    sock = os.path.join(h.root, "run", "pyxl", "xenstored", "socket")
    try:
        assert not os.path.exists(sock)
        p = h.run("xenstore-read", "/local/domain/0/name")
        assert (p.returncode, p.stdout, p.stderr) == (0, "Domain-0\n", "")
        assert os.stat(sock).st_mode & 0o777 == 0o600
        p = h.run("daemon", "stop")
        assert p.returncode == 0, p.stderr
        h.wait_for(lambda: not procs_of(h.root), what="the daemon to exit")
        assert not os.path.exists(sock)
    finally:
        h.cleanup()
