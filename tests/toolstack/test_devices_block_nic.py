"""block-* and network-* end to end through `pyxl` on a private host; the
device trees read back with Xen's own xenstore-ls over the xenstored socket.

Expected keys and values are libxl 4.17's (stable-4.17 01140da4e8):
libxl_device.c libxl__device_generic_add (the three directories and their
permissions), libxl_disk.c device_disk_add (vbd keys),
libxl_nic.c libxl__set_xenstore_nic and libxl__device_nic_setdefault (vif
keys, MAC in Xen's OUI), xl_block.c / xl_nic.c (list formats, messages).
Dry runs are compared with the real xl (tests/oracle).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest


def xenstore_ls(host, path: str) -> dict[str, tuple[str, str]]:
    """Debian's `xenstore-ls -f -p PATH` on the host's xenstored socket."""
    from peers import need_peer

    need_peer("xenstore-utils")
    env = dict(host.env, XENSTORED_PATH=os.path.join(host.root, "run/pyxl/xenstored/socket"))
    p = subprocess.run(["xenstore-ls", "-f", "-p", path], env=env, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    out = {}
    for line in p.stdout.splitlines():
        m = re.match(r'^(\S+) = "(.*?)" *\((.*)\)$', line)
        assert m, line
        out[m.group(1)[len(path) + 1:]] = (m.group(2), m.group(3))
    return out


def values(tree: dict, sub: str) -> dict[str, str]:
    """The keys directly below `sub` of a xenstore_ls tree, with their values."""
    pre = sub + "/"
    return {k[len(pre):]: v[0] for k, v in tree.items()
            if k.startswith(pre) and "/" not in k[len(pre):]}


@pytest.fixture
def at():
    """`at(fmt, file, func, nth=0)`: libxl's "libxl: error: FILE:LINE:FUNC: "
    prefix, the line read from the peer's libxenlight (libxl_lines.py); `nth`
    picks among the call sites of one format, in source order."""
    from libxl_lines import lines_of
    from peers import need_peer

    need_peer("xl")
    return lambda fmt, file, func, nth=0: "libxl: error: %s:%d:%s: " % (
        file, sorted(lines_of(fmt))[nth], func)


def test_block_attach_list_detach(host, tmp_path, at):
    img = tmp_path / "extra.img"
    img.write_bytes(b"\0" * 3 * 512)
    assert host.create("g").returncode == 0                    # domid 1
    p = host.run("block-attach", "g", "%s,raw,xvdb,w" % img)
    assert (p.returncode, p.stderr) == (0, "")
    # device_disk_add's keys, then libxl__device_generic_add's
    be = xenstore_ls(host, "/local/domain/0/backend/vbd/1")
    assert be["51728"][1] == "n0,r1"                              # backend_perms
    back = values(be, "51728")
    assert {k: v for k, v in back.items() if k not in ("sectors", "sector-size")} == {
        "frontend": "/local/domain/1/device/vbd/51728", "params": str(img),
        "script": "/etc/xen/scripts/block", "frontend-id": "1", "online": "1",
        "removable": "0", "bootable": "1", "state": "2", "dev": "xvdb", "type": "phy",
        "mode": "w", "device-type": "disk", "discard-enable": "1"}
    assert back["sectors"] == "3"                                 # blkback opened it
    fe = xenstore_ls(host, "/local/domain/1/device/vbd")
    assert fe["51728"][1] == "n1,r0"                              # frontend_perms
    assert values(fe, "51728") == {
        "backend": "/local/domain/0/backend/vbd/1/51728", "backend-id": "0", "state": "1",
        "virtual-device": "51728", "device-type": "disk", "protocol": "x86_64-abi"}
    lib = xenstore_ls(host, "/libxl/1/device/vbd")
    assert lib["51728"][1] == "n0"                                # noperms
    assert values(lib, "51728")["backend"] == "/local/domain/0/backend/vbd/1/51728"
    # main_blocklist: "%-5d %-3d %-6d %-5d %-6d %-8d %-30s"; hdl is the frontend domid
    p = host.run("block-list", "g", "nosuch", "7")
    assert p.stdout.splitlines() == [
        "Vdev  BE  handle state evt-ch ring-ref BE-path                       ",
        "51728 0   1      1     -1     -1       /local/domain/0/backend/vbd/1/51728"]
    assert p.stderr == "nosuch is an invalid domain identifier\n"
    # each argument in turn, a domain as often as it is named (by number or name)
    p = host.run("block-list", "1", "nosuch", "g")
    assert p.stdout.splitlines()[1:] == [
        "51728 0   1      1     -1     -1       /local/domain/0/backend/vbd/1/51728"] * 2
    assert p.stderr == "nosuch is an invalid domain identifier\n"
    # the same vdev again: device_disk_add's libxl__device_exists check
    p = host.run("block-attach", "g", "%s,raw,xvdb,w" % img)
    assert p.returncode == 1
    assert p.stderr == "".join([
        at("device already exists in xenstore", "libxl_disk.c", "device_disk_add", 1),
        "Domain 1:device already exists in xenstore\n",
        at("unable to %s device", "libxl_device.c", "device_addrm_aocomplete"),
        "unable to add device\n",
        "libxl_device_disk_add failed.\n"])
    # device_disk_add: libxl__device_from_disk refuses the vdev, both log it
    p = host.run("block-attach", "g", "%s,raw,floppy" % img)
    assert (p.returncode, p.stderr) == (1, "".join([
        at("Invalid or unsupported virtual disk identifier %s", "libxl_disk.c",
           "libxl__device_from_disk", 0),
        "Domain 1:Invalid or unsupported virtual disk identifier floppy\n",
        at("Invalid or unsupported virtual disk identifier %s", "libxl_disk.c",
           "device_disk_add", 1),
        "Domain 1:Invalid or unsupported virtual disk identifier floppy\n",
        at("unable to %s device", "libxl_device.c", "device_addrm_aocomplete"),
        "unable to add device\n",
        "libxl_device_disk_add failed.\n"]))
    p = host.run("block-attach", "nosuch", "%s,raw,xvdc" % img)
    assert (p.returncode, p.stderr) == (1, "nosuch is an invalid domain identifier\n")
    p = host.run("block-attach", "g", "%s,raw,xvdc,w,what" % img)
    assert (p.returncode, p.stderr) == (
        1, "command line: config parsing error in disk specification: too many positional"
        " parameters: near `what' in `%s,raw,xvdc,w,what'\n" % img)
    # detach: the backend never connected, so libxl removes without a handshake
    assert host.run("block-detach", "g", "xvdz").stderr == "Error: Device xvdz not connected.\n"
    p = host.run("block-detach", "g", "xvdb")
    assert (p.returncode, p.stderr) == (0, "")
    for path in ("/local/domain/0/backend/vbd/1/51728", "/local/domain/1/device/vbd/51728",
                 "/libxl/1/device/vbd/51728"):
        assert host.run("xenstore-read", path).returncode == 1, path
    assert host.run("block-list", "g").stdout.count("\n") == 1
    # the saved configuration follows (device_add_domain_config)
    p = host.run("block-attach", "g", "%s,raw,xvdc,r" % img)
    assert p.returncode == 0, p.stderr
    assert '"vdev": "xvdc"' in host.run("list", "-l", "g").stdout


def test_block_detach_waits_for_a_connected_backend(host, tmp_path):
    img = tmp_path / "extra.img"
    img.write_bytes(b"\0" * 512)
    assert host.create("g").returncode == 0
    assert host.run("block-attach", "g", "%s,raw,xvdb" % img).returncode == 0
    be = "/local/domain/0/backend/vbd/1/51728"
    # a frontend that connected: libxl asks the backend to close and waits
    assert host.run("xenstore-write", be + "/state", "4").returncode == 0
    host.env["PYXL_DEVICE_TIMEOUT"] = "0.3"
    p = host.run("block-detach", "g", "xvdb")
    assert p.returncode == 1
    assert p.stderr.splitlines()[-1] == "libxl_device_disk_safe_remove failed."
    assert host.run("xenstore-read", be + "/state").stdout == "5\n"     # Closing
    assert host.run("xenstore-read", be + "/online").stdout == "0\n"
    assert host.run("xenstore-read", "/libxl/1/device/vbd/51728/dev").returncode == 0
    # -f: libxl_device_disk_destroy does not wait
    p = host.run("block-detach", "-f", "g", "xvdb")
    assert (p.returncode, p.stderr) == (0, "")
    assert host.run("xenstore-read", be + "/state").returncode == 1


def test_vif_at_create_and_network_attach_list_detach(host):
    cfg = host.config("n", nics=[{"devid": 0, "bridge": "xenbr1"}])
    assert host.create("n", cfg=cfg).returncode == 0            # domid 1
    be = xenstore_ls(host, "/local/domain/0/backend/vif/1")
    back = values(be, "0")
    mac = back.pop("mac")
    # libxl__device_nic_setdefault: 00:16:3e, then r[0] & 0x7f, r[1], r[2]
    assert re.fullmatch(r"00:16:3e:[0-7][0-9a-f](:[0-9a-f]{2}){2}", mac)
    assert back == {"frontend": "/local/domain/1/device/vif/0", "frontend-id": "1",
                    "online": "1", "state": "2", "script": "/etc/xen/scripts/vif-bridge",
                    "bridge": "xenbr1", "handle": "0", "type": "vif",
                    "hotplug-status": "connected"}
    fe = xenstore_ls(host, "/local/domain/1/device/vif")
    assert values(fe, "0") == {"backend": "/local/domain/0/backend/vif/1/0", "backend-id": "0",
                               "state": "1", "handle": "0", "mac": mac, "trusted": "1",
                               "mtu": "1500"}
    assert fe["0/mtu"][1] == "n0,r1"                              # ro_frontend_perms
    assert fe["0/mac"][1] == "n1,r0"
    # network-attach: the next devid, the MAC given, mtu not the default
    p = host.run("network-attach", "n", "mac=00:16:3E:0a:0b:0c", "mtu=9000")
    assert (p.returncode, p.stderr) == (0, "")
    back1 = values(xenstore_ls(host, "/local/domain/0/backend/vif/1"), "1")
    assert (back1["mac"], back1["mtu"], back1["bridge"]) == ("00:16:3e:0a:0b:0c", "9000",
                                                             "xenbr0")
    p = host.run("network-list", "n")
    assert p.stdout.splitlines() == [
        "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path        "
        "               ",
        "0   0  %s     0     1     -1    -1/-1          /local/domain/0/backend/vif/1/0" % mac,
        "1   0  00:16:3e:0a:0b:0c     1     1     -1    -1/-1          "
        "/local/domain/0/backend/vif/1/1"]
    assert host.run("network-attach", "n", "frob=1").stderr == "unrecognized argument `frob=1'\n"
    assert host.run("network-detach", "n", "7").stderr == "Unknown device 7.\n"
    assert host.run("network-detach", "n", "00:16:3e:0a:0b:0d").stderr == \
        "Unknown device 00:16:3e:0a:0b:0d.\n"
    assert host.run("network-detach", "n", "00:16:3e:0a:0b:0c").returncode == 0
    assert host.run("network-detach", "n", "0").returncode == 0
    assert host.run("network-list", "n").stdout.count("\n") == 1
    assert host.run("xenstore-read", "/local/domain/0/backend/vif/1/0/mac").returncode == 1
    p = host.run("network-list", "nosuch")
    assert (p.returncode, p.stderr) == (1, "nosuch is an invalid domain identifier (rc=-6)\n")


@pytest.mark.parametrize("args", [
    ["block-attach", "0", "/tmp/x.img,raw,xvdc,r"],
    ["block-attach", "0", "/tmp/x.img", "raw", "xvdb"],
    ["block-attach", "0", "/tmp/x.img", "xvdb"],
    ["block-attach", "0", "format=qcow2", "vdev=hdc", "access=rw", "target=/x"],
    ["network-attach", "0", "ip=1.2.3.4"],
    ["network-attach", "0", "mac=00:16:3e:01:02:03", "bridge=br1", "mtu=9000"],
    ["network-attach", "0", "mac=00:16:3e:01:02:03,bridge=br1"],
    ["network-attach", "0", "type=ioemu", "nonsense"],
    ["vkb-attach", "0", "backend-type=linux", "unique-id=K1", "width=800",
     "multi-touch-height=4"],
    ["vkb-attach", "0", "frob"],
    ["vkb-attach", "0", "backend-type=vnc"],
    ["vkb-attach", "0", "unique-id=x"],
    ["vkb-attach", "0", "backend-type=linux", "feature-multi-touch=1"],
    ["vdispl-attach", "0", "connectors=id0:1920x1080;id1:800x600", "be-alloc=1"],
    ["vdispl-attach", "0", "be-alloc=1"],
    ["vdispl-attach", "0", "connectors=a:12"],
    ["vdispl-attach", "0", "connectors=a:x;b:1x1"],
    ["vdispl-attach", "0", "frob=1"],
    ["vsnd-attach", "0", "card,short-name=SN,long-name=LN,sample-rates=8000;48000",
     "pcm,name=P0,channels-max=2,sample-formats=s16_le;u8",
     "stream,unique-id=S0,type=p,buffer-size=0x100", "stream,type=c"],
    ["vsnd-attach", "0", "stream,unique-id=S"],
    ["vsnd-attach", "0", "speaker,x=1"],
    ["vsnd-attach", "0", "card,frob=1"],
    ["vsnd-attach", "0", "stream,type=x"],
])
def test_dry_run_as_xl(host, args):
    from oracle.xl import XL, _need_xl, xl_env

    _need_xl()
    want = subprocess.run([XL, "-N"] + args, capture_output=True, text=True, env=xl_env(),
                          timeout=60)
    got = host.run("-N", *args)
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout,
                                                        want.stderr)


def test_channel_list(host):
    """main_channellist over libxl_device_channel_list/getinfo: channels are
    the named consoles in libxl's copy, console devid+1 their frontend.  The
    simulated host wires none at create; one is written here as
    libxl__device_add_async would leave it."""
    assert host.create("c").returncode == 0
    header = "Idx BE state evt-ch ring-ref connection                               "
    p = host.run("channel-list", "c", "9")
    assert (p.returncode, p.stdout, p.stderr) == (0, header + "\n", "")
    for path, value in (("/libxl/1/device/console/1/name", "org.qemu.guest_agent.0"),
                        ("/libxl/1/device/console/1/connection", "pty"),
                        ("/libxl/1/device/console/1/backend",
                         "/local/domain/0/backend/console/1/1"),
                        ("/local/domain/1/device/console/1/state", "4"),
                        ("/local/domain/1/device/console/1/port", "7"),
                        ("/local/domain/1/device/console/1/ring-ref", "1234"),
                        ("/local/domain/1/device/console/1/tty", "/dev/pts/9")):
        assert host.run("xenstore-write", path, value).returncode == 0
    p = host.run("channel-list", "c")
    # "%-3d %-2d " "%-5d " "%-6d %-8d " "%-10s " then "%-30s " for a pty
    assert p.stdout.splitlines()[1:] == [
        "0   0  4     7      1234     pty        /dev/pts/9                     "]
    p = host.run("channel-list", "nosuch")
    assert (p.returncode, p.stderr) == (1, "nosuch is an invalid domain identifier (rc=-6)\n")


def test_vkb_attach_list_detach(host):
    assert host.create("k").returncode == 0                    # domid 1
    # a QEMU backend: libxl__dm_check_start finds no device model for a PV guest
    p = host.run("vkb-attach", "k", "backend-type=qemu")
    assert (p.returncode, p.stderr.splitlines()[-1]) == (253, "libxl_device_vkb_add failed.")
    assert "device model required but not running" in p.stderr
    # a Linux backend (vinput): wired as libxl__set_xenstore_vkb writes it;
    # nothing in dom0 answers, libxl gives up and leaves the device
    host.env["PYXL_DEVICE_TIMEOUT"] = "0.3"
    p = host.run("vkb-attach", "k", "backend-type=linux", "unique-id=KB", "height=600",
                 "multi-touch-width=3")
    assert (p.returncode, p.stderr.splitlines()) == (253, [
        "libxl: error: libxl_device.c:1181:device_backend_callback: Domain 1:unable to add"
        " device with path /local/domain/0/backend/vinput/1/0",
        "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain 1:Unable to add"
        " vkbd with id 0",
        "libxl_device_vkb_add failed."])
    be = xenstore_ls(host, "/local/domain/0/backend/vinput/1")
    assert values(be, "0") == {
        "frontend": "/local/domain/1/device/vkbd/0", "frontend-id": "1", "online": "1",
        "state": "1", "unique-id": "KB", "feature-multi-touch": "1", "multi-touch-width": "3",
        "multi-touch-height": "0", "multi-touch-num-contacts": "0", "height": "600"}
    assert values(xenstore_ls(host, "/local/domain/1/device/vkbd"), "0") == {
        "backend": "/local/domain/0/backend/vinput/1/0", "backend-id": "0", "state": "1"}
    # main_vkblist: "%-3d %-2d %6d %5d %6d %6d %-10s %-10s %-30s"
    assert host.run("vkb-list", "k").stdout.splitlines() == [
        "Idx BE handle state evt-ch    ref ID         BE-type    BE-path                       ",
        "0   0       0     1     -1     -1 KB         linux      /local/domain/0/backend/vinput/1/0"]
    p = host.run("vkb-detach", "k", "4")
    assert (p.returncode, p.stderr) == (253, "Error: Device 4 not connected.\n")
    assert host.run("vkb-detach", "k", "0").returncode == 0
    # libxl__device_destroy: libxl__xs_path_cleanup takes the emptied parents too
    for path in ("/local/domain/0/backend/vinput", "/local/domain/1/device/vkbd",
                 "/libxl/1/device/vkbd"):
        assert host.run("xenstore-read", path).returncode == 1, path
    assert host.run("vkb-list", "k").stdout.count("\n") == 1


def test_vdispl_attach_list_detach(host):
    assert host.create("v").returncode == 0                    # domid 1
    host.env["PYXL_DEVICE_TIMEOUT"] = "0.3"
    # libxl__set_xenstore_vdispl; no display backend in dom0: libxl's timeout
    p = host.run("vdispl-attach", "v", "connectors=c0:1024x768;c1:640x480", "be-alloc=1")
    assert (p.returncode, p.stderr.splitlines()) == (253, [
        "libxl: error: libxl_device.c:1181:device_backend_callback: Domain 1:unable to add"
        " device with path /local/domain/0/backend/vdispl/1/0",
        "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain 1:Unable to add"
        " vdispl with id 0",
        "libxl_device_vdispl_add failed."])
    fe = xenstore_ls(host, "/local/domain/1/device/vdispl")
    assert values(fe, "0") == {"backend": "/local/domain/0/backend/vdispl/1/0",
                               "backend-id": "0", "state": "1", "be-alloc": "1", "0": "",
                               "1": ""}
    assert values(fe, "0/1") == {"resolution": "640x480", "unique-id": "c1"}
    assert fe["0/be-alloc"][1] == "n0,r1" and fe["0/1/resolution"][1] == "n0,r1"
    assert values(xenstore_ls(host, "/local/domain/0/backend/vdispl/1"), "0") == {
        "frontend": "/local/domain/1/device/vdispl/0", "frontend-id": "1", "online": "1",
        "state": "1"}
    p = host.run("vdispl-list", "v", "nosuch")
    assert p.stdout.splitlines() == [
        "DevId: 0, BE: 0, handle: 1, state: 1, be-alloc: 1, BE-path:"
        " /local/domain/0/backend/vdispl/1/0, FE-path: /local/domain/1/device/vdispl/0",
        "\tConnector: 0, id: c0, width: 1024, height: 768, req-rref: -1, req-evtch: -1,"
        " evt-rref: -1, evt-evtch: -1",
        "\tConnector: 1, id: c1, width: 640, height: 480, req-rref: -1, req-evtch: -1,"
        " evt-rref: -1, evt-evtch: -1"]
    assert p.stderr == "nosuch is an invalid domain identifier\n"
    assert host.run("vdispl-detach", "v", "1").stderr == "Error: Device 1 not connected.\n"
    assert host.run("vdispl-detach", "v", "0").returncode == 0
    assert host.run("xenstore-read", "/local/domain/1/device/vdispl").returncode == 1
    assert host.run("vdispl-list", "v").stdout == ""
