"""Console buffers: backlog on attach, bounded, logged, never blocking."""

from __future__ import annotations

import struct
import threading
import time

from pyxl.domain.xen import Page
from pyxl.hypervisor.console import Console


def test_output_before_attach_is_delivered_on_attach_and_logged(tmp_path):
    log = tmp_path / "xen" / "console" / "guest-a.log"
    log.parent.mkdir(parents=True)          # the toolstack makes (and checks) it
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
    # the log rotates at 1 MiB by default, keeping 4 older files: all 5 MB fit
    sizes = [p.stat().st_size for p in tmp_path.iterdir()]
    assert sum(sizes) == 5000 * 1000 and max(sizes) == 1024 * 1024 and len(sizes) == 5


def test_input_waits_for_the_domain_s_page_and_then_flows():
    """Input typed before the domain handed its ring page over waits, then
    goes onto in[] ahead of anything newer, the domain told each time."""
    c = Console(1)
    told: list[bool] = []
    c.send_input(b"early")
    c.set_input_sink(told.append)
    assert told == []                          # no page yet: nothing to tell
    page = Page()
    try:
        c.set_ring(page.fd)
        c.attach().write(b"ls\n")
        assert bytes(page.buf[0:8]) == b"earlyls\n"
        assert struct.unpack_from("<II", page.buf, 3072) == (0, 8)   # in_cons, in_prod
        assert told == [False, False]
    finally:
        c.close()
        page.close()


def test_reader_wakes_on_output_from_another_thread():
    c = Console(1)
    r = c.attach()
    threading.Timer(0.05, c.output, [b"late"]).start()
    assert r.read(2) == b"late"


def test_the_log_is_capped_and_rotated_like_libxl(tmp_path):
    log = tmp_path / "guest-vm.log"
    c = Console(1, str(log), limit=100, log_max=1000, log_keep=3)
    sent = bytearray()
    for i in range(700):                      # 7700 bytes: several rotations
        line = b"line %05d\n" % i
        sent += line
        c.output(line)
    c.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["guest-vm.log", "guest-vm.log.1", "guest-vm.log.2", "guest-vm.log.3"]
    sizes = [(tmp_path / f).stat().st_size for f in files]
    assert all(s <= 1000 for s in sizes) and sizes[1:] == [1000, 1000, 1000]
    # oldest to newest, the kept files are exactly the tail of what was sent
    kept = b"".join((tmp_path / f).read_bytes() for f in
                    ["guest-vm.log.3", "guest-vm.log.2", "guest-vm.log.1", "guest-vm.log"])
    assert kept == bytes(sent[-len(kept):]) and len(kept) == 3000 + sizes[0]


def test_a_reopened_log_counts_what_it_already_holds(tmp_path):
    log = tmp_path / "guest-vm.log"
    log.write_bytes(b"x" * 900)               # the domain's previous life
    c = Console(1, str(log), log_max=1000, log_keep=1)
    c.output(b"y" * 200)
    c.close()
    assert (tmp_path / "guest-vm.log.1").read_bytes() == b"x" * 900 + b"y" * 100
    assert log.read_bytes() == b"y" * 100


def test_no_cap_and_no_backups_are_both_possible(tmp_path):
    c = Console(1, str(tmp_path / "a.log"), log_max=None)
    c.output(b"z" * 5000)
    c.close()
    assert (tmp_path / "a.log").stat().st_size == 5000
    c = Console(2, str(tmp_path / "b.log"), log_max=100, log_keep=0)
    c.output(b"0" * 250)
    c.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "b.log"]
    assert (tmp_path / "b.log").read_bytes() == b"0" * 50


def test_a_flooding_domain_costs_bounded_disk_and_delays_nobody(tmp_path):
    """A guest writing as fast as it can over the wire: the log directory
    stays within (keep + 1) * max, the attach backlog within its limit, and
    another domain's requests are answered meanwhile."""
    from pyxl.domain.xen import XenInterface
    from pyxl.hypervisor.services import Hypervisor

    hv = Hypervisor(console_limit=4096, console_log_max=64 * 1024, console_log_keep=2)
    hv.domain_created(1, name="flood", console_log=str(tmp_path / "guest-flood.log"))
    hv.domain_created(2, name="quiet")
    flood, quiet = XenInterface(hv.connect_domain(1)), XenInterface(hv.connect_domain(2))
    stop = threading.Event()
    total = [0]

    def flooder():
        chunk = b"A" * 60000 + b"\n"
        while not stop.is_set():
            flood.console_write(chunk)
            total[0] += len(chunk)
    t = threading.Thread(target=flooder)
    t.start()
    worst = 0.0
    for i in range(50):
        t0 = time.monotonic()
        quiet.write("data/k", str(i))
        worst = max(worst, time.monotonic() - t0)
    while total[0] < 8 * 1024 * 1024:          # 8 MiB through a 192 KiB budget
        time.sleep(0.01)
    stop.set()
    t.join()
    flood.read("name")                          # everything sent before is handled
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert on_disk <= 3 * 64 * 1024
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "guest-flood.log", "guest-flood.log.1", "guest-flood.log.2"]
    assert len(hv.console(1).backlog) <= 4096
    assert worst < 2.0
    hv.close()
