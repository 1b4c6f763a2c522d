"""XenInterface.resume: a domain's connection carried over to a new
hypervisor in place (what a restarted daemon gives adopted domains), as
Linux's xs_resume does after a restore: watches registered again, every
event channel and pending event of the old hypervisor forgotten."""

from __future__ import annotations

import pytest

from pyxl.domain.xen import XenError, XenInterface
from pyxl.hypervisor.services import Hypervisor


def _hv():
    h = Hypervisor(on_disconnect=lambda d: None)
    for d in (1, 2):
        h.domain_created(d, name="dom%d" % d)
    return h


def test_resume_keeps_the_object_and_its_watches_and_forgets_ports():
    old = _hv()
    x1 = XenInterface(old.connect_domain(1))
    x2 = XenInterface(old.connect_domain(2))
    x1.watch("data", "tok")
    assert x1.read_watch(2) == ("data", "tok")
    port = x1.evtchn_alloc_unbound(2)
    x2.evtchn_bind_interdomain(1, port)
    with pytest.raises(XenError) as e:
        x1.resume(None)
    assert e.value.name == "EBUSY"                    # only a broken connection is replaced
    x1.unwatch("data", "tok")
    x1.watch("data", "tok")
    x1.read_watch(2)
    assert port in x1._direct                         # the channel's socket, pushed at the bind
    old.close()                                       # the daemon is gone
    assert x1.read_watch(2) is None and x1.closed
    with pytest.raises(XenError):
        x1.write("data/x", "1")

    new = _hv()
    try:
        gen = x1.generation
        x1.resume(new.connect_domain(1))
        assert not x1.closed and x1.generation == gen + 1 and x1.domid == 1
        # the remembered watch is registered again and fires once, as on registration
        assert x1.read_watch(2) == ("data", "tok")
        new.xs().write("/local/domain/1/data/k", "v")
        assert x1.read_watch(2) == ("data/k", "tok")
        # the old port (and its socket to the peer) is gone with the old
        # hypervisor; new ones work
        assert x1._direct == {}
        y2 = XenInterface(new.connect_domain(2))
        p1 = x1.evtchn_alloc_unbound(2)
        p2 = y2.evtchn_bind_interdomain(1, p1)
        x1.evtchn_notify(p1)
        assert y2.evtchn_wait(p2, timeout=2) == p2
        # a connection that claims to be another domain is refused
        x1.close()
        with pytest.raises(XenError) as e:
            x1.resume(new.connect_domain(2))
        assert e.value.name == "EPROTO"
        y2.close()
    finally:
        x2.close()
        new.close()
