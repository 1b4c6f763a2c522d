"""Property tests: a transaction committed without interference leaves the
same tree as the same operations applied directly; the tree stays
consistent and the node quota's ownership counts stay exact."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from pyxl.hypervisor.xenstore import XenStore, XenStoreError

SEGS = ["a", "b", "c"]
paths = st.lists(st.sampled_from(SEGS), min_size=1, max_size=3).map(
    lambda segs: "/local/domain/1/data/" + "/".join(segs))
ops = st.lists(st.one_of(
    st.tuples(st.just("write"), paths, st.binary(max_size=8)),
    st.tuples(st.just("mkdir"), paths, st.just(b"")),
    st.tuples(st.just("rm"), paths, st.just(b"")),
), max_size=25)


def fresh():
    store = XenStore()
    dom0 = store.connect(0)
    dom0.mkdir("/local/domain/1/data")
    dom0.set_perms("/local/domain/1/data", ["n1"])
    return store, store.connect(1)


def apply(conn, seq, tx=0):
    for op, path, value in seq:
        try:
            if op == "write":
                conn.write(path, value, tx)
            else:
                getattr(conn, op)(path, tx)
        except XenStoreError:
            pass


def check_consistent(store):
    snap = store.snapshot()
    for path, (_, perms, children) in snap.items():
        for c in children:
            assert (path.rstrip("/") + "/" + c) in snap
        if path != "/":
            parent = path.rsplit("/", 1)[0] or "/"
            assert path.rsplit("/", 1)[1] in snap[parent][2]
    owners = {}
    for _, perms, _ in snap.values():
        d = int(perms[0][1:])
        owners[d] = owners.get(d, 0) + 1
    for d, n in owners.items():
        assert store.owned(d) == n


@settings(max_examples=60, deadline=None)
@given(ops)
def test_transaction_commit_equals_direct_application(seq):
    direct, c1 = fresh()
    apply(c1, seq)
    txd, c2 = fresh()
    tx = c2.transaction_start()
    apply(c2, seq, tx)
    c2.transaction_end(tx, True)
    assert direct.snapshot() == txd.snapshot()
    check_consistent(direct)
    check_consistent(txd)


@settings(max_examples=40, deadline=None)
@given(ops, ops)
def test_aborted_transaction_changes_nothing(before, inside):
    store, c = fresh()
    apply(c, before)
    snap = store.snapshot()
    tx = c.transaction_start()
    apply(c, inside, tx)
    c.transaction_end(tx, False)
    assert store.snapshot() == snap
