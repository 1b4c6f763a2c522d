"""The simulated host's toolstack state, living in the daemon.

`HostState` is what libxl + Xen + xenconsoled together know about a host:
the domain table (pyxl.hypervisor.domain), the hypervisor's services
(xenstore, event channels, grants: pyxl.hypervisor.services), the consoles,
and the domain processes.  Every operation the control socket offers is a
method here; each runs under one lock, so concurrent pyxl commands never
lose an update, and every change is written atomically to the state file
before the reply goes out.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid as uuidlib

from pyxl.hypervisor.domain import (HVM_MAX_VCPUS, MAX_VIRT_CPUS, REASON_NAMES, SHUTDOWN_CRASH,
                                    SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT, SHUTDOWN_SOFT_RESET,
                                    SHUTDOWN_WATCHDOG, Domain, DomainTable, guest_cmdline,
                                    pid_start_time)
from pyxl.fsutil import atomic_write, open_append, write_all
from pyxl.hypervisor.host import Host
from pyxl.hypervisor.xenstore import payload_fits
from pyxl.toolstack import devices
from pyxl.toolstack.errors import Fault
from pyxl.toolstack.paths import Paths

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable

STATE_VERSION = 1
EXIT_SHUTDOWN_BASE = 64      # a domain process exits 64+reason after SCHEDOP_shutdown
DEVICE_TIMEOUT = 10.0        # LIBXL_INIT_TIMEOUT; a request may carry its own (tests)
DESTROY_TIMEOUT = 10.0       # LIBXL_DESTROY_TIMEOUT: how long a foreign backend gets to close
MAXMEM_SLACK_KB = 1024       # LIBXL_MAXMEM_CONSTANT

ACTIONS = ("destroy", "restart", "restart_rename", "preserve", "coredump_destroy",
           "coredump_restart", "soft_reset")


def _cfg(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _either(value: int | None, default: int) -> int:
    return default if value is None else value


def _stopped_or_gone(pid: int, timeout: float) -> bool:
    """Wait until our child `pid` has stopped (SIGSTOP) or ended, as
    waitid(WSTOPPED | WEXITED | WNOWAIT) reports it, without reaping it;
    False after `timeout`.  waitid cannot time out, so it waits on a thread
    of its own, which a child that never stops leaves waiting until the
    child ends (destroy kills it)."""
    done = threading.Event()

    def wait() -> None:
        try:
            os.waitid(os.P_PID, pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        done.set()

    threading.Thread(target=wait, name="stopped-%d" % pid, daemon=True).start()
    return done.wait(timeout)


def _fault_point(name: str) -> None:
    """Test-only: with PYXL_TEST_FAULT_AT=<name> in its environment the
    daemon SIGKILLs itself at that point (the crash-consistency tests)."""
    if os.environ.get("PYXL_TEST_FAULT_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _platform() -> ModuleType:
    from pyxl.toolstack import platform

    return platform


def _embedded(kernel: str) -> bool:
    return _platform().embedded_kernel(kernel)


def _append_line(path: str, line: str) -> None:
    """A line for a log of the host's (0600, never through a link); a log
    that cannot be written loses the line, never the operation."""
    try:
        fd = open_append(path)
    except OSError:
        return
    try:
        write_all(fd, (line + "\n").encode(errors="replace"))
    except OSError:
        pass
    finally:
        os.close(fd)


class HostState:
    def __init__(self, paths: Paths, log: Callable[[str], None]):
        self.paths = paths
        self.log = log
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.procs: dict[int, subprocess.Popen] = {}
        self.pidfds: dict[int, int] = {}
        self.disk_fds: dict[int, list[tuple[str, int]]] = {}   # domid -> [(vdev, fd)]
        self.stopping = False
        self.shutdown_events: dict[int, int] = {}   # domid -> reason, kept past destruction
        self.host, saved = self._load()
        self.table = DomainTable(self.host)
        from pyxl.hypervisor.services import Hypervisor

        self._gone: dict[int, threading.Event] = {}     # domid -> its hv connection ended
        self._gone_lock = threading.Lock()
        self.hv = Hypervisor(on_disconnect=self._hv_disconnected, on_memory=self._hv_memory)
        from pyxl.toolstack import platform

        self.tis = platform.attach_hardware_tpm(self.paths, self.hv)   # the board's TPM
        self.xs = self.hv.xs()
        self.xenbus: socket.socket | None = None      # where adopted domains reconnect
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.reaper = threading.Thread(target=self._reap_loop, name="reaper", daemon=True)
        self._saved = saved
        if not os.path.exists(self.paths.hypervisor_log):     # the host's first boot
            h = self.host
            for line in (
                    " Xen 4.17.7 (pyxl simulated hypervisor)",
                    "(XEN) Xen version 4.17.7 (pyxl) (gcc (Debian 12.2.0-14) 12.2.0)",
                    "(XEN) Command line: placeholder dom0_mem=%dM,max:%dM"
                    % (h.dom0_memory_mb, h.dom0_memory_mb),
                    "(XEN) Xen-e820 RAM map: %d MiB usable" % h.total_memory_mb,
                    "(XEN) Using scheduler: SMP Credit Scheduler rev2 (credit2)",
                    "(XEN) Brought up %d CPUs" % h.nr_cpus,
                    "(XEN) *** LOADING DOMAIN 0 ***",
                    "(XEN) Dom0 has maximum %d VCPUs" % h.nr_cpus,
                    "(XEN) Freed 2048kB init memory"):
                self.hypervisor_log(line)

    # -- persistence ---------------------------------------------------
    def _load(self) -> tuple[Host, dict[str, Any] | None]:
        try:
            with open(self.paths.state_file, "rb") as f:
                saved = json.loads(f.read())
            if saved.get("version") != STATE_VERSION:
                raise ValueError("state version %r" % saved.get("version"))
            return Host.from_dict(saved["host"]), saved
        except FileNotFoundError:
            return Host.from_env(), None
        except (ValueError, KeyError, TypeError) as e:
            self.log("state file unreadable (%s); starting with an empty host" % e)
            os.replace(self.paths.state_file, self.paths.state_file + ".bad")
            return Host.from_env(), None

    def save(self) -> None:
        data = {"version": STATE_VERSION, "host": self.host.to_dict()}
        data.update(self.table.to_dict())
        atomic_write(self.paths.state_file, json.dumps(data, separators=(",", ":")).encode())

    def hypervisor_log(self, line: str) -> None:
        _append_line(self.paths.hypervisor_log, line)

    def monitor_log(self, dom: Domain, line: str) -> None:
        _append_line(self.paths.monitor_log(dom.name), line)

    # -- start-up: adopt what a previous daemon left running -------------
    def start(self) -> None:
        xenbus = self._listen_xenbus()
        saved = self._saved
        if saved:
            pending = []                       # domains whose on_* action is still to run
            with self.lock:                    # saves are made under the lock, ours too
                self.table.load(saved)
                for dom in list(self.table.domains.values()):
                    if dom.is_dom0:
                        continue
                    if dom.pid and dom.alive():
                        self._adopt(dom)
                    elif dom.shutdown_reason is not None and not dom.dying:
                        self._rewire(dom)      # a preserved shut-down domain: keep it listed
                        if self._action(dom) not in (None, "preserve"):
                            pending.append(dom.domid)   # the daemon died before acting
                    else:
                        # what it said in SCHEDOP_shutdown (its status file), else a crash
                        reason = self._reason_file(dom, SHUTDOWN_CRASH)
                        self.log("domain %d (%s) ended while the daemon was away: %s"
                                 % (dom.domid, dom.name, REASON_NAMES.get(reason, reason)))
                        self.monitor_log(dom, "Domain %d has shut down, reason code %d 0x%x"
                                         % (dom.domid, reason, reason))
                        dom.shutdown_reason = reason
                        dom.pid = 0
                        self._rewire(dom)
                        pending.append(dom.domid)
                self.save()
            for domid in pending:
                threading.Thread(target=self._act_on_shutdown, args=(domid,), daemon=True).start()
        self.table.domains[0].pid = os.getpid()
        self.reaper.start()
        threading.Thread(target=self._xenbus_loop, args=(xenbus,), name="xenbus",
                         daemon=True).start()

    def _rewire(self, dom: Domain) -> None:
        """Recreate the domain in the new daemon's hypervisor and xenstore."""
        self.hv.domain_created(dom.domid, name=dom.name, home=False,
                               console_log=self.paths.console_log(dom.name))
        _platform().grant_iomem(self.hv, dom.domid, dom.config.get("b_info") or {})
        self.hv.memory_restore(dom.domid, dom.xen_max_kb, dom.tot_kb)
        self._write_xenstore(dom)
        if dom.mem_target_kb is not None:       # libxl_set_memory_target's other node
            self.xs.write("/vm/%s/memory" % dom.uuid, str(dom.mem_target_kb // 1024))

    def _hv_memory(self, domid: int) -> None:
        """A domain's balloon moved: keep its tot_pages with the domain
        (off the hypervisor's thread, which must not wait for our lock)."""
        threading.Thread(target=self._record_memory, args=(domid,), daemon=True).start()

    def _record_memory(self, domid: int) -> None:
        with self.lock:
            dom = self.table.domains.get(domid)
            kb = self.hv.memory_kb(domid)
            if dom is None or dom.dying or kb is None or kb == dom.tot_kb:
                return
            dom.tot_kb = kb
            self.save()

    def _adopt(self, dom: Domain) -> None:
        self.log("adopting domain %d (%s), pid %d" % (dom.domid, dom.name, dom.pid))
        self._rewire(dom)
        try:
            self._open_disks(dom)        # blkback reopens; the domain kept its own handles
        except Fault as f:
            self.log("domain %d: %s" % (dom.domid, f.message))
        try:
            self.pidfds[dom.domid] = os.pidfd_open(dom.pid)
        except OSError:
            pass
        self._wake()

    # -- adopted domains reconnect here -------------------------------------
    def _listen_xenbus(self) -> socket.socket:
        path = self.paths.xenbus_socket
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.bind(path)
        os.chmod(path, 0o600)
        s.listen(64)
        self.xenbus = s
        return s

    def _xenbus_loop(self, xenbus: socket.socket) -> None:
        """A domain whose hypervisor connection broke (the daemon was
        restarted) reconnects here.  Who it is comes from the kernel
        (SO_PEERCRED), never from what it says: only the recorded pid of a
        live domain gets that domain's connection back."""
        import struct

        while not self.stopping:
            try:
                conn, _ = xenbus.accept()
            except OSError:
                return
            try:
                cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                       struct.calcsize("3i"))
                pid = struct.unpack("3i", cred)[0]
                with self.lock:
                    dom = next((d for d in self.table.domains.values()
                                if d.pid == pid and not d.is_dom0 and not d.dying), None)
                if dom is None:
                    threading.Thread(target=self._refuse, args=(conn,), daemon=True).start()
                    continue
                with self.lock:
                    self.hv.attach(conn, dom.domid)
                    self.log("domain %d (%s) reconnected" % (dom.domid, dom.name))
            except Exception as e:
                self.log("xenbus reconnect failed: %r" % e)
                conn.close()

    @staticmethod
    def _refuse(conn: socket.socket) -> None:
        """A process that is no domain of this host (one whose create never
        completed, so it was never recorded): answer its HELLO with ESRCH,
        which ends it, and hang up."""
        from pyxl.hypervisor import wire

        try:
            conn.settimeout(2.0)
            ch = wire.Channel(conn)
            f = ch.recv()
            if f is not None:
                for fd in f.fds:
                    os.close(fd)
                ch.send(wire.Frame(wire.XS_ERROR, [b"ESRCH", b"no such domain on this host"],
                                   req_id=f.req_id))
        except (OSError, wire.WireError):
            pass
        finally:
            conn.close()

    def peer_is_domain(self, sock: socket.socket) -> bool:
        """Domains never get the control socket (it is dom0's privcmd)."""
        import struct

        try:
            cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return False
        pid = struct.unpack("3i", cred)[0]
        with self.lock:
            return any(d.pid == pid for d in self.table.domains.values() if not d.is_dom0)

    # -- resolution ----------------------------------------------------
    def resolve(self, dom: str | int, missing_id: str = "NO_SUCH_DOMID") -> Domain:
        """libxl_domain_qualifier_to_domid: all digits = a domid, else a name."""
        s = str(dom)
        if s.isdigit():
            d = self.table.domains.get(int(s))
            if d is None:
                raise Fault(missing_id, dom=s, domid=s)
            return d
        d = self.table.by_name(s)
        if d is None:
            raise Fault("INVALID_DOMAIN", dom=s)
        return d

    def dominfo(self, d: Domain, long: bool = False) -> dict:
        from pyxl.toolstack.resources import current_memkb, live_config

        state, cpu = d.snapshot()
        info = {"domid": d.domid, "name": d.name, "uuid": d.uuid,
                "mem": current_memkb(self, d) // 1024, "max_memkb": d.max_memkb,
                "vcpus": d.vcpus,
                "state": state, "cpu_time": cpu,
                "reason": d.shutdown_reason, "uptime": d.uptime(), "created": d.created,
                "paused": d.paused}
        if long:
            info["config"] = d.config
            info["live"] = live_config(self, d)
        return info

    # -- create --------------------------------------------------------
    def create(self, config: dict, config_file: str = "", config_text: str = "",
               paused: bool = False, monitor: bool = True,
               device_timeout: float = DEVICE_TIMEOUT) -> dict:
        name = _cfg(config, "c_info", "name") or ""
        if not name:
            raise Fault("BAD_REQUEST", reason="domain config without a name")
        max_memkb = int(_cfg(config, "b_info", "max_memkb", default=32 * 1024))
        target_memkb = int(_cfg(config, "b_info", "target_memkb", default=max_memkb))
        vcpus = int(_cfg(config, "b_info", "max_vcpus", default=1) or 1)
        kernel = _cfg(config, "b_info", "kernel", default=None) \
            or _cfg(config, "b_info", "type.pv", "kernel", default="") or ""
        uuid = _cfg(config, "c_info", "uuid") or str(uuidlib.uuid4())
        disks = config.get("disks") or []
        vtpms = config.get("vtpms") or []
        self._check_name(name)
        # libxl__domain_build_info_setdefault: avail_vcpus (vcpus=) may be at
        # most HVM_MAX_VCPUS *bytes* long, whatever the guest type
        avail = _cfg(config, "b_info", "avail_vcpus", default=None) or []
        if avail and (max(avail) + 8) // 8 > HVM_MAX_VCPUS:
            raise Fault("VCPUS_BITMAP")
        with self.lock:
            if self.stopping:
                raise Fault("SHUTTING_DOWN")
            # seed xl resolves vtpm backends while parsing
            vtpm_backends = []
            for v in vtpms:
                be = v.get("backend_domname")
                if be is None:
                    be = str(v.get("backend_domid", 0))
                try:
                    vtpm_backends.append(self.resolve(be).domid)
                except Fault:
                    raise Fault("VTPM_BACKEND_MISSING", backend=be) from None
            # xl's freemem(): does it fit?
            if self.table.free_kb() < max_memkb + MAXMEM_SLACK_KB:
                raise Fault("NOMEM")
            domid = self.table.allocate_domid()
            # XEN_DOMCTL_createdomain: arch_sanitise_domain_config's limit
            limit = MAX_VIRT_CPUS if _cfg(config, "c_info", "type", default="pv") == "pv" \
                else HVM_MAX_VCPUS
            if not 1 <= vcpus <= limit:
                self.save()
                raise Fault("DOMAIN_CREATE_FAIL", reason="Invalid argument")
            if self.table.by_name(name) is not None:
                # libxl__domain_make: the domain is made, the rename fails, it is torn down
                self.save()
                raise Fault("NAME_IN_USE", domid=domid, name=name)
            if not payload_fits("/local/domain/%d/name" % domid, name):
                self.save()             # as above: xs_write of the name fails (E2BIG)
                raise Fault("NAME_WRITE_FAILED", domid=domid, name=name)
            # initiate_domain_create, after libxl__domain_make: disk backends are stat'ed
            for i, disk in enumerate(disks):
                path = disk.get("pdev_path") or ""
                if path and not os.path.exists(path):
                    self.save()
                    raise Fault("DISK_MISSING", domid=domid, vdev=disk.get("vdev", ""),
                                path=path, index=i)
            if kernel and not os.path.isfile(kernel) and not _embedded(kernel):
                self.save()
                raise Fault("KERNEL_MISSING", domid=domid, path=kernel)
            dom = Domain(domid, name, uuid, max_memkb, target_memkb, vcpus, kernel=kernel,
                         config=config, config_text=config_text, config_file=config_file)
            dom.monitored = monitor
            self.table.domains[domid] = dom
            try:
                self.hv.domain_created(domid, name=name, home=False,
                                       console_log=self.paths.console_log(name))
                _platform().grant_iomem(self.hv, domid, config.get("b_info") or {})
                self._write_xenstore(dom)
                self._open_disks(dom)
                self._spawn(dom, paused)
            except Exception:
                self._teardown(dom)
                raise
            # A daemon killed from here until save() returns never recorded
            # the domain: its process, not known to the next daemon, is told
            # so when it dials in and ends (HostState._refuse).  From save()
            # on it is the next daemon's to adopt, whether or not its first
            # HELLO reached us (it dials the next daemon if not).
            _fault_point("create:spawned")
            dom.config.setdefault("c_info", {})["uuid"] = uuid
            self.monitor_log(dom, "Waiting for domain %s (domid %d) to die [pid %d]"
                             % (name, domid, os.getpid()))
            self.save()
            self.changed.notify_all()
        # libxl waits (without our lock) for every backend to reach InitWait
        for devid, be_domid in enumerate(vtpm_backends):
            be = "/local/domain/%d/backend/vtpm/%d/%d" % (be_domid, domid, devid)
            if not devices.wait_state(self.xs, be, devices.XenbusStateInitWait, device_timeout,
                                      alive=lambda: be_domid in self.table.domains):
                with self.lock:
                    self._destroy_locked(dom)
                raise Fault("DEVICE_TIMEOUT", domid=domid, path=be, kind="vtpm")
        return {"domid": domid, "name": name, "uuid": uuid}

    def _check_name(self, name: str) -> None:
        """What pyxl itself cannot take in a domain name (libxl takes any
        bytes that fit in xenstore): bytes that are not UTF-8 (they reach
        the daemon as lone surrogates).  A long name is no problem: the log
        files named after it use fsutil.safe_name, which bounds them."""
        try:
            name.encode()
        except UnicodeEncodeError:
            raise Fault("NAME_NOT_UTF8", shown=ascii(name.encode("utf-8", "surrogateescape")
                                                     .decode("latin-1"))) from None

    def _write_xenstore(self, dom: Domain) -> None:
        devices.write_domain(self.xs, dom.domid, dom.name, dom.uuid,
                             _either(dom.mem_static_max_kb, dom.max_memkb),
                             _either(dom.mem_target_kb, dom.target_memkb), dom.vcpus, dom.kernel,
                             _cfg(dom.config, "b_info", "cmdline", default="") or "", dom.created)
        for disk in dom.config.get("disks") or []:
            devid = devices.vdev_to_devid(disk.get("vdev", ""))
            if devid >= 0:
                devices.add_vbd(self.xs, dom.domid, 0, disk, devid)
        for i, v in enumerate(dom.config.get("vtpms") or []):
            be = v.get("backend_domname")
            be_dom = self.table.by_name(be) if be is not None else \
                self.table.domains.get(int(v.get("backend_domid", 0)))
            if be_dom is None:
                continue
            if not v.get("uuid"):
                v["uuid"] = str(uuidlib.uuid4())
            devices.add_vtpm(self.xs, dom.domid, be_dom.domid, int(v.get("devid", i)), v["uuid"])
        for i, nic in enumerate(dom.config.get("nics") or []):
            # libxl__device_nic_setdefault; the MAC it draws is kept in the config
            nic.setdefault("devid", i)
            full = devices.nic_setdefault(nic, uuidlib.uuid4().bytes)
            nic["mac"] = full["mac"]
            _, be = devices.add_vif(self.xs, dom.domid, 0, full)
            devices.backend_ready(self.xs, be, hotplug=True)      # netback, vif-bridge

    def _open_disks(self, dom: Domain) -> None:
        """blkback opens every image the domain was given."""
        fds = []
        for i, disk in enumerate(dom.config.get("disks") or []):
            path = disk.get("pdev_path") or ""
            if not path:
                continue
            flags = os.O_RDWR if devices.disk_readwrite(disk) else os.O_RDONLY
            try:
                fds.append((disk.get("vdev", ""), os.open(path, flags | os.O_CLOEXEC)))
            except OSError:
                for _, fd in fds:
                    os.close(fd)
                raise Fault("DISK_MISSING", domid=dom.domid, vdev=disk.get("vdev", ""),
                            path=path, index=i) from None
            devid = devices.vdev_to_devid(disk.get("vdev", ""))
            if devid >= 0:
                be = "/local/domain/0/backend/vbd/%d/%d" % (dom.domid, devid)
                size = os.fstat(fds[-1][1]).st_size
                self.xs.write(be + "/sectors", str(size // 512))
                self.xs.write(be + "/sector-size", "512")
                self.xs.write(be + "/state", str(devices.XenbusStateInitWait))
        self.disk_fds[dom.domid] = fds

    def _spawn(self, dom: Domain, paused: bool) -> None:
        from pyxl.domain import spec as domspec

        status = self._status_path(dom.domid)
        try:
            os.unlink(status)
        except FileNotFoundError:
            pass
        with self._gone_lock:
            self._gone.pop(dom.domid, None)
        child_sock = self.hv.connect_domain(dom.domid)
        # the block devices blkback opened, handed to the domain's blkfront
        block = self.disk_fds.get(dom.domid, [])
        spec = domspec.make(
            domid=dom.domid, name=dom.name, uuid=dom.uuid, kernel=dom.kernel,
            cmdline=guest_cmdline(_cfg(dom.config, "b_info", "cmdline", default="") or ""),
            memkb=dom.target_memkb, vcpus=dom.vcpus, paused=paused, status=status,
            xenbus=self.paths.xenbus_socket, disks=dom.config.get("disks") or [],
            hv_fd=child_sock.fileno(), block={vdev: fd for vdev, fd in block})
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        boot = ("import sys;sys.path[:0]=%r;from pyxl.domain.process import main;main()"
                % ([os.path.dirname(pkg_root)] + self._site_paths()))
        spec_fd = err = -1
        try:
            spec_fd = domspec.to_fd(spec)     # never on the command line: /proc is public
            err = open_append(self.paths.console_log(dom.name) + ".stderr")
            proc = subprocess.Popen(
                [sys.executable, "-S", "-c", boot] + domspec.argv(dom.domid, spec_fd),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                pass_fds=(child_sock.fileno(), spec_fd) + tuple(fd for _, fd in block),
                start_new_session=True, close_fds=True)
        finally:
            child_sock.close()
            for fd in (spec_fd, err):
                if fd >= 0:
                    os.close(fd)
        dom.pid = proc.pid
        dom.pid_start = pid_start_time(proc.pid)
        dom.paused = paused
        self.procs[dom.domid] = proc
        self.pidfds[dom.domid] = os.pidfd_open(proc.pid)
        self._wake()
        if paused:   # the domain stops itself before running a single instruction
            _stopped_or_gone(proc.pid, 2.0)

    def _site_paths(self) -> list[str]:
        # stub domains need cryptography & co.; a Linux guest imports none of them
        return [p for p in sys.path if p.endswith("site-packages")]

    def _status_path(self, domid: int) -> str:
        return os.path.join(self.paths.domain_status_dir, "%d.status" % domid)

    def _reason_file(self, dom: Domain, default: int) -> int:
        try:
            with open(self._status_path(dom.domid)) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return default

    # -- destroy -------------------------------------------------------
    def destroy(self, dom_q: str, force: bool = False) -> None:
        with self.lock:
            dom = self.resolve(dom_q, missing_id="DESTROY_FAILED")
            if dom.is_dom0:
                raise Fault("DESTROY_DOM0")
            self._destroy_locked(dom)

    def _destroy_locked(self, dom: Domain) -> None:
        if dom.domid not in self.table.domains:
            return
        dom.dying = True
        self._kill(dom)
        self._teardown(dom)
        self.hypervisor_log("(XEN) domain %d (%s) destroyed" % (dom.domid, dom.name))

    def _kill(self, dom: Domain) -> None:
        proc = self.procs.pop(dom.domid, None)
        fd = self.pidfds.pop(dom.domid, None)
        if dom.pid and (proc is not None or dom.alive()):
            try:
                os.kill(dom.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc is not None:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            elif fd is not None:
                select.select([fd], [], [], 5)
        if fd is not None:
            os.close(fd)
        dom.cpu_time_done = dom.cpu_time()
        dom.pid = 0
        self._wake()

    def _teardown(self, dom: Domain, save: bool = True) -> None:
        try:
            os.unlink(self._status_path(dom.domid))
        except FileNotFoundError:
            pass
        for _, fd in self.disk_fds.pop(dom.domid, []):
            os.close(fd)
        paths = devices.domain_paths(self.xs, dom.domid, dom.uuid)
        # out of the table first: a wait on a backend in it, woken by the
        # @releaseDomain that domain_destroyed fires, finds it gone
        self.table.domains.pop(dom.domid, None)
        self.hv.domain_destroyed(dom.domid)
        # Backends in dom0 are ours to remove now.  A backend in another
        # domain (tpmback in a vtpm-stubdom) removes its own directory once
        # the frontend is gone, as it does on Xen while libxl waits for it;
        # removing it under its feet would make it fail its own cleanup.
        foreign = [p for p in paths if (be := devices.backend_domid_of(p)) is not None
                   and be not in (0, dom.domid) and self._backend_alive(be)]
        devices.remove_paths(self.xs, [p for p in paths if p not in foreign])
        if foreign:
            threading.Thread(target=self._remove_foreign_backends, args=(foreign,),
                             name="backend-cleanup", daemon=True).start()
        if save:
            self.save()
        self.changed.notify_all()

    def _backend_alive(self, domid: int) -> bool:
        d = self.table.domains.get(domid)
        return d is not None and d.pid != 0

    def _remove_foreign_backends(self, paths: list[str]) -> None:
        for p in paths:
            be = devices.backend_domid_of(p)
            devices.wait_backend_gone(self.xs, p, DESTROY_TIMEOUT,
                                      alive=lambda be=be: self._backend_alive(be))
            devices.remove_paths(self.xs, [p])

    # -- the reaper: a domain process that ends has shut down or crashed -
    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def _reap_loop(self) -> None:
        import selectors

        sel = selectors.DefaultSelector()       # epoll: hundreds of pidfds, no FD_SETSIZE limit
        sel.register(self.wake_r, selectors.EVENT_READ, None)
        watched: dict[int, int] = {}            # fd -> domid
        while not self.stopping:
            # under the lock: _kill closes pidfds under it, and a number closed
            # between a copy and register() could already name another socket
            with self.lock:
                want = {fd: domid for domid, fd in self.pidfds.items()}
                for fd in list(watched):
                    if want.get(fd) != watched[fd]:
                        try:
                            sel.unregister(fd)
                        except (KeyError, ValueError):
                            pass
                        del watched[fd]
                for fd, domid in want.items():
                    if fd not in watched:
                        try:
                            sel.register(fd, selectors.EVENT_READ, domid)
                            watched[fd] = domid
                        except (OSError, ValueError, KeyError):
                            pass
            for key, _ in sel.select(1.0):
                if key.fd == self.wake_r:
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                sel.unregister(key.fd)
                watched.pop(key.fd, None)
                self._died(key.data, key.fd)

    def _hv_disconnected(self, domid: int) -> None:
        """Called by the hypervisor once it has read everything a domain sent."""
        with self._gone_lock:
            self._gone.setdefault(domid, threading.Event()).set()

    def _drained(self, domid: int, timeout: float = 2.0) -> None:
        """A dead domain's last console output may still sit in its socket:
        wait until the hypervisor has read it all before closing the console."""
        with self._gone_lock:
            ev = self._gone.setdefault(domid, threading.Event())
        ev.wait(timeout)
        with self._gone_lock:
            self._gone.pop(domid, None)

    def _died(self, domid: int, fd: int) -> None:
        with self.lock:
            dom = self.table.domains.get(domid)
            mine = self.pidfds.get(domid) == fd and dom is not None and not dom.dying
        if mine:          # not being destroyed: a shutdown or a crash; let its output in
            self._drained(domid)
        with self.lock:
            if self.pidfds.get(domid) != fd:
                return          # destroyed meanwhile
            dom = self.table.domains.get(domid)
            self.pidfds.pop(domid)
            os.close(fd)
            proc = self.procs.pop(domid, None)
            if dom is None or dom.dying:
                return
            reason = SHUTDOWN_CRASH
            if proc is not None:
                rc = proc.wait()
                if EXIT_SHUTDOWN_BASE <= rc <= EXIT_SHUTDOWN_BASE + SHUTDOWN_SOFT_RESET:
                    reason = rc - EXIT_SHUTDOWN_BASE
            else:
                reason = self._reason_file(dom, SHUTDOWN_CRASH)
            dom.cpu_time_done = dom.cpu_time()
            dom.pid = 0
            dom.paused = False
            dom.shutdown_reason = reason
            self.hv.domain_shutdown(domid)      # waits on a backend in it end now
            self.shutdown_events[domid] = reason
            if len(self.shutdown_events) > 4096:
                self.shutdown_events.pop(next(iter(self.shutdown_events)))
            try:
                self.hv.console(domid).close()     # console clients see the end
            except OSError:
                pass
            self.hypervisor_log("(XEN) domain %d (%s) shut down, reason %s"
                                % (domid, dom.name, REASON_NAMES.get(reason, reason)))
            self.monitor_log(dom, "Domain %d has shut down, reason code %d 0x%x"
                             % (domid, reason, reason))
            self.save()
            _fault_point("shutdown:recorded")
            self.changed.notify_all()
        threading.Thread(target=self._act_on_shutdown, args=(domid,), daemon=True).start()

    def _act_on_shutdown(self, domid: int) -> None:
        """What xl's monitor (xl create without -e) does when a domain shuts down."""
        with self.lock:
            dom = self.table.domains.get(domid)
            if dom is None or not dom.monitored or dom.shutdown_reason is None:
                return
            reason = dom.shutdown_reason
            action = self._action(dom)
            if action is None:   # suspend
                self.monitor_log(dom, "Domain has suspended.")
                return
            self.monitor_log(dom, "Action for shutdown reason code %d is %s" % (reason, action))
            if action == "preserve":
                return
            restart = action in ("restart", "coredump_restart", "soft_reset", "restart_rename")
            # what the restarted domain is made from (xl's reload_domain_config)
            config, config_file, config_text = dom.config, dom.config_file, dom.config_text
            if restart and dom.updated_config is not None:
                config, config_file, config_text = dom.updated_config
                dom.updated_config = None
                self.monitor_log(dom, '"xl" configuration found, using it\n')
            if action == "restart_rename":
                # xl's preserve_domain: the old domain stays, shut down, under
                # a dated name and a new uuid; a new one takes the name
                self._preserve_renamed(dom)
            else:
                self.monitor_log(dom, "Domain %d needs to be cleaned up: destroying the domain"
                                 % domid)
                self._destroy_locked(dom)
            if not restart:
                self.monitor_log(dom, "Done. Exiting now")
                return
            # xl_vmcontrol.c create_domain, DOMAIN_RESTART_NORMAL: then `goto start`,
            # whose create logs "Waiting for domain ..." for the new domain
            self.monitor_log(dom, "Done. Rebooting now")
        # the new domain is made outside the lock: create waits for device backends
        try:
            self.create(config, config_file, config_text, monitor=True)
        except Fault as f:
            self.monitor_log(dom, f.message)

    @staticmethod
    def _action(dom: Domain) -> str | None:
        """The on_* action for the reason a monitored domain shut down
        (None: suspended, or not monitored)."""
        if not dom.monitored or dom.shutdown_reason is None:
            return None
        key = {SHUTDOWN_POWEROFF: "on_poweroff", SHUTDOWN_REBOOT: "on_reboot",
               SHUTDOWN_CRASH: "on_crash", SHUTDOWN_WATCHDOG: "on_watchdog",
               SHUTDOWN_SOFT_RESET: "on_soft_reset"}.get(dom.shutdown_reason)
        if key is None:
            return None
        default = {"on_reboot": "restart", "on_soft_reset": "soft_reset"}.get(key, "destroy")
        return dom.config.get(key) or default

    def _preserve_renamed(self, dom: Domain) -> None:
        """libxl_domain_preserve with xl's suffix "-%Y%m%dT%H%MZ" (UTC)."""
        suffix = time.strftime("-%Y%m%dT%H%MZ", time.gmtime())
        name = dom.config.get("c_info", {}).get("name", dom.name)
        self.monitor_log(dom, "Preserving domain %d %s with suffix%s" % (dom.domid, name, suffix))
        old_uuid, new_uuid = dom.uuid, str(uuidlib.uuid4())
        dom.name = name + suffix
        dom.uuid = new_uuid
        dom.monitored = False
        dom.config = json.loads(json.dumps(dom.config))     # the new domain keeps the original
        dom.config.setdefault("c_info", {})["name"] = dom.name
        dom.config["c_info"]["uuid"] = new_uuid
        try:
            self.xs.rm("/vm/%s" % old_uuid)
        except OSError:
            pass
        self.xs.write("/vm/%s/name" % new_uuid, dom.name)
        self.xs.write("/vm/%s/uuid" % new_uuid, new_uuid)
        self.xs.write("/local/domain/%d/vm" % dom.domid, "/vm/%s" % new_uuid)
        self.xs.write("/local/domain/%d/name" % dom.domid, dom.name)
        try:
            os.replace(self.paths.console_log(name), self.paths.console_log(dom.name))
        except OSError:
            pass
        self.save()
        self.changed.notify_all()

    # -- other domain operations -----------------------------------------
    def rename(self, dom_q: str, new: str) -> None:
        self._check_name(new)
        with self.lock:
            dom = self.resolve(dom_q)
            other = self.table.by_name(new)
            if other is not None and other is not dom:
                raise Fault("RENAME_DUP", domid=dom.domid, name=new, dom=dom_q)
            if not payload_fits("/local/domain/%d/name" % dom.domid, new):
                raise Fault("RENAME_WRITE_FAILED", domid=dom.domid, name=new, old=dom.name,
                            dom=dom_q)
            old = dom.name
            dom.name = new
            self.xs.write("/local/domain/%d/name" % dom.domid, new)
            self.xs.write("/vm/%s/name" % dom.uuid, new)
            dom.config.setdefault("c_info", {})["name"] = new
            try:
                os.replace(self.paths.console_log(old), self.paths.console_log(new))
            except OSError:
                pass
            self.save()
            self.changed.notify_all()

    def pause(self, dom_q: str, pause: bool) -> None:
        with self.lock:
            dom = self.resolve(dom_q)
            if dom.is_dom0 or not dom.pid:
                return
            try:
                os.kill(dom.pid, signal.SIGSTOP if pause else signal.SIGCONT)
            except ProcessLookupError:
                return
            dom.paused = pause
            self.save()

    def shutdown(self, dom_q: str, reboot: bool) -> int:
        """libxl_domain_shutdown/reboot: write control/shutdown for the PV guest."""
        with self.lock:
            dom = self.resolve(dom_q)
            if dom.shutdown_reason is not None:
                return dom.domid
            self.xs.write("/local/domain/%d/control/shutdown" % dom.domid,
                          "reboot" if reboot else "poweroff")
            return dom.domid

    def wait_event(self, domid: int, timeout: float, until: str = "shutdown") -> dict:
        """Block until the domain has shut down or is gone (libxl domain death events)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                dom = self.table.domains.get(domid)
                if dom is None:
                    # it shut down, then its monitor reaped it
                    if until == "shutdown" and domid in self.shutdown_events:
                        return {"event": "shutdown", "reason": self.shutdown_events[domid]}
                    return {"event": "destroyed"}
                if dom.shutdown_reason is not None and until == "shutdown":
                    return {"event": "shutdown", "reason": dom.shutdown_reason}
                left = deadline - time.monotonic()
                if left <= 0:
                    return {"event": "timeout"}
                self.changed.wait(left)     # every shutdown and destroy notifies

    # -- vtpm devices ----------------------------------------------------
    def vtpm_attach(self, dom_q: str, uuid: str | None, backend: str | None,
                    device_timeout: float = DEVICE_TIMEOUT) -> int:
        with self.lock:
            dom = self.resolve(dom_q)
            be_domid = 0
            if backend is not None:
                try:        # libxl__device_vtpm_setdefault resolves backend_domname
                    be_domid = self.resolve(backend).domid
                except Fault:
                    raise Fault("VTPM_ADD_FAILED") from None
            used = {r["devid"] for r in devices.list_vtpms(self.xs, dom.domid)}
            devid = 0
            while devid in used:
                devid += 1
            uuid = uuid or str(uuidlib.uuid4())
            devices.add_vtpm(self.xs, dom.domid, be_domid, devid, uuid)
            dom.config.setdefault("vtpms", []).append(
                {"backend_domid": be_domid, "devid": devid, "uuid": uuid})
            self.save()
        be = "/local/domain/%d/backend/vtpm/%d/%d" % (be_domid, dom.domid, devid)
        if not devices.wait_state(self.xs, be, devices.XenbusStateInitWait, device_timeout,
                                  alive=lambda: be_domid in self.table.domains):
            with self.lock:
                devices.remove_vtpm(self.xs, dom.domid, devid, 0)
                dom.config["vtpms"] = [v for v in dom.config.get("vtpms", [])
                                       if v.get("devid") != devid]
                self.save()
            raise Fault("VTPM_ADD_TIMEOUT", domid=dom.domid, path=be)
        return devid

    def vtpm_list(self, dom_q: str) -> list:
        with self.lock:
            try:
                dom = self.resolve(dom_q)
            except Fault as f:
                if f.name == "NO_SUCH_DOMID":   # a number is taken as a domid: nothing there
                    return []
                raise
            return devices.list_vtpms(self.xs, dom.domid)

    def vtpm_detach(self, dom_q: str, dev: str, device_timeout: float = DEVICE_TIMEOUT) -> None:
        with self.lock:
            dom = self.resolve(dom_q)
            rows = devices.list_vtpms(self.xs, dom.domid)
            hit = [r for r in rows if r["uuid"].lower() == dev.lower()] or \
                [r for r in rows if dev.isdigit() and r["devid"] == int(dev)]
            if not hit:
                raise Fault("UNKNOWN_DEVICE", dev=dev)
            devid = hit[0]["devid"]
        devices.remove_vtpm(self.xs, dom.domid, devid, device_timeout)
        with self.lock:
            dom.config["vtpms"] = [v for v in dom.config.get("vtpms", [])
                                   if v.get("devid") != devid]
            self.save()

    # -- stopping --------------------------------------------------------
    def guests(self) -> list[Domain]:
        return [d for d in self.table.sorted() if not d.is_dom0]

    def stop(self, destroy_all: bool) -> None:
        with self.lock:
            if destroy_all:
                guests = self.guests()
                for d in guests:          # stop them all first, then reap: no serial waits
                    d.dying = True
                    if d.pid and d.alive():
                        try:
                            os.kill(d.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                for d in guests:
                    try:
                        self._kill(d)
                        self._teardown(d, save=False)
                    except Exception as e:      # keep going: leave nothing running
                        self.log("destroying domain %d: %r" % (d.domid, e))
            self.stopping = True
            self.save()
        self._wake()
        if self.xenbus is not None:
            self.xenbus.close()
            try:
                os.unlink(self.paths.xenbus_socket)
            except FileNotFoundError:
                pass
        self.hv.close()
