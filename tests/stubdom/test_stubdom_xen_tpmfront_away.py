"""The Linux guest's xen-tpmfront (pyxl/domain/drivers/xen_tpmfront.py)
while the daemon is away and no next one comes, in this process on the
fake hypervisor of test_stubdom_tpmback_kept: a command sent then waits
for the next daemon up to the command's duration, as one in flight does,
and then fails as Linux's vtpm_send fails when its wait for the ring runs
out: ETIME (drivers/char/tpm/xen-tpmfront.c, vtpm_send: -ETIME after
wait_for_tpm_stat), not at once with ENODEV."""

from __future__ import annotations

import errno

import pytest
from test_stubdom_tpmback_kept import FakeXen

from pyxl.domain.drivers import xenbus
from pyxl.domain.drivers.xen_tpmfront import TpmDeviceError, XenTpmFront
from pyxl.domain.xen import Page

NODE = "device/vtpm/0"
PCRREAD = bytes.fromhex("00c10000000e00000015" "0000000a")


class FrontXen(FakeXen):
    """The frontend domain's side: pages to grant, unbound channels."""

    def alloc_page(self) -> Page:
        return Page()

    def grant_access(self, page: Page, domid: int) -> int:
        return 1

    def evtchn_alloc_unbound(self, domid: int) -> int:
        return 1

    def transaction(self, fn) -> None:
        fn(0)

    def write(self, path: str, value: str, tx: int = 0) -> None:
        super().write(path, value)


@pytest.fixture
def front():
    xen = FrontXen()
    xen.write(NODE + "/backend", "/local/domain/2/backend/vtpm/1/0")
    xen.write(NODE + "/backend-id", "2")
    f = XenTpmFront(xen, NODE)          # type: ignore[arg-type]
    xen.write(NODE + "/state", str(xenbus.XenbusStateConnected))     # as if the backend connected
    assert f.wait_connected(1)
    yield xen, f
    f.registered = False               # ends its watch thread
    f._thread.join(2)
    if f.page is not None:
        f.page.close()


def test_a_command_sent_while_the_daemon_is_away_waits_then_fails_etime(front):
    xen, f = front
    f.duration = 0.3                   # (the longest TPM 1.2 duration, 120 s, in the guest)
    xen.closed = True                  # the daemon was killed; no next one comes
    assert f.away()
    with pytest.raises(TpmDeviceError) as e:
        f.transmit(PCRREAD)
    assert e.value.errno == errno.ETIME
