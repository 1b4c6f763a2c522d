"""`pyxl vsnd-attach | vsnd-list | vsnd-detach` (xl_vsnd.c); handlers take
(opts, args) after def_getopt."""

from __future__ import annotations

import json
import sys

from pyxl.cli._common import call, faults

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text + "\n")


@faults
def vsnd_attach(opts: Opts | None, args: list[str]) -> int:
    """main_vsndattach: find_domain, then each argument one item
    (parse_vsnd_item: `card`, `pcm` or `stream` and its parameters); a bad
    one ends the command with its -1."""
    from pyxl.cli.main import Globals
    from pyxl.config import model as M
    from pyxl.config.devices import _vsnd_item
    from pyxl.config.errors import ConfigError
    from pyxl.config.libxl_json import render, struct_tree

    dom = args[0]
    if not dom.isdigit():
        call("list", dom=dom, rows=True)       # find_domain: INVALID_DOMAIN
    vsnd = M.DeviceVsnd()
    for item in args[1:]:
        try:
            _vsnd_item(vsnd, item)
        except ConfigError as e:
            for line in e.lines:
                _err(line)
            return -1 & 0xFF
    text = render(struct_tree(vsnd))
    if Globals.dryrun:
        print("vsnd: " + text)
        return 0
    call("vsnd_attach", dom=dom, vsnd=json.loads(text))
    return 0


def _params(p: dict) -> str:
    """print_params (xl_vsnd.c); sic: the formats are labelled sample-rates."""
    out = ""
    for key in ("channels_min", "channels_max", "buffer_size"):
        if p.get(key):
            out += ", %s: %d" % (key.replace("_", "-"), p[key])
    if p.get("sample_rates"):
        out += ", sample-rates: " + ";".join("%d" % r for r in p["sample_rates"])
    if p.get("sample_formats"):
        out += ", sample-rates: " + ";".join(p["sample_formats"])
    return out


def _s(v: str | None) -> str:
    return "(null)" if v is None else v     # glibc's printf("%s", NULL)


@faults
def vsnd_list(opts: Opts | None, domains: list[str]) -> int:
    """main_vsndlist: libxl_domain_qualifier_to_domid per argument; a card,
    its PCMs, their streams."""
    from pyxl.toolstack.client import Client
    from pyxl.toolstack.errors import Fault

    with Client().connect() as c:
        for dom in domains:
            try:
                rows = c.call("vsnd_list", dom=dom)
            except Fault as f:
                if f.name == "INVALID_DOMAIN":
                    _err("%s is an invalid domain identifier" % dom)
                    continue
                raise
            for r in rows:
                print("\ndevid: %d, be-domid: %d, handle: %d, state: %d, be-path: %s,"
                      " fe-path: %s" % (r["devid"], r["backend_id"], r["frontend_id"],
                                        r["state"], _s(r["backend"]), _s(r["frontend"])))
                print('short-name: "%s", long-name: "%s"' % (_s(r["short_name"]),
                                                             _s(r["long_name"]))
                      + _params(r["params"]))
                for j, pcm in enumerate(r["pcms"]):
                    print('\tpcm: %d, name: "%s"' % (j, _s(pcm["name"])) + _params(pcm["params"]))
                    for k, st in enumerate(pcm["streams"]):
                        print('\t\tstream: %d, unique-id: "%s", type: %s' % (
                            k, _s(st["unique_id"]), _s(st["type"])) + _params(st["params"]))
                        print("\t\t\tevent-channel: %d, ring-ref: %d" % (
                            st["req_evtch"], st["req_rref"]))
            sys.stdout.flush()
    return 0


@faults
def vsnd_detach(opts: Opts | None, args: list[str]) -> int:
    """main_vsnddetach: find_domain, the devid atoi's."""
    from pyxl.config.cstr import atoi

    if not args[0].isdigit():
        call("list", dom=args[0], rows=True)
    call("vsnd_detach", dom=args[0], devid=atoi(args[1]))
    return 0
