"""Xen's vTPM guide, run for real: examples/walkthrough.sh against a private
host root, then what the guide promises about persistence.

One host, one daemon: vtpmmgr-stubdom (hardware TPM through TIS), the
guest's vtpm-stubdom, and the Linux guest whose `tcsd` and `tpm_version`
are Debian's TrouSerS and tpm-tools talking to the guest's /dev/tpm0.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
from wt_host import EXAMPLES, Host, procs_with_root, squeeze

from peers import need_peer

UUID = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
GUIDE_TPM_VERSION = """TPM 1.2 Version Info:
Chip Version: 1.2.0.7
Spec Level: 2
Errata Revision: 1
TPM Vendor ID: ETHZ
TPM Version: 01010000
Manufacturer Info: 4554485a"""
# a new vTPM's first successful command, then its first save: its state
# written to the image, the key sent to the manager (tpm_data.c
# tpm_store_permanent_data, vtpmblk.c write_vtpmblk, vtpm_cmd.c
# VTPM_SaveHashKey)
FIRST_SAVE = re.compile(
    r"tpm_cmd_handler\.c:4084: Info: TPM command succeeded\n"
    r"tpm_data\.c:206: Debug: size of permanent data: \d+\n"
    r"vtpmblk\.c:70: Debug: Begin Write data=0x[0-9a-f]+ len=\d+ slot=0 ssize=\d+\n"
    r"vtpmblk\.c:89: Info: Wrote \d+ bytes to NVM persistent storage\n"
    r"vtpm_cmd\.c:201: Info: Sending encryption key to backend\n")


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    need_peer("tcsd")
    need_peer("tpm-tools")
    if os.geteuid() != 0:
        pytest.skip("tcsd only accepts a root:tss config file: needs root")
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


@pytest.mark.slow
def test_guide_walkthrough_and_vtpm_persistence(host):
    # -- the guide, as examples/walkthrough.sh runs it ----------------------------
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(EXAMPLES / "walkthrough.sh"), str(host.dir)],
                       env=dict(host.env, KEEP_RUNNING="1"), capture_output=True, text=True,
                       timeout=180, errors="surrogateescape")
    out = p.stdout
    assert p.returncode == 0, out[-4000:] + p.stderr
    lines = [ln.rstrip("\r") for ln in out.splitlines()]
    assert "INFO[VTPM]: Waiting for commands from vTPM's:" in lines
    assert "vtpm.c:166: Info: Waiting for frontend domain to connect.." in lines
    i = lines.index("root@domu:~# tpm_version")
    assert [squeeze(x) for x in lines[i + 1:i + 8]] == GUIDE_TPM_VERSION.splitlines()
    # on a mismatch: the raw bytes there, and the end of the guest's console
    # log, to tell whose byte it was (seen once: one byte that is not UTF-8
    # where the prompt should be)
    raw = out.encode("utf-8", "surrogateescape")
    at = raw.find(b"root@domu:~# tpm_version")
    assert lines[i + 8] == "root@domu:~# ", (raw[at:at + 600], host.console_log("domu")[-1500:])
    walk_s = time.monotonic() - t0

    rows = host.domains()
    assert set(rows) == {"Domain-0", "vtpmmgr", "domu-vtpm", "domu"}
    mgr, vtpm, domu = (int(rows[n][0]) for n in ("vtpmmgr", "domu-vtpm", "domu"))
    assert mgr < vtpm < domu
    assert rows["vtpmmgr"][1:3] == ("16", "1") and rows["domu-vtpm"][1] == "8"
    for name in ("vtpmmgr", "domu-vtpm", "domu"):
        assert rows[name][3][2:] == "----", rows      # running or blocked, nothing else

    vlog = host.console_log("domu-vtpm")
    assert "vtpm.c:168: Info: VTPM attached to Frontend %d/0\n" % domu in vlog
    assert "Tpmback:Info Frontend %d/0 connected\n" % domu in vlog
    # the save the guide has the user look for is the new vTPM's first: its
    # first successful command is saved (nothing was stored yet), and it is
    # the only save -- the guest's later commands (tcsd's, tpm_version's)
    # change nothing the vTPM stores, so they are answered without one
    # (pyxl-vtpm(7), "What happens to a vTPM's state")
    run = vlog[vlog.index("Tpmback:Info Frontend %d/0 connected\n" % domu):]
    first = run.index("tpm_cmd_handler.c:4084: Info: TPM command succeeded\n")
    assert FIRST_SAVE.match(run, first), run[first:first + 1000]
    assert len(re.findall(r"Info: Wrote \d+ bytes to NVM persistent storage\n", vlog)) == 1
    assert vlog.count("Sending encryption key to backend") == 1
    assert run.count("TPM command succeeded") > 1, run      # the commands after it: no save
    for line in ("vtpm_cmd.c:201: Info: Sending encryption key to backend",
                 "INFO[VTPM]: Registered vtpm %s" % UUID,
                 "INFO[VTPM]: Saved hash and key for vtpm %s" % UUID):
        assert line in lines                                # the walk-through shows it
    mlog = host.console_log("vtpmmgr")
    assert "INFO[VTPM]: Registered vtpm %s\n" % UUID in mlog
    assert mlog.count("INFO[VTPM]: Saved hash and key for vtpm %s\n" % UUID) == 1

    vl = host.run("vtpm-list", "domu").stdout.splitlines()
    assert vl[0].split() == ["Idx", "BE", "Uuid", "handle", "state", "evt-ch", "ring-ref",
                             "BE-path"]
    assert vl[1].split()[:2] == ["0", str(vtpm)] and vl[1].split()[4] == "4"   # Connected

    # -- persistence: the same disk and uuid give the same TPM -----------------------
    ek = host.guest("cat /sys/devices/vtpm-0/pubek")
    assert "Modulus length: 256\n" in ek and ek.count("\n") > 20
    p = host.run("shutdown", "-w", "domu")
    assert p.returncode == 0 and "Domain %d has been shut down, reason code 0" % domu in p.stderr
    host.wait_gone("domu-vtpm")          # the seed vTPM powers off when its guest leaves
    # the toolstack leaves the backends' own directories to them on teardown,
    # so neither stub domain reports a failed cleanup
    for name in ("domu-vtpm", "vtpmmgr"):
        assert "Tpmback:Error" not in host.console_log(name), host.console_log(name)[-2000:]
    host.create("vtpm.cfg", 'disk=["file:%s/home/user/domu/vtpm.img,hda,w"]' % host.dir)
    host.create("domu.cfg", 'kernel="%s/home/user/domu/vmlinuz"' % host.dir)
    again = host.guest("modprobe xen-tpmfront", "cat /sys/devices/vtpm-0/pubek")
    body = lambda s: s[s.index("Algorithm:"):s.rindex("root@domu")]   # noqa: E731
    assert body(again) == body(ek)
    host.wait_console("vtpmmgr", "INFO[VTPM]: Loaded hash and key for vtpm %s\n" % UUID)

    # the guest's tcsd dies with the guest
    host.guest("tcsd")
    assert any(b"pyxl-guest-tcsd-" in open("/proc/%d/cmdline" % q, "rb").read()
               for q in procs_with_root(host.root))
    assert host.run("destroy", "domu").returncode == 0
    deadline = time.monotonic() + 10
    while any(b"pyxl-guest-tcsd-" in _cmdline(q) for q in procs_with_root(host.root)):
        assert time.monotonic() < deadline, "the guest's tcsd outlived it"
        time.sleep(0.1)
    print("walkthrough.sh took %.1f s" % walk_s)


def _cmdline(pid: int) -> bytes:
    try:
        return open("/proc/%d/cmdline" % pid, "rb").read()
    except OSError:
        return b""
