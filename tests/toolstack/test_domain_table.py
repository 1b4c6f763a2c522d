"""The hypervisor's domain table: domid allocation, memory, state letters."""

from pyxl.hypervisor.domain import DOMID_FIRST_RESERVED, Domain, DomainTable
from pyxl.hypervisor.host import Host


def table():
    return DomainTable(Host(nr_cpus=2, nr_nodes=1, total_memory_mb=4096, dom0_memory_mb=1024))


def test_domids_count_up_and_are_not_reused_at_once():
    t = table()
    a = t.allocate_domid()
    t.domains[a] = Domain(a, "a", "u", 1024, 1024)
    b = t.allocate_domid()
    assert (a, b) == (1, 2)
    del t.domains[a]
    assert t.allocate_domid() == 3            # 1 is free again, but not next


def test_domids_wrap_below_the_reserved_range_and_skip_live_ones():
    t = table()
    t.last_domid = DOMID_FIRST_RESERVED - 2
    t.domains[1] = Domain(1, "one", "u", 1024, 1024)
    assert t.allocate_domid() == DOMID_FIRST_RESERVED - 1
    assert t.allocate_domid() == 2           # wrapped, 0 is dom0 and 1 is taken


def test_memory_accounting():
    """Free memory is the pool less what each domain holds (HELD), dom0
    included, not what it may grow to (max_memkb)."""
    t = table()
    pool = t.host.domain_pool_kb()
    assert pool == (4096 - 80) * 1024
    t.domains[1] = Domain(1, "x", "u", 512 * 1024, 256 * 1024)
    held = {0: 1024 * 1024, 1: 200 * 1024}
    assert t.free_kb(lambda d: held[d.domid]) == pool - 1224 * 1024


def test_state_letters():
    d = Domain(3, "x", "u", 1024, 1024)
    d.shutdown_reason = 3
    assert d.state_chars() == "---sc-"
    d.shutdown_reason = 0
    assert d.state_chars() == "---s--"
    d.shutdown_reason = None
    d.paused = True
    assert d.state_chars() == "--p---"
    d.dying, d.paused = True, False
    assert d.state_chars() == "-----d"
    assert Domain(0, "Domain-0", "u", 1, 1).state_chars() == "r-----"
