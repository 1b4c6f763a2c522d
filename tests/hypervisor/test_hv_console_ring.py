"""The console as Xen's ring page (struct xencons_interface,
xen/include/public/io/console.h): output stays on the domain's page until
the console daemon has taken it, so a daemon that goes away loses none of
it; the daemon reads the page as the domain's to scribble on."""

from __future__ import annotations

import fcntl
import os
import struct
import time

import pytest

from pyxl.domain.xen import CONSOLE_PENDING_MAX, Page, XenError, XenInterface
from pyxl.hypervisor import wire, xencons
from pyxl.hypervisor.services import Hypervisor
from waiting import until

OUT_CONS, OUT_PROD = 3080, 3084          # offsetof(struct xencons_interface, out_cons/out_prod)


def _hv(tmp_path, tag: str) -> Hypervisor:
    hv = Hypervisor(on_disconnect=lambda d: None)
    hv.domain_created(1, name="dom1", console_log=str(tmp_path / ("guest-%s.log" % tag)))
    return hv


def _gone(old: Hypervisor, x: XenInterface) -> None:
    """The daemon goes away; the domain sees its connection break."""
    old.close()
    assert x.read_watch(5) is None and x.closed


def test_the_layout_is_xencons_interface():
    """The offsets of console.h's struct, on x86 (little-endian uint32_t
    indices after in[1024] and out[2048])."""
    assert (xencons.OUT_OFF, xencons.OUT_SIZE) == (1024, 2048)
    assert (xencons.OUT_CONS, xencons.OUT_PROD) == (1024 + 2048 + 8, 1024 + 2048 + 12)
    page = memoryview(bytearray(4096))
    assert xencons.write_out(page, b"abc") == 3
    assert struct.unpack_from("<4I", page, 3072) == (0, 0, 0, 3)
    assert bytes(page[1024:1027]) == b"abc"


def test_output_written_while_the_daemon_is_away_is_taken_once_before_newer(tmp_path):
    old = _hv(tmp_path, "old")
    x = XenInterface(old.connect_domain(1))
    x.console_write(b"before\n")
    until(lambda: old.console(1).backlog == b"before\n")     # taken: out_cons moved past it
    _gone(old, x)
    x.console_write(b"while away\n")                         # on the page, no daemon to kick
    new = _hv(tmp_path, "new")
    try:
        x.resume(new.connect_domain(1))
        x.console_write(b"after\n")
        log = tmp_path / "guest-new.log"
        until(lambda: log.read_bytes().endswith(b"after\n"))
        assert log.read_bytes() == b"while away\nafter\n"
        assert (tmp_path / "guest-old.log").read_bytes() == b"before\n"
    finally:
        x.close()
        new.close()


def test_a_full_ring_with_no_daemon_keeps_the_newest_output_for_the_next(tmp_path):
    """The ring fills while no daemon listens: the writer carries on (it
    never waits), what the ring has no room for waits in front of it,
    bounded to the newest CONSOLE_PENDING_MAX bytes, and the next daemon
    gets the ring's bytes, then those, in order and once."""
    old = _hv(tmp_path, "old")
    x = XenInterface(old.connect_domain(1))
    _gone(old, x)
    data = b"".join(b"line %05d\n" % i for i in range(8000))          # 88000 bytes
    t0 = time.monotonic()
    for i in range(0, len(data), 1000):
        x.console_write(data[i:i + 1000])
    assert time.monotonic() - t0 < 5                   # it returned: nobody waited for room
    dropped = len(data) - xencons.OUT_SIZE - CONSOLE_PENDING_MAX
    assert x.console_dropped == dropped
    new = _hv(tmp_path, "new")
    try:
        x.resume(new.connect_domain(1))
        log = tmp_path / "guest-new.log"
        until(lambda: log.read_bytes().endswith(b"line 07999\n"))
        assert log.read_bytes() == data[:xencons.OUT_SIZE] + data[-CONSOLE_PENDING_MAX:]
        x.console_write(b"and on\n")                   # the ring works on, with room told
        until(lambda: log.read_bytes().endswith(b"and on\n"))
    finally:
        x.close()
        new.close()


def test_a_slow_daemon_tells_the_domain_when_there_is_room(tmp_path):
    """More than the ring holds at once, with a daemon: everything arrives,
    moved on each time the daemon says the ring has room; with more than
    CONSOLE_PENDING_MAX at once the writer waits for room rather than let
    any go."""
    hv = _hv(tmp_path, "a")
    x = XenInterface(hv.connect_domain(1))
    try:
        data = bytes(range(256)) * 200                                 # 51200 bytes
        x.console_write(data)
        log = tmp_path / "guest-a.log"
        until(lambda: len(log.read_bytes()) >= len(data))
        assert log.read_bytes() == data and x.console_dropped == 0
        until(lambda: x._console_waiter is None)    # its thread ends, not left parked
        big = bytes(range(251)) * 1000                                 # 251000 bytes
        x.console_write(big)
        assert len(x._console_pending) <= CONSOLE_PENDING_MAX
        until(lambda: len(log.read_bytes()) >= len(data + big))
        assert log.read_bytes() == data + big and x.console_dropped == 0
    finally:
        x.close()
        hv.close()


def test_a_domain_that_ends_flushes_its_console_first(tmp_path):
    """console_flush (Domain.shutdown, Domain.crash): nothing waits in front
    of the ring once it returns, and what is on the ring when the
    connection ends is taken then (the domain's last words)."""
    hv = _hv(tmp_path, "f")
    x = XenInterface(hv.connect_domain(1))
    data = b"".join(b"last %05d\n" % i for i in range(3000))           # 33000 bytes
    x.console_write(data)
    x.console_flush(10)
    assert not x._console_pending
    x.close()                                        # the process ends
    log = tmp_path / "guest-f.log"
    until(lambda: log.read_bytes().endswith(b"last 02999\n"))
    assert log.read_bytes() == data
    hv.close()


def test_hostile_indices_are_read_as_xenconsoled_reads_them(tmp_path):
    """The domain's page says anything: a ring claiming more than it holds is
    not read; one claiming exactly a ring's worth, at indices near 2**32, is
    read masked into out[] (a ring's worth, never a byte beyond); the
    daemon answers the domain's next request either way."""
    hv = _hv(tmp_path, "h")
    x = XenInterface(hv.connect_domain(1))
    log = tmp_path / "guest-h.log"
    page = x.console_page.buf
    try:
        kick = wire.Frame(wire.CONSOLE_KICK, [b"1"], flags=wire.FLAG_ONEWAY)
        for cons, prod in ((0, 0x80000000), (5, 2), (0xFFFFFFFF, 2048)):
            struct.pack_into("<II", page, OUT_CONS, cons, prod)
            with x._lock:
                x.chan.send(kick)
            assert x.read("name") == b"dom1"                      # kick handled, daemon on
            assert struct.unpack_from("<II", page, OUT_CONS) == (cons, prod)   # left as it is
        assert log.read_bytes() == b""
        # a full ring whose indices wrap: out[2047] first, then out[0..2046]
        page[1024:3072] = bytes(i % 251 for i in range(2048))
        struct.pack_into("<II", page, OUT_CONS, 0xFFFFF7FF, 0xFFFFFFFF)
        with x._lock:
            x.chan.send(kick)
        assert x.read("name") == b"dom1"
        ring = bytes(i % 251 for i in range(2048))
        assert log.read_bytes() == ring[2047:] + ring[:2047]
        assert struct.unpack_from("<II", page, OUT_CONS) == (0xFFFFFFFF, 0xFFFFFFFF)
        x.console_write(b"sane again\n")                          # wraps past 2**32
        until(lambda: log.read_bytes().endswith(b"sane again\n"))
    finally:
        x.close()
        hv.close()


def test_a_domain_cannot_hand_over_a_page_that_would_fault_or_block_the_daemon(tmp_path):
    """HELLO's page is the domain's choice: one that could shrink under the
    daemon's mapping (an unsealed memfd), a pipe, a file of another size or
    a page the daemon cannot write are refused, and the daemon carries on."""
    hv = _hv(tmp_path, "p")
    x = XenInterface(hv.connect_domain(1))
    unsealed = os.memfd_create("page")
    os.ftruncate(unsealed, 4096)
    r, w = os.pipe()
    big = os.memfd_create("page", os.MFD_ALLOW_SEALING)
    os.ftruncate(big, 8192)
    fcntl.fcntl(big, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    other = Page()
    readonly = os.open("/proc/self/fd/%d" % other.fd, os.O_RDONLY)
    try:
        for fd in (unsealed, r, big, readonly):
            with pytest.raises(XenError) as e:
                x._call(wire.HELLO, [wire.WIRE_VERSION], fds=[fd])
            assert e.value.name in ("EINVAL", "EACCES"), (fd, e.value)
        assert x.read("name") == b"dom1"
        x.console_write(b"still mine\n")          # the page it first handed over stays
        until(lambda: (tmp_path / "guest-p.log").read_bytes() == b"still mine\n")
    finally:
        for fd in (unsealed, r, w, big, readonly):
            os.close(fd)
        other.close()
        x.close()
        hv.close()


IN_CONS, IN_PROD = 3072, 3076            # offsetof(struct xencons_interface, in_cons/in_prod)


def test_input_on_the_ring_is_read_once_after_the_daemon_is_killed(tmp_path):
    """Input the daemon put on in[] is the domain's: a daemon killed before
    the domain read it -- even one killed between its in_prod store and its
    notification (the lost notification stood in for by a sink that drops
    it) -- loses none of it; the domain reads it once, in order, after the
    resume, and what the new daemon sends after it."""
    old = _hv(tmp_path, "old")
    x = XenInterface(old.connect_domain(1))
    new = None
    try:
        typer = old.console(1).attach()
        typer.write(b"first\n")                                  # notified
        old.console(1).set_input_sink(lambda waiting: None)    # the next notification is lost
        typer.write(b"second\n")
        assert struct.unpack_from("<II", x.console_page.buf, IN_CONS) == (0, 13)
        _gone(old, x)
        new = _hv(tmp_path, "new")
        x.resume(new.connect_domain(1))
        got = x.console_read(5)
        assert got == b"first\nsecond\n"
        assert x.console_read(0.05) is None                   # once
        new.console(1).attach().write(b"third\n")
        assert x.console_read(5) == b"third\n"
    finally:
        x.close()
        if new is not None:
            new.close()


def test_hostile_input_indices_get_nothing_written_outside_in_and_lose_nothing(tmp_path):
    """The domain's in_cons says anything: a ring claiming more than in[]
    holds counts as full -- not a byte of the page changes, the input waits
    in the daemon, which carries on -- and once the indices are sane again
    (near 2**32, so the write wraps from in[1023] to in[0]) and the domain
    kicks, all of it arrives, in order."""
    hv = _hv(tmp_path, "h")
    x = XenInterface(hv.connect_domain(1))
    page = x.console_page.buf
    try:
        typer = hv.console(1).attach()
        sent = bytearray()
        for i, (cons, prod) in enumerate(((0x80000000, 0), (5, 2), (0xFFFFFFFF, 1024),
                                          (1, 0xFFFFFFFF))):
            struct.pack_into("<II", page, IN_CONS, cons, prod)
            before = bytes(page)
            line = b"typed %d\n" % i
            typer.write(line)
            sent += line
            assert bytes(page) == before                        # nothing written
            assert x.read("name") == b"dom1"                    # the daemon carries on
        struct.pack_into("<II", page, IN_CONS, 0xFFFFFFFE, 0xFFFFFFFE)
        x._console_kick(False)
        got = bytearray()
        while len(got) < len(sent):
            chunk = x.console_read(5)
            assert chunk
            got += chunk
        assert got == sent
        assert page[1022:1024].tobytes() + page[0:2].tobytes() == sent[:4]
        assert struct.unpack_from("<II", page, IN_CONS) == ((0xFFFFFFFE + len(sent)) & 0xFFFFFFFF,) * 2
    finally:
        x.close()
        hv.close()


def test_input_larger_than_the_ring_arrives_whole_and_in_order(tmp_path):
    """5000 bytes at once through a 1024-byte in[]: what does not fit waits
    in the daemon and follows each time the domain takes some."""
    hv = _hv(tmp_path, "big")
    x = XenInterface(hv.connect_domain(1))
    try:
        sent = bytes(i % 251 for i in range(5000))
        hv.console(1).attach().write(sent)
        got = bytearray()
        while len(got) < len(sent):
            chunk = x.console_read(5)
            assert chunk
            assert len(chunk) <= 1024
            got += chunk
        assert bytes(got) == sent
        assert x.console_read(0.05) is None
    finally:
        x.close()
        hv.close()
