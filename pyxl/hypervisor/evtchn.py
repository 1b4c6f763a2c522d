"""Event channels between domains (xen/common/event_channel.c, 2-level ABI).

A port is a per-domain number. The usual split-driver dance:
the frontend's toolstack-chosen peer calls `alloc_unbound(dom=self,
remote_dom=backend)` and publishes the port in xenstore; the backend calls
`bind_interdomain(remote_dom=frontend, remote_port=that port)` and gets its
own local port; from then on `send` on either end marks the other end pending
and wakes it (the `deliver` callback given to the table).

Xen's rules kept here: port 0 is reserved; only the domain named as
remote_dom of an unbound port may bind it; only a privileged caller may
allocate in another domain; closing one end of an interdomain channel leaves
the other end unbound (waiting for the same peer) rather than closed;
sending on an unbound port is silently dropped; bad ports are EINVAL,
unknown domains ESRCH, a full table ENOSPC.

Direct channels.  In Xen, EVTCHNOP_send (evtchn_send ->
evtchn_port_set_pending) marks the remote port pending and upcalls the
remote vCPU without any other domain running.  Here a send relayed by the
hypervisor process costs two extra wake-ups, so an interdomain channel
between two connected domains (not dom0, which is in-process) is given
its own socketpair when it is bound: one end goes to the binder in the
bind's reply, the other is pushed to the allocating domain
(`EVTCHN_BOUND`), and from then on each end notifies the other directly
(pyxl/domain/xen.py).  The hypervisor stays the authority on who may
bind, and keeps no descriptor of its own: a channel's socket reaches only
the two domains Xen would let signal each other through it, and once
either end closes the port (or its domain dies) the other end reads EOF
and falls back to asking the hypervisor, which then finds the port
unbound (dropped, as above) or bound anew.  Such a channel is marked
`direct` on both ends; a send relayed through the hypervisor on it is
answered "direct" (the sender's own socket carries it) rather than
delivered.
"""

from __future__ import annotations

import errno as _errno
import threading
from dataclasses import dataclass
from typing import Callable

DOMID_SELF = 0x7FF0

# evtchn_status_t.status (public/event_channel.h)
EVTCHNSTAT_closed = 0
EVTCHNSTAT_unbound = 1
EVTCHNSTAT_interdomain = 2

NR_EVENT_CHANNELS_2L = 4096   # 64-bit guests, 2-level ABI


class EvtchnError(OSError):
    def __init__(self, err: int, what: str = ""):
        super().__init__(err, _errno.errorcode.get(err, str(err)) + (f": {what}" if what else ""))
        self.name = _errno.errorcode.get(err, "EINVAL")


@dataclass
class _Port:
    state: int                 # EVTCHNSTAT_unbound / EVTCHNSTAT_interdomain
    remote_dom: int
    remote_port: int = 0
    direct: bool = False       # both ends hold the channel's socketpair


class EventChannels:
    """All domains' event channel tables. `deliver(domid, port)` is called
    (under the table lock, so it must not block) when `port` of `domid`
    becomes pending."""

    def __init__(self, deliver: Callable[[int, int], None] | None = None,
                 max_ports: int = NR_EVENT_CHANNELS_2L, privileged: set[int] | None = None):
        self.lock = threading.RLock()
        self._deliver = deliver or (lambda d, p: None)
        self._max = max_ports
        self._doms: dict[int, dict[int, _Port]] = {}
        self.privileged = privileged if privileged is not None else {0}

    # -- domains -------------------------------------------------------
    def add_domain(self, domid: int) -> None:
        with self.lock:
            self._doms.setdefault(domid, {})

    def remove_domain(self, domid: int) -> None:
        """evtchn_destroy: close every port, so peers see their ends unbound."""
        with self.lock:
            table = self._doms.get(domid)
            if table is None:
                return
            for port in list(table):
                self._close(domid, port)
            del self._doms[domid]

    def _table(self, domid: int) -> dict[int, _Port]:
        table = self._doms.get(domid)
        if table is None:
            raise EvtchnError(_errno.ESRCH, f"domain {domid}")
        return table

    def _port(self, domid: int, port: int) -> _Port:
        chn = self._table(domid).get(port)
        if chn is None:
            raise EvtchnError(_errno.EINVAL, f"port {port}")
        return chn

    def _free_port(self, table: dict[int, _Port]) -> int:
        for port in range(1, self._max):      # port 0 is reserved
            if port not in table:
                return port
        raise EvtchnError(_errno.ENOSPC, "no free event channel")

    # -- operations (caller = the domid making the hypercall) ----------
    def alloc_unbound(self, caller: int, dom: int, remote_dom: int) -> int:
        with self.lock:
            if dom == DOMID_SELF:
                dom = caller
            if remote_dom == DOMID_SELF:
                remote_dom = caller
            if dom != caller and caller not in self.privileged:
                raise EvtchnError(_errno.EPERM, "alloc_unbound in another domain")
            table = self._table(dom)
            port = self._free_port(table)
            table[port] = _Port(EVTCHNSTAT_unbound, remote_dom)
            return port

    def bind_interdomain(self, caller: int, remote_dom: int, remote_port: int) -> int:
        with self.lock:
            if remote_dom == DOMID_SELF:
                remote_dom = caller
            ltable = self._table(caller)
            rchn = self._port(remote_dom, remote_port)
            if rchn.state != EVTCHNSTAT_unbound or rchn.remote_dom != caller:
                raise EvtchnError(_errno.EINVAL, f"port {remote_port} of domain {remote_dom} "
                                  "is not waiting for this domain")
            lport = self._free_port(ltable)
            ltable[lport] = _Port(EVTCHNSTAT_interdomain, remote_dom, remote_port)
            rchn.state, rchn.remote_port = EVTCHNSTAT_interdomain, lport
            # Xen marks the new local port pending so no event is lost.
            self._deliver(caller, lport)
            return lport

    def set_direct(self, domid: int, port: int) -> None:
        """Mark the bound channel at `port` of `domid` (both ends) as
        carried by its own socketpair."""
        with self.lock:
            chn = self._port(domid, port)
            if chn.state != EVTCHNSTAT_interdomain:
                raise EvtchnError(_errno.EINVAL, f"port {port} is not bound")
            chn.direct = True
            self._port(chn.remote_dom, chn.remote_port).direct = True

    def send(self, caller: int, port: int) -> bool:
        """evtchn_send; False if the channel is direct: not delivered
        here, the caller's socket to its peer carries it."""
        with self.lock:
            chn = self._port(caller, port)
            if chn.state == EVTCHNSTAT_interdomain:
                if chn.direct:
                    return False
                self._deliver(chn.remote_dom, chn.remote_port)
            # unbound: dropped silently, as Xen does
            return True

    def close(self, caller: int, port: int) -> None:
        with self.lock:
            self._port(caller, port)
            self._close(caller, port)

    def _close(self, domid: int, port: int) -> None:
        chn = self._doms[domid].pop(port)
        if chn.state == EVTCHNSTAT_interdomain:
            peer = self._doms.get(chn.remote_dom, {}).get(chn.remote_port)
            if peer is not None:
                peer.state, peer.remote_dom, peer.remote_port = EVTCHNSTAT_unbound, domid, 0
                peer.direct = False

    def status(self, caller: int, dom: int, port: int) -> dict:
        """EVTCHNOP_status: {"status": closed|unbound|interdomain, "dom", "port"}."""
        with self.lock:
            if dom == DOMID_SELF:
                dom = caller
            if dom != caller and caller not in self.privileged:
                raise EvtchnError(_errno.EPERM, "status of another domain's port")
            table = self._table(dom)
            if port <= 0 or port >= self._max:
                raise EvtchnError(_errno.EINVAL, f"port {port}")
            chn = table.get(port)
            if chn is None:
                return {"status": "closed"}
            if chn.state == EVTCHNSTAT_unbound:
                return {"status": "unbound", "dom": chn.remote_dom}
            return {"status": "interdomain", "dom": chn.remote_dom, "port": chn.remote_port}

    def ports(self, domid: int) -> list[int]:
        with self.lock:
            return sorted(self._doms.get(domid, {}))
