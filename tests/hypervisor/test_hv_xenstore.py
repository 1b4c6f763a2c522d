"""xenstore semantics: paths, permissions, watches, transactions, quotas."""

from __future__ import annotations

import errno

import pytest

from pyxl.hypervisor.xenstore import (Perm, QueueSink, Quotas, XenStore, XenStoreError,
                                      XENSTORE_PAYLOAD_MAX)


def err(fn, *a, **kw) -> str:
    with pytest.raises(XenStoreError) as ei:
        fn(*a, **kw)
    return ei.value.name


@pytest.fixture
def xs():
    store = XenStore()
    dom0 = store.connect(0, QueueSink())
    # what libxl does for a new domain: home readable by it, owned by dom0
    for d in (1, 2):
        dom0.mkdir(f"/local/domain/{d}")
        dom0.set_perms(f"/local/domain/{d}", ["n0", f"r{d}"])
        dom0.mkdir(f"/local/domain/{d}/data")
        dom0.set_perms(f"/local/domain/{d}/data", [f"n{d}"])
    return store, dom0


def conn(store, domid, sink=None):
    return store.connect(domid, sink if sink is not None else QueueSink())


# -- paths ---------------------------------------------------------------

def test_relative_paths_resolve_to_the_domain_home(xs):
    store, dom0 = xs
    d1 = conn(store, 1)
    d1.write("data/x", "1")
    assert dom0.read("/local/domain/1/data/x") == b"1"
    assert d1.read("/local/domain/1/data/x") == b"1"
    assert d1.get_domain_path(1) == "/local/domain/1"


@pytest.mark.parametrize("bad", ["", "/a/", "/a//b", "/a b", "/a\u00e9", "@introduceDomain"])
def test_invalid_paths_are_einval(xs, bad):
    _, dom0 = xs
    assert err(dom0.read, bad) == "EINVAL"
    assert err(dom0.write, bad, "v") == "EINVAL"


def test_dom0_paths_checked_once_answer_as_before(xs):
    """dom0's connection keeps the paths it has found valid: each answers
    as a first time would, again and again; a special path is only ever
    valid where special paths are (watches), and a bad one stays bad."""
    _, dom0 = xs
    dom0.write("/local/domain/1/data/k", "v")
    for _ in range(3):
        assert dom0.read("/local/domain/1/data/k") == b"v"
        assert dom0.read(b"/local/domain/1/data/k") == b"v"
        assert dom0.canonicalize("data/k") == "/local/domain/0/data/k"
        assert dom0.canonicalize("@introduceDomain", allow_special=True) == "@introduceDomain"
        assert err(dom0.read, "@introduceDomain") == "EINVAL"
        assert err(dom0.read, "/local/domain/1/data/k/") == "EINVAL"
    dom0.watch("@introduceDomain", "t")
    assert err(dom0.write, "@introduceDomain", "v") == "EINVAL"


def test_read_missing_is_enoent_and_write_creates_ancestors(xs):
    _, dom0 = xs
    assert err(dom0.read, "/a/b") == "ENOENT"
    dom0.write("/a/b/c", "v")
    assert dom0.directory("/a") == ["b"]
    assert dom0.directory("/a/b") == ["c"]
    assert dom0.read("/a/b") == b""
    assert dom0.read("/a/b/c") == b"v"


def test_values_are_binary(xs):
    _, dom0 = xs
    dom0.write("/bin", b"\x00\xff\x01")
    assert dom0.read("/bin") == b"\x00\xff\x01"


def test_mkdir_existing_ok_and_rm_semantics(xs):
    _, dom0 = xs
    dom0.write("/a/b", "v")
    dom0.mkdir("/a/b")
    assert dom0.read("/a/b") == b"v"
    dom0.rm("/a/nothing")            # missing but parent exists: fine
    assert err(dom0.rm, "/nope/child") == "ENOENT"
    assert err(dom0.rm, "/") == "EINVAL"
    dom0.rm("/a")
    assert err(dom0.read, "/a/b") == "ENOENT"
    assert "a" not in dom0.directory("/")


def test_payload_limit_is_e2big(xs):
    _, dom0 = xs
    dom0.write("/big", b"x" * (XENSTORE_PAYLOAD_MAX - len("/big") - 1))
    assert err(dom0.write, "/big", b"x" * XENSTORE_PAYLOAD_MAX) == "E2BIG"


# -- permissions ---------------------------------------------------------

def test_unprivileged_domain_sees_only_what_perms_allow(xs):
    store, dom0 = xs
    d1, d2 = conn(store, 1), conn(store, 2)
    dom0.write("/local/domain/2/secret", "s")      # inherits n0,r2
    assert err(d1.read, "/local/domain/2/secret") == "EACCES"
    assert err(d1.read, "/local/domain/2/none") == "EACCES"   # existence hidden
    assert d2.read("/local/domain/2/secret") == b"s"
    assert err(d2.read, "/local/domain/2/none") == "ENOENT"
    assert err(d2.write, "/local/domain/2/secret", "x") == "EACCES"
    assert err(d1.directory, "/local/domain") == "EACCES"
    assert err(d1.write, "/tool/x", "1") == "EACCES"


def test_acl_entry_wins_over_default_and_owner_gets_all(xs):
    store, dom0 = xs
    d1, d2 = conn(store, 1), conn(store, 2)
    dom0.write("/local/domain/2/dev", "x")
    dom0.set_perms("/local/domain/2/dev", ["n2", "r1"])
    assert d1.read("/local/domain/2/dev") == b"x"
    assert err(d1.write, "/local/domain/2/dev", "y") == "EACCES"
    d2.write("/local/domain/2/dev", "y")
    assert [str(p) for p in dom0.get_perms("/local/domain/2/dev")] == ["n2", "r1"]
    dom0.set_perms("/local/domain/2/dev", ["r2", "n1"])
    assert err(d1.read, "/local/domain/2/dev") == "EACCES"   # ACL n1 beats default r
    assert conn(store, 3).read("/local/domain/2/dev") == b"y"


def test_children_inherit_perms_and_unprivileged_creator_owns(xs):
    store, dom0 = xs
    d1 = conn(store, 1)
    dom0.set_perms("/local/domain/1/data", ["n1", "r2"])
    d1.write("data/a/b", "v")
    assert [str(p) for p in d1.get_perms("data/a")] == ["n1", "r2"]
    assert [str(p) for p in d1.get_perms("data/a/b")] == ["n1", "r2"]
    dom0.write("/local/domain/1/data/c", "w")
    assert [str(p) for p in dom0.get_perms("/local/domain/1/data/c")] == ["n1", "r2"]
    dom0.write("/own/x", "1")
    assert [str(p) for p in dom0.get_perms("/own/x")] == ["n0"]


def test_write_needs_write_on_nearest_existing_ancestor(xs):
    store, dom0 = xs
    d1 = conn(store, 1)
    assert err(d1.write, "/local/domain/1/new", "1") == "EACCES"   # home is n0,r1
    dom0.set_perms("/local/domain/1", ["n0", "b1"])
    d1.write("/local/domain/1/new/deep", "1")
    assert d1.get_perms("/local/domain/1/new")[0] == Perm(1, "n")


def test_set_perms_owner_only_and_cannot_give_away(xs):
    store, dom0 = xs
    d1, d2 = conn(store, 1), conn(store, 2)
    d1.write("data/x", "1")
    dom0.set_perms("/local/domain/1/data/x", ["n1", "b2"])
    assert err(d2.set_perms, "/local/domain/1/data/x", ["n2"]) == "EACCES"   # not owner
    assert err(d1.set_perms, "data/x", ["n2"]) == "EPERM"
    assert err(d1.set_perms, "data/x", ["q1"]) == "EINVAL"
    assert err(d1.set_perms, "data/x", []) == "EINVAL"
    d1.set_perms("data/x", ["r1"])
    assert d2.read("/local/domain/1/data/x") == b"1"


def test_release_hands_nodes_to_dom0_and_strips_acls(xs):
    store, dom0 = xs
    d1 = conn(store, 1)
    d1.write("data/x", "1")
    dom0.set_perms("/local/domain/1/data/x", ["n1", "r2"])
    dom0.write("/local/domain/2/y", "1")
    dom0.set_perms("/local/domain/2/y", ["n2", "r1"])
    store.release(1)
    assert [str(p) for p in dom0.get_perms("/local/domain/1/data/x")] == ["n0", "r2"]
    assert [str(p) for p in dom0.get_perms("/local/domain/2/y")] == ["n2"]
    assert d1.closed


# -- watches -------------------------------------------------------------

def events(sink):
    out = []
    while (e := sink.wait(0)) is not None:
        out.append(e)
    return out


def test_watch_fires_once_on_registration_and_on_descendants(xs):
    store, dom0 = xs
    sink = QueueSink()
    d1 = store.connect(1, sink)
    d1.watch("data", "tok")
    assert events(sink) == [("data", "tok")]          # relative watch, relative path
    dom0.write("/local/domain/1/data/x/y", "1")
    assert events(sink) == [("data/x/y", "tok")]
    dom0.write("/local/domain/1/other", "1")
    assert events(sink) == []
    d1.unwatch("data", "tok")
    dom0.write("/local/domain/1/data/z", "1")
    assert events(sink) == []
    assert err(d1.unwatch, "data", "tok") == "ENOENT"


def test_watch_duplicate_is_eexist_and_tokens_distinguish(xs):
    store, dom0 = xs
    sink = QueueSink()
    c = store.connect(0, sink)
    c.watch("/a", "t1")
    c.watch("/a", "t2")
    assert err(c.watch, "/a", "t1") == "EEXIST"
    events(sink)
    dom0.write("/a", "1")
    assert sorted(events(sink)) == [("/a", "t1"), ("/a", "t2")]


def test_rm_fires_watches_on_removed_descendants_and_ancestors(xs):
    store, dom0 = xs
    sink = QueueSink()
    c = store.connect(0, sink)
    dom0.write("/a/b/c", "1")
    c.watch("/a/b/c", "deep")
    c.watch("/", "root")
    events(sink)
    dom0.rm("/a/b")
    got = events(sink)
    assert ("/a/b/c", "deep") in got
    assert ("/a/b", "root") in got


def test_watch_needs_read_permission(xs):
    store, dom0 = xs
    sink = QueueSink()
    d1 = store.connect(1, sink)
    d1.watch("/local/domain/2", "peek")
    events(sink)
    dom0.write("/local/domain/2/secret", "s")          # n0,r2: not readable by 1
    assert events(sink) == []
    dom0.write("/local/domain/2/open", "s")
    dom0.set_perms("/local/domain/2/open", ["n2", "r1"])
    assert events(sink) == [("/local/domain/2/open", "peek")]


def test_special_watches(xs):
    store, dom0 = xs
    sink, sink1 = QueueSink(), QueueSink()
    c = store.connect(0, sink)
    d1 = store.connect(1, sink1)
    c.watch("@releaseDomain", "rel")
    c.watch("@introduceDomain", "intro")
    d1.watch("@releaseDomain", "rel1")
    assert err(d1.get_perms, "@releaseDomain") == "EACCES"
    events(sink), events(sink1)
    store.introduce(7)
    assert events(sink) == [("@introduceDomain", "intro")]
    store.release(7)
    assert events(sink) == [("@releaseDomain", "rel")]
    assert events(sink1) == []                  # @releaseDomain is n0 by default
    dom0.set_perms("@releaseDomain", ["n0", "r1"])
    store.release(8)
    assert events(sink1) == [("@releaseDomain", "rel1")]


# -- transactions --------------------------------------------------------

def test_transaction_is_isolated_until_commit_and_watches_deferred(xs):
    store, dom0 = xs
    sink = QueueSink()
    w = store.connect(0, sink)
    w.watch("/t", "tok")
    events(sink)
    tx = dom0.transaction_start()
    dom0.write("/t/a", "1", tx)
    dom0.write("/t/b", "2", tx)
    assert dom0.read("/t/a", tx) == b"1"
    assert err(dom0.read, "/t/a") == "ENOENT"
    assert events(sink) == []
    dom0.transaction_end(tx, True)
    assert dom0.read("/t/a") == b"1" and dom0.read("/t/b") == b"2"
    assert sorted(events(sink)) == [("/t/a", "tok"), ("/t/b", "tok")]


def test_transaction_conflict_is_eagain_and_abort_discards(xs):
    _, dom0 = xs
    dom0.write("/k", "0")
    tx = dom0.transaction_start()
    assert dom0.read("/k", tx) == b"0"
    dom0.write("/k/other", "x")            # changes /k's children: conflict
    dom0.write("/out", "1", tx)
    assert err(dom0.transaction_end, tx, True) == "EAGAIN"
    assert err(dom0.read, "/out") == "ENOENT"
    tx = dom0.transaction_start()
    dom0.write("/out", "1", tx)
    dom0.transaction_end(tx, False)
    assert err(dom0.read, "/out") == "ENOENT"
    assert err(dom0.transaction_end, tx, True) == "ENOENT"
    assert err(dom0.read, "/k", 999) == "ENOENT"


def test_transaction_rm_and_unrelated_changes_do_not_conflict(xs):
    _, dom0 = xs
    dom0.write("/a/x", "1")
    dom0.write("/b", "1")
    tx = dom0.transaction_start()
    dom0.rm("/a", tx)
    dom0.write("/b", "2")                  # not touched by the transaction
    dom0.transaction_end(tx)
    assert "a" not in dom0.directory("/")


# -- quotas --------------------------------------------------------------

def small_store():
    store = XenStore(Quotas(nodes=10, watches=3, transactions=2, entry_size=100))
    dom0 = store.connect(0)
    dom0.mkdir("/local/domain/1")
    dom0.set_perms("/local/domain/1", ["n1"])
    return store, dom0


def test_node_quota_stops_a_flooding_domain_but_not_dom0():
    store, dom0 = small_store()
    d1 = store.connect(1)
    with pytest.raises(XenStoreError) as ei:
        for i in range(100):
            d1.write(f"n{i}", "x")
    assert ei.value.errno == errno.ENOSPC
    assert len(dom0.directory("/local/domain/1")) == 9     # home + 9 = 10 owned
    for i in range(50):
        dom0.write(f"/dom0/{i}", "x")
    d1.rm("n0")
    d1.write("again", "x")                                 # freed quota is reusable


def test_node_quota_counts_transaction_writes():
    store, _ = small_store()
    d1 = store.connect(1)
    tx = d1.transaction_start()
    with pytest.raises(XenStoreError) as ei:
        for i in range(20):
            d1.write(f"n{i}", "x", tx)
    assert ei.value.name == "ENOSPC"


def test_entry_size_watch_and_transaction_quotas():
    store, dom0 = small_store()
    d1 = store.connect(1, QueueSink())
    assert err(d1.write, "big", "x" * 200) == "ENOSPC"
    dom0.write("/local/domain/1/big", "x" * 200)           # dom0 is exempt
    for i in range(3):
        d1.watch(f"w{i}", "t")
    assert err(d1.watch, "w9", "t") == "E2BIG"
    d1.transaction_start(), d1.transaction_start()
    assert err(d1.transaction_start) == "ENOSPC"
    assert err(d1.set_perms, "", ["n1", "r2", "r3", "r4", "r5", "r6"]) == "ENOSPC"


def test_filling_a_directory_in_a_transaction_copies_it_once(monkeypatch):
    """A domain's cpu/<n> entries go into one directory in one transaction:
    each insert must not copy the directory's child list again (that made
    vcpus=100000 quadratic).  Counted, not timed."""
    import pyxl.hypervisor.xenstore as X

    copied = []             # child names copied, over every node copy
    real = X._Node.copy
    monkeypatch.setattr(X._Node, "copy",
                        lambda self: copied.append(len(self.children)) or real(self))
    store = XenStore()
    dom0 = store.connect(0)
    dom0.mkdir("/local/domain/1/cpu")
    tx = dom0.transaction_start()
    for i in range(2000):
        dom0.write("/local/domain/1/cpu/%d/availability" % i, "online", tx)
    dom0.transaction_end(tx, True)
    assert sum(copied) <= 2 * 2000          # linear (the commit copies once); was ~n*n/2
    assert len(dom0.directory("/local/domain/1/cpu")) == 2000
    assert dom0.read("/local/domain/1/cpu/1999/availability") == b"online"


def test_a_failed_create_in_a_transaction_leaves_the_directory_unchanged():
    store, dom0 = small_store()
    d1 = store.connect(1)
    tx = d1.transaction_start()
    d1.write("a", "x", tx)
    assert err(d1.write, "b", "x" * 200, tx) == "ENOSPC"
    assert d1.directory("/local/domain/1", tx) == ["a"]
    d1.transaction_end(tx, True)
    assert d1.directory("/local/domain/1") == ["a"]
