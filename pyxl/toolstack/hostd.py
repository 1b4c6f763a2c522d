"""The simulated host's toolstack state, living in the daemon: the
composition of what libxl + Xen + xenconsoled together know about a host.

`HostState` holds the domain table (pyxl.hypervisor.domain), the
hypervisor's services (xenstore, event channels, grants:
pyxl.hypervisor.services), the consoles and the domain processes, and the
one lock every operation runs under, so concurrent pyxl commands never lose
an update; every change is written atomically to the state file before the
reply goes out.  The jobs are modules of their own, each taking the
HostState:

    persist     the state file; a restarted daemon adopting live domains
    spawn       create (libxl_create.c) and the domain process
    teardown    destroy (libxl_domain.c libxl__destroy_domid)
    monitor     the reaper and the on_* actions (xl_vmcontrol.c handle_domain_death)
    control     rename, pause, shutdown (libxl_domain.c)
    vtpm        vtpm-attach, -list, -detach (libxl_vtpm.c)
    resources   memory, vCPUs, schedulers, CPU pools (libxl_mem.c, libxl_sched.c, ...)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading

from pyxl.fsutil import open_append, write_all
from pyxl.hypervisor import placement
from pyxl.hypervisor.domain import Domain, DomainTable
from pyxl.toolstack import monitor, persist, teardown
from pyxl.toolstack.errors import Fault
from pyxl.toolstack.paths import Paths

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Callable


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
        # the real CPUs the simulated host's pCPUs map onto (resources.place)
        self.usable_cpus = placement.usable_cpus()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.procs: dict[int, subprocess.Popen] = {}
        self.pidfds: dict[int, int] = {}
        self.disk_fds: dict[int, list[tuple[str, int]]] = {}   # domid -> [(vdev, fd)]
        self.stopping = False
        self.shutdown_events: dict[int, int] = {}   # domid -> reason, kept past destruction
        self.host, saved = persist.load(paths, log)
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
        self.reaper = threading.Thread(target=monitor.reap_loop, args=(self,), name="reaper",
                                       daemon=True)
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

    def save(self) -> None:
        persist.save(self)

    def hypervisor_log(self, line: str) -> None:
        _append_line(self.paths.hypervisor_log, line)

    def monitor_log(self, dom: Domain, line: str) -> None:
        _append_line(self.paths.monitor_log(dom.name), line)

    def start(self) -> None:
        """Serve: adopt what a previous daemon left (persist.adopt_all), then
        the reaper and the socket adopted domains reconnect on."""
        self.xenbus = xenbus = persist.listen_xenbus(self)
        if self._saved:
            persist.adopt_all(self, self._saved)
        self.table.domains[0].pid = os.getpid()
        self.reaper.start()
        threading.Thread(target=persist.xenbus_loop, args=(self, xenbus), name="xenbus",
                         daemon=True).start()

    # -- the hypervisor's callbacks (on its threads: they must not block) --------
    def _hv_memory(self, domid: int) -> None:
        """A domain's balloon moved: persist.record_memory, on a thread of its
        own (it waits for the host's lock)."""
        threading.Thread(target=persist.record_memory, args=(self, domid), daemon=True).start()

    def _hv_disconnected(self, domid: int) -> None:
        """Called by the hypervisor once it has read everything a domain sent."""
        with self._gone_lock:
            self._gone.setdefault(domid, threading.Event()).set()

    def drained(self, domid: int, timeout: float = 2.0) -> None:
        """A dead domain's last console output may still sit in its socket:
        wait until the hypervisor has read it all before closing the console."""
        with self._gone_lock:
            ev = self._gone.setdefault(domid, threading.Event())
        ev.wait(timeout)
        with self._gone_lock:
            self._gone.pop(domid, None)

    def forget_disconnect(self, domid: int) -> None:
        """A new process for the domain: an old connection's end is not its."""
        with self._gone_lock:
            self._gone.pop(domid, None)

    def wake(self) -> None:
        """The reaper looks at the domains' pidfds again."""
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

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
                        teardown.kill(self, d)
                        teardown.teardown(self, d, save=False)
                    except Exception as e:      # keep going: leave nothing running
                        self.log("destroying domain %d: %r" % (d.domid, e))
            self.stopping = True
            self.save()
        self.wake()
        if self.xenbus is not None:
            self.xenbus.close()
            try:
                os.unlink(self.paths.xenbus_socket)
            except FileNotFoundError:
                pass
        self.hv.close()
