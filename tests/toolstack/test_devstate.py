"""Device readiness is awaited with xenstore watches, as libxl does
(libxl__wait_device_connection / libxl__ev_devstate_wait, libxl_device.c
and libxl_event.c), not by polling: a waiter wakes on the write that makes
the state what it waits for, and on @releaseDomain when the backend's
domain shuts down or goes.  In-process, on the hypervisor's own xenstore;
time.sleep is made to fail so that a polling loop cannot pass."""

from __future__ import annotations

import threading
import time

import pytest

from pyxl.hypervisor.services import Hypervisor
from pyxl.toolstack import devices

BE = "/local/domain/0/backend/vtpm/1/0"


@pytest.fixture
def hv(monkeypatch):
    h = Hypervisor()
    h.domain_created(1, name="guest")
    h.domain_created(2, name="backend")

    def no_sleep(s):
        raise AssertionError("a device wait polled (time.sleep(%r))" % s)

    monkeypatch.setattr(devices.time, "sleep", no_sleep)
    yield h
    h.close()


def _when_watched(hv, path, then):
    """Run `then` on another thread once some connection watches `path`
    (the waiter has registered its watch)."""
    def run():
        store = hv.xenstore
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with store.lock:
                if any(w[0] == path for c in store._conns for w in c.watches):
                    break
            threading.Event().wait(0.001)
        then()
    t = threading.Thread(target=run)
    t.start()
    return t


def test_backend_state_wakes_the_waiter(hv):
    xs = hv.xs()
    xs.write(BE + "/state", str(devices.XenbusStateInitialising))
    t = _when_watched(hv, BE + "/state",
                      lambda: xs.write(BE + "/state", str(devices.XenbusStateInitWait)))
    t0 = time.monotonic()
    assert devices.wait_state(xs, BE, devices.XenbusStateInitWait, 30)
    assert time.monotonic() - t0 < 10
    t.join()
    # the waiter's connection and watches are gone with it
    assert not any(w[0] == BE + "/state" for c in hv.xenstore._conns for w in c.watches)


def test_a_state_already_reached_needs_no_event(hv):
    xs = hv.xs()
    xs.write(BE + "/state", str(devices.XenbusStateClosed))
    assert devices.wait_state(xs, BE, devices.XenbusStateClosed, 0)
    assert not devices.wait_state(xs, BE, devices.XenbusStateConnected, 0)


@pytest.mark.parametrize("end", ["shutdown", "destroyed"])
def test_the_backends_domain_ending_ends_the_wait(hv, end):
    """xenstored fires @releaseDomain when a domain shuts down
    (xenstored_domain.c domain_cleanup, XEN_DOMINF_shutdown) and when it
    goes: the waiter asks alive() again then, rather than at intervals."""
    xs = hv.xs()
    be = "/local/domain/2/backend/vtpm/1/0"
    xs.write(be + "/state", str(devices.XenbusStateInitialising))
    up = [True]

    def end_it():
        up[0] = False
        if end == "shutdown":
            hv.domain_shutdown(2)
        else:
            hv.domain_destroyed(2)

    t = _when_watched(hv, "@releaseDomain", end_it)
    t0 = time.monotonic()
    assert not devices.wait_state(xs, be, devices.XenbusStateInitWait, 30, alive=lambda: up[0])
    assert time.monotonic() - t0 < 10
    t.join()


def test_a_foreign_backend_removing_itself_ends_the_wait(hv):
    xs = hv.xs()
    be = "/local/domain/2/backend/vtpm/1"
    xs.write(be + "/0/state", str(devices.XenbusStateClosed))
    t = _when_watched(hv, be, lambda: xs.rm(be))
    assert devices.wait_backend_gone(xs, be, 30)
    t.join()


@pytest.mark.parametrize("state,up", [
    (devices.XenbusStateInitialising, False),
    (devices.XenbusStateInitWait, True),
    (devices.XenbusStateConnected, True),     # mini-os tpmback, its frontend Initialised
    (devices.XenbusStateClosing, False),
    (devices.XenbusStateClosed, False),       # tpmback.c: connect_fe failed
])
def test_a_vtpm_backend_found_past_initwait_has_come_up(hv, state, up):
    """Mini-os tpmback goes on from InitWait to Connected as soon as its
    frontend is Initialised (tpmback.c new_tpmif, frontend_changed):
    found there, it has come up, as at InitWait; not when it closed."""
    xs = hv.xs()
    xs.write(BE + "/state", str(state))
    assert devices.wait_vtpm_backend(xs, BE, 0) is up
