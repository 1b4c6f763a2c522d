"""Console buffers: backlog on attach, bounded, logged, never blocking."""

from __future__ import annotations

import threading
import time

from pyxl.hypervisor.console import Console


def test_output_before_attach_is_delivered_on_attach_and_logged(tmp_path):
    log = tmp_path / "xen" / "console" / "guest-a.log"
    c = Console(1, str(log), limit=1024)
    c.output(b"Booting\n")
    c.output(b"login: ")
    r = c.attach()
    assert r.read(1) == b"Booting\nlogin: "
    c.output(b"more")
    assert r.read(1) == b"more"
    assert r.read(0.05) is None
    c.close()
    assert r.read(1) == b""
    assert log.read_bytes() == b"Booting\nlogin: more"


def test_backlog_is_bounded_oldest_dropped():
    c = Console(1, limit=10)
    c.output(b"0123456789")
    c.output(b"abc")
    r = c.attach()
    assert r.read(1) == b"3456789abc"
    r.detach()
    c.output(b"later")
    assert c.backlog == b"later"          # nobody attached: kept again


def test_flooding_domain_never_blocks_and_memory_stays_bounded(tmp_path):
    c = Console(1, str(tmp_path / "log"), limit=4096)
    r = c.attach()                         # a reader that never reads
    chunk = b"x" * 1000
    start = time.monotonic()
    for _ in range(5000):                  # 5 MB
        c.output(chunk)
    assert time.monotonic() - start < 5
    data = r.read(1)
    assert len(data) == 4096 and r.dropped == 5000 * 1000 - 4096
    assert (tmp_path / "log").stat().st_size == 5000 * 1000


def test_input_waits_for_the_domain_and_then_flows():
    c = Console(1)
    got = []
    c.send_input(b"early")
    c.set_input_sink(lambda d: got.append(d) or True)
    c.attach().write(b"ls\n")
    assert got == [b"early", b"ls\n"]


def test_reader_wakes_on_output_from_another_thread():
    c = Console(1)
    r = c.attach()
    threading.Timer(0.05, c.output, [b"late"]).start()
    assert r.read(2) == b"late"
