"""A simulated PV Linux guest: boots with a kernel log on hvc0, logs root in
on the console, runs a small shell, and obeys the toolstack's
control/shutdown requests as Linux's drivers/xen/manage.c does.
"""

from __future__ import annotations

import os
import threading
import time

from pyxl.domain.linux import shell, userland
from pyxl.domain.linux.fs import GuestTree

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from pyxl.domain.process import Domain
    from pyxl.domain.xen import XenInterface

KERNEL_RELEASE = "6.1.0-18-amd64"
KERNEL_VERSION = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"
CRLF = "\r\n"

SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_CRASH = 0, 1, 3
MAX_INPUT = 4095          # a console line, as Linux's n_tty keeps in canonical mode
# the TPM 2.0 event log firmware (pv-grub) left, as Linux's securityfs shows it
EVENT_LOG_DIR = "/sys/kernel/security/tpm0"
EVENT_LOG = EVENT_LOG_DIR + "/binary_bios_measurements"
HOST_ENV = ("PATH", "HOME", "PWD", "OLDPWD", "SHELL", "SHLVL", "TERM", "USER", "LOGNAME")


class Guest:
    def __init__(self, dom: Domain):
        self.dom = dom
        self.t0 = time.monotonic()
        self.dmesg: list[str] = []
        self.lock = threading.Lock()
        self.going_down = False
        self.cpus_online = set(range(dom.vcpus))   # cpu_hotplug.c follows cpu/N/availability
        from pyxl.domain.linux import netns, tpm

        self.net = netns.GuestNetwork()                      # its own network, made on first use
        self.tpm = tpm.GuestTpm(dom, self.klog, self.net)    # xen-tpmfront, /dev/tpm0
        self.userland = userland.Userland(self.tpm, self.out, self.net)  # host's tcsd, tpm-tools
        self.tree = GuestTree.create(dom)                    # the guest's own files
        self.event_log: bytes | None = getattr(dom, "tpm_event_log", None)   # from pv-grub
        if self.event_log:
            self._place_event_log(self.event_log)
        self.shell = shell.Shell(self.tree, self, shell.Call(self._console_bytes, tty=True))

    def _place_event_log(self, event_log: bytes) -> None:
        """The event log as a file of the guest's tree at its /sys path, where
        the programs the guest runs (tpm2_eventlog) find it; the guest's own
        /sys is virtual, so its shell cannot write there.  The tree is new
        and the daemon's: nothing in it was made by the guest yet."""
        path = self.tree.host_path(EVENT_LOG)
        os.makedirs(os.path.dirname(path), 0o755)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o440)
        with os.fdopen(fd, "wb") as f:
            f.write(event_log)

    # -- console output --------------------------------------------------
    def out(self, text: str) -> None:
        with self.lock:
            self.dom.console_write(text.replace("\n", CRLF))

    def klog(self, msg: str) -> None:
        line = "[%12.6f] %s" % (time.monotonic() - self.t0, msg)
        self.dmesg.append(line)
        self.out(line + "\n")

    def kinfo(self, msg: str) -> None:
        """pr_info: always in the kernel log; on the console only if
        KERN_INFO is below the console loglevel (Debian's kernel:
        CONFIG_CONSOLE_LOGLEVEL_DEFAULT=7, `quiet` makes it 4,
        `loglevel=N` makes it N)."""
        if _console_loglevel(self.dom.cmdline) > KERN_INFO:
            self.klog(msg)
        else:
            self.dmesg.append("[%12.6f] %s" % (time.monotonic() - self.t0, msg))

    # -- boot ------------------------------------------------------------
    def boot(self) -> None:
        d = self.dom
        mem_mb = d.memkb // 1024
        self.klog("Linux version %s (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) "
                  "12.2.0, GNU ld (GNU Binutils for Debian) 2.40) %s" % (KERNEL_RELEASE, KERNEL_VERSION))
        self.klog("Command line: %s" % d.cmdline)
        self.klog("Xen: using vcpuop timer interface")
        self.klog("Booting paravirtualized kernel on Xen")
        self.klog("Xen version: 4.17.7 (preserve-AD)")
        self.klog("Memory: %dK/%dK available" % (d.memkb * 9 // 10, d.memkb))
        self.klog("smpboot: Allowing %d CPUs, 0 hotplug CPUs" % d.vcpus)
        self.klog("xen:events: Using FIFO-based ABI")
        self.klog("xen:grant_table: Grant tables using version 1 layout")
        self.klog("Grant table initialized")
        self.klog("hvc0: X.509 console on Xen")
        # Debian's kernel has CONFIG_TCG_XEN=m: the guide's `modprobe xen-tpmfront` binds it
        self.klog("xenbus_probe_frontend: Device with no driver: device/vtpm/0"
                  if self._has_device("vtpm") else "xen_netfront: Initialising Xen virtual ethernet driver")
        for vbd in self._devices("vbd"):
            self.klog("blkfront: xvd%s: flush diskcache: enabled; persistent grants: enabled"
                      % chr(ord("a") + (int(vbd) >> 4 & 15)) if vbd.isdigit() else vbd)
        self.klog("Freeing unused kernel image (initmem) memory: %dK" % min(2048, mem_mb * 8))
        self.klog("Run /sbin/init as init process")
        self.out("\nDebian GNU/Linux 12 %s hvc0\n\n" % self.hostname())
        self.login()

    def _devices(self, kind: str) -> list[str]:
        try:
            return sorted(self.dom.xen.directory("device/%s" % kind))
        except OSError:
            return []

    def _has_device(self, kind: str) -> bool:
        return bool(self._devices(kind))

    def hostname(self) -> str:
        return self.dom.name

    def login(self) -> None:
        self.out("%s login: root (automatic login)\n\n" % self.hostname())
        self.out("Linux %s %s %s x86_64\n" % (self.hostname(), KERNEL_RELEASE, KERNEL_VERSION))
        self.prompt()

    def prompt(self) -> None:
        """Debian's PS1 for root, '\\u@\\h:\\w\\$ ': the working directory, home as ~."""
        cwd = self.shell.cwd
        home = self.shell.vars.get("HOME", "")
        if home and (cwd == home or cwd.startswith(home.rstrip("/") + "/")):
            cwd = "~" + cwd[len(home.rstrip("/")):]
        self.out("root@%s:%s# " % (self.hostname(), cwd))

    # -- the console and its shell ------------------------------------------
    def run(self) -> None:
        """The console's line discipline: echo, backspace, ^U, ^C; a line
        the shell cannot end yet (an open quote, a trailing `|`) is
        continued after bash's PS2 prompt, `> `."""
        threading.Thread(target=self.watch_control, daemon=True).start()
        threading.Thread(target=self.tpm.watch_devices, name="xenbus-vtpm", daemon=True).start()
        line = bytearray()
        pending = ""
        while True:
            data = self.dom.console_read()
            if data is None:            # only after a timeout, and none is given
                continue
            for b in data:
                if b in (13, 10):
                    self.out("\n")
                    text = pending + line.decode(errors="replace")
                    line.clear()
                    if not shell.Shell.complete(text):
                        pending = text + "\n"
                        self.out("> ")
                        continue
                    pending = ""
                    if text.strip():
                        self.execute(text)
                    self.prompt()
                elif b in (8, 127):
                    if line:
                        line.pop()
                        self.out("\b \b")
                elif b == 3:
                    line.clear()
                    pending = ""
                    self.out("^C\n")
                    self.prompt()
                elif b == 21:   # ^U
                    self.out("\b \b" * len(line))
                    line.clear()
                elif b >= 32 and len(line) < MAX_INPUT:
                    line.append(b)
                    with self.lock:
                        self.dom.console_write(bytes([b]))

    def execute(self, text: str) -> int:
        """Run one complete input in the login shell; `exit` logs out and
        the console logs root in again, with a fresh shell."""
        try:
            return self.shell.run(text)
        except shell.ShellExit as e:
            self.out("logout\n\n")
            self.out("Debian GNU/Linux 12 %s hvc0\n\n" % self.hostname())
            self.out("%s login: root (automatic login)\n\n" % self.hostname())
            self.shell.reset()
            return e.status

    def _console_bytes(self, data: bytes) -> None:
        with self.lock:
            self.dom.console_write(data.replace(b"\n", b"\r\n"))

    # -- what the shell asks of the kernel: programs and special files --------
    def command(self, name: str, args: list[str], io: shell.Io, sh: shell.Shell,
                env: dict) -> int | None:
        """Run a program that is not a shell built-in; None: there is none."""
        base = os.path.basename(name)
        if "/" in name and (os.path.dirname(name) not in userland.SBIN
                            or not self.userland.handles(base)):
            return None
        if self.userland.handles(base):
            return self.userland.run(base, [sh.host_arg(a) for a in args], cwd=sh.host_cwd(),
                                     stdin=io.stdin, out=io.out.write, err=io.err.write,
                                     env={k: v for k, v in env.items()
                                          if k not in HOST_ENV and not k.startswith("LD_")})
        if name in ("modprobe", "rmmod"):
            return self.kmod(name, args, io)
        if name == "uname":
            return self.uname(args, io)
        if name == "hostname":
            io.print(self.hostname() + "\n")
        elif name == "dmesg":
            io.print("\n".join(self.dmesg) + "\n")
        elif name in ("poweroff", "halt") or (name == "shutdown" and "-r" not in args):
            self.power(SHUTDOWN_POWEROFF)
        elif name == "reboot" or (name == "shutdown" and "-r" in args):
            self.power(SHUTDOWN_REBOOT)
        elif name == "yes":
            self.yes(" ".join(args) or "y", io)
        elif name not in ("clear", "sync"):
            return None
        return 0

    def uname(self, args: list[str], io: shell.Io) -> int:
        parts = {"-s": "Linux", "-n": self.hostname(), "-r": KERNEL_RELEASE,
                 "-v": KERNEL_VERSION, "-m": "x86_64"}
        if not args:
            io.print("Linux\n")
        elif "-a" in args:
            io.print("Linux %s %s %s x86_64 GNU/Linux\n" % (self.hostname(), KERNEL_RELEASE,
                                                           KERNEL_VERSION))
        else:
            io.print(" ".join(parts.get(a, "") for a in args) + "\n")
        return 0

    def write_file(self, path: str) -> shell.Sink | None:
        """Where output redirected to a special file goes (None: it cannot be written)."""
        if path == "/dev/null":
            return shell.Null()
        if path in ("/dev/console", "/dev/hvc0", "/dev/tty"):
            return shell.Call(self._console_bytes, tty=True)
        if path == "/proc/sysrq-trigger":
            return shell.Call(self._sysrq_trigger)
        return None

    def yes(self, word: str, io: shell.Io) -> None:
        """coreutils yes: output until interrupted (^C on the console); into
        a pipe or a file, as much as a pipe holds."""
        chunk = ((word + "\n") * (8192 // (len(word) + 1) + 1)).encode()
        if not io.out.tty:
            io.out.write(chunk * 8)
            return
        while True:
            io.out.write(chunk)
            data = self.dom.console_read(0)
            if data and 3 in data:
                self.out("^C\n")
                return

    def kmod(self, name: str, args: list[str], io: shell.Io) -> int:
        """modprobe/rmmod of the xen-tpmfront module."""
        if not args:
            io.error("%s: ERROR: missing module name." % name if name == "rmmod" else
                     "modprobe: ERROR: missing parameters. See -h.")
            return 1
        mod = args[-1].replace("_", "-")
        if name == "rmmod":
            if mod != "xen-tpmfront" or not self.tpm.loaded:
                io.error("rmmod: ERROR: Module %s is not currently loaded" % args[-1].replace("-", "_"))
                return 1
            self.tpm.close()
        elif mod == "xen-tpmfront":
            self.tpm.probe(wait=True)
        elif mod not in ("tpm", "tpm-tis", "xen-netfront", "xen-blkfront"):
            io.error("modprobe: FATAL: Module %s not found in directory /lib/modules/%s"
                     % (args[-1], KERNEL_RELEASE))
            return 1
        return 0

    def read_file(self, path: str) -> str | bytes | None:
        d = self.dom
        if path == EVENT_LOG and self.event_log:
            return self.event_log
        if path.startswith("/sys/"):
            text = self.tpm.read_sysfs(path)
            if text is not None:
                return text
        up = time.monotonic() - self.t0
        files = {
            "/proc/version": "Linux version %s (debian-kernel@lists.debian.org) %s\n"
                             % (KERNEL_RELEASE, KERNEL_VERSION),
            "/proc/cmdline": d.cmdline + "\n",
            "/proc/uptime": "%.2f %.2f\n" % (up, up * len(self.cpus_online)),
            "/proc/meminfo": "MemTotal:       %8d kB\nMemFree:        %8d kB\n"
                             % (d.memkb * 9 // 10, d.memkb * 7 // 10),
            "/proc/cpuinfo": "".join("processor\t: %d\nvendor_id\t: GenuineIntel\n"
                                     "model name\t: Intel(R) Xeon(R) CPU\nflags\t\t: hypervisor\n\n" % i
                                     for i in sorted(self.cpus_online)),
            "/etc/hostname": self.hostname() + "\n",
            "/sys/hypervisor/type": "xen\n",
            "/sys/hypervisor/uuid": d.uuid + "\n",
            "/sys/hypervisor/version/major": "4\n",
            "/sys/hypervisor/version/minor": "17\n",
        }
        return files.get(path)

    def list_dir(self, path: str) -> list[str] | None:
        if path.rstrip("/") == "/dev":
            devs = ["console", "hvc0", "null", "random", "tty", "urandom", "xen", "zero"]
            for vbd in self._devices("vbd"):
                if vbd.isdigit():
                    n = int(vbd)
                    devs.append("xvd" + chr(ord("a") + ((n >> 4) & 15)))
            devs += self.tpm.devices()
            return sorted(devs)
        if path.rstrip("/") == EVENT_LOG_DIR and self.event_log:
            return ["binary_bios_measurements"]
        return self.tpm.list_sysfs(path)

    # -- going down -------------------------------------------------------
    def _sysrq_trigger(self, data: bytes) -> None:
        """A write to /proc/sysrq-trigger: its first byte, unless blank, is the key."""
        key = data[:1].strip()
        if key:
            self.sysrq(key.decode())

    def sysrq(self, key: str) -> None:
        """drivers/tty/sysrq.c __handle_sysrq: the key's action message (at a
        raised console loglevel, so it reaches the console), then its
        action; a key without one prints the help line."""
        msg = SYSRQ_ACTIONS.get(key)
        if msg is None:
            self.klog("sysrq: HELP : " + SYSRQ_HELP + " ")
            return
        self.klog("sysrq: " + msg)
        if key.isdigit():
            self.klog("sysrq: Loglevel set to " + key)
        elif key == "s":
            self.klog("sysrq: Emergency Sync complete")
        elif key == "u":
            self.klog("sysrq: Emergency Remount complete")
        elif key == "c":
            self.klog("Kernel panic - not syncing: sysrq triggered crash")
            self.dom.crash(1)         # no SCHEDOP_shutdown: the toolstack sees a crash
        elif key == "o":
            self.power(SHUTDOWN_POWEROFF)
        elif key == "b":
            self.dom.shutdown(SHUTDOWN_REBOOT)

    def power(self, reason: int) -> None:
        if self.going_down:
            return
        self.going_down = True
        self.out("\n")
        self.klog("systemd-shutdown[1]: Syncing filesystems and block devices.")
        self.userland.stop()          # tcsd goes before the TPM driver does
        self.tpm.close()
        self.klog("reboot: %s" % ("Restarting system" if reason == SHUTDOWN_REBOOT else "Power down"))
        self.dom.shutdown(reason)

    def watch_control(self) -> None:
        """drivers/xen/manage.c and balloon.c: watch control/shutdown,
        control/sysrq and memory/target; acknowledge, act.  After the
        hypervisor connection is re-established the watches are registered
        again by the resume (xs_resume) and the features are advertised
        again; a request made meanwhile waits for it (XenInterface)."""
        xen = self.dom.xen
        self.dom.on_resume(self._advertise)
        self._advertise()
        for path, token in _WATCHES:
            xen.watch(path, token)
        self._vcpus_as_set(xen)
        tokens = tuple(t for _, t in _WATCHES)
        for ev in self.dom.watch_events(tokens):
            if ev[1] == "balloon":
                self.balloon(xen.read_str("memory/target", default=""))
                continue
            if ev[1] == "cpu":
                self.vcpu_hotplug(ev[0], xen)
                continue
            node = "control/" + ev[1]
            what = xen.read_str(node, default="")
            if not what:
                continue
            # manage.c: "Only acknowledge commands which we are
            # prepared to handle" (sysrq_handler clears any key)
            if ev[1] == "sysrq" or what in SHUTDOWN_HANDLERS:
                xen.write(node, "")
            if ev[1] == "sysrq":
                self.sysrq(what[:1])
            elif what in ("poweroff", "halt"):
                self.power(SHUTDOWN_POWEROFF)
            elif what == "reboot":
                self.power(SHUTDOWN_REBOOT)
            else:
                self.kinfo("xen:manage: Ignoring shutdown request: %s" % what)

    def vcpu_hotplug(self, path: str, xen: XenInterface) -> None:
        """drivers/xen/cpu_hotplug.c handle_vcpu_hotplug_event: a change under
        cpu/N brings vcpu N up or down as cpu/N/availability says (CPU 0
        never goes: cpu0 is not hotpluggable)."""
        parts = path.split("/")
        i = parts.index("cpu") if "cpu" in parts else -1
        if i < 0 or i + 1 >= len(parts) or not parts[i + 1].isdigit():
            return
        cpu = int(parts[i + 1])
        if not 0 < cpu < self.dom.vcpus:
            return
        state = xen.read_str("cpu/%d/availability" % cpu, default="")
        if state == "offline" and cpu in self.cpus_online:
            self.cpus_online.discard(cpu)
            self.klog("smpboot: CPU %d is now offline" % cpu)
        elif state == "online" and cpu not in self.cpus_online:
            self.cpus_online.add(cpu)

    def _vcpus_as_set(self, xen: XenInterface) -> None:
        """cpu_hotplug.c setup_cpu_watcher: once its watch is registered,
        every possible vcpu whose cpu/N/availability says "offline" is taken
        down (what vcpu-set wrote before the guest was watching)."""
        for cpu in range(1, self.dom.vcpus):
            self.vcpu_hotplug("cpu/%d" % cpu, xen)

    def balloon(self, target: str) -> None:
        """balloon.c watch_target: the target (kB) becomes the reservation the
        balloon worker aims at; it gets what Xen grants."""
        if not target.isdigit():
            return
        self.dom.memkb = self.dom.xen.memory_reservation(int(target))

    def _advertise(self) -> None:
        for key in ("feature-poweroff", "feature-reboot"):
            self.dom.xen.write("control/" + key, "1")


# drivers/tty/sysrq.c (Linux 6.1): each key's action_msg; keys not here get
# the help line, every handler's help_msg in the order of sysrq_key_table
SYSRQ_ACTIONS = {**{str(i): "Changing Loglevel" for i in range(10)},
                 "b": "Resetting", "c": "Trigger a crash", "e": "Terminate All Tasks",
                 "f": "Manual OOM execution", "i": "Kill All Tasks",
                 "j": "Emergency Thaw of all frozen filesystems", "k": "SAK",
                 "l": "Show backtrace of all active CPUs", "m": "Show Memory",
                 "n": "Nice All RT Tasks", "o": "Power Off", "p": "Show Regs",
                 "q": "Show clockevent devices & pending hrtimers (no others)",
                 "r": "Keyboard mode set to system default", "s": "Emergency Sync",
                 "t": "Show State", "u": "Emergency Remount R/O", "w": "Show Blocked State"}
SYSRQ_HELP = ("loglevel(0-9) reboot(b) crash(c) terminate-all-tasks(e) "
              "memory-full-oom-kill(f) kill-all-tasks(i) thaw-filesystems(j) sak(k) "
              "show-backtrace-all-active-cpus(l) show-memory-usage(m) nice-all-RT-tasks(n) "
              "poweroff(o) show-registers(p) show-all-timers(q) unraw(r) sync(s) "
              "show-task-states(t) unmount(u) show-blocked-tasks(w)")

# drivers/xen/manage.c shutdown_handlers in a kernel built without
# CONFIG_HIBERNATE_CALLBACKS: no "suspend" row, so a suspend request is
# neither acknowledged nor advertised (control/feature-suspend).  The guest's
# userland (tcsd, tpm2-tools: real host processes) cannot be checkpointed.
SHUTDOWN_HANDLERS = ("poweroff", "halt", "reboot")
KERN_INFO = 6


def _console_loglevel(cmdline: str) -> int:
    """init/main.c: `quiet` sets console_loglevel to CONSOLE_LOGLEVEL_QUIET
    (4), `loglevel=N` to N; the last one on the command line wins."""
    level = 7
    for arg in cmdline.split():
        if arg == "quiet":
            level = 4
        elif arg.startswith("loglevel=") and arg[9:].isdigit():
            level = int(arg[9:])
    return level


# (path, token): what watch_control watches
_WATCHES = (("control/shutdown", "shutdown"), ("control/sysrq", "sysrq"),
            ("memory/target", "balloon"), ("cpu", "cpu"))


def boot(dom: Domain) -> None:
    g = Guest(dom)
    g.boot()
    g.run()
