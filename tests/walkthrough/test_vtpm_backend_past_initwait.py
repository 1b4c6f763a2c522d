"""A vTPM's backend, mini-os tpmback in a stub domain, does not stay in
InitWait (as Linux's blkback and netback do until their hotplug script
has run): it connects as soon as its frontend is Initialised
(tpmback.c new_tpmif, then frontend_changed, connect_fe).  When the
frontend is Initialised already as the device is added -- a guest with
xen-tpmfront loaded, given a device by vtpm-attach; a stub domain,
whose tpmfront starts at once, created with its vtpm -- the backend goes
from InitWait on to Connected at once, and the toolstack, waiting for
the backend to come up (libxl__wait_device_connection), may read its
state only after that.  Here the toolstack is held at that instant
(PYXL_TEST_FAULT_AT=file:, hold:vtpm-backend-connected,
pyxl/hypervisor/testfault.py) that a loaded host gives at random (seen
as about one in three runs of the TPM 2.0 rounds of
test_vtpm_chain_crash.py failing their re-attach): the device is added
and works, not taken away again as a backend that never came up."""

from __future__ import annotations

import pytest
from test_daemon_restart_vtpm import _wait_connected
from test_vtpm_chain_crash import UUID
from test_vtpm_reattach import _attach, _detach, _pubek
from test_walkthrough_e2e import host  # noqa: F401  (the fixture)

HOLD = "hold:vtpm-backend-connected"


def _armable(h):
    """The fault point's file, empty (nothing armed yet); the daemon,
    started by the next command, reads it at the point."""
    armed = h.dir / "fault-at"
    armed.write_text("")
    h.env["PYXL_TEST_FAULT_AT"] = "file:%s" % armed
    return armed


@pytest.mark.slow
def test_attach_to_a_guest_whose_frontend_is_initialised(host):  # noqa: F811
    h = host
    armed = _armable(h)
    h.guide_chain("vtpm.cfg")
    h.guest("modprobe xen-tpmfront")
    pubek = _pubek(h)
    h.wait_console("vtpmmgr", "Saved hash and key for vtpm %s" % UUID)
    _detach(h)                          # its vTPM, whose frontend went, ends
    h.wait_gone("domu-vtpm")
    h.create_vtpm("vtpm.cfg")
    vtpm = int(h.domains()["domu-vtpm"][0])

    armed.write_text(HOLD)
    _attach(h, "backend=domu-vtpm")     # the guest's xen-tpmfront binds it at once
    armed.write_text("")
    _wait_connected(h, vtpm)
    assert _pubek(h) == pubek           # the state it saved, through the new device


@pytest.mark.slow
def test_create_of_a_stub_domain_whose_frontend_starts_at_once(host):  # noqa: F811
    h = host
    armed = _armable(h)
    (h.dir / "mgr.img").write_bytes(bytes(16 << 20))
    (h.dir / "vtpm.img").write_bytes(bytes(8 << 20))
    h.create_manager()

    armed.write_text(HOLD)
    h.create_vtpm("vtpm.cfg")           # its tpmfront, to the manager, at once
    armed.write_text("")
    # its frontend connected to the manager (vtpm-list: backend, state)
    rows = h.run("vtpm-list", "domu-vtpm").stdout.splitlines()[1:]
    assert [r.split()[1] + " " + r.split()[4] for r in rows] == \
        ["%s 4" % h.domains()["vtpmmgr"][0]], rows
