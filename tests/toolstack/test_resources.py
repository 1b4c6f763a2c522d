"""xl's memory, vCPU, scheduler and sysrq commands end to end, through the
installed pyxl on a private host.

Expected texts come from Xen 4.17's sources (cited per test) or from the
real xl through the oracle shim where xl answers before asking Xen
(argument checks, `-N vcpu-pin`); libxl's positions are the Debian build's
(tests/toolstack/test_libxl_positions.py checks them against the binary).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ts_host import expect  # noqa: F401  (the host fixture's module)


def _xl(args):
    from oracle.xl import XL, _need_xl, xl_env

    _need_xl()
    p = subprocess.run([XL, *args], env=xl_env(), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    return p.returncode, p.stdout, p.stderr


def _pyxl(host, *args):
    p = host.run(*args)
    return (p.returncode, p.stdout.replace("pyxl [", "xl ["),
            p.stderr.replace("pyxl config-update", "xl config-update"))


def _xs(host, path):
    p = host.run("xenstore-read", path)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def _mem(host, name):
    return host.domains()[name]["mem"]


def _guest(host, name, memory=96, vcpus=1):
    cfg = host.config(name, memory=memory)
    cfg["b_info"]["max_vcpus"] = vcpus
    p = host.create(name, cfg=cfg)
    assert p.returncode == 0, p.stderr
    return host.domains()[name]["domid"]


@pytest.mark.peer("xl")
def test_argument_checks_are_xls(host):
    """What xl says before asking libxl anything (xl_mem.c parse_mem_size_kb,
    xl_vcpu.c main_vcpupin/vcpuset, xl_misc.c main_sysrq), compared with
    the real xl on a domid; and -N vcpu-pin's cpumap line."""
    _guest(host, "web", vcpus=2)
    for argv in (["mem-set", "1", "5x"], ["mem-max", "1", "64q"], ["mem-set", "1", "12kb"],
                 ["vcpu-pin", "1", "x", "1"], ["vcpu-pin", "-f", "1", "all", "1"],
                 ["vcpu-pin", "1", "0", "9-3"], ["vcpu-set", "1", "x"],
                 ["-N", "vcpu-pin", "1", "0", "0-1", "1"], ["-N", "vcpu-pin", "1", "0", "-", "^0"],
                 ["sysrq", "1", "ab"]):
        assert _pyxl(host, *argv) == _xl(argv), argv


def test_mem_set_balloons_the_guest_and_list_follows(host):
    """libxl_set_memory_target (libxl_mem.c): memory/target and
    /vm/<uuid>/memory written, the guest's balloon driver (watching
    memory/target) gives pages back and `list` shows what it holds; above
    static-max is refused (LOGD at libxl_mem.c:278, whose format ends in
    "\\n": a blank line), and xl's "cannot set domid" line follows."""
    domid = _guest(host, "web", memory=96)
    uuid = host.domains()["web"]["uuid"]
    assert host.run("mem-set", "web", "64m").returncode == 0
    assert _xs(host, "/local/domain/%d/memory/target" % domid) == "65536"
    assert _xs(host, "/vm/%s/memory" % uuid) == "64"
    host.wait_for(lambda: _mem(host, "web") == 64, what="the balloon to shrink to 64 MiB")
    r = host.run("list", "web")
    assert r.stdout.splitlines()[1].split()[2] == "64"

    p = host.run("mem-set", "web", "200")
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == ("libxl: error: libxl_mem.c:278:libxl_set_memory_target: Domain %d:"
                        "memory_dynamic_max must be less than or equal to memory_static_max\n"
                        "\ncannot set domid %d dynamic max memory to : 200\n" % (domid, domid))
    assert _xs(host, "/local/domain/%d/memory/target" % domid) == "65536"    # nothing changed

    # libxl_domain_setmaxmem: not below the target; then static-max
    p = host.run("mem-max", "web", "32m")
    assert p.returncode == 1
    assert p.stderr.endswith("cannot set domid %d static max memory to : 32m\n" % domid)
    assert p.stderr.startswith("libxl: error: libxl_mem.c:59:libxl_domain_setmaxmem: "
                               "Domain %d:memory_static_max must be greater than or or equal"
                               " to memory_dynamic_max" % domid)
    assert host.run("mem-max", "web", "128m").returncode == 0
    assert _xs(host, "/local/domain/%d/memory/static-max" % domid) == "131072"
    assert host.run("mem-set", "web", "131072k").returncode == 0
    host.wait_for(lambda: _mem(host, "web") == 128, what="the balloon to grow to 128 MiB")


def test_free_memory_follows_the_balloon(host):
    """libxl_get_physinfo's free_pages is Xen's count of pages no domain
    holds (page_alloc.c total_avail_pages): a guest ballooning from 96 MiB
    down to 64 gives the host 32 MiB, and destroying it gives back the 64
    it still held."""
    def free():
        return int(dict(ln.split(" : ", 1) for ln in host.run("info").stdout.splitlines())
                   ["free_memory           "])

    _guest(host, "web", memory=96)
    before = free()
    assert host.run("mem-set", "web", "64m").returncode == 0
    host.wait_for(lambda: _mem(host, "web") == 64, what="the balloon to shrink to 64 MiB")
    assert free() == before + (96 - 64)
    assert host.run("destroy", "web").returncode == 0
    assert free() == before + 96


def test_dom0_target_has_libxls_floor(host):
    """libxl_set_memory_target: dom0's new target below LIBXL_MIN_DOM0_MEM
    (128 MiB) is refused (libxl_mem.c:287; no "Domain 0:" prefix: libxl__logv
    names guests only)."""
    p = host.run("mem-set", "0", "64m")
    assert (p.returncode, p.stderr) == (
        1, "libxl: error: libxl_mem.c:287:libxl_set_memory_target: New target 65536 for dom0"
           " is below the minimum threshold\ncannot set domid 0 dynamic max memory to : 64m\n")
    assert host.run("mem-set", "0", "512m").returncode == 0
    assert _xs(host, "/local/domain/0/memory/target") == "524288"
    assert _mem(host, "Domain-0") == 512


VCPU_HEADER = ("Name                             ID    VCPU   CPU State   Time(s) "
               "Affinity (Hard / Soft)")
# print_vcpuinfo: "%-32s %5u %5u" then "%5u %3c%c- " (or "%5c %3c%cp "), "%9.1f  ", maps
VCPU_ROW = re.compile(r"^(\S+) +(\d+) +(\d+) +(\d+|-) +([r-][b-][p-]) +(\d+\.\d)  (\S+) / (\S+)$")


def _vcpus(host, *doms):
    p = host.run("vcpu-list", *doms)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "%-32s %5s %5s %5s %5s %9s %s" % (
        "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)")
    out = {}
    for line in lines[1:]:
        assert len(line) >= 32 + 6 + 6 + 5 + 1 + 3 + 2 + 9 + 2, line
        m = VCPU_ROW.match(line)
        assert m, line
        out[(m.group(1), int(m.group(3)))] = (m.group(4), m.group(5), m.group(7), m.group(8))
    return out


def test_vcpu_set_and_pin(host):
    """libxl_set_vcpuonline writes cpu/N/availability (libxl_domain.c
    libxl__set_vcpuonline_xenstore); an offline vcpu lists as "-" / "--p"
    (xl_vcpu.c print_vcpuinfo); 0 or more than max are refused
    (libxl_domain.c:1863/1869); vcpu-pin sets hard and soft affinity,
    printed by print_bitmap; a vcpu the domain lacks is Xen's -EINVAL."""
    domid = _guest(host, "web", vcpus=2)
    v = _vcpus(host, "web")
    assert set(v) == {("web", 0), ("web", 1)}
    assert v[("web", 1)][2:] == ("all", "all")
    assert ("Domain-0", 0) in _vcpus(host)

    assert host.run("vcpu-set", "web", "1").returncode == 0
    assert _xs(host, "/local/domain/%d/cpu/1/availability" % domid) == "offline"
    assert _xs(host, "/local/domain/%d/cpu/0/availability" % domid) == "online"
    assert _vcpus(host, "web")[("web", 1)][:2] == ("-", "--p")
    # the guest's cpu_hotplug.c takes vcpu 1 down (arch/x86 smpboot's message)
    host.wait_for(lambda: "smpboot: CPU 1 is now offline" in host.console_log("web"),
                  what="the guest to take vcpu 1 offline")
    p = host.run("vcpu-set", "web", "0")
    assert (p.returncode, p.stderr) == (
        1, "libxl: error: libxl_domain.c:1863:libxl_set_vcpuonline: Domain %d:Requested 0 VCPUs!\n"
           "libxl_set_vcpuonline failed domid=%d max_vcpus=0, rc: -3\n" % (domid, domid))
    p = host.run("vcpu-set", "-i", "web", "3")
    assert p.stderr.splitlines()[-1] == "libxl_set_vcpuonline failed domid=%d max_vcpus=3, rc: -3" % domid
    p = host.run("vcpu-set", "web", "9")
    assert p.stderr == ("You are overcommmitting! You have 2 physical CPUs and want 9 vCPUs!"
                        " Aborting, use --ignore-host to continue\n")
    assert host.run("vcpu-set", "web", "2").returncode == 0
    assert _xs(host, "/local/domain/%d/cpu/1/availability" % domid) == "online"

    assert host.run("vcpu-pin", "web", "1", "1", "0").returncode == 0
    assert _vcpus(host, "web")[("web", 1)][0] == "1"
    assert _vcpus(host, "web")[("web", 1)][2:] == ("1", "0")
    assert host.run("vcpu-pin", "web", "all", "-", "all").returncode == 0
    v = _vcpus(host, "web")
    assert v[("web", 1)][2:] == ("1", "all") and v[("web", 0)][2:] == ("all", "all")
    p = host.run("vcpu-pin", "web", "5", "0")
    assert (p.returncode, p.stderr) == (
        1, "libxl: error: libxl_sched.c:62:libxl__set_vcpuaffinity: Domain %d:Setting vcpu"
           " affinity: Invalid argument\nCould not set affinity for vcpu `5'.\n" % domid)


def test_sched_credit2_is_the_hosts_scheduler(host):
    """Xen 4.17 runs credit2 by default: sched-credit2 lists Pool-0 with its
    ratelimit and each domain's weight and cap (xl_sched.c
    sched_credit2_pool_output / _domain_output); credit and RTDS run no
    pool (sched_domain_output prints nothing; a domain's parameters are
    credit2's: sched_domain_get's message)."""
    _guest(host, "web", vcpus=2)
    p = host.run("sched-credit2")
    assert p.returncode == 0, p.stderr
    assert p.stdout == ("Cpupool Pool-0: ratelimit=1000us\n"
                        "%-33s %4s %6s %4s\n" % ("Name", "ID", "Weight", "Cap")
                        + "%-33s %4d %6d %4d\n" % ("Domain-0", 0, 256, 0)
                        + "%-33s %4d %6d %4d\n" % ("web", 1, 256, 0))
    assert host.run("sched-credit2", "-d", "web", "-w", "512", "-c", "150").returncode == 0
    assert host.run("sched-credit2", "-d", "web").stdout.splitlines()[1] == \
        "%-33s %4d %6d %4d" % ("web", 1, 512, 150)
    # sched_credit2_domain_set's ranges (libxl_sched.c:445, :455)
    p = host.run("sched-credit2", "-d", "web", "-w", "0")
    assert (p.returncode, p.stderr) == (
        1, "libxl: error: libxl_sched.c:445:sched_credit2_domain_set: Domain 1:Cpu weight out of"
           " range, valid values are within range from 1 to 65535\n"
           "libxl_domain_sched_params_set failed.\n")
    p = host.run("sched-credit2", "-d", "web", "-c", "201")
    assert p.stderr.startswith("libxl: error: libxl_sched.c:455:sched_credit2_domain_set: "
                               "Domain 1:Cpu cap out of range, valid range is from 0 to 200 ")
    # pool parameters: sched_ratelimit_check (libxl_sched.c:270)
    p = host.run("sched-credit2", "-s", "-r", "50")
    assert (p.returncode, p.stderr) == (
        1, "libxl: error: libxl_sched.c:270:sched_ratelimit_check: Ratelimit out of range,"
           " valid range is from 100 to 500000\nlibxl_sched_credit2_params_set failed.\n")
    assert host.run("sched-credit2", "-s", "-r", "2000").returncode == 0
    assert host.run("sched-credit2", "-s").stdout == "Cpupool Pool-0: ratelimit=2000us\n"
    p = host.run("sched-credit2", "-p", "nosuch")
    assert (p.returncode, p.stderr) == (1, "unknown cpupool 'nosuch'\n")
    p = host.run("sched-credit2", "-p", "Pool-0", "-d", "web")
    assert p.stderr == "Specifying a cpupool is not allowed with other options.\n"

    # no pool runs credit or RTDS
    for cmd in ("sched-credit", "sched-rtds"):
        p = host.run(cmd)
        assert (p.returncode, p.stdout, p.stderr) == (0, "", ""), cmd
    p = host.run("sched-credit", "-d", "web")
    assert (p.returncode, p.stdout, p.stderr) == (
        1, "%-33s %4s %6s %4s\n" % ("Name", "ID", "Weight", "Cap"),
        "libxl_domain_sched_params_get returned credit2 not credit.\n")
    # sched_credit_pool_output: Xen's sched_adjust_global is -EINVAL for another scheduler
    p = host.run("sched-credit", "-s")
    assert (p.returncode, p.stdout, p.stderr) == (
        0, "Cpupool Pool-0: [sched params unavailable]\n",
        "libxl: error: libxl_sched.c:287:libxl_sched_credit_params_get: getting Credit"
        " scheduler parameters: Invalid argument\n")


def test_sysrq_reaches_the_guest_as_linux_handles_it(host):
    """libxl_send_sysrq writes control/sysrq; Linux's manage.c sysrq_handler
    clears it and calls handle_sysrq, whose action message (sysrq.c
    __handle_sysrq) reaches the console; a key without an action prints the
    help line."""
    domid = _guest(host, "web")
    assert host.run("sysrq", "web", "s").returncode == 0
    host.wait_for(lambda: "sysrq: Emergency Sync complete" in host.console_log("web"),
                  what="the guest's sysrq messages")
    log = host.console_log("web")
    first = re.search(r"\] sysrq: Emergency Sync\r?\n", log)
    assert first and first.start() < log.index("sysrq: Emergency Sync complete")
    host.wait_for(lambda: _xs(host, "/local/domain/%d/control/sysrq" % domid) == "",
                  what="the guest to clear control/sysrq")
    assert host.run("sysrq", "web", "h").returncode == 0
    host.wait_for(lambda: "sysrq: HELP : loglevel(0-9) reboot(b) crash(c)"
                  in host.console_log("web"), what="the help line")


def test_debug_keys_write_the_hypervisors_console(host):
    """XEN_SYSCTL_debug_keys: handle_keypress for each key
    (xen/common/keyhandler.c): 'h' lists key_table by ASCII code
    (show_handlers' format), 'q' prints each domain's general information
    (dump_domains); `dmesg` shows them."""
    _guest(host, "web")
    assert host.run("debug-keys", "hq").returncode == 0
    out = host.run("dmesg").stdout.splitlines()
    i = out.index("(XEN) 'h' pressed -> showing installed handlers")
    assert out[i + 1] == "(XEN)  key '%' (ascii '25') => trap to xendbg"
    assert "(XEN)  key 'q' (ascii '71') => dump domain (and guest debug) info" in out
    assert any(re.fullmatch(r"\(XEN\) 'q' pressed -> dumping domain info \(now = \d+\)", line)
               for line in out)
    assert "(XEN) General information for domain 1:" in out
    assert host.run("debug-keys", "x").returncode == 0       # no handler: nothing happens


def test_set_parameters_as_on_a_xen_without_hypfs(host):
    """libxl_set_parameters opens hypfs first (libxl.c:676); the simulated
    hypervisor has none (its hypfs_op is -ENOSYS)."""
    p = host.run("set-parameters", "loglvl=all")
    assert (p.returncode, p.stdout, p.stderr) == (
        1, "", "libxl: error: libxl.c:676:libxl_set_parameters: opening Xen hypfs:"
               " Function not implemented\ncannot set parameters: loglvl=all\n")


@pytest.mark.peer("xl")
def test_cpupool_argument_checks_are_xls(host):
    for argv in (["cpupool-create", "-n", 'cpus="1"'], ["cpupool-create", "/nonexistent"],
                 ["cpupool-cpu-add", "Pool-0", "x"]):
        assert _pyxl(host, *argv) == _xl(argv), argv


def test_cpupools_over_the_hosts_cpus(host):
    """xl_cpupool.c over libxl_cpupool.c and Xen's cpupool.c: a CPU must be
    taken out of Pool-0 before a new pool can have it ("cpu N illegal or
    not free"); removing a CPU a pool lacks is Xen's -EADDRNOTAVAIL
    (cpupool_unassign_cpu_start); a pool with domains cannot be destroyed
    (libxl_cpupool_destroy's n_dom check); a domain moves between pools and
    the pool's scheduler is then its scheduler; numa-split needs Pool-0 alone."""
    host.env["PYXL_HOST_CPUS"] = "4"
    _guest(host, "web")
    p = host.run("cpupool-list")
    assert p.stdout == ("Name               CPUs   Sched     Active   Domain count\n"
                        "Pool-0               4   credit2       y          2\n")
    p = host.run("cpupool-create", 'name="p1"', 'sched="credit"', 'cpus="2-3"')
    assert (p.returncode, p.stderr) == (1, "cpu 2 illegal or not free\n")
    assert host.run("cpupool-cpu-remove", "Pool-0", "2-3").returncode == 0
    p = host.run("cpupool-cpu-remove", "Pool-0", "3")
    assert (p.returncode, p.stderr) == (
        0, "libxl: error: libxl_cpupool.c:365:libxl_cpupool_cpuremove: Error removing cpu 3"
           " from cpupool: Cannot assign requested address\n"
           "Some cpus may have not or only partially been removed from 'Pool-0'.\n"
           "If a cpu can't be added to another cpupool, add it to 'Pool-0' again and retry.\n")
    p = host.run("cpupool-create", 'name="p1"', 'sched="credit"', 'cpus="2-3"')
    assert (p.returncode, p.stdout) == (0, 'Using config file "command line"\n'
                                           "cpupool name:   p1\nscheduler:      credit\n"
                                           "number of cpus: 2\n")
    p = host.run("cpupool-create", 'name="p1"')
    assert (p.returncode, p.stderr) == (1, 'Pool name "p1" already exists\n')
    assert _xs(host, "/local/pool/1/name") == "p1"
    assert host.run("cpupool-list", "-c").stdout == ("Name               CPU list\n"
                                                     "Pool-0             0,1\n"
                                                     "p1                 2,3\n")
    assert host.run("cpupool-migrate", "web", "p1").returncode == 0
    assert host.run("cpupool-list", "p1").stdout.splitlines()[1].split() == \
        ["p1", "2", "credit", "y", "1"]
    # xl list -c: libxl_cpupoolid_to_name of the domain's pool, "%16s"
    assert host.run("list", "-c", "web").stdout.splitlines()[1].endswith(" " * 14 + "p1")
    # the domain now runs under credit: sched-credit shows p1 and it
    p = host.run("sched-credit")
    assert p.stdout == ("Cpupool p1: tslice=30ms ratelimit=1000us migration-delay=0us\n"
                        "%-33s %4s %6s %4s\n" % ("Name", "ID", "Weight", "Cap")
                        + "%-33s %4d %6d %4d\n" % ("web", 1, 256, 0))
    assert [r[0] for k, r in _vcpus(host, "web").items()] == ["2"]     # on p1's CPUs
    p = host.run("cpupool-destroy", "p1")
    assert (p.returncode, p.stderr) == (1, "Can't destroy cpupool 'p1'\n")
    p = host.run("cpupool-numa-split")
    assert (p.returncode, p.stderr) == (1, "splitting not possible, already cpupools in use\n")
    p = host.run("cpupool-migrate", "nosuch", "p1")
    assert (p.returncode, p.stderr) == (1, "unknown domain 'nosuch'\n")
    assert host.run("cpupool-migrate", "web", "Pool-0").returncode == 0
    assert host.run("cpupool-rename", "p1", "p2").returncode == 0
    assert host.run("cpupool-destroy", "p2").returncode == 0
    assert host.run("cpupool-cpu-add", "Pool-0", "2-3").returncode == 0
    assert host.run("cpupool-numa-split").returncode == 0
    assert host.run("cpupool-list", "-c").stdout == ("Name               CPU list\n"
                                                     "Pool-node0         0,1,2,3\n")


@pytest.mark.peer("xl")
def test_config_update_argument_checks_are_xls(host, tmp_path):
    _guest(host, "web")
    for argv in (["config-update"], ["config-update", "1"],
                 ["config-update", "1", str(tmp_path / "nosuch")],
                 ["config-update", "1", "/dev/null", 'name="x"']):
        assert _pyxl(host, *argv) == _xl(argv), argv


def test_config_update_is_used_at_the_next_reboot(host, tmp_path):
    """main_config_update stores the new configuration ("setting domN
    configuration"); the domain runs on unchanged; when it reboots, xl's
    monitor rebuilds it from the stored one (reload_domain_config logs
    '"xl" configuration found, using it' -- its LOG adds a newline to the
    format's own)."""
    _guest(host, "web", memory=96)
    cfg = tmp_path / "web.cfg"
    cfg.write_text('name = "web"\nmemory = 64\nkernel = "%s"\n' % host.kernel)
    p = host.run("config-update", "web", str(cfg))
    assert (p.returncode, p.stdout) == (0, "")
    assert p.stderr == ("WARNING: xl now has better capability to manage domain configuration,"
                        " avoid using this command when possible\nsetting dom1 configuration\n")
    assert _mem(host, "web") == 96
    assert host.run("reboot", "web").returncode == 0
    host.wait_for(lambda: host.domains().get("web", {}).get("domid", 1) != 1,
                  timeout=30, what="the domain to be rebuilt")
    assert _mem(host, "web") == 64
    log = Path(host.root, "var/log/pyxl/xl-web.log").read_text()
    assert '"xl" configuration found, using it\n\n' in log


def test_dump_core_writes_xc_domain_dumpcores_elf(host, tmp_path):
    """xc_domain_dumpcore (tools/libs/guest/xg_core.c): an ELF64 ET_CORE file,
    created 0600, with a .note.Xen of the four DUMPCORE notes (public/
    elfnote.h numbers; the header's magic XC_CORE_MAGIC 0xF00FEBED and the
    vcpu count) -- read back with binutils' readelf; a path that cannot be
    opened is PERROR's, libxl's (libxl_domain.c:603) and xl's message."""
    import shutil
    import struct

    _guest(host, "web", vcpus=2)
    core = tmp_path / "web.core"
    assert host.run("dump-core", "web", str(core)).returncode == 0
    assert core.stat().st_mode & 0o777 == 0o600
    if shutil.which("readelf"):
        out = subprocess.run(["readelf", "-h", "-S", "-W", str(core)], capture_output=True,
                             text=True, check=True).stdout
        assert re.search(r"Type:\s+CORE \(Core file\)", out)
        for sec in (".note.Xen", ".xen_p2m", ".xen_pages"):
            assert " %s " % sec in out
    data = core.read_bytes()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    notes_off, notes_size = struct.unpack_from("<QQ", data, shoff + 2 * 64 + 0x18)
    notes, kinds, i = data[notes_off:notes_off + notes_size], [], 0
    while i < len(notes):
        namesz, descsz, kind = struct.unpack_from("<III", notes, i)
        assert notes[i + 12:i + 16] == b"Xen\0"
        if kind == 0x2000001:
            assert struct.unpack_from("<QQQQ", notes, i + 16) == (0xF00FEBED, 2, 0, 4096)
        kinds.append(kind)
        i += 16 + descsz
    assert kinds == [0x2000000, 0x2000001, 0x2000002, 0x2000003]

    p = host.run("dump-core", "web", str(tmp_path / "no" / "core"))
    assert (p.returncode, p.stderr) == (
        1, "xc: error: Could not open corefile %s (2 = No such file or directory): Internal"
           " error\nlibxl: error: libxl_domain.c:603:libxl_domain_core_dump: Domain 1:Core"
           " dumping domain to %s: No such file or directory\ncore dump failed (rc=-3)\n"
           % (tmp_path / "no" / "core", tmp_path / "no" / "core"))


def test_list_long_follows_what_libxl_retrieves(host):
    """libxl_retrieve_domain_configuration (libxl_domain.c
    retrieve_domain_configuration_end) reads the live domain: avail_vcpus
    from the vcpus online, target_memkb and max_memkb from memory/target and
    static-max, sched_params from libxl_domain_sched_params_get."""
    import json

    _guest(host, "web", memory=96, vcpus=2)
    for argv in (["mem-max", "web", "128m"], ["mem-set", "web", "64m"], ["vcpu-set", "web", "1"],
                 ["sched-credit2", "-d", "web", "-w", "700", "-c", "20"]):
        assert host.run(*argv).returncode == 0, argv
    b = json.loads(host.run("list", "-l", "web").stdout)[0]["config"]["b_info"]
    assert (b["max_vcpus"], b["avail_vcpus"]) == (2, [0])
    assert (b["max_memkb"], b["target_memkb"]) == (131072, 65536)
    assert b["sched_params"] == {"sched": "credit2", "weight": 700, "cap": 20}


def test_ballooned_size_survives_a_daemon_restart(host):
    """libxl reads a domain's memory from the hypervisor (libxl_domain_info:
    current_memkb from tot_pages; libxl_retrieve_domain_configuration:
    target and static-max from xenstore), never from the create-time
    config: a daemon SIGKILLed after `mem-set` and restarted reports what
    the guest holds, and the guest does not balloon back up."""
    import json

    from ts_host import kill_daemon

    domid = _guest(host, "web", memory=96)
    assert host.run("mem-max", "web", "128m").returncode == 0
    assert host.run("mem-set", "web", "64m").returncode == 0
    host.wait_for(lambda: _mem(host, "web") == 64, what="the balloon to shrink to 64 MiB")

    def seen():
        rows = host.run("list").stdout.splitlines()
        b = json.loads(host.run("list", "-l", "web").stdout)[0]["config"]["b_info"]
        return (rows, b["target_memkb"], b["max_memkb"],
                _xs(host, "/local/domain/%d/memory/target" % domid),
                _xs(host, "/local/domain/%d/memory/static-max" % domid),
                _xs(host, "/vm/%s/memory" % host.domains()["web"]["uuid"]),
                [ln for ln in host.run("info").stdout.splitlines()
                 if ln.startswith(("total_memory", "free_memory"))])

    def mem_rows(rows):      # the columns that are not time: name, id, memory, vcpus
        return [r.split()[:4] for r in rows[0]]

    before = seen()
    assert before[1:6] == (65536, 131072, "65536", "131072", "64")
    kill_daemon(host)
    after = seen()          # the first command starts a new daemon, which adopts web
    assert mem_rows(after) == mem_rows(before)
    assert after[1:] == before[1:]
    # the guest, back on the new daemon's xenstore, keeps its balloon where it was
    host.wait_for(lambda: host.run("xenstore-read", "/local/domain/%d/control/feature-poweroff"
                                   % domid).stdout == "1\n", what="the guest to reconnect")
    assert _mem(host, "web") == 64


def test_vcpu_availability_survives_a_daemon_restart(host):
    """What vcpu-set wrote (cpu/N/availability, libxl_domain.c
    libxl__set_vcpuonline_xenstore) outlives the toolstack on Xen: a daemon
    SIGKILLed after `vcpu-set web 1` and restarted lists vcpu 1 offline
    still, writes "offline" again when it rebuilds the domain's xenstore
    directory, and the guest's cpu_hotplug.c, reading it as it reconnects,
    keeps the vcpu down (its /proc/cpuinfo shows processor 0 alone)."""
    import pexpect

    from ts_host import kill_daemon

    domid = _guest(host, "web", vcpus=2)
    assert host.run("vcpu-set", "web", "1").returncode == 0
    host.wait_for(lambda: "smpboot: CPU 1 is now offline" in host.console_log("web"),
                  what="the guest to take vcpu 1 offline")
    before = {k: v[1:] for k, v in _vcpus(host, "web").items()}    # not the CPU column
    assert before[("web", 1)] == ("--p", "all", "all")
    kill_daemon(host)
    assert {k: v[1:] for k, v in _vcpus(host, "web").items()} == before
    assert _xs(host, "/local/domain/%d/cpu/1/availability" % domid) == "offline"
    host.wait_for(lambda: host.run("xenstore-read", "/local/domain/%d/control/feature-poweroff"
                                   % domid).stdout == "1\n", what="the guest to reconnect")
    child = pexpect.spawn(host.pyxl_cmd[0], host.pyxl_cmd[1:] + ["console", "web"],
                          env=host.env, timeout=15, encoding="utf-8")
    try:
        # until the guest's shell answers (the quotes keep the answer apart
        # from the line's echo): what is typed before the console client is
        # attached does not reach the guest
        host.wait_for(lambda: child.send("echo 'sh''ell'\r")
                      and child.expect(["shell\r\n", pexpect.TIMEOUT], timeout=1) == 0,
                      what="the guest's shell")
        child.send("cat /proc/cpuinfo\r")
        expect(child, "processor", host)
        expect(child, r"root@web:~# ", host)
        assert re.findall(r"processor\t: (\d+)", "processor" + child.before) == ["0"]
    finally:
        child.send("\x1d")
        child.close()


def test_vcpus_below_maxvcpus_start_offline(host):
    """libxl_dom.c libxl__build_post writes cpu/N/availability "offline"
    for each vcpu not in avail_vcpus (vcpus=1, maxvcpus=2: vcpu 1), and the
    guest's cpu_hotplug.c (setup_cpu_watcher) takes it down at boot."""
    cfg = host.config("web", memory=96)
    cfg["b_info"]["max_vcpus"] = 2
    cfg["b_info"]["avail_vcpus"] = [0]
    p = host.create("web", cfg=cfg)
    assert p.returncode == 0, p.stderr
    domid = host.domains()["web"]["domid"]
    assert _xs(host, "/local/domain/%d/cpu/1/availability" % domid) == "offline"
    assert _xs(host, "/local/domain/%d/cpu/0/availability" % domid) == "online"
    assert _vcpus(host, "web")[("web", 1)][:2] == ("-", "--p")
    host.wait_for(lambda: "smpboot: CPU 1 is now offline" in host.console_log("web"),
                  what="the guest to take vcpu 1 offline")
