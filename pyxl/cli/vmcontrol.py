"""`pyxl destroy | shutdown | reboot | pause | unpause | rename` (xl_vmcontrol.c, xl_misc.c).

Handlers take (opts, args) as def_getopt left them; surplus arguments are
ignored, as xl's main_* functions ignore them."""

from __future__ import annotations

import sys
from pyxl.cli._common import call, faults

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import ContextManager

    from pyxl.cli.xlopt import Opts
    from pyxl.toolstack.client import Client


@faults
def destroy(opts: Opts, args: list[str]) -> int:
    """main_destroy / destroy_domain: domain 0 only with -f, and then libxl
    fails on it as on the toolstack's own domain (the simulated host's
    Domain-0 is): the messages, and nothing destroyed."""
    from pyxl.toolstack.errors import Fault

    try:
        call("destroy", dom=args[0], force=bool(opts))
    except Fault as f:
        if f.name == "DESTROY_DOM0" and opts:
            raise Fault("DESTROY_SELF") from None
        raise
    return 0


def _shutdown_or_reboot(reboot: bool, all_: bool, wait: int, fallback: bool,
                        domain: str | None) -> int:
    """main_shutdown_or_reboot: -w waits for shutdown or death, -ww for death."""
    from pyxl.toolstack.client import Client
    from pyxl.toolstack.errors import Fault

    verb = "Rebooting" if reboot else "Shutting down"
    what = "reboot" if reboot else "shutdown"
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
                # find_domain takes any number; libxl__domain_pvcontrol_available fails on it
                raise Fault("SHUTDOWN_NO_DOMAIN", verb=verb, what=what,
                            domid=_domid(str(domain))) from None
            domid = found[0]["domid"]
            print("%s domain %d" % (verb, domid), file=sys.stderr)
            c.call("shutdown", dom=str(domid), reboot=reboot)
            ids = [domid]
        if wait:
            _wait_for_domain_deaths(c, ids, wait == 1)
    return 0


def _wait_for_domain_deaths(c: Client, ids: list[int], shutdown_or_death: bool) -> None:
    """wait_for_domain_deaths (xl_vmcontrol.c)."""
    print("Waiting for %d domains" % len(ids), file=sys.stderr)
    for domid in ids:
        until = "shutdown"
        while True:
            with _progress("Waiting for domain %d to shut down" % domid):
                ev = c.call("wait", domid=domid, timeout=3600, until=until)
            if ev["event"] == "shutdown":
                print("Domain %d has been shut down, reason code %d" % (domid, ev["reason"]),
                      file=sys.stderr)
                if shutdown_or_death:
                    break
                print("Domain %d continue waiting for death" % domid, file=sys.stderr)
                until = "destroyed"
            elif ev["event"] == "destroyed":
                print("Domain %d has been destroyed" % domid, file=sys.stderr)
                break


def _domid(text: str) -> int:
    """The domid find_domain made of a number (libxl_domain_qualifier_to_domid:
    strtoul, clamped at ULONG_MAX, into a uint32_t)."""
    return min(int(text), 2**64 - 1) & 0xFFFFFFFF


def _progress(text: str) -> ContextManager[object]:
    from pyxl.toolstack.client import progress

    return progress(text)



def _shutdown_args(opts: Opts, args: list[str]) -> tuple[bool, int, bool, str | None]:
    flags = [k for k, _ in opts]
    return "a" in flags, flags.count("w"), "F" in flags, args[0] if args else None


@faults
def shutdown(opts: Opts, args: list[str]) -> int:
    return _shutdown_or_reboot(False, *_shutdown_args(opts, args))


@faults
def reboot(opts: Opts, args: list[str]) -> int:
    return _shutdown_or_reboot(True, *_shutdown_args(opts, args))


@faults
def pause(opts: Opts | None, args: list[str]) -> int:
    """main_pause: libxl_domain_pause's failure is logged, its result ignored."""
    _pause(args[0], True)
    return 0


@faults
def unpause(opts: Opts | None, args: list[str]) -> int:
    """main_unpause: as main_pause."""
    _pause(args[0], False)
    return 0


def _pause(domain: str, pause: bool) -> None:
    from pyxl.toolstack.errors import Fault

    try:
        call("pause" if pause else "unpause", dom=domain)
    except Fault as f:
        if f.name != "NO_SUCH_DOMID":
            raise
        raise Fault("PAUSE_NO_DOMAIN" if pause else "UNPAUSE_NO_DOMAIN",
                    domid=_domid(domain)) from None


@faults
def rename(opts: Opts, args: list[str]) -> int:
    domain, new_name = args[:2]
    from pyxl.toolstack.errors import Fault

    try:
        call("rename", dom=domain, name=new_name)
    except Fault as f:
        if f.name != "NO_SUCH_DOMID":
            raise
        # libxl__domain_rename checks the new name first, then fails quietly
        # in libxl_domain_info on a number that names no domain
        if new_name and any(d["name"] == new_name for d in call("list")):
            raise Fault("RENAME_DUP", domid=_domid(domain), name=new_name, dom=domain) from None
        print("Can't rename domain '%s'." % domain, file=sys.stderr)
        return 1
    return 0
