"""Device wiring as libxl writes it, the vtpm handshake wait, vtpm-* commands."""

from __future__ import annotations

import re
import threading
import time

from pyxl.toolstack import devices


def ls(host, path):
    p = host.run("xenstore-ls", "-f", "-p", path)
    assert p.returncode == 0, p.stderr
    out = {}
    for line in p.stdout.splitlines():
        m = re.match(r'^(\S+) = "(.*)"   \((.*)\)$', line)   # xenstore-ls -f -p
        assert m, line
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def test_vdev_numbers_as_libxl():
    assert devices.vdev_to_devid("xvda") == 51712
    assert devices.vdev_to_devid("xvdb1") == 51729
    assert devices.vdev_to_devid("hda") == 768
    assert devices.vdev_to_devid("hdc") == 5632
    assert devices.vdev_to_devid("sda") == 2048


def test_domain_and_vbd_layout(host, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 1024 * 1024)
    cfg = host.config("vm", disks=[{"pdev_path": str(img), "vdev": "xvda", "format": "raw",
                                    "readwrite": 1}])
    assert host.create("vm", cfg=cfg).returncode == 0
    d = ls(host, "/local/domain/1")
    assert d["/local/domain/1/name"][0] == "vm"
    assert d["/local/domain/1/memory/target"][0] == "65536"
    assert d["/local/domain/1/control/shutdown"][1] == "n1"        # the guest owns it
    assert d["/local/domain/1/device/vbd/51712/backend"][0] == "/local/domain/0/backend/vbd/1/51712"
    assert d["/local/domain/1/device/vbd/51712/state"][0] == "1"
    uuid = host.domains()["vm"]["uuid"]
    vm = ls(host, "/vm/" + uuid)
    assert vm["/vm/%s/name" % uuid][0] == "vm"
    be = ls(host, "/local/domain/0/backend/vbd/1/51712")
    base = "/local/domain/0/backend/vbd/1/51712/"
    assert be[base + "params"][0] == str(img)
    assert be[base + "state"][0] == "2"                     # blkback opened the image
    assert be[base + "sectors"][0] == "2048"
    assert be[base + "frontend-id"][1] == "n0,r1"
    # destroy removes the frontend, the backend and /vm
    assert host.run("destroy", "vm").returncode == 0
    for path in ("/local/domain/1", "/local/domain/0/backend/vbd/1", "/vm/" + uuid):
        assert host.run("xenstore-read", path).returncode == 1


def test_vtpm_layout_and_backend_handshake(host):
    host.env["PYXL_DEVICE_TIMEOUT"] = "20"
    assert host.create("vtpmbe").returncode == 0          # domid 1, plays tpmback below
    be_dir = "/local/domain/1/backend/vtpm/2/0"
    done = {}

    def tpmback():          # what mini-os tpmback does when its watch fires: state 2
        for _ in range(500):
            if host.run("xenstore-read", be_dir + "/state").stdout == "1\n":
                host.run("xenstore-write", be_dir + "/state", "2", be_dir + "/feature-protocol-v2", "1")
                done["ok"] = True
                return
            time.sleep(0.02)

    t = threading.Thread(target=tpmback)
    t.start()
    uuid = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
    p = host.create("guest", vtpms=[{"backend_domname": "vtpmbe", "devid": 0, "uuid": uuid}])
    t.join()
    assert p.returncode == 0, p.stderr
    assert done.get("ok")
    fe = ls(host, "/local/domain/2/device/vtpm/0")
    f = "/local/domain/2/device/vtpm/0/"
    assert fe[f + "backend"][0] == be_dir
    assert fe[f + "backend-id"][0] == "1"
    assert fe[f + "handle"][0] == "0"
    assert fe[f + "state"] == ("1", "n2,r1")
    be = ls(host, be_dir)
    b = be_dir + "/"
    assert {k[len(b):]: v[0] for k, v in be.items()} == {
        "frontend": "/local/domain/2/device/vtpm/0", "frontend-id": "2", "online": "1",
        "state": "2", "handle": "0", "uuid": uuid, "resume": "False", "feature-protocol-v2": "1"}
    assert be[b + "uuid"][1] == "n1,r2"
    p = host.run("vtpm-list", "guest")
    assert p.stdout.splitlines() == [
        "Idx BE Uuid                                 handle state evt-ch ring-ref BE-path   ",
        "0   1  %s      0     1     -1       -1 %-30s" % (uuid, be_dir)]
    # detach: online=0, state=5; nobody closes, so libxl removes both dirs after the timeout
    host.env["PYXL_DEVICE_TIMEOUT"] = "0.2"


def test_vtpm_backend_must_exist(host):
    p = host.create("guest", vtpms=[{"backend_domname": "nosuch", "devid": 0}])
    assert (p.returncode, p.stderr) == (1, "Specified vtpm backend domain `nosuch' does not exist!\n")
    assert set(host.domains()) == {"Domain-0"}


def test_vtpm_backend_that_never_answers_times_out(host):
    host.env["PYXL_DEVICE_TIMEOUT"] = "0.3"
    assert host.create("mute").returncode == 0
    p = host.create("guest", vtpms=[{"backend_domname": "mute", "devid": 0}])
    assert p.returncode == 3
    assert "unable to add vtpm devices" in p.stderr
    assert "guest" not in host.domains()


def test_vtpm_attach_list_detach(host):
    host.env["PYXL_DEVICE_TIMEOUT"] = "0.3"
    assert host.create("g").returncode == 0
    uuid = "5f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
    # dom0 runs no tpmback: libxl gives up after the timeout
    p = host.run("vtpm-attach", "g", "uuid=" + uuid)
    assert (p.returncode, p.stderr.splitlines()[-1]) == (1, "libxl_device_vtpm_add failed.")
    assert host.run("vtpm-attach", "g", "uuid=nope").stderr == "Invalid uuid specified (nope)\n"
    assert host.run("vtpm-attach", "g", "frob=1").stderr == "unrecognized argument `frob=1'\n"
    assert host.run("vtpm-attach", "nosuch").stderr == "nosuch is an invalid domain identifier\n"
    # with a backend that answers, the device stays
    assert host.create("be").returncode == 0
    host.env["PYXL_DEVICE_TIMEOUT"] = "20"
    be_dir = "/local/domain/2/backend/vtpm/1/0"

    def tpmback():
        for _ in range(500):
            if host.run("xenstore-read", be_dir + "/state").stdout == "1\n":
                host.run("xenstore-write", be_dir + "/state", "2")
                return
            time.sleep(0.02)

    t = threading.Thread(target=tpmback)
    t.start()
    p = host.run("vtpm-attach", "g", "uuid=" + uuid, "backend=be")
    t.join()
    assert p.returncode == 0, p.stderr
    rows = host.run("vtpm-list", "g", "nosuch", "1")
    assert rows.stderr == "nosuch is an invalid domain identifier\n"
    assert len(rows.stdout.splitlines()) == 3 and uuid in rows.stdout
    assert host.run("vtpm-detach", "g", "7").stderr == "Unknown device 7.\n"
    host.env["PYXL_DEVICE_TIMEOUT"] = "0.3"
    p = host.run("vtpm-detach", "g", uuid)
    assert p.returncode == 0, p.stderr
    assert host.run("vtpm-list", "g").stdout.count("\n") == 1
    assert host.run("xenstore-read", be_dir + "/uuid").returncode == 1


def test_the_domain_gets_the_image_blkback_opened(host, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(b"IMAGE" + b"\0" * 4091)
    cfg = host.config("vm", disks=[{"pdev_path": str(img), "vdev": "hda", "format": "raw",
                                    "readwrite": 1}])
    assert host.create("vm", cfg=cfg).returncode == 0
    import os

    from ts_host import domain_pids

    pid = domain_pids(host.root)[host.domains()["vm"]["domid"]]

    def opened() -> list[str]:
        """What the domain's descriptors name now (one closed meanwhile --
        the starting process closes its spec's -- is skipped)."""
        out = []
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except FileNotFoundError:
                pass
        return out
    assert str(img) in opened()


def test_bytes_that_are_not_utf8_are_a_xenstore_answer_not_a_traceback(host):
    """xenstored takes any bytes in a value and refuses a path with a
    character outside [A-Za-z0-9/_@-] (EINVAL): neither is an internal error."""
    assert host.run("list").returncode == 0
    p = host.run("xenstore-write", "/local/domain/0/odd", "v\udcff")   # the byte 0xff
    assert (p.returncode, p.stderr) == (0, "")
    p = host.run("xenstore-write", "/local/domain/0/odd\udcff", "1")
    assert p.returncode == 1 and "internal error" not in p.stderr, p.stderr
