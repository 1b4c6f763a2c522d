#!/usr/bin/env python3
"""Generate whole xl domain configs: realistic and edge-case values per key.

    python tests/config/gen_corpus.py DIR [-n 1000] [--seed S]

writes DIR/0000.cfg ... (a fresh corpus for
`/work/shared/oracle/compare.py DIR --candidate 'pyxl create -n {cfg}'`).
`generate(rng)` is also what the hypothesis test draws from (with a
hypothesis-controlled random.Random), so both explore the same space.

Values are drawn per key from strategies mixing what real configs contain
with the edge cases xl handles specially (prefix matching, base-0 numbers,
overflow, wrong kinds: lists where strings are wanted and vice versa, specs
with unknown or repeated options).  The emitted syntax is deliberately plain
(`key = value` lines, sometimes `+=`, a repeated key, a comment, a list
spread over lines): the config *language* has its own generator in
cfg-lang's tests.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

# ---------------------------------------------------------------- atoms

NUMBERS = ["0", "1", "2", "3", "4", "8", "16", "64", "128", "256", "512", "1024", "2048",
           "0x10", "0x200", "010", "0777", "08", "12abc", "99999999999999999999",
           "4294967295", "2147483647", "2147483648", "9223372036854775807"]
QNUMBERS = ["-1", "-5", "+12", " 12", "abc", "", "0x", "1.5", "1e3", "0X10", "-0"]
WORDS = ["guest", "domu", "vtpmmgr", "a b", "x", "Dom0", "élan", "dom/1", "tab\there"]
PATHS = ["/boot/vmlinuz", "/usr/lib/xen/boot/vtpm-stubdom.gz", "/var/lib/xen/images/a.img",
         "/usr/lib/xen/boot/hvmloader", "hvmloader", "", "rel/path", "/a,b"]
UUIDS = ["ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839", "AC0A5B9E-CBE2-4C07-B43B-1D69E46FB839",
         "00000000-0000-0000-0000-000000000000", "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb83",
         "ac0a5b9ecbe24c07b43b1d69e46fb839", "zc0a5b9e-cbe2-4c07-b43b-1d69e46fb839",
         "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb8390", "ac0a5b9e_cbe2-4c07-b43b-1d69e46fb839"]
ACTIONS = ["destroy", "restart", "rename-restart", "preserve", "coredump-destroy",
           "coredump-restart", "soft-reset", "reboot", "", "Destroy", "restart_rename"]


def q(s: str) -> str:
    """A config string literal for s (no escapes needed by construction)."""
    if '"' in s:
        return "'" + s + "'"
    return '"' + s + '"'


def lst(items) -> str:
    return "[" + ", ".join(items) + "]"


def pick(rng, xs):
    return xs[rng.randrange(len(xs))]


def number(rng):
    """A numeric value: mostly a NUMBER token, sometimes a quoted string."""
    r = rng.random()
    if r < 0.6:
        n = pick(rng, NUMBERS)
        return n if n[0].isdigit() and n.replace("x", "").isalnum() else q(n)
    if r < 0.85:
        return q(pick(rng, NUMBERS + QNUMBERS))
    return pick(rng, [lst([q("1")]), q("x"), "1"])


def small(rng, hi=8):
    n = str(rng.randrange(hi + 1))
    return n if rng.random() < 0.8 else q(n)


def boolean(rng):
    return pick(rng, ["0", "1", "1", "0", q("1"), q("yes"), "2", lst([])])


def string(rng, choices):
    r = rng.random()
    if r < 0.85:
        return q(pick(rng, choices))
    if r < 0.95:
        return lst([q(pick(rng, choices))])
    return pick(rng, ["1", "0x10"])


def slist(rng, gen, lo=0, hi=3):
    r = rng.random()
    items = [gen(rng) for _ in range(rng.randint(lo, hi))]
    if r < 0.9:
        return lst(q(i) for i in items)
    if r < 0.95 and items:
        return q(items[0])           # a single value where a list is wanted
    return lst([q(i) for i in items] + [lst([q("nested")])] + [q("after")])


MUTATION_CHARS = ",=:;@.-*^ x0123456789abcdefgrwhnopt/\t"


def mutate(rng, s: str) -> str:
    """A few random edits: what a typo or a fuzzer does to a spec."""
    for _ in range(rng.randint(1, 3)):
        i = rng.randint(0, len(s))
        op = rng.random()
        if op < 0.4 or not s:
            s = s[:i] + pick(rng, MUTATION_CHARS) + s[i:]
        elif op < 0.7:
            s = s[:i] + s[i + 1:]
        else:
            j = rng.randint(0, len(s))
            s = s[:i] + s[j:j + rng.randint(1, 4)] + s[i:]
    return s


def fuzzed(gen, p=0.15):
    """gen, mutated with probability p."""
    return lambda rng: mutate(rng, gen(rng)) if rng.random() < p else gen(rng)


def prefix_of(rng, words, extra=()):
    w = pick(rng, list(words))
    return w[: rng.randint(0, len(w))] if rng.random() < 0.3 else pick(rng, list(words) + list(extra))


# ---------------------------------------------------------------- device specs

def disk_spec(rng):
    target = pick(rng, ["/dev/vg/guest", "/var/lib/xen/images/a.img", "", "iqn.2001-04.com.example:x",
                        "/a b", "/x,y", "/path:with:colons"])
    vdev = pick(rng, ["xvda", "xvdb", "hda", "hdc", "sda", "xvda1", "hdc:cdrom", "xvdb:disk", "xvdc:floppy"])
    fmt = pick(rng, ["raw", "qcow", "qcow2", "vhd", "qed", "empty", "", "bogus"])
    acc = pick(rng, ["w", "r", "rw", "ro", "", "x"])
    style = rng.random()
    if style < 0.35:
        prefix = pick(rng, ["", "", "phy:", "file:", "tap:aio:", "tap2:vhd:", "raw:", "qcow2:",
                            "iscsi:", "nbd:", "drbd:", "aio:", "ioemu:", "tapdisk:", "bogus:", "vhd:"])
        parts = [prefix + target, vdev, acc]
        if not prefix and rng.random() < 0.5:
            parts = [target, fmt, vdev, acc]
    elif style < 0.75:
        kv = ["vdev=" + vdev, "format=" + fmt, "access=" + acc]
        if rng.random() < 0.3:
            kv.append(pick(rng, ["devtype=cdrom", "devtype=disk", "devtype=floppy", "cdrom"]))
        if rng.random() < 0.3:
            kv.append(pick(rng, ["backend=dom0", "backendtype=phy", "backendtype=qdisk",
                                 "backendtype=tap", "backendtype=bogus", "script=block-foo",
                                 "specification=xen", "specification=virtio", "specification=x",
                                 "discard", "no-discard", "direct-io-safe", "colo", "no-colo",
                                 "colo-host=h", "colo-port=7", "colo-port=x", "colo-export=e",
                                 "active-disk=/a", "hidden-disk=/h", "trusted", "untrusted",
                                 "bogus=1", "vdev=xvdz", "format=raw", "format=vhd"]))
        rng.shuffle(kv)
        kv.append("target=" + target)
        parts = kv
    else:
        parts = [target, vdev] + ([acc] if rng.random() < 0.7 else [])
        if rng.random() < 0.3:
            parts.insert(rng.randrange(len(parts) + 1),
                         pick(rng, ["cdrom", "w", " xvde", "x=", "=", "discard", "trusted"]))
    return ",".join(parts)


def vif_spec(rng):
    items = []
    for _ in range(rng.randint(0, 4)):
        items.append(pick(rng, [
            "mac=00:16:3e:00:00:%02x" % rng.randrange(256), "mac=00:16:3E:AA:BB:CC", "mac=00:16:3e",
            "mac=zz:16:3e:00:00:01", "mac=100:16:3e:00:00:01", "bridge=xenbr0", "bridge=xenbr0 ",
            "ip=10.0.0.1", "script=vif-bridge", "backend=dom0", "vifname=vif-guest", "model=e1000",
            "type=vif", "type=ioemu", "type=bogus", "gatewaydev=eth0", "netdev=eth1",
            "rate=10Mb/s", "rate=10Mb/s@20ms", "rate=1GB/s@1s", "rate=100KB/s@50us", "rate=010Mb/s",
            "rate=08Mb/s", "rate=0Mb/s", "rate=10Xb/s", "rate=@20ms", "rate=5MB/s@0ms",
            "rate=4294967296b/s", "rate=10Mb/s@5000s", "mtu=1500", "mtu=9000", "mtu=abc", "mtu=12x",
            "devid=3", "devid=x", "accel=x", "trusted", "untrusted", "bogus", "bogus=1", "",
            "colo_sock_mirror_id=1", "forwarddev=eth0", "colo_checkpoint_port=9"]))
    return ",".join(items)


def vtpm_spec(rng):
    items = []
    if rng.random() < 0.9:
        items.append("backend=" + pick(rng, ["vtpmmgr", "domu-vtpm", "0", "", "vtpm "]))
    if rng.random() < 0.6:
        items.append("uuid=" + pick(rng, UUIDS))
    if rng.random() < 0.15:
        items.insert(rng.randrange(len(items) + 1), pick(rng, ["bogus=1", "noequals", " backend=x"]))
    return ",".join(items)


def pci_spec(rng):
    bdf = pick(rng, ["00:02.0", "0000:00:02.0", "01:00.1", "03:00.*", "ffff:ff:1f.7", "10000:00:02.0",
                     "00:20.0", "00:02.8", "0:0.0", "00:02", "garbage", ""])
    s = bdf
    if rng.random() < 0.2:
        s += "@" + pick(rng, ["3", "1f", "20", "x"])
    for _ in range(rng.randint(0, 2)):
        s += "," + pick(rng, ["permissive=1", "msitranslate=1", "seize=1", "power_mgmt=1",
                             "rdm_policy=strict", "rdm_policy=relaxed", "rdm_policy=bogus",
                             "vslot=3", "vslot=40", "name=gpu", "bdf=01:00.0", "bogus=1", "noeq"])
    return s.lstrip(",")


def iomem_item(rng):
    return pick(rng, ["fed40,5", " fed40, 5", "0xfed40,0x5", "fed40,5@fed40", "fed40", "fed40,",
                      "fed40,5@", "fed40,5x", "zz,1", "1,2@3", "-1,1"])


def ioport_item(rng):
    return pick(rng, ["3f8", "3f8-3ff", "0x3f8-0x3ff", "10-5", "3f8junk", "zz", "3f8-", "3f8-zz",
                      "ffffffff", "-1", "80"])


def irq_item(rng):
    return pick(rng, ["7", "34", "034", "0x7", "7x", "", "4294967295", "4294967294", "-1"])


def cpus_str(rng):
    items = [pick(rng, ["0", "1", "0-1", "1-0", "2-5", "9", "all", "^1", "^0", "^all", "node:0",
                        "nodes:0-1", "node:1", "^node:0", "x", "0-", "3-3", "all,^1", ""])
             for _ in range(rng.randint(1, 3))]
    return ",".join(items)


def vfb_spec(rng):
    return ",".join(pick(rng, ["vnc=1", "vnc=0", "vnclisten=0.0.0.0", "vncpasswd=pw", "vncdisplay=1",
                               "vncunused=1", "keymap=de", "sdl=1", "opengl=1", "display=:0",
                               "xauthority=/x", "type=vnc", "novalue", "bogus=1"])
                    for _ in range(rng.randint(0, 3)))


def vkb_spec(rng):
    return ",".join(pick(rng, ["backend-type=qemu", "backend-type=linux", "backend-type=bogus",
                               "backend=dom0", "unique-id=k0", "feature-disable-keyboard=1",
                               "feature-abs-pointer=1", "feature-multi-touch=1", "multi-touch-width=10",
                               "multi-touch-height=5", "multi-touch-num-contacts=2", "width=800",
                               "height=600", "bogus=1"])
                    for _ in range(rng.randint(0, 3)))


def p9_spec(rng):
    items = [pick(rng, ["tag=share", "path=/srv", "security_model=none", "backend=dom0", "bogus=1",
                        "noeq"]) for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.5:
        items = ["tag=share", "path=/srv", "security_model=none"] + items[:1]
    return ",".join(items)


def channel_spec(rng):
    items = [pick(rng, ["name=org.qemu.guest_agent.0", "connection=pty", "connection=socket",
                        "connection=bogus", "path=/tmp/sock", "backend=dom0", "bogus=1"])
             for _ in range(rng.randint(1, 4))]
    return ",".join(items)


def usbctrl_spec(rng):
    return ",".join(pick(rng, ["type=auto", "type=pv", "type=devicemodel", "type=qusb", "type=bad",
                               "version=2", "version=3", "ports=4", "ports=x", "bogus=1"])
                    for _ in range(rng.randint(0, 3)))


def usbdev_spec(rng):
    return ",".join(pick(rng, ["type=hostdev", "hostbus=1", "hostaddr=3", "hostbus=0x10",
                               "controller=0", "port=1", "bogus=1", "hostaddr=300"])
                    for _ in range(rng.randint(0, 4)))


def vdispl_spec(rng):
    items = [pick(rng, ["backend=dom0", "be-alloc=1", "connectors=id0:1920x1080",
                        "connectors=id0:1920x1080;id1:800x600", "connectors=id0:axb",
                        "bogus=1"]) for _ in range(rng.randint(1, 3))]
    return ",".join(items)


def cpuid_item(rng):
    return pick(rng, ["0x00000001:ecx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0",
                      "1:edx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1,ecx=0000000000000000000000000000000k",
                      "0x7,0:ebx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "x:eax=1", "1,z:eax=1", "1",
                      "1:efx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "1:eax=xx"])


# ---------------------------------------------------------------- keys

def K(rng):
    return None


KEYS = {
    "name": lambda r: string(r, WORDS),
    "type": lambda r: q(prefix_of(r, ["pv", "pvh", "hvm"], ["PV", "xen", "hv m"])),
    "builder": lambda r: q(prefix_of(r, ["generic", "hvm"], ["linux"])),
    "kernel": lambda r: string(r, PATHS),
    "ramdisk": lambda r: string(r, PATHS),
    "cmdline": lambda r: string(r, ["console=hvc0", "root=/dev/xvda1 ro", ""]),
    "root": lambda r: string(r, ["/dev/xvda1", ""]),
    "extra": lambda r: string(r, ["console=hvc0", "quiet"]),
    "bootloader": lambda r: string(r, ["pygrub", "/usr/bin/pygrub", ""]),
    "bootloader_args": lambda r: (slist(r, lambda rr: pick(rr, ["-q", "--entry=1", "x y"]))
                                  if r.random() < 0.6 else q(pick(r, ["-q -v", "--x\t--y", "single"]))),
    "memory": number, "maxmem": number,
    "vcpus": lambda r: small(r, 4) if r.random() < 0.8 else number(r),
    "maxvcpus": lambda r: small(r, 4) if r.random() < 0.8 else number(r),
    "cpus": lambda r: q(cpus_str(r)) if r.random() < 0.7 else slist(r, fuzzed(cpus_str), 0, 4),
    "cpus_soft": lambda r: q(cpus_str(r)) if r.random() < 0.7 else slist(r, fuzzed(cpus_str), 0, 4),
    "on_poweroff": lambda r: string(r, ACTIONS), "on_reboot": lambda r: string(r, ACTIONS),
    "on_watchdog": lambda r: string(r, ACTIONS), "on_crash": lambda r: string(r, ACTIONS),
    "on_soft_reset": lambda r: string(r, ACTIONS),
    "uuid": lambda r: string(r, UUIDS),
    "seclabel": lambda r: string(r, ["system_u:system_r:domU_t", ""]),
    "init_seclabel": lambda r: string(r, ["system_u:system_r:domU_t_building", ""]),
    "disk": lambda r: slist(r, fuzzed(disk_spec), 0, 3),
    "vif": lambda r: slist(r, fuzzed(vif_spec), 0, 3),
    "vtpm": lambda r: slist(r, fuzzed(vtpm_spec), 0, 2),
    "iomem": lambda r: slist(r, fuzzed(iomem_item), 0, 2),
    "ioports": lambda r: slist(r, fuzzed(ioport_item), 0, 2),
    "irqs": lambda r: (slist(r, fuzzed(irq_item), 0, 3) if r.random() < 0.8
                       else lst([pick(r, ["7", "034", "0x7"])])),
    "pci": lambda r: slist(r, fuzzed(pci_spec), 0, 2),
    "pci_permissive": boolean, "pci_msitranslate": boolean, "pci_seize": boolean,
    "pci_power_mgmt": boolean,
    "dtdev": lambda r: slist(r, lambda rr: pick(rr, ["/soc/dma", "/x"]), 0, 2),
    "device_model": lambda r: string(r, ["qemu-dm", "/usr/lib/xen/bin/stubdom-dm"]),
    "device_model_override": lambda r: string(r, ["/usr/bin/qemu-system-i386"]),
    "device_model_version": lambda r: string(r, ["qemu-xen", "qemu-xen-traditional", "qemu", ""]),
    "device_model_stubdomain_override": boolean,
    "device_model_stubdomain_seclabel": lambda r: string(r, ["sys_u:r:dm_t"]),
    "device_model_user": lambda r: string(r, ["qemu", "root"]),
    "device_model_args": lambda r: slist(r, lambda rr: pick(rr, ["-d", "guest_errors", "-s"])),
    "device_model_args_pv": lambda r: slist(r, lambda rr: pick(rr, ["-a", "b"])),
    "device_model_args_hvm": lambda r: slist(r, lambda rr: pick(rr, ["-a", "b"])),
    "stubdomain_kernel": lambda r: string(r, PATHS), "stubdomain_memory": number,
    "stubdomain_cmdline": lambda r: string(r, ["console=hvc0", ""]),
    "stubdomain_ramdisk": lambda r: string(r, PATHS),
    "vsnd": lambda r: (pick(r, VSND) if r.random() < 0.9 else q("card")),
    "hap": boolean, "oos": boolean, "nomigrate": boolean, "localtime": boolean,
    "driver_domain": boolean, "acpi": boolean, "e820_host": boolean, "dm_restrict": boolean,
    "xend_suspend_evtchn_compat": boolean, "vpmu": boolean, "msr_relaxed": boolean,
    "pool": lambda r: string(r, ["Pool-0", "other"]),
    "cpu_weight": number, "cap": number, "period": number, "slice": number, "latency": number,
    "extratime": number, "shadow_memory": number, "videoram": number,
    "max_event_channels": number, "rtc_timeoffset": number, "vncviewer": boolean,
    "tsc_mode": lambda r: (q(pick(r, ["default", "always_emulate", "native", "native_paravirt",
                                      "NATIVE", "bogus"])) if r.random() < 0.6
                           else pick(r, ["0", "1", "3", "4", q("-1")])),
    "timer_mode": lambda r: (q(pick(r, ["delay_for_missed_ticks", "no_delay_for_missed_ticks",
                                        "no_missed_ticks_pending", "one_missed_tick_pending",
                                        "bogus"])) if r.random() < 0.6
                             else pick(r, ["0", "1", "2", "3", "5"])),
    "firmware": lambda r: string(r, ["pvgrub32", "pvgrub64", "pvgrub", "p", "uefi", "bios", "seabios",
                                     "ovmf", "rombios", "u", "/usr/lib/xen/boot/ovmf.bin"]),
    "viridian": lambda r: (boolean(r) if r.random() < 0.3 else
                           slist(r, lambda rr: pick(rr, ["base", "freq", "!freq", "all", "defaults",
                                                         "time_ref_count", "bogus", "!base",
                                                         "HCALL_IPI"]), 0, 3)),
    "max_grant_frames": lambda r: pick(r, ["32", "64", q("abc"), q("-1"), "2147483648", "0"]),
    "max_maptrack_frames": lambda r: pick(r, ["1024", q("x"), "0"]),
    "max_grant_version": lambda r: pick(r, ["1", "2", q("-2")]),
    "ms_vm_genid": lambda r: string(r, ["generate", "none", "bogus"]),
    "vfb": lambda r: slist(r, fuzzed(vfb_spec), 0, 2),
    "vkb": lambda r: slist(r, fuzzed(vkb_spec), 0, 2),
    "p9": lambda r: slist(r, fuzzed(p9_spec), 0, 2),
    "channel": lambda r: slist(r, fuzzed(channel_spec), 1, 2),
    "usbctrl": lambda r: slist(r, fuzzed(usbctrl_spec), 0, 2),
    "usbdev": lambda r: slist(r, fuzzed(usbdev_spec), 0, 2),
    "vdispl": lambda r: slist(r, fuzzed(vdispl_spec), 0, 2),
    "pvcalls": lambda r: slist(r, lambda rr: pick(rr, ["backend=dom0", "", "bogus=1", "x"]), 0, 2),
    "cpuid": lambda r: slist(r, fuzzed(cpuid_item), 0, 2) if r.random() < 0.9 else q("host"),
    "vif2": lambda r: slist(r, lambda rr: "bridge=xenbr0", 0, 1),
    "passthrough": lambda r: string(r, ["default", "disabled", "enabled", "sync_pt", "share_pt", "x"]),
    "vuart": lambda r: string(r, ["sbsa_uart", "pl011"]),
    "gic_version": lambda r: string(r, ["v2", "v3", "v4"]),
    "tee": lambda r: string(r, ["none", "optee", "x"]),
    "altp2m": lambda r: (string(r, ["disabled", "mixed", "external", "limited", "x"])
                         if r.random() < 0.6 else pick(r, ["0", "2", "4"])),
    "vmtrace_buf_kb": number,
    "device_tree": lambda r: string(r, ["/boot/guest.dtb"]),
    "vnc": boolean, "vnclisten": lambda r: string(r, ["0.0.0.0", "127.0.0.1:1"]),
    "vncpasswd": lambda r: string(r, ["secret"]), "vncdisplay": number, "vncunused": boolean,
    "sdl": boolean, "opengl": boolean, "keymap": lambda r: string(r, ["en-us", "de"]),
    "display": lambda r: string(r, [":0"]), "xauthority": lambda r: string(r, ["/root/.Xauthority"]),
    # HVM
    "pae": boolean, "apic": boolean, "nx": boolean, "hpet": boolean, "vpt_align": boolean,
    "acpi_s3": boolean, "acpi_s4": boolean, "acpi_laptop_slate": boolean, "nestedhvm": boolean,
    "altp2mhvm": boolean, "usb": boolean, "vkb_device": boolean, "xen_platform_pci": boolean,
    "nographic": boolean, "spice": boolean, "spicedisable_ticketing": boolean,
    "spiceagent_mouse": boolean, "spicevdagent": boolean, "spice_clipboard_sharing": boolean,
    "bios": lambda r: string(r, ["rombios", "seabios", "ovmf", "SeaBIOS", "coreboot"]),
    "bios_path_override": lambda r: string(r, ["/usr/lib/xen/boot/bios.bin"]),
    "firmware_override": lambda r: string(r, ["/usr/lib/xen/boot/hvmloader"]),
    "smbios_firmware": lambda r: string(r, ["/smbios.bin"]),
    "acpi_firmware": lambda r: string(r, ["/acpi.bin"]),
    "mmio_hole": lambda r: pick(r, ["256", "512", "3072", "4096", "1"]),
    "rdm_mem_boundary": number,
    "mca_caps": lambda r: slist(r, lambda rr: pick(rr, ["lmce", "bogus"]), 0, 2),
    "vga": lambda r: string(r, ["stdvga", "cirrus", "none", "qxl", "vmware"]),
    "stdvga": boolean,
    "hdtype": lambda r: string(r, ["ide", "ahci", "AHCI", "scsi"]),
    "spiceport": number, "spicetls_port": number, "spicehost": lambda r: string(r, ["0.0.0.0"]),
    "spicepasswd": lambda r: string(r, ["pw"]), "spiceusbredirection": number,
    "spice_image_compression": lambda r: string(r, ["auto_glz"]),
    "spice_streaming_video": lambda r: string(r, ["filter"]),
    "gfx_passthru": lambda r: (boolean(r) if r.random() < 0.5 else q(pick(r, ["igd", "default", "x"]))),
    "serial": lambda r: (q(pick(r, ["pty", "/dev/ttyS0"])) if r.random() < 0.5
                         else slist(r, lambda rr: pick(rr, ["pty", "file:/x"]))),
    "boot": lambda r: string(r, ["c", "d", "cdn"]),
    "usbversion": lambda r: small(r, 3),
    "usbdevice": lambda r: (q(pick(r, ["tablet", "mouse"])) if r.random() < 0.5
                            else slist(r, lambda rr: pick(rr, ["tablet", "host:1.2"]))),
    "soundhw": lambda r: string(r, ["hda", "all"]),
    "vendor_device": lambda r: string(r, ["none", "xenserver", "x"]),
    "timeoffset": lambda r: q("5"),
    # PVH
    "pvshim": boolean, "pvshim_path": lambda r: string(r, ["/usr/lib/xen/boot/xen-shim"]),
    "pvshim_cmdline": lambda r: string(r, ["pv-shim console=xen,pv"]),
    "pvshim_extra": lambda r: string(r, ["loglvl=all"]),
    "unknown_key": lambda r: q("ignored"), "on.0": lambda r: "1",
}

VSND = ['[["card, backend=dom0, short-name=A, sample-rates=8000;44100, sample-formats=s16_le;u8",'
        ' "pcm, name=p0, channels-max=2", "stream, unique-id=s0, type=p, buffer-size=1024"]]',
        '[["card, long-name=B", "stream, type=c"], ["pcm, name=x", "stream, type=P"]]',
        '[["card, sample-formats=s99"]]', '[["card, bogus=1"]]', '[["stream, type=x"]]',
        '[["widget"]]', '[["pcm, channels-min=1, channels-max=0x2, buffer-size=010"]]',
        '["card"]', '[[]]']

VNUMA = ['[["pnode=0", "size=512", "vcpus=0", "vdistances=10,20"], '
         '["pnode=0", "size=512", "vcpus=1", "vdistances=20,10"]]',
         '[["pnode=0", "size=1024", "vcpus=0-1", "vdistances=10"]]',
         '[["pnode=1", "size=512", "vcpus=0"]]',
         '[["pnode=0", "size=256", "vcpus=0-3"]]',
         '["pnode=0"]']


def generate(rng: random.Random) -> str:
    """One whole config file."""
    lines = []
    t = rng.random()
    if t < 0.4:
        lines.append('type = "pv"')
    elif t < 0.6:
        lines.append('type = "pvh"')
    elif t < 0.9:
        lines.append('type = "hvm"')
    if rng.random() < 0.95:
        lines.append('name = %s' % q(pick(rng, ["guest", "domu-vtpm", "vtpmmgr", "g1"])))
    if rng.random() < 0.85:
        lines.append('kernel = "/boot/vmlinuz"')
    if rng.random() < 0.7:
        lines.append("memory = %s" % pick(rng, ["128", "512", "1024", "8"]))
    keys = list(KEYS)
    for key in rng.sample(keys, rng.randint(1, 10)):
        lines.append("%s = %s" % (key, KEYS[key](rng)))
    if rng.random() < 0.05:
        lines.append("vnuma = " + pick(rng, VNUMA))
    rng.shuffle(lines)
    if rng.random() < 0.15:      # a later `+=` or `=` on a key already set
        key = pick(rng, keys)
        op = pick(rng, ["+=", "+=", "="])
        lines.append("%s %s %s" % (key, op, KEYS[key](rng)))
    out = []
    for line in lines:
        r = rng.random()
        if r < 0.05:
            out.append("# " + pick(rng, ["comment", "memory = 1", "é"]))
        if r > 0.97 and line.endswith("]") and '", "' in line:
            line = line.replace('", "', '",\n    "').replace("[", "[\n    ", 1)
        out.append(line)
    sep = "; " if rng.random() < 0.03 else "\n"
    return sep.join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    os.makedirs(a.dir, exist_ok=True)
    for i in range(a.n):
        with open(os.path.join(a.dir, "%04d.cfg" % i), "w", encoding="utf-8") as f:
            f.write(generate(rng))
    print("wrote %d configs to %s (seed %d)" % (a.n, a.dir, seed), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
