"""`pyxl create` from real config files, through the config layer."""

from __future__ import annotations

import pexpect

from ts_host import expect


def write_cfg(tmp_path, host, name, extra=""):
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text('name="%s"\nkernel="%s"\nmemory=64\nvcpus=1\nextra="console=hvc0"\n%s'
                   % (name, host.kernel, extra))
    return cfg


def test_create_from_a_file_with_overrides(host, tmp_path):
    cfg = write_cfg(tmp_path, host, "domu")
    p = host.run("create", cfg, "memory=96", 'name="other"')
    assert p.returncode == 0, p.stderr
    assert p.stderr == "Parsing config from %s\n" % cfg
    doms = host.domains()
    assert doms["other"]["mem"] == 96
    # the stored config is the libxl JSON of what was parsed
    out = host.run("list", "-l", "other").stdout
    assert '"kernel": "%s"' % host.kernel in out and '"name": "other"' in out
    p = host.run("create", "-q", cfg)
    assert (p.returncode, p.stderr) == (0, "")
    p = host.run("create", cfg)
    assert p.returncode == 3
    assert p.stderr.startswith("Parsing config from %s\nlibxl: error: " % cfg)
    assert "cannot make domain: -6\n" in p.stderr
    # xl_vmcontrol.c error_out: libxl_domain_destroy of the domain libxl destroyed
    assert p.stderr.endswith(":Destruction of domain failed\n")


def test_create_with_unknown_vtpm_backend(host, tmp_path):
    cfg = write_cfg(tmp_path, host, "domu", 'vtpm=["backend=domu-vtpm"]\n')
    p = host.run("create", cfg)
    assert (p.returncode, p.stderr) == (
        1, "Parsing config from %s\nSpecified vtpm backend domain `domu-vtpm' does not exist!\n" % cfg)


def test_create_c_attaches_console(host, tmp_path):
    cfg = write_cfg(tmp_path, host, "domu")
    child = pexpect.spawn(host.pyxl_cmd[0], host.pyxl_cmd[1:] + ["create", "-c", str(cfg)],
                          env=host.env, timeout=15, encoding="utf-8")
    expect(child, "Parsing config from", host)
    expect(child, "Command line: console=hvc0", host)
    expect(child, "root@domu:~# ", host)
    child.send("uname -r\r")
    expect(child, "6.1.0-18-amd64\r\n", host)
    child.send("\x1d")
    expect(child, pexpect.EOF, host)
    child.close()
    assert child.exitstatus == 0
    assert "domu" in host.domains()


def test_create_F_follows_the_domain_until_it_is_gone(host, tmp_path):
    cfg = write_cfg(tmp_path, host, "fg")
    child = pexpect.spawn(host.pyxl_cmd[0], host.pyxl_cmd[1:] + ["create", "-F", str(cfg)],
                          env=host.env, timeout=15, encoding="utf-8")
    expect(child, r"Waiting for domain fg \(domid 1\) to die", host)
    host.wait_for(lambda: "login:" in host.console_log("fg"), what="boot")
    assert host.run("shutdown", "fg").returncode == 0
    expect(child, "Domain 1 has shut down, reason code 0 0x0", host)
    expect(child, "Done. Exiting now", host)
    expect(child, pexpect.EOF, host)
    child.close()
    assert child.exitstatus == 0
    assert "fg" not in host.domains()


# -- bounds: what libxl and Xen 4.17 refuse, and what pyxl cannot take ----------
# Expected texts are libxl 4.17's (tools/libs/light at RELEASE-4.17.5; the
# line numbers Debian's libxenlight.so.4.17.0 passes to libxl__log, two more
# in libxl_create.c): libxl__domain_build_info_setdefault refuses an
# avail_vcpus bitmap of more than HVM_MAX_VCPUS (128) *bytes*, i.e. vcpus >
# 1024; Xen's arch_sanitise_domain_config refuses max_vcpus > MAX_VIRT_CPUS
# (8192) for PV with EINVAL, which libxl__domain_make (libxl_create.c:711)
# logs as "domain creation fail" and initiate_domain_create (:1296) as
# "cannot make domain: -3"; xl create exits 3 (-ERROR_FAIL).

def test_vcpus_100000_is_refused_as_libxl_refuses_it(host, tmp_path):
    cfg = write_cfg(tmp_path, host, "big", "vcpus=100000\n")
    p = host.run("create", cfg)
    assert (p.returncode, p.stderr) == (3, (
        "Parsing config from %s\n"
        "libxl: error: libxl_create.c:220:libxl__domain_build_info_setdefault:"
        " avail_vcpus bitmap contains too many VCPUS\n"
        "libxl: error: libxl_create.c:1241:libxl__domain_config_setdefault:"
        " Unable to set domain build info defaults\n") % cfg)
    assert "big" not in host.domains()
    p = host.run("create", cfg, "vcpus=1025")      # 129 bytes of bitmap
    assert p.returncode == 3 and "too many VCPUS" in p.stderr


def test_vcpus_up_to_the_limits_are_taken_and_beyond_the_hypervisors_refused(host, tmp_path):
    cfg = write_cfg(tmp_path, host, "wide")
    p = host.run("create", cfg, "vcpus=1024")
    assert p.returncode == 0, p.stderr
    assert host.domains()["wide"]["vcpus"] == 1024
    p = host.run("xenstore-read", "/local/domain/1/cpu/1023/availability")
    assert p.stdout == "online\n"
    p = host.run("create", cfg, 'name="wider"', "maxvcpus=8192")
    assert p.returncode == 0, p.stderr
    assert host.domains()["wider"]["vcpus"] == 8192
    p = host.run("create", cfg, 'name="too-wide"', "maxvcpus=8193")
    assert (p.returncode, p.stderr) == (3, (
        "Parsing config from %s\n"
        "libxl: error: libxl_create.c:711:libxl__domain_make: domain creation fail:"
        " Invalid argument\n"
        "libxl: error: libxl_create.c:1296:initiate_domain_create: cannot make domain: -3\n"
        # domcreate_complete destroys guest_domid, INVALID_DOMID: not found, reported
        # without "Domain N:"; xl gets INVALID_DOMID and destroys nothing more
        "libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Non-existant domain\n"
        "libxl: error: libxl_domain.c:1137:domain_destroy_callback: Unable to destroy guest\n"
        "libxl: error: libxl_create.c:2051:domcreate_destruction_cb:"
        " unable to destroy domain following failed creation\n") % cfg)
    assert "too-wide" not in host.domains()


def test_a_name_pyxl_cannot_take_is_a_clear_error(host, tmp_path):
    """libxl takes any bytes (xl -N prints them raw) and any length that
    fits a xenstore message; pyxl refuses, with one line and nothing made,
    a name that is not UTF-8, and takes a long one."""
    cfg = tmp_path / "odd.cfg"
    cfg.write_bytes(b'name="ab\xffcd"\nkernel="%s"\nmemory=64\n' % host.kernel.encode())
    p = host.run("create", cfg)
    assert (p.returncode, p.stderr) == (1, (
        "Parsing config from %s\n"
        "pyxl: the domain name 'ab\\xffcd' is not valid UTF-8: libxl would take its bytes"
        " as they are, but pyxl cannot represent such a name\n") % cfg)
    # a name longer than a file name may be is taken, as libxl takes it: the
    # log files named after it stay within NAME_MAX (fsutil.safe_name)
    long = "n" * 300
    p = host.run("create", write_cfg(tmp_path, host, "x"), 'name="%s"' % long)
    assert (p.returncode, "Traceback" in p.stderr) == (0, False), p.stderr
    assert host.run("destroy", long).returncode == 0
    assert set(host.domains()) == {"Domain-0"}
    assert "Traceback" not in p.stderr
    # the same rules for xl rename
    assert host.run("create", write_cfg(tmp_path, host, "x")).returncode == 0
    p = host.run("rename", "x", "ab\udcffcd")
    assert p.returncode == 1 and "is not valid UTF-8" in p.stderr, p.stderr
    assert host.run("rename", "x", long).returncode == 0
    assert set(host.domains()) == {"Domain-0", long}


def test_a_megabyte_of_extra_is_taken_as_xen_takes_it(host, tmp_path):
    """libxl__build_post ignores a failed write of image/cmdline (too long
    for one xenstore message) and the domain builder copies at most
    MAX_GUEST_CMDLINE - 1 = 1023 bytes into start_info (xg_dom_x86.c)."""
    cfg = tmp_path / "mega.cfg"
    cfg.write_text('name="mega"\nkernel="%s"\nmemory=64\nextra="%s"\n'
                   % (host.kernel, "console=hvc0 " + "x" * (1 << 20)))
    p = host.run("create", cfg)
    assert (p.returncode, p.stderr) == (0, "Parsing config from %s\n" % cfg)
    domid = host.domains()["mega"]["domid"]
    vm = host.run("xenstore-read", "/local/domain/%d/vm" % domid).stdout.strip()
    p = host.run("xenstore-read", vm + "/image/cmdline")
    assert p.returncode == 1                          # not recorded
    host.wait_for(lambda: "Command line: " in host.console_log("mega"), what="boot")
    line = next(x for x in host.console_log("mega").splitlines() if "Command line: " in x)
    assert line.split("Command line: ", 1)[1].rstrip("\r") == ("console=hvc0 " + "x" * 1010)


def test_a_name_too_long_for_xenstore_fails_as_libxl__domain_rename_does(tmp_path, monkeypatch):
    """A name is bounded by xs_write: path, NUL and name within
    XENSTORE_PAYLOAD_MAX."""
    import pyxl.toolstack.hostd as hostd
    from pyxl.toolstack import spawn
    from pyxl.toolstack.errors import Fault
    from pyxl.toolstack.paths import Paths

    paths = Paths(str(tmp_path))
    paths.make_dirs()
    st = hostd.HostState(paths, lambda m: None)
    try:
        name = "n" * (4096 - len("/local/domain/1/name"))       # one byte too many
        cfg = {"c_info": {"type": "pv", "name": name}, "b_info": {"max_memkb": 65536}}
        try:
            spawn.create(st, cfg)
            raise AssertionError("created")
        except Fault as f:
            assert (f.name, f.exit_code) == ("NAME_WRITE_FAILED", 3)
            assert f.message == (
                "libxl: error: libxl_domain.c:107:libxl__domain_rename: Domain 1:Failed to write"
                " new name `%s' for domain previously named `(null)'\n"
                "libxl: error: libxl_create.c:1296:initiate_domain_create: Domain 1:"
                "cannot make domain: -3\n" % name + "\n".join([
                    "libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain 1:"
                    "Non-existant domain",
                    "libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain 1:"
                    "Unable to destroy guest",
                    "libxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain 1:"
                    "Destruction of domain failed"]))
        assert [d.domid for d in st.guests()] == []
    finally:
        st.hv.close()
