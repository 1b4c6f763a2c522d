"""`pyxl destroy | shutdown | reboot | pause | unpause | rename` (xl_vmcontrol.c, xl_misc.c).

Handlers take (opts, args) as def_getopt left them; surplus arguments are
ignored, as xl's main_* functions ignore them."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, ContextManager, Optional

from pyxl.cli._common import call, faults

if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts


@faults
def destroy(opts: Opts, args: list[str]) -> int:
    call("destroy", dom=args[0], force=bool(opts))
    return 0


def _shutdown_or_reboot(reboot: bool, all_: bool, wait: bool, fallback: bool,
                        domain: Optional[str]) -> int:
    from pyxl.toolstack.client import Client
    from pyxl.toolstack.errors import Fault

    verb = "Rebooting" if reboot else "Shutting down"
    if not domain and not all_:
        print("You must specify -a or a domain id.\n", file=sys.stderr)
        return 1
    with Client().connect() as c:
        if all_:
            doms = [d for d in c.call("list") if d["domid"] != 0]
            ids = []
            for d in doms:
                print("%s domain %d" % (verb, d["domid"]), file=sys.stderr)
                c.call("shutdown", dom=str(d["domid"]), reboot=reboot)
                ids.append(d["domid"])
        else:
            try:
                found = c.call("list", dom=domain)
            except Fault as f:
                if f.name != "NO_SUCH_DOMID":
                    raise
                # find_domain accepts any number; libxl then fails on it
                print("%s domain %s" % (verb, domain), file=sys.stderr)
                print("%s failed (rc=-21)" % ("reboot" if reboot else "shutdown"), file=sys.stderr)
                return 1
            domid = found[0]["domid"]
            print("%s domain %d" % (verb, domid), file=sys.stderr)
            c.call("shutdown", dom=str(domid), reboot=reboot)
            ids = [domid]
        if wait:
            print("Waiting for %d domains" % len(ids), file=sys.stderr)
            for domid in ids:
                while True:
                    with _progress("Waiting for domain %d to shut down" % domid):
                        ev = c.call("wait", domid=domid, timeout=3600)
                    if ev["event"] == "shutdown":
                        print("Domain %d has been shut down, reason code %d" % (domid, ev["reason"]),
                              file=sys.stderr)
                        break
                    if ev["event"] == "destroyed":
                        print("Domain %d has been destroyed" % domid, file=sys.stderr)
                        break
    return 0


def _progress(text: str) -> ContextManager[object]:
    from pyxl.toolstack.client import progress

    return progress(text)



def _shutdown_args(opts: Opts, args: list[str]) -> tuple[bool, bool, bool, str | None]:
    flags = {k for k, _ in opts}
    return "a" in flags, "w" in flags, "F" in flags, args[0] if args else None


@faults
def shutdown(opts: Opts, args: list[str]) -> int:
    return _shutdown_or_reboot(False, *_shutdown_args(opts, args))


@faults
def reboot(opts: Opts, args: list[str]) -> int:
    return _shutdown_or_reboot(True, *_shutdown_args(opts, args))


@faults
def pause(opts: Opts, args: list[str]) -> int:
    domain = args[0]
    from pyxl.toolstack.errors import Fault

    try:
        call("pause", dom=domain)
    except Fault as f:
        if f.name != "NO_SUCH_DOMID":   # xl ignores libxl_domain_pause's result
            raise
    return 0


@faults
def unpause(opts: Opts, args: list[str]) -> int:
    domain = args[0]
    from pyxl.toolstack.errors import Fault

    try:
        call("unpause", dom=domain)
    except Fault as f:
        if f.name != "NO_SUCH_DOMID":
            raise
    return 0


@faults
def rename(opts: Opts, args: list[str]) -> int:
    domain, new_name = args[:2]
    from pyxl.toolstack.errors import Fault

    try:
        call("rename", dom=domain, name=new_name)
    except Fault as f:
        if f.name == "NO_SUCH_DOMID":
            print("Can't rename domain '%s'." % domain, file=sys.stderr)
            return 1
        raise
    return 0
