"""`pyxl create` past parsing: hand the config to the host and follow up
(called by pyxl/cli/create.py with the parsed DomainConfig).

The daemon does what libxl_domain_create_new does (memory check, domid,
xenstore, devices, the domain process); this side prints what xl prints and
does what xl's create does afterwards: -c attaches the console, -F stays in
the foreground as the domain's monitor until it is gone.
"""

from __future__ import annotations

import json
import os
import sys

from pyxl.toolstack.client import Client, progress, watched
from pyxl.toolstack.errors import Fault

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import ContextManager


def create_domain(config_json: str, config_file: str = "", config_data: str | bytes = "",
                  console: bool = False, paused: bool = False, quiet: bool = False,
                  monitor: bool = True, foreground: bool = False) -> int:
    """`config_json` is the libxl_domain_config JSON (pyxl.config.to_json,
    libxl_domain_config_to_json): it goes to the daemon as it is, and the
    daemon parses it once (it keeps it for list -l, config-update, reboot)."""
    if isinstance(config_data, bytes):
        config_data = config_data.decode(errors="replace")
    try:
        c = Client().connect()
        with _waiting(config_json):
            res = c.call("create", config=config_json, config_file=config_file,
                         config_text=config_data, paused=paused,
                         monitor=monitor or foreground)
    except Fault as f:
        return f.report()
    domid, name = res["domid"], res["name"]
    try:
        if console:
            from pyxl.toolstack import conclient

            conclient.attach(str(domid), c)
            return 0
        if foreground:
            return follow(c, domid, name)
    except Fault as f:
        return f.report()
    finally:
        c.close()
    return 0


def _waiting(config_json: str) -> ContextManager[object]:
    """With devices libxl waits for their backends: show it to a person
    watching (only then is the config looked into for its name)."""
    import contextlib

    if not watched():
        return contextlib.nullcontext()
    cfg = json.loads(config_json)
    if not cfg.get("vtpms"):
        return contextlib.nullcontext()
    return progress("Waiting for the backends of %s"
                    % (cfg.get("c_info") or {}).get("name", "the domain"))


def follow(c: Client, domid: int, name: str) -> int:
    """xl create -F: log the domain's life to stderr until it is gone."""
    log = sys.stderr
    print("Waiting for domain %s (domid %d) to die [pid %d]" % (name, domid, os.getpid()), file=log)
    while True:
        ev = c.call("wait", domid=domid, timeout=3600)
        if ev["event"] == "timeout":
            continue
        if ev["event"] == "shutdown":
            r = ev["reason"]
            print("Domain %d has shut down, reason code %d 0x%x" % (domid, r, r), file=log)
            # the daemon carries out the on_* action; see whether a successor appears
            ev = c.call("wait", domid=domid, timeout=30, until="destroyed")
            if ev["event"] != "destroyed":
                print("Domain %d has been preserved" % domid, file=log)
                return 0
        print("Domain %d has been destroyed." % domid, file=log)
        try:
            doms = c.call("list", dom=name)
        except Fault:
            doms = []
        if doms and doms[0]["domid"] != domid:
            domid = doms[0]["domid"]
            print("Waiting for domain %s (domid %d) to die [pid %d]" % (name, domid, os.getpid()),
                  file=log)
            continue
        print("Done. Exiting now", file=log)
        return 0
