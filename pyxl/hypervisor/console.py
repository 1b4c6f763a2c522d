"""Per-domain consoles, as xenconsoled keeps them.

Output from the domain is appended to the domain's log file (when the
caller gives one, like xenconsoled's --log=guest) and either handed to the
attached readers or, while nobody is attached, kept in a bounded backlog
(oldest bytes dropped, as xenconsoled's buffer limit does) that the next
reader receives first. Nothing here ever blocks the writer: a domain that
floods its console costs bounded memory, and slow readers lose their oldest
unread bytes rather than stall the domain.

The log file is capped too (`log_max` bytes, 1 MiB by default): when it is
full it is rotated the way libxl rotates its log files -- NAME.log.(k-1)
becomes NAME.log.k, ..., NAME.log becomes NAME.log.1, the oldest beyond
`log_keep` is overwritten -- and a fresh NAME.log is started, so a flooding
guest costs at most (log_keep + 1) * log_max bytes of disk.  Log files are
the host's own: 0600, never opened through a symbolic link
(pyxl.fsutil.open_append), in a directory the toolstack made and checked.

Output reaches the console on the domain's ring page (xencons.py), as on
Xen: the domain hands the page over with every HELLO (`set_ring`) and
kicks after writing (`take_ring`), and what `out` holds is appended to the
log and the backlog before out_cons moves past it (xenconsoled's
buffer_append) -- so output the domain wrote and a killed daemon never
took is still on the page when the next daemon gets it back, and is taken
then, before anything newer.  (A daemon killed between the log's append
and the index's store leaves those bytes to be logged again: once more,
never lost.)

Input goes the other way on the same page, as xenconsoled's handle_tty_read
puts it: `send_input` writes what `in` has room for at in_prod and the
domain is notified (the input sink the hypervisor wires to the domain's
connection); the rest waits in a bounded buffer (oldest dropped) and goes
on when the domain kicks after taking some (`put_input`), or onto the page
of the domain's next connection.  Input on the page is the domain's: a
daemon killed before the domain read it loses none of it.
"""

from __future__ import annotations

import io
import mmap
import os
import threading
from typing import Callable

from pyxl.fsutil import open_append

from . import xencons
from .grant import check_page

DEFAULT_LIMIT = 64 * 1024
DEFAULT_LOG_MAX = 1024 * 1024      # bytes per console log file
DEFAULT_LOG_KEEP = 4               # rotated files kept: NAME.log.1 .. NAME.log.4


class _Bounded:
    """Bytes kept up to `limit`, oldest dropped; counts what was dropped."""

    def __init__(self, limit: int):
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


class ConsoleReader:
    """One attached client (`pyxl console`). `read(timeout)` returns the next
    bytes, None on timeout, b"" once the console is closed (domain gone)."""

    def __init__(self, console: "Console", backlog: bytes):
        self._console = console
        self._buf = _Bounded(console.limit)
        self._buf.add(backlog)
        self.closed = False

    def read(self, timeout: float | None = None) -> bytes | None:
        cond = self._console._cond
        with cond:
            if not cond.wait_for(lambda: self._buf.data or self.closed or self._console.closed,
                                 timeout):
                return None
            return self._buf.take()

    @property
    def dropped(self) -> int:
        return self._buf.dropped

    def write(self, data: bytes) -> None:
        """Keyboard input for the domain."""
        self._console.send_input(data)

    def detach(self) -> None:
        with self._console._cond:
            self.closed = True
            if self in self._console._readers:
                self._console._readers.remove(self)
            self._console._cond.notify_all()


def map_ring(fd: int) -> mmap.mmap:
    """The domain's console page, mapped shared read-write (what xenconsoled's
    xengnttab_map_grant_ref of GNTTAB_RESERVED_CONSOLE gives it).  The
    descriptor is the domain's to choose, so it is checked first as a
    grant's page is (grant.check_page: a sealed 4096-byte memfd, so no
    access to the mapping can fault or block the daemon); anything else is
    EINVAL, and a page that cannot be mapped writable fails as mmap does."""
    check_page(fd, "the console ring")
    return mmap.mmap(fd, xencons.PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


class Console:
    def __init__(self, domid: int, log_path: str | None = None, limit: int = DEFAULT_LIMIT,
                 log_max: int | None = DEFAULT_LOG_MAX, log_keep: int = DEFAULT_LOG_KEEP):
        self.domid = domid
        self.limit = limit
        self._cond = threading.Condition()
        self._backlog = _Bounded(limit)
        self._readers: list[ConsoleReader] = []
        self._log: io.FileIO | None = None    # open while logging to _log_path
        self._log_path = log_path
        self._input_sink: Callable[[bool], None] | None = None
        self._pending_input = _Bounded(limit)
        self.closed = False
        self.log_max = log_max if log_max and log_max > 0 else None   # None: no cap
        self.log_keep = max(0, log_keep)
        self._log_size = 0
        self._ring: mmap.mmap | None = None       # the domain's page (set_ring)
        self._ring_buf: memoryview | None = None
        if log_path:
            self._log = open(open_append(log_path), "ab", buffering=0)
            self._log_size = os.fstat(self._log.fileno()).st_size

    def _write_log(self, log: io.FileIO, path: str, data: bytes) -> None:
        """Append to the log `log` (open on `path`), rotating whenever the
        current file is full.  Called with self._cond held."""
        if self.log_max is None:
            log.write(data)
            return
        view = memoryview(data)
        while view:
            room = self.log_max - self._log_size
            if room <= 0:
                log.close()
                self._log = None
                log = self._rotate(path)
                continue
            chunk = view[:room]
            n = log.write(chunk) or 0
            self._log_size += n
            if n < len(chunk):
                return        # the disk is full: drop the rest, never wait
            view = view[n:]

    def _rotate(self, path: str) -> io.FileIO:
        """The closed log at `path` moves to path.1 (and so on, keeping
        log_keep old files); -> the new, empty log, which is self._log."""
        try:
            if self.log_keep:
                for i in range(self.log_keep - 1, 0, -1):
                    try:
                        os.replace(f"{path}.{i}", f"{path}.{i + 1}")
                    except FileNotFoundError:
                        pass
                os.replace(path, f"{path}.1")
            else:
                os.unlink(path)
        except OSError:
            pass      # could not rotate: start over in the same file rather than grow it
        log = self._log = open(open_append(path), "ab", buffering=0)
        os.ftruncate(log.fileno(), 0)
        self._log_size = 0
        return log

    # -- from the domain -----------------------------------------------
    def output(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            if not self.closed:
                self._output(data)

    def _output(self, data: bytes) -> None:
        """With self._cond held: into the log, and to the readers or the backlog."""
        if self._log is not None and self._log_path is not None:
            try:
                self._write_log(self._log, self._log_path, data)
            except OSError:
                pass  # a full disk must not take the console down
        if self._readers:
            for r in self._readers:
                r._buf.add(data)
        else:
            self._backlog.add(data)
        self._cond.notify_all()

    def set_ring(self, fd: int) -> None:
        """The domain's console page (its descriptor stays the caller's),
        checked and mapped (map_ring), in place of any it had; what it
        holds already -- output a previous daemon never took -- is taken
        now, and input waiting here goes onto it.  Raises OSError for a
        page that will not do."""
        ring = map_ring(fd)
        with self._cond:
            self._drop_ring()
            if self.closed:
                ring.close()
                return
            self._ring, self._ring_buf = ring, memoryview(ring)
        self.take_ring()
        self.put_input()

    def take_ring(self) -> bool:
        """The domain kicked: what `out` holds goes to the log and the
        backlog, then out_cons moves past it (xenconsoled's handle_ring_read
        and buffer_append).  True if the ring's indices were sane (it has
        room now); False for one that says it holds more than it can, which
        is left as it is, unread, as buffer_append leaves it, or no ring."""
        with self._cond:
            buf = self._ring_buf
            if buf is None:
                return False
            data, cons, sane = xencons.read_out(buf)
            if data:
                self._output(data)
                xencons.consumed(buf, cons)
            return sane

    def _drop_ring(self) -> None:
        """With self._cond held: unmap the page, if any."""
        if self._ring is not None and self._ring_buf is not None:
            self._ring_buf.release()
            self._ring.close()
        self._ring = self._ring_buf = None

    # -- readers -------------------------------------------------------
    def attach(self) -> ConsoleReader:
        with self._cond:
            reader = ConsoleReader(self, self._backlog.take())
            self._readers.append(reader)
            self._cond.notify_all()
            return reader

    @property
    def backlog(self) -> bytes:
        with self._cond:
            return bytes(self._backlog.data)

    # -- input to the domain -------------------------------------------
    def set_input_sink(self, sink: Callable[[bool], None] | None) -> None:
        """`sink(waiting)` notifies the domain that `in` has new input;
        `waiting`: more waits here, so the domain should kick once it has
        taken some.  None: no domain to notify (input waits here)."""
        with self._cond:
            self._input_sink = sink

    def send_input(self, data: bytes) -> None:
        """Keyboard input for the domain: onto `in` as far as it has room,
        the rest kept (bounded) until the domain takes some."""
        with self._cond:
            if self.closed or not data:
                return
            self._pending_input.add(bytes(data))
            self._put_input()

    def put_input(self) -> None:
        """The domain kicked (or handed its page over): input waiting here
        goes onto `in`, as far as it has room."""
        with self._cond:
            if self._pending_input.data and not self.closed:
                self._put_input()

    def _put_input(self) -> None:
        """With self._cond held: xenconsoled's handle_tty_read -- waiting
        input written at in_prod (xencons.write_in: never more than `in`
        has room for, never outside it, however the domain's in_cons
        reads), then the domain notified."""
        buf, pending = self._ring_buf, self._pending_input.data
        if buf is None or not pending:
            return
        n = xencons.write_in(buf, pending)
        if n:
            del pending[:n]
        if self._input_sink is not None:
            self._input_sink(bool(pending))

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._input_sink = None
            self._drop_ring()
            if self._log is not None:
                self._log.close()
                self._log = None
            self._cond.notify_all()
