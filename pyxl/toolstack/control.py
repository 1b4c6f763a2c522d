"""libxl's calls that change a running domain's life without making or
destroying it (libxl_domain.c): libxl_domain_rename, libxl_domain_pause /
unpause, libxl_domain_shutdown / reboot.  Each function takes the
HostState (pyxl.toolstack.hostd) and holds its lock.
"""

from __future__ import annotations

import os
import signal

from pyxl.hypervisor.xenstore import payload_fits
from pyxl.toolstack import spawn
from pyxl.toolstack.errors import Fault

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from pyxl.toolstack.hostd import HostState


def rename(st: HostState, dom_q: str, new: str) -> None:
    """libxl_domain_rename: the name in xenstore (domain and /vm), the
    config and the console log follow."""
    spawn.check_name(new)
    with st.lock:
        dom = st.resolve(dom_q)
        other = st.table.by_name(new)
        if other is not None and other is not dom:
            raise Fault("RENAME_DUP", domid=dom.domid, name=new, dom=dom_q)
        if not payload_fits("/local/domain/%d/name" % dom.domid, new):
            raise Fault("RENAME_WRITE_FAILED", domid=dom.domid, name=new, old=dom.name,
                        dom=dom_q)
        old = dom.name
        dom.name = new
        st.xs.write("/local/domain/%d/name" % dom.domid, new)
        st.xs.write("/vm/%s/name" % dom.uuid, new)
        dom.config.setdefault("c_info", {})["name"] = new
        try:
            os.replace(st.paths.console_log(old), st.paths.console_log(new))
        except OSError:
            pass
        st.save()
        st.changed.notify_all()


def pause(st: HostState, dom_q: str, pause: bool) -> None:
    """libxl_domain_pause / libxl_domain_unpause: the domain's process
    stopped or continued."""
    with st.lock:
        dom = st.resolve(dom_q)
        if dom.is_dom0 or not dom.pid:
            return
        try:
            os.kill(dom.pid, signal.SIGSTOP if pause else signal.SIGCONT)
        except ProcessLookupError:
            return
        dom.paused = pause
        st.save()


def shutdown(st: HostState, dom_q: str, reboot: bool) -> int:
    """libxl_domain_shutdown/reboot: write control/shutdown for the PV guest."""
    with st.lock:
        dom = st.resolve(dom_q)
        if dom.shutdown_reason is not None:
            return dom.domid
        st.xs.write("/local/domain/%d/control/shutdown" % dom.domid,
                    "reboot" if reboot else "poweroff")
        return dom.domid
