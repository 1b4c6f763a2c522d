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


def _resumed_later(x, new_hv, domid: int, started):
    """A thread that resumes `x` on `new_hv` once `started` is set (the
    domain's xenbus-resume thread, in short)."""
    import threading

    def run():
        started.wait(10)
        x.no_wait(True)
        x.resume(new_hv.connect_domain(domid))
    t = threading.Thread(target=run)
    t.start()
    return t


def _blocked(thread, x) -> None:
    """Wait until `thread` waits for the resume (it sleeps on x's condition)."""
    import time

    deadline = time.monotonic() + 10
    while True:
        with x._cond:
            waiting = len(getattr(x._cond, "_waiters", ())) > 0
        if waiting or not thread.is_alive():
            return
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_request_made_during_a_break_waits_for_the_resume_and_goes_out():
    """As a request on Xen's xenstore ring waits for xenstored: a read made
    while the daemon is away is answered by the next one, in the thread
    that made it, with no error."""
    import threading

    old = _hv()
    x1 = XenInterface(old.connect_domain(1))
    x1.resumable = True
    old.close()
    x1.read_watch(1)                                   # notices the break
    assert x1.closed
    new = _hv()
    try:
        new.xs().write("/local/domain/1/name", "dom1")
        got = []
        t = threading.Thread(target=lambda: got.append(x1.read_str("name")))
        t.start()
        _blocked(t, x1)
        assert not got and t.is_alive()                # waiting, not failed
        go = threading.Event()
        r = _resumed_later(x1, new, 1, go)
        go.set()
        r.join(10)
        t.join(10)
        assert got == ["dom1"]
    finally:
        x1.close()
        new.close()


def test_a_transaction_across_a_break_ends_eagain_and_is_retried():
    """xenstored forgets a transaction with the connection: its requests
    fail EAGAIN, and transaction() starts it again on the new one."""
    import threading

    old = _hv()
    x1 = XenInterface(old.connect_domain(1))
    x1.resumable = True
    new = _hv()
    go = threading.Event()
    r = _resumed_later(x1, new, 1, go)
    tries = []

    def fn(tx):
        tries.append(tx)
        if len(tries) == 1:
            old.close()                                 # the daemon dies mid-transaction
            x1.read_watch(1)
            go.set()
        x1.write("data/k", "v%d" % len(tries), tx)
    try:
        x1.transaction(fn)
        r.join(10)
        assert len(tries) == 2
        assert new.xs().read("/local/domain/1/data/k") == b"v2"
    finally:
        x1.close()
        new.close()


def test_the_resuming_thread_is_never_made_to_wait_for_itself():
    """The thread that resumes (Domain.reconnect, whose handlers make calls)
    gets EPIPE on a break instead of waiting for a resume only it would do;
    and a closed object nobody resumes fails as before."""
    old = _hv()
    x1 = XenInterface(old.connect_domain(1))
    old.close()
    x1.read_watch(1)
    with pytest.raises(XenError) as e:                  # not resumable
        x1.read("name")
    assert e.value.name == "EPIPE"
    x1.resumable = True
    x1.no_wait(True)
    with pytest.raises(XenError) as e:
        x1.read("name")
    assert e.value.name == "EPIPE"
    x1.close()


class _Regs:
    """An MMIO device that answers each read with its width of 0xAB and
    records every access."""

    def __init__(self):
        self.accesses = []

    def read(self, offset, width, count=1):
        self.accesses.append(("r", offset))
        return b"\xab" * (width * count)

    def write(self, offset, width, data):
        self.accesses.append(("w", offset))


def test_a_register_access_bound_to_the_old_connection_fails_after_the_resume():
    """A driver in the middle of a register sequence (a TIS command) when
    the daemon is restarted: its accesses name the connection they belong
    to, and fail EPIPE on the resumed one instead of reaching the new
    hypervisor's device, whose state (the locality) is not theirs."""
    old, new = _hv(), _hv()
    regs_old, regs_new = _Regs(), _Regs()
    for h, regs in ((old, regs_old), (new, regs_new)):
        h.iomem.add_device(0xFED40000, 0x5000, regs)
        h.iomem.permit(1, 0xFED40, 1)
    x1 = XenInterface(old.connect_domain(1))
    try:
        gen = x1.generation
        assert x1.mmio_read(0xFED40000, 1, generation=gen) == b"\xab"
        x1.mmio_write(0xFED40018, b"\x40", generation=gen)
        assert regs_old.accesses == [("r", 0), ("w", 0x18)]
        old.close()
        x1.read_watch(1)                                   # notices the break
        x1.resume(new.connect_domain(1))
        for call in (lambda: x1.mmio_read(0xFED40024, 1, 4, generation=gen),
                     lambda: x1.mmio_write(0xFED40018, b"\x40", generation=gen)):
            with pytest.raises(XenError) as e:
                call()
            assert e.value.name == "EPIPE"
        assert regs_new.accesses == []
        assert x1.mmio_read(0xFED40000, 1, generation=x1.generation) == b"\xab"
        assert x1.mmio_read(0xFED40000) == b"\xab"         # unbound: the current connection
        assert regs_new.accesses == [("r", 0), ("r", 0)]
    finally:
        x1.close()
        new.close()
