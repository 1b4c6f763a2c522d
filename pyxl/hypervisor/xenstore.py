"""The xenstore tree, with xenstored's semantics (tools/xenstored in Xen 4.17).

One `XenStore` holds the tree; every client (a domain's socket, or the
toolstack in-process as dom0) talks to it through its own `XsConnection`,
which carries the client's domid, its watches and its open transactions.
What a client may see and do follows xenstored:

- Paths: absolute (`/local/domain/3/device`) or relative to the client's home
  `/local/domain/<domid>`; characters `A-Za-z0-9-/_@`; no `//`, no trailing
  `/`; a leading `@` names a special node (`@introduceDomain`,
  `@releaseDomain`) that only WATCH/UNWATCH/GET_PERMS/SET_PERMS accept.
- Permissions: a node's perms are a list, first entry = owner domid + the
  default access for everybody else (n/r/w/b), further entries = per-domain
  ACL. dom0 (privileged) and the owner get read+write+owner; an ACL entry for
  the client wins over the default.
- Nodes created by a write/mkdir (and missing ancestors) copy their parent's
  perms; an unprivileged creator becomes the owner.
- Errors hide what the client may not know: a missing node is ENOENT only if
  the nearest existing ancestor would grant the access, else EACCES.
- Watches fire for writes/removals of the node or any descendant (also once
  on registration); a watcher needs read access to the node or its parent.
  Removing a subtree fires exact watches on every removed descendant.
- Transactions see a private view; commit fails with EAGAIN when any node the
  transaction read or wrote changed underneath it (xenstored's generation
  check); watches fired inside a transaction are delivered at commit.
- Quotas (unprivileged domains only): nodes owned, watches, open
  transactions, node size, ACL length, path length; E2BIG for requests over
  the 4096-byte payload limit for everybody.

Thread-safe: one lock around the whole tree (xenstored is single-threaded
too). Watch sinks are called with the lock held and must not block.
"""

from __future__ import annotations

import errno as _errno
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, NoReturn

from .xs_wire import XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX

SPECIAL_NODES = ("@introduceDomain", "@releaseDomain")

_CANONICAL_KEPT = 16384      # paths a dom0 connection remembers as checked (XsConnection)
_VALID = re.compile(r"[A-Za-z0-9/_@-]+\Z", re.ASCII)     # one match, not a test per character

# Access bits as xenstored computes them (XS_PERM_*).
PERM_NONE = 0
PERM_READ = 1
PERM_WRITE = 2
PERM_OWNER = 8
_LETTER_BITS = {"n": PERM_NONE, "r": PERM_READ, "w": PERM_WRITE, "b": PERM_READ | PERM_WRITE}
_BITS_LETTER = {v: k for k, v in _LETTER_BITS.items()}


class XenStoreError(OSError):
    """An error xenstored would answer with XS_ERROR; `.name` is the errno
    name sent on the wire ("ENOENT", "EACCES", ...)."""

    def __init__(self, err: int, path: str | None = None):
        super().__init__(err, _errno.errorcode.get(err, str(err)) + (f": {path}" if path else ""))
        self.name = _errno.errorcode.get(err, "EINVAL")


if TYPE_CHECKING:
    from typing import TypeAlias

    # a path as clients give it (bytes from the wire), a value (text from
    # bytes by surrogateescape goes back to them)
    XsPath: TypeAlias = str | bytes
    XsValue: TypeAlias = str | bytes | bytearray | memoryview
    WatchSink: TypeAlias = Callable[[str, str], object]


def _fail(err: int, path: str | None = None) -> NoReturn:
    raise XenStoreError(err, path)


@dataclass(frozen=True)
class Perm:
    """One entry of a node's permission list: `Perm(0, "n")` etc."""

    domid: int
    access: str  # one of n r w b

    def __str__(self) -> str:
        return f"{self.access}{self.domid}"

    @classmethod
    def parse(cls, text: str) -> "Perm":
        if len(text) < 2 or text[0] not in _LETTER_BITS or not text[1:].isdigit():
            _fail(_errno.EINVAL, text)
        domid = int(text[1:])
        if domid > 0xFFFF:
            _fail(_errno.EINVAL, text)
        return cls(domid, text[0])

    @property
    def bits(self) -> int:
        return _LETTER_BITS[self.access]


def parse_perms(items: Iterable[str | Perm]) -> tuple[Perm, ...]:
    return tuple(p if isinstance(p, Perm) else Perm.parse(p) for p in items)


@dataclass(frozen=True)
class Quotas:
    """xenstored's default hard quotas (-E -W -S -t -A, XENSTORE_REL_PATH_MAX);
    they bind unprivileged domains only."""

    nodes: int = 1000          # nodes owned by one domain
    watches: int = 128         # watches per connection
    transactions: int = 10     # open transactions per connection
    entry_size: int = 2048     # bytes of value + child names + perms of one node
    perms: int = 5             # entries in one node's permission list
    path_len: int = XENSTORE_REL_PATH_MAX  # path length below /local/domain/<id>/ (binds dom0 too)


def payload_fits(path: XsPath, value: XsValue) -> bool:
    """A write's path, NUL and value fit in one xenstore message
    (xs_talkv's check before it sends: E2BIG otherwise)."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return len(str(path).encode("utf-8", "surrogateescape")) + 1 + len(value) \
        <= XENSTORE_PAYLOAD_MAX


@dataclass
class _Node:
    value: bytes
    perms: tuple[Perm, ...]
    children: list[str] = field(default_factory=list)
    gen: int = 0

    def copy(self) -> "_Node":
        return _Node(self.value, self.perms, list(self.children), self.gen)

    @property
    def owner(self) -> int:
        return self.perms[0].domid

    def size(self) -> int:
        return len(self.value) + sum(len(c) + 1 for c in self.children) + 8 * len(self.perms)


_ABSENT = -1  # generation recorded for a node a transaction saw missing


class _Transaction:
    def __init__(self, txid: int):
        self.id = txid
        self.overlay: dict[str, _Node | None] = {}   # path -> new node / None = removed
        self.seen: dict[str, int] = {}               # path -> main generation at first access
        self.events: list[tuple[str, _Node | None, bool, tuple[Perm, ...] | None]] = []
        self.failed = False


def _parent(path: str) -> str:
    i = path.rfind("/")
    return "/" if i <= 0 else path[:i]


def _basename(path: str) -> str:
    return path[path.rfind("/") + 1:]


def _is_child(child: str, parent: str) -> bool:
    if parent == "/":
        return child.startswith("/")
    return child == parent or (child.startswith(parent) and child[len(parent)] == "/")


def perm_for(domid: int, privileged: bool, perms: tuple[Perm, ...],
             target: int | None = None) -> int:
    """xenstored's perm_for_conn: what `domid` may do with a node; a domain
    given a target (XS_SET_TARGET: a device model's stub domain) also has
    the target's rights."""
    if privileged or perms[0].domid == domid or perms[0].domid == target:
        return PERM_READ | PERM_WRITE | PERM_OWNER
    for p in perms[1:]:
        if p.domid == domid or p.domid == target:
            return p.bits
    return perms[0].bits


class XenStore:
    """The tree. Create connections with `connect(domid, sink)`."""

    def __init__(self, quotas: Quotas = Quotas()):
        self.quotas = quotas
        self.lock = threading.RLock()
        self._gen = 0
        self._nodes: dict[str, _Node] = {"/": _Node(b"", (Perm(0, "n"),))}
        self._special: dict[str, tuple[Perm, ...]] = {s: (Perm(0, "n"),) for s in SPECIAL_NODES}
        self._owned: dict[int, int] = {}             # domid -> nodes owned (quota)
        self._conns: list[XsConnection] = []
        # Watches indexed by watched path: a write looks up the written
        # path's ancestors (and itself), so its cost does not grow with the
        # number of connections. path -> {(id(conn), token): (seq, conn, token, relative)};
        # seq orders a connection's events as its registrations were made.
        self._watch_index: dict[str, dict[tuple[int, str], tuple]] = {}
        self._watch_seq = 0
        self._next_tx = 1
        self.privileged: set[int] = {0}
        self.targets: dict[int, int] = {}            # domid -> its target (XS_SET_TARGET)

    def snapshot(self) -> dict[str, tuple[bytes, tuple[str, ...], tuple[str, ...]]]:
        """path -> (value, perms, children) of the whole tree (debugging, tests,
        xenstore-ls style listings)."""
        with self.lock:
            return {p: (n.value, tuple(str(x) for x in n.perms), tuple(n.children))
                    for p, n in self._nodes.items()}

    def owned(self, domid: int) -> int:
        """Nodes owned by `domid`, as the node quota counts them."""
        with self.lock:
            return self._owned.get(domid, 0)

    # -- connections ---------------------------------------------------
    def connect(self, domid: int, sink: Callable[[str, str], None] | None = None,
                privileged: bool | None = None) -> "XsConnection":
        """A client of domain `domid`; `sink(path, token)` receives its watch
        events (called under the store lock: it must not block)."""
        with self.lock:
            conn = XsConnection(self, domid, sink,
                                domid in self.privileged if privileged is None else privileged)
            self._conns.append(conn)
            return conn

    def _disconnect(self, conn: "XsConnection") -> None:
        with self.lock:
            if conn in self._conns:
                self._conns.remove(conn)
            for (name, token, _rel) in conn.watches:
                self._unindex_watch(conn, name, token)
            conn.watches.clear()
            conn.transactions.clear()

    # -- domain lifecycle (what XS_INTRODUCE / XS_RELEASE do) -----------
    def set_target(self, domid: int, target: int) -> None:
        """XS_SET_TARGET: `domid` acts for `target` (perm_for_conn)."""
        with self.lock:
            self.targets[domid] = target

    def introduce(self, domid: int) -> None:
        with self.lock:
            self._fire_special("@introduceDomain")

    def shutdown(self, domid: int) -> None:
        """The domain has shut down (or crashed) and is not yet gone:
        xenstored's domain_cleanup sees XEN_DOMINF_shutdown and fires
        @releaseDomain (xenstored_domain.c)."""
        with self.lock:
            self._fire_special("@releaseDomain")

    def release(self, domid: int) -> None:
        """The domain is gone: drop its connections, hand its nodes to dom0 and
        strip it from ACLs (xenstored's domain_adjust_node_perms), fire
        @releaseDomain."""
        with self.lock:
            for conn in [c for c in self._conns if c.domid == domid]:
                conn.close()
            for node in self._nodes.values():
                if any(p.domid == domid for p in node.perms):
                    node.perms = self._strip(node.perms, domid)
            for name, perms in self._special.items():
                self._special[name] = self._strip(perms, domid)
            self.targets.pop(domid, None)
            for d in [d for d, t in self.targets.items() if t == domid]:
                del self.targets[d]
            moved = self._owned.pop(domid, 0)
            self._owned[0] = self._owned.get(0, 0) + moved
            self._fire_special("@releaseDomain")

    @staticmethod
    def _strip(perms: tuple[Perm, ...], domid: int) -> tuple[Perm, ...]:
        first = perms[0]
        if first.domid == domid:
            first = Perm(0, first.access)
        return (first,) + tuple(p for p in perms[1:] if p.domid != domid)

    def _index_watch(self, conn: "XsConnection", name: str, token: str, relative: bool) -> None:
        self._watch_seq += 1
        self._watch_index.setdefault(name, {})[(id(conn), token)] = \
            (self._watch_seq, conn, token, relative)

    def _unindex_watch(self, conn: "XsConnection", name: str, token: str) -> None:
        entries = self._watch_index.get(name)
        if entries is not None:
            entries.pop((id(conn), token), None)
            if not entries:
                del self._watch_index[name]

    def _fire_special(self, name: str) -> None:
        perms = self._special[name]
        for (_seq, conn, token, _rel) in list(self._watch_index.get(name, {}).values()):
            if perm_for(conn.domid, conn.privileged, perms, conn.target) & PERM_READ:
                conn._deliver(name, token)

    # -- tree access through a transaction view ------------------------
    def _get(self, path: str, tx: _Transaction | None) -> _Node | None:
        if tx is not None:
            if path in tx.overlay:
                return tx.overlay[path]
            node = self._nodes.get(path)
            tx.seen.setdefault(path, node.gen if node else _ABSENT)
            return node
        return self._nodes.get(path)

    def _put(self, path: str, node: _Node, tx: _Transaction | None, conn_domid: int) -> None:
        if tx is not None:
            self._get(path, tx)  # record the generation we are overwriting
            tx.overlay[path] = node
            return
        self._gen += 1
        node.gen = self._gen
        old = self._nodes.get(path)
        if old is not None:
            self._owned[old.owner] = self._owned.get(old.owner, 1) - 1
        self._owned[node.owner] = self._owned.get(node.owner, 0) + 1
        self._nodes[path] = node

    def _delete(self, path: str, tx: _Transaction | None) -> None:
        if tx is not None:
            self._get(path, tx)
            tx.overlay[path] = None
            return
        old = self._nodes.pop(path, None)
        if old is not None:
            self._gen += 1
            self._owned[old.owner] = self._owned.get(old.owner, 1) - 1

    def _owned_in_view(self, domid: int, tx: _Transaction | None) -> int:
        n = self._owned.get(domid, 0)
        if tx is not None:
            for path, node in tx.overlay.items():
                old = self._nodes.get(path)
                if old is not None and old.owner == domid:
                    n -= 1
                if node is not None and node.owner == domid:
                    n += 1
        return n

    # -- watch firing --------------------------------------------------
    def _fire(self, conn: "XsConnection | None", path: str, node: _Node | None,
              exact: bool, old_perms: tuple[Perm, ...] | None = None,
              tx: _Transaction | None = None) -> None:
        if tx is not None:
            tx.events.append((path, node, exact, old_perms))
            return
        index = self._watch_index
        if exact:       # a removed descendant: watches on exactly this node
            found = list(index.get(path, {}).values())
        else:           # the node and every ancestor, "/" included
            found = list(index.get("/", {}).values())
            i = path.find("/", 1)
            while i != -1:
                found.extend(index.get(path[:i], {}).values())
                i = path.find("/", i + 1)
            if path != "/":
                found.extend(index.get(path, {}).values())
            found.sort(key=lambda e: e[0])
        permitted: dict[int, bool] = {}          # one check per matching connection
        for (_seq, watcher, token, rel) in found:
            ok = permitted.get(id(watcher))
            if ok is None:
                ok = permitted[id(watcher)] = bool(
                    self._watch_permitted(watcher, path, node, old_perms))
            if ok:
                watcher._deliver(watcher._relative(path) if rel else path, token)

    def _watch_permitted(self, watcher: "XsConnection", path: str, node: _Node | None,
                         old_perms: tuple[Perm, ...] | None) -> bool:
        def can(perms: tuple[Perm, ...]) -> int:
            return perm_for(watcher.domid, watcher.privileged, perms, watcher.target) & PERM_READ
        if old_perms is not None and can(old_perms):
            return True
        if node is None:
            node = self._nodes.get(path)
            if node is None:
                return False
        if can(node.perms):
            return True
        parent = self._nodes.get(_parent(path))
        return bool(parent is not None and can(parent.perms))


class XsConnection:
    """One client's view of the store; the xenstore API of the project.

    Methods raise `XenStoreError` with the errno xenstored would return.
    `tx` is a transaction id from `transaction_start()` (0 = none).
    """

    def __init__(self, store: XenStore, domid: int, sink: WatchSink | None, privileged: bool):
        self.store = store
        self.domid = domid
        self.privileged = privileged
        self.sink = sink
        self.home = f"/local/domain/{domid}"
        self.watches: list[tuple[str, str, bool]] = []  # (canonical path, token, relative)
        self.transactions: dict[int, _Transaction] = {}
        self.closed = False
        # dom0's paths already found valid, as canonicalize made them: the
        # toolstack reads the same few keys of every domain again and again
        # (a path's checks cost more than the read), and for this connection
        # the answer depends on nothing but the path
        self._canonical: dict[XsPath, str] | None = {} if privileged else None

    # -- helpers -------------------------------------------------------
    def _deliver(self, path: str, token: str) -> None:
        if self.sink is not None and not self.closed:
            self.sink(path, token)

    def _relative(self, path: str) -> str:
        # get_watch_path: strip "/local/domain/<domid>/" for relative watches
        return path[len(self.home) + 1:] if path.startswith(self.home + "/") else path

    def canonicalize(self, path: XsPath, allow_special: bool = False) -> str:
        known = self._canonical
        if known is not None:
            name = known.get(path)
            if name is not None:
                return name
        name = self._canonicalize(path, allow_special)
        if known is not None and name[0] != "@":
            if len(known) >= _CANONICAL_KEPT:
                known.clear()
            known[path] = name
        return name

    def _canonicalize(self, path: XsPath, allow_special: bool) -> str:
        if isinstance(path, bytes):
            try:
                path = path.decode("ascii")
            except UnicodeDecodeError:
                _fail(_errno.EINVAL)
        if not _VALID.match(path):
            _fail(_errno.EINVAL, path or None)
        if path[0] == "@":
            if not allow_special:
                _fail(_errno.EINVAL, path)
            return path
        name = path if path[0] == "/" else f"{self.home}/{path}"
        if (name.endswith("/") and name != "/") or "//" in name:
            _fail(_errno.EINVAL, path)
        local = 0          # sscanf(node, "/local/domain/%5u/%n"): only with the slash
        parts = name.split("/", 4)
        if len(parts) >= 5 and parts[1] == "local" and parts[2] == "domain" and \
                parts[3].isdigit() and len(parts[3]) <= 5:
            local = len("/".join(parts[:4])) + 1
        # is_valid_nodename: the length below /local/domain/<id>/ (else the
        # whole path) is bounded for every connection, dom0's too
        if len(name) > XENSTORE_ABS_PATH_MAX or len(name) - local > self.store.quotas.path_len:
            _fail(_errno.EINVAL, path)
        return name

    def _tx(self, tx: int) -> _Transaction | None:
        if not tx:
            return None
        t = self.transactions.get(tx)
        if t is None:
            _fail(_errno.ENOENT)
        return t

    @property
    def target(self) -> int | None:
        return self.store.targets.get(self.domid)

    def _perm(self, node: _Node) -> int:
        return perm_for(self.domid, self.privileged, node.perms, self.target)

    def _errno_from_parents(self, name: str, err: int, want: int, tx: _Transaction | None) -> int:
        """Hide existence from clients that may not know (xenstored)."""
        path = name
        while path != "/":
            path = _parent(path)
            node = self.store._get(path, tx)
            if node is not None:
                return err if self._perm(node) & want else _errno.EACCES
        return _errno.EACCES

    def _node(self, name: str, want: int, tx: _Transaction | None) -> _Node:
        node = self.store._get(name, tx)
        if node is not None and (self._perm(node) & want) == want:
            return node
        err = _errno.EACCES if node is not None else _errno.ENOENT
        _fail(self._errno_from_parents(name, err, want, tx), name)

    def _check_payload(self, *parts: str | bytes) -> None:
        if sum(len(p) + 1 for p in parts) > XENSTORE_PAYLOAD_MAX:
            _fail(_errno.E2BIG)

    @staticmethod
    def _b(value: XsValue) -> bytes:
        # values are bytes; text that came from bytes (surrogateescape) goes back to them
        return value.encode("utf-8", "surrogateescape") if isinstance(value, str) \
            else bytes(value)

    # -- operations ----------------------------------------------------
    def read(self, path: XsPath, tx: int = 0) -> bytes:
        with self.store.lock:
            t = self._tx(tx)
            return self._node(self.canonicalize(path), PERM_READ, t).value

    def directory(self, path: XsPath, tx: int = 0) -> list[str]:
        with self.store.lock:
            t = self._tx(tx)
            return list(self._node(self.canonicalize(path), PERM_READ, t).children)

    def directory_generation(self, path: XsPath, tx: int = 0) -> tuple[list[str], int]:
        """The children and the node's generation count, as XS_DIRECTORY_PART
        (send_directory_part) reports them: a client reading a long child
        list in parts restarts when the generation changes."""
        with self.store.lock:
            node = self._node(self.canonicalize(path), PERM_READ, self._tx(tx))
            return list(node.children), node.gen

    def get_perms(self, path: XsPath, tx: int = 0) -> list[Perm]:
        with self.store.lock:
            name = self.canonicalize(path, allow_special=True)
            if name[0] == "@":
                perms = self.store._special.get(name)
                if perms is None:
                    _fail(_errno.ENOENT, name)
                if not perm_for(self.domid, self.privileged, perms, self.target) & PERM_READ:
                    _fail(_errno.EACCES, name)
                return list(perms)
            return list(self._node(name, PERM_READ, self._tx(tx)).perms)

    def exists(self, path: XsPath, tx: int = 0) -> bool:
        try:
            self.read(path, tx)
            return True
        except XenStoreError as e:
            if e.errno == _errno.ENOENT:
                return False
            raise

    def write(self, path: XsPath, value: XsValue, tx: int = 0) -> None:
        value = self._b(value)
        with self.store.lock:
            if not payload_fits(path, value):
                _fail(_errno.E2BIG)
            t = self._tx(tx)
            name = self.canonicalize(path)
            node = self.store._get(name, t)
            if node is not None:
                if not self._perm(node) & PERM_WRITE:
                    _fail(self._errno_from_parents(name, _errno.EACCES, PERM_WRITE, t), name)
                new = node.copy()
                new.value = value
                self._check_size(new)
                self.store._put(name, new, t, self.domid)
            else:
                self._errno_check_create(name, t)
                new = self._create(name, value, t)
            self.store._fire(self, name, new, False, tx=t)

    def mkdir(self, path: XsPath, tx: int = 0) -> None:
        with self.store.lock:
            self._check_payload(str(path).encode())
            t = self._tx(tx)
            name = self.canonicalize(path)
            node = self.store._get(name, t)
            if node is not None:
                if not self._perm(node) & PERM_WRITE:
                    _fail(self._errno_from_parents(name, _errno.EACCES, PERM_WRITE, t), name)
                return
            self._errno_check_create(name, t)
            new = self._create(name, b"", t)
            self.store._fire(self, name, new, False, tx=t)

    def _errno_check_create(self, name: str, t: _Transaction | None) -> None:
        err = self._errno_from_parents(name, _errno.ENOENT, PERM_WRITE, t)
        if err != _errno.ENOENT:
            _fail(err, name)

    def _check_size(self, node: _Node) -> None:
        if not self.privileged and node.size() > self.store.quotas.entry_size:
            _fail(_errno.ENOSPC)

    def _create(self, name: str, value: bytes, t: _Transaction | None) -> _Node:
        """construct_node: create `name` and missing ancestors, each copying
        its parent's perms; unprivileged creators own what they create."""
        store = self.store
        missing = [name]
        parent_name = _parent(name)
        parent = store._get(parent_name, t)
        while parent is None:
            missing.append(parent_name)
            parent_name = _parent(parent_name)
            parent = store._get(parent_name, t)
        if not self.privileged:
            owned = store._owned_in_view(self.domid, t)
            if owned + len(missing) > store.quotas.nodes:
                _fail(_errno.ENOSPC)
            # the quota on each node's size, checked before anything changes
            chain = missing[::-1]
            sizes = [parent.size() + len(_basename(chain[0])) + 1]
            plen = 8 * len(parent.perms)
            for i, path in enumerate(chain):
                sizes.append(plen + (len(value) if path == name
                                     else len(_basename(chain[i + 1])) + 1))
            if max(sizes) > store.quotas.entry_size:
                _fail(_errno.ENOSPC)
        # A node a transaction already copied is its own to change: copying
        # it again for every child added would make filling a directory
        # quadratic (a domain's cpu/<n> entries, written in one transaction).
        if t is None or t.overlay.get(parent_name) is not parent:
            parent = parent.copy()
        created: list[tuple[str, _Node]] = []
        for path in reversed(missing):
            perms = parent.perms
            if not self.privileged:
                perms = (Perm(self.domid, perms[0].access),) + perms[1:]
            node = _Node(value if path == name else b"", perms)
            parent.children.append(_basename(path))
            created.append((parent_name, parent))
            parent_name, parent = path, node
        created.append((parent_name, parent))
        for path, node in created:
            store._put(path, node, t, self.domid)
        return parent

    def rm(self, path: XsPath, tx: int = 0) -> None:
        with self.store.lock:
            t = self._tx(tx)
            name = self.canonicalize(path)
            store = self.store
            node = store._get(name, t)
            if node is None or not self._perm(node) & PERM_WRITE:
                err = _errno.EACCES if node is not None else _errno.ENOENT
                err = self._errno_from_parents(name, err, PERM_WRITE, t)
                if err == _errno.ENOENT and store._get(_parent(name), t) is not None:
                    return  # removing what isn't there is fine if the parent is
                _fail(err, name)
            if name == "/":
                _fail(_errno.EINVAL, name)
            # Fire while the perms are still visible: root with parent
            # semantics, descendants exact (delnode_sub).
            doomed: list[tuple[str, _Node]] = []
            stack = [name]
            while stack:
                p = stack.pop()
                n = store._get(p, t)
                if n is None:
                    continue
                doomed.append((p, n))
                stack.extend((p.rstrip("/") + "/" + c) for c in n.children)
            for p, n in reversed(doomed):
                store._fire(self, p, n, p != name, tx=t)
                store._delete(p, t)
            old_parent = store._get(_parent(name), t)
            assert old_parent is not None       # every node but "/" has its parent
            parent = old_parent.copy()
            parent.children.remove(_basename(name))
            store._put(_parent(name), parent, t, self.domid)

    def set_perms(self, path: XsPath, perms: Iterable[str | Perm], tx: int = 0) -> None:
        new_perms = parse_perms(perms)
        with self.store.lock:
            if not new_perms:
                _fail(_errno.EINVAL)
            if not self.privileged and len(new_perms) > self.store.quotas.perms:
                _fail(_errno.ENOSPC)
            name = self.canonicalize(path, allow_special=True)
            if name[0] == "@":
                old = self.store._special.get(name)
                if old is None:
                    _fail(_errno.ENOENT, name)
                if not perm_for(self.domid, self.privileged, old, self.target) & PERM_OWNER:
                    _fail(_errno.EACCES, name)
                if not self.privileged and new_perms[0].domid != old[0].domid:
                    _fail(_errno.EPERM, name)
                self.store._special[name] = new_perms
                return
            t = self._tx(tx)
            node = self._node(name, PERM_WRITE | PERM_OWNER, t)
            if not self.privileged and new_perms[0].domid != node.owner:
                _fail(_errno.EPERM, name)
            old = node.perms
            new = node.copy()
            new.perms = new_perms
            self.store._put(name, new, t, self.domid)
            self.store._fire(self, name, new, False, old, tx=t)

    def get_domain_path(self, domid: int) -> str:
        return f"/local/domain/{int(domid)}"

    # -- watches -------------------------------------------------------
    def watch(self, path: XsPath, token: str | bytes) -> None:
        token = token.decode() if isinstance(token, bytes) else str(token)
        with self.store.lock:
            relative = not str(path).startswith(("/", "@"))
            name = self.canonicalize(path, allow_special=True)
            if any(w[0] == name and w[1] == token for w in self.watches):
                _fail(_errno.EEXIST)
            if not self.privileged and len(self.watches) >= self.store.quotas.watches:
                _fail(_errno.E2BIG)
            self.watches.append((name, token, relative))
            self.store._index_watch(self, name, token, relative)
            # "We fire once up front: simplifies clients and restart."
            self._deliver(self._relative(name) if relative else name, token)

    def unwatch(self, path: XsPath, token: str | bytes) -> None:
        token = token.decode() if isinstance(token, bytes) else str(token)
        with self.store.lock:
            name = self.canonicalize(path, allow_special=True)
            for w in self.watches:
                if w[0] == name and w[1] == token:
                    self.watches.remove(w)
                    self.store._unindex_watch(self, name, token)
                    return
            _fail(_errno.ENOENT)

    def reset_watches(self) -> None:
        """XS_RESET_WATCHES (do_reset_watches): drop every watch and every
        open transaction of this connection."""
        with self.store.lock:
            for (name, token, _rel) in self.watches:
                self.store._unindex_watch(self, name, token)
            self.watches.clear()
            self.transactions.clear()

    # -- transactions --------------------------------------------------
    def transaction_start(self) -> int:
        with self.store.lock:
            if not self.privileged and len(self.transactions) >= self.store.quotas.transactions:
                _fail(_errno.ENOSPC)
            txid = self.store._next_tx
            self.store._next_tx = (txid + 1) & 0xFFFFFFFF or 1
            self.transactions[txid] = _Transaction(txid)
            return txid

    def transaction_end(self, tx: int, commit: bool = True) -> None:
        with self.store.lock:
            t = self.transactions.pop(tx, None) if tx else None
            if t is None:
                _fail(_errno.ENOENT)
            if not commit:
                return
            store = self.store
            for path, gen in t.seen.items():
                node = store._nodes.get(path)
                if (node.gen if node else _ABSENT) != gen:
                    _fail(_errno.EAGAIN)
            if not self.privileged:
                # Quota as it will stand after the commit.
                if store._owned_in_view(self.domid, t) > store.quotas.nodes and \
                        store._owned_in_view(self.domid, t) > store._owned.get(self.domid, 0):
                    _fail(_errno.ENOSPC)
            for path, node in t.overlay.items():
                if node is None:
                    store._delete(path, None)
            for path, node in t.overlay.items():
                if node is not None:
                    store._put(path, node.copy(), None, self.domid)
            for (path, node, exact, old) in t.events:
                store._fire(self, path, node, exact, old)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store._disconnect(self)


class QueueSink:
    """A watch sink for in-process clients (the toolstack): events queue up
    and `wait(timeout)` returns the next (path, token) or None."""

    def __init__(self, limit: int = 4096):
        self._cond = threading.Condition()
        self._events: list[tuple[str, str]] = []
        self._limit = limit

    def __call__(self, path: str, token: str) -> None:
        with self._cond:
            if (path, token) in self._events:
                return  # xenstored drops an identical pending event
            if len(self._events) < self._limit:
                self._events.append((path, token))
                self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> tuple[str, str] | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._events, timeout):
                return None
            return self._events.pop(0)

    def pending(self) -> int:
        with self._cond:
            return len(self._events)
