"""Event channel rules: who may bind, notification, close, status."""

from __future__ import annotations

import pytest

from pyxl.hypervisor.evtchn import DOMID_SELF, EventChannels, EvtchnError


@pytest.fixture
def ev():
    got: list[tuple[int, int]] = []
    table = EventChannels(lambda d, p: got.append((d, p)), max_ports=8)
    for d in (0, 1, 2, 3):
        table.add_domain(d)
    return table, got


def name(fn, *a):
    with pytest.raises(EvtchnError) as ei:
        fn(*a)
    return ei.value.name


def test_bind_and_notify_both_ways(ev):
    table, got = ev
    fport = table.alloc_unbound(1, DOMID_SELF, 2)
    assert fport >= 1                                  # port 0 is reserved
    assert table.status(1, 1, fport) == {"status": "unbound", "dom": 2}
    bport = table.bind_interdomain(2, 1, fport)
    assert got == [(2, bport)]                         # Xen sets the new port pending
    got.clear()
    assert table.status(2, DOMID_SELF, bport) == {"status": "interdomain", "dom": 1, "port": fport}
    table.send(1, fport)
    table.send(2, bport)
    assert got == [(2, bport), (1, fport)]


def test_only_the_named_remote_may_bind(ev):
    table, _ = ev
    port = table.alloc_unbound(1, 1, 2)
    assert name(table.bind_interdomain, 3, 1, port) == "EINVAL"
    table.bind_interdomain(2, 1, port)
    assert name(table.bind_interdomain, 2, 1, port) == "EINVAL"   # already bound
    assert name(table.bind_interdomain, 2, 1, 7) == "EINVAL"
    assert name(table.bind_interdomain, 2, 9, 1) == "ESRCH"


def test_alloc_in_another_domain_needs_privilege(ev):
    table, _ = ev
    assert name(table.alloc_unbound, 1, 2, 0) == "EPERM"
    port = table.alloc_unbound(0, 2, 1)                # dom0 may (libxl does this)
    assert table.status(0, 2, port) == {"status": "unbound", "dom": 1}
    assert name(table.status, 1, 2, port) == "EPERM"


def test_close_leaves_peer_unbound_and_rebindable(ev):
    table, got = ev
    fport = table.alloc_unbound(1, 1, 2)
    bport = table.bind_interdomain(2, 1, fport)
    table.close(2, bport)
    assert table.status(1, 1, fport) == {"status": "unbound", "dom": 2}
    assert table.status(2, 2, bport) == {"status": "closed"}
    got.clear()
    table.send(1, fport)                               # unbound: dropped silently
    assert got == []
    assert name(table.send, 2, bport) == "EINVAL"
    assert name(table.close, 2, bport) == "EINVAL"
    table.bind_interdomain(2, 1, fport)


def test_ports_are_per_domain_and_bounded(ev):
    table, _ = ev
    a = [table.alloc_unbound(1, 1, 2) for _ in range(7)]
    assert a == [1, 2, 3, 4, 5, 6, 7]
    assert table.alloc_unbound(2, 2, 1) == 1           # another domain's table
    assert name(table.alloc_unbound, 1, 1, 2) == "ENOSPC"


def test_domain_destroy_unbinds_peers(ev):
    table, _ = ev
    fport = table.alloc_unbound(1, 1, 2)
    table.bind_interdomain(2, 1, fport)
    table.remove_domain(2)
    assert table.status(1, 1, fport) == {"status": "unbound", "dom": 2}
    assert name(table.alloc_unbound, 2, 2, 1) == "ESRCH"
