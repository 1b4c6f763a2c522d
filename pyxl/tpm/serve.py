"""`pyxl tpm-serve`: one TPM engine (1.2, or 2.0 with --tpm2) as a raw command socket.

The endpoint is what TrouSerS' `tcsd -e` (TCP device) and swtpm's
`socket --server` speak: TPM 1.2 command frames back to back, no extra
header, one response per command.  What the clients need (measured with
TrouSerS' tcsd 0.3.15 and swtpm 0.7's clients, Debian 12):

* tcsd opens a NEW connection for every command and leaves the previous one
  open and idle, opens one connection at start-up that sends nothing, and
  reads each response with ONE read() of at most 2048 bytes -- so every
  response goes out in one send(), and idle or empty connections cost nothing.
* Several clients may be connected at once (tcsd's idle socket plus a
  probe); commands are executed one at a time, in arrival order, by a single
  selector loop (no threads: a TPM runs one command at a time anyway).

Framing.  A TCP stream has no write boundaries, so like a TPM driver we use
the header's paramSize to know when a frame is complete, and like
swtpm/libtpms we answer a malformed frame with a 10-byte TPM_BAD_PARAM_SIZE
and keep the connection open:

* fewer than 10 bytes: wait; on EOF close without answering (swtpm does too);
* 10 <= paramSize <= 4096 and exactly paramSize bytes arrived: the engine
  executes the frame;
* more bytes than paramSize arrived together (a too-small paramSize, or two
  commands in one write): one TPM_BAD_PARAM_SIZE for the whole batch, as
  libtpms, which treats one read as one command;
* paramSize < 10: TPM_BAD_PARAM_SIZE for what arrived;
* paramSize > 4096 (the TPM's input buffer): TPM_BAD_PARAM_SIZE for the
  first 4096 bytes; what follows is framed afresh (swtpm reads 4096 at a time);
* fewer than paramSize bytes: wait up to FRAME_GRACE seconds for the rest
  (TCP may split a write), then TPM_BAD_PARAM_SIZE.  Deliberate difference:
  swtpm answers a short read at once; waiting a moment means a client whose
  command is split in transit is still served correctly.

(vtpm-stubdom never has to frame: its shared page carries the exact length,
and the emulator ignores paramSize.  A byte stream has no such length, so this
endpoint frames as swtpm does, for every --vendor.)

State.  The engine's dump() is kept in DIR/tpm-state ("pyxl-tpm-state\n", the
blob's SHA-256, the blob: damage is detected, never loaded), rewritten atomically
(pyxl.fsutil.atomic_write: temp file, fsync, rename, directory fsync) after
every command that changed persistent state and BEFORE the response is sent:
an answered command is on disk, and a kill at any moment leaves the old or
the new file, never a torn one.

No acknowledgement without durability.  If that write fails (disk full, EIO,
a read-only file system, RLIMIT_FSIZE), the command's own answer is dropped
and the client gets the answer libtpms gives when its NV write callback
fails: TPM_FAIL for a TPM 1.2 (TPM_PermanentAll_NVStore, tpm_permanent.c),
TPM_RC_FAILURE for a TPM 2.0 (ExecuteCommand: a failed NvCommit puts the TPM
in failure mode, whose answer is TPM_RC_FAILURE, until the next _TPM_Init;
behind swtpm that callback is SWTPM_NVRAM_StoreData, swtpm.c).
The engine is then restarted from the last state written (TPMServer.roll_back:
TPM_Init / _TPM_Init and the start-up of --startup, ST_CLEAR in place of
ST_STATE, whose saved state a first start-up has used), so it never runs
ahead of the disk; one line on stderr says so and the server keeps serving.
If even that fails, it stops with exit status 1.  A failed final write at
SIGTERM is exit status 1 too.  DIR must be the server's own (made 0700,
refused if another user owns it or may write it: pyxl.fsutil.ensure_dir).
DIR/lock (flock) keeps a second server off the same directory.

--unix PATH replaces only a socket nobody listens on (a dead server's); any
other file there is left alone and the server refuses to start.  On
SIGTERM/SIGINT the server does what vtpm-stubdom's emulator does at shutdown:
TPM_SaveState, then a final write -- so a later `--startup state` resumes.

TPM 2.0 (--tpm2).  The engine is libtpms's TPM 2.0 (pyxl.tpm.tpm2), served
as `swtpm socket --tpm2` serves it: the same framing, except that a malformed
frame is handed to the engine as it arrived, so libtpms answers it
(TPM_RC_COMMAND_SIZE, TPM_RC_BAD_TAG, ...) exactly as behind swtpm, and that
a piece is at most 4105 bytes (TPM2_READ_SIZE, what swtpm reads at once);
a command may come behind swtpm's TCG prefix (SwtpmTPM2Framer), which sets
the locality and gets its answer prefixed with its size and followed by an
acknowledgement.  Over TCP
port P, swtpm's control channel listens on P+1, and on a Unix socket PATH at
PATH.ctrl (pyxl.tpm.tpm2.ctrl: what tpm2-tools' `-T swtpm:port=P` and
`-T swtpm:path=PATH` need).  The state file holds the engine's
dump() the same way; at SIGTERM the platform's TPM2_Shutdown(SU_STATE) takes
the place of TPM_SaveState.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import os
import select
import signal
import socket
import stat
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pyxl.fsutil import UnsafePath, atomic_write, ensure_dir
from pyxl.tpm.constants import TPM_ORD, TPM_RESULT, TPM_TAG

if TYPE_CHECKING:
    from pyxl.tpm.identity import Identity

TPM_TAG_RSP_COMMAND = int(TPM_TAG.TPM_TAG_RSP_COMMAND)
TPM_TAG_RQU_COMMAND = int(TPM_TAG.TPM_TAG_RQU_COMMAND)
TPM_FAIL = int(TPM_RESULT.TPM_FAIL)
TPM_BAD_PARAM_SIZE = int(TPM_RESULT.TPM_BAD_PARAM_SIZE)
TPM_ORD_SaveState = int(TPM_ORD.TPM_ORD_SaveState)

HEADER = struct.Struct(">HII")     # tag, paramSize, ordinal / returnCode
PARAM_SIZE = struct.Struct(">I")   # the header's paramSize, at offset 2
TPM_INPUT_BUFFER = 4096            # the most one command may be (libtpms' buffer)
# swtpm --tpm2 reads the buffer and a TCG command prefix at once (mainloop.c:
# TPM_BUFFER_MAX + sizeof(struct tpm2_send_command_prefix), packed: 9 bytes)
TCG_SEND_COMMAND = struct.pack(">I", 8)   # TPM2_SEND_COMMAND, swtpm's tpmlib.h
TCG_PREFIX_SIZE = 9
TPM2_READ_SIZE = TPM_INPUT_BUFFER + TCG_PREFIX_SIZE
TPM12_DEFAULT_PORT = 6545         # tcsd's TCSD_TCP_DEVICE_PORT
TPM2_DEFAULT_PORT = 2321          # tpm2-tss's TCTI_SWTPM_DEFAULT_PORT (control on 2322)
FRAME_GRACE = 0.3                  # seconds to wait for the rest of a short frame
RECV_SIZE = 2 * TPM_INPUT_BUFFER   # one command and then some (a bigger buffer costs per call)
MAX_CONNECTIONS = 64               # beyond this the longest-idle connection is closed
# events taken per epoll_wait (the rest wait for the next, level-triggered):
# without a maximum, Python allocates room for 1023 at every call
POLL_EVENTS = 8
SEND_TIMEOUT = 10.0


def error_response(rc: int) -> bytes:
    """The 10-byte answer a TPM gives when a command fails before its body."""
    return HEADER.pack(TPM_TAG_RSP_COMMAND, 10, rc)


class Engine(Protocol):
    """What the server needs of an engine: pyxl.tpm.engine.TPM (TPM 1.2) or
    pyxl.tpm.tpm2.TPM2, which also has save_state() (used at shutdown in
    place of TPM_SaveState) and power_on() (the control channel's CMD_INIT)."""

    @property
    def persistent_changed(self) -> bool: ...

    def execute(self, request: bytes, locality: int = 0) -> bytes: ...
    def dump(self) -> bytes: ...
    def power_on(self, startup: str | None = "clear") -> int: ...


EngineFactory = Callable[["Options", "StateDir", Callable[[str], None]],
                         tuple[Engine, "bytes | None"]]


class ServeError(Exception):
    """A problem the operator must fix (busy or broken state dir, bad port).
    str() is the complete message."""


# ---------------------------------------------------------------- framing

class FrameSource(Protocol):
    """What a connection's framer offers the server (Framer, and the
    control channel's pyxl.tpm.tpm2.ctrl.ControlFramer)."""

    def feed(self, data: bytes, now: float) -> None: ...
    @property
    def deadline(self) -> float | None: ...
    def take(self, now: float, eof: bool = False) -> tuple[str, bytes] | None: ...


class Framer:
    """Cuts one connection's byte stream into commands (see module doc).

    feed() adds bytes; take() returns the next ("command", bytes) or
    ("malformed", bytes) item, or None when it must wait for more bytes
    (then `deadline` says until when, None = indefinitely)."""

    def __init__(self, max_size: int = TPM_INPUT_BUFFER, grace: float = FRAME_GRACE):
        self.buf = bytearray()
        self.max_size = max_size
        self.grace = grace
        self.last_data = 0.0

    def feed(self, data: bytes, now: float) -> None:
        self.buf += data
        self.last_data = now

    @property
    def deadline(self) -> float | None:
        if len(self.buf) < 10:
            return None
        return self.last_data + self.grace

    def take(self, now: float, eof: bool = False) -> tuple[str, bytes] | None:
        buf = self.buf
        if len(buf) < 10:
            return None
        size = int.from_bytes(buf[2:6], "big")
        if size < 10:
            return self._cut("malformed", min(len(buf), self.max_size))
        if size > self.max_size:
            want = self.max_size
        else:
            want = size
        if len(buf) < want:
            if eof or now >= self.last_data + self.grace:
                return self._cut("malformed", len(buf))
            return None
        if size > self.max_size:
            return self._cut("malformed", self.max_size)
        if len(buf) > size:
            return self._cut("malformed", min(len(buf), self.max_size))
        return self._cut("command", size)

    def _cut(self, kind: str, n: int) -> tuple[str, bytes]:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return kind, data


class SwtpmTPM2Framer(Framer):
    """Framer of `swtpm socket --tpm2`: pieces of at most TPM2_READ_SIZE
    bytes, and swtpm's TCG command prefix (tpmlib_handle_tcg_tpm2_cmd_header:
    u32 TPM2_SEND_COMMAND, u8 locality, u32 size, then the command), which
    it recognises at the start of any read of 10 bytes or more that is not a
    TPM 2.0 tag.  The command behind it is framed by the usual rules and the
    item is ("prefixed", prefix + command)."""

    def __init__(self, grace: float = FRAME_GRACE):
        super().__init__(TPM2_READ_SIZE, grace)

    def take(self, now: float, eof: bool = False) -> tuple[str, bytes] | None:
        buf = self.buf
        if len(buf) < 10 or buf[:4] != TCG_SEND_COMMAND:
            return super().take(now, eof)
        prefix = bytes(buf[:TCG_PREFIX_SIZE])
        del buf[:TCG_PREFIX_SIZE]
        self.max_size -= TCG_PREFIX_SIZE          # swtpm reads prefix and command at once
        try:
            if len(buf) < 10:                     # swtpm hands even this to libtpms
                if eof or now >= self.last_data + self.grace:
                    item = self._cut("malformed", len(buf))
                else:
                    item = None
            else:
                item = super().take(now, eof)
        finally:
            self.max_size += TCG_PREFIX_SIZE
        if item is None:
            buf[:0] = prefix
            return None
        return "prefixed", prefix + item[1]


# ---------------------------------------------------------------- state dir

STATE_MAGIC = b"pyxl-tpm-state\n"   # + sha256(blob) + blob


class StateDir:
    """DIR/tpm-state (the engine's dump, checksummed) and DIR/lock."""

    STATE = "tpm-state"
    LOCK = "lock"

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.state_path = os.path.join(self.path, self.STATE)
        self.lock_path = os.path.join(self.path, self.LOCK)
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take DIR/lock or raise ServeError naming the process holding it."""
        try:
            ensure_dir(self.path, 0o700)
        except UnsafePath as e:
            raise ServeError("refusing state directory %s: %s" % (self.path, e))
        except OSError as e:
            raise ServeError("cannot create state directory %s: %s" % (self.path, e.strerror))
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
        except OSError as e:
            raise ServeError("cannot open %s: %s" % (self.lock_path, e.strerror))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ServeError("state directory %s is in use by %s" % (
                    self.path, holder or "another process (it holds %s)" % self.lock_path))
            raise ServeError("cannot lock %s: %s" % (self.lock_path, e.strerror))
        self._lock_fd = fd
        self.set_holder("pyxl tpm-serve pid %d" % os.getpid())

    def set_holder(self, text: str) -> None:
        """Record who holds the lock (shown to a second server that is refused)."""
        if self._lock_fd is None:
            return
        data = (text + "\n").encode()
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, data, 0)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            try:
                os.ftruncate(self._lock_fd, 0)
            except OSError:
                pass
            os.close(self._lock_fd)   # closing drops the flock
            self._lock_fd = None

    def read(self) -> bytes | None:
        """The saved blob, None if there is none; ServeError if damaged."""
        try:
            with open(self.state_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ServeError("cannot read %s: %s" % (self.state_path, e.strerror))
        n = len(STATE_MAGIC)
        if not data.startswith(STATE_MAGIC) or len(data) < n + 32:
            raise ServeError("%s is not a pyxl TPM state file (left untouched)" % self.state_path)
        digest, blob = data[n:n + 32], data[n + 32:]
        if hashlib.sha256(blob).digest() != digest:
            raise ServeError("%s is damaged: checksum mismatch (left untouched)" % self.state_path)
        return blob

    def write(self, blob: bytes) -> None:
        """Replace the state file atomically and durably."""
        atomic_write(self.state_path, STATE_MAGIC + hashlib.sha256(blob).digest() + blob)

    def remove_stale_temps(self) -> None:
        """Temp files of a server killed mid-write (we hold the lock now)."""
        prefix = self.STATE + ".tmp."
        for name in os.listdir(self.path):
            if name.startswith(prefix):
                _unlink_quietly(os.path.join(self.path, name))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# ---------------------------------------------------------------- server

@dataclass(eq=False)          # hashable by identity (TPMServer._waiting)
class Conn:
    sock: socket.socket
    where: Any            # accept()'s address (host, port, ...), or a Unix socket's name
    framer: FrameSource
    last_active: int      # TPMServer.reads at its last read (the longest idle goes first)
    eof: bool = False

    @property
    def peer(self) -> str:
        """Who is connected, for log lines (made only when one is written)."""
        w = self.where
        return "%s:%s" % w[:2] if isinstance(w, tuple) else str(w)


@dataclass
class Listener:
    sock: socket.socket
    address: str          # "tcp 127.0.0.1:6545" / "unix /path"
    unix_path: str | None = None
    unix_id: tuple[int, int] | None = None     # (st_dev, st_ino) of the socket we bound
    ctrl: bool = False    # swtpm's control channel (--tpm2), not TPM commands
    family: int = field(init=False)     # sock.family as a plain int (accept())

    def __post_init__(self) -> None:
        self.family = int(self.sock.family)

    def accept(self) -> tuple[socket.socket, Any]:
        """socket.accept() without its family and type properties, which
        make enum members of the listener's ints at every call (most of
        the Python work of accepting a connection)."""
        fd, addr = self.sock._accept()  # type: ignore[attr-defined]  # what socket.accept() calls
        return socket.socket(self.family, socket.SOCK_STREAM, 0, fd), addr

    def remove_socket(self) -> None:
        """Unlink our socket file -- only if it is still ours."""
        if self.unix_path is None:
            return
        try:
            st = os.lstat(self.unix_path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) == self.unix_id:
            _unlink_quietly(self.unix_path)

    @property
    def tcp(self) -> bool:
        return self.unix_path is None


def open_tcp(host: str, port: int) -> Listener:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ServeError("cannot resolve %s: %s" % (host, e))
    family, _, _, _, addr = infos[0]
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(addr)
        s.listen(16)
    except OSError as e:
        s.close()
        raise ServeError("cannot listen on %s port %d: %s" % (host, port, e.strerror))
    h, p = s.getsockname()[:2]
    return Listener(s, "tcp %s:%d" % (h if family == socket.AF_INET else "[%s]" % h, p))


def _remove_stale_socket(path: str) -> None:
    """Remove what is at `path` only if it is a socket (lstat: a link to one
    is not) that nobody listens on -- a dead server's.  Anything else stays
    and is a ServeError."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ServeError("%s exists and is not a socket (left untouched)" % path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)              # nobody listens: a dead server's socket
        return
    except OSError as e:
        raise ServeError("%s: %s (left untouched)" % (path, e.strerror))
    finally:
        probe.close()
    raise ServeError("%s is in use: something is listening on it" % path)


def control_framer() -> FrameSource:
    """The framer of a control-channel connection (pyxl.tpm.tpm2.ctrl)."""
    from pyxl.tpm.tpm2.ctrl import ControlFramer
    return ControlFramer()


def open_tcp_with_ctrl(host: str, port: int) -> tuple[Listener, Listener]:
    """The command port and swtpm's control channel on port + 1 (port 0:
    any free pair)."""
    for _ in range(50 if port == 0 else 1):
        data = open_tcp(host, port)
        p = int(data.address.rsplit(":", 1)[1])
        try:
            ctrl = open_tcp(host, p + 1)
        except ServeError:
            data.sock.close()
            if port:
                raise
            continue
        ctrl.ctrl = True
        ctrl.address = "ctrl " + ctrl.address
        return data, ctrl
    raise ServeError("no free pair of ports (commands, control) on %s" % host)


def open_unix(path: str, mode: int | None = None) -> Listener:
    path = os.path.abspath(path)
    _remove_stale_socket(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
        st = os.lstat(path)
        if mode is not None:      # e.g. 0o666 for tcsd, which runs as user tss
            os.chmod(path, mode)
        s.listen(16)
    except OSError as e:
        s.close()
        raise ServeError("cannot listen on %s: %s" % (path, e.strerror))
    return Listener(s, "unix %s" % path, unix_path=path, unix_id=(st.st_dev, st.st_ino))


class TPMServer:
    """The selector loop: accept, frame, execute one command at a time, save,
    answer in one send."""

    def __init__(self, engine: Engine, state: StateDir | None, listeners: list[Listener],
                 locality: int = 0, log: Callable[[str], None] | None = None,
                 trace: bool = False, tpm2: bool = False,
                 restart: Callable[[bytes, Engine], Engine] | None = None,
                 durable: bytes | None = None):
        self.trace = trace          # log every command: ordinal, return code, time
        # frame as swtpm socket --tpm2 (SwtpmTPM2Framer): malformed frames go
        # to the engine as they arrived (libtpms answers them) instead of a
        # TPM 1.2 TPM_BAD_PARAM_SIZE
        self.tpm2 = tpm2
        self.engine = engine
        self.state = state
        self.listeners = listeners
        self.locality = locality
        self.log = log or (lambda msg: print("pyxl tpm-serve: " + msg, file=sys.stderr, flush=True))
        # epoll directly, not selectors: its per-event bookkeeping is a
        # measurable share of a round trip when every command is a connection
        self._epoll = select.epoll()
        self._watched: dict[int, Callable[[], None]] = {}     # fd -> what to do when readable
        # a connection's fd -> its Conn: the usual event, handed to _readable
        # directly (a call through a partial costs more, on every command)
        self._conn_fds: dict[int, Conn] = {}
        self.conns: dict[socket.socket, Conn] = {}
        self._waiting: set[Conn] = set()     # conns with a partial frame (a deadline)
        # restart(blob, old) -> a running engine with blob's state (old is
        # closed first: libtpms holds one TPM per process); durable: the blob
        # that is in the state file now
        self.restart = restart
        self.durable = durable
        self.fatal: str | None = None    # why the server stopped serving (exit status 1)
        self.commands = 0
        # reads from connections so far: the clock of Conn.last_active (a
        # count orders them as well as a time would, without a clock read
        # per command)
        self.reads = 0
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- control
    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler or another thread)."""
        self._stop = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- loop
    def _watch(self, sock: socket.socket, on_readable: Callable[[], None]) -> None:
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        self._watched[sock.fileno()] = on_readable

    def _watch_conn(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._conn_fds[fd] = conn

    def _unwatch(self, sock: socket.socket, closing: bool = False) -> None:
        """Stop watching sock; closing: the caller closes it next, which
        takes it out of the epoll set (no other descriptor shares it)."""
        fd = sock.fileno()
        watched: object = self._watched.pop(fd, None)
        if watched is None:
            watched = self._conn_fds.pop(fd, None)
        if watched is not None and not closing:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass

    def serve_forever(self) -> None:
        for lst in self.listeners:
            lst.sock.setblocking(False)
            self._watch(lst.sock, functools.partial(self._accept, lst))
        self._watch(self._wake_r, self._woken)
        try:
            while not self._stop:
                timeout = self._next_timeout() if self._waiting else None
                for fd, _ in self._epoll.poll(-1 if timeout is None else timeout, POLL_EVENTS):
                    conn = self._conn_fds.get(fd)
                    if conn is not None:            # (not closed by an earlier event)
                        self._readable(conn)
                    else:                           # a listener, the wake-up
                        on_readable = self._watched.get(fd)
                        if on_readable is not None:
                            on_readable()
                    if self._stop:
                        break
                if timeout is not None:      # a short frame was waiting (else none can be due)
                    self._expire()
        finally:
            self._shutdown()

    def _woken(self) -> None:
        try:
            self._wake_r.recv(64)
        except OSError:
            pass

    def _next_timeout(self) -> float | None:
        if not self._waiting:
            return None
        deadlines = [d for d in (c.framer.deadline for c in self._waiting) if d]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _accept(self, lst: Listener) -> None:
        # one connection per readiness event: the listener is level-triggered,
        # so a second pending one wakes select() again, and the common case
        # (tcsd: one connection per command) saves a failing accept()
        try:
            sock, addr = lst.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.log("accept failed: %s" % e)
            return
        if len(self.conns) >= MAX_CONNECTIONS:
            oldest = min(self.conns.values(), key=lambda c: c.last_active)
            self._close(oldest)
        sock.setblocking(False)
        peer = addr if lst.tcp else (addr or lst.address)
        framer = control_framer() if lst.ctrl else SwtpmTPM2Framer() if self.tpm2 else Framer()
        conn = Conn(sock, peer, framer, self.reads)
        self.conns[sock] = conn
        # tcsd writes its command right after connecting: often it is
        # already here, so serve it before anything else (nothing is in
        # flight yet, so Nagle cannot hold that first answer back)
        self._readable(conn)
        if sock in self.conns:               # still open: more commands, or EOF
            if lst.tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._watch_conn(conn)

    def _readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        self.reads += 1
        conn.last_active = self.reads
        framer = conn.framer
        # the common case, one read that is exactly one command with nothing
        # buffered (what the Framer's feed() then take() would return as
        # ("command", data)): executed without the buffer.  (Tested here, not
        # in a Framer method: that would be one more call per command.)
        n = len(data)
        if (not (self.trace or self._stop) and isinstance(framer, Framer) and not framer.buf
                and 10 <= n <= framer.max_size and PARAM_SIZE.unpack_from(data, 2)[0] == n):
            self._send(conn, self.execute(data))
            return
        now = time.monotonic()      # (the framer's grace period: not needed above)
        if data:
            framer.feed(data, now)
        else:
            conn.eof = True
        self._process(conn, now)
        if conn.eof and conn.sock in self.conns:
            self._close(conn)
        elif framer.deadline is not None:
            self._waiting.add(conn)
        else:
            self._waiting.discard(conn)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in list(self._waiting):
            d = conn.framer.deadline
            if d is not None and now >= d:
                self._process(conn, now)
            if conn.sock not in self.conns or conn.framer.deadline is None:
                self._waiting.discard(conn)

    def _process(self, conn: Conn, now: float) -> None:
        while conn.sock in self.conns and not self._stop:
            item = conn.framer.take(now, conn.eof)
            if item is None:
                return
            kind, data = item
            if kind == "close":               # a control message that never completed
                self._close(conn)
                return
            t0 = time.perf_counter() if self.trace else 0.0
            if kind == "control":          # swtpm's control channel (--tpm2)
                from pyxl.tpm.tpm2 import ctrl
                resp = ctrl.handle(data, self)
            elif kind == "prefixed":       # swtpm's TCG prefix: its locality stays
                self.locality = data[4]
                resp = self.execute(data[TCG_PREFIX_SIZE:])
                resp = struct.pack(">I", len(resp)) + resp + bytes(4)    # size, ..., ack
            elif kind == "command" or self.tpm2:
                resp = self.execute(data)
            else:
                resp = error_response(TPM_BAD_PARAM_SIZE)
            if self.trace and kind == "control":
                self.log("%s: control command 0x%s -> %s" % (conn.peer, data[:4].hex(), resp.hex()))
            elif self.trace:
                cmd, rsp = (data[TCG_PREFIX_SIZE:], resp[4:]) if kind == "prefixed" \
                    else (data, resp)
                self.log("%s: %s ordinal 0x%08x (%d bytes) -> rc %d (%d bytes, %.2f ms)" % (
                    conn.peer, kind, int.from_bytes(cmd[6:10], "big"), len(cmd),
                    int.from_bytes(rsp[6:10], "big"), len(rsp),
                    (time.perf_counter() - t0) * 1000))
            if not self._send(conn, resp):
                return

    def execute(self, request: bytes) -> bytes:
        """Run one well-framed command; persist before answering."""
        self.commands += 1
        try:
            resp = self.engine.execute(request, self.locality)
        except Exception:   # the engine promises not to raise; never let it kill the server
            self.log("engine raised on %s:\n%s" % (request[:10].hex(), traceback.format_exc()))
            resp = self.failure_response()
        if type(resp) is not bytes or len(resp) < 10:    # (the engines answer bytes)
            resp = self._checked(request, resp)
        if self.state is not None and self.engine.persistent_changed and not self._save():
            return self.failure_response()      # (persist(), its test written out)
        return resp

    def _checked(self, request: bytes, resp: object) -> bytes:
        """An engine's answer that is not bytes of a whole header: a
        bytearray as bytes, anything else TPM_FAIL (logged)."""
        if isinstance(resp, bytearray) and len(resp) >= 10:
            return bytes(resp)
        self.log("engine returned a malformed response to %s" % request[:10].hex())
        return self.failure_response()

    def failure_response(self) -> bytes:
        """What libtpms answers when it cannot keep its state: TPM_FAIL
        (TPM 1.2), TPM_RC_FAILURE (TPM 2.0: TpmFailureMode's answer)."""
        if self.tpm2:
            from pyxl.tpm.tpm2.engine import TPM_RC_FAILURE
            from pyxl.tpm.tpm2.engine import error_response as tpm2_error_response
            return tpm2_error_response(TPM_RC_FAILURE)
        return error_response(TPM_FAIL)

    def write_state(self) -> str | None:
        """Write the engine's dump to the state file: None once it is there,
        else what went wrong."""
        if self.state is None:
            return "no state directory"
        try:
            blob = self.engine.dump()
            self.state.write(blob)
        except Exception as e:   # OSError, and whatever a broken engine raises
            return str(e) or type(e).__name__
        self.durable = blob
        return None

    def persist(self) -> bool:
        """Before an answer goes out: write the state if the command changed
        it (libtpms: TPM_PermanentAll_NVStore, TPM 2.0 ExecuteCommand's
        NvCommit).  True when the engine's state is on disk; False when the
        write failed -- the engine has then been rolled back (roll_back) and
        the answer must be failure_response()."""
        if self.state is None or not self.engine.persistent_changed:
            return True
        return self._save()

    def _save(self) -> bool:
        """persist() once it knows the state changed."""
        assert self.state is not None
        err = self.write_state()
        if err is None:
            return True
        self.roll_back("could not save TPM state to %s: %s" % (self.state.state_path, err))
        return False

    def roll_back(self, why: str) -> None:
        """Restart the engine from the last state written, so it never runs
        ahead of the disk; if that cannot be done, stop serving (fatal).
        One log line either way."""
        try:
            if self.restart is None or self.durable is None or self.state is None:
                raise ServeError("no saved state to return to")
            # a write that failed after its rename (the directory's fsync)
            # may have left the new state in place: put the old one back
            try:
                on_disk = self.state.read()
            except ServeError:
                on_disk = None
            if on_disk != self.durable:
                self.state.write(self.durable)
            self.engine = self.restart(self.durable, self.engine)
        except Exception as e:
            self.fatal = "%s; cannot restart the TPM from its last saved state (%s): " \
                "stopping" % (why, e)
            self.log(self.fatal)
            self.stop()
            return
        self.log("%s; answered %s and restarted the TPM from its last saved state" % (
            why, "TPM_RC_FAILURE" if self.tpm2 else "TPM_FAIL"))

    def _send(self, conn: Conn, resp: bytes) -> bool:
        """The whole response in one send() (tcsd reads it with one read())."""
        sock = conn.sock
        try:
            sent = sock.send(resp)        # non-blocking; a fresh socket takes it all
            if sent < len(resp):          # a full send buffer: finish it blocking
                sock.settimeout(SEND_TIMEOUT)
                sock.sendall(resp[sent:])
                sock.setblocking(False)
            return True
        except BlockingIOError:
            try:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendall(resp)
                sock.setblocking(False)
                return True
            except OSError:
                pass
        except OSError:
            pass
        self._close(conn)
        return False

    def _close(self, conn: Conn) -> None:
        self._waiting.discard(conn)
        if self.conns.pop(conn.sock, None) is None:
            return
        self._unwatch(conn.sock, closing=True)
        try:
            conn.sock.close()
        except OSError:
            pass

    def _shutdown(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn)
        for lst in self.listeners:
            self._unwatch(lst.sock)
            lst.sock.close()
            lst.remove_socket()
        self._unwatch(self._wake_r)
        self._wake_r.close()
        self._wake_w.close()
        self._epoll.close()

    def save_state_and_stop(self) -> bool:
        """Power-down as vtpm-stubdom does it: TPM_SaveState (a TPM 2.0
        engine's save_state(): TPM2_Shutdown(SU_STATE)), then a final write.
        False (and a log line) if that write failed or the server had
        already given up (fatal)."""
        if self.fatal is not None:
            return False
        try:
            save_state = getattr(self.engine, "save_state", None)
            if save_state is not None:
                save_state()
            else:
                self.engine.execute(HEADER.pack(TPM_TAG_RQU_COMMAND, 10, TPM_ORD_SaveState),
                                    self.locality)
        except Exception:
            self.log("saving the TPM's state at shutdown raised:\n" + traceback.format_exc())
        if self.state is None:
            return True
        err = self.write_state()
        if err is not None:
            self.log("could not save TPM state to %s at shutdown: %s; it holds the state "
                     "of the last command answered, without the saved state of %s" % (
                         self.state.state_path, err,
                         "TPM2_Shutdown(SU_STATE)" if self.tpm2 else "TPM_SaveState"))
            return False
        return True

    # -- swtpm's control channel (--tpm2; pyxl.tpm.tpm2.ctrl) --------------------
    def ctrl_init(self, flags: int) -> int:
        """CMD_INIT: power cycle; the TPM then waits for its Startup."""
        try:
            self.engine.power_on(None)
        except Exception as e:
            self.log("CMD_INIT: the TPM did not start: %s" % e)
            return TPM_FAIL
        return 0 if self.persist() else TPM_FAIL

    def ctrl_shutdown(self) -> None:
        """CMD_SHUTDOWN: the server stops (the answer goes out first)."""
        self.stop()

    def ctrl_set_locality(self, locality: int) -> None:
        self.locality = locality


# ---------------------------------------------------------------- entry

STARTUPS = ("clear", "state", "deactivated")


@dataclass
class Options:
    state_dir: str
    port: int | None = None
    unix: str | None = None
    unix_mode: int | None = None
    host: str = "127.0.0.1"
    startup: str | None = "clear"      # None: leave the TPM waiting for TPM_Startup
    vendor: str = "ETHZ"
    emulator: str = "libtpms"         # behaviour family: libtpms or berlios (identity.py)
    locality: int = 0
    trace: bool = False               # pyxl -v tpm-serve: log every command
    tpm2: bool = False                # libtpms's TPM 2.0 instead of the TPM 1.2 engine
    ready: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


def resolve_identity(vendor: str, emulator: str = "libtpms") -> Identity:
    """The engine identity for --vendor (ETHZ: the Xen vTPM's), behaving as
    --emulator (libtpms, or berlios: the emulator inside vtpm-stubdom)."""
    from pyxl.tpm import identity as ident

    known: dict[str, ident.Identity] = {}
    for name in dir(ident):      # every Identity the engine defines, by its vendor ID
        obj = getattr(ident, name)
        if isinstance(obj, ident.Identity):
            known.setdefault(obj.vendor_id.decode("latin-1").rstrip("\0 ").upper(), obj)
    if vendor.upper() in known:
        try:
            return ident.behaving_as(known[vendor.upper()], emulator.lower())
        except ValueError as e:
            raise ServeError(str(e)) from None
    raise ServeError("unknown --vendor %s (known: %s)"
                     % (vendor, ", ".join(sorted(known)) or "none"))


def restart_startup(startup: str | None) -> str | None:
    """The start-up after a roll-back (TPMServer.roll_back): that of
    --startup, except ST_CLEAR for ST_STATE -- the saved state was for the
    first start-up, and may be used up."""
    return "clear" if startup == "state" else startup


def open_engine(opts: Options, state: StateDir,
                log: Callable[[str], None]) -> tuple[Engine, bytes | None]:
    """Load the saved TPM (or make a fresh one), then power it on.
    Returns (engine, the blob loaded or None for a new TPM)."""
    blob = state.read()
    return start_engine(opts, state, blob, opts.startup), blob


def start_engine(opts: Options, state: StateDir, blob: bytes | None,
                 startup: str | None) -> Engine:
    """A TPM 1.2 with blob's state (None: a new one), powered on with startup."""
    from pyxl.tpm.engine import TPM

    identity = resolve_identity(opts.vendor, opts.emulator)
    if blob is None:
        tpm = TPM(identity)
    else:
        try:
            tpm = TPM.load(blob, identity=identity)
        except Exception as e:   # TPMStateError and anything else a bad blob provokes
            raise ServeError("cannot load %s: %s (left untouched)" % (state.state_path, e))
    try:
        rc = tpm.power_on("none" if startup is None else startup)
    except Exception as e:   # TPM_Startup refused, e.g. ST_STATE with nothing saved
        raise ServeError("power-on with TPM_Startup(%s) failed: %s" % (startup, e))
    if rc:                   # the engine reports TPM_Startup's return code
        raise ServeError("power-on with TPM_Startup(%s) failed: %s"
                         % (startup, _rc_name(rc)))
    return tpm


def open_tpm2_engine(opts: Options, state: StateDir,
                     log: Callable[[str], None]) -> tuple[Engine, bytes | None]:
    """The TPM 2.0 engine with the saved state (or a new TPM), powered on.
    Returns (engine, the blob loaded or None for a new TPM)."""
    blob = state.read()
    return start_tpm2_engine(opts, state, blob, opts.startup), blob


def start_tpm2_engine(opts: Options, state: StateDir, blob: bytes | None,
                      startup: str | None) -> Engine:
    """libtpms's TPM 2.0 with blob's state (None: a new one), powered on."""
    from pyxl.tpm.tpm2 import TPM2, TPM2Error, TPM2StateError

    try:
        tpm = TPM2() if blob is None else TPM2.load(blob)
    except TPM2StateError as e:
        raise ServeError("cannot load %s: %s (left untouched)" % (state.state_path, e))
    except TPM2Error as e:               # libtpms missing
        raise ServeError("the TPM 2.0 engine is not available: %s" % e)
    try:
        rc = tpm.power_on("none" if startup is None else startup)
    except TPM2Error as e:
        tpm.close()
        raise ServeError("cannot start the TPM 2.0 from %s: %s (left untouched)"
                         % (state.state_path, e))
    if rc:
        tpm.close()
        raise ServeError("power-on with TPM2_Startup(%s) failed: TPM_RC 0x%03x"
                         % (startup, rc))
    return tpm


def restarter(opts: Options, state: StateDir) -> Callable[[bytes, Engine], Engine]:
    """TPMServer's restart: close the running engine (libtpms holds one TPM
    per process, so a TPM 2.0 must go before its successor is loaded), start
    one from the blob."""
    start = start_tpm2_engine if opts.tpm2 else start_engine

    def restart(blob: bytes, old: Engine) -> Engine:
        close = getattr(old, "close", None)
        if close is not None:
            close()
        return start(opts, state, blob, restart_startup(opts.startup))
    return restart


def _rc_name(rc: int) -> str:
    from pyxl.tpm import constants
    return "%s (%d)" % (constants.rc_name(rc), rc)


def run(opts: Options, engine_factory: EngineFactory | None = None) -> int:
    """`pyxl tpm-serve`: returns the exit code."""
    def log(msg: str) -> None:
        print("pyxl tpm-serve: " + msg, file=sys.stderr, flush=True)

    if opts.startup is not None and opts.startup not in STARTUPS:
        log("--startup must be one of %s" % ", ".join(STARTUPS))
        return 2
    from pyxl.tpm.identity import BEHAVIOURS
    if opts.emulator.lower() not in BEHAVIOURS:
        log("--emulator must be %s" % " or ".join(sorted(BEHAVIOURS, reverse=True)))
        return 2
    if not (0 <= opts.locality <= 4):
        log("--locality must be 0..4")
        return 2
    if opts.tpm2 and opts.startup == "deactivated":
        log("--startup deactivated does not exist in TPM 2.0 (clear or state)")
        return 2
    if engine_factory is None:
        engine_factory = open_tpm2_engine if opts.tpm2 else open_engine
    state = StateDir(opts.state_dir)
    listeners: list[Listener] = []
    server = None
    tpm = None
    try:
        state.lock()
        state.remove_stale_temps()
        tpm, loaded = engine_factory(opts, state, log)
        fresh = loaded is None
        if opts.port is not None or opts.unix is None:
            port = opts.port if opts.port is not None else \
                TPM2_DEFAULT_PORT if opts.tpm2 else TPM12_DEFAULT_PORT
            if opts.tpm2:
                listeners.extend(open_tcp_with_ctrl(opts.host, port))
            else:
                listeners.append(open_tcp(opts.host, port))
        if opts.unix is not None:
            listeners.append(open_unix(opts.unix, opts.unix_mode))
            if opts.tpm2:                 # where tpm2-tss's -T swtpm:path=PATH looks
                ctrl = open_unix(opts.unix + ".ctrl", opts.unix_mode)
                ctrl.ctrl = True
                ctrl.address = "ctrl " + ctrl.address
                listeners.append(ctrl)
        server = TPMServer(tpm, state, listeners, locality=opts.locality, log=log,
                           trace=opts.trace, tpm2=opts.tpm2,
                           restart=restarter(opts, state), durable=loaded)
        if fresh:
            err = server.write_state()
            if err is not None:
                raise ServeError("cannot write the new TPM state to %s: %s"
                                 % (state.state_path, err))
        where = ", ".join(lst.address for lst in listeners)
        state.set_holder("pyxl tpm-serve pid %d (%s)" % (os.getpid(), where))
        server.install_signal_handlers()
        opts.ready("pyxl tpm-serve: ready, %s, state %s%s" % (
            where, state.path, " (new TPM)" if fresh else ""))
        server.serve_forever()
        if server.fatal is not None:
            return 1             # said why when it gave up
        ok = server.save_state_and_stop()
        log("stopped after %d commands; %s" % (
            server.commands, "state saved" if ok else "exit status 1: the state was NOT saved"))
        return 0 if ok else 1
    except ServeError as e:
        log(str(e))
        for lst in listeners:
            lst.sock.close()
            lst.remove_socket()
        return 1
    finally:
        # the TPM 2.0 engine gives libtpms back (the server's, after a roll-back)
        for engine in (tpm, server.engine if server is not None else None):
            close = getattr(engine, "close", None)
            if close is not None:
                close()
        state.unlock()
