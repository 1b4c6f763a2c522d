"""Watches are found through an index by path: a write costs the same with
500 watching connections as with 10, and fires exactly what the plain
definition (every connection, every watch, read permission) would."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from pyxl.hypervisor.xenstore import (PERM_READ, XenStore, XenStoreError, _is_child,
                                      perm_for)


class ReferenceStore(XenStore):
    """xenstored's fire_watches read literally: every connection, every watch."""

    def _fire(self, conn, path, node, exact, old_perms=None, tx=None):
        if tx is not None:
            tx.events.append((path, node, exact, old_perms))
            return
        for watcher in list(self._conns):
            if not self._watch_permitted(watcher, path, node, old_perms):
                continue
            for (wpath, token, rel) in list(watcher.watches):
                if wpath.startswith("@"):
                    continue
                if (path == wpath) if exact else _is_child(path, wpath):
                    watcher._deliver(watcher._relative(path) if rel else path, token)

    def _fire_special(self, name):
        perms = self._special[name]
        for conn in list(self._conns):
            if perm_for(conn.domid, conn.privileged, perms) & PERM_READ:
                for (path, token, _rel) in list(conn.watches):
                    if path == name:
                        conn._deliver(name, token)


def _count_checks(store: XenStore) -> list[int]:
    n = [0]
    real = store._watch_permitted

    def counting(*a):
        n[0] += 1
        return real(*a)
    store._watch_permitted = counting
    return n


def _store_with_watchers(ndomains: int):
    store = XenStore()
    dom0 = store.connect(0)
    events: list = []
    for d in range(1, ndomains + 1):
        home = f"/local/domain/{d}"
        dom0.mkdir(home)
        dom0.set_perms(home, [f"n{d}"])
        c = store.connect(d, lambda p, t: events.append((p, t)))
        c.watch("device", "dev")          # as a frontend does
        c.watch("@releaseDomain", "rel")
    backend = store.connect(0, lambda p, t: events.append((p, t)))
    backend.watch("/local/domain/0/backend", "be")
    return store, dom0, events


def test_a_write_costs_the_same_with_500_watching_domains_as_with_10():
    costs = {}
    for n in (10, 500):
        store, dom0, events = _store_with_watchers(n)
        checks = _count_checks(store)
        events.clear()
        for i in range(20):               # what a device hotplug writes
            dom0.write(f"/local/domain/3/device/vif/{i}/state", "1")
            dom0.write(f"/local/domain/0/backend/vif/3/{i}/state", "1")
            dom0.write(f"/local/domain/7/data/x{i}", "1")    # nobody watches this
        costs[n] = checks[0]
        # domain 3's frontend and the backend saw their writes, nobody else
        assert ("device/vif/19/state", "dev") in events
        assert ("/local/domain/0/backend/vif/3/19/state", "be") in events
        assert all(p.startswith(("device/vif/", "/local/domain/0/backend/")) for p, _ in events)
    assert costs[500] == costs[10] <= 80, costs


def test_special_watches_still_need_read_permission_on_the_special_node():
    store, dom0, events = _store_with_watchers(50)
    toolstack = store.connect(0, lambda p, t: events.append((p, "dom0-" + t)))
    toolstack.watch("@releaseDomain", "rel")
    events.clear()
    store.release(5)                  # @releaseDomain is n0: only dom0 hears it
    assert events == [("@releaseDomain", "dom0-rel")]
    dom0.set_perms("@releaseDomain", ["n0", "r7"])
    store.release(6)
    assert sorted(events[1:]) == [("@releaseDomain", "dom0-rel"), ("@releaseDomain", "rel")]


def test_unwatched_and_closed_watches_are_gone_from_the_index():
    store = XenStore()
    dom0 = store.connect(0)
    seen = []
    a = store.connect(0, lambda p, t: seen.append(("a", p, t)))
    b = store.connect(0, lambda p, t: seen.append(("b", p, t)))
    a.watch("/x", "1")
    a.watch("/x", "2")
    b.watch("/x/y", "1")
    a.unwatch("/x", "1")
    b.close()
    seen.clear()
    dom0.write("/x/y", "v")
    assert seen == [("a", "/x/y", "2")]
    assert set(store._watch_index) == {"/x"}


SEGS = ["a", "b"]
rel_paths = st.lists(st.sampled_from(SEGS), min_size=0, max_size=2).map(
    lambda segs: "/local/domain/1/data" + "".join("/" + s for s in segs))
ops = st.lists(st.one_of(
    st.tuples(st.just("watch"), st.integers(0, 2), rel_paths, st.sampled_from("x")),
    st.tuples(st.just("unwatch"), st.integers(0, 2), rel_paths, st.sampled_from("x")),
    st.tuples(st.just("write"), st.integers(0, 2), rel_paths, st.just("")),
    st.tuples(st.just("mkdir"), st.integers(0, 2), rel_paths, st.just("")),
    st.tuples(st.just("rm"), st.integers(0, 2), rel_paths, st.just("")),
    st.tuples(st.just("perms"), st.integers(0, 2), rel_paths, st.sampled_from(["n1", "r1"])),
    st.tuples(st.just("close"), st.integers(1, 2), st.just(""), st.just("")),
    st.tuples(st.just("tx"), st.integers(0, 2), rel_paths, st.just("")),
), max_size=30)


def _run(store_cls, seq):
    store = store_cls()
    dom0 = store.connect(0)
    dom0.mkdir("/local/domain/1/data")
    dom0.set_perms("/local/domain/1/data", ["n1", "r2"])
    logs = {0: [], 1: [], 2: []}
    conns = {d: store.connect(d, (lambda log: lambda p, t: log.append((p, t)))(logs[d]))
             for d in logs}
    for op, who, path, arg in seq:
        c = conns[who]
        try:
            if op == "watch":
                c.watch(path, arg)
            elif op == "unwatch":
                c.unwatch(path, arg)
            elif op == "write":
                c.write(path, b"v")
            elif op in ("mkdir", "rm"):
                getattr(c, op)(path)
            elif op == "perms":
                c.set_perms(path, [arg, "r2"])
            elif op == "close":
                c.close()
                conns[who] = store.connect(who, (lambda log: lambda p, t: log.append((p, t)))(
                    logs[who]))
            elif op == "tx":
                tx = c.transaction_start()
                c.write(path + "/t" if path else path, b"1", tx)
                c.rm(path, tx)
                c.transaction_end(tx, True)
        except XenStoreError:
            pass
    store.release(2)
    return logs


@settings(max_examples=150, deadline=None)
@given(ops)
def test_indexed_watches_fire_exactly_what_the_plain_definition_fires(seq):
    assert _run(XenStore, seq) == _run(ReferenceStore, seq)
