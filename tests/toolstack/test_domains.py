"""Domains end to end: create, list, errors, lifecycle, consoles (pexpect)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect

from ts_host import domain_pids, expect

ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([rbpscd-]{6})\s+(\d+\.\d)$")


def rows(out: str) -> dict[str, tuple]:
    lines = out.splitlines()
    assert lines[0] == "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    res = {}
    for line in lines[1:]:
        m = ROW.match(line)
        assert m, line
        assert len(line) == 40 + 1 + 5 + 1 + 5 + 1 + 5 + 5 + 6 + 2 + 8
        res[m.group(1)] = m.groups()[1:]
    return res


def domain_pid(host, dom):
    """The process of domain `dom`: a domid, or a name the daemon knows."""
    if isinstance(dom, str):
        d = host.domains().get(dom)
        if d is None:
            return None
        dom = d["domid"]
    return domain_pids(host.root).get(dom)


def test_create_list_destroy(host):
    p = host.create("web", memory=96)
    assert p.returncode == 0, p.stderr
    out = host.run("list")
    assert out.returncode == 0
    r = rows(out.stdout)
    assert r["web"][0] == "1" and r["web"][1] == "96" and r["web"][2] == "1"
    assert r["Domain-0"][0] == "0"
    assert host.run("domid", "web").stdout == "1\n"
    assert host.run("domname", "1").stdout == "web\n"
    assert host.run("destroy", "web").returncode == 0
    assert "web" not in rows(host.run("list").stdout)
    assert domain_pid(host, 1) is None
    # domids are not reused at once
    assert host.create("web").returncode == 0
    assert rows(host.run("list").stdout)["web"][0] == "2"


def test_list_cpupool_and_numa_columns(host):
    assert host.create("web").returncode == 0
    out = host.run("list", "-c", "-n").stdout.splitlines()
    assert out[0] == ("Name                                        ID   Mem VCPUs\tState\tTime(s)"
                      "         Cpupool NODE Affinity")
    web = [line for line in out if line.startswith("web ")][0]
    assert web.endswith("          Pool-0 all")
    assert host.run("list", "--cpupool", "web").stdout.splitlines()[1].endswith("          Pool-0")


def test_node_bitmap_like_xl_print_bitmap():
    from pyxl.cli.info import node_bitmap

    assert node_bitmap(range(4), 4) == "all"
    assert node_bitmap([], 4) == "none"
    assert node_bitmap([0, 1, 3], 5) == "0-1,3"
    assert node_bitmap([2], 4) == "2"


def test_duplicate_name_consumes_domid_exit_3(host):
    assert host.create("dup").returncode == 0
    p = host.create("dup")
    assert p.returncode == 3
    assert p.stderr.splitlines() == [
        'libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain 2:Domain with name "dup" already exists.',
        "libxl: error: libxl_create.c:1296:initiate_domain_create: Domain 2:cannot make domain: -6",
        # xl_vmcontrol.c error_out destroys the domain libxl has destroyed
        "libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain 2:Non-existant domain",
        "libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain 2:"
        "Unable to destroy guest",
        "libxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain 2:"
        "Destruction of domain failed"]
    assert host.create("other").returncode == 0
    assert host.domains()["other"]["domid"] == 3


def test_unknown_domains_get_xl_messages(host):
    cases = [
        (("list", "nosuch"), 1, "nosuch is an invalid domain identifier (rc=-6)\n"),
        (("list", "42"), 1, "Error: Domain '42' does not exist.\n"),
        (("destroy", "nosuch"), 1, "nosuch is an invalid domain identifier (rc=-6)\n"),
        (("domid", "nosuch"), 1,
         "Can't get domid of domain name 'nosuch', maybe this domain does not exist.\n"),
        (("domname", "42"), 1,
         "Can't get domain name of domain id '42', maybe this domain does not exist.\n"),
        (("domname", "x"), 1, "Invalid domain id.\n\n"),
        (("pause", "nosuch"), 1, "nosuch is an invalid domain identifier (rc=-6)\n"),
        # main_pause ignores the result; libxl_domain.c libxl_domain_pause logs it
        (("pause", "42"), 0, "libxl: error: libxl_domain.c:587:libxl_domain_pause:"
         " Domain 42:Pausing domain: No such process\n"),
        (("shutdown",), 1, "You must specify -a or a domain id.\n\n"),
        (("vtpm-list", "nosuch"), 0, "nosuch is an invalid domain identifier\n"),
        (("destroy", "0"), 1, "Not destroying domain 0; use -f to force.\n"
         "This can only be done when using a disaggregated hardware domain and toolstack.\n\n"),
    ]
    for args, rc, err in cases:
        p = host.run(*args)
        assert (p.returncode, p.stderr) == (rc, err), args


def test_memory_is_accounted(host):
    host.env["PYXL_HOST_MEMORY"] = "2048"     # 2 GiB host: 512 MiB dom0, the rest for guests
    assert host.create("big", memory=1024).returncode == 0
    p = host.create("toobig", memory=1024)
    assert (p.returncode, p.stderr) == (3, "failed to free memory for the domain\n")
    info = dict(l.split(" : ", 1) for l in host.run("info").stdout.splitlines())
    assert info["total_memory          "].strip() == "2048"
    free = int(info["free_memory           "])
    assert 0 < free < 1024
    host.run("destroy", "big")
    assert host.create("toobig", memory=1024).returncode == 0


def test_missing_kernel_and_disk(host, tmp_path):
    cfg = host.config("nok")
    cfg["b_info"]["kernel"] = str(tmp_path / "no-such-kernel")
    p = host.create("nok", cfg=cfg)
    assert p.returncode == 3
    assert "failed to open file '%s'" % cfg["b_info"]["kernel"] in p.stderr
    assert "cannot (re-)build domain: -3" in p.stderr
    cfg = host.config("nodisk", disks=[{"pdev_path": str(tmp_path / "no.img"), "vdev": "xvda",
                                        "format": "raw", "readwrite": 1}])
    p = host.create("nodisk", cfg=cfg)
    assert p.returncode == 3
    assert "Disk vdev=xvda failed to stat: %s: No such file or directory" % (tmp_path / "no.img") \
        in p.stderr
    assert set(host.domains()) == {"Domain-0"}


def test_pause_unpause_and_create_paused(host):
    assert host.create("p1", "-p").returncode == 0
    assert host.domains()["p1"]["state"] == "--p---"
    assert host.console_log("p1") == ""          # not one instruction ran
    host.run("unpause", "p1")
    host.wait_for(lambda: "login:" in host.console_log("p1"), what="boot after unpause")
    host.run("pause", "p1")
    assert host.domains()["p1"]["state"] == "--p---"
    host.run("unpause", "p1")
    assert host.domains()["p1"]["state"] in ("-b----", "r-----")


def test_rename(host):
    assert host.create("a").returncode == 0
    assert host.create("b").returncode == 0
    p = host.run("rename", "a", "b")
    assert p.returncode == 1
    assert p.stderr.endswith("Can't rename domain 'a'.\n")
    assert host.run("rename", "a", "c").returncode == 0
    assert set(host.domains()) == {"Domain-0", "b", "c"}


def test_concurrent_creates_lose_nothing(host):
    assert host.run("list").returncode == 0
    procs = [subprocess.Popen(host.mkdom_argv("c%d" % i), env=host.env, stderr=subprocess.PIPE)
             for i in range(8)]
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read()
    doms = host.domains()
    assert {"c%d" % i for i in range(8)} <= set(doms)
    assert len({d["domid"] for d in doms.values()}) == 9
    state = json.loads(Path(host.root, "var/lib/pyxl/domains.json").read_text())
    assert {d["name"] for d in state["domains"]} == {"c%d" % i for i in range(8)}


def spawn_console(host, *args):
    child = pexpect.spawn(host.pyxl_cmd[0], host.pyxl_cmd[1:] + list(args), env=host.env,
                          timeout=15, encoding="utf-8")
    return child


def test_console_attach_type_and_detach(host):
    assert host.create("con").returncode == 0
    host.wait_for(lambda: "root@con:~#" in host.console_log("con"), what="shell prompt")
    child = spawn_console(host, "console", "con")
    # output from before the attach is delivered first
    expect(child, "Linux version", host)
    expect(child, r"root@con:~# ", host)
    child.send("echo hello from the guest\r")
    expect(child, "hello from the guest\r\n", host)
    expect(child, r"root@con:~# ", host)
    child.send("cat /sys/hypervisor/type\r")
    expect(child, "xen\r\n", host)
    child.send("\x1d")                      # Ctrl-]
    expect(child, pexpect.EOF, host)
    child.close()
    assert child.exitstatus == 0
    # still running, and the log kept everything
    assert host.domains()["con"]["state"] in ("-b----", "r-----")
    assert "hello from the guest" in host.console_log("con")


def test_create_c_then_poweroff_from_the_console(host):
    child = pexpect.spawn(sys.executable, host.mkdom_argv("cc", "-c")[1:], env=host.env,
                          timeout=15, encoding="utf-8")
    expect(child, "Booting paravirtualized kernel on Xen", host)
    expect(child, r"root@cc:~# ", host)
    child.send("poweroff\r")
    expect(child, "reboot: Power down", host)
    child.expect(pexpect.EOF)               # the domain is gone, the console ends
    child.close()
    assert child.exitstatus == 0
    host.wait_for(lambda: "cc" not in host.domains(), what="on_poweroff=destroy")
    log = Path(host.root, "var/log/pyxl/xl-cc.log").read_text()
    assert "Domain 1 has shut down, reason code 0 0x0" in log
    assert "Action for shutdown reason code 0 is destroy" in log


def test_crash_runs_on_crash(host):
    assert host.create("keep", on_crash="preserve").returncode == 0
    assert host.create("gone").returncode == 0
    host.wait_for(lambda: domain_pid(host, "gone") and domain_pid(host, "keep"), what="processes")
    os.kill(domain_pid(host, "keep"), signal.SIGKILL)
    os.kill(domain_pid(host, "gone"), signal.SIGKILL)
    host.wait_for(lambda: host.domains().get("keep", {}).get("state") == "---sc-", what="crashed")
    host.wait_for(lambda: "gone" not in host.domains(), what="on_crash=destroy")
    assert host.run("destroy", "keep").returncode == 0


def test_reboot_restarts_with_a_new_domid_and_e_leaves_it(host):
    child = pexpect.spawn(sys.executable, host.mkdom_argv("rb", "-c")[1:], env=host.env,
                          timeout=15, encoding="utf-8")
    expect(child, r"root@rb:~# ", host)
    child.send("reboot\r")
    expect(child, "reboot: Restarting system", host)
    expect(child, pexpect.EOF, host)
    child.close()
    host.wait_for(lambda: host.domains().get("rb", {}).get("domid") == 2, what="restart")
    # -e: no monitor, so a powered-off domain lingers as ---s--
    assert host.create("lin", "-e").returncode == 0
    child = spawn_console(host, "console", "lin")
    expect(child, r"root@lin:~# ", host)
    child.send("halt\r")
    expect(child, pexpect.EOF, host)
    host.wait_for(lambda: host.domains().get("lin", {}).get("state") == "---s--", what="shutdown")


def test_rename_restart_preserves_the_old_domain_under_a_dated_name(host):
    assert host.create("rr", on_reboot="restart_rename").returncode == 0
    old = host.domains()["rr"]
    host.wait_for(lambda: "rr" in host.console_log("rr") and "login" in host.console_log("rr"),
                  what="boot")
    assert host.run("reboot", "rr").returncode == 0

    def preserved():
        return [n for n in host.domains() if re.fullmatch(r"rr-\d{8}T\d{4}Z", n)]

    host.wait_for(lambda: preserved() and "rr" in host.domains(), what="rename-restart")
    doms = host.domains()
    kept = doms[preserved()[0]]
    assert kept["domid"] == old["domid"] and kept["uuid"] != old["uuid"]
    assert kept["state"][3:5] == "sr"                   # shut down for reboot, left listed
    assert doms["rr"]["domid"] > old["domid"]
    assert host.run("domname", str(old["domid"])).stdout == preserved()[0] + "\n"


def test_console_flood_keeps_the_daemon_responsive(host):
    assert host.create("flood").returncode == 0
    child = spawn_console(host, "console", "flood")
    expect(child, r"root@flood:~# ", host)
    child.send("yes\r")
    expect(child, "y\r\ny\r\n", host)
    child.send("\x1d")
    expect(child, pexpect.EOF, host)
    t0 = time.monotonic()
    for _ in range(3):
        p = host.run("list")
        assert p.returncode == 0 and "flood" in p.stdout
    assert (time.monotonic() - t0) / 3 < 2.0
    assert host.run("destroy", "flood").returncode == 0
    log = Path(host.root, "var/log/pyxl/console/guest-flood.log")
    logs = [log, *log.parent.glob("guest-flood.log.*")]   # rotated at 1 MiB each
    assert sum(p.stat().st_size for p in logs) > 1 << 20   # it really flooded
    assert max(p.stat().st_size for p in logs) <= 1 << 20  # ...within the cap
    for p in logs:
        p.unlink()


def test_info_uptime_dmesg_formats(host):
    assert host.create("up").returncode == 0
    info = host.run("info").stdout.splitlines()
    keys = [l[:23] for l in info]
    assert all(l[23:25] == ": " for l in info)
    assert keys[0].rstrip() == "host" and keys[-1].rstrip() == "xend_config_format"
    assert "xen_major              : 4" in info and "xen_minor              : 17" in info
    out = host.run("uptime").stdout.splitlines()
    assert out[0] == "%-33s %4s %s" % ("Name", "ID", "Uptime")
    assert re.match(r"^up {31}    1  0:00:0\d$", out[2]), out
    short = host.run("uptime", "-s", "up").stdout
    assert re.match(r"^ \d\d:\d\d:\d\d up  0:00, up \(1\)\n$", short), short
    assert "(XEN)" in host.run("dmesg").stdout


def test_shutdown_all_and_wait(host):
    assert host.create("s1").returncode == 0
    assert host.create("s2").returncode == 0
    host.wait_for(lambda: all("login:" in host.console_log(n) for n in ("s1", "s2")), what="boot")
    host.wait_for(lambda: all(host.run("xenstore-read", "/local/domain/%d/control/feature-poweroff"
                                       % i).stdout == "1\n" for i in (1, 2)), what="pv drivers")
    p = host.run("shutdown", "-a", "-w")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert lines[:3] == ["Shutting down domain 1", "Shutting down domain 2", "Waiting for 2 domains"]
    assert sorted(lines[3:]) == ["Domain 1 has been shut down, reason code 0",
                                 "Domain 2 has been shut down, reason code 0"]
    host.wait_for(lambda: set(host.domains()) == {"Domain-0"}, what="both reaped")
