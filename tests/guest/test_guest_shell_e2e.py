"""The guest's shell end to end: the guide's chain (vtpmmgr-stubdom, the
guest's vtpm-stubdom, the Linux guest), and at the guest's console the
tpm-tools lines a person types, quotes, pipes and redirections included.

What the tools print is what Debian's tpm-tools print (the same checks as
tests/tpm/test_acceptance_tools.py makes of them against tcsd directly).
"""

from __future__ import annotations

import glob
import os
import re
import stat
import time

import pytest
from walkthrough.wt_host import EXAMPLES, Host

from peers import need_peer


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    need_peer("tcsd")
    need_peer("tpm-tools")
    if os.geteuid() != 0:
        pytest.skip("tcsd only accepts a root:tss config file: needs root")
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


def guide_chain(host: Host) -> int:
    """The guide's three domains, as examples/walkthrough.sh creates them;
    returns the guest's domid."""
    mgr, vtpm = host.dir / "var/vtpmmgr-stubdom.img", host.dir / "home/user/domu/vtpm.img"
    kernel = host.dir / "home/user/domu/vmlinuz"
    vtpm.parent.mkdir(parents=True)
    mgr.parent.mkdir(parents=True)
    for img, size in ((mgr, 16 << 20), (vtpm, 8 << 20)):
        with open(img, "wb") as f:
            f.truncate(size)
    kernel.write_text("pyxl: stand-in for the domU kernel image\n")
    host.console("until", "INFO[VTPM]: Waiting for commands from vTPM's:", "--", "create", "-c",
                 str(EXAMPLES / "vtpmmgr-stubdom.cfg"), 'disk=["file:%s,hda,w"]' % mgr)
    host.console("until", "Waiting for frontend domain to connect..", "--", "create", "-c",
                 str(EXAMPLES / "vtpm.cfg"), 'disk=["file:%s,hda,w"]' % vtpm)
    host.create("domu.cfg", 'kernel="%s"' % kernel)
    return int(host.domains()["domu"][0])


def after(out: str, command: str) -> str:
    """What the console showed for one typed line, up to the next prompt."""
    text = out.replace("\r\n", "\n")
    i = text.index("# " + command + "\n") + len(command) + 3
    return text[i:text.index("root@domu:", i)]


@pytest.mark.slow
def test_tpm_tools_lines_as_typed_in_bash(host):
    domid = guide_chain(host)
    nvdefine = 'tpm_nvdefine -i 0x10000 -s 8 -p "OWNERWRITE|OWNERREAD" -y'
    seal = 'echo "my secret" | tpm_sealdata -z > sealed.blob && echo sealed: $?'
    out = host.guest("modprobe xen-tpmfront", "tcsd", "tpm_takeownership -y -z", nvdefine,
                     "tpm_nvinfo -i 0x10000 > 'nv info.txt'; cat nv\\ info.txt", seal,
                     "head -c 19 sealed.blob; tpm_unsealdata -z -i sealed.blob",
                     "mkdir keys && cd keys; pwd; tpm_unsealdata -z -i /root/sealed.blob -o plain",
                     "cat plain /root/keys/plain; ls -1 /root; cd; tpm_nosuch",
                     "cat /sys/class/tpm/tpm0/caps | cat > caps; cat < caps")
    assert "Successfully created NVRAM area at index 0x10000" in after(out, nvdefine)
    info = after(out, "tpm_nvinfo -i 0x10000 > 'nv info.txt'; cat nv\\ info.txt")
    assert re.search(r"Permissions\s*:\s*0x00020002 \(OWNERREAD\|OWNERWRITE\)", info), out
    assert re.search(r"Size\s*:\s*8 \(0x8\)", info), info
    assert after(out, seal) == "sealed: 0\n"
    shown = after(out, "head -c 19 sealed.blob; tpm_unsealdata -z -i sealed.blob")
    assert shown == "-bash: head: command not found\nmy secret\n", out
    assert after(out, "mkdir keys && cd keys; pwd; tpm_unsealdata -z -i /root/sealed.blob -o plain"
                 ) == "/root/keys\n"
    assert after(out, "cat plain /root/keys/plain; ls -1 /root; cd; tpm_nosuch") == (
        "my secret\nmy secret\nkeys\nnv info.txt\nsealed.blob\n"
        "-bash: tpm_nosuch: command not found\n")
    caps = after(out, "cat /sys/class/tpm/tpm0/caps | cat > caps; cat < caps")
    assert caps.startswith("Manufacturer: 0x4554485a\n"), caps    # ETHZ, the Xen vTPM

    # the guest's files: one private tree in the daemon's per-domain directory
    trees = glob.glob(os.path.join(host.root, "run/pyxl/dom/%d.guest.*" % domid))
    assert len(trees) == 1, trees
    assert stat.S_IMODE(os.stat(trees[0]).st_mode) == 0o700
    assert open(os.path.join(trees[0], "root/nv info.txt")).read() == info
    assert open(os.path.join(trees[0], "root/keys/plain")).read() == "my secret\n"

    # an unfinished line goes on after bash's PS2 prompt
    pexpect = pytest.importorskip("pexpect")
    con = pexpect.spawn(host.pyxl[0], host.pyxl[1:] + ["console", "domu"], env=host.env,
                        timeout=30, encoding="utf-8")
    deadline = time.monotonic() + 30
    while True:              # what is typed before the console attached is not seen
        con.send("\r")
        if con.expect_exact(["root@domu:~# ", pexpect.TIMEOUT], timeout=1) == 0:
            break
        assert time.monotonic() < deadline, "no prompt on the console"
    con.send('echo "two\r')
    con.expect_exact("\r\n> ")
    con.send('lines" |\r')
    con.expect_exact("\r\n> ")
    con.send("cat\r")
    con.expect_exact("two\r\nlines\r\nroot@domu:~# ")
    con.send("\x1d")
    con.expect(pexpect.EOF)

    # gone with the guest, however it goes
    assert host.run("destroy", "domu").returncode == 0
    deadline = time.monotonic() + 10
    while os.path.exists(trees[0]):
        assert time.monotonic() < deadline, "the guest's tree outlived it"
        time.sleep(0.05)
