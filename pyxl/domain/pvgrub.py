"""pv-grub: the PV bootloader stub domain (stubdom/grub), with the vTPM
measurements of kexec.c `tpm_hash2pcr` (facts sec. 6), then the guest.

    kernel="/usr/lib/xen/boot/pv-grub-x86_64.gz"
    extra="(hd0,0)/boot/grub/menu.lst"        # a GRUB legacy menu, or
    extra="/boot/vmlinuz-6.1 root=/dev/xvda1"  # a kernel and its arguments

Where the guest's files come from (pyxl's choice; real pv-grub reads the
guest's own disk with GRUB's filesystem drivers): paths are host paths; a
leading GRUB device such as `(hd0,0)` is dropped.  A menu's `default`
entry (else the first) gives `kernel PATH ARGS...` and `initrd PATH`.

Before booting, if the guest has a vtpm (device/vtpm/0), pv-grub opens it
with mini-os tpmfront and sends three raw TPM_Extend commands:
PCR 4 <- SHA-1(kernel image), PCR 5 <- SHA-1(command line: the words after
the kernel path), PCR 5 <- SHA-1(initrd, or of nothing).  Responses are not
checked and a missing vTPM skips the measurement, as in the original.

A TPM 2.0 vTPM (vtpm-stubdom `tpm2=1`; pv-grub asks as Linux's tpm2_probe
does) gets the same three measurements as TPM2_PCR_Extend with both a SHA-1
and a SHA-256 digest, and pv-grub -- like a TPM 2.0 platform's firmware --
records them in a TCG2 crypto-agile event log (eventlog.py) that the guest
reads as /sys/kernel/security/tpm0/binary_bios_measurements.  The original
pv-grub knows only TPM 1.2; this is pyxl's extension.
Then tpmfront is shut down (back to Initialising) so the guest kernel's
xen-tpmfront can open the device again, and this domain becomes the guest:
the simulated Linux boots with the loaded kernel's path and arguments.
"""

from __future__ import annotations

import hashlib
import re
import struct

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from pyxl.domain.minios import Printk
    from pyxl.domain.process import Domain

TPM_ORD_EXTEND = 0x14
PCR_KERNEL, PCR_CMDLINE = 4, 5
_DEVICE = re.compile(r"^\([a-z]+\d+(,\d+)?\)")
_COMMAND = re.compile(r"^(\S+?)(?:\s*=\s*|\s+)(.*)$")      # "default 0", "default=0"


class BootError(Exception):
    """GRUB's own error (printed, then the domain crashes like a failed boot)."""


def host_path(path: str) -> str:
    return _DEVICE.sub("", path, count=1) or "/"


def extend_request(pcr: int, digest: bytes) -> bytes:
    """TPM_Extend: tag RQU_COMMAND, 34 bytes, ordinal 0x14, PCR, digest."""
    return struct.pack(">HII I", 0xC1, 34, TPM_ORD_EXTEND, pcr) + digest


def parse_menu(text: str) -> tuple[str, str, str | None]:
    """(kernel path, arguments, initrd path or None) of the default entry."""
    default = 0
    entries: list[dict[str, str | None]] = []
    cur: dict[str, str | None] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _COMMAND.match(line)
        word, rest = (m.group(1), m.group(2).strip()) if m else (line, "")
        if word == "default" and cur is None:
            try:
                default = int(rest)
            except ValueError:
                pass
        elif word == "title":
            cur = {"kernel": None, "initrd": None}
            entries.append(cur)
        elif word in ("kernel", "initrd") and cur is not None:
            cur[word] = rest
    e = entries[default] if entries and default < len(entries) else {}
    kernel, initrd = e.get("kernel"), e.get("initrd")
    if not kernel:
        raise BootError("Error 15: File not found")
    path, _, args = kernel.partition(" ")
    return path, args.strip(), initrd.split()[0] if initrd else None


def boot_entry(cmdline: str) -> tuple[str, str, str | None]:
    words = cmdline.split(None, 1)
    if not words:
        raise BootError("Error 15: File not found")
    first = host_path(words[0])
    if first.endswith((".lst", ".conf")):
        try:
            with open(first, encoding="utf-8", errors="replace") as f:
                return parse_menu(f.read())
        except OSError:
            raise BootError("Error 15: File not found") from None
    return words[0], words[1] if len(words) > 1 else "", None


def read_file(path: str) -> bytes:
    try:
        with open(host_path(path), "rb") as f:
            return f.read()
    except OSError:
        raise BootError("Error 15: File not found") from None


def measure(dom: Domain, printk: Printk, kernel: bytes, args: str, initrd: bytes,
            kernel_path: str = "", initrd_path: str = "") -> bool:
    """tpm_hash2pcr: three extends through the guest's vTPM; False if none.
    For a TPM 2.0 the event log is left in dom.tpm_event_log."""
    from pyxl.domain import tpm2_frames as T2
    from pyxl.domain.drivers.tpmfront import TpmFront, TpmFrontError
    from pyxl.domain.eventlog import EV_IPL, EventLog

    try:
        if not dom.xen.read_str("device/vtpm/0/backend", default=""):
            return False
    except OSError:
        return False
    try:
        front = TpmFront(dom.xen, printk, "device/vtpm/0", timeout=10)
    except (TpmFrontError, OSError):
        return False
    measurements = ((PCR_KERNEL, kernel, "kernel " + kernel_path),
                    (PCR_CMDLINE, args.encode(), "cmdline " + args),
                    (PCR_CMDLINE, initrd, "initrd " + initrd_path))
    try:
        if T2.is_tpm2_response(front.cmd(T2.probe_request())):
            log = EventLog()
            for pcr, data, what in measurements:
                values = T2.digests(data)
                front.cmd(T2.pcr_extend_request(pcr, values))
                log.add(pcr, EV_IPL, values, what.encode())
            dom.tpm_event_log = log.bytes()
        else:
            for pcr, data, _ in measurements:
                front.cmd(extend_request(pcr, hashlib.sha1(data).digest()))
    except (TpmFrontError, OSError):
        pass
    finally:
        try:
            front.shutdown()
        except OSError:
            pass
    return True


def boot(dom: Domain) -> None:
    from pyxl.domain.minios import make_printk

    printk = make_printk(dom.console_write)
    printk("    GNU GRUB  version 0.97  (%dK lower / 0K upper memory)\n\n" % (dom.memkb or 0))
    try:
        path, args, initrd_path = boot_entry(dom.cmdline)
        printk("kernel %s %s\n" % (path, args) if args else "kernel %s\n" % path)
        kernel = read_file(path)
        initrd = b""
        if initrd_path:
            printk("initrd %s\n" % initrd_path)
            initrd = read_file(initrd_path)
    except BootError as e:
        printk("\n%s\n\nPress any key to continue...\n" % e)
        dom.shutdown(3)                          # SHUTDOWN_crash: nothing to boot
        return
    measure(dom, printk, kernel, args, initrd, path, initrd_path or "")
    # kexec: the domain is now the guest kernel
    dom.kernel, dom.cmdline = host_path(path), args
    from pyxl.domain.linux import guest

    guest.boot(dom)

