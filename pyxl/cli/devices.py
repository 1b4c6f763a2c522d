"""`pyxl block-attach | block-list | block-detach` (xl_block.c),
`network-attach | network-list | network-detach` (xl_nic.c) and
`channel-list` (xl_console.c); handlers take (opts, args) after def_getopt."""

from __future__ import annotations

import json
import sys

from pyxl.cli._common import call, faults

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts
    from pyxl.config import model as M


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text + "\n")


def _qualifier_ok(dom: str) -> bool:
    """libxl_domain_qualifier_to_domid: a number is taken as it is, a name
    must name a domain."""
    from pyxl.toolstack.errors import Fault

    if dom.isdigit():
        return True
    try:
        call("list", dom=dom, rows=True)
    except Fault as f:
        if f.name == "INVALID_DOMAIN":
            return False
        raise
    return True


def _tree(obj: M.Struct) -> dict:
    """The libxl JSON of one device struct, as a plain dict for the daemon."""
    from pyxl.config.libxl_json import render, struct_tree

    return json.loads(render(struct_tree(obj)))


def _json(obj: M.Struct) -> str:
    from pyxl.config.libxl_json import render, struct_tree

    return render(struct_tree(obj))


@faults
def block_attach(opts: Opts | None, args: list[str]) -> int:
    """main_blockattach: the domain first, then the disk spec made of every
    further argument (parse_disk_config_multistring, source "command line")."""
    from pyxl.cli.main import Globals
    from pyxl.config.disk import parse_disk

    dom = args[0]
    if not _qualifier_ok(dom):
        _err("%s is an invalid domain identifier" % dom)
        return 1
    out: list = []
    disk = parse_disk(args[1:], "command line", out)
    for line in out:
        _err(line)
    if disk is None:
        return 1
    if Globals.dryrun:
        print("disk: " + _json(disk))
        return 0
    call("block_attach", dom=dom, disk=_tree(disk))
    return 0


@faults
def block_list(opts: Opts | None, domains: list[str]) -> int:
    """main_blocklist: one header, then a row per disk of each domain."""
    from pyxl.toolstack.client import Client
    from pyxl.toolstack.errors import Fault

    print("%-5s %-3s %-6s %-5s %-6s %-8s %-30s" % (
        "Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path"))
    sys.stdout.flush()
    if not domains:
        return 0
    with Client().connect() as c:
        answers = c.call("block_list_each", doms=domains)
    rows: list[str] = []          # written at once (a write per row costs more than the rows)
    for dom, answer in zip(domains, answers):
        if not answer.get("ok"):
            f = Fault.from_wire(answer)
            sys.stdout.write("".join(rows))
            rows.clear()
            if f.name == "INVALID_DOMAIN":
                _err("%s is an invalid domain identifier" % dom)
                continue
            raise f
        rows += ["%-5d %-3d %-6d %-5d %-6d %-8d %-30s\n" % (
            r["devid"], r["backend_id"], r["frontend_id"], r["state"], r["evtch"],
            r["rref"], r["backend"]) for r in answer["result"]]
    sys.stdout.write("".join(rows))
    return 0


@faults
def block_detach(opts: Opts | None, args: list[str]) -> int:
    """main_blockdetach: -f destroys without waiting for the backend."""
    force = any(k == "f" for k, _ in opts or [])
    call("block_detach", dom=args[0], vdev=args[1], force=force)
    return 0


@faults
def network_attach(opts: Opts | None, args: list[str]) -> int:
    """main_networkattach: find_domain, then each argument one nic option
    (parse_nic_config); an unrecognised one ends the command."""
    from pyxl.cli.main import Globals
    from pyxl.config import model as M
    from pyxl.config.errors import ConfigError
    from pyxl.config.vif import parse_nic

    dom = args[0]
    if not dom.isdigit():
        call("list", dom=dom, rows=True)       # find_domain: INVALID_DOMAIN
    nic = M.DeviceNic()
    said: list = []
    for a in args[1:]:
        try:
            parse_nic(nic, a, "command line", said.append, whole=True)
        except ConfigError as e:
            for line in e.lines:
                _err(line)
            return 1
        bad = [s for s in said if s.startswith("unrecognized argument")]
        for s in said:
            _err(s)
        said.clear()
        if bad:
            return 1
    if Globals.dryrun:
        print("vif: " + _json(nic))
        return 0
    call("network_attach", dom=dom, nic=_tree(nic))
    return 0


@faults
def network_list(opts: Opts | None, domains: list[str]) -> int:
    """main_networklist: find_domain on each argument in turn."""
    from pyxl.toolstack.client import Client

    print("%-3s %-2s %-17s %-6s %-5s %-6s %5s/%-5s %-30s" % (
        "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path"))
    sys.stdout.flush()
    with Client().connect() as c:
        for dom in domains:
            for r in c.call("network_list", dom=dom):
                print("%-3d %-2d %s%6d %5d %6d %5d/%-11d %-30s" % (
                    r["devid"], r["backend_id"], r["mac"], r["devid"], r["state"], r["evtch"],
                    r["rref_tx"], r["rref_rx"], r["backend"]))
            sys.stdout.flush()
    return 0


@faults
def network_detach(opts: Opts | None, args: list[str]) -> int:
    """main_networkdetach: a devid, or a MAC when the argument has a ':'."""
    call("network_detach", dom=args[0], dev=args[1])
    return 0


@faults
def channel_list(opts: Opts | None, domains: list[str]) -> int:
    """main_channellist: find_domain on each argument in turn; a pty
    channel's row ends with its path (each field followed by a space)."""
    from pyxl.toolstack.client import Client

    print("%-3s %-2s %-5s %-6s %8s %-10s %-30s" % (
        "Idx", "BE", "state", "evt-ch", "ring-ref", "connection", ""))
    sys.stdout.flush()
    with Client().connect() as c:
        for dom in domains:
            for r in c.call("channel_list", dom=dom):
                line = "%-3d %-2d %-5d %-6d %-8d %-10s " % (
                    r["devid"], r["backend_id"], r["state"], r["evtch"], r["rref"],
                    r["connection"])
                if r["connection"] == "pty":
                    line += "%-30s " % (r["path"] or "(null)")
                print(line)
            sys.stdout.flush()
    return 0


# -- vkb (xl_vkb.c) -----------------------------------------------------------

def _vkb_option(vkb: M.DeviceVkb, token: str) -> bool:
    """parse_vkb_config (xl_parse.c): one option; False (and xl's message)
    for an unknown one."""
    from pyxl.config import model as M
    from pyxl.config.devices import _VKB_BOOLS, _VKB_UINTS, _strtoul0

    key, eq, val = token.partition("=")
    if eq and key == "backend":
        vkb.backend_domname = val
    elif eq and key == "backend-type":
        t = M.VkbBackend.from_string(val)
        if t is None:
            _err('Unknown backend_type "%s" in vkb spec' % val)
            return False
        vkb.backend_type = t
    elif eq and key == "unique-id":
        vkb.unique_id = val
    elif eq and key in _VKB_BOOLS:
        setattr(vkb, _VKB_BOOLS[key], _strtoul0(val) != 0)
    elif eq and key in _VKB_UINTS:
        setattr(vkb, _VKB_UINTS[key], _strtoul0(val) & 0xFFFFFFFF)
    else:
        _err('Unknown string "%s" in vkb spec' % token)
        return False
    return True


@faults
def vkb_attach(opts: Opts | None, args: list[str]) -> int:
    """main_vkbattach: find_domain, the options, their checks; failures
    return ERROR_FAIL (exit 253), an unknown option -1 (255)."""
    from pyxl.cli.main import Globals
    from pyxl.config import model as M

    dom = args[0]
    if not dom.isdigit():
        call("list", dom=dom, rows=True)       # find_domain: INVALID_DOMAIN
    vkb = M.DeviceVkb()
    for a in args[1:]:
        if not _vkb_option(vkb, a):
            return 255
    if vkb.backend_type == M.VkbBackend.UNKNOWN:
        _err("backend-type should be set")
        return 253
    if vkb.multi_touch_height or vkb.multi_touch_width or vkb.multi_touch_num_contacts:
        vkb.feature_multi_touch = True
    if vkb.feature_multi_touch and not (vkb.multi_touch_height or vkb.multi_touch_width
                                        or vkb.multi_touch_num_contacts):
        _err("multi-touch-width, multi-touch-height, multi-touch-num-contacts should be set")
        return 253
    if Globals.dryrun:
        print("vkb: " + _json(vkb))
        return 0
    call("vkb_attach", dom=dom, vkb=_tree(vkb))
    return 0


@faults
def vkb_list(opts: Opts | None, domains: list[str]) -> int:
    """main_vkblist: "%-3d %-2d %6d %5d %6d %6d %-10s %-10s %-30s"."""
    from pyxl.toolstack.client import Client

    print("%-3s %-2s %-6s %-5s %-6s %6s %-10s %-10s %-30s" % (
        "Idx", "BE", "handle", "state", "evt-ch", "ref", "ID", "BE-type", "BE-path"))
    sys.stdout.flush()
    with Client().connect() as c:
        for dom in domains:
            for r in c.call("vkb_list", dom=dom):
                print("%-3d %-2d %6d %5d %6d %6d %-10s %-10s %-30s" % (
                    r["devid"], r["backend_id"], r["devid"], r["state"], r["evtch"], r["rref"],
                    r["unique_id"] if r["unique_id"] is not None else "(null)",
                    r["backend_type"], r["backend"]))
            sys.stdout.flush()
    return 0


@faults
def vkb_detach(opts: Opts | None, args: list[str]) -> int:
    """main_vkbdetach: the devid is atoi's."""
    from pyxl.config.cstr import atoi

    call("vkb_detach", dom=args[0], devid=atoi(args[1]))
    return 0


# -- vdispl (xl_vdispl.c) -----------------------------------------------------

@faults
def vdispl_attach(opts: Opts | None, args: list[str]) -> int:
    """main_vdisplattach: find_domain, each argument one option
    (parse_vdispl_config, whose return code ends the command), at least one
    connector; failures return ERROR_FAIL (exit 253)."""
    from pyxl.cli.main import Globals
    from pyxl.config import model as M
    from pyxl.config.devices import _strtoul0, vdispl_connectors
    from pyxl.config.errors import ConfigError
    from pyxl.config.parse import Output

    dom = args[0]
    if not dom.isdigit():
        call("list", dom=dom, rows=True)       # find_domain: INVALID_DOMAIN
    v = M.DeviceVdispl()
    out = Output(say=_err)
    for tok in args[1:]:
        key, eq, val = tok.partition("=")
        if eq and key == "backend":
            v.backend_domname = val
        elif eq and key == "be-alloc":
            v.be_alloc = _strtoul0(val) != 0
        elif eq and key == "connectors":
            try:
                v.connectors, rc = vdispl_connectors(val, out)
            except ConfigError as e:
                for line in e.lines:
                    _err(line)
                return 1
            if rc:
                return rc & 0xFF
        else:
            _err('Unknown string "%s" in vdispl spec' % tok)
            return 1
    if not v.connectors:
        _err("At least one connector should be specified.")
        return 253
    if Globals.dryrun:
        print("vdispl: " + _json(v))
        return 0
    call("vdispl_attach", dom=dom, vdispl=_tree(v))
    return 0


@faults
def vdispl_list(opts: Opts | None, domains: list[str]) -> int:
    """main_vdispllist: libxl_domain_qualifier_to_domid per argument; one
    line per device, one per connector."""
    from pyxl.toolstack.client import Client
    from pyxl.toolstack.errors import Fault

    with Client().connect() as c:
        for dom in domains:
            try:
                rows = c.call("vdispl_list", dom=dom)
            except Fault as f:
                if f.name == "INVALID_DOMAIN":
                    _err("%s is an invalid domain identifier" % dom)
                    continue
                raise
            for r in rows:
                print("DevId: %d, BE: %d, handle: %d, state: %d, be-alloc: %d, BE-path: %s,"
                      " FE-path: %s" % (r["devid"], r["backend_id"], r["frontend_id"],
                                        r["state"], r["be_alloc"], r["backend"],
                                        r["frontend"] if r["frontend"] is not None else "(null)"))
                for j, k in enumerate(r["connectors"]):
                    print("\tConnector: %d, id: %s, width: %d, height: %d, req-rref: %d,"
                          " req-evtch: %d, evt-rref: %d, evt-evtch: %d" % (
                              j, k["unique_id"], _int(k["width"]), _int(k["height"]),
                              k["req_rref"], k["req_evtch"], k["evt_rref"], k["evt_evtch"]))
            sys.stdout.flush()
    return 0


def _int(v: int) -> int:
    """An unsigned printed with %d."""
    return v - (1 << 32) if v >= 1 << 31 else v


@faults
def vdispl_detach(opts: Opts | None, args: list[str]) -> int:
    from pyxl.config.cstr import atoi

    call("vdispl_detach", dom=args[0], devid=atoi(args[1]))
    return 0
