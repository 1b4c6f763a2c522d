"""vsnd-attach, vsnd-list, vsnd-detach end to end through `pyxl` on a private
host; the card's directories read back with Xen's xenstore-ls.

Expected values are libxl 4.17's (RELEASE-4.17.5 tools/libs/light/libxl_vsnd.c:
libxl__set_xenstore_vsnd and its helpers, libxl__vsnd_from_xenstore,
libxl_device_vsnd_getinfo; libxl_device.c libxl__device_generic_add and
device_backend_callback) and xl's (tools/xl/xl_vsnd.c main_vsndlist and
print_params, whose formats are labelled "sample-rates").
"""

from __future__ import annotations

from test_devices_block_nic import values, xenstore_ls


def test_vsnd_attach_list_detach(host):
    assert host.create("s").returncode == 0                    # domid 1
    host.env["PYXL_DEVICE_TIMEOUT"] = "0.3"
    # no sound backend in dom0: libxl's timeout, the card left in place
    p = host.run("vsnd-attach", "s", "card,short-name=SN,long-name=Long,sample-rates=8000;48000",
                 "pcm,name=P0,channels-max=2,sample-formats=s16_le;u8",
                 "stream,unique-id=S0,type=p,buffer-size=0x100", "stream,type=c")
    assert (p.returncode, p.stderr.splitlines()) == (253, [
        "libxl: error: libxl_device.c:1181:device_backend_callback: Domain 1:unable to add"
        " device with path /local/domain/0/backend/vsnd/1/0",
        "libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain 1:Unable to add"
        " vsnd with id 0",
        "libxl_device_vsnd_add failed."])
    fe = xenstore_ls(host, "/local/domain/1/device/vsnd")
    assert fe["0"][1] == "n1,r0" and fe["0/0/1/type"][1] == "n1,r0"
    assert values(fe, "0") == {
        "backend": "/local/domain/0/backend/vsnd/1/0", "backend-id": "0", "state": "1",
        "long-name": "Long", "short-name": "SN", "sample-rates": "8000,48000", "0": ""}
    assert values(fe, "0/0") == {"name": "P0", "sample-formats": "s16_le,u8",
                                 "channels-max": "2", "0": "", "1": ""}
    assert values(fe, "0/0/0") == {"unique-id": "S0", "type": "p", "buffer-size": "256"}
    assert values(fe, "0/0/1") == {"type": "c"}
    assert values(xenstore_ls(host, "/local/domain/0/backend/vsnd/1"), "0") == {
        "frontend": "/local/domain/1/device/vsnd/0", "frontend-id": "1", "online": "1",
        "state": "1"}
    p = host.run("vsnd-list", "s", "nosuch")
    assert p.stdout.splitlines() == [
        "",
        "devid: 0, be-domid: 0, handle: 1, state: 1, be-path: /local/domain/0/backend/vsnd/1/0,"
        " fe-path: /local/domain/1/device/vsnd/0",
        'short-name: "SN", long-name: "Long", sample-rates: 8000;48000',
        '\tpcm: 0, name: "P0", channels-max: 2, sample-rates: s16_le;u8',
        '\t\tstream: 0, unique-id: "S0", type: p, buffer-size: 256',
        "\t\t\tevent-channel: -1, ring-ref: -1",
        '\t\tstream: 1, unique-id: "(null)", type: c',
        "\t\t\tevent-channel: -1, ring-ref: -1"]
    assert p.stderr == "nosuch is an invalid domain identifier\n"
    assert host.run("vsnd-detach", "s", "1").stderr == "Error: Device 1 not connected.\n"
    assert host.run("vsnd-detach", "s", "0").returncode == 0
    assert host.run("xenstore-read", "/local/domain/1/device/vsnd").returncode == 1
    assert host.run("vsnd-list", "s").stdout == ""
