"""Connection lifecycle under churn: descriptors are never closed under a
live thread (a reused fd number would let a dead connection's reader eat the
next domain's HELLO), and every HELLO gets its answer while domains come
and go around it."""

from __future__ import annotations

import itertools
import os
import random
import select
import socket
import threading
import time

from pyxl.domain.xen import Page
from pyxl.hypervisor import wire, xencons
from pyxl.hypervisor.services import Hypervisor
from waiting import until

PAGE = Page()          # the console ring page every raw HELLO here hands over


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _hello(sock, timeout: float) -> wire.Frame | None:
    """Send HELLO on the domain's end; the reply, or None if none came in time."""
    chan = wire.Channel(sock)
    chan.send(wire.Frame(wire.HELLO, [wire.WIRE_VERSION], req_id=7, fds=[PAGE.fd]))
    p = select.poll()
    p.register(sock.fileno(), select.POLLIN)
    if not p.poll(int(timeout * 1000)):
        return None
    return chan.recv()


def _hello_with(sock, page) -> wire.Frame:
    chan = wire.Channel(sock)
    chan.send(wire.Frame(wire.HELLO, [wire.WIRE_VERSION], req_id=7, fds=[page.fd]))
    return chan.recv()


def test_a_closed_connection_keeps_its_fd_while_a_thread_may_use_it():
    hv = Hypervisor()
    hv.domain_created(1)
    theirs = hv.connect_domain(1)
    conn = hv._domains[1].conn
    fd = conn.sock.fileno()
    with hv.xenstore.lock:               # the reader gets stuck inside a request
        wire.Channel(theirs).send(wire.Frame(wire.XS_READ, ["/local"], req_id=1))
        # the reader has taken the request off the socket: it now waits for our lock
        until(lambda: not select.select([conn.sock], [], [], 0)[0], 5)
        conn.close()
        conn.join(0.05)                  # a daemon that gave up waiting for it
        assert conn._reader.is_alive()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # the next domain's socket must not get the number the reader still uses
        assert fd not in (a.fileno(), b.fileno())
        os.fstat(fd)
    until(lambda: not conn._reader.is_alive() and not conn._writer.is_alive())
    until(lambda: conn.sock.fileno() == -1)   # the last thread closed it
    for s in (a, b, theirs):
        s.close()
    hv.close()


def test_a_connection_closed_before_its_threads_start_closes_its_fd():
    hv = Hypervisor()
    hv.domain_created(1)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    from pyxl.hypervisor.services import DomainConnection
    conn = DomainConnection(hv, ours, 1)
    conn.close()
    conn.start()                         # destroyed while being attached: no threads
    assert not conn._reader.is_alive() and ours.fileno() == -1
    assert theirs.recv(16) == b""        # the domain sees the end
    theirs.close()
    hv.close()


def test_hello_is_always_answered_while_domains_come_and_go():
    """Many domains connect at once while others crash mid-HELLO, are
    destroyed mid-HELLO, reconnect (attach replaces a connection) and while
    the daemon gives up joining their threads; every domain still alive gets
    its HELLO answered with its own domid, and no descriptor leaks."""
    hv = Hypervisor()
    base_fds = _open_fds()
    domids = itertools.count(1)
    failures: list[str] = []
    answered = [0]
    lock = threading.Lock()
    stop = time.monotonic() + 3.0

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        while time.monotonic() < stop and not failures:
            domid = next(domids)
            hv.domain_created(domid, home=rnd.random() < 0.3)
            theirs = hv.connect_domain(domid)
            fate = rnd.choice(["live", "live", "live", "crash", "destroy", "reattach",
                               "giveup"])
            try:
                if fate == "crash":          # dies before its HELLO is answered
                    wire.Channel(theirs).send(
                        wire.Frame(wire.HELLO, [wire.WIRE_VERSION], req_id=7, fds=[PAGE.fd]))
                    theirs.close()
                elif fate == "destroy":      # destroyed while its HELLO is in flight
                    wire.Channel(theirs).send(
                        wire.Frame(wire.HELLO, [wire.WIRE_VERSION], req_id=7, fds=[PAGE.fd]))
                    hv.domain_destroyed(domid)
                    continue
                elif fate == "giveup":       # the daemon stops waiting for the threads
                    conn = hv._domains[domid].conn
                    conn.close()
                    conn.join(0)
                    theirs.close()
                else:
                    if fate == "reattach":   # the old connection goes, a new one serves
                        theirs.close()
                        ours, theirs = socket.socketpair(socket.AF_UNIX,
                                                         socket.SOCK_SEQPACKET)
                        hv.attach(ours, domid)
                    reply = _hello(theirs, 5.0)
                    if reply is None:
                        failures.append(f"domain {domid} ({fate}): HELLO never answered")
                    elif reply.op != wire.HELLO or reply.req_id != 7 \
                            or int(reply.args[1]) != domid:
                        failures.append(f"domain {domid} ({fate}): wrong reply {reply!r}")
                    else:
                        with lock:
                            answered[0] += 1
                    theirs.close()
                hv.domain_destroyed(domid)
            finally:
                theirs.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures, failures[:5]
    assert answered[0] > 50, answered
    hv.close()
    # every connection's socket is closed once its threads are done
    until(lambda: _open_fds() <= base_fds, 5, "the fds to be closed")


def test_a_bug_in_a_service_is_answered_eio_and_the_connection_lives():
    from pyxl.domain.xen import XenError, XenInterface
    hv = Hypervisor()
    hv.domain_created(1)
    x = XenInterface(hv.connect_domain(1))

    def broken(*a):
        raise KeyError("oops")
    hv.evtchn.status = broken
    try:
        x.evtchn_status(1)
    except XenError as e:
        assert e.name == "EIO" and "oops" in str(e)
    else:
        raise AssertionError("no error")
    assert x.read("/local/domain/1/domid") == b"1"     # still served
    hv.close()


def test_a_reply_too_big_for_the_wire_is_e2big_not_a_dead_writer():
    from pyxl.domain.xen import XenError, XenInterface
    hv = Hypervisor()
    hv.domain_created(1)
    dom0 = hv.xs()
    dom0.mkdir("/big")
    dom0.set_perms("/big", ["n0", "r1"])
    tx = dom0.transaction_start()
    for i in range(2000):                 # ~90 kB of names: more than one frame
        dom0.mkdir(f"/big/a-rather-long-child-name-for-the-listing-{i:05d}", tx)
    dom0.transaction_end(tx, True)
    x = XenInterface(hv.connect_domain(1))
    try:
        x.directory("/big")
    except XenError as e:
        assert e.name == "E2BIG"          # xenstored: a directory over the payload limit
    else:
        raise AssertionError("no error")
    assert x.read("/local/domain/1/domid") == b"1"
    hv.close()


def test_wait_disconnected_means_the_last_output_is_in_the_log(tmp_path):
    hv = Hypervisor()
    log = tmp_path / "guest-a.log"
    hv.domain_created(1, console_log=str(log))
    theirs = hv.connect_domain(1)
    chan = wire.Channel(theirs)
    page = Page()
    assert _hello_with(theirs, page).op == wire.HELLO
    with hv.xenstore.lock:          # the hypervisor is stuck on the first request
        chan.send(wire.Frame(wire.XS_READ, ["/local"], req_id=1))
        for i in range(200):        # 1690 bytes: the ring holds them all
            line = b"line %d\n" % i
            assert xencons.write_out(page.buf, line) == len(line)
            chan.send(wire.Frame(wire.CONSOLE_KICK, [b"0"], flags=wire.FLAG_ONEWAY))
        theirs.close()              # the domain process exits
        assert not hv.wait_disconnected(1, 0.05)
        assert not log.read_bytes()
    assert hv.wait_disconnected(1, 5)
    assert log.read_bytes().endswith(b"line 199\n")
    hv.close()
