"""Asking a PV guest to suspend, as libxl does for `xl save`, `xl migrate`
and `xl remus` (libxl_dom_suspend.c domain_suspend_callback_common, through
the xenbus control node: no guest here offers a suspend event channel,
device/suspend/event-channel).

The request is control/shutdown = "suspend"; libxl waits 60 s for the guest
to acknowledge it (libxl_domain.c libxl__domain_pvcontrol) and, if it does
not, cancels the request in a transaction that re-reads the node first, so
an acknowledgement at the last minute still counts
(domain_suspend_common_pvcontrol_suspending).  An acknowledged request is
followed by a wait of another 60 s for the domain to shut down with reason
suspend (domain_suspend_common_wait_guest)."""

from __future__ import annotations

import errno
import time

from pyxl.hypervisor.xenstore import QueueSink
from pyxl.toolstack import monitor

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from pyxl.hypervisor.xenstore import XsConnection
    from pyxl.toolstack.hostd import HostState

# libxl_dom_suspend.c and libxl_domain.c: 60*1000 ms, for the acknowledgement
# and again for the shutdown
SUSPEND_TIMEOUT = 60.0


def _acked(state: bytes | None) -> bool:
    """domain_suspend_pvcontrol_acked: any value but "suspend", absence included."""
    return state != b"suspend"


def _read(xs: XsConnection, path: str, tx: int = 0) -> bytes | None:
    try:
        return bytes(xs.read(path, tx))
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise


def domain_suspend(st: HostState, domid: int, timeout: float = SUSPEND_TIMEOUT) -> dict:
    """The guest-facing half of libxl__domain_suspend for a PV domain.
    -> {"responded": False} when the request was cancelled (libxl then
    logs "guest didn't acknowledge suspend, cancelling request"); else
    {"responded": True, "event": "shutdown" (with its "reason"),
    "destroyed" or "timeout"}.  No domain of the simulated host shuts down
    for a suspend (SHUTDOWN_suspend): that would take its memory image."""
    path = "/local/domain/%d/control/shutdown" % domid
    sink = QueueSink()
    xs = st.hv.xs(sink)
    try:
        xs.watch(path, "pvcontrol")             # libxl__xswait_start
        xs.write(path, b"suspend")              # libxl__domain_pvcontrol
        deadline = time.monotonic() + timeout
        while not _acked(_read(xs, path)):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sink.wait(left)
        else:
            return _wait_guest(st, domid, timeout)
        while True:                             # the cancel transaction
            tx = xs.transaction_start()
            if _acked(_read(xs, path, tx)):     # last minute ack
                xs.transaction_end(tx, False)
                return _wait_guest(st, domid, timeout)
            xs.write(path, b"", tx)
            try:
                xs.transaction_end(tx, True)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    continue
                raise
            return {"responded": False}
    finally:
        xs.close()


def _wait_guest(st: HostState, domid: int, timeout: float) -> dict:
    """domain_suspend_common_wait_guest: the domain's shutdown (whatever its
    reason), its destruction, or libxl's timeout."""
    ev = monitor.wait_event(st, domid, timeout, "shutdown")
    return {"responded": True, "event": ev["event"], "reason": ev.get("reason")}
