"""A daemon SIGKILLed while a domain waits, in its start, for a xenstore
answer: the domain waits for the next daemon, as a request on Xen's
xenstore ring waits for xenstored, and its start carries on.

The instant is exact, not a matter of timing: each domain is created paused
(so it is recorded, the next daemon's to adopt, before it runs), and the
daemon runs with the test hook PYXL_TEST_FAULT_AT=request:<name>:<path>
(pyxl/hypervisor/testfault.py), by which it SIGKILLs itself on reading that
domain's request about <path>, unanswered, or (tpm:<ordinal>) when its
hardware TPM is started on that command.  The next pyxl command starts
the next daemon (with the next step's hook, if any).

The steps, along the guide's chain: vtpmmgr-stubdom and vtpm-stubdom in
mini-os's init_blkfront (pyxl/domain/minios.py), the guest's pv-grub
looking for its vTPM before measuring the kernel (pyxl/domain/pvgrub.py),
then the guest's Linux probing its devices (pyxl/domain/linux/guest.py).
"""

from __future__ import annotations

import os
import time

import pytest
from test_daemon_restart_vtpm import _sysfs
from test_pvgrub import extend, pcrs
from wt_host import EXAMPLES, Host, procs_with_root

from pyxl.domain.vtpmmgr.hwtpm2 import TPM_CC_RSA_Decrypt, TPM_CC_RSA_Encrypt
from pyxl.tpm.constants import TPM_ORD_UnBind

# what a failed step prints (a fresh vTPM's "VTPM_LoadHashKey failed" is
# the guide's own first start, not one)
FAILED = ("Tpmfront:Error", "Tpmback:Error", "Unable to", "Traceback",
          "Error sending command through frontend device")


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


def _daemon(h: Host) -> int:
    pids = [p for p in procs_with_root(h.root)
            if b"pyxl.toolstack.daemon" in open("/proc/%d/cmdline" % p, "rb").read()]
    assert len(pids) == 1, pids
    return pids[0]


def _gone(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _fault(h: Host, name: str | None = None, path: str = "") -> None:
    """The hook of the daemon the next command starts."""
    if name is None:
        h.env.pop("PYXL_TEST_FAULT_AT", None)
    else:
        h.env["PYXL_TEST_FAULT_AT"] = "request:%s:%s" % (name, path)


def _wait_daemon_killed(h: Host, daemon: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while not _gone(daemon):
        assert time.monotonic() < deadline, "no request " + what
        time.sleep(0.02)


def _start_killed_at(h: Host, name: str, path: str, cfg: str, *extra: str,
                     then: tuple[str, str] | None = None) -> None:
    """Create `name` paused (the daemon running now, or the one create
    starts, has the hook for its request about `path`), let it run, see
    the daemon die; `then`: the next daemon's hook."""
    p = h.run("create", "-p", str(EXAMPLES / cfg), *extra)
    assert p.returncode == 0, p.stderr
    daemon = _daemon(h)
    _fault(h, *(then or ()))
    h.run("unpause", name)             # its daemon may die before it answers
    _wait_daemon_killed(h, daemon, "from %s about %s" % (name, path))


def _monitor_log(h: Host, name: str) -> str:
    return os.path.join(h.root, "var/log/pyxl/xl-%s.log" % name)


def _adopted_running(h: Host, name: str, since: int = 0) -> None:
    """`since`: where this start's lines begin in its monitor's log."""
    rows = h.domains()                 # the next daemon
    assert name in rows and rows[name][3][3] != "s", rows
    with open(_monitor_log(h, name)) as f:
        assert "has shut down" not in f.read()[since:], name


def _images(h: Host) -> None:
    (h.dir / "mgr.img").write_bytes(bytes(16 << 20))
    (h.dir / "vtpm.img").write_bytes(bytes(8 << 20))


def _nothing_failed(h: Host, *names: str) -> None:
    for name in names:
        log = h.console_log(name)
        for failed in FAILED:
            assert failed not in log, (name, failed, log)


def test_stub_domains_killed_daemon_in_init_blkfront_carry_on(host):
    """The manager, then the vTPM, each while it reads its disk's backend."""
    h, d = host, host.dir
    _images(h)
    _fault(h, "vtpmmgr", "device/vbd/768/backend")
    _start_killed_at(h, "vtpmmgr", "device/vbd/768/backend", "vtpmmgr-stubdom.cfg",
                     'disk=["file:%s,hda,w"]' % (d / "mgr.img"),
                     then=("domu-vtpm", "device/vbd/768/backend"))
    _adopted_running(h, "vtpmmgr")
    log = h.wait_console("vtpmmgr", "INFO[VTPM]: Waiting for commands from vTPM's:")
    assert "backend at /local/domain/0/backend/vbd/" in log, log

    _start_killed_at(h, "domu-vtpm", "device/vbd/768/backend", "vtpm.cfg",
                     'disk=["file:%s,hda,w"]' % (d / "vtpm.img"))
    _adopted_running(h, "domu-vtpm")
    log = h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    assert "backend at /local/domain/0/backend/vbd/" in log, log
    _nothing_failed(h, "vtpmmgr", "domu-vtpm")


def test_guest_killed_daemon_in_pvgrub_then_in_linux_boot_carries_on(host):
    """pv-grub while it looks for its vTPM, then (the next daemon) the
    kernel it booted while it probes its devices: PCR 4 holds the kernel's
    measurement and Linux found its vTPM."""
    h, d = host, host.dir
    _images(h)
    kernel = b"\x7fELF pretend kernel image " * 1000
    (d / "vmlinuz").write_bytes(kernel)
    _fault(h, "domu", "device/vtpm/0/backend")     # the daemon the first create starts
    h.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % (d / "mgr.img"))
    h.wait_console("vtpmmgr", "INFO[VTPM]: Waiting for commands from vTPM's:")
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % (d / "vtpm.img"))
    h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    _start_killed_at(h, "domu", "device/vtpm/0/backend", "domu-pvgrub.cfg",
                     'extra="%s/vmlinuz root=/dev/xvda1 console=hvc0"' % d,
                     then=("domu", "device/vtpm"))
    assert "domu" in h.domains()       # the next daemon, with the kernel's hook
    _fault(h)
    _wait_daemon_killed(h, _daemon(h), "from the guest's Linux about device/vtpm")
    _adopted_running(h, "domu")
    log = h.wait_console("domu", "login:", timeout=60)
    assert "xenbus_probe_frontend: Device with no driver: device/vtpm/0" in log, log
    out = h.guest("modprobe xen-tpmfront", "cat /sys/devices/vtpm-0/pcrs")
    assert pcrs(out)[4] == extend(bytes(20), kernel), out   # pv-grub measured the kernel
    _nothing_failed(h, "vtpmmgr", "domu-vtpm", "domu")


FIFO = 0xFED40000 + 0x24        # the manager's TIS data FIFO, locality 0


def test_manager_hw_command_killed_daemon_serving_a_vtpm_start_is_sent_again(host):
    """The daemon is killed while the manager reads from the hardware
    TPM's FIFO the answer to the first command it runs for the vTPM's
    start, the vTPM's TPM_GetRandom (the hook armed, through its file,
    once the manager waits for vTPMs).  The manager sends the command
    again once the next daemon's chip is up, instead of answering
    TPM_IOERROR (which, reaching tpmfront before it noticed its own
    break, failed the vTPM's start: 'Unable to initialize RNG'), and the
    vTPM starts and serves its guest.  The vTPM's tpmfront, on its new
    ring, takes the answer from its old ring or sends the GetRandom again,
    which the manager's tpmback then answers from what it kept: no answer
    is dropped (tpmback would say so), no command run twice."""
    h, d = host, host.dir
    _images(h)
    armed = d / "fault-at"
    armed.write_text("")
    h.env["PYXL_TEST_FAULT_AT"] = "file:%s" % armed
    h.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % (d / "mgr.img"))
    h.wait_console("vtpmmgr", "INFO[VTPM]: Waiting for commands from vTPM's:")
    p = h.run("create", "-p", str(EXAMPLES / "vtpm.cfg"),
              'disk=["file:%s,hda,w"]' % (d / "vtpm.img"))
    assert p.returncode == 0, p.stderr
    daemon = _daemon(h)
    armed.write_text("request:vtpmmgr:%d" % FIFO)
    _fault(h)                          # the next daemon: no hook
    h.run("unpause", "domu-vtpm")
    _wait_daemon_killed(h, daemon, "from vtpmmgr's FIFO")
    _adopted_running(h, "domu-vtpm")
    h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    mgr = h.console_log("vtpmmgr")
    start = mgr.index("Frontend 2/0 connected")
    assert "TPM_IOERROR" not in mgr, mgr[start:]
    # killed in the GetRandom: the next the chip ran was the resume's OIAP
    assert "Passthrough: TPM_GetRandom\nINFO[TPM]: TPM_OIAP" in mgr[start:], mgr[start:]
    for failed in FAILED:
        assert failed not in mgr, (failed, mgr[start:])
    # and it serves its guest: pv-grub's measurement of the kernel is in PCR 4
    kernel = b"\x7fELF pretend kernel image " * 1000
    (d / "vmlinuz").write_bytes(kernel)
    h.create("domu-pvgrub.cfg", 'extra="%s/vmlinuz root=/dev/xvda1 console=hvc0"' % d)
    h.wait_console("domu", "login:", timeout=60)
    out = h.guest("modprobe xen-tpmfront", "cat /sys/devices/vtpm-0/pcrs")
    assert pcrs(out)[4] == extend(bytes(20), kernel), out
    _nothing_failed(h, "domu-vtpm", "domu")


def _killed_in_the_managers_unbind(h: Host, ordinal: int, *mgr_extra: str) -> str:
    """A vTPM saves its state through its guest's session (the guest reads
    its chip's caps and EK); it is started again on its image, and the
    daemon is killed when the hardware TPM is started on `ordinal` (the
    hook armed, through its file, once the manager waits for vTPMs again):
    the command that unbinds the vTPM's hash and key for its
    VTPM_LoadHashKey.  The vTPM starts and serves its guest the state it
    saved, not a blank one.  The manager's console from the vTPM's second
    start."""
    d = h.dir
    _images(h)
    armed = d / "fault-at"
    armed.write_text("")
    h.env["PYXL_TEST_FAULT_AT"] = "file:%s" % armed
    kernel = d / "vmlinuz"
    kernel.write_text("stand-in kernel\n")
    h.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % (d / "mgr.img"), *mgr_extra)
    h.wait_console("vtpmmgr", "INFO[VTPM]: Waiting for commands from vTPM's:")
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % (d / "vtpm.img"))
    h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    h.create("domu.cfg", 'kernel="%s"' % kernel)
    h.guest("modprobe xen-tpmfront")
    saved = _sysfs(h, "caps", "pubek")
    assert "Modulus length: 256\n" in saved[1], saved
    assert h.run("shutdown", "-w", "domu").returncode == 0
    h.wait_gone("domu-vtpm")
    assert "Saved hash and key for vtpm" in h.console_log("vtpmmgr")

    since, vtpm_since = h.console_size("vtpmmgr"), h.console_size("domu-vtpm")
    monitor_since = os.path.getsize(_monitor_log(h, "domu-vtpm"))
    p = h.run("create", "-p", str(EXAMPLES / "vtpm.cfg"),
              'disk=["file:%s,hda,w"]' % (d / "vtpm.img"))
    assert p.returncode == 0, p.stderr
    daemon = _daemon(h)
    armed.write_text("tpm:%d" % ordinal)
    _fault(h)                          # the next daemon: no hook
    h.run("unpause", "domu-vtpm")
    _wait_daemon_killed(h, daemon, "for the chip's command %#x" % ordinal)
    _adopted_running(h, "domu-vtpm", monitor_since)
    h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..", since=vtpm_since)
    h.create("domu.cfg", 'kernel="%s"' % kernel)
    h.guest("modprobe xen-tpmfront")
    assert _sysfs(h, "caps", "pubek") == saved          # the state it saved
    mgr = h.console_log("vtpmmgr")[since:]
    assert "TPM_IOERROR" not in mgr, mgr
    assert "Loaded hash and key for vtpm" in mgr, mgr
    for failed in FAILED:
        assert failed not in mgr, (failed, mgr)
    vtpm = h.console_log("domu-vtpm")[vtpm_since:]
    for failed in FAILED + ("VTPM_LoadHashKey failed",):
        assert failed not in vtpm, (failed, vtpm)
    return mgr


def test_manager_unbind_for_load_hashkey_killed_daemon_is_sent_again(host):
    """TPM 1.2 chip: the TPM_UnBind of the vTPM's VTPM_LoadHashKey, sent
    again under the resumed chip's new OIAP session and reloaded storage
    key."""
    mgr = _killed_in_the_managers_unbind(host, TPM_ORD_UnBind)
    assert "INFO[TPM]: TPM_UnBind\nINFO[TPM]: TPM_OIAP\n" in mgr, mgr


def test_manager_tpm2_rsa_decrypt_for_load_hashkey_killed_daemon_is_sent_again(host):
    """TPM 2.0 chip (PYXL_HWTPM=2.0, the manager with tpm2=1): the
    TPM2_RSA_Decrypt of the vTPM's VTPM_LoadHashKey, sent again under the
    storage key the resumed manager loaded again."""
    host.env["PYXL_HWTPM"] = "2.0"
    mgr = _killed_in_the_managers_unbind(host, TPM_CC_RSA_Decrypt, 'extra="tpm2=1"')
    assert "INFO[TPM]: TPM2_RSA_Decrypt\nINFO[TPM]: TPM2_CreatePrimary\n" in mgr, mgr


def test_manager_tpm2_rsa_encrypt_for_a_new_vtpms_save_killed_daemon_is_sent_again(host):
    """TPM 2.0 chip: the daemon is killed when the chip is started on the
    first TPM2_RSA_Encrypt of a new vTPM's first VTPM_SaveHashKey (the
    manager binding the uuid table's new key to register the vTPM), which
    pv-grub's measurement of the kernel causes.  The save is sent again
    once the chip is up, and registers the vTPM on disk: the manager,
    destroyed and created again on its disk, loads it, and the vTPM
    started again serves its guest the state it saved, not a blank one.
    pv-grub's TPM_Extend of the kernel, in flight meanwhile, is run once:
    PCR 4 holds one measurement of the kernel, not two (pv-grub sends it
    again on its new ring, and the vTPM's tpmback answers that from what
    it kept, or pv-grub finds the answer on its old ring)."""
    h, d = host, host.dir
    h.env["PYXL_HWTPM"] = "2.0"
    _images(h)
    armed = d / "fault-at"
    armed.write_text("")
    h.env["PYXL_TEST_FAULT_AT"] = "file:%s" % armed
    kernel = b"\x7fELF pretend kernel image " * 1000
    (d / "vmlinuz").write_bytes(kernel)
    mgr_cfg = ('disk=["file:%s,hda,w"]' % (d / "mgr.img"), 'extra="tpm2=1"')
    h.create("vtpmmgr-stubdom.cfg", *mgr_cfg)
    h.wait_console("vtpmmgr", "INFO[VTPM]: Waiting for commands from vTPM's:")
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % (d / "vtpm.img"))
    h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    p = h.run("create", "-p", str(EXAMPLES / "domu-pvgrub.cfg"),
              'extra="%s/vmlinuz root=/dev/xvda1 console=hvc0"' % d)
    assert p.returncode == 0, p.stderr
    daemon = _daemon(h)
    armed.write_text("tpm:%d" % TPM_CC_RSA_Encrypt)
    _fault(h)                          # the next daemon: no hook
    h.run("unpause", "domu")
    _wait_daemon_killed(h, daemon, "for the chip's TPM2_RSA_Encrypt")
    _adopted_running(h, "domu")
    h.wait_console("domu", "login:", timeout=60)
    h.guest("modprobe xen-tpmfront")
    saved = _sysfs(h, "caps", "pubek", "pcrs")
    assert "Modulus length: 256\n" in saved[1], saved
    assert pcrs(saved[2])[4] == extend(bytes(20), kernel), saved[2]    # measured once
    saved.pop()
    mgr = h.console_log("vtpmmgr")
    assert "TPM_IOERROR" not in mgr, mgr
    # killed in the table key's bind: the next the chip ran was the resume's
    assert "Binding encrypted key\nINFO[TPM]: TPM2_RSA_ENCRYPT\nINFO[TPM]: TPM2_CreatePrimary\n" \
        in mgr, mgr
    assert h.run("shutdown", "-w", "domu").returncode == 0
    h.wait_gone("domu-vtpm")

    assert h.run("destroy", "vtpmmgr").returncode == 0
    since, vtpm_since = h.console_size("vtpmmgr"), h.console_size("domu-vtpm")
    h.create("vtpmmgr-stubdom.cfg", *mgr_cfg)
    mgr = h.wait_console("vtpmmgr", "INFO[VTPM]: Waiting for commands from vTPM's:",
                         since=since)[since:]
    assert "INFO[VTPM]: Loaded 1 vtpms!\n" in mgr, mgr
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % (d / "vtpm.img"))
    vtpm = h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..",
                          since=vtpm_since)[vtpm_since:]
    assert "initializing TPM data to default values" not in vtpm, vtpm
    h.create("domu.cfg", 'kernel="%s"' % (d / "vmlinuz"))
    h.guest("modprobe xen-tpmfront")
    assert _sysfs(h, "caps", "pubek") == saved          # the state it saved
    vtpm = h.console_log("domu-vtpm")
    for failed in FAILED:
        assert failed not in vtpm, (failed, vtpm)
