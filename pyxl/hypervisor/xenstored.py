"""xenstored's Unix socket: the host's xenstore for Xen's own tools.

Serves xenstored's wire protocol (pyxl.hypervisor.xs_wire) on a Unix stream
socket, as tools/xenstore/xenstored_core.c does on /run/xenstored/socket, so
that Debian's xenstore-utils, libxenstore and Python clients work unmodified
with XENSTORED_PATH pointing here.  Every connection acts as dom0 (a
privileged connection, as xenstored's socket connections are); only the
daemon's own uid may connect: the directory is 0700, the socket 0600, and
the peer's uid is checked again (SO_PEERCRED) on every accepted connection.

The operations are one table, `OPS`, as xenstored's `wire_funcs`: a row
names the handler, how its payload is checked (`onearg`, at least/exactly
N strings) and its flags (XS_FLAG_NOTID: the transaction id is ignored;
XS_FLAG_PRIV: privileged connections only).  `process_message` is
xenstored's function of that name: unknown type -> ENOSYS, privilege ->
EACCES, transaction lookup -> ENOENT, argument check -> EINVAL, then the
handler; an error is answered with XS_ERROR and its `xsd_errors` name.
A message announcing more than XENSTORE_PAYLOAD_MAX bytes ends the
connection (handle_input's "Client tried to feed us").  The domains' own
wire (pyxl.hypervisor.services) serves the same rows through the same
`admit` and `respond`.

Threads: one reader per connection (its requests run there) and one writer,
fed by a queue, so a watch event fired by another connection's write (the
sink runs under the store lock) never blocks.  The reply to a request goes
out before any event the request fired (do_watch sends its ack, then the
initial event); identical pending events are dropped, except for special
"@" paths (send_event), and events beyond a bound are dropped.
"""

from __future__ import annotations

import collections
import errno as _errno
import os
import socket
import stat
import struct
import threading
from dataclasses import dataclass
from typing import Callable, Protocol, TypeVar

from . import xs_wire
from .xenstore import XenStore, XsConnection
from .xs_wire import SOCKET_NAME, XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX, XsType

EVENT_QUEUE_LIMIT = 1024         # pending watch events per connection
REPLY_QUEUE_LIMIT = 256          # pipelined replies before the reader waits

XS_FLAG_NOTID = 1                # ignore the transaction id
XS_FLAG_PRIV = 2                 # privileged domain only


class XsError(OSError):
    """A request answered with XS_ERROR with this errno (an OSError, as the
    store's errors are, so the domains' wire answers both alike)."""

    def __init__(self, err: int):
        super().__init__(err, os.strerror(err))


class Server(Protocol):
    """What the handlers ask of the server a request came through
    (XenstoredServer, or the hypervisor for the domains' wire)."""

    store: XenStore

    def domain_connected(self, domid: int) -> bool | None: ...

    def log(self, msg: str) -> None: ...


class Connection(Protocol):
    """The connection a request came on (ClientConnection, or a domain's)."""

    xs: XsConnection

    @property
    def server(self) -> Server: ...


@dataclass(slots=True)
class Request:
    """One message being processed: `args` are the payload's nul-terminated
    strings (bytes) as the row's check found them."""

    conn: Connection
    tx: int
    payload: bytes
    args: list

    @property
    def xs(self) -> XsConnection:
        return self.conn.xs


# -- argument checks (each returns the args or raises XsError(EINVAL)) ------
def onearg(payload: bytes) -> list:
    """xenstored's onearg: exactly one nul, at the end."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise XsError(_errno.EINVAL)
    return [payload[:-1]]


def at_least(n: int) -> Callable[[bytes], list]:
    """get_strings(...) < n is EINVAL; the strings after the n-th are kept
    for rows that want them."""
    def check(payload: bytes) -> list:
        vec = xs_wire.strings(payload)
        if len(vec) < n:
            raise XsError(_errno.EINVAL)
        return vec
    check.__name__ = "at_least_%d" % n
    return check


def exactly(n: int) -> Callable[[bytes], list]:
    """get_strings(...) != n (or xs_count_strings != n) is EINVAL."""
    def check(payload: bytes) -> list:
        vec = xs_wire.strings(payload)
        if len(vec) != n:
            raise XsError(_errno.EINVAL)
        return vec
    check.__name__ = "exactly_%d" % n
    return check


def no_check(payload: bytes) -> list:
    return []


def _text(b: bytes) -> str:
    return b.decode("latin-1")


# -- handlers (xenstored_core.c, xenstored_watch.c, xenstored_transaction.c,
# xenstored_domain.c, xenstored_control.c) ---------------------------------
def do_control(req: Request) -> bytes:
    """do_control: the commands pyxl's daemon has."""
    cmd = req.args[0]
    rest = req.args[1:]
    if cmd == b"check":
        return b"OK\0"
    if cmd == b"print":
        if len(rest) != 1:
            raise XsError(_errno.EINVAL)
        req.conn.server.log("xenstored: %s" % rest[0].decode("latin-1"))
        return b"OK\0"
    if cmd == b"help":
        if rest:
            raise XsError(_errno.EINVAL)
        return "".join("%s\t%s\n" % (name, pars) for name, pars in CONTROL_HELP).encode() + b"\0"
    raise XsError(_errno.EINVAL)


CONTROL_HELP = (("check", ""), ("print", "<string>"), ("help", ""))


def send_directory(req: Request) -> bytes:
    return b"".join(c.encode() + b"\0" for c in req.xs.directory(_text(req.args[0]), req.tx))


def send_directory_part(req: Request) -> bytes:
    children, gen = req.xs.directory_generation(_text(req.args[0]), req.tx)
    childlist = b"".join(c.encode() + b"\0" for c in children)
    off = xs_wire.atoi(req.args[1]) & 0xFFFFFFFF
    gen_s = b"%d\0" % gen
    if off >= len(childlist):
        return gen_s + b"\0"
    maxlen = XENSTORE_PAYLOAD_MAX - len(gen_s) - 1
    length = 0
    child = off
    while True:
        name_len = childlist.index(b"\0", child) - child
        if length + name_len >= maxlen:
            break
        length += name_len + 1
        child += name_len + 1
        if off + length == len(childlist):
            break
    data = gen_s + childlist[off:off + length]
    if off + length == len(childlist):
        data += b"\0"
    return data


def do_read(req: Request) -> bytes:
    return req.xs.read(_text(req.args[0]), req.tx)


def do_get_perms(req: Request) -> bytes:
    return b"".join(str(p).encode() + b"\0"
                    for p in req.xs.get_perms(_text(req.args[0]), req.tx))


def do_watch(req: Request) -> bytes:
    path, token = _text(req.args[0]), _text(req.args[1])
    if path.startswith("@") and len(path) > XENSTORE_REL_PATH_MAX:
        raise XsError(_errno.EINVAL)
    req.xs.watch(path, token)       # its initial event waits for this reply
    return b"OK\0"


def do_unwatch(req: Request) -> bytes:
    req.xs.unwatch(_text(req.args[0]), _text(req.args[1]))
    return b"OK\0"


def do_transaction_start(req: Request) -> bytes:
    if req.tx:                      # no nested transactions
        raise XsError(_errno.EBUSY)
    return b"%d\0" % req.xs.transaction_start()


def do_transaction_end(req: Request) -> bytes:
    if req.args[0] not in (b"T", b"F"):
        raise XsError(_errno.EINVAL)
    if not req.tx:
        raise XsError(_errno.ENOENT)
    req.xs.transaction_end(req.tx, req.args[0] == b"T")
    return b"OK\0"


def do_introduce(req: Request) -> bytes:
    domid = xs_wire.atoi(req.args[0]) & 0xFFFFFFFF
    port = xs_wire.atoi(req.args[2]) & 0xFFFFFFFF
    if port == 0:
        raise XsError(_errno.EINVAL)
    if req.conn.server.domain_connected(domid) is None:
        raise XsError(_errno.EINVAL)   # no such domain: its interface cannot be mapped
    return b"OK\0"                     # the hypervisor introduced it when it was built


def _onearg_domain(req: Request) -> int:
    """onearg_domain + find_connected_domain."""
    domid = xs_wire.atoi(req.args[0]) & 0xFFFFFFFF
    if not domid:
        raise XsError(_errno.EINVAL)
    connected = req.conn.server.domain_connected(domid)
    if connected is None:
        raise XsError(_errno.ENOENT)
    if not connected:
        raise XsError(_errno.EINVAL)
    return domid


def do_release(req: Request) -> bytes:
    req.conn.server.store.release(_onearg_domain(req))
    return b"OK\0"


def do_resume(req: Request) -> bytes:
    _onearg_domain(req)
    return b"OK\0"


def do_get_domain_path(req: Request) -> bytes:
    domid = xs_wire.atoi(req.args[0]) & 0xFFFFFFFF
    return b"/local/domain/%d\0" % domid


def do_write(req: Request) -> bytes:
    path, _, value = req.payload.partition(b"\0")
    req.xs.write(_text(path), value, req.tx)
    return b"OK\0"


def do_mkdir(req: Request) -> bytes:
    req.xs.mkdir(_text(req.args[0]), req.tx)
    return b"OK\0"


def do_rm(req: Request) -> bytes:
    req.xs.rm(_text(req.args[0]), req.tx)
    return b"OK\0"


def do_set_perms(req: Request) -> bytes:
    path, perms = _text(req.args[0]), [_text(p) for p in req.args[1:]]
    req.xs.set_perms(path, perms, req.tx)
    return b"OK\0"


def do_is_domain_introduced(req: Request) -> bytes:
    domid = xs_wire.atoi(req.args[0]) & 0xFFFFFFFF
    known = domid == xs_wire.DOMID_SELF or req.conn.server.domain_connected(domid) is not None
    return b"T\0" if known else b"F\0"


def do_set_target(req: Request) -> bytes:
    for arg in req.args[:2]:
        domid = xs_wire.atoi(arg) & 0xFFFFFFFF
        connected = req.conn.server.domain_connected(domid)
        if connected is None:
            raise XsError(_errno.ENOENT)
        if not connected:
            raise XsError(_errno.EINVAL)
    req.conn.server.store.set_target(xs_wire.atoi(req.args[0]) & 0xFFFFFFFF,
                                     xs_wire.atoi(req.args[1]) & 0xFFFFFFFF)
    return b"OK\0"


def do_reset_watches(req: Request) -> bytes:
    req.xs.reset_watches()
    return b"OK\0"


class Row:
    __slots__ = ("name", "func", "check", "flags")

    def __init__(self, name: str, func: Callable[[Request], bytes] | None,
                 check: Callable[[bytes], list] = no_check, flags: int = 0):
        self.name, self.func, self.check, self.flags = name, func, check, flags


# xenstored_core.c's wire_funcs[XS_TYPE_COUNT]: a new operation is a new row.
OPS: dict[int, Row] = {
    XsType.CONTROL: Row("CONTROL", do_control, at_least(1), XS_FLAG_PRIV),
    XsType.DIRECTORY: Row("DIRECTORY", send_directory, onearg),
    XsType.READ: Row("READ", do_read, onearg),
    XsType.GET_PERMS: Row("GET_PERMS", do_get_perms, onearg),
    XsType.WATCH: Row("WATCH", do_watch, exactly(2), XS_FLAG_NOTID),
    XsType.UNWATCH: Row("UNWATCH", do_unwatch, exactly(2), XS_FLAG_NOTID),
    XsType.TRANSACTION_START: Row("TRANSACTION_START", do_transaction_start),
    XsType.TRANSACTION_END: Row("TRANSACTION_END", do_transaction_end, onearg),
    XsType.INTRODUCE: Row("INTRODUCE", do_introduce, at_least(3), XS_FLAG_PRIV),
    XsType.RELEASE: Row("RELEASE", do_release, onearg, XS_FLAG_PRIV),
    XsType.GET_DOMAIN_PATH: Row("GET_DOMAIN_PATH", do_get_domain_path, onearg),
    XsType.WRITE: Row("WRITE", do_write, at_least(1)),
    XsType.MKDIR: Row("MKDIR", do_mkdir, onearg),
    XsType.RM: Row("RM", do_rm, onearg),
    XsType.SET_PERMS: Row("SET_PERMS", do_set_perms, at_least(2)),
    XsType.WATCH_EVENT: Row("WATCH_EVENT", None),
    XsType.ERROR: Row("ERROR", None),
    XsType.IS_DOMAIN_INTRODUCED: Row("IS_DOMAIN_INTRODUCED", do_is_domain_introduced, onearg,
                                     XS_FLAG_PRIV),
    XsType.RESUME: Row("RESUME", do_resume, onearg, XS_FLAG_PRIV),
    XsType.SET_TARGET: Row("SET_TARGET", do_set_target, at_least(2), XS_FLAG_PRIV),
    XsType.RESET_WATCHES: Row("RESET_WATCHES", do_reset_watches),
    XsType.DIRECTORY_PART: Row("DIRECTORY_PART", send_directory_part, exactly(2)),
}


class Admissible(Protocol):
    """A row of a request table, as `admit` reads it."""

    @property
    def func(self) -> object: ...

    @property
    def flags(self) -> int: ...


_Row = TypeVar("_Row", bound=Admissible)


def admit(row: _Row | None, xs: XsConnection, tx: int) -> tuple[_Row, int]:
    """process_message's checks before the payload's, in its order: no row
    or no handler -> ENOSYS, an XS_FLAG_PRIV row on a connection for which
    domain_is_unprivileged -> EACCES; then the row and the transaction id the
    handler sees: 0 for an XS_FLAG_NOTID row, else transaction_lookup's
    (ENOENT if the connection has no such transaction).  `row` is any
    table's row with `func` and `flags` (the domains' wire shares this)."""
    if row is None or row.func is None:
        raise XsError(_errno.ENOSYS)
    flags = row.flags
    if flags & XS_FLAG_PRIV and not xs.privileged:
        raise XsError(_errno.EACCES)
    if flags & XS_FLAG_NOTID:
        return row, 0
    if tx and tx not in xs.transactions:
        raise XsError(_errno.ENOENT)
    return row, tx


def respond(row: Row, req: Request) -> bytes:
    """The row's handler, then send_reply's bound: a reply over
    XENSTORE_PAYLOAD_MAX is E2BIG instead."""
    if row.func is None:                 # no handler: ENOSYS, as admit says
        raise XsError(_errno.ENOSYS)
    reply = row.func(req)
    if len(reply) > XENSTORE_PAYLOAD_MAX:
        raise XsError(_errno.E2BIG)
    return reply


def process_message(conn: "ClientConnection", kind: int, tx: int, payload: bytes) -> tuple[int, bytes]:
    """xenstored's process_message: (reply type, reply payload)."""
    try:
        row, tx = admit(OPS.get(kind), conn.xs, tx)
        return kind, respond(row, Request(conn, tx, payload, row.check(payload)))
    except OSError as e:                                # XsError, XenStoreError and co
        err = e.errno or _errno.EINVAL
    except Exception as e:      # a bug here: the client is told (EIO), not cut off
        conn.server.log("xenstored: %s failed: %r" % (OPS[kind].name, e))
        err = _errno.EIO
    return XsType.ERROR, xs_wire.error_name(err).encode() + b"\0"


class ClientConnection:
    """One accepted socket: a dom0 xenstore connection."""

    def __init__(self, server: "XenstoredServer", sock: socket.socket,
                 xs: XsConnection | None = None):
        self.server = server
        self.sock = sock
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[bytes, bool]] = collections.deque()  # (msg, is_event)
        self._events = 0
        self._replies = 0
        self._holding = False
        self._held: list[bytes] = []
        self.closed = False
        self._live = 2                   # reader and writer: the last one closes the socket
        self.xs = xs if xs is not None else server.store.connect(0, self._watch_event,
                                                                  privileged=True)
        self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                        name="xenstored-tx")
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                        name="xenstored-rx")

    def start(self) -> None:
        self._writer.start()
        self._reader.start()

    # -- output ------------------------------------------------------------
    def _watch_event(self, path: str, token: str) -> None:
        """The store's sink (called under the store lock: never blocks)."""
        body = path.encode("latin-1") + b"\0" + token.encode("latin-1") + b"\0"
        if len(body) > XENSTORE_PAYLOAD_MAX:
            return                       # send_event: no over-long events
        msg = xs_wire.pack(XsType.WATCH_EVENT, body)
        with self._cond:
            if self.closed:
                return
            if self._holding:
                if path.startswith("@") or msg not in self._held:
                    self._held.append(msg)
                return
            self._queue_event(msg, path)

    def _queue_event(self, msg: bytes, path: str) -> None:
        if not path.startswith("@") and (msg, True) in self._queue:
            return                       # an identical event is pending
        if self._events >= EVENT_QUEUE_LIMIT:
            return
        self._events += 1
        self._queue.append((msg, True))
        self._cond.notify_all()

    def _reply(self, msg: bytes) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self._replies < REPLY_QUEUE_LIMIT)
            self._holding = False
            if self.closed:
                return
            self._replies += 1
            self._queue.append((msg, False))
            held, self._held = self._held, []
            for ev in held:
                path = ev[xs_wire.HEADER.size:].split(b"\0", 1)[0].decode("latin-1")
                self._queue_event(ev, path)
            self._cond.notify_all()

    def _write_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._queue or self.closed)
                    if self.closed:
                        return
                    msg, is_event = self._queue.popleft()
                    if is_event:
                        self._events -= 1
                    else:
                        self._replies -= 1
                    self._cond.notify_all()
                self.sock.sendall(msg)
        except OSError:
            self.close()
        finally:
            self._finish()

    # -- input -------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            data = self.sock.recv(n - len(buf))
            if not data:
                return None
            buf += data
        return bytes(buf)

    def _read_loop(self) -> None:
        try:
            while not self.closed:
                head = self._recv_exact(xs_wire.HEADER.size)
                if head is None:
                    break
                kind, req_id, tx_id, length = xs_wire.HEADER.unpack(head)
                if length > XENSTORE_PAYLOAD_MAX:
                    self.server.log("xenstored: client tried to feed us %d bytes" % length)
                    break
                payload = self._recv_exact(length) if length else b""
                if payload is None:
                    break
                with self._cond:
                    self._holding = True
                reply_kind, body = process_message(self, kind, tx_id, payload)
                self._reply(xs_wire.pack(reply_kind, body, req_id, tx_id))
        except OSError:
            pass
        finally:
            self.close()
            self._finish()

    def close(self) -> None:
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self._cond.notify_all()
        self.xs.close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server._forget(self)

    def _finish(self) -> None:
        """The last of the two threads closes the descriptor."""
        with self._cond:
            self._live -= 1
            last = self._live == 0
        if last:
            self.sock.close()


class StoreHost(Protocol):
    """What xenstored asks of the hypervisor it serves."""

    xenstore: XenStore

    def domain_connected(self, domid: int) -> bool | None: ...


class XenstoredServer:
    """Listens on `<directory>/socket`; `hv` supplies the store
    (`hv.xenstore`) and which domains exist (`hv.domain_connected`)."""

    def __init__(self, hv: StoreHost, directory: str, log: Callable[[str], None] = lambda msg: None):
        self.hv = hv
        self.store: XenStore = hv.xenstore
        self.directory = directory
        self.path = os.path.join(directory, SOCKET_NAME)
        self.log = log
        self.uid = os.geteuid()
        self._listener: socket.socket | None = None
        self._dir_fd = -1
        self._conns: set[ClientConnection] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def domain_connected(self, domid: int) -> bool | None:
        """None: no such domain; else whether it has a connection."""
        return self.hv.domain_connected(domid)

    def _open_directory(self) -> int:
        """The socket's directory, opened without following a symbolic link:
        it must be a real directory of our uid, and is made 0700.  The
        socket is then bound through this descriptor, so what was checked is
        where it lands (and a long host root does not meet AF_UNIX's
        108-byte path limit)."""
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            pass
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != self.uid:
                raise OSError(_errno.EPERM, "%s is not a directory of uid %d"
                              % (self.directory, self.uid))
            os.fchmod(fd, 0o700)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def start(self) -> None:
        self._dir_fd = self._open_directory()
        try:
            os.unlink(SOCKET_NAME, dir_fd=self._dir_fd)   # stale: our caller holds the host's lock
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            s.bind("/proc/self/fd/%d/%s" % (self._dir_fd, SOCKET_NAME))
        finally:
            os.umask(old)
        os.chmod(SOCKET_NAME, 0o600, dir_fd=self._dir_fd)
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept_loop, args=(s,), name="xenstored",
                         daemon=True).start()

    def _peer_uid(self, conn: socket.socket) -> int:
        cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", cred)[1]

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            try:
                if self._peer_uid(sock) != self.uid:
                    sock.close()        # root-only, as /run/xenstored/socket
                    continue
                conn = ClientConnection(self, sock)
                with self._lock:
                    if self._stopped:
                        conn.close()
                        sock.close()
                        continue
                    self._conns.add(conn)
                conn.start()
            except Exception as e:     # keep serving the others
                self.log("xenstored: connection failed: %r" % (e,))
                try:
                    sock.close()
                except OSError:
                    pass

    def _forget(self, conn: ClientConnection) -> None:
        with self._lock:
            self._conns.discard(conn)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            conns = list(self._conns)
        if self._listener is not None:
            self._listener.close()
            try:
                os.unlink(SOCKET_NAME, dir_fd=self._dir_fd)
            except FileNotFoundError:
                pass
            os.close(self._dir_fd)
        for c in conns:
            c.close()
