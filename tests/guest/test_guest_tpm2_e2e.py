"""A TPM 2.0 through the whole Xen chain: vtpmmgr-stubdom, a vtpm-stubdom
with `tpm2=1` (examples/vtpm2.cfg), the Linux guest's xen-tpmfront and
/dev/tpmrm0, and in the guest's console Debian's real tpm2-tools run with
no flags, as on a real guest.

What the tools print in the guest is compared with the same tools run
against `swtpm socket --tpm2` (the same libtpms), so the expected answers
come from the peer, not from pyxl."""

from __future__ import annotations

import hashlib
import os
import re
import time

import pytest
from walkthrough.wt_host import Host

from peers import need_peer
from test_guest_shell_e2e import after
from tpm2.fixtures import Swtpm2, tool

D1, D256 = "11" * 20, "22" * 32
NV_TEXT = "0123456789abcdef0123456789abcde"        # + echo's newline: 32 bytes
SECRET = "sealed in the guest"
UUID2 = "0a0b0c0d-0e0f-4000-8000-000000000002"

SETUP = ["modprobe xen-tpmfront", "cat /sys/class/tpm/tpm0/tpm_version_major", "ls /dev"]
# (what is typed in the guest, the same tool's argv on the peer or None)
SESSION = [
    ("tpm2_getcap properties-fixed", ["tpm2_getcap", "properties-fixed"]),
    ("tpm2_pcrextend 16:sha1=%s,sha256=%s" % (D1, D256),
     ["tpm2_pcrextend", "16:sha1=%s,sha256=%s" % (D1, D256)]),
    ("tpm2_pcrread sha1:16+sha256:16", ["tpm2_pcrread", "sha1:16+sha256:16"]),
    ("echo %s > nv.bin" % NV_TEXT, None),
    ("tpm2_nvdefine 0x1500016 -C o -s 32 -a 'ownerread|ownerwrite'",
     ["tpm2_nvdefine", "0x1500016", "-C", "o", "-s", "32", "-a", "ownerread|ownerwrite"]),
    ("tpm2_nvwrite 0x1500016 -C o -i nv.bin",
     ["tpm2_nvwrite", "0x1500016", "-C", "o", "-i", "nv.bin"]),
    ("tpm2_nvread 0x1500016 -C o -s 32", ["tpm2_nvread", "0x1500016", "-C", "o", "-s", "32"]),
    ("tpm2_createprimary -C o -G ecc -c prim.ctx", None),
    # /dev/tpmrm0: the primary key went with the tool that loaded it
    ("tpm2_getcap handles-transient", None),
    ("tpm2_pcrread sha256:16 -o pcr16.bin", None),
    ("tpm2_createpolicy --policy-pcr -l sha256:16 -f pcr16.bin -L pcr.policy", None),
    ("echo %s > secret.txt" % SECRET, None),
    ("tpm2_create -C prim.ctx -L pcr.policy -i secret.txt -u seal.pub -r seal.priv", None),
    ("tpm2_load -C prim.ctx -u seal.pub -r seal.priv -c seal.ctx", None),
    ("tpm2_unseal -c seal.ctx -p pcr:sha256:16", None),
    ("tpm2_getcap handles-transient", None),
    # the guest's TPM only: an exported TCTI is overridden, another -T refused
    ("export TPM2TOOLS_TCTI=device:/dev/tpm0 TSS2_TCTI=device:/dev/tpm0", None),
    ("tpm2_getcap handles-persistent; echo status $?", None),
    ("tpm2_getcap -T 'cmd:touch /root/host-file' handles-persistent; echo status $?", None),
    ("tpm2_getcap -T device:/dev/tpmrm0 handles-persistent; echo status $?", None),
]


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    need_peer("tpm2-tools")
    if os.geteuid() != 0:
        pytest.skip("the guest's private network (its /dev/tpmrm0 endpoint) needs root")
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


def console_count(host: Host, dom: str, text: str) -> int:
    """How often text is in the domain's console log (kept across re-creations)."""
    try:
        return host.console_log(dom).count(text)
    except FileNotFoundError:
        return 0


def wait_until(cond, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def start_manager(host: Host, *extra: str) -> None:
    mgr = host.dir / "mgr.img"
    if not mgr.exists():
        with open(mgr, "wb") as f:
            f.truncate(16 << 20)
    ready = "INFO[VTPM]: Waiting for commands from vTPM's:"
    before = console_count(host, "vtpmmgr", ready)
    host.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % mgr, *extra)
    wait_until(lambda: console_count(host, "vtpmmgr", ready) > before, "the manager's start")


def start_vtpm_and_guest(host: Host, *vtpm_extra: str, guest_cfg: str = "domu.cfg",
                         guest_extra: tuple = ()) -> None:
    vtpm, kernel = host.dir / "vtpm.img", host.dir / "vmlinuz"
    if not vtpm.exists():
        with open(vtpm, "wb") as f:
            f.truncate(8 << 20)
    if not kernel.exists():
        kernel.write_text("pyxl: stand-in for the domU kernel image\n")
    ready = "Waiting for frontend domain to connect.."
    before = console_count(host, "domu-vtpm", ready)
    host.create("vtpm2.cfg", 'disk=["file:%s,hda,w"]' % vtpm, *vtpm_extra)
    wait_until(lambda: console_count(host, "domu-vtpm", ready) > before, "the vTPM's start")
    host.create(guest_cfg, *(guest_extra or ('kernel="%s"' % kernel,)))


def stop_guest_and_vtpm(host: Host) -> None:
    assert host.run("shutdown", "-w", "domu").returncode == 0
    host.wait_gone("domu-vtpm")          # the vTPM powers off when its guest leaves


def on_swtpm(tmp_path) -> dict[str, tuple[int, str]]:
    """The session's tools on swtpm --tpm2: their exit status and output."""
    work = tmp_path / "swtpm-work"
    work.mkdir()
    (work / "nv.bin").write_text(NV_TEXT + "\n")
    sw = Swtpm2(tmp_path / "swtpm").start()
    try:
        return {typed: (r.rc, r.out) for typed, argv in SESSION if argv
                for r in [tool(sw.port, *argv, cwd=work)]}
    finally:
        sw.stop()


@pytest.mark.slow
@pytest.mark.peer("swtpm", "tpm2-tools")
@pytest.mark.parametrize("chip", ["1.2", "2.0"])
def test_tpm2_tools_in_the_guest_through_the_chain(host, tmp_path, chip):
    """On either hardware chip: with a TPM 2.0 one the manager runs with
    `tpm2=1` (man/pyxl-vtpm.7, "The manager on a TPM 2.0 hardware chip")."""
    host.env["PYXL_HWTPM"] = chip
    mgr_extra = ('extra="tpm2=1"',) if chip == "2.0" else ()
    expected = on_swtpm(tmp_path)
    start_manager(host, *mgr_extra)
    start_vtpm_and_guest(host)
    typed = SETUP + [t for t, _ in SESSION] + ["echo status $?"]
    out = host.guest(*typed)
    assert after(out, "cat /sys/class/tpm/tpm0/tpm_version_major") == "2\n"
    assert after(out, "ls /dev").split() == ["console", "hvc0", "null", "random", "tpm0",
                                             "tpmrm0", "tty", "urandom", "xen", "zero"]
    for t, (rc, text) in expected.items():
        assert rc == 0, (t, text)
        assert after(out, t) == text, t
    assert "0x1500016" not in after(out, "tpm2_getcap properties-fixed")
    assert after(out, "tpm2_unseal -c seal.ctx -p pcr:sha256:16") == SECRET + "\n"
    # every tool's transient objects and sessions were flushed when it closed /dev/tpmrm0
    assert after(out, "tpm2_getcap handles-transient") == ""
    assert after(out, "tpm2_getcap handles-persistent; echo status $?") == "status 0\n"
    assert after(out, "tpm2_getcap -T 'cmd:touch /root/host-file' handles-persistent; "
                 "echo status $?") == ("tpm2_getcap: TCTI 'cmd:touch /root/host-file': this "
                                       "guest's TPM is /dev/tpmrm0 (-T device)\nstatus 1\n")
    assert after(out, "tpm2_getcap -T device:/dev/tpmrm0 handles-persistent; echo status $?"
                 ) == "status 0\n"
    primary = after(out, "tpm2_createprimary -C o -G ecc -c prim.ctx")
    assert re.search(r"x: [0-9a-f]{64}", primary), primary

    # the vTPM's state goes through the encrypted disk and the manager: NV and
    # the owner hierarchy's seed survive the vTPM's and the manager's restart
    stop_guest_and_vtpm(host)
    assert host.run("destroy", "vtpmmgr").returncode == 0
    host.wait_gone("vtpmmgr")
    start_manager(host, *mgr_extra)
    start_vtpm_and_guest(host)
    again = host.guest("modprobe xen-tpmfront", "tpm2_nvread 0x1500016 -C o -s 32",
                       "tpm2_createprimary -C o -G ecc -c prim.ctx",
                       "tpm2_unseal -c seal.ctx -p pcr:sha256:16; echo unseal $?")
    assert after(again, "tpm2_nvread 0x1500016 -C o -s 32") == NV_TEXT + "\n"
    assert after(again, "tpm2_createprimary -C o -G ecc -c prim.ctx") == primary
    # PCR 16 was reset by the new TPM2_Startup(CLEAR): the policy no longer holds
    unseal = after(again, "tpm2_unseal -c seal.ctx -p pcr:sha256:16; echo unseal $?")
    assert SECRET not in unseal and unseal.endswith("unseal 1\n"), unseal

    # another uuid is another TPM 2.0: a new seed, no NV index
    stop_guest_and_vtpm(host)
    start_vtpm_and_guest(host, 'vtpm=["backend=vtpmmgr,uuid=%s"]' % UUID2)
    fresh = host.guest("modprobe xen-tpmfront", "tpm2_getcap handles-nv-index",
                       "tpm2_createprimary -C o -G ecc -c prim.ctx")
    assert after(fresh, "tpm2_getcap handles-nv-index") == ""
    other = after(fresh, "tpm2_createprimary -C o -G ecc -c prim.ctx")
    assert re.search(r"x: [0-9a-f]{64}", other) and other != primary


def pcr_values(yaml_text: str) -> dict[tuple[str, int], str]:
    """{(bank, pcr): hex} from tpm2_pcrread's or tpm2_eventlog's `pcrs:` YAML."""
    vals, bank = {}, None
    for line in yaml_text.splitlines():
        m = re.match(r"^\s*(sha1|sha256):\s*$", line)
        if m:
            bank = m.group(1)
            continue
        m = re.match(r"^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$", line)
        if m and bank:
            vals[(bank, int(m.group(1)))] = m.group(2).upper()
    return vals


def extend(bank: str, *data: bytes) -> str:
    h = getattr(hashlib, bank)
    pcr = bytes(h().digest_size)
    for d in data:
        pcr = h(pcr + h(d).digest()).digest()
    return pcr.hex().upper()


@pytest.mark.slow
@pytest.mark.peer("tpm2-tools")
def test_pvgrub_event_log_replays_to_the_pcrs(host):
    """PV-GRUB measures the kernel (PCR 4), its command line and initrd
    (PCR 5) into both banks of a TPM 2.0 vTPM and leaves a TCG2 event log
    that tpm2_eventlog, in the guest, replays to what tpm2_pcrread reads."""
    kernel = b"\x7fELF pretend kernel image " * 1000
    initrd = b"070701 pretend initramfs " * 500
    (host.dir / "vmlinuz").write_bytes(kernel)
    (host.dir / "initrd.img").write_bytes(initrd)
    args = "root=/dev/xvda1 console=hvc0 ro"
    (host.dir / "menu.lst").write_text("default 0\ntitle Debian\n  kernel %s/vmlinuz %s\n"
                                       "  initrd %s/initrd.img\n" % (host.dir, args, host.dir))
    start_manager(host)
    start_vtpm_and_guest(host, guest_cfg="domu-pvgrub.cfg",
                         guest_extra=('extra="(hd0,0)%s/menu.lst"' % host.dir,))
    log = "/sys/kernel/security/tpm0/binary_bios_measurements"
    out = host.guest("modprobe xen-tpmfront", "ls /sys/kernel/security/tpm0",
                     "tpm2_eventlog %s" % log, "tpm2_pcrread sha1:4,5+sha256:4,5")
    assert after(out, "ls /sys/kernel/security/tpm0") == "binary_bios_measurements\n"
    events = after(out, "tpm2_eventlog %s" % log)
    assert "EV_NO_ACTION" in events and "Spec ID Event03" in events, events
    replayed = pcr_values(events[events.index("pcrs:"):])
    read = pcr_values(after(out, "tpm2_pcrread sha1:4,5+sha256:4,5"))
    want = {(b, 4): extend(b, kernel) for b in ("sha1", "sha256")}
    want.update({(b, 5): extend(b, args.encode(), initrd) for b in ("sha1", "sha256")})
    assert read == want, out
    assert replayed == want, events


@pytest.mark.slow
@pytest.mark.peer("tpm2-tools")
def test_a_tpm12_guest_has_no_tpmrm0(host):
    """On the guide's TPM 1.2 vTPM the guest has /dev/tpm0 only, and
    tpm2-tools find no TPM 2.0, as on such a real guest.  That vTPM's state
    is never replaced by a blank TPM 2.0 when `tpm2=1` is started on it."""
    start_manager(host)
    vtpm, kernel = host.dir / "vtpm.img", host.dir / "vmlinuz"
    with open(vtpm, "wb") as f:
        f.truncate(8 << 20)
    kernel.write_text("pyxl: stand-in for the domU kernel image\n")
    host.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % vtpm)
    host.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    host.create("domu.cfg", 'kernel="%s"' % kernel)
    out = host.guest("modprobe xen-tpmfront", "ls /dev", "ls /sys/class/tpm/tpm0",
                     "tpm2_getcap handles-transient; echo status $?")
    assert "tpmrm0" not in after(out, "ls /dev") and "tpm0" in after(out, "ls /dev")
    assert after(out, "ls /sys/class/tpm/tpm0").split() == ["caps", "pcrs", "pubek",
                                                            "tpm_version_major"]
    failed = after(out, "tpm2_getcap handles-transient; echo status $?")
    assert failed.endswith("status 1\n") and "ERROR" in failed, failed

    stop_guest_and_vtpm(host)            # the TPM 1.2 saved its state at shutdown
    disk = vtpm.read_bytes()
    host.create("vtpm2.cfg", 'disk=["file:%s,hda,w"]' % vtpm)
    log = host.wait_console("domu-vtpm", "tpm2: Error: Unable to start the TPM 2.0")
    assert "this is a TPM 1.2 state, not a TPM 2.0 one" in log
    host.wait_gone("domu-vtpm")
    assert vtpm.read_bytes() == disk
