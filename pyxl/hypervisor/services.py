"""`Hypervisor`: what Xen, xenstored and xenconsoled provide, in one object
that the daemon embeds.

Threads, not asyncio: each attached domain connection gets a reader thread
(its requests are handled there, so a slow or flooding domain only delays
itself) and a writer thread. A reply or pushed event is sent at once with
MSG_DONTWAIT when nothing is queued ahead of it; only when the domain's
socket is full does it wait in the connection's queue for the writer
thread, so the daemon never blocks on a domain that stops reading. Watch
events and event-channel notifications already queued for the same target
are coalesced (xenstored drops duplicate events; Xen's pending bit
coalesces notifications), watch events beyond a bound are dropped, and
only a domain's own replies apply back-pressure, to that domain's reader.
Every service has its own lock; callbacks out of here (`on_disconnect`,
dom0 event-channel sinks, watch sinks) run on these threads and must not
block -- hand anything slow on to another thread.
A connection's socket is closed by the last of its two threads to end,
never by close()/join() under a live thread: a descriptor number freed
under a thread about to recvmsg would be the next domain's socket.

Embedding (the toolstack's daemon):

    hv = Hypervisor()                       # dom0 is domain 0, privileged
    hv.domain_created(domid, name="vm", console_log="/.../guest-vm.log")
    sock = hv.connect_domain(domid)         # the domain process's end
    spec["hv_fd"] = sock.fileno()           # in the domain's spec (pyxl/domain/process.py)
    child = subprocess.Popen([..., json.dumps(spec)], pass_fds=[sock.fileno()])
    sock.close()                            # the daemon keeps its own end
    ...
    xs = hv.xs()                            # dom0's xenstore, in-process
    reader = hv.console(domid).attach()     # `pyxl console`
    hv.domain_destroyed(domid)              # revoke, unbind, @releaseDomain

Inside the domain process: `pyxl.domain.xen.XenInterface.from_fd(spec["hv_fd"])`.

A domain's requests are served from one table, `OPS` (op -> handler,
argument check, page descriptors, privilege, transaction id): its
hypercalls' rows here, its xenstore rows xenstored's own (`xenstored.OPS`),
so a domain gets the checks and errors xenstored gives an unprivileged
domain.  A new operation is a new row.
"""

from __future__ import annotations

import collections
import errno as _errno
import os
import socket
import threading
from typing import Callable

from . import testfault, wire, xs_wire
from .wire import HvOp
from .console import DEFAULT_LOG_KEEP as CONSOLE_LOG_KEEP
from .console import DEFAULT_LOG_MAX as CONSOLE_LOG_MAX
from .console import Console
from .evtchn import EventChannels
from .grant import GrantTables
from .iomem import IoMem
from .xenstore import QueueSink, Quotas, XenStore, XsConnection
from .xenstored import OPS as XENSTORED_OPS
from .xenstored import XS_FLAG_NOTID, Request, XsError, admit, respond
from .xs_wire import XsType

# How many frames may wait in one connection's queue.
REPLY_QUEUE_LIMIT = 256        # replies: the domain's reader waits (back-pressure)
EVENT_QUEUE_LIMIT = 1024       # watch events beyond this are dropped


def _fault_point(hv: "Hypervisor", domid: int, frame: wire.Frame) -> None:
    """testfault's request:<domain name>:<path>."""
    dom = hv._domains.get(domid)
    if dom is not None and frame.args:
        testfault.at("request:%s:%s" % (dom.name, bytes(frame.args[0]).decode(errors="replace")))


def _errname(exc: OSError) -> bytes:
    err = exc.errno or _errno.EINVAL
    return _errno.errorcode.get(err, "EINVAL").encode()


class DomainConnection:
    """The hypervisor's end of one domain's socket."""

    def __init__(self, hv: "Hypervisor", sock: socket.socket, domid: int):
        self.hv = hv
        self.sock = sock
        self.chan = wire.Channel(sock)
        self.domid = domid
        self._cond = threading.Condition()
        self._queue: collections.deque[wire.Frame | _Rest] = collections.deque()
        self._replies = 0
        self._events = 0
        # the one-way notifications waiting in the queue, by (op, args): _event
        self._queued: set[tuple[int, tuple[bytes, ...]]] = set()
        self._sending = False          # the writer thread is sending outside the lock
        self.closed = False
        # The socket's descriptor is closed only once no thread can touch it
        # any more: a number closed under a thread that is about to recvmsg or
        # sendmsg on it can be reused at once by the next domain's socket, and
        # that thread would then read (and, being closed, drop) the new
        # domain's HELLO. So the last of our threads to leave closes it.
        self._live = 0                 # reader/writer threads started and not yet done
        self._started = False
        self._fd_closed = False
        self.xs: XsConnection = hv.xenstore.connect(domid, self._watch_event)
        self.server = hv._xenstored     # what xenstored's rows ask of their server
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                        name=f"hv-dom{domid}-rx")
        self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                        name=f"hv-dom{domid}-tx")

    def start(self) -> None:
        """Start the threads (not if the connection was closed meanwhile: a
        domain destroyed while being attached)."""
        with self._cond:
            if self.closed or self._started:
                return
            self._started = True
            self._live = 2
        for i, t in enumerate((self._reader, self._writer)):
            try:
                t.start()
            except BaseException:        # RuntimeError: can't start new thread
                with self._cond:
                    self._live -= 2 - i  # this one and any after it never ran
                self.close()
                self._close_fd()
                raise

    def _thread_done(self) -> None:
        with self._cond:
            self._live -= 1
            last = self._live == 0
        if last:
            self._close_fd()

    def _close_fd(self) -> None:
        with self._cond:
            if self._fd_closed or self._live or not self.closed:
                return
            self._fd_closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.chan.close()

    # -- outgoing --------------------------------------------------------
    def _push(self, frame: wire.Frame) -> bool:
        """Send now if nothing is queued ahead and the socket has room (the
        common case: no thread hand-off), else queue for the writer thread.
        Called with self._cond held; never blocks. True if sent now."""
        if not self._queue and not self._sending:
            try:
                rest = self.chan.send(frame, nowait=True)
            except BlockingIOError:
                pass
            except wire.WireError as exc:     # e.g. a reply too big for one frame
                instead = _unsendable(frame, exc)
                return True if instead is None else self._push(instead)
            except OSError:
                for fd in frame.fds:
                    os.close(fd)
                self._cond.notify_all()
                return True      # the reader will see the broken socket and close
            else:
                for fd in frame.fds:
                    os.close(fd)
                if rest:         # stream socket, partly sent: the writer finishes it
                    self._queue.append(_Rest(rest))
                    self._cond.notify_all()
                return True
        self._queue.append(frame)
        self._cond.notify_all()
        return False

    def push_now(self, frame: wire.Frame) -> bool:
        """Send `frame` at once or not at all (nothing queued ahead of it,
        room in the socket); its descriptors are closed either way."""
        with self._cond:
            if not self.closed and not self._queue and not self._sending:
                try:
                    rest = self.chan.send(frame, nowait=True)
                except OSError:
                    pass
                else:
                    if rest:     # stream socket, partly sent: the writer finishes it
                        self._queue.append(_Rest(rest))
                        self._cond.notify_all()
                    for fd in frame.fds:
                        os.close(fd)
                    return True
        for fd in frame.fds:
            os.close(fd)
        return False

    def _event(self, frame: wire.Frame, bounded: bool = False) -> None:
        """Send the domain a one-way notification, coalesced as Xen's
        pending bit and xenstored's watch events are: while one with the
        same op and arguments waits in the queue, another adds nothing.
        `bounded`: dropped once EVENT_QUEUE_LIMIT notifications wait (watch
        events; the others are few by construction: one per port, one per
        console kind)."""
        key = (frame.op, tuple(frame.args))
        with self._cond:
            if self.closed or key in self._queued:
                return
            if bounded and self._events >= EVENT_QUEUE_LIMIT:
                return
            if not self._push(frame):
                self._queued.add(key)
                self._events += 1

    def _watch_event(self, path: str, token: str) -> None:
        self._event(wire.Frame(wire.XS_WATCH_EVENT, [path, token]), bounded=True)

    def evtchn_event(self, port: int) -> None:
        self._event(wire.Frame(wire.EVTCHN_EVENT, [port]))

    def console_room(self) -> None:
        """Tell the domain its console ring has room."""
        self._event(wire.Frame(wire.CONSOLE_ROOM))

    def console_input(self, waiting: bool) -> None:
        """Tell the domain its console ring's `in` has new input (the
        event channel xenconsoled's handle_tty_read notifies); `waiting`:
        more input waits for room, so the domain should kick once it has
        taken some."""
        self._event(wire.Frame(wire.CONSOLE_INPUT, [b"1" if waiting else b"0"]))

    def _reply(self, frame: wire.Frame) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self._replies < REPLY_QUEUE_LIMIT)
            if self.closed:
                for fd in frame.fds:
                    os.close(fd)
                return
            if not self._push(frame):
                self._replies += 1

    def _write_loop(self) -> None:
        try:
            self._write_frames()
        finally:
            self._thread_done()

    def _write_frames(self) -> None:
        while True:
            with self._cond:
                self._sending = False
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._queue or self.closed)
                if self.closed and not self._queue:
                    return
                frame = self._queue.popleft()
                self._sending = True
                if isinstance(frame, _Rest):
                    pass
                elif frame.req_id:
                    self._replies -= 1
                else:
                    self._events -= 1
                    self._queued.discard((frame.op, tuple(frame.args)))
                self._cond.notify_all()
            try:
                if self.closed:
                    pass
                elif isinstance(frame, _Rest):
                    self.sock.sendall(frame.data)
                else:
                    try:
                        self.chan.send(frame)
                    except wire.WireError as exc:
                        instead = _unsendable(frame, exc)
                        if instead is not None:
                            self.chan.send(instead)
            except (OSError, wire.WireError):
                self.close()
            finally:
                for fd in frame.fds:
                    os.close(fd)

    # -- incoming --------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            while not self.closed:
                try:
                    frame = self.chan.recv()
                except (OSError, wire.WireError):
                    break
                if frame is None:
                    break
                self._handle(frame)
        finally:
            try:
                self.close()
            finally:
                self._thread_done()

    def _handle(self, frame: wire.Frame) -> None:
        if testfault.ARMED:
            _fault_point(self.hv, self.domid, frame)
        try:
            result, fds = self.hv._dispatch(self, frame)
        except Exception as exc:
            # an OSError is the domain's fault; anything else is a bug here,
            # answered EIO so the domain is told rather than left waiting or
            # cut off
            for fd in frame.fds:
                os.close(fd)
            if not isinstance(exc, OSError):
                exc = OSError(_errno.EIO, f"hypervisor error: {exc!r}"[:1000])
            if frame.req_id and not frame.flags & wire.FLAG_ONEWAY:
                msg = exc.strerror or str(exc)
                self._reply(wire.Frame(wire.XS_ERROR, [_errname(exc), msg],
                                       req_id=frame.req_id, tx_id=frame.tx_id))
            return
        for fd in frame.fds:            # descriptors we were given were dup'ed if kept
            os.close(fd)
        if frame.req_id and not frame.flags & wire.FLAG_ONEWAY:
            self._reply(wire.Frame(frame.op, result, req_id=frame.req_id,
                                   tx_id=frame.tx_id, fds=fds))
        else:
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self._cond.notify_all()
        self.xs.close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes our threads; the fd stays ours
        except OSError:
            pass
        self._close_fd()                           # only if no thread was ever started
        self.hv._connection_closed(self)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the threads (up to `timeout` each). The descriptor is
        closed by whichever of them ends last, never under a live thread."""
        for t in (self._reader, self._writer):
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the connection has ended; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.closed, timeout)


def _unsendable(frame: wire.Frame, exc: Exception) -> wire.Frame | None:
    """What goes out instead of a frame the wire cannot carry: an E2BIG
    error for a request, None (dropped) for an event."""
    for fd in frame.fds:
        os.close(fd)
    frame.fds = []
    if frame.req_id:
        return wire.Frame(wire.XS_ERROR, [b"E2BIG", str(exc)], req_id=frame.req_id,
                          tx_id=frame.tx_id)
    return None


class _Rest:
    """The unsent tail of a frame on a stream socket (sent before anything else)."""
    fds = ()

    def __init__(self, data: bytes):
        self.data = data


class _Domain:
    def __init__(self, domid: int, name: str | None, console: Console):
        self.domid = domid
        self.name = name
        self.console = console
        self.conn: DomainConnection | None = None
        self.max_kb: int | None = None     # d->max_pages (XEN_DOMCTL_max_mem); None: unset
        self.tot_kb: int | None = None     # d->tot_pages, once the domain has ballooned


class Hypervisor:
    """Owns xenstore, event channels, grant tables and consoles.

    `on_disconnect(domid)` (optional) is called when a domain's connection
    ends without `domain_destroyed` (the domain process died or closed it);
    `on_memory(domid)` (optional) after a domain has changed its reservation
    (its balloon driver moved).
    Console logs are capped at `console_log_max` bytes (None: no cap) and
    rotated, keeping `console_log_keep` older files (see console.py).
    """

    def __init__(self, *, quotas: Quotas = Quotas(), console_limit: int = 64 * 1024,
                 console_log_max: int | None = CONSOLE_LOG_MAX,
                 console_log_keep: int = CONSOLE_LOG_KEEP,
                 dom0_home: bool = True,
                 on_disconnect: Callable[[int], None] | None = None,
                 on_memory: Callable[[int], None] | None = None):
        self.xenstore = XenStore(quotas)
        self.evtchn = EventChannels(self._deliver_evtchn)
        self.grants = GrantTables()
        self.iomem = IoMem()             # iomem= permissions and host MMIO devices
        self.lock = threading.RLock()
        self._domains: dict[int, _Domain] = {}
        self._dom0_sinks: list[Callable[[int], None]] = []
        self._console_limit = console_limit
        self._console_log = (console_log_max, console_log_keep)
        self.on_disconnect = on_disconnect
        self.on_memory = on_memory
        self._dom0_xs = self.xenstore.connect(0)
        self._xenstored = _Xenstored(self)
        self.domain_created(0, name="Domain-0", home=dom0_home)

    # -- domain lifecycle -------------------------------------------------
    def domain_created(self, domid: int, *, name: str | None = None,
                       console_log: str | None = None, home: bool = True) -> None:
        """Register a new domain with every service (XS_INTRODUCE and co).

        With home=True the domain's xenstore home is laid out as libxl does
        (libxl__domain_make): /local/domain/<domid> owned by dom0 and
        readable by the domain; device/ and control/ likewise; data/,
        drivers/, feature/, attr/, error/ and control/shutdown owned by the
        domain; `name` and `domid` written when known.
        """
        with self.lock:
            if domid in self._domains:
                raise OSError(_errno.EEXIST, f"domain {domid} exists")
            console = Console(domid, console_log, self._console_limit,
                              *self._console_log)
            self._domains[domid] = _Domain(domid, name, console)
            self.evtchn.add_domain(domid)
            self.grants.add_domain(domid)
        if home:
            self._make_home(domid, name)
        self.xenstore.introduce(domid)

    def _make_home(self, domid: int, name: str | None) -> None:
        xs = self._dom0_xs
        home = f"/local/domain/{domid}"
        ro = ["n0", f"r{domid}"] if domid else ["n0"]
        rw = [f"n{domid}"]
        while True:
            tx = xs.transaction_start()
            try:
                xs.mkdir(home, tx)
                xs.set_perms(home, ro, tx)
                for sub in ("device", "control"):
                    xs.mkdir(f"{home}/{sub}", tx)
                    xs.set_perms(f"{home}/{sub}", ro, tx)
                for sub in ("control/shutdown", "data", "drivers", "feature", "attr", "error"):
                    xs.mkdir(f"{home}/{sub}", tx)
                    xs.set_perms(f"{home}/{sub}", rw, tx)
                if name is not None:
                    xs.write(f"{home}/name", name, tx)
                xs.write(f"{home}/domid", str(domid), tx)
                xs.transaction_end(tx, True)
                return
            except OSError as exc:
                if exc.errno != _errno.EAGAIN:
                    try:
                        xs.transaction_end(tx, False)
                    except OSError:
                        pass
                    raise

    def domain_shutdown(self, domid: int) -> None:
        """The domain has shut down or crashed (SCHEDOP_shutdown, or its
        process ended): VIRQ_DOM_EXC, on which xenstored fires @releaseDomain."""
        self.xenstore.shutdown(domid)

    def domain_destroyed(self, domid: int, *, remove_home: bool = True) -> None:
        """Tear a domain down in every service: close its connection, close
        its event channels (peers become unbound), revoke its grants and
        release its mappings, close its console, drop its xenstore home
        (as libxl does) and fire @releaseDomain."""
        with self.lock:
            dom = self._domains.pop(domid, None)
        if dom is None:
            return
        if dom.conn is not None:
            dom.conn.close()
            dom.conn.join(2.0)
        self.evtchn.remove_domain(domid)
        self.grants.remove_domain(domid)
        self.iomem.domain_destroyed(domid)
        dom.console.close()
        if remove_home:
            try:
                self._dom0_xs.rm(f"/local/domain/{domid}")
            except OSError:
                pass
        self.xenstore.release(domid)

    def domains(self) -> list[int]:
        with self.lock:
            return sorted(self._domains)

    def domain_connected(self, domid: int) -> bool | None:
        """None if there is no such domain, else whether it has its
        xenstore connection (xenstored's find_connected_domain; dom0 is
        served in-process and always connected)."""
        with self.lock:
            dom = self._domains.get(domid)
            if dom is None:
                return None
            return domid == 0 or dom.conn is not None

    # -- connections -----------------------------------------------------
    def connect_domain(self, domid: int) -> socket.socket:
        """Make the socket pair for a domain, attach our end, and return the
        domain's end (close-on-exec: hand it on with pass_fds)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.attach(ours, domid)
        except Exception:
            ours.close()
            theirs.close()
            raise
        return theirs

    def attach(self, sock: socket.socket, domid: int) -> DomainConnection:
        """Serve `sock` as domain `domid` (threads; returns at once). A domain
        has at most one connection; attaching again replaces the old one."""
        with self.lock:
            dom = self._domains.get(domid)
            if dom is None:
                raise OSError(_errno.ESRCH, f"no domain {domid}")
            old = dom.conn
            conn = DomainConnection(self, sock, domid)
            dom.conn = conn
            # under the lock, so a close racing with us cannot be overtaken
            # (it clears the sink under the same lock)
            dom.console.set_input_sink(conn.console_input)
        if old is not None:
            old.close()
        conn.start()        # a no-op if domain_destroyed closed it meanwhile
        return conn

    def serve(self, sock: socket.socket, domid: int) -> None:
        """Serve `sock` as domain `domid` until the connection ends (blocking;
        run it in a thread of its own). `attach` is the non-blocking form."""
        conn = self.attach(sock, domid)
        conn.wait()
        conn.join(2.0)

    def wait_disconnected(self, domid: int, timeout: float | None = None) -> bool:
        """Wait until domain `domid` has no connection: once its process has
        exited this means everything it sent (its last console output) has
        been handled. False on timeout."""
        with self.lock:
            dom = self._domains.get(domid)
            conn = dom.conn if dom is not None else None
        return conn is None or conn.wait(timeout)

    def _connection_closed(self, conn: DomainConnection) -> None:
        with self.lock:
            dom = self._domains.get(conn.domid)
            current = dom is not None and dom.conn is conn
            if dom is not None and current:
                dom.conn = None
                dom.console.set_input_sink(None)
        if current and dom is not None:
            # what the domain put on its ring and had no time to kick about
            # (it died between the two) is taken now: its last words
            dom.console.take_ring()
        if current and self.on_disconnect is not None:
            self.on_disconnect(conn.domid)

    def close(self) -> None:
        """Stop serving every domain (the daemon is shutting down)."""
        with self.lock:
            conns = [d.conn for d in self._domains.values() if d.conn is not None]
        for c in conns:
            c.close()
            c.join(2.0)

    # -- dom0, in-process ------------------------------------------------
    def xs(self, sink: Callable[[str, str], None] | None = None) -> XsConnection:
        """A dom0 (privileged) xenstore connection for the toolstack. Pass a
        non-blocking `sink(path, token)` for watches, or use `QueueSink()`."""
        return self.xenstore.connect(0, sink if sink is not None else QueueSink())

    def set_max_mem(self, domid: int, kb: int) -> None:
        """XEN_DOMCTL_max_mem (xc_domain_setmaxmem): the most the domain may
        hold from now on; what it holds already is not taken away."""
        with self.lock:
            dom = self._domains.get(domid)
            if dom is None:
                raise OSError(_errno.ESRCH, f"no domain {domid}")
            dom.max_kb = kb

    def memory_reserve(self, domid: int, kb: int) -> int:
        """The domain's reservation becomes `kb` kB -- growth stops at its
        max_pages, keeping what it already holds -- and the kB it now
        holds are returned."""
        with self.lock:
            dom = self._domains.get(domid)
            if dom is None:
                raise OSError(_errno.ESRCH, f"no domain {domid}")
            if dom.max_kb is not None and kb > dom.max_kb:
                kb = max(dom.max_kb, min(kb, dom.tot_kb or 0))
            dom.tot_kb = kb
            return kb

    def memory_restore(self, domid: int, max_kb: int | None, tot_kb: int | None) -> None:
        """The domain's max_pages and tot_pages as a previous daemon's
        hypervisor left them (on Xen they outlive the toolstack)."""
        with self.lock:
            dom = self._domains.get(domid)
            if dom is None:
                raise OSError(_errno.ESRCH, f"no domain {domid}")
            dom.max_kb, dom.tot_kb = max_kb, tot_kb

    def memory_kb(self, domid: int) -> int | None:
        """The domain's current reservation (tot_pages) if it has changed it
        since it was built; None: what it was built with."""
        dom = self._domains.get(domid)
        return None if dom is None else dom.tot_kb

    def console(self, domid: int) -> Console:
        with self.lock:
            dom = self._domains.get(domid)
            if dom is None:
                raise OSError(_errno.ESRCH, f"no domain {domid}")
            return dom.console

    def add_dom0_evtchn_sink(self, sink: Callable[[int], None]) -> None:
        """Receive dom0's event channel notifications (port) in-process."""
        self._dom0_sinks.append(sink)

    def _deliver_evtchn(self, domid: int, port: int) -> None:
        if domid == 0:
            for s in self._dom0_sinks:
                s(port)
        dom = self._domains.get(domid)
        conn = dom.conn if dom is not None else None     # read once: a close may clear it
        if conn is not None:
            conn.evtchn_event(port)

    # -- requests from a domain -------------------------------------------
    def _dispatch(self, conn: DomainConnection, f: wire.Frame) -> tuple[list, list[int]]:
        """One request, as xenstored's process_message and Xen's hypercall
        entry take it: the op's row in `OPS` (none: ENOSYS, as
        do_ni_hypercall and an unknown xenstore type), its privilege and
        transaction id (xenstored.admit), its descriptors and arguments
        (EINVAL), then its handler: (reply args, reply descriptors)."""
        row, tx = admit(OPS.get(f.op), conn.xs, f.tx_id)
        if len(f.fds) != row.fds:
            raise XsError(_errno.EINVAL)
        return row.func(self, conn, tx, row.check(f.args), f.fds)


class _Xenstored:
    """What xenstored's handlers ask of their server (XenstoredServer's
    `store`, `domain_connected` and `log`), for the domains' connections.
    Only XS_FLAG_PRIV rows use it, and a domain's connection is privileged
    only for dom0."""

    def __init__(self, hv: Hypervisor):
        self.store = hv.xenstore
        self.domain_connected = hv.domain_connected

    def log(self, msg: str) -> None:
        """`control print`: the hypervisor keeps no log of its own."""


# -- the domain wire's operations ---------------------------------------------
class Op:
    """One row of the domain wire (as xenstored's `wire_funcs` row):
    `check(args)` validates the frame's arguments (raising EINVAL) into what
    `func(hv, conn, tx, checked, fds)` takes; `func` returns (reply args,
    reply descriptors); `fds` is how many descriptors the op takes; `flags`
    are xenstored's XS_FLAG_PRIV / XS_FLAG_NOTID.  A new op is a new row."""

    __slots__ = ("func", "check", "fds", "flags")

    def __init__(self, func: Callable[..., tuple], check: Callable[[list], object], fds: int = 0,
                 flags: int = XS_FLAG_NOTID):
        self.func, self.check, self.fds, self.flags = func, check, fds, flags


_NOTHING: tuple = ((), ())        # no reply arguments, no descriptors
_NUMBER_MAX_DIGITS = 20        # a u64, the widest hypercall field (an MMIO address)


def fields(kinds: str) -> Callable[[list], list]:
    """The check of a hypercall's argument struct, one wire argument per
    field: "u" an unsigned decimal number, "b" bytes.  A missing or extra
    field, or a number that is not one, is EINVAL: the wire has no
    unreadable struct, only fields out of range, which Xen's ops answer
    -EINVAL (evtchn_send, evtchn_close: !port_is_valid)."""
    n = len(kinds)
    numbers = [i for i, k in enumerate(kinds) if k == "u"]
    if set(kinds) - {"u", "b"}:
        raise ValueError(f"field kinds {kinds!r}")

    def check(args: list) -> list:
        if len(args) != n:
            raise XsError(_errno.EINVAL)
        out = list(args)
        for i in numbers:
            a = args[i]
            if not a.isdigit() or len(a) > _NUMBER_MAX_DIGITS:
                raise XsError(_errno.EINVAL)
            out[i] = int(a)
        return out
    check.__name__ = f"fields_{kinds}"
    return check


def _hello(hv: Hypervisor, conn: DomainConnection, tx: int, a: list, fds: list[int]) -> tuple:
    """The wire's handshake (no Xen counterpart: a domain's start info),
    with the domain's console ring page.  On Xen the domain builder puts
    that page in the guest's memory and seeds grant ref
    GNTTAB_RESERVED_CONSOLE for xenconsoled (xc_dom_gnttab_seed), and a
    restarted xenconsoled maps it again; here the page is the domain
    process's own memory, so it comes with every HELLO -- a new daemon's
    too, which first takes what the old one left on it (Console.set_ring)."""
    if a[0] != wire.WIRE_VERSION:
        raise OSError(_errno.EPROTO, f"wire version {a[0]} not supported "
                      f"(hypervisor speaks {wire.WIRE_VERSION})")
    dom = hv._domains.get(conn.domid)
    if dom is not None:
        dom.console.set_ring(fds[0])
    return [wire.WIRE_VERSION, conn.domid], []


def _evtchn_alloc_unbound(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """EVTCHNOP_alloc_unbound: do_event_channel_op -> evtchn_alloc_unbound."""
    return [hv.evtchn.alloc_unbound(conn.domid, a[0], a[1])], []


def _evtchn_bind_interdomain(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """EVTCHNOP_bind_interdomain: do_event_channel_op -> evtchn_bind_interdomain;
    the reply carries the channel's socket when it is direct (evtchn.py)."""
    with hv.evtchn.lock:
        lport = hv.evtchn.bind_interdomain(conn.domid, a[0], a[1])
        fd = _direct_channel(hv, conn.domid, lport, a[0], a[1])
    return [lport], [] if fd is None else [fd]


def _direct_channel(hv: Hypervisor, domid: int, port: int, remote_dom: int,
                    remote_port: int) -> int | None:
    """The socketpair of a newly bound channel between two connected
    domains: the remote (allocating) end is pushed to its domain now, the
    local end returned for the bind's reply.  None (the channel stays
    relayed here) for dom0, a domain not connected, or a push that cannot
    go out at once (nothing is queued holding a descriptor)."""
    if domid == 0 or remote_dom == 0:
        return None
    dom = hv._domains.get(remote_dom)
    peer = dom.conn if dom is not None else None
    if peer is None:
        return None
    # a stream: notifications pending on it are bytes, read at once by one recv
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if not peer.push_now(wire.Frame(wire.EVTCHN_BOUND, [remote_port], fds=[theirs.detach()])):
        ours.close()
        return None
    hv.evtchn.set_direct(domid, port)
    return ours.detach()


def _evtchn_send(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """EVTCHNOP_send: do_event_channel_op -> evtchn_send.  On a direct
    channel the reply says "direct": the sender's socket carries it."""
    if not hv.evtchn.send(conn.domid, a[0]):
        return [b"direct"], []
    return _NOTHING


def _evtchn_close(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """EVTCHNOP_close: do_event_channel_op -> evtchn_close."""
    hv.evtchn.close(conn.domid, a[0])
    return _NOTHING


def _evtchn_status(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """EVTCHNOP_status: do_event_channel_op -> evtchn_status."""
    st = hv.evtchn.status(conn.domid, a[0], a[1])
    return [st["status"], st.get("dom", ""), st.get("port", "")], []


def _gnt_grant(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """A grant entry written into the domain's own table (gnttab_grant_foreign_access)."""
    return [hv.grants.grant(conn.domid, fds[0], a[0], bool(a[1]))], []


def _gnt_end_access(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """gnttab_end_foreign_access_ref: the domain takes its grant back."""
    hv.grants.end_access(conn.domid, a[0])
    return _NOTHING


def _gnt_map(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """GNTTABOP_map_grant_ref: do_grant_table_op -> gnttab_map_grant_ref."""
    return [], [hv.grants.map(conn.domid, a[0], a[1], bool(a[2]))]


def _gnt_unmap(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """GNTTABOP_unmap_grant_ref: do_grant_table_op -> gnttab_unmap_grant_ref."""
    hv.grants.unmap(conn.domid, a[0], a[1])
    return _NOTHING


def _console_kick(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """The console ring's event channel notified: xenconsoled's
    handle_ring_read takes the output into the domain's buffer and log
    (Console.take_ring).  xenconsoled notifies back after every read; here
    only a domain that said it waits for room (a[0] = b"1") is told, once
    the ring has some (CONSOLE_ROOM).  Input waiting for room in `in` goes
    on too (Console.put_input): the domain kicks once it took some, when
    it was told input waits (CONSOLE_INPUT's b"1")."""
    dom = hv._domains.get(conn.domid)
    if dom is not None:
        if testfault.ARMED:
            testfault.at("console:%s" % dom.name)
        if dom.console.take_ring() and a[0] == b"1":
            conn.console_room()
        dom.console.put_input()
    return _NOTHING


def _memory_reservation(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
                        fds: list[int]) -> tuple:
    """XENMEM_increase/decrease_reservation as the balloon driver uses them:
    the domain asks to hold a[0] kB; growing stops at its max_pages
    (memory_op's increase_reservation fails past d->max_pages), shrinking
    always succeeds.  The reply is what it now holds."""
    try:
        kb = hv.memory_reserve(conn.domid, a[0])
    except OSError as e:
        raise XsError(e.errno or _errno.EIO) from None
    if hv.on_memory is not None:
        hv.on_memory(conn.domid)
    return [kb], []


def _mmio_read(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """A load from an iomem= range (the access a domain's page tables allow)."""
    return [hv.iomem.read(conn.domid, a[0], a[1], a[2])], []


def _mmio_write(hv: Hypervisor, conn: DomainConnection, tx: int, a: list,
        fds: list[int]) -> tuple:
    """A store to an iomem= range."""
    hv.iomem.write(conn.domid, a[0], a[1], a[2])
    return _NOTHING


# How a xenstore reply travels back in the frame's arguments: READ's value
# whole; "OK\0" as none; anything else (directories, perms, ids, paths) as
# its nul-terminated strings.
_XS_RAW = frozenset({XsType.READ})
_XS_ACK = frozenset({XsType.WRITE, XsType.MKDIR, XsType.RM, XsType.SET_PERMS, XsType.WATCH,
                     XsType.UNWATCH, XsType.TRANSACTION_END, XsType.INTRODUCE, XsType.RELEASE,
                     XsType.RESUME, XsType.SET_TARGET, XsType.RESET_WATCHES})


def _xs_row(kind: int) -> Op:
    """A xenstore op: xenstored's own row (`xenstored.OPS`: its handler, its
    payload check, its flags) on the xs_wire payload the frame's arguments
    stand for -- each a nul-terminated string, as libxenstore's xs_talkv
    sends them, except xs_write's data, which has no nul."""
    xrow = XENSTORED_OPS[kind]
    xcheck = xrow.check
    data_last = kind == XsType.WRITE
    raw, ack = kind in _XS_RAW, kind in _XS_ACK
    strings = xs_wire.strings

    def check(args: list) -> tuple[bytes, list]:
        if data_last:
            payload = b"\0".join(args)
        else:
            payload = b"\0".join(args) + b"\0" if args else b""
        return payload, xcheck(payload)

    def func(hv: Hypervisor, conn: DomainConnection, tx: int, checked: tuple[bytes, list],
             fds: list[int]) -> tuple:
        reply = respond(xrow, Request(conn, tx, *checked))
        return ([] if ack else [reply] if raw else strings(reply)), []
    return Op(func, check, 0, xrow.flags)


# The domain wire's hypercall table (Xen's hypercall_table with
# do_event_channel_op's and do_grant_table_op's commands flattened into it,
# and xenstored's wire_funcs for the xenstore ring): a new op is a new row.
OPS: dict[int, Op] = {
    **{kind: _xs_row(kind) for kind, xrow in XENSTORED_OPS.items() if xrow.func is not None},
    HvOp.HELLO: Op(_hello, fields("u"), fds=1),
    HvOp.EVTCHN_ALLOC_UNBOUND: Op(_evtchn_alloc_unbound, fields("uu")),
    HvOp.EVTCHN_BIND_INTERDOMAIN: Op(_evtchn_bind_interdomain, fields("uu")),
    HvOp.EVTCHN_SEND: Op(_evtchn_send, fields("u")),
    HvOp.EVTCHN_CLOSE: Op(_evtchn_close, fields("u")),
    HvOp.EVTCHN_STATUS: Op(_evtchn_status, fields("uu")),
    HvOp.GNT_GRANT: Op(_gnt_grant, fields("uu"), fds=1),
    HvOp.GNT_END_ACCESS: Op(_gnt_end_access, fields("u")),
    HvOp.GNT_MAP: Op(_gnt_map, fields("uuu")),
    HvOp.GNT_UNMAP: Op(_gnt_unmap, fields("uu")),
    HvOp.CONSOLE_KICK: Op(_console_kick, fields("b")),
    HvOp.MMIO_READ: Op(_mmio_read, fields("uuu")),
    HvOp.MEMORY_RESERVATION: Op(_memory_reservation, fields("u")),
    HvOp.MMIO_WRITE: Op(_mmio_write, fields("uub")),
}
