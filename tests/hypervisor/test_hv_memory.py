"""XENMEM_{increase,decrease}_reservation as a balloon driver uses them, and
XEN_DOMCTL_max_mem: growth stops at max_pages (xen/common/memory.c
increase_reservation: domain_adjust_tot_pages fails past d->max_pages),
shrinking always succeeds, and lowering the maximum takes nothing away."""

from __future__ import annotations

import pytest

from pyxl.domain.xen import XenInterface
from pyxl.hypervisor.services import Hypervisor


@pytest.fixture
def hv():
    h = Hypervisor()
    h.domain_created(1, name="dom1")
    yield h
    h.close()


def test_the_reservation_follows_the_balloon_up_to_max_mem(hv):
    x = XenInterface(hv.connect_domain(1))
    try:
        assert hv.memory_kb(1) is None                  # as built
        assert x.memory_reservation(65536) == 65536
        hv.set_max_mem(1, 32768)
        assert hv.memory_kb(1) == 65536                 # a lower max takes nothing away
        assert x.memory_reservation(131072) == 65536    # nor lets it grow
        assert x.memory_reservation(16384) == 16384     # shrinking always succeeds
        assert x.memory_reservation(65536) == 32768     # growing stops at the max
        assert hv.memory_kb(1) == 32768
    finally:
        x.close()
    with pytest.raises(OSError):
        hv.set_max_mem(7, 1024)                          # no such domain: ESRCH
