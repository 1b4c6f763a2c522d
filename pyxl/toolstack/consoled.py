"""xenconsoled: every domain's console, read, logged and handed to clients.

A domain's console ring is a pair of FIFOs under the run dir (the domain
writes `<domid>.out`, reads `<domid>.in`).  Both ends open them read-write, so
neither sees EOF or EPIPE when the other goes away; in particular a domain
keeps its console across a daemon restart, and what it wrote meanwhile waits
in the pipe (bounded: a full ring blocks the writer, as a full Xen ring
does) until the new daemon drains it.

One thread serves all consoles with a selector, so a domain flooding its
console costs one bounded buffer and never blocks the control socket.
Output that arrives while no client is attached is kept (the last
PENDING_MAX bytes) and delivered to the next client that attaches, as
xenconsoled does through its pty.  Everything is also appended to
console/guest-<name>.log.
"""

from __future__ import annotations

import errno
import os
import queue
import selectors
import socket
import stat
import threading

PENDING_MAX = 64 << 10      # undelivered output kept per console
CLIENT_MAX = 256 << 10      # output queued for one slow client before dropping
LOG_MAX = 16 << 20          # a console log rotates to .1 beyond this
READ_CHUNK = 16 << 10


def make_fifo(path: str) -> None:
    try:
        st = os.stat(path)
        if stat.S_ISFIFO(st.st_mode):
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)


class _Client:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.out = bytearray()


class _Console:
    def __init__(self, domid: int, out_fd: int, in_fd: int, log_path: str):
        self.domid = domid
        self.out_fd = out_fd
        self.in_fd = in_fd
        self.log_path = log_path
        self.log = open(log_path, "ab", buffering=0)
        self.pending = bytearray()
        self.clients: list[_Client] = []
        self.history = bytearray()   # the last PENDING_MAX bytes, for `console` backlog tests/debug

    def append_log(self, data: bytes) -> None:
        try:
            self.log.write(data)
            if self.log.tell() > LOG_MAX:
                self.log.close()
                os.replace(self.log_path, self.log_path + ".1")
                self.log = open(self.log_path, "ab", buffering=0)
        except OSError:
            pass


class ConsoleDaemon:
    def __init__(self, log=lambda msg: None):
        self.sel = selectors.DefaultSelector()
        self.consoles: dict[int, _Console] = {}
        self.ops: queue.Queue = queue.Queue()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        self.log = log
        self.thread = threading.Thread(target=self._run, name="xenconsoled", daemon=True)
        self.stopping = False

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self._call(lambda: None)
        self.thread.join(5)

    # -- API (any thread) ----------------------------------------------
    def add(self, domid: int, out_path: str, in_path: str, log_path: str) -> None:
        """Start serving a domain's console (FIFOs must exist)."""
        out_fd = os.open(out_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        in_fd = os.open(in_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._call(lambda: self._add(domid, out_fd, in_fd, log_path))

    def remove(self, domid: int, wait: bool = True) -> None:
        """The domain is gone: deliver what is left, hang up on clients."""
        done = threading.Event()
        self._call(lambda: (self._remove(domid), done.set()))
        if wait:
            done.wait(5)

    def attach(self, domid: int, sock: socket.socket, first: bytes = b"") -> bool:
        """Hand a client's socket over: it gets the pending backlog, then live
        output; what it sends goes to the domain's console input."""
        if domid not in self.consoles:
            return False
        sock.setblocking(False)
        self._call(lambda: self._attach(domid, sock, first))
        return True

    def history(self, domid: int) -> bytes:
        c = self.consoles.get(domid)
        return bytes(c.history) if c else b""

    def _call(self, fn) -> None:
        self.ops.put(fn)
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    # -- the thread ----------------------------------------------------
    def _add(self, domid, out_fd, in_fd, log_path) -> None:
        if domid in self.consoles:
            self._remove(domid)
        c = _Console(domid, out_fd, in_fd, log_path)
        self.consoles[domid] = c
        self.sel.register(out_fd, selectors.EVENT_READ, ("ring", c))

    def _remove(self, domid) -> None:
        c = self.consoles.pop(domid, None)
        if c is None:
            return
        self._drain(c)
        self.sel.unregister(c.out_fd)
        for cl in list(c.clients):
            self._flush_blocking(cl)
            self._drop_client(c, cl)
        os.close(c.out_fd)
        os.close(c.in_fd)
        c.log.close()

    def _attach(self, domid, sock, first) -> None:
        c = self.consoles.get(domid)
        if c is None:
            sock.close()
            return
        cl = _Client(sock)
        c.clients.append(cl)
        self.sel.register(sock, selectors.EVENT_READ, ("client", (c, cl)))
        if first:
            self._to_domain(c, first)
        if c.pending:
            self._send(c, cl, bytes(c.pending))
            c.pending.clear()

    def _drain(self, c: _Console) -> None:
        while True:
            try:
                data = os.read(c.out_fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                return
            if not data:
                return
            self._output(c, data)
            if len(data) < READ_CHUNK:
                return

    def _output(self, c: _Console, data: bytes) -> None:
        c.append_log(data)
        c.history += data
        if len(c.history) > PENDING_MAX:
            del c.history[:len(c.history) - PENDING_MAX]
        if c.clients:
            for cl in list(c.clients):
                self._send(c, cl, data)
        else:
            c.pending += data
            if len(c.pending) > PENDING_MAX:
                del c.pending[:len(c.pending) - PENDING_MAX]

    def _send(self, c, cl: _Client, data: bytes) -> None:
        if not cl.out:
            try:
                n = cl.sock.send(data)
                data = data[n:]
            except BlockingIOError:
                pass
            except OSError:
                self._drop_client(c, cl)
                return
        if data:
            cl.out += data
            if len(cl.out) > CLIENT_MAX:     # a client that does not read loses the oldest
                del cl.out[:len(cl.out) - CLIENT_MAX]
            self.sel.modify(cl.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, ("client", (c, cl)))

    def _flush_blocking(self, cl: _Client) -> None:
        if cl.out:
            try:
                cl.sock.setblocking(True)
                cl.sock.settimeout(2)
                cl.sock.sendall(bytes(cl.out))
            except OSError:
                pass
            cl.out.clear()

    def _drop_client(self, c, cl: _Client) -> None:
        if cl in c.clients:
            c.clients.remove(cl)
        try:
            self.sel.unregister(cl.sock)
        except (KeyError, ValueError):
            pass
        try:
            cl.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        cl.sock.close()

    def _to_domain(self, c: _Console, data: bytes) -> None:
        try:
            os.write(c.in_fd, data)
        except BlockingIOError:
            pass   # input ring full: the guest is not reading; drop, like a full ring
        except OSError as e:
            if e.errno != errno.EAGAIN:
                raise

    def _run(self) -> None:
        while not self.stopping:
            for key, ev in self.sel.select(1.0):
                kind, obj = key.data
                try:
                    if kind == "wake":
                        try:
                            os.read(self.wake_r, 4096)
                        except BlockingIOError:
                            pass
                        while True:
                            try:
                                fn = self.ops.get_nowait()
                            except queue.Empty:
                                break
                            fn()
                    elif kind == "ring":
                        self._drain(obj)
                    elif kind == "client":
                        c, cl = obj
                        if ev & selectors.EVENT_WRITE and cl.out:
                            try:
                                n = cl.sock.send(cl.out)
                                del cl.out[:n]
                            except BlockingIOError:
                                pass
                            except OSError:
                                self._drop_client(c, cl)
                                continue
                            if not cl.out:
                                self.sel.modify(cl.sock, selectors.EVENT_READ, key.data)
                        if ev & selectors.EVENT_READ:
                            try:
                                data = cl.sock.recv(4096)
                            except BlockingIOError:
                                continue
                            except OSError:
                                data = b""
                            if not data:
                                self._drop_client(c, cl)
                            else:
                                self._to_domain(c, data)
                except Exception as e:  # one bad console must not stop the others
                    self.log("xenconsoled: %s: %r" % (kind, e))
