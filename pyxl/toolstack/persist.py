"""What the daemon keeps on disk and how a restarted daemon takes the host
back.  On Xen the hypervisor and xenstored outlive the toolstack; here the
daemon is all of them, so every change is written atomically to its state
file (libxl's own userdata and Xen's domain records, in one), and a daemon
that starts finds the domains a previous one left: a live one is adopted
(recreated in the new hypervisor and xenstore; it dials back in on the
xenbus socket), one that ended meanwhile is recorded as shut down and its
on_* action carried out.  Each function takes the HostState
(pyxl.toolstack.hostd).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading

from pyxl.fsutil import atomic_write
from pyxl.hypervisor.domain import REASON_NAMES, SHUTDOWN_CRASH, Domain
from pyxl.hypervisor.host import Host
from pyxl.toolstack import monitor, resources, spawn
from pyxl.toolstack.errors import Fault

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, Callable

    from pyxl.toolstack.hostd import HostState
    from pyxl.toolstack.paths import Paths

STATE_VERSION = 1


def load(paths: Paths, log: Callable[[str], None]) -> tuple[Host, dict[str, Any] | None]:
    """The host and the saved domain table; an unreadable state file is
    set aside (.bad) and the host starts empty, saying so."""
    try:
        with open(paths.state_file, "rb") as f:
            saved = json.loads(f.read())
        if saved.get("version") != STATE_VERSION:
            raise ValueError("state version %r" % saved.get("version"))
        return Host.from_dict(saved["host"]), saved
    except FileNotFoundError:
        return Host.from_env(), None
    except (ValueError, KeyError, TypeError) as e:
        log("state file unreadable (%s); starting with an empty host" % e)
        os.replace(paths.state_file, paths.state_file + ".bad")
        return Host.from_env(), None


def save(st: HostState) -> None:
    """The host and its domains, written atomically (under the host's lock)."""
    data = {"version": STATE_VERSION, "host": st.host.to_dict()}
    data.update(st.table.to_dict())
    atomic_write(st.paths.state_file, json.dumps(data, separators=(",", ":")).encode())


def adopt_all(st: HostState, saved: dict[str, Any]) -> None:
    """The domains a previous daemon recorded: adopt the live ones, keep
    the preserved ones listed, record the ones that ended meanwhile, and
    run the on_* actions the previous daemon did not get to."""
    pending = []                       # domains whose on_* action is still to run
    with st.lock:                      # saves are made under the lock, ours too
        st.table.load(saved)
        for dom in list(st.table.domains.values()):
            if dom.is_dom0:
                continue
            if dom.pid and dom.alive():
                adopt(st, dom)
            elif dom.shutdown_reason is not None and not dom.dying:
                rewire(st, dom)      # a preserved shut-down domain: keep it listed
                if monitor.acts(dom):
                    pending.append(dom.domid)   # the daemon died before acting
            else:
                # what it said in SCHEDOP_shutdown (its status file), else a crash
                reason = monitor.reason_file(st, dom, SHUTDOWN_CRASH)
                st.log("domain %d (%s) ended while the daemon was away: %s"
                       % (dom.domid, dom.name, REASON_NAMES.get(reason, reason)))
                st.monitor_log(dom, "Domain %d has shut down, reason code %d 0x%x"
                               % (dom.domid, reason, reason))
                dom.shutdown_reason = reason
                dom.pid = 0
                rewire(st, dom)
                pending.append(dom.domid)
        st.save()
    for domid in pending:
        threading.Thread(target=monitor.act_on_shutdown, args=(st, domid), daemon=True).start()


def rewire(st: HostState, dom: Domain) -> None:
    """Recreate the domain in the new daemon's hypervisor and xenstore,
    with what the previous one had recorded of its memory."""
    from pyxl.toolstack import platform

    st.hv.domain_created(dom.domid, name=dom.name, home=False,
                         console_log=st.paths.console_log(dom.name))
    platform.grant_iomem(st.hv, dom.domid, dom.config.get("b_info") or {})
    st.hv.memory_restore(dom.domid, dom.xen_max_kb, dom.tot_kb)
    spawn.write_xenstore(st, dom)
    if dom.mem_target_kb is not None:       # libxl_set_memory_target's other node
        st.xs.write("/vm/%s/memory" % dom.uuid, str(dom.mem_target_kb // 1024))


def adopt(st: HostState, dom: Domain) -> None:
    """A live domain of the previous daemon's: rewired, its disks
    reopened, its process watched through a pidfd."""
    st.log("adopting domain %d (%s), pid %d" % (dom.domid, dom.name, dom.pid))
    rewire(st, dom)
    try:
        spawn.open_disks(st, dom)        # blkback reopens; the domain kept its own handles
    except Fault as f:
        st.log("domain %d: %s" % (dom.domid, f.message))
    try:
        st.pidfds[dom.domid] = os.pidfd_open(dom.pid)
    except OSError:
        pass
    resources.place(st, dom)         # where its vcpus may run, as recorded
    st.wake()


def record_memory(st: HostState, domid: int) -> None:
    """A domain's balloon moved: keep its tot_pages with the domain."""
    with st.lock:
        dom = st.table.domains.get(domid)
        kb = st.hv.memory_kb(domid)
        if dom is None or dom.dying or kb is None or kb == dom.tot_kb:
            return
        dom.tot_kb = kb
        st.save()


# -- adopted domains reconnect here -------------------------------------------
def listen_xenbus(st: HostState) -> socket.socket:
    """The socket an adopted domain dials when its hypervisor connection
    broke (root only)."""
    path = st.paths.xenbus_socket
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(path)
    os.chmod(path, 0o600)
    s.listen(64)
    return s


def xenbus_loop(st: HostState, xenbus: socket.socket) -> None:
    """A domain whose hypervisor connection broke (the daemon was
    restarted) reconnects here.  Who it is comes from the kernel
    (SO_PEERCRED), never from what it says: only the recorded pid of a
    live domain gets that domain's connection back."""
    while not st.stopping:
        try:
            conn, _ = xenbus.accept()
        except OSError:
            return
        try:
            cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                   struct.calcsize("3i"))
            pid = struct.unpack("3i", cred)[0]
            with st.lock:
                dom = next((d for d in st.table.domains.values()
                            if d.pid == pid and not d.is_dom0 and not d.dying), None)
            if dom is None:
                threading.Thread(target=refuse, args=(conn,), daemon=True).start()
                continue
            with st.lock:
                st.hv.attach(conn, dom.domid)
                st.log("domain %d (%s) reconnected" % (dom.domid, dom.name))
        except Exception as e:
            st.log("xenbus reconnect failed: %r" % e)
            conn.close()


def refuse(conn: socket.socket) -> None:
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
