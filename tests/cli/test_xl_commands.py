"""The xl commands that only format state pyxl has (info with its filter and
-n, vm-list, claims), surplus arguments, top, and the commands the simulated
host lacks, end to end on a private host.  Formats are xl 4.17's, quoted from
tools/xl/xl_info.c; where the real xl can answer without a hypervisor it is
run and compared."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from pyxl.cli.main import main


def pairs(text: str) -> list[tuple[str, str]]:
    return [(l[:23].rstrip(), l[25:]) for l in text.splitlines() if l[23:25] == ": "]


def test_info_numa_blocks_and_the_filter_argument(host):
    full = host.run("info")
    assert full.returncode == 0
    fields = pairs(full.stdout)
    values = dict(fields)

    p = host.run("info", "-n")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    # print_info: node and physical blocks, output_topologyinfo, output_numainfo, xen block
    start = lines.index("cpu_topology           :")
    assert lines[start - 1].startswith("free_cpus              : ")
    assert lines[start + 1] == "cpu:    core    socket     node"
    ncpu = int(values["nr_cpus"])
    for cpu in range(ncpu):          # printf("%3d:    %4d     %4d     %4d\n", ...)
        assert re.fullmatch(r"%3d:    [ \d]{4}     [ \d]{4}     [ \d]{4}" % cpu,
                            lines[start + 2 + cpu]), lines[start + 2 + cpu]
    k = start + 2 + ncpu
    assert lines[k:k + 3] == ["device topology        :", "device           node",
                              "No device topology data available"]
    assert lines[k + 3:k + 5] == ["numa_info              :",
                                  "node:    memsize    memfree    distances"]
    # printf("%4d:    %6"PRIu64"     %6"PRIu64"      %d", ...)
    assert re.fullmatch(r"   0:    [ \d]{6}     [ \d]{6}      10", lines[k + 5]), lines[k + 5]
    assert int(lines[k + 5].split()[1]) == int(values["total_memory"])
    assert lines[k + 6].startswith("xen_major              : ")
    assert [f for f in pairs(p.stdout) if f[0] != "free_memory"] == \
        [f for f in fields if f[0] != "free_memory"]

    # maybe_printf: the argument keeps the values of the lines it prefixes;
    # further arguments are ignored; with -n there is no filter
    p = host.run("info", "xen_version", "surplus")
    assert (p.returncode, p.stdout, p.stderr) == (0, values["xen_version"] + "\n", "")
    p = host.run("info", "xen")
    assert p.stdout == "".join(v + "\n" for k, v in fields if k.startswith("xen"))
    assert "xend_config_format" in [k for k, _ in fields if k.startswith("xen")]
    p = host.run("info", "nosuch")
    assert (p.returncode, p.stdout) == (0, "")
    p = host.run("info", "-n", "xen_version")
    assert "cpu_topology           :" in p.stdout and len(pairs(p.stdout)) == len(fields)


def test_vm_list_and_claims(host):
    assert host.create("vm1").returncode == 0
    doms = host.domains()
    p = host.run("vm-list")
    assert p.returncode == 0 and p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0] == "UUID                                  ID    name"
    # libxl_list_vm skips only device-model stub domains: dom0 is listed
    want = ["%s  %d    %-30s" % (d["uuid"], d["domid"], d["name"])
            for d in sorted(doms.values(), key=lambda d: d["domid"])]
    assert lines[1:] == want

    p = host.run("claims")
    assert p.returncode == 0 and p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0] == "Name                                        ID   Mem VCPUs\tState\tTime(s)  Claimed"
    names = [l.split()[0] for l in lines[1:]]
    assert names == [d["name"] for d in sorted(doms.values(), key=lambda d: d["domid"])]
    for l in lines[1:]:
        assert re.fullmatch(r"\S+ +\d+ +\d+ +\d+     [rbpscd-]{6}  [ \d]{6}\.\d     0", l), l


def test_surplus_arguments_are_ignored_as_xl_ignores_them(host):
    assert host.create("sp").returncode == 0
    for args, out in ((("domid", "sp", "surplus"), "%d\n" % host.domains()["sp"]["domid"]),
                      (("pause", "sp", "surplus"), ""),
                      (("unpause", "sp", "surplus"), ""),
                      (("rename", "sp", "sq", "surplus"), ""),
                      (("uptime", "-s", "sq"), None),
                      (("destroy", "sq", "surplus"), "")):
        p = host.run(*args)
        assert p.returncode == 0 and p.stderr == "", (args, p.stderr)
        if out is not None:
            assert p.stdout == out, args
    assert "sq" not in host.domains() and "sp" not in host.domains()


def xl(args, env=None, cwd=None):
    from oracle.xl import XL, _need_xl, xl_env

    _need_xl()
    p = subprocess.run([XL, *args], env=xl_env(env), capture_output=True, text=True, cwd=cwd,
                       stdin=subprocess.DEVNULL, timeout=60)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.peer("xl")
def test_top_runs_xentop_through_the_shell_as_xl(tmp_path, pyxl_cmd):
    """main_top is system("xentop"): without xentop the shell says so, and
    xl exits with the low byte of the wait status (0)."""
    env = {"PATH": str(tmp_path), "PYXL_ROOT": str(tmp_path / "root")}
    want = xl(["top"], env=env)
    assert "xentop" in want[2]
    got = subprocess.run(pyxl_cmd + ["top"], env=dict(os.environ, **env), capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (got.returncode, got.stdout, got.stderr) == want


@pytest.mark.peer("xl")
def test_flask_commands_as_on_a_host_without_flask(tmp_path, capsys, monkeypatch):
    """setenforce's and loadpolicy's checks before Xen, compared with xl; then
    Xen without FLASK: xsm_op is -ENOSYS (xl_flask.c prints "Flask XSM
    Disabled"/"disabled"; main returns libxl's -1, exit status 255)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy").write_bytes(b"\x8c\xff\x7c\xf9" + b"\0" * 60)
    for argv in (["setenforce"], ["setenforce", "2"], ["setenforce", "-h"],
                 ["loadpolicy"], ["loadpolicy", "nosuch"], ["loadpolicy", str(tmp_path)]):
        g = xl(argv, cwd=tmp_path)
        capsys.readouterr()
        rc = main(argv)
        out = capsys.readouterr()
        assert (rc, out.out.replace("pyxl [", "xl ["), out.err) == g, argv
    for argv, out, err in ((["getenforce"], "Flask XSM Disabled\n", ""),
                           (["setenforce", "Enforcing"], "", "Flask XSM disabled\n"),
                           (["loadpolicy", "policy"], "", "Flask XSM disabled\n")):
        capsys.readouterr()
        assert main(argv) == 255
        assert capsys.readouterr()[:] == (out, err), argv


def test_sharing_and_cpupool_list(host):
    """xl_mem.c sharing(): "%-40s %5d %5lu  %5lu"; xl_cpupool.c main_cpupoollist:
    "%-19s" then "%3d %9s       y       %4d", or -c the CPU list."""
    assert host.create("sh1").returncode == 0
    doms = sorted(host.domains().values(), key=lambda d: d["domid"])
    info = dict(pairs(host.run("info").stdout))
    p = host.run("sharing")
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout.splitlines() == ["Name                                        ID   Mem Shared"] + [
        "%-40s %5d %5d  %5d" % (d["name"], d["domid"], d["mem"], 0) for d in doms]
    p = host.run("sharing", "sh1")
    assert p.stdout.splitlines()[1].split() == ["sh1", str(doms[1]["domid"]), str(doms[1]["mem"]), "0"]
    assert host.run("sharing", "77").stderr == "Error: Domain '77' does not exist.\n"
    assert host.run("sharing", "a", "b").returncode == 1

    p = host.run("cpupool-list")
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == "Name               CPUs   Sched     Active   Domain count\n" \
        "Pool-0             %3d %9s       y       %4d\n" % (
            int(info["nr_cpus"]), info["xen_scheduler"], len(doms))
    p = host.run("cpupool-list", "-c", "Pool-0")
    assert p.stdout == "Name               CPU list\nPool-0             %s\n" % ",".join(
        str(c) for c in range(int(info["nr_cpus"])))
    p = host.run("cpupool-list", "Pool-9")
    assert (p.returncode, p.stdout, p.stderr) == (1, "", "Pool 'Pool-9' does not exist\n")
    # the pool every domain is in, as `list -c` shows it
    assert all(l.endswith("Pool-0") for l in host.run("list", "-c").stdout.splitlines()[1:])
