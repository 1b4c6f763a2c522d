"""The daemon's core operations: domains' lifecycle, listing, the host's
information, the vTPM devices, the hypervisor's console and the daemon
itself.  Each handler takes (daemon, args); `daemon.state` is the HostState."""

from __future__ import annotations

import os

from pyxl.fsutil import open_append
from pyxl.hypervisor import sched
from pyxl.toolstack import control, monitor, protocol, spawn, teardown, vtpm
from pyxl.toolstack.errors import Fault
from pyxl.toolstack.ops import Op, libxl_json
from pyxl.toolstack.resources import current_memkb, free_memory_kb

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from pyxl.toolstack.daemon import Daemon

_DEV_TIMEOUT = ("device_timeout",)


def _timeout(a: dict[str, Any]) -> dict[str, float]:
    t = a.get("device_timeout")
    return {"device_timeout": float(t)} if t is not None else {}


def _ping(d: Daemon, a: dict[str, Any]) -> Any:
    return {"pid": os.getpid()}


def _list(d: Daemon, a: dict[str, Any]) -> Any:
    st = d.state
    with st.lock:
        if a.get("dom") is not None:
            doms = [st.resolve(a["dom"])]
        else:
            doms = st.table.sorted()
        if a.get("rows"):      # `pyxl list`: just its columns, as compact rows
            pools = {p["poolid"]: p["name"] for p in sched.pools(st.host)}
            out = []
            for dom in doms:
                state, cpu = dom.snapshot()
                out.append([dom.domid, dom.name, current_memkb(st, dom) // 1024, dom.vcpus, state,
                            round(cpu, 3), dom.uuid, dom.shutdown_reason,
                            pools.get(dom.cpupool, "")])
            return out
        return [st.dominfo(dom, a.get("long", False)) for dom in doms]


def _info(d: Daemon, a: dict[str, Any]) -> Any:
    st = d.state
    with st.lock:
        return {"lines": st.host.info_lines(free_memory_kb(st))}


def _create(d: Daemon, a: dict[str, Any]) -> Any:
    """The request carries the libxl_domain_config JSON as the client
    rendered it (libxl_domain_config_to_json); it is parsed here, once."""
    return spawn.create(d.state, libxl_json("create", a["config"]), a.get("config_file", ""),
                        a.get("config_text", ""), paused=a.get("paused", False),
                        monitor=a.get("monitor", True), **_timeout(a))


def _destroy(d: Daemon, a: dict[str, Any]) -> Any:
    teardown.destroy(d.state, a["dom"], a.get("force", False))


def _shutdown(d: Daemon, a: dict[str, Any]) -> Any:
    return control.shutdown(d.state, a["dom"], a.get("reboot", False))


def _shutdown_all(d: Daemon, a: dict[str, Any]) -> Any:
    st = d.state
    with st.lock:
        ids = [dom.domid for dom in st.guests() if dom.shutdown_reason is None]
    for domid in ids:
        control.shutdown(st, str(domid), a.get("reboot", False))
    return ids


def _wait(d: Daemon, a: dict[str, Any]) -> Any:
    return monitor.wait_event(d.state, int(a["domid"]), float(a.get("timeout", 60)),
                              a.get("until", "shutdown"))


def _pause(d: Daemon, a: dict[str, Any]) -> Any:
    control.pause(d.state, a["dom"], True)


def _unpause(d: Daemon, a: dict[str, Any]) -> Any:
    control.pause(d.state, a["dom"], False)


def _rename(d: Daemon, a: dict[str, Any]) -> Any:
    control.rename(d.state, a["dom"], a["name"])


def _dmesg(d: Daemon, a: dict[str, Any]) -> Any:
    """xc_readconsolering: the hypervisor's console ring; -c clears it."""
    path = d.paths.hypervisor_log
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            data = f.read().decode(errors="replace")
    except FileNotFoundError:
        data = ""
    if a.get("clear"):
        fd = open_append(path)
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
    return data


def _vtpm_attach(d: Daemon, a: dict[str, Any]) -> Any:
    return vtpm.attach(d.state, a["dom"], a.get("uuid"), a.get("backend"), **_timeout(a))


def _vtpm_list(d: Daemon, a: dict[str, Any]) -> Any:
    return vtpm.list_(d.state, a["dom"])


def _vtpm_detach(d: Daemon, a: dict[str, Any]) -> Any:
    vtpm.detach(d.state, a["dom"], a["dev"], **_timeout(a))


def _console_history(d: Daemon, a: dict[str, Any]) -> Any:
    st = d.state
    with st.lock:
        dom = st.resolve(a["dom"])
    try:
        return st.hv.console(dom.domid).backlog.decode(errors="replace")
    except OSError:
        return ""


def _daemon_status(d: Daemon, a: dict[str, Any]) -> Any:
    st = d.state
    with st.lock:
        return {"pid": os.getpid(), "root": d.paths.root,
                "domains": len(st.guests()), "protocol": protocol.VERSION}


def _daemon_stop(d: Daemon, a: dict[str, Any]) -> Any:
    st = d.state
    with st.lock:
        n = len(st.guests())
        if n and not a.get("force"):
            raise Fault("DAEMON_BUSY", count=n)
        st.stopping = True
    d.request_stop(destroy_all=True)
    return {"pid": os.getpid()}


OPS: dict[str, Op] = {
    "ping": Op(_ping),
    "list": Op(_list, optional=("dom", "rows", "long")),
    "info": Op(_info),
    "create": Op(_create, ("config",),
                 ("config_file", "config_text", "paused", "monitor") + _DEV_TIMEOUT),
    "destroy": Op(_destroy, ("dom",), ("force",)),
    "shutdown": Op(_shutdown, ("dom",), ("reboot",)),
    "shutdown_all": Op(_shutdown_all, optional=("reboot",)),
    "wait": Op(_wait, ("domid",), ("timeout", "until")),
    "pause": Op(_pause, ("dom",)),
    "unpause": Op(_unpause, ("dom",)),
    "rename": Op(_rename, ("dom", "name")),
    "dmesg": Op(_dmesg, optional=("clear",)),
    "vtpm_attach": Op(_vtpm_attach, ("dom",), ("uuid", "backend") + _DEV_TIMEOUT),
    "vtpm_list": Op(_vtpm_list, ("dom",)),
    "vtpm_detach": Op(_vtpm_detach, ("dom", "dev"), _DEV_TIMEOUT),
    "console_history": Op(_console_history, ("dom",)),
    "daemon_status": Op(_daemon_status),
    "daemon_stop": Op(_daemon_stop, optional=("force",)),
}
