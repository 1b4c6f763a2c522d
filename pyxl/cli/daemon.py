"""`pyxl daemon start [-F] | stop [--force] | status`: the simulated host's daemon."""

from __future__ import annotations

import sys

from pyxl.cli._common import faults


@faults
def daemon(opts: None, args: list[str]) -> int:
    from pyxl.cli import table, xlopt
    from pyxl.toolstack import client
    from pyxl.toolstack.errors import Fault
    from pyxl.toolstack.paths import Paths

    cmd = table.BY_NAME["daemon"]
    given, rest = xlopt.def_getopt(cmd, args, permute=True)
    flags = {val for val, _ in given}
    val = {name: v for name, _, v in cmd.longopts}
    foreground, force = val["foreground"] in flags, val["force"] in flags
    action = rest[0]
    paths = Paths.from_env()
    if action == "start":
        if foreground:
            from pyxl.toolstack.daemon import Daemon

            return Daemon(paths, True).run()
        if client.daemon_alive(paths):
            print("pyxl: a pyxl daemon is already running for %s" % paths.root, file=sys.stderr)
            return 1
        client.start_daemon(paths)
        return 0
    if action == "stop":
        try:
            res = client.call("daemon_stop", autostart=False, force=force)
        except Fault as f:
            if f.name == "NOT_RUNNING":
                print("pyxl: the pyxl daemon is not running", file=sys.stderr)
                return 0 if not client.daemon_alive(paths) else f.report()
            raise
        if not client.wait_daemon_gone(paths, int(res["pid"]), timeout=300):
            print("pyxl: the pyxl daemon (pid %s) did not stop" % res.get("pid"), file=sys.stderr)
            return 1
        return 0
    if action == "status":
        try:
            st = client.call("daemon_status", autostart=False)
        except Fault as f:
            if f.name == "NOT_RUNNING":
                print("not running")
                return 3          # LSB: program is not running
            raise
        print("running: pid %d, protocol %d, root %s, %d domain(s) besides Domain-0"
              % (st["pid"], st["protocol"], st["root"], st["domains"]))
        return 0
    print("pyxl daemon: unknown action `%s' (start, stop or status)" % action, file=sys.stderr)
    return 2
