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
    assert p.stderr.endswith("cannot make domain: -6\n")


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
