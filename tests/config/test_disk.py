"""disk= specs: the flex-style scanner of the 4.17 binary (pyxl/config/disk.py)."""

import pytest

from pyxl.config.disk import parse_disk
from pyxl.config.model import DiskBackend, DiskFormat, DiskSpecification


def ok(spec):
    errs = []
    d = parse_disk(spec, "t.cfg", errs)
    assert errs == [] and d is not None, errs
    return d


def err(spec):
    errs = []
    assert parse_disk(spec, "t.cfg", errs) is None
    return errs


def test_positional_target_format_vdev_access():
    d = ok("/dev/vg/a,qcow2,xvda,r")
    assert (d.pdev_path, d.format, d.vdev, d.readwrite) == ("/dev/vg/a", DiskFormat.QCOW2, "xvda", 0)


def test_deprecated_prefix_skips_the_format_slot_and_is_not_a_backend():
    d = ok("phy:/dev/sdb,xvdb,w")
    assert (d.pdev_path, d.vdev, d.readwrite, d.backend, d.format) == \
        ("/dev/sdb", "xvdb", 1, DiskBackend.UNKNOWN, DiskFormat.RAW)
    d = ok("tap2:vhd:/img,xvdc,r")
    assert d.format == DiskFormat.VHD and d.pdev_path == "/img"
    assert ok("drbd:res0,xvdd").script == "block-drbd"


def test_target_key_swallows_the_rest_including_commas():
    d = ok("vdev=xvda,access=ro,target=/a,b,c")
    assert d.pdev_path == "/a,b,c" and d.readwrite == 0


def test_keys_flags_and_colo():
    d = ok("/a,raw,xvda,w,backendtype=qdisk,backend=dom0,specification=virtio,discard,"
           "direct-io-safe,colo,colo-host=h,colo-port=7,active-disk=/x")
    assert d.backend == DiskBackend.QDISK and d.backend_domname == "dom0"
    assert d.specification == DiskSpecification.VIRTIO
    assert d.discard_enable is True and d.direct_io_safe and d.colo_enable
    assert (d.colo_host, d.colo_port, d.active_disk) == ("h", 7, "/x")


def test_cdrom_forms():
    d = ok(",hdc:cdrom,r")
    assert (d.pdev_path, d.vdev, d.is_cdrom, d.removable, d.format) == ("", "hdc", 1, 1, DiskFormat.EMPTY)
    d = ok("vdev=hdd,devtype=cdrom")
    assert d.pdev_path is None and d.removable == 1 and d.readwrite == 0


def test_trusted_is_positional_in_the_417_binary():
    assert err("vdev=xvda,trusted,target=/a") == [
        "t.cfg: config parsing error in disk specification: target respecified: "
        "near `/a' in `vdev=xvda,trusted,target=/a'"]
    assert "too many positional parameters: near `trusted'" in err("/a,raw,xvda,w,trusted")[0]


def test_unknown_parameter_reports_one_character_of_its_value():
    # flex matches [a-z][-a-z0-9]*=[^,],? -- one value character only
    assert "unknown parameter: near `foo=b'" in err("foo=bar,/a,xvda")[0]


def test_several_errors_are_reported_for_one_spec():
    errs = err("vdev=xvda,vdev=xvdb,format=raw,format=qcow,target=/a")
    assert [e.split(": ")[2] for e in errs] == ["vdev respecified", "format respecified"]


def test_missing_vdev_or_target():
    assert err("/a") == ["t.cfg: config parsing error in disk specification: no vdev specified in `/a'"]
    assert err("vdev=xvda")[0].endswith("no target specified (and device not removable) in `vdev=xvda'")


@pytest.mark.parametrize("spec,msg", [
    ("bogus:/a,xvda", "unknown deprecated disk prefix: near `bogus:'"),
    ("/a,raw,xvda,x", "unknown value for access: near `x'"),
    ("/a,zip,xvda", "unknown value for format: near `zip'"),
    ("/a,raw,xvda,devtype=floppy", "unknown value for type: near `devtype=floppy'"),
    ("/a,raw,xvda,colo-port=x", "unknown value for colo_port: near `x'"),
])
def test_error_messages(spec, msg):
    assert msg in err(spec)[0]


def test_a_bad_character_at_the_very_end_goes_unreported():
    # flex reaches the end of the buffer in its error state before the rule fires
    assert err("=") == ["t.cfg: config parsing error in disk specification: no vdev specified in `='"]
