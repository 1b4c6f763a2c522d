"""`pyxl restore` and `pyxl migrate-receive` read a save file or stream as
xl does: xl's header (xl.h struct save_file_header; xl_vmcontrol.c
create_domain), compared with the real xl, which does all of this before
touching the hypervisor; then, past it, libxl's stream
(libxl_stream_read.c) and libxc's (xg_sr_restore.c), the streams written
here from Xen's docs/specs/libxl-migration-stream.pandoc and
libxc-migration-stream.pandoc, the expected messages from Xen 4.17's
source, their positions and formats read from Debian's libxenlight and
libxenguest (libxl_lines.py)."""

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


CONFIG = b'{"c_info":{"type":"pv","name":"rs"},"b_info":{"max_memkb":65536,' \
    b'"target_memkb":65536}}\0'


def xl_part(config=CONFIG):
    """xl's header and optional data, as save_domain_core_writeconfig writes them."""
    optdata = struct.pack("=I", len(config)) + config
    return header(optlen=len(optdata)) + optdata


def libxl_header(ident=0x4C6962786C466D74, version=2, options=0):
    return struct.pack(">QII", ident, version, options)     # big-endian, as the spec says


def record(rtype, body=b""):
    """A record of either stream: type, length, the body padded to 8 bytes."""
    return struct.pack("=II", rtype, len(body)) + body + bytes(-len(body) % 8)


def image_header(marker=(1 << 64) - 1, ident=0x58454E46, version=3, options=0):
    return struct.pack("<Q", marker) + struct.pack(">IIH", ident, version, options) + bytes(6)


def domain_header(gtype=1, page_shift=12, major=4, minor=17):
    return struct.pack("=IHHII", gtype, page_shift, 0, major, minor)


# what `pyxl save` writes (xl's part, libxl's header, LIBXC_CONTEXT, libxc's headers)
SAVED = xl_part() + libxl_header() + record(1) + image_header() + domain_header()


def _at(fmt):
    """FILE:LINE:FUNC of a libxl_stream_read.c message in Debian's libxenlight."""
    from libxl_lines import line_of

    funcs = {"restoring domain": "libxl__xc_domain_restore_done"}
    func = funcs.get(fmt, "process_record" if "record" in fmt.lower()
                     else "stream_header_done")
    return "libxl_stream_read.c:%d:%s" % (line_of(fmt), func)


def _xc_formats(*fmts):
    """Each libxc message is a format string of Debian's libxenguest."""
    from libxl_lines import LIBXENGUEST

    guest = open(LIBXENGUEST, "rb").read()
    for fmt in fmts:
        assert b"\0" + fmt.encode() + b"\0" in guest, fmt


def _failed(domid, *lines):
    """domcreate_rebuild_done, then xl's error_out destroying the domain
    libxl's domcreate_complete has destroyed (libxl_domain.c)."""
    from libxl_lines import line_of

    return list(lines) + [
        "libxl: error: libxl_create.c:%d:domcreate_rebuild_done: Domain %d:"
        "cannot (re-)build domain: -3" % (line_of("cannot (re-)build domain: %d"), domid),
        "libxl: error: libxl_domain.c:%d:libxl__destroy_domid: Domain %d:Non-existant domain"
        % (line_of("Non-existant domain"), domid),
        "libxl: error: libxl_domain.c:%d:domain_destroy_callback: Domain %d:"
        "Unable to destroy guest" % (line_of("Unable to destroy guest"), domid),
        "libxl: error: libxl_domain.c:%d:domain_destroy_cb: Domain %d:"
        "Destruction of domain failed" % (line_of("Destruction of domain failed"), domid)]


def _prologue(source):
    return ["Loading new save file %s (new xl fmt info 0x3/0x0/%d)"
            % (source, len(xl_part()) - len(header())),
            " Savefile contains xl domain config in JSON format",
            "Parsing config from <saved>"]


XC_HEAD = ["xc: info: Found x86 PV domain from Xen 4.17", "xc: info: Restoring domain"]
XC_EOF = ["xc: error: Failed to read Record Header from stream (0 = Success): Internal error",
          "xc: error: Restore failed (0 = Success): Internal error"]


def _next_domid(host):
    """The domid the next domain gets (the host's domids only go up)."""
    assert host.create("probe").returncode == 0
    domid = host.domains()["probe"]["domid"]
    assert host.run("destroy", "probe").returncode == 0
    return domid + 1


def test_the_stream_pyxl_save_writes_fails_at_libxcs_first_record(host, tmp_path):
    """xc_domain_restore reads the image and domain headers, runs
    x86_pv_setup and hits the end of the stream in read_record; the
    helper's failure reaches libxl__xc_domain_restore_done (errno 0), then
    domcreate_rebuild_done, and the domain is destroyed: nothing is left,
    its domid is used.  xl itself agrees up to where it needs Xen."""
    from oracle.xl import XL, _need_xl, xl_env

    _need_xl()
    _xc_formats("Found %s domain from Xen %u.%u", "Restoring domain",
                "Failed to read Record Header from stream (%d = %s)", "Restore failed (%d = %s)")
    path = tmp_path / "rs.save"
    path.write_bytes(SAVED)
    domid = _next_domid(host)
    p = host.run("restore", path)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr.splitlines() == _prologue(path) + _failed(
        domid, *XC_HEAD, *XC_EOF, "libxl: error: %s: restoring domain: Success"
        % _at("restoring domain"))
    assert "rs" not in host.domains()
    assert _next_domid(host) == domid + 2           # rs's domid, then the probe's
    want = subprocess.run([XL, "restore", str(path)], capture_output=True, text=True,
                          env=xl_env(), timeout=60)
    assert want.stderr.splitlines()[:3] == p.stderr.splitlines()[:3]


LIBXL_BAD = {
    "ident": (libxl_header(ident=0x1122334455667788),
              ["Invalid ident: expected 0x%016lx, got 0x%016lx",
               "Invalid ident: expected 0x4c6962786c466d74, got 0x1122334455667788"]),
    # the datacopier takes the end of the file as the end of the read: the
    # five bytes read, the rest of the (zeroed) header 0
    "truncated": (libxl_header()[:5],
                  ["Invalid ident: expected 0x%016lx, got 0x%016lx",
                   "Invalid ident: expected 0x4c6962786c466d74, got 0x4c6962786c000000"]),
    "empty": (b"", ["Invalid ident: expected 0x%016lx, got 0x%016lx",
                    "Invalid ident: expected 0x4c6962786c466d74, got 0x0000000000000000"]),
    "version": (libxl_header(version=3),
                ["Unexpected Version: expected %u, got %u", "Unexpected Version: expected 2, got 3"]),
    "big-endian": (libxl_header(options=1),
                   ["Unable to handle big endian streams", "Unable to handle big endian streams"]),
    "record": (libxl_header() + record(0x77, b"abc"),
               ["Unrecognised record 0x%08x", "Unrecognised record 0x00000077"]),
    "emulator": (libxl_header() + record(3),
                 ["Received an emulator context record when none was expected"] * 2),
    "checkpoint-end": (libxl_header() + record(4),
                       ["Unexpected CHECKPOINT_END record in stream"] * 2),
}


@pytest.mark.parametrize("name", sorted(LIBXL_BAD))
def test_a_bad_libxl_stream_fails_with_libxls_message(host, tmp_path, name):
    data, (fmt, text) = LIBXL_BAD[name]
    path = tmp_path / name
    path.write_bytes(xl_part() + data)
    domid = _next_domid(host)
    p = host.run("restore", path)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr.splitlines() == _prologue(path) + _failed(
        domid, "libxl: error: %s: %s" % (_at(fmt), text))


FOUND = ["Found x86 PV domain from Xen 4.17"]
XC_BAD = {
    "marker": (image_header(marker=7), [], "Invalid marker: Got 0x%016lx",
               "Invalid marker: Got 0x0000000000000007"),
    "id": (image_header(ident=0x58454E47), [], "Invalid ID: Expected 0x%08x, Got 0x%08x",
           "Invalid ID: Expected 0x58454e46, Got 0x58454e47"),
    "version": (image_header(version=4), [], "Invalid Version: Expected 2 <= ver <= 3, Got %d",
                "Invalid Version: Expected 2 <= ver <= 3, Got 4"),
    "big-endian": (image_header(options=1), [], "Unable to handle big endian streams",
                   "Unable to handle big endian streams"),
    "short-image": (image_header()[:10], [], "Failed to read Image Header from stream (%d = %s)",
                    "Failed to read Image Header from stream (0 = Success)"),
    "short-domain": (image_header() + domain_header()[:3], [],
                     "Failed to read Domain Header from stream (%d = %s)",
                     "Failed to read Domain Header from stream (0 = Success)"),
    "hvm": (image_header() + domain_header(gtype=2), ["Found x86 HVM domain from Xen 4.17"],
            "Unable to restore %s domain into an x86_pv domain",
            "Unable to restore x86 HVM domain into an x86_pv domain"),
    "page": (image_header() + domain_header(page_shift=13), FOUND,
             "Invalid page size %d for x86_pv domains", "Invalid page size 8192 for x86_pv domains"),
    "length": (image_header() + domain_header() + struct.pack("=II", 1, (128 << 20) + 1),
               FOUND, "Record (0x%08x, %s) length %#x exceeds max (%#x)",
               "Record (0x00000001, Page data) length 0x8000001 exceeds max (0x8000000)"),
    "body": (image_header() + domain_header() + struct.pack("=II", 2, 8) + b"abc",
             FOUND, "Failed to read %zu bytes of data for record (0x%08x, %s) (%d = %s)",
             "Failed to read 8 bytes of data for record (0x00000002, x86 PV info) (0 = Success)"),
    # process_record: nothing of the PV restore handles an HVM context
    "unhandled": (image_header() + domain_header() + record(9, b"ctx"), FOUND,
                  "Mandatory record %#x (%s) not handled",
                  "Mandatory record 0x9 (HVM context) not handled"),
    "checkpoint": (image_header() + domain_header() + record(0x0E), FOUND,
                   "Found checkpoint in non-checkpointed stream",
                   "Found checkpoint in non-checkpointed stream"),
    # a VERIFY record and an optional one are passed over (at debug level)
    "optional": (image_header() + domain_header() + record(0x0D) + record(0x80000123, b"x"),
                 FOUND, "Failed to read Record Header from stream (%d = %s)",
                 "Failed to read Record Header from stream (0 = Success)"),
}


@pytest.mark.parametrize("name", sorted(XC_BAD))
def test_a_bad_libxc_stream_fails_with_libxcs_message(host, tmp_path, name):
    """read_headers' checks end xc_domain_restore at once; the setup's and
    read_record's go through restore()'s "Restore failed"."""
    data, info, fmt, text = XC_BAD[name]
    _xc_formats(fmt)
    path = tmp_path / name
    path.write_bytes(xl_part() + libxl_header() + record(1) + data)
    domid = _next_domid(host)
    p = host.run("restore", path)
    assert (p.returncode, p.stdout) == (1, "")
    xc = ["xc: info: " + line for line in info]
    if info:                                     # past read_headers: restore()
        xc += ["xc: info: Restoring domain", "xc: error: %s: Internal error" % text,
               "xc: error: Restore failed (0 = Success): Internal error"]
    else:
        xc += ["xc: error: %s: Internal error" % text]
    assert p.stderr.splitlines() == _prologue(path) + _failed(
        domid, *xc, "libxl: error: %s: restoring domain: Success" % _at("restoring domain"))


def test_a_saved_guests_memory_is_refused_in_one_line(host, tmp_path):
    """A stream with libxc records (a real Xen host's save: X86_PV_INFO
    first) needs guest memory the simulated host does not have."""
    path = tmp_path / "real"
    path.write_bytes(SAVED + record(2, struct.pack("=BBH", 8, 4, 0)) + record(0))
    domid = _next_domid(host)
    p = host.run("restore", path)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr.splitlines() == _prologue(path) + XC_HEAD + [
        "pyxl: the simulated host cannot restore domain %d: the domain's memory and vCPU"
        " state cannot be loaded" % domid]
    assert "rs" not in host.domains()


def test_restore_of_a_running_domains_save_fails_on_its_name(host, tmp_path):
    """libxl__domain_make: the name is taken (the domain whose save failed
    goes on running); the stream is not read."""
    from libxl_lines import destroyed_again

    assert host.create("rs").returncode == 0
    domid = host.domains()["rs"]["domid"] + 1
    path = tmp_path / "rs.save"
    path.write_bytes(SAVED)
    p = host.run("restore", path)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr.splitlines()[3:] == [
        'libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain %d:'
        'Domain with name "rs" already exists.' % domid,
        "libxl: error: libxl_create.c:1296:initiate_domain_create: Domain %d:"
        "cannot make domain: -6" % domid] + destroyed_again(domid)


def test_migrate_receive_restores_to_the_incoming_name_and_says_it_failed(host):
    """migrate_receive: create_domain with the config's name + "--incoming"
    (a domain of that name is in the way here), then "Domain creation
    failed"; and the stream pyxl migrate sends before its suspend fails."""
    assert host.create("rs--incoming").returncode == 0
    got = subprocess.run(host.pyxl_cmd + ["migrate-receive"], input=SAVED, capture_output=True,
                         env=host.env, timeout=60)
    assert (got.returncode, got.stdout) == (
        1, b"xl migration receiver ready, send binary domain data.\n")
    lines = got.stderr.decode().splitlines()
    assert lines[0] == "migration target: Ready to receive domain."
    assert lines[-6].endswith(':Domain with name "rs--incoming" already exists.')
    assert lines[-2].endswith(":Destruction of domain failed")
    assert lines[-1] == "migration target: Domain creation failed (code -3)."
    assert host.run("destroy", "rs--incoming").returncode == 0
    domid = _next_domid(host)
    got = subprocess.run(host.pyxl_cmd + ["migrate-receive"], input=SAVED, capture_output=True,
                         env=host.env, timeout=60)
    assert got.returncode == 1
    assert got.stderr.decode().splitlines() == (
        ["migration target: Ready to receive domain."]
        + _prologue("<incoming migration stream>")
        + _failed(domid, *XC_HEAD, *XC_EOF,
                  "libxl: error: %s: restoring domain: Success" % _at("restoring domain"))
        + ["migration target: Domain creation failed (code -3)."])


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


def test_migrate_receive_colo_of_a_pv_domain_fails_before_the_stream(host):
    """domcreate_bootloader_done: "COLO only supports HVM" (checked before
    libxl_no_colo.c would say COLO is not there at all)."""
    from libxl_lines import line_of

    domid = _next_domid(host)
    got = subprocess.run(host.pyxl_cmd + ["migrate-receive", "--colo"], input=SAVED,
                         capture_output=True, env=host.env, timeout=60)
    assert got.returncode == 1
    assert got.stderr.decode().splitlines() == (
        ["migration target: Ready to receive domain."]
        + _prologue("<incoming migration stream>")
        + _failed(domid, "libxl: error: libxl_create.c:%d:domcreate_bootloader_done: Domain %d:"
                  "COLO only supports HVM, unable to restore domain"
                  % (line_of("COLO only supports HVM, unable to restore domain"), domid))
        + ["migration target: Domain creation failed (code -3)."])
