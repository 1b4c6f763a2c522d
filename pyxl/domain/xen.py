"""`XenInterface`: a domain's hypercalls and xenbus, over its one socket to
the hypervisor services (pyxl/hypervisor/wire.py describes the frames).

    xen = XenInterface.from_fd(spec["hv_fd"])  # the fd the daemon passed in the spec
    xen.domid                               # told by the hypervisor, not chosen
    xen.write("device/vtpm/0/state", "3")   # relative to /local/domain/<domid>
    xen.watch("backend/vtpm", "be"); xen.read_watch(timeout=1.0)
    page = xen.alloc_page(); ref = xen.grant_access(page, backend_domid)
    port = xen.evtchn_alloc_unbound(backend_domid); xen.evtchn_notify(port)
    m = xen.map_grant(frontend_domid, ref); m.buf[0:4]
    xen.evtchn_wait(timeout=1.0); xen.console_write(b"hello\\n")

Calls are synchronous and thread-safe. There is no reader thread: whichever
thread is waiting (for a reply, a watch event, a pending port or console
input) reads the socket itself and files what arrives for the others
(leader/follower), so a round trip made while no other thread waits
costs no thread hand-off, and several threads of one domain (a shell and
a driver, say) can wait on different things at once.  A thread parked on
a watch or on console input (a stub domain's shutdown watcher, a
backend's xenbus listener) that is reading when a round trip starts reads
and files its reply too: the caller is woken once, when it is there.
Only a wait that must also poll sockets the reader does not (an event
channel wait on direct channels) comes first: the reader is woken and
stands aside while it waits.  Errors come back as `XenError` (an OSError
with the errno the hypervisor returned).

Console output goes onto the domain's console ring page
(pyxl.hypervisor.xencons), which is handed to the hypervisor with every
HELLO; a frame only kicks the daemon.  Keyboard input comes on the same
page (its `in`), a frame (CONSOLE_INPUT) only saying it is there: input
the daemon put there is read once even when that daemon is killed first
(console_read).  The one thread of our own,
"console-room", runs only while output waits for room on that ring
(console_write).

A request made while the daemon is away (killed, not yet restarted) is not
an error once something will resume the connection (`resumable`, set by
the domain's xenbus-resume thread): as on Xen's xenstore ring, where a
request waits for xenstored, the calling thread waits for the resume and
the request goes out on the new connection.  One whose reply the break
lost is sent again when doing it twice is harmless (`_RESENT`: xenstore
requests outside a transaction, new event channels and grants, memory
reservations); one naming a transaction that started before the break
fails EAGAIN, as xenstored answers for a transaction it lost, and callers
retry the whole transaction (`transaction()`); one naming an event channel
or a grant of the old hypervisor, or a device register access (iomem),
fails EPIPE: those are gone with it, and the drivers' resume handlers make
new ones (`generation`).

A bound interdomain channel usually has a socket of its own to the peer
domain (pyxl/hypervisor/evtchn.py, "Direct channels"): a send is one byte
written to it, and a wait for ports that all have one polls just those
sockets, leaving the hypervisor's socket to whichever thread reads it.

Imports only the standard library's basics: domain processes are small.
"""

from __future__ import annotations

import _socket
import errno as _errno
import fcntl
import mmap
import os
import select
import threading
import time

from pyxl.hypervisor import wire, xencons

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable, Iterable, Sequence, TypeVar

    _T = TypeVar("_T")

PAGE_SIZE = 4096
DOMID_SELF = 0x7FF0
ENV_FD = "PYXL_XEN_FD"
CONSOLE_PENDING_MAX = 64 * 1024   # console output waiting in front of a full ring, at most

# requests that name nothing of the old hypervisor (no event channel, no
# grant, no transaction) and that may be made twice: sent again on the new
# connection when a break lost their reply (xs.c's xs_talkv blocks until
# xenstored answers)
_RESENT = frozenset({
    wire.XS_READ, wire.XS_WRITE, wire.XS_MKDIR, wire.XS_RM, wire.XS_DIRECTORY,
    wire.XS_GET_PERMS, wire.XS_SET_PERMS, wire.XS_GET_DOMAIN_PATH, wire.XS_WATCH,
    wire.XS_UNWATCH, wire.XS_TRANSACTION_START, wire.EVTCHN_ALLOC_UNBOUND,
    wire.GNT_GRANT, wire.MEMORY_RESERVATION})
# requests that name an event channel or a grant, or go to a device's
# registers (whose state -- a TIS locality held -- the old hypervisor's
# device model took with it): made during a break, they name what is gone
_OLD_OBJECTS = frozenset({
    wire.EVTCHN_BIND_INTERDOMAIN, wire.EVTCHN_SEND, wire.EVTCHN_CLOSE, wire.EVTCHN_STATUS,
    wire.GNT_END_ACCESS, wire.GNT_MAP, wire.GNT_UNMAP, wire.MMIO_READ, wire.MMIO_WRITE})


class XenError(OSError):
    """A hypercall or xenstore operation failed; `.name` is the errno name."""

    def __init__(self, name: str, message: str = ""):
        err = getattr(_errno, name, _errno.EINVAL)
        super().__init__(err, message or name)
        self.name = name


class Page:
    """One page of this domain's memory that can be granted: a 4096-byte
    memfd mapped shared; `buf` is a writable memoryview of it."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("pyxl-page", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(self.fd, PAGE_SIZE)
        # a page stays a page: whoever maps it can never fault past its end
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        self.mmap = mmap.mmap(self.fd, PAGE_SIZE, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self.buf = memoryview(self.mmap)

    def close(self) -> None:
        if self.fd >= 0:
            self.buf.release()
            self.mmap.close()
            os.close(self.fd)
            self.fd = -1


class Mapping:
    """A foreign page mapped into this domain (map_grant)."""

    def __init__(self, domid: int, ref: int, fd: int, readonly: bool):
        self.domid, self.ref, self.readonly = domid, ref, readonly
        prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
        try:
            self.mmap: mmap.mmap | None = mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED, prot)
        finally:
            os.close(fd)
        self.buf = memoryview(self.mmap)

    def close(self) -> None:
        if self.mmap is not None:
            self.buf.release()
            self.mmap.close()
            self.mmap = None


_DRAIN = 256          # bytes _drain asks for at once (one byte per notification)
_RAN_OUT = -1         # _wait_alone: its poll ran out (no port is negative)
# evtchn_notify's send.  MSG_NOSIGNAL: a domain process runs with SIGPIPE at
# its default action (pyxl.domain.process), and the socket is a stream: a
# peer gone must be EPIPE there, not the end of this domain
_NOTIFY = _socket.MSG_DONTWAIT | _socket.MSG_NOSIGNAL
# the console's kick, made once: output on the ring; and output waiting for room
_KICK = wire.Frame(wire.CONSOLE_KICK, [b"0"], flags=wire.FLAG_ONEWAY)
_KICK_WAITING = wire.Frame(wire.CONSOLE_KICK, [b"1"], flags=wire.FLAG_ONEWAY)


class _Direct:
    """An event channel's own socket to its peer domain (evtchn_wait,
    evtchn_notify); `users`: threads polling it, `dead`: forgotten, to be
    closed by its last user; `poll`: its socket and the closed flag,
    registered once, for a wait on this channel alone by one thread."""

    __slots__ = ("sock", "fd", "poll", "users", "dead")

    def __init__(self, sock: _socket.socket, closed_fd: int):
        self.sock, self.fd, self.users, self.dead = sock, sock.fileno(), 0, False
        self.poll = select.poll()
        self.poll.register(self.fd, select.POLLIN)
        self.poll.register(closed_fd, select.POLLIN)


class XenInterface:
    def __init__(self, sock: _socket.socket, domid: int | None = None):
        """`sock`: this domain's connected socket (socket.socket or
        _socket.socket, SOCK_SEQPACKET or SOCK_STREAM). `domid`, if given, is
        checked against what the hypervisor says this domain is."""
        self.sock = sock
        self.chan = wire.Channel(sock)
        self._lock = threading.Lock()          # request ids, send
        # `with self._mutex` takes the condition's lock itself: a Condition's
        # own __enter__/__exit__ are Python calls, on every event-channel wait
        self._mutex = threading.RLock()
        self._cond = threading.Condition(self._mutex)
        self._next_id = 1
        self._replies: dict[int, wire.Frame] = {}
        self._watch_events: list[tuple[str, str]] = []
        self._pending: list[int] = []            # ports, in arrival order
        self._console_in_waiting = False         # the daemon holds more input (console_read)
        self._direct: dict[int, _Direct] = {}    # port -> its socket to the peer domain
        self.closed = False
        self.broken = threading.Event()          # set with `closed`; cleared by resume()
        self.detached = False                    # close() was called: no resume wanted
        self._reading = False                    # a waiter is reading the socket
        self._reader_first = False               # ... and polls direct channels too
        self._first = 0                          # waiters that poll direct channels
        # wakes a parked reader; kept for the object's life (resume() may follow close())
        self._kick = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        # readable once the connection is closed: ends waits on direct channels
        self._closed_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._poll = self._make_poll(sock)
        self._watches: dict[tuple[str, str], None] = {}   # registered watches, in order
        self.generation = 0                      # bumped by every resume()
        self.resumable = False                   # a thread resumes us after a break
        self._resuming: int | None = None        # the thread in resume(), until it is done
        self._no_wait = threading.local()        # .on: this thread's calls never wait
        self._tx_gen: dict[int, int] = {}        # open transaction -> its generation (until ended)
        # the console: its ring page (handed over with every HELLO), the
        # output waiting in front of a full ring, the daemon's word that the
        # ring has room, the thread that waits for it (console_write)
        self.console_page = Page()
        self._console_lock = threading.Lock()
        self._console_pending = bytearray()
        self.console_dropped = 0                 # bytes the pending buffer let go (oldest first)
        self._console_room = False
        self._console_waiter: threading.Thread | None = None
        version, told = self._call(wire.HELLO, [wire.WIRE_VERSION], fds=[self.console_page.fd])
        self.domid = int(told)
        if domid is not None and int(domid) != self.domid:
            raise XenError("EPROTO", f"this socket belongs to domain {self.domid}, not {domid}")
        self.home = f"/local/domain/{self.domid}"

    def resume(self, sock: _socket.socket) -> None:
        """Carry on over a new connection to a (new) hypervisor, in place, so
        every driver holding this object keeps working: what Linux's
        xs_resume does after a restore.  Everything the old hypervisor held
        for us (event channels, grants, pending events, replies) is gone;
        the watches are registered again (each fires once, as on any
        registration) and the drivers' own resume handlers redo the rest."""
        with self._lock, self._mutex:
            if not self.closed:
                raise XenError("EBUSY", "the hypervisor connection is still up")
            try:
                self.sock.shutdown(_socket.SHUT_RDWR)    # wakes a reader still polling it
            except OSError:
                pass
            while self._reading:
                self._cond.wait(0.05)
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = sock
            self.chan = wire.Channel(sock)
            self._poll = self._make_poll(sock)
            self._replies.clear()
            self._watch_events.clear()
            self._pending.clear()
            for port in list(self._direct):
                self._drop_direct(port)
            try:
                os.eventfd_read(self._closed_fd)
            except BlockingIOError:
                pass
            self.closed = self.detached = False
            # bumped as soon as a call can reach the new hypervisor: a caller
            # that compares generations around a call sees the switch
            self.generation += 1
            self.broken.clear()
            # the other threads' calls wait until HELLO and the watches are through
            self._resuming = threading.get_ident()
        try:
            # the console page goes over again: the new daemon takes what
            # the old one left on it before anything newer
            version, told = self._call(wire.HELLO, [wire.WIRE_VERSION],
                                       fds=[self.console_page.fd])
            if int(told) != self.domid:
                self.close()
                raise XenError("EPROTO", f"reconnected as domain {int(told)}, not {self.domid}")
            for path, token in list(self._watches):
                self._call(wire.XS_WATCH, [path, token])
        finally:
            with self._mutex:
                self._resuming = None
                self._cond.notify_all()
        # output kept in front of the ring, and a kick for what other
        # threads put on it while the resume was under way
        self.console_write(b"", kick=True)

    @classmethod
    def from_fd(cls, fd: int) -> "XenInterface":
        return cls(_socket.socket(fileno=fd))

    @classmethod
    def from_env(cls) -> "XenInterface":
        """For a process started with PYXL_XEN_FD (the tests' and benches'
        harnesses); the daemon hands a domain its fd in the spec instead."""
        fd = os.environ.get(ENV_FD)
        if not fd:
            raise RuntimeError(f"{ENV_FD} is not set: this process was not started as a domain")
        return cls.from_fd(int(fd))

    # -- plumbing --------------------------------------------------------
    def _make_poll(self, sock: _socket.socket) -> select.poll:
        poll = select.poll()
        poll.register(sock.fileno(), select.POLLIN)
        poll.register(self._kick, select.POLLIN)
        return poll

    def _set_closed(self) -> None:
        """With self._cond held: the hypervisor is gone, and with it every
        event channel (the peers of the direct ones read EOF)."""
        self.closed = True
        self.broken.set()
        for port in list(self._direct):
            self._drop_direct(port)
        os.eventfd_write(self._closed_fd, 1)

    def _wait(self, pred: Callable[[], bool], timeout: float | None, first: bool = True,
              extra: Sequence[tuple[int, _Direct]] = ()) -> bool:
        """With self._cond held: wait until pred() holds (True), the timeout
        passes or the connection closes (False). One waiter reads the
        socket and files every frame; the others sleep until it notifies.
        `extra`: direct channels this waiter polls too (evtchn_wait); such
        a waiter (`first`: a reply or an event channel, with direct
        channels to poll) reads in place of one that does not poll them,
        which is kicked out of its poll and waits until no such waiter is
        left.  Any other waiter leaves the socket to the reader there is:
        a reply is filed by whichever thread reads it (one wake-up of its
        caller, instead of kicking the reader out and reading in turn)."""
        first = first and bool(extra)
        deadline = None if timeout is None else time.monotonic() + timeout
        if first:
            self._first += 1
        try:
            while True:
                if pred():
                    return True
                if self.closed:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if self._reading or (not first and self._first):
                    if first and not self._reader_first:
                        os.eventfd_write(self._kick, 1)
                    self._cond.wait(left)
                    continue
                self._read_one(left, first, extra)
        finally:
            if first:
                self._first -= 1
            if not self._reading:
                self._cond.notify_all()     # a waiter left behind must take over reading

    def _read_one(self, left: float | None, first: bool,
                  extra: Sequence[tuple[int, _Direct]] = ()) -> None:
        """With self._cond held, released meanwhile: read and file one frame
        (none if the poll timed out or was kicked), and drain those of the
        `extra` direct channels found readable."""
        self._reading, self._reader_first = True, first
        poll = self._poll
        for _port, d in extra:
            d.users += 1
            poll.register(d.fd, select.POLLIN)
        self._cond.release()
        frame = eof = None
        ready: set[int] = set()
        try:
            ms = -1 if left is None else max(1, int(left * 1000 + 0.999))
            for fd, _ev in poll.poll(ms):
                if fd == self._kick:
                    os.eventfd_read(self._kick)
                elif fd == self.chan.fileno():
                    frame = self.chan.recv()
                    eof = frame is None
                else:
                    ready.add(fd)
        except (OSError, ValueError, wire.WireError):
            eof = True
        finally:
            self._cond.acquire()
            self._reading = False
            for port, d in extra:
                poll.unregister(d.fd)
                d.users -= 1
                if d.dead:
                    if not d.users:
                        d.sock.close()
                elif d.fd in ready and self._drain(port, d):
                    self._set_pending(port)
            if eof:
                self._set_closed()
            elif frame is not None:
                try:
                    self._file(frame)
                except (ValueError, IndexError, UnicodeDecodeError):
                    pass        # a garbled event is dropped, not raised at a caller
            self._cond.notify_all()

    def _file(self, f: wire.Frame) -> None:
        if f.req_id:
            self._replies[f.req_id] = f
        elif f.op == wire.XS_WATCH_EVENT and len(f.args) == 2:
            ev = (f.args[0].decode(), f.args[1].decode())
            if ev not in self._watch_events:   # xenstored coalesces too
                self._watch_events.append(ev)
        elif f.op == wire.EVTCHN_EVENT:
            self._set_pending(int(f.args[0]))
        elif f.op == wire.EVTCHN_BOUND and len(f.fds) == 1 and f.args:
            self._set_direct(int(f.args[0]), f.fds[0])
        elif f.op == wire.CONSOLE_INPUT:
            if f.args and f.args[0] == b"1":
                self._console_in_waiting = True
        elif f.op == wire.CONSOLE_ROOM:
            self._console_room = True
        else:
            for fd in f.fds:
                os.close(fd)

    def _call(self, op: int, args: Iterable[bytes | bytearray | str | int] = (), tx: int = 0,
              fds: Iterable[int] = ()) -> list[bytes]:
        return self._call_frame(op, args, tx, fds).args

    def no_wait(self, on: bool) -> bool:
        """Whether this thread's calls fail EPIPE on a break instead of
        waiting for the resume (returns the previous setting): the thread
        that resumes (Domain.reconnect, whose resume handlers make calls)
        must not wait for itself, and a driver whose rings and channels
        live in the hypervisor its xenstore answers came from starts over
        after a break rather than carry on in the next one."""
        was = getattr(self._no_wait, "on", False)
        self._no_wait.on = on
        return was

    def _await_resume(self) -> bool:
        """With self._cond held: wait until the connection is up and
        resumed (True; a resume under way, HELLO and the watches, is always
        waited for), or give up at once (False) on a closed connection that
        nothing will resume, that was closed on purpose, or that this
        thread must not wait for (no_wait)."""
        me = threading.get_ident()
        while self.closed or self._resuming not in (None, me):
            if self.closed and (not self.resumable or self.detached or self._resuming == me
                                or getattr(self._no_wait, "on", False)):
                return False
            self._cond.wait()
        return True

    def _call_frame(self, op: int, args: Iterable[bytes | bytearray | str | int] = (), tx: int = 0,
                    fds: Iterable[int] = (), generation: int | None = None) -> wire.Frame:
        """`generation`, if given: the connection the request belongs to;
        EPIPE instead of sending it on a later one (a device register
        access in the middle of a sequence the old hypervisor's device
        model took with it)."""
        args, fds = list(args), list(fds)
        me = threading.get_ident()
        while True:
            with self._mutex:
                if op in _OLD_OBJECTS and self.closed or not self._await_resume():
                    raise XenError("EPIPE", "hypervisor connection closed")
            with self._lock:
                if self.closed or self._resuming not in (None, me):
                    continue              # broke again, or another resume began
                gen = self.generation
                if generation is not None and generation != gen:
                    raise XenError("EPIPE", "hypervisor connection replaced")
                if tx and self._tx_gen.get(tx, gen) != gen:
                    raise XenError("EAGAIN", "transaction lost with the hypervisor connection")
                req = self._next_id
                self._next_id = (req % 0xFFFFFFFF) + 1
                try:
                    self.chan.send(wire.Frame(op, args, req_id=req, tx_id=tx, fds=fds))
                except OSError:
                    with self._mutex:
                        self._set_closed()
                        self._cond.notify_all()
                    continue              # not sent: sent once the domain is resumed
            with self._mutex:
                self._wait(lambda: req in self._replies or self.generation != gen, None)
                reply = self._replies.pop(req, None) if self.generation == gen else None
                if reply is None:         # the break took the reply (or the request) with it
                    if op in _RESENT and not tx:
                        continue
                    if tx and self._await_resume():
                        raise XenError("EAGAIN", "transaction lost with the hypervisor connection")
                    raise XenError("EPIPE", "hypervisor connection closed")
                if op == wire.XS_TRANSACTION_START and reply.op != wire.XS_ERROR:
                    self._tx_gen[int(reply.args[0])] = gen
            break
        if reply.op == wire.XS_ERROR:
            for fd in reply.fds:
                os.close(fd)
            name = reply.args[0].decode() if reply.args else "EINVAL"
            msg = reply.args[1].decode(errors="replace") if len(reply.args) > 1 else name
            raise XenError(name, msg)
        return reply

    def close(self) -> None:
        """Hang up for good (nobody should resume this connection)."""
        self.detached = True
        try:
            self.sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        with self._mutex:
            self._set_closed()
            self._cond.notify_all()
        self.sock.close()

    # -- xenstore --------------------------------------------------------
    def read(self, path: str, tx: int = 0) -> bytes:
        return self._call(wire.XS_READ, [path], tx)[0]

    def read_str(self, path: str, tx: int = 0, default: str | None = None) -> str:
        """read() decoded; `default` instead of ENOENT when given."""
        try:
            return self.read(path, tx).decode()
        except XenError as e:
            if default is not None and e.errno == _errno.ENOENT:
                return default
            raise

    def exists(self, path: str, tx: int = 0) -> bool:
        try:
            self.read(path, tx)
            return True
        except XenError as e:
            if e.errno == _errno.ENOENT:
                return False
            raise

    def write(self, path: str, value: bytes | bytearray | str | int, tx: int = 0) -> None:
        self._call(wire.XS_WRITE, [path, value if isinstance(value, (bytes, bytearray))
                                   else str(value).encode()], tx)

    def mkdir(self, path: str, tx: int = 0) -> None:
        self._call(wire.XS_MKDIR, [path], tx)

    def rm(self, path: str, tx: int = 0) -> None:
        self._call(wire.XS_RM, [path], tx)

    def directory(self, path: str, tx: int = 0) -> list[str]:
        return [a.decode() for a in self._call(wire.XS_DIRECTORY, [path], tx)]

    def get_perms(self, path: str, tx: int = 0) -> list[str]:
        return [a.decode() for a in self._call(wire.XS_GET_PERMS, [path], tx)]

    def set_perms(self, path: str, perms: list[str], tx: int = 0) -> None:
        self._call(wire.XS_SET_PERMS, [path, *[str(p) for p in perms]], tx)

    def get_domain_path(self, domid: int) -> str:
        return self._call(wire.XS_GET_DOMAIN_PATH, [domid])[0].decode()

    def watch(self, path: str, token: str) -> None:
        self._call(wire.XS_WATCH, [path, token])
        self._watches[(path, token)] = None

    def unwatch(self, path: str, token: str) -> None:
        self._watches.pop((path, token), None)     # forgotten even if the call fails
        try:
            self._call(wire.XS_UNWATCH, [path, token])
        finally:
            with self._mutex:
                self._watch_events = [e for e in self._watch_events if e[1] != token]

    def read_watch(self, timeout: float | None = None,
                   token: str | tuple[str, ...] | None = None) -> tuple[str, str] | None:
        """The next (path, token) watch event -- only `token`'s (or one of
        the tokens') if given -- or None after `timeout` seconds (or if the
        connection closed)."""
        tokens = (token,) if isinstance(token, str) else token

        def find() -> int | None:
            for i, e in enumerate(self._watch_events):
                if tokens is None or e[1] in tokens:
                    return i
            return None
        with self._mutex:
            self._wait(lambda: find() is not None, timeout, first=False)
            i = find()
            return None if i is None else self._watch_events.pop(i)

    def wait_watch(self, timeout: float | None = None,
                   token: str | None = None) -> tuple[str, str] | None:
        """Alias of read_watch (blocking by default)."""
        return self.read_watch(timeout, token)

    @property
    def xenstore(self) -> "XenInterface":
        """The xenstore operations live on this object; `xen.xenstore.read()`
        reads as callers written against a separate xenstore handle expect."""
        return self

    def transaction_start(self) -> int:
        return int(self._call(wire.XS_TRANSACTION_START)[0])   # its generation noted

    def transaction_end(self, tx: int, commit: bool = True) -> None:
        try:
            self._call(wire.XS_TRANSACTION_END, ["T" if commit else "F"], tx)
        finally:
            with self._mutex:
                self._tx_gen.pop(tx, None)

    def transaction(self, fn: Callable[[int], _T], retries: int = 16) -> _T:
        """Run fn(tx) in a transaction, retrying on EAGAIN (from fn too: a
        transaction lost with the hypervisor connection); returns fn's
        value."""
        for _ in range(retries):
            tx = self.transaction_start()
            try:
                result = fn(tx)
            except BaseException as e:
                try:
                    self.transaction_end(tx, False)
                except XenError:
                    pass
                if isinstance(e, XenError) and e.errno == _errno.EAGAIN:
                    continue
                raise
            try:
                self.transaction_end(tx, True)
                return result
            except XenError as e:
                if e.errno != _errno.EAGAIN:
                    raise
        raise XenError("EAGAIN", "transaction kept conflicting")

    # -- event channels --------------------------------------------------
    def evtchn_alloc_unbound(self, remote_dom: int, dom: int = DOMID_SELF) -> int:
        return int(self._call(wire.EVTCHN_ALLOC_UNBOUND, [dom, remote_dom])[0])

    def evtchn_bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        reply = self._call_frame(wire.EVTCHN_BIND_INTERDOMAIN, [remote_dom, remote_port])
        port = int(reply.args[0])
        if len(reply.fds) == 1:
            with self._mutex:
                self._set_direct(port, reply.fds[0])
        return port

    def evtchn_notify(self, port: int) -> None:
        """EVTCHNOP_send: one byte on the channel's own socket when it has
        one (a full socket means the peer has notifications pending
        already: they coalesce, as Xen's pending bit does); otherwise, or
        once the peer's end is gone, asked of the hypervisor, which
        delivers it, drops it (an unbound port) or answers that the
        channel has a socket now (a new binding, pushed to us before that
        answer)."""
        if self.closed:
            raise XenError("EPIPE", "hypervisor connection closed")
        for _ in (1, 2, 3):                      # (a tuple: no range() per notification)
            d = self._direct.get(port)
            if d is not None:
                try:
                    d.sock.send(b"\1", _NOTIFY)
                    return
                except BlockingIOError:
                    return
                except OSError:
                    with self._mutex:
                        if self._direct.get(port) is d:
                            self._drop_direct(port)
            if self._call(wire.EVTCHN_SEND, [port]) != [b"direct"]:
                return

    def evtchn_close(self, port: int) -> None:
        self._call(wire.EVTCHN_CLOSE, [port])
        with self._mutex:
            self._drop_direct(port)
            if port in self._pending:
                self._pending.remove(port)

    # -- direct channels -------------------------------------------------
    def _set_direct(self, port: int, fd: int) -> None:
        """With self._cond held: `fd` is now `port`'s socket to its peer."""
        self._drop_direct(port)
        self._direct[port] = _Direct(_socket.socket(fileno=fd), self._closed_fd)
        self._cond.notify_all()

    def _drop_direct(self, port: int) -> None:
        """With self._cond held: forget `port`'s socket.  Shut down at once
        (the peer reads EOF; a thread polling it wakes); closed by its last
        user, never under a thread that polls it."""
        d = self._direct.pop(port, None)
        if d is not None:
            d.dead = True
            try:
                d.sock.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass
            if not d.users:
                d.sock.close()

    def _wait_direct(self, chans: list[tuple[int, _Direct]], left: float | None) -> None:
        """With self._cond held, released meanwhile: poll the sockets of
        `chans` (ports whose every wanted one has a socket) and the closed
        flag; file each port found pending, forget each whose peer left."""
        if len(chans) == 1 and not chans[0][1].users:
            poll = chans[0][1].poll          # (a poll object serves one thread at a time)
        else:
            poll = select.poll()
            for _port, d in chans:
                poll.register(d.fd, select.POLLIN)
            poll.register(self._closed_fd, select.POLLIN)
        for _port, d in chans:
            d.users += 1
        self._cond.release()
        try:
            ms = -1 if left is None else 0 if left <= 0 else max(1, int(left * 1000 + 0.999))
            ready = {fd for fd, _ev in poll.poll(ms)}
        finally:
            self._cond.acquire()
            for port, d in chans:
                d.users -= 1
                if d.dead:
                    if not d.users:
                        d.sock.close()
                elif d.fd in ready and self._drain(port, d):
                    self._set_pending(port)

    def _wait_alone(self, port: int, timeout: float | None) -> int | None:
        """evtchn_wait's usual case, on its own: one port, with a socket
        no other thread is polling (every wait of a command's round trip).
        The port once notified; None when it was not (a closed connection,
        no socket of its own, another poller, a socket gone under the poll):
        evtchn_wait's general loop then decides, given the whole timeout
        again (a wait cut short that way may last up to twice it).

        A poll, then a recv that does not wait -- not one recv that waits:
        a unix stream socket wakes a thread blocked in recv each time the
        peer takes a byte this end sent (unix_write_space on the socket's
        one wait queue), and poll(POLLIN) is not woken by that.  On a
        round trip the peer takes our notification and then works before
        it answers, so a blocking recv would be woken, in vain, once per
        wait: a context switch more, and on a shared vCPU the peer
        preempted for it.

        _RAN_OUT when the poll ran out with nothing pending: the whole
        timeout has passed (no clock read here), and the general loop only
        looks once more, as it does at its deadline."""
        # (the lock's own acquire and release, not `with`: no __enter__ and
        # __exit__ looked up and bound on every wait)
        mutex = self._mutex
        mutex.acquire()
        try:
            if port in self._pending:
                self._pending.remove(port)
                return port
            d = self._direct.get(port)
            if d is None or d.users or self.closed:
                return None
            d.users += 1
            mutex.release()
            try:
                # (milliseconds as a float: poll rounds a fraction up)
                ready = d.poll.poll(None if timeout is None else timeout * 1000)
            finally:
                mutex.acquire()
                d.users -= 1
            if d.dead:
                if not d.users:
                    d.sock.close()
                got = False
            else:
                got = self._drain(port, d) if ready else False
            if port in self._pending:            # (filed meanwhile too: one notification)
                self._pending.remove(port)
                return port
            return port if got else None if ready else _RAN_OUT
        finally:
            mutex.release()

    def _drain(self, port: int, d: _Direct) -> bool:
        """With self._cond held: read every notification waiting on `port`'s
        socket; whether there was any (however many, they are one: the
        caller files the port pending, _set_pending, or takes it).  The
        socket is a stream (the hypervisor's _direct_channel): one recv
        takes all the bytes there are, and a short read means none is left."""
        got = False
        while True:
            try:
                data = d.sock.recv(_DRAIN, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                return got
            except OSError:
                data = b""
            if not data:                 # the peer's end is gone: ask the hypervisor from now on
                self._drop_direct(port)
                return got
            if len(data) < _DRAIN:
                return True
            got = True

    def _set_pending(self, port: int) -> None:
        """With self._cond held: `port` was notified; pending once however
        often (Xen's pending bit), in arrival order."""
        if port not in self._pending:
            self._pending.append(port)

    def evtchn_status(self, port: int, dom: int = DOMID_SELF) -> dict:
        status, rdom, rport = (a.decode() for a in self._call(wire.EVTCHN_STATUS, [dom, port]))
        out: dict = {"status": status}
        if rdom:
            out["dom"] = int(rdom)
        if rport:
            out["port"] = int(rport)
        return out

    def evtchn_wait(self, ports: int | Iterable[int] | None = None,
                    timeout: float | None = None) -> int | None:
        """Wait until one of `ports` (any port if None) is pending, clear it
        and return it; None on timeout (or if the connection closed).
        timeout=0 takes a notification already there, if any (ports with
        a socket of their own are looked at once)."""
        # the usual case, one port (an int, or one in `ports`), first:
        # without the general loop's set, closure and cells when it is an
        # int, and without a clock read (the deadline is the general loop's)
        want: set[int] | None = None
        if isinstance(ports, int):
            alone: int | None = ports
        else:
            want = None if ports is None else set(ports)
            alone = next(iter(want)) if want is not None and len(want) == 1 else None
        if alone is not None and (timeout is None or timeout > 0):
            p = self._wait_alone(alone, timeout)
            if p == _RAN_OUT:
                timeout = 0.0                    # the time is up: one look more
            elif p is not None:
                return p
        if want is None and alone is not None:
            want = {alone}
        return self._wait_any(want, timeout)

    def _wait_any(self, want: set[int] | None, timeout: float | None) -> int | None:
        """evtchn_wait's general loop: any of `want` (any port if None)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def find() -> int | None:
            for p in self._pending:
                if want is None or p in want:
                    return p
            return None
        looked = False
        with self._mutex:
            while True:
                p = find()
                if p is not None:
                    self._pending.remove(p)
                    return p
                if self.closed:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                direct = self._direct
                chans = [(q, direct[q]) for q in (direct if want is None else want) if q in direct]
                if left is not None and left <= 0:
                    if looked or not chans:
                        return None
                    left = 0.0
                looked = True
                if want is not None and len(chans) == len(want) or left == 0:
                    self._wait_direct(chans, left)
                    continue
                # a port without a socket of its own: its events come through
                # the hypervisor's socket, read here (the sockets of the
                # others are polled along with it), until one is pending or
                # a wanted port gets a socket
                known = set(direct)
                self._wait(lambda: find() is not None or self.closed
                           or any(q in self._direct and q not in known
                                  for q in (self._direct if want is None else want)),
                           left, extra=chans)

    def evtchn_pending(self, port: int) -> bool:
        with self._mutex:
            d = self._direct.get(port)
            if d is not None and self._drain(port, d):
                self._set_pending(port)
            return port in self._pending

    def evtchn_clear(self, port: int) -> None:
        """Drop a notification already pending on `port`, if any, as a
        driver clears the pending bit before it submits a new request.
        What evtchn_wait(port, timeout=0) does, without building a poll:
        a look at the port's own socket (one poll without waiting; no recv,
        and no exception raised and caught, when nothing is there)."""
        with self._mutex:
            d = self._direct.get(port)
            if d is not None and (d.users or d.poll.poll(0)):
                self._drain(port, d)
            if port in self._pending:
                self._pending.remove(port)

    # -- grant tables ----------------------------------------------------
    def alloc_page(self) -> Page:
        return Page()

    def grant_access(self, page: Page, domid: int, readonly: bool = False) -> int:
        return int(self._call(wire.GNT_GRANT, [domid, int(bool(readonly))], fds=[page.fd])[0])

    def end_access(self, ref: int) -> None:
        self._call(wire.GNT_END_ACCESS, [ref])

    def map_grant(self, domid: int, ref: int, readonly: bool = False) -> Mapping:
        reply = self._call_frame(wire.GNT_MAP, [domid, ref, int(bool(readonly))])
        if len(reply.fds) != 1:
            for fd in reply.fds:
                os.close(fd)
            raise XenError("EIO", "map_grant reply without a page")
        return Mapping(domid, ref, reply.fds[0], readonly)

    def unmap_grant(self, mapping: Mapping) -> None:
        mapping.close()
        self._call(wire.GNT_UNMAP, [mapping.domid, mapping.ref])

    # -- iomem (MMIO to host devices the domain was given with iomem=) ----
    def memory_reservation(self, kb: int) -> int:
        """XENMEM_{increase,decrease}_reservation: hold `kb` kB; returns the kB
        now held (growth stops at the domain's maximum)."""
        return int(self._call(wire.MEMORY_RESERVATION, [kb])[0])

    def mmio_read(self, addr: int, width: int = 1, count: int = 1,
                  generation: int | None = None) -> bytes:
        """`count` reads of `width` bytes at machine address `addr`
        (little-endian each); EPERM without iomem permission.  With
        `generation` (a driver's self.xen.generation when it set the
        device up): EPIPE once the connection was resumed since, rather
        than a read of the new hypervisor's device."""
        return self._call_frame(wire.MMIO_READ, [addr, width, count],
                                generation=generation).args[0]

    def mmio_write(self, addr: int, data: bytes, width: int = 1,
                   generation: int | None = None) -> None:
        """Write `data` as len(data)/width accesses of `width` bytes at
        `addr`; `generation` as for mmio_read."""
        self._call_frame(wire.MMIO_WRITE, [addr, width, bytes(data)], generation=generation)

    # -- console ---------------------------------------------------------
    def console_write(self, data: bytes | str, kick: bool = False) -> None:
        """Console output, onto the ring page (xencons.write_out), then a
        kick (one-way: never waits for the daemon to take it).  What the
        daemon has not taken stays on the page, across a daemon restart.

        What the ring has no room for waits in a buffer in front of it, as
        in the tty layer, moved on by a thread of ours each time the daemon
        says the ring has room again (CONSOLE_ROOM, which the kick asks
        for), and by a resume.  While more than CONSOLE_PENDING_MAX bytes
        wait, the writer waits for room itself, as Linux's
        domU_write_console (drivers/tty/hvc/hvc_xen.c) does -- there by
        polling with HYPERVISOR_sched_op(SCHEDOP_yield) until the ring has
        room for all of it, here by sleeping until the daemon says so --
        but only while a daemon is there to take output: with none (killed,
        not yet restarted) the writer never waits, and the buffer keeps the
        newest CONSOLE_PENDING_MAX bytes, counting those it lets go in
        `console_dropped`.  `kick`: kick even if nothing new was written."""
        if isinstance(data, str):
            data = data.encode()
        with self._console_lock:
            pending = self._console_pending
            if pending:
                pending += data
                kick = self._console_move() or kick
            elif data:
                n = xencons.write_out(self.console_page.buf, data)
                if n < len(data):
                    pending += memoryview(data)[n:]
                kick = True
            if len(pending) > CONSOLE_PENDING_MAX:
                kick = self._console_wait_room(kick)
                over = len(pending) - CONSOLE_PENDING_MAX
                if over > 0:                  # no daemon: the oldest go
                    del pending[:over]
                    self.console_dropped += over
            if pending and self._console_waiter is None and not self.closed:
                self._console_waiter = threading.Thread(
                    target=self._console_room_thread, name="console-room", daemon=True)
                self._console_waiter.start()
            if kick:
                # the console-room thread, if there is one, is told too, and
                # ends if nothing waits any more (never left parked)
                self._console_kick(bool(pending) or self._console_waiter is not None)

    def _console_move(self) -> bool:
        """With _console_lock held: waiting output onto the ring, as much as
        it has room for; whether any moved."""
        pending = self._console_pending
        n = xencons.write_out(self.console_page.buf, pending)
        del pending[:n]
        return n > 0

    def _console_kick(self, waiting: bool) -> None:
        """The console's event channel notified, saying whether output waits
        for room.  Not sent while the connection is down or being resumed
        by another thread (nothing goes before its HELLO): the output is on
        the page, which the next HELLO hands over, and resume() kicks."""
        with self._lock:
            if self.closed or self._resuming not in (None, threading.get_ident()):
                return
            try:
                self.chan.send(_KICK_WAITING if waiting else _KICK)
            except OSError:
                pass            # the reader sees the break

    def _console_wait_room(self, kick: bool, limit: int = CONSOLE_PENDING_MAX,
                           timeout: float | None = None) -> bool:
        """With _console_lock held, while more than `limit` bytes wait: move
        them on each time the daemon says there is room, until they fit,
        the connection breaks or `timeout` passes.  `kick`: output moved
        and not kicked yet; returns the same after the wait.  The daemon's
        word is taken (cleared) only under _console_lock, so the
        console-room thread cannot take it from under a writer waiting here."""
        pending = self._console_pending
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(pending) > limit:
            gen = self.generation
            if kick:
                self._console_kick(True)
                kick = False
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            with self._mutex:
                self._wait(lambda: self._console_room
                           or self.generation != gen and self._resuming is None,
                           left, first=False)
                if self.closed:
                    return False              # resume() kicks once it is back
                room, self._console_room = self._console_room, False
            # room: move on; a new connection: its daemon must hear we wait
            if room:
                kick = self._console_move()
            elif self.generation != gen:
                kick = True
        return kick

    def console_flush(self, timeout: float = 2.0) -> None:
        """Wait (up to `timeout` seconds, and only while a daemon takes
        output) until no output waits in front of the ring: before the
        domain ends, so that its last words reach the console."""
        with self._console_lock:
            if self._console_pending:
                self._console_wait_room(False, 0, timeout)

    def _console_room_thread(self) -> None:
        """Moves waiting output on each time the daemon says the ring has
        room.  Ends once none waits, or while the connection is broken
        (resume() moves it on from there)."""
        while True:
            with self._mutex:
                self._wait(lambda: self._console_room, None, first=False)
            with self._console_lock:
                with self._mutex:
                    room, self._console_room = self._console_room, False
                if room and self._console_move():
                    self._console_kick(bool(self._console_pending))
                if not self._console_pending or self.closed:
                    self._console_waiter = None
                    return

    def console_read(self, timeout: float | None = None) -> bytes | None:
        """Console input typed at the domain, from the ring page's `in`
        (xencons.read_in: mini-os's handle_input, Linux's
        domU_read_console), waking on the daemon's notification; None on
        timeout, b"" once the connection is closed and `in` is empty.  The
        page is looked at first, so input a daemon put there before it went
        away is read, once, after the resume.  When the daemon said more
        input waits for room, it is kicked once some was taken."""
        page = self.console_page.buf
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            with self._mutex:
                self._wait(lambda: self._console_in_waiting or xencons.in_pending(page) > 0,
                           left, first=False)
                data = xencons.read_in(page)
                kick, self._console_in_waiting = self._console_in_waiting, False
            if kick:
                self._console_kick(False)
            if data:
                return data
            if not kick:
                return b"" if self.closed else None
            # only the daemon's word that more waits: wait for it to put it on
