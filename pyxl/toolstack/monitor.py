"""What happens when a domain's process ends: Xen records the shutdown
(or the crash) and xl's monitor, the `xl create` that stays behind unless
-e, carries out the domain's on_poweroff / on_reboot / on_crash /
on_watchdog / on_soft_reset action (xl_vmcontrol.c handle_domain_death,
preserve_domain and create_domain's restart loop).  The reaper watches
every domain's pidfd; each function takes the HostState
(pyxl.toolstack.hostd).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid as uuidlib

from pyxl.domain.process import EXIT_SHUTDOWN_BASE
from pyxl.hypervisor.domain import (REASON_NAMES, SHUTDOWN_CRASH, SHUTDOWN_POWEROFF,
                                    SHUTDOWN_REBOOT, SHUTDOWN_SOFT_RESET, SHUTDOWN_WATCHDOG,
                                    Domain)
from pyxl.toolstack import spawn, teardown
from pyxl.toolstack.errors import Fault

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from pyxl.config.model import ActionOnShutdown
    from pyxl.toolstack.hostd import HostState

# the config's key for each shutdown reason, and libxl's default when unset
# (libxl__domain_build_info_setdefault / xl_parse.c parse_config_data), by
# ActionOnShutdown's member name (pyxl.config.model is imported when a
# domain shuts down, not when the daemon starts)
_ON = {SHUTDOWN_POWEROFF: ("on_poweroff", "DESTROY"), SHUTDOWN_REBOOT: ("on_reboot", "RESTART"),
       SHUTDOWN_CRASH: ("on_crash", "DESTROY"), SHUTDOWN_WATCHDOG: ("on_watchdog", "DESTROY"),
       SHUTDOWN_SOFT_RESET: ("on_soft_reset", "SOFT_RESET")}


def reap_loop(st: HostState) -> None:
    """The reaper thread: a domain process that ends has shut down or
    crashed (Xen's VIRQ_DOM_EXC).  It sleeps until a pidfd or its wake
    pipe is readable, with no timer: every change to st.pidfds writes the
    pipe (spawn.spawn, persist.adopt, teardown.kill, and the
    daemon's stop), and died(), the only other change, runs here."""
    import selectors

    sel = selectors.DefaultSelector()       # epoll: hundreds of pidfds, no FD_SETSIZE limit
    sel.register(st.wake_r, selectors.EVENT_READ, None)
    watched: dict[int, int] = {}            # fd -> domid
    while not st.stopping:
        # under the lock: kill closes pidfds under it, and a number closed
        # between a copy and register() could already name another socket
        with st.lock:
            want = {fd: domid for domid, fd in st.pidfds.items()}
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
        for key, _ in sel.select():
            if key.fd == st.wake_r:
                try:
                    os.read(st.wake_r, 4096)
                except BlockingIOError:
                    pass
                continue
            sel.unregister(key.fd)
            watched.pop(key.fd, None)
            died(st, key.data, key.fd)


def reason_file(st: HostState, dom: Domain, default: int) -> int:
    """The reason the domain gave in SCHEDOP_shutdown (its status file)."""
    try:
        with open(st.paths.domain_status_file(dom.domid)) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def died(st: HostState, domid: int, fd: int) -> None:
    """The domain's process has ended: record why (its exit status, else
    its status file, else a crash), then act on it on a thread."""
    with st.lock:
        dom = st.table.domains.get(domid)
        mine = st.pidfds.get(domid) == fd and dom is not None and not dom.dying
    if mine:          # not being destroyed: a shutdown or a crash; let its output in
        st.drained(domid)
    with st.lock:
        if st.pidfds.get(domid) != fd:
            return          # destroyed meanwhile
        dom = st.table.domains.get(domid)
        st.pidfds.pop(domid)
        os.close(fd)
        proc = st.procs.pop(domid, None)
        if dom is None or dom.dying:
            return
        reason = SHUTDOWN_CRASH
        if proc is not None:
            rc = proc.wait()
            if EXIT_SHUTDOWN_BASE <= rc <= EXIT_SHUTDOWN_BASE + SHUTDOWN_SOFT_RESET:
                reason = rc - EXIT_SHUTDOWN_BASE
        else:
            reason = reason_file(st, dom, SHUTDOWN_CRASH)
        dom.cpu_time_done = dom.cpu_time()
        dom.pid = 0
        dom.paused = False
        dom.shutdown_reason = reason
        st.hv.domain_shutdown(domid)      # waits on a backend in it end now
        st.shutdown_events[domid] = reason
        if len(st.shutdown_events) > 4096:
            st.shutdown_events.pop(next(iter(st.shutdown_events)))
        try:
            st.hv.console(domid).close()     # console clients see the end
        except OSError:
            pass
        st.hypervisor_log("(XEN) domain %d (%s) shut down, reason %s"
                          % (domid, dom.name, REASON_NAMES.get(reason, reason)))
        st.monitor_log(dom, "Domain %d has shut down, reason code %d 0x%x"
                       % (domid, reason, reason))
        st.save()
        spawn.fault_point("shutdown:recorded")
        st.changed.notify_all()
    threading.Thread(target=act_on_shutdown, args=(st, domid), daemon=True).start()


def action(dom: Domain) -> ActionOnShutdown | None:
    """The on_* action for the reason a monitored domain shut down
    (None: suspended, or not monitored)."""
    from pyxl.config.model import ActionOnShutdown

    if not dom.monitored or dom.shutdown_reason is None:
        return None
    on = _ON.get(dom.shutdown_reason)
    if on is None:
        return None
    key, default = on
    name = dom.config.get(key)
    return (ActionOnShutdown.from_string(name) if isinstance(name, str) else None) \
        or ActionOnShutdown[default]


def acts(dom: Domain) -> bool:
    """Whether act_on_shutdown has something to do for the domain (an
    action other than preserve)."""
    from pyxl.config.model import ActionOnShutdown

    return action(dom) not in (None, ActionOnShutdown.PRESERVE)


def act_on_shutdown(st: HostState, domid: int) -> None:
    """handle_domain_death: what xl's monitor (xl create without -e) does
    when a domain shuts down; a restart is create_domain's `goto start`."""
    from pyxl.config.model import ActionOnShutdown

    with st.lock:
        dom = st.table.domains.get(domid)
        if dom is None or not dom.monitored or dom.shutdown_reason is None:
            return
        reason = dom.shutdown_reason
        act = action(dom)
        if act is None:   # suspend
            st.monitor_log(dom, "Domain has suspended.")
            return
        st.monitor_log(dom, "Action for shutdown reason code %d is %s"
                       % (reason, act.libxl_name))
        if act is ActionOnShutdown.PRESERVE:
            return
        restart = act in (ActionOnShutdown.RESTART, ActionOnShutdown.COREDUMP_RESTART,
                          ActionOnShutdown.SOFT_RESET, ActionOnShutdown.RESTART_RENAME)
        # what the restarted domain is made from (xl's reload_domain_config)
        config, config_file, config_text = dom.config, dom.config_file, dom.config_text
        if restart and dom.updated_config is not None:
            config, config_file, config_text = dom.updated_config
            dom.updated_config = None
            st.monitor_log(dom, '"xl" configuration found, using it\n')
        if act is ActionOnShutdown.RESTART_RENAME:
            # xl's preserve_domain: the old domain stays, shut down, under
            # a dated name and a new uuid; a new one takes the name
            preserve_renamed(st, dom)
        else:
            st.monitor_log(dom, "Domain %d needs to be cleaned up: destroying the domain"
                           % domid)
            teardown.destroy_locked(st, dom)
        if not restart:
            st.monitor_log(dom, "Done. Exiting now")
            return
        # xl_vmcontrol.c create_domain, DOMAIN_RESTART_NORMAL: then `goto start`,
        # whose create logs "Waiting for domain ..." for the new domain
        st.monitor_log(dom, "Done. Rebooting now")
    # the new domain is made outside the lock: create waits for device backends
    try:
        spawn.create(st, config, config_file, config_text, monitor=True)
    except Fault as f:
        st.monitor_log(dom, f.message)


def preserve_renamed(st: HostState, dom: Domain) -> None:
    """libxl_domain_preserve with xl's suffix "-%Y%m%dT%H%MZ" (UTC)."""
    suffix = time.strftime("-%Y%m%dT%H%MZ", time.gmtime())
    name = dom.config.get("c_info", {}).get("name", dom.name)
    st.monitor_log(dom, "Preserving domain %d %s with suffix%s" % (dom.domid, name, suffix))
    old_uuid, new_uuid = dom.uuid, str(uuidlib.uuid4())
    dom.name = name + suffix
    dom.uuid = new_uuid
    dom.monitored = False
    dom.config = json.loads(json.dumps(dom.config))     # the new domain keeps the original
    dom.config.setdefault("c_info", {})["name"] = dom.name
    dom.config["c_info"]["uuid"] = new_uuid
    try:
        st.xs.rm("/vm/%s" % old_uuid)
    except OSError:
        pass
    st.xs.write("/vm/%s/name" % new_uuid, dom.name)
    st.xs.write("/vm/%s/uuid" % new_uuid, new_uuid)
    st.xs.write("/local/domain/%d/vm" % dom.domid, "/vm/%s" % new_uuid)
    st.xs.write("/local/domain/%d/name" % dom.domid, dom.name)
    try:
        os.replace(st.paths.console_log(name), st.paths.console_log(dom.name))
    except OSError:
        pass
    st.save()
    st.changed.notify_all()


def wait_event(st: HostState, domid: int, timeout: float, until: str = "shutdown") -> dict:
    """Block until the domain has shut down or is gone (libxl's domain
    death events, as xl's monitor and `shutdown -w` wait for them)."""
    deadline = time.monotonic() + timeout
    with st.lock:
        while True:
            dom = st.table.domains.get(domid)
            if dom is None:
                # it shut down, then its monitor reaped it
                if until == "shutdown" and domid in st.shutdown_events:
                    return {"event": "shutdown", "reason": st.shutdown_events[domid]}
                return {"event": "destroyed"}
            if dom.shutdown_reason is not None and until == "shutdown":
                return {"event": "shutdown", "reason": dom.shutdown_reason}
            left = deadline - time.monotonic()
            if left <= 0:
                return {"event": "timeout"}
            st.changed.wait(left)     # every shutdown and destroy notifies
