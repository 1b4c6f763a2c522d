"""Hypervisor + XenInterface over real sockets (domains as threads here; the
integration test runs them as processes)."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from pyxl.domain.xen import XenError, XenInterface
from pyxl.hypervisor import wire
from pyxl.hypervisor.services import EVENT_QUEUE_LIMIT, Hypervisor
from pyxl.hypervisor.xenstore import QueueSink, Quotas
from waiting import until


@pytest.fixture
def hv():
    disconnected = []
    h = Hypervisor(on_disconnect=disconnected.append)
    h.disconnected = disconnected
    for d in (1, 2, 3):
        h.domain_created(d, name=f"dom{d}")
    yield h
    h.close()


def xen(hv, domid):
    return XenInterface(hv.connect_domain(domid))


def fails(fn, *a, **kw) -> str:
    with pytest.raises(XenError) as ei:
        fn(*a, **kw)
    return ei.value.name


def test_domid_comes_from_the_socket_and_home_is_libxl_like(hv):
    x1, x2 = xen(hv, 1), xen(hv, 2)
    assert (x1.domid, x2.domid) == (1, 2)
    assert x1.read("name") == b"dom1"
    assert x1.get_perms(x1.home) == ["n0", "r1"]
    assert x1.get_perms("data") == ["n1"]
    x1.write("data/x", "1")
    assert fails(x1.write, "name", "evil") == "EACCES"
    assert fails(x2.read, "/local/domain/1/data/x") == "EACCES"
    assert fails(x2.write, "/local/domain/1/data/y", "1") == "EACCES"
    assert fails(x1.read, "data/missing") == "ENOENT"


def test_watches_are_pushed_with_relative_paths(hv):
    x1 = xen(hv, 1)
    dom0 = hv.xs()
    x1.watch("data", "tok")
    assert x1.read_watch(2) == ("data", "tok")
    dom0.write("/local/domain/1/data/k", "v")
    assert x1.read_watch(2) == ("data/k", "tok")
    assert x1.read_watch(0.05) is None
    x1.unwatch("data", "tok")
    assert fails(x1.unwatch, "data", "tok") == "ENOENT"


def test_transactions_over_the_wire_conflict_and_retry(hv):
    x1 = xen(hv, 1)
    dom0 = hv.xs()
    x1.write("data/n", "0")
    tx = x1.transaction_start()
    assert x1.read("data/n", tx) == b"0"
    dom0.write("/local/domain/1/data/n", "5")
    x1.write("data/n", "1", tx)
    assert fails(x1.transaction_end, tx) == "EAGAIN"
    assert x1.read("data/n") == b"5"
    tries = []

    def bump(tx):
        v = int(x1.read("data/n", tx))
        if not tries:
            dom0.write("/local/domain/1/data/n", str(v + 10))   # first attempt loses
        tries.append(v)
        x1.write("data/n", str(v + 1), tx)
    x1.transaction(bump)
    assert len(tries) == 2 and x1.read("data/n") == b"16"
    assert fails(x1.read, "data/n", 12345) == "ENOENT"


def test_event_channels_over_the_wire(hv):
    x1, x2 = xen(hv, 1), xen(hv, 2)
    p1 = x1.evtchn_alloc_unbound(2)
    assert fails(xen(hv, 3).evtchn_bind_interdomain, 1, p1) == "EINVAL"
    p2 = x2.evtchn_bind_interdomain(1, p1)
    assert x2.evtchn_wait(p2, 1) == p2         # pending set by the bind
    assert x2.evtchn_wait(p2, 0.05) is None
    for _ in range(5):
        x1.evtchn_notify(p1)
    assert x2.evtchn_wait(p2, 1) == p2         # notifications coalesce
    x2.evtchn_notify(p2)
    assert x1.evtchn_wait(timeout=1) == p1
    assert x1.evtchn_status(p1) == {"status": "interdomain", "dom": 2, "port": p2}
    x2.evtchn_close(p2)
    assert x1.evtchn_status(p1) == {"status": "unbound", "dom": 2}
    assert fails(x1.evtchn_alloc_unbound, 2, dom=2) == "EPERM"
    x1.evtchn_notify(p1)                         # unbound now: dropped, as Xen does
    assert fails(x1.evtchn_notify, 77) == "EINVAL"   # not ours: the checked call
    x1.evtchn_close(p1)
    assert fails(x1.evtchn_notify, p1) == "EINVAL"


def test_grants_share_memory_only_with_the_named_domain(hv):
    x1, x2, x3 = xen(hv, 1), xen(hv, 2), xen(hv, 3)
    page = x1.alloc_page()
    page.buf[0:4] = b"ping"
    ref = x1.grant_access(page, 2)
    assert fails(x3.map_grant, 1, ref) == "EPERM"
    m = x2.map_grant(1, ref)
    assert bytes(m.buf[0:4]) == b"ping"
    m.buf[4:8] = b"pong"
    assert bytes(page.buf[4:8]) == b"pong"
    assert fails(x1.end_access, ref) == "EBUSY"
    x2.unmap_grant(m)
    x1.end_access(ref)
    assert fails(x2.map_grant, 1, ref) == "EINVAL"


def test_read_only_grant_maps_read_only(hv):
    x1, x2 = xen(hv, 1), xen(hv, 2)
    page = x1.alloc_page()
    ref = x1.grant_access(page, 2, readonly=True)
    assert fails(x2.map_grant, 1, ref) == "EPERM"
    m = x2.map_grant(1, ref, readonly=True)
    page.buf[0] = 42
    assert m.buf[0] == 42
    with pytest.raises(TypeError):
        m.buf[0] = 1
    assert m.mmap.closed is False
    with pytest.raises(TypeError):
        m.mmap.write(b"x")


def test_console_output_input_and_log(hv, tmp_path):
    log = tmp_path / "guest-dom4.log"
    hv.domain_created(4, console_log=str(log))
    x4 = xen(hv, 4)
    x4.console_write("hello from 4\n")
    reader = None
    deadline = time.monotonic() + 2
    while hv.console(4).backlog != b"hello from 4\n" and time.monotonic() < deadline:
        time.sleep(0.01)
    reader = hv.console(4).attach()
    assert reader.read(1) == b"hello from 4\n"
    reader.write(b"root\n")
    assert x4.console_read(2) == b"root\n"
    assert log.read_bytes() == b"hello from 4\n"


def test_domain_destroyed_cleans_up_everywhere(hv):
    x1, x2 = xen(hv, 1), xen(hv, 2)
    sink = QueueSink()
    dom0 = hv.xs(sink)
    dom0.watch("@releaseDomain", "rel")
    sink.wait(1)
    p1 = x1.evtchn_alloc_unbound(2)
    p2 = x2.evtchn_bind_interdomain(1, p1)
    page = x1.alloc_page()
    ref = x1.grant_access(page, 2)
    page2 = x2.alloc_page()
    ref2 = x2.grant_access(page2, 1)
    x1.map_grant(2, ref2)
    hv.domain_destroyed(1)
    assert sink.wait(2) == ("@releaseDomain", "rel")
    assert x2.evtchn_status(p2) == {"status": "unbound", "dom": 1}
    assert fails(x2.map_grant, 1, ref) == "ESRCH"
    x2.end_access(ref2)                          # domain 1's mapping was released
    with pytest.raises(OSError) as ei:
        dom0.read("/local/domain/1")
    assert ei.value.errno == errno.ENOENT
    assert fails(x1.read, "name") == "EPIPE"            # the socket was shut down
    assert x1.closed
    assert hv.domains() == [0, 2, 3]
    assert hv.disconnected == []                 # destroy is not a disconnect


def test_hostile_frames_drop_only_that_connection(hv):
    sock = hv.connect_domain(3)
    x1 = xen(hv, 1)
    sock.send(b"\x00\x01junk")
    deadline = time.monotonic() + 2
    while 3 not in hv.disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hv.disconnected == [3]
    assert x1.read("name") == b"dom1"
    sock.close()


def test_unknown_operation_and_version_mismatch(hv):
    x1 = xen(hv, 1)
    assert fails(x1._call, 0x7777) == "ENOSYS"
    assert fails(x1._call, wire.HELLO, [99], fds=[x1.console_page.fd]) == "EPROTO"
    with pytest.raises(OSError):
        hv.connect_domain(42)


def test_a_domain_that_never_reads_cannot_stall_the_daemon(hv):
    sock = hv.connect_domain(3)          # raw: registers a watch, never reads
    wire.Channel(sock).send(wire.Frame(wire.XS_WATCH, ["data", "t"], req_id=1))
    dom0 = hv.xs()
    x1 = xen(hv, 1)
    start = time.monotonic()
    for i in range(3000):
        dom0.write(f"/local/domain/3/data/n{i}", "x" * 1000)
    assert time.monotonic() - start < 10
    assert hv._domains[3].conn._events <= EVENT_QUEUE_LIMIT    # bounded, rest dropped
    t0 = time.monotonic()
    assert x1.read("name") == b"dom1"
    assert time.monotonic() - t0 < 1
    sock.close()


def test_a_console_flood_does_not_delay_other_domains(hv):
    x1, x2 = xen(hv, 1), xen(hv, 2)
    stop = threading.Event()

    def flood():
        chunk = b"y" * 60000
        while not stop.is_set():
            x1.console_write(chunk)
    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 2
        while len(hv.console(1).backlog) < 60000 and time.monotonic() < deadline:
            time.sleep(0.005)
        worst = 0.0
        for _ in range(50):
            t0 = time.monotonic()
            x2.read("name")
            worst = max(worst, time.monotonic() - t0)
        assert worst < 1.0
        assert len(hv.console(1).backlog) <= 64 * 1024
    finally:
        stop.set()
        t.join(5)


def test_node_quota_holds_over_the_wire():
    h = Hypervisor(quotas=Quotas(nodes=20))
    try:
        h.domain_created(5)
        x5 = XenInterface(h.connect_domain(5))
        with pytest.raises(XenError) as ei:
            for i in range(100):
                x5.write(f"data/n{i}", "x")
        assert ei.value.errno == errno.ENOSPC
    finally:
        h.close()


def test_a_request_flood_does_not_starve_other_domains(hv):
    x1, x2 = xen(hv, 1), xen(hv, 2)
    stop = threading.Event()
    count = [0]

    def hammer():
        while not stop.is_set():
            try:
                x1.write("data/spam", "x" * 100)
            except XenError:
                return
            count[0] += 1
    t = threading.Thread(target=hammer, daemon=True)
    t.start()
    try:
        worst = 0.0
        for _ in range(50):
            t0 = time.monotonic()
            x2.read("name")
            worst = max(worst, time.monotonic() - t0)
        assert count[0] > 0 and worst < 1.0
    finally:
        stop.set()
        t.join(5)


def test_a_dead_domain_process_loses_its_watches_not_its_resources(hv):
    x1 = xen(hv, 1)
    x1.watch("data", "t")
    port = x1.evtchn_alloc_unbound(2)
    x1.close()
    deadline = time.monotonic() + 2
    while 1 not in hv.disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hv.disconnected == [1]
    assert all(c.domid != 1 or not c.watches for c in hv.xenstore._conns)
    assert hv.evtchn.status(0, 1, port) == {"status": "unbound", "dom": 2}   # kept until destroy
    x1b = xen(hv, 1)                                # a new connection for the same domain
    assert x1b.read("name") == b"dom1"


def test_serve_on_a_stream_socket_like_the_toolstack_does(hv):
    """hv.serve(sock, domid) in a thread of the daemon, a plain
    socket.socketpair() (SOCK_STREAM), XenInterface(sock, domid) in the domain."""
    import socket
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=hv.serve, args=(ours, 2), daemon=True)
    t.start()
    x2 = XenInterface(theirs, 2)
    x1 = xen(hv, 1)
    page = x1.alloc_page()
    page.buf[0:3] = b"abc"
    m = x2.map_grant(1, x1.grant_access(page, 2))        # descriptor over a stream
    assert bytes(m.buf[0:3]) == b"abc"
    x2.console_write(b"s" * 200000)                       # several chunks, one stream
    deadline = time.monotonic() + 5
    while len(hv.console(2).backlog) < 64 * 1024 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hv.console(2).backlog == b"s" * (64 * 1024)  # bounded: the newest 64 KiB
    x2.watch("data", "w")
    assert x2.read_watch(2) == ("data", "w")
    hv.domain_destroyed(2)
    t.join(5)
    assert not t.is_alive()                               # serve returns when the domain goes


def test_a_domain_cannot_claim_another_domid(hv):
    with pytest.raises(XenError) as ei:
        XenInterface(hv.connect_domain(1), 2)
    assert ei.value.name == "EPROTO"


def test_many_threads_of_one_domain_share_its_interface(hv):
    """Leader/follower reading: callers, a watch waiter and an event-channel
    waiter in one domain all get what is theirs, with nobody left hanging."""
    x1, x2 = xen(hv, 1), xen(hv, 2)
    p1 = x1.evtchn_alloc_unbound(2)
    p2 = x2.evtchn_bind_interdomain(1, p1)
    x1.watch("data/w", "w")
    assert x1.read_watch(2, token="w") == ("data/w", "w")
    errors, got_events, got_watches = [], [], []

    def caller(i):
        try:
            for j in range(100):
                x1.write(f"data/t{i}", str(j))
                assert x1.read(f"data/t{i}") == str(j).encode()
        except Exception as e:         # pragma: no cover - reported below
            errors.append(e)

    def evwaiter():
        while len(got_events) < 20:
            if x1.evtchn_wait(p1, 5) is None:
                return
            got_events.append(1)

    def watcher():
        while len(got_watches) < 20:
            ev = x1.read_watch(5, token="w")
            if ev is None:
                return
            got_watches.append(ev)
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(6)]
    threads += [threading.Thread(target=evwaiter), threading.Thread(target=watcher)]
    for t in threads:
        t.start()
    dom0 = hv.xs()
    for k in range(20):
        x2.evtchn_notify(p2)
        dom0.write(f"/local/domain/1/data/w/{k}", "x")
        while len(got_events) <= k or len(got_watches) <= k:
            time.sleep(0.001)
            if not any(t.is_alive() for t in threads[6:]):
                break
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(got_events) == 20 and len(got_watches) == 20


def test_an_event_channel_wait_leaves_a_parked_watcher_reading(hv):
    """A thread parked on a watch (a stub domain's shutdown watcher) that is
    reading the socket is left alone when a driver waits for its port: the
    notification comes on the channel's own socket, so no frame is read
    on the round trip and the watcher is not kicked out of its poll; it
    still gets its events."""
    x1, x2 = xen(hv, 1), xen(hv, 2)
    p1 = x1.evtchn_alloc_unbound(2)
    p2 = x2.evtchn_bind_interdomain(1, p1)
    x1.watch("data/w", "w")
    assert x1.read_watch(2, token="w") == ("data/w", "w")
    readers = []
    recv = x1.chan.recv

    def recording_recv():
        frame = recv()
        readers.append((threading.current_thread().name, frame.op if frame else None))
        return frame
    x1.chan.recv = recording_recv
    watched = []
    watcher = threading.Thread(target=lambda: watched.append(x1.read_watch(10, token="w")),
                               name="watcher")
    watcher.start()
    deadline = time.monotonic() + 10
    while not x1._reading and time.monotonic() < deadline:   # the watcher is in its poll
        time.sleep(0.001)
    assert x1._reading
    for _ in range(3):
        x2.evtchn_notify(p2)
        assert x1.evtchn_wait(p1, 10) == p1
        x1.evtchn_notify(p1)
        assert x2.evtchn_wait(p2, 10) == p2
    assert readers == []                       # nothing came through the hypervisor's socket
    assert x1._reading and not x1._reader_first      # the watcher was never kicked out
    hv.xs().write("/local/domain/1/data/w/k", "x")         # the watcher reads on
    watcher.join(10)
    assert watched == [("data/w/k", "w")]
    assert readers == [("watcher", wire.XS_WATCH_EVENT)]


def test_notifications_go_from_domain_to_domain(hv):
    """Once bound, a channel's notifications are not relayed by the
    hypervisor process (as in Xen, where evtchn_send sets the remote
    port pending with no other domain running): no EVTCHN_SEND is
    dispatched and no EVTCHN_EVENT pushed on a round trip."""
    x1, x2 = xen(hv, 1), xen(hv, 2)
    ops = []
    dispatch = hv._dispatch

    def counting(conn, frame):
        ops.append(frame.op)
        return dispatch(conn, frame)
    hv._dispatch = counting
    p1 = x1.evtchn_alloc_unbound(2)
    p2 = x2.evtchn_bind_interdomain(1, p1)
    assert x2.evtchn_wait(p2, 1) == p2         # pending set by the bind
    # the allocating end has not read its socket since the bind: its
    # first send asks the hypervisor, whose answer follows the socket
    # it pushed at the bind
    x1.evtchn_notify(p1)
    assert x2.evtchn_wait(p2, 5) == p2
    assert ops.count(wire.EVTCHN_SEND) <= 1
    events = []
    for x in (x1, x2):
        recv = x.chan.recv

        def recording_recv(recv=recv):
            frame = recv()
            events.append(frame.op if frame else None)
            return frame
        x.chan.recv = recording_recv
    del ops[:]
    for _ in range(50):
        x1.evtchn_notify(p1)
        assert x2.evtchn_wait(p2, 5) == p2
        x2.evtchn_notify(p2)
        assert x1.evtchn_wait(p1, 5) == p1
    assert ops == [] and events == []
    # a notification already there is taken without waiting (a driver
    # drops a stale one before it submits)
    x1.evtchn_notify(p1)
    assert x2.evtchn_wait(p2, timeout=0) == p2
    assert x2.evtchn_wait(p2, timeout=0) is None
    # ... or dropped by evtchn_clear, which leaves a later one alone
    for _ in range(3):
        x1.evtchn_notify(p1)
    x2.evtchn_clear(p2)
    assert x2.evtchn_wait(p2, timeout=0) is None
    x2.evtchn_clear(p2)                        # nothing pending: nothing happens
    x1.evtchn_notify(p1)
    assert x2.evtchn_wait(p2, 5) == p2
    assert ops == [] and events == []


def _raises_sigpipe(fn) -> bool:
    """Whether fn() raised SIGPIPE.  Python ignores it, but a domain
    process (pyxl.domain.process) runs with its default action, death;
    blocked meanwhile, the kernel keeps it pending instead of dropping it."""
    import signal
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        fn()
        raised = signal.SIGPIPE in signal.sigpending()
        if raised:
            signal.sigwait({signal.SIGPIPE})
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return raised


def test_a_direct_channel_closed_or_bound_again_keeps_xen_semantics(hv):
    """evtchn_close of one end leaves the other unbound: its sends are
    dropped, even on the socket it still holds; the same remote may bind
    the port again, and the sender's next notification reaches the new
    port (the old socket reads EOF, the hypervisor hands out a new one).
    A destroyed peer: dropped too."""
    x1, x2 = xen(hv, 1), xen(hv, 2)
    p1 = x1.evtchn_alloc_unbound(2)
    p2 = x2.evtchn_bind_interdomain(1, p1)
    assert x2.evtchn_wait(p2, 1) == p2
    x1.evtchn_notify(p1)
    assert x2.evtchn_wait(p2, 2) == p2
    x2.evtchn_close(p2)
    assert x1.evtchn_status(p1) == {"status": "unbound", "dom": 2}
    # unbound: dropped -- and the send on the socket whose peer is gone
    # fails quietly, without SIGPIPE (which ends a domain process)
    assert not _raises_sigpipe(lambda: x1.evtchn_notify(p1))
    x1.evtchn_notify(p1)
    assert x2.evtchn_wait(timeout=0.1) is None
    q2 = x2.evtchn_bind_interdomain(1, p1)      # bound again, maybe to the same number
    assert x2.evtchn_wait(q2, 1) == q2         # pending set by the bind
    x1.evtchn_notify(p1)
    assert x2.evtchn_wait(q2, 2) == q2
    x2.evtchn_notify(q2)
    assert x1.evtchn_wait(p1, 2) == p1
    assert p1 in x1._direct and q2 in x2._direct
    # a channel's socket does not leak into a program the domain runs
    # (the guest's shell starts tcsd and the tools)
    assert not os.get_inheritable(x1._direct[p1].sock.fileno())
    assert not os.get_inheritable(x2._direct[q2].sock.fileno())
    hv.domain_destroyed(2)
    x1.evtchn_notify(p1)                       # the peer is gone: dropped, no error
    assert x1.evtchn_status(p1) == {"status": "unbound", "dom": 2}
    assert x1.evtchn_wait(p1, 0.1) is None


def _waiting_on(x, port):
    """A thread waiting for `port` of `x`, and the list its answer goes in;
    returned once the thread waits on the port's own socket."""
    got = []
    t = threading.Thread(target=lambda: got.append(x.evtchn_wait(port)), daemon=True)
    t.start()
    until(lambda: port in x._direct and x._direct[port].users or not t.is_alive(),
          what="the wait on the port's socket", interval=0.001)
    assert t.is_alive()
    return t, got


def test_a_wait_on_a_channel_alone_is_ended_by_what_ends_the_channel(hv):
    """A wait for one port with a socket of its own (every wait of a
    command's round trip), with no timeout here, watches that socket
    alone, not the hypervisor's.  What ends the channel ends the wait:
    the peer closing its end (the wait goes on through the hypervisor and
    gets the notification sent once the port is bound again) and the
    connection closing (None).  Notifications pending meanwhile coalesce
    into one however many there are."""
    x1, x2 = xen(hv, 1), xen(hv, 2)
    p1 = x1.evtchn_alloc_unbound(2)
    p2 = x2.evtchn_bind_interdomain(1, p1)
    assert x2.evtchn_wait(p2, 1) == p2         # pending set by the bind
    x2.evtchn_notify(p2)
    assert x1.evtchn_wait(p1, 5) == p1         # (the first send asks the hypervisor)
    # more notifications than one recv takes: one wake-up, none left
    for _ in range(1000):
        x2.evtchn_notify(p2)
    assert x1.evtchn_wait(p1) == p1
    assert x1.evtchn_wait(p1, timeout=0) is None
    # the peer closes its end under the wait, then binds the port again
    waiter, got = _waiting_on(x1, p1)
    x2.evtchn_close(p2)
    # the wait read EOF: through the hypervisor from now on
    until(lambda: p1 not in x1._direct, what="the socket dropped", interval=0.001)
    assert waiter.is_alive() and got == []
    q2 = x2.evtchn_bind_interdomain(1, p1)
    x2.evtchn_notify(q2)
    waiter.join(10)
    assert got == [p1]
    # the connection closes under the wait
    assert x1.evtchn_wait(p1, timeout=0) is None
    waiter, got = _waiting_on(x1, p1)
    x1.close()
    waiter.join(10)
    assert got == [None]
    x2.close()
