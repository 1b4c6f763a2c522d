"""`pyxl vtpm-attach | vtpm-list | vtpm-detach` (xl_vtpm.c); handlers take (opts, args)."""

from __future__ import annotations

import re
import sys

from pyxl.cli._common import call, faults

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

@faults
def vtpm_attach(opts: Opts, args: list[str]) -> int:
    from pyxl.cli.main import Globals
    from pyxl.toolstack.errors import Fault

    dom, rest = args[0], args[1:]
    uuid = backend = None
    for a in rest:
        if a.startswith("uuid="):
            uuid = a[5:]
            if not UUID_RE.match(uuid):
                print("Invalid uuid specified (%s)" % uuid, file=sys.stderr)
                return 1
        elif a.startswith("backend="):
            backend = a[8:]
        else:
            print("unrecognized argument `%s'" % a, file=sys.stderr)
            return 1
    if Globals.dryrun:
        import json

        d = {}
        if backend is not None:
            d["backend_domname"] = backend
        if uuid:
            d["uuid"] = uuid.lower()
        print("vtpm: " + (json.dumps(d, indent=4) if d else "{\n\n}"))
        return 0
    try:
        call("vtpm_attach", dom=dom, uuid=uuid, backend=backend)
    except Fault as f:
        if f.name == "INVALID_DOMAIN":
            print("%s is an invalid domain identifier" % dom, file=sys.stderr)
            return 1
        if f.name == "NO_SUCH_DOMID":
            print("libxl_device_vtpm_add failed.", file=sys.stderr)
            return 1
        raise
    return 0


@faults
def vtpm_list(opts: Opts, domains: list[str]) -> int:
    from pyxl.toolstack.client import Client
    from pyxl.toolstack.errors import Fault

    print("%-3s %-2s %-36s %-6s %-5s %-6s %-5s %-10s" % (
        "Idx", "BE", "Uuid", "handle", "state", "evt-ch", "ring-ref", "BE-path"))
    sys.stdout.flush()
    with Client().connect() as c:
        for dom in domains:
            try:
                rows = c.call("vtpm_list", dom=dom)
            except Fault as f:
                if f.name in ("INVALID_DOMAIN",):
                    print("%s is an invalid domain identifier" % dom, file=sys.stderr)
                    continue
                raise
            for r in rows:
                print("%-3d %-2d %s %6d %5d %6d %8d %-30s" % (
                    r["devid"], r["backend_domid"], r["uuid"], r["devid"], r["frontend_state"],
                    r["evtch"], r["rref"], r["backend"]))
    return 0


@faults
def vtpm_detach(opts: Opts, args: list[str]) -> int:
    """main_vtpmdetach: the device by uuid or devid among the domain's
    (libxl_uuid_to_device_vtpm, libxl_devid_to_device_vtpm); a number that
    names no domain has none."""
    from pyxl.toolstack.errors import Fault

    try:
        call("vtpm_detach", dom=args[0], dev=args[1])
    except Fault as f:
        if f.name != "NO_SUCH_DOMID":
            raise
        print("Unknown device %s." % args[1], file=sys.stderr)
        return 1
    return 0
