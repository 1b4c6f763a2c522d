"""Destroying a domain on the simulated host: what libxl_domain.c does for
libxl_domain_destroy (libxl__destroy_domid: the domain killed, its devices'
xenstore directories removed -- a backend in another domain given
LIBXL_DESTROY_TIMEOUT to remove its own -- and the domain released).
Each function takes the HostState (pyxl.toolstack.hostd) and is called
under its lock.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading

from pyxl.hypervisor.domain import Domain
from pyxl.toolstack import devices
from pyxl.toolstack.errors import Fault

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from pyxl.toolstack.hostd import HostState


def destroy(st: HostState, dom_q: str, force: bool = False) -> None:
    """libxl_domain_destroy (xl destroy)."""
    with st.lock:
        dom = st.resolve(dom_q, missing_id="DESTROY_FAILED")
        if dom.is_dom0:
            raise Fault("DESTROY_DOM0")
        destroy_locked(st, dom)


def destroy_locked(st: HostState, dom: Domain) -> None:
    """libxl__destroy_domid, the host's lock held."""
    if dom.domid not in st.table.domains:
        return
    dom.dying = True
    kill(st, dom)
    teardown(st, dom)
    st.hypervisor_log("(XEN) domain %d (%s) destroyed" % (dom.domid, dom.name))


def kill(st: HostState, dom: Domain) -> None:
    """XEN_DOMCTL_destroydomain's end of the domain: its process killed and
    waited for (on its pidfd when it is not our child: an adopted one)."""
    proc = st.procs.pop(dom.domid, None)
    fd = st.pidfds.pop(dom.domid, None)
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
    st.wake()


def teardown(st: HostState, dom: Domain, save: bool = True) -> None:
    """devices_destroy_cb and libxl__destroy_domid's end: the domain's
    xenstore directories and its devices' removed, the domain released
    in every service and taken out of the table."""
    try:
        os.unlink(st.paths.domain_status_file(dom.domid))
    except FileNotFoundError:
        pass
    for _, fd in st.disk_fds.pop(dom.domid, []):
        os.close(fd)
    paths = devices.domain_paths(st.xs, dom.domid, dom.uuid)
    # out of the table first: a wait on a backend in it, woken by the
    # @releaseDomain that domain_destroyed fires, finds it gone
    st.table.domains.pop(dom.domid, None)
    st.hv.domain_destroyed(dom.domid)
    # Backends in dom0 are ours to remove now.  A backend in another
    # domain (tpmback in a vtpm-stubdom) removes its own directory once
    # the frontend is gone, as it does on Xen while libxl waits for it;
    # removing it under its feet would make it fail its own cleanup.
    foreign = [p for p in paths if (be := devices.backend_domid_of(p)) is not None
               and be not in (0, dom.domid) and _backend_alive(st, be)]
    devices.remove_paths(st.xs, [p for p in paths if p not in foreign])
    if foreign:
        threading.Thread(target=_remove_foreign_backends, args=(st, foreign),
                         name="backend-cleanup", daemon=True).start()
    if save:
        st.save()
    st.changed.notify_all()


def _backend_alive(st: HostState, domid: int) -> bool:
    d = st.table.domains.get(domid)
    return d is not None and d.pid != 0


def _remove_foreign_backends(st: HostState, paths: list[str]) -> None:
    for p in paths:
        be = devices.backend_domid_of(p)
        devices.wait_backend_gone(st.xs, p, devices.DESTROY_TIMEOUT,
                                  alive=lambda be=be: be is not None and _backend_alive(st, be))
        devices.remove_paths(st.xs, [p])
