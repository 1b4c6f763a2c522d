"""The guest's own directory lives exactly as long as the guest, however the
guest ends: powered off from its shell, crashed through
/proc/sysrq-trigger (a redirection of the shell's), destroyed."""

from __future__ import annotations

import glob
import os
import stat

import pexpect
import pytest
from toolstack.ts_host import Host, expect, procs_of


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    h = Host(tmp_path / "root", pyxl_cmd)
    yield h
    h.cleanup()
    assert not procs_of(h.root)


def tree_of(host: Host, name: str) -> str:
    domid = host.domains()[name]["domid"]
    trees = glob.glob(os.path.join(host.root, "run/pyxl/dom/%d.guest.*" % domid))
    assert len(trees) == 1, trees
    assert stat.S_IMODE(os.stat(trees[0]).st_mode) == 0o700
    assert sorted(os.listdir(trees[0])) == ["etc", "root", "tmp"]
    return trees[0]


def console(host: Host, name: str):
    host.wait_for(lambda: "root@%s:~#" % name in host.console_log(name), what="shell prompt")
    child = pexpect.spawn(host.pyxl_cmd[0], host.pyxl_cmd[1:] + ["console", name], env=host.env,
                          timeout=15, encoding="utf-8")
    expect(child, r"root@%s:~# " % name, host)
    return child


@pytest.mark.parametrize("ending", ["poweroff", "echo c > /proc/sysrq-trigger", "destroy"])
def test_the_guest_tree_goes_with_the_guest(host, ending):
    assert host.create("g").returncode == 0
    child = console(host, "g")
    tree = tree_of(host, "g")
    child.send("echo kept > note; cd /tmp && pwd\r")
    expect(child, "/tmp\r\nroot@g:/tmp# ", host)
    assert open(os.path.join(tree, "root/note")).read() == "kept\n"
    if ending == "destroy":
        assert host.run("destroy", "g").returncode == 0
    else:
        child.send(ending + "\r")
        expect(child, "reboot: Power down" if ending == "poweroff" else "sysrq: Trigger a crash",
               host)
    expect(child, pexpect.EOF, host)
    host.wait_for(lambda: not os.path.exists(tree), what="the guest's tree to go")
    host.wait_for(lambda: "g" not in host.domains(), what="the domain to go")
