"""`pyxl restore` reads and checks a save file's header as xl does (xl.h
struct save_file_header; xl_vmcontrol.c create_domain): compared with the
real xl, which does all of this before touching the hypervisor."""

from __future__ import annotations

import struct
import subprocess

import pytest

MAGIC = b"Xen saved domain, xl format\n \0 \r"


def header(byteorder=0x01020304, mandatory=3, optional=0, optlen=0):
    return MAGIC + struct.pack("=IIII", byteorder, mandatory, optional, optlen)


FILES = {
    "short": b"short",
    "magic": b"x" * 64,
    "order": header(byteorder=0x04030201),
    "flags": header(mandatory=0x13),
    "optdata": header(optlen=100) + b"\0" * 10,
    "configlen": header(optlen=8) + struct.pack("=I", 50) + b"abcd",
    "dir": None,
}


@pytest.mark.parametrize("name", sorted(FILES) + ["missing"])
def test_restore_checks_the_file_as_xl(host, tmp_path, name):
    from oracle.xl import XL, _need_xl, xl_env

    _need_xl()
    path = tmp_path / name
    if name == "dir":
        path.mkdir()
    elif name != "missing":
        path.write_bytes(FILES[name])
    want = subprocess.run([XL, "restore", str(path)], capture_output=True, text=True,
                          env=xl_env(), timeout=60)
    got = host.run("restore", str(path))
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout,
                                                        want.stderr)


def test_a_file_xl_accepts_is_refused_after_its_checks(host, tmp_path):
    path = tmp_path / "ok"
    path.write_bytes(header(optlen=4) + struct.pack("=I", 0))
    p = host.run("restore", str(path))
    assert p.returncode == 1
    assert p.stderr == ("Loading new save file %s (new xl fmt info 0x3/0x0/4)\n"
                        " Savefile contains xl domain config in JSON format\n"
                        "pyxl: command restore is not available on the simulated host\n" % path)


@pytest.mark.parametrize("name", ["empty", "short", "magic", "order", "optdata"])
def test_migrate_receive_reads_its_stream_as_xl(host, name):
    """migrate_receive (xl_migrate.c): the banner on stdout, the stream on
    stdin read as create_domain reads a restore."""
    from oracle.xl import XL, _need_xl, xl_env

    _need_xl()
    data = {"empty": b"", "short": b"short", "magic": b"x" * 64,
            "order": header(byteorder=0x04030201), "optdata": header(optlen=100) + b"ab"}[name]
    want = subprocess.run([XL, "migrate-receive"], input=data, capture_output=True,
                          env=xl_env(), timeout=60)
    got = subprocess.run(host.pyxl_cmd + ["migrate-receive"], input=data, capture_output=True,
                         env=host.env, timeout=60)
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout,
                                                        want.stderr)
