"""pv-grub with a vTPM (the guide's INTEGRATION WITH PV-GRUB): the guest's
PCR 4 holds its kernel's hash, PCR 5 its command line then its initrd,
exactly as three TPM_Extend commands from pv-grub leave them."""

from __future__ import annotations

import hashlib
import re

import pytest
from wt_host import Host

UUID = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"


def extend(pcr: bytes, data: bytes) -> bytes:
    return hashlib.sha1(pcr + hashlib.sha1(data).digest()).digest()


def pcrs(text: str) -> dict[int, bytes]:
    return {int(m.group(1)): bytes.fromhex(m.group(2).replace(" ", ""))
            for m in re.finditer(r"^PCR-(\d\d): ((?:[0-9A-F]{2} ){20})$", text, re.M)}


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


@pytest.mark.slow
@pytest.mark.parametrize("menu", [False, True], ids=["kernel-in-extra", "menu-lst"])
def test_pvgrub_measures_kernel_cmdline_initrd(host, menu):
    d = host.dir
    (d / "mgr.img").write_bytes(bytes(16 << 20))
    (d / "vtpm.img").write_bytes(bytes(8 << 20))
    kernel = b"\x7fELF pretend kernel image " * 1000
    initrd = b"070701 pretend initramfs " * 500
    (d / "vmlinuz").write_bytes(kernel)
    (d / "initrd.img").write_bytes(initrd)
    args = "root=/dev/xvda1 console=hvc0 ro"
    if menu:
        (d / "menu.lst").write_text("default 0\ntimeout 5\n\ntitle Debian\n  root (hd0,0)\n"
                                    "  kernel (hd0,0)%s/vmlinuz %s\n  initrd %s/initrd.img\n"
                                    % (d, args, d))
        extra = "(hd0,0)%s/menu.lst" % d
    else:
        extra = "%s/vmlinuz %s" % (d, args)
    host.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s/mgr.img,hda,w"]' % d)
    host.wait_console("vtpmmgr", "INFO[VTPM]: Waiting for commands from vTPM's:")
    host.create("vtpm.cfg", 'disk=["file:%s/vtpm.img,hda,w"]' % d)
    host.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    host.create("domu-pvgrub.cfg", 'extra="%s"' % extra)
    out = host.guest("modprobe xen-tpmfront", "cat /proc/cmdline", "cat /sys/devices/vtpm-0/pcrs")
    assert "\n%s\n" % args in out
    got = pcrs(out)
    assert len(got) == 24
    assert got[4] == extend(bytes(20), kernel)
    assert got[5] == extend(extend(bytes(20), args.encode()), initrd if menu else b"")
    assert all(got[i] == bytes(20) for i in range(16) if i not in (4, 5))
    con = host.console_log("domu")
    assert con.startswith("    GNU GRUB  version 0.97")
    assert "Tpmfront:Info Initialization Completed successfully\n" in con
    vlog = host.console_log("domu-vtpm")
    assert vlog.count("Tpmback:Info Frontend") >= 3       # pv-grub, its goodbye, the kernel
