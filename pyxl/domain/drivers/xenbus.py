"""xenbus state handling shared by frontends and backends
(xen/include/public/io/xenbus.h; Linux drivers/xen/xenbus)."""

from __future__ import annotations

import errno as _errno
import itertools
import time

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Iterable

    from pyxl.domain.xen import XenInterface

# enum xenbus_state
XenbusStateUnknown = 0
XenbusStateInitialising = 1
XenbusStateInitWait = 2
XenbusStateInitialised = 3
XenbusStateConnected = 4
XenbusStateClosing = 5
XenbusStateClosed = 6
XenbusStateReconfiguring = 7
XenbusStateReconfigured = 8

STATE_NAMES = {
    0: "Unknown", 1: "Initialising", 2: "InitWait", 3: "Initialised",
    4: "Connected", 5: "Closing", 6: "Closed", 7: "Reconfiguring", 8: "Reconfigured",
}

_tokens = itertools.count(1)


def read_state(xen: XenInterface, path: str) -> int:
    """The state under `path`/state; Unknown when missing or unreadable (a
    vanished other end reads as Unknown, as xenbus_read_driver_state does)."""
    try:
        raw = xen.read(f"{path}/state")
    except OSError as e:
        if e.errno in (_errno.ENOENT, _errno.EACCES):
            return XenbusStateUnknown
        raise
    try:
        return int(raw)
    except ValueError:
        return XenbusStateUnknown


def switch_state(xen: XenInterface, path: str, state: int) -> None:
    """xenbus_switch_state: write our state unless it is already that."""
    if read_state(xen, path) == state:
        return
    xen.write(f"{path}/state", str(int(state)))


def wait_for_state(xen: XenInterface, other_end: str, states: int | Iterable[int],
                   timeout: float | None = None) -> int | None:
    """Watch `other_end`/state until it is one of `states`; returns the state
    seen, or None on timeout. Uses its own watch token, so concurrent waiters
    in one domain do not steal each other's events."""
    want = {states} if isinstance(states, int) else set(states)
    token = f"xenbus-wait-{next(_tokens)}"
    path = f"{other_end}/state"
    xen.watch(path, token)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            state = read_state(xen, other_end)
            if state in want:
                return state
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            xen.read_watch(left, token=token)
    finally:
        try:
            xen.unwatch(path, token)
        except OSError:
            pass
