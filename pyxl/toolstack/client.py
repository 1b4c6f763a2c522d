"""The pyxl side of the control socket: connect, handshake, autostart.

`call(op, **args)` returns the daemon's result or raises `Fault`.  A command
that needs the daemon starts it when none is running (gpg-agent style): under
an flock on run/pyxl/start.lock, re-check, spawn `pyxld` detached, wait for its
readiness byte.  "Not running", "refused" and "version mismatch" are distinct
faults with distinct messages.  Imports stay minimal: `pyxl list` pays for
this module on every run.
"""

from __future__ import annotations

import errno
import os
import _socket as socket   # socket.py (enums, selectors) costs start-up on every command

from pyxl.toolstack import protocol
from pyxl.toolstack.errors import Fault
from pyxl.toolstack.paths import Paths

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, ContextManager

START_TIMEOUT = 15.0
DEVICE_OPS = ("create", "vtpm_attach", "vtpm_detach", "block_attach", "block_detach",
              "network_attach", "network_detach", "vkb_attach", "vkb_detach",
              "vdispl_attach", "vdispl_detach", "usbctrl_attach", "usbctrl_detach",
              "vsnd_attach", "vsnd_detach")


class Client:
    def __init__(self, paths: Paths | None = None):
        self.paths = paths or Paths.from_env()
        self.ch: protocol.Channel | None = None
        self.daemon_pid = 0

    def connect(self, autostart: bool = True) -> Client:
        self._open(autostart)
        return self

    def channel(self) -> protocol.Channel:
        """The connection to the daemon, made first (starting the daemon if
        none is running) when there is none yet."""
        return self.ch if self.ch is not None else self._open(True)

    def _open(self, autostart: bool) -> protocol.Channel:
        try:
            return self._connect()
        except Fault as f:
            if not autostart or f.name not in ("NOT_RUNNING", "REFUSED_STALE"):
                raise
            start_daemon(self.paths)
            return self._connect()

    def _connect(self) -> protocol.Channel:
        path = self.paths.control_socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except FileNotFoundError:
            s.close()
            raise Fault("NOT_RUNNING", path=path) from None
        except ConnectionRefusedError:
            s.close()
            # a socket file nobody listens on: the daemon died; restartable if its lock is free
            if not daemon_alive(self.paths):
                raise Fault("NOT_RUNNING", path=path) from None
            raise Fault("REFUSED", path=path, reason="connection refused") from None
        except PermissionError:
            s.close()
            raise Fault("PERMISSION", path=path) from None
        except OSError as e:
            s.close()
            raise Fault("REFUSED", path=path, reason=os.strerror(e.errno or errno.EIO)) from None
        ch = protocol.Channel(s)
        try:
            ch.send({"hello": protocol.MAGIC, "version": protocol.VERSION})
            hello = ch.recv()
        except (OSError, protocol.ProtocolError) as e:
            ch.close()
            raise Fault("REFUSED", path=path, reason="handshake failed (%s)" % e) from None
        if hello is None:
            ch.close()
            raise Fault("REFUSED", path=path, reason="the daemon hung up during the handshake")
        if hello.get("ok") is False:
            ch.close()
            raise Fault.from_wire(hello)
        if hello.get("hello") != protocol.MAGIC or hello.get("version") != protocol.VERSION:
            ch.close()
            raise Fault("VERSION_MISMATCH", theirs=hello.get("version"), ours=protocol.VERSION)
        self.daemon_pid = hello.get("pid", 0)
        self.ch = ch
        return ch

    def call(self, op: str, **args: Any) -> Any:
        ch = self.channel()
        if op in DEVICE_OPS and "PYXL_DEVICE_TIMEOUT" in os.environ:
            # how long libxl waits for a backend (LIBXL_INIT_TIMEOUT, 10 s); tests shorten it
            args.setdefault("device_timeout", float(os.environ["PYXL_DEVICE_TIMEOUT"]))
        try:
            ch.send({"op": op, "args": args})
            reply = ch.recv()
        except (OSError, protocol.ProtocolError) as e:
            raise Fault("REFUSED", path=self.paths.control_socket,
                        reason="connection lost (%s)" % e) from None
        if reply is None:
            raise Fault("REFUSED", path=self.paths.control_socket,
                        reason="the daemon closed the connection")
        if not reply.get("ok"):
            raise Fault.from_wire(reply)
        return reply.get("result")

    def close(self) -> None:
        if self.ch is not None:
            self.ch.close()
            self.ch = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call(op: str, autostart: bool = True, **args: Any) -> Any:
    """One request on a fresh connection."""
    c = Client().connect(autostart=autostart)
    try:
        return c.call(op, **args)
    finally:
        c.close()


def progress(text: str) -> ContextManager[object]:
    """A rich spinner on stderr while a person watches; nothing for scripts."""
    import contextlib

    if not watched():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(text)


def watched() -> bool:
    """A person watches stderr (a terminal that can show a spinner)."""
    import sys

    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def daemon_alive(paths: Paths) -> bool:
    """True while some process holds the daemon's lifetime lock."""
    import fcntl

    try:
        fd = os.open(paths.lock_file, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise root_unusable(e, paths) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def start_daemon(paths: Paths, timeout: float = START_TIMEOUT) -> None:
    """Start pyxld for this root unless one is running; never two."""
    import fcntl
    import subprocess
    import sys

    from pyxl.fsutil import UnsafePath, open_append

    try:
        paths.make_dirs()
        lock = os.open(os.path.join(paths.run_dir, "start.lock"),
                       os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except UnsafePath as e:
        raise Fault("UNSAFE_HOST", root=paths.root, reason=e) from None
    except OSError as e:
        raise root_unusable(e, paths) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if daemon_alive(paths) and _can_connect(paths):
            return
        r, w = os.pipe()
        env = dict(os.environ, PYXL_READY_FD=str(w), PYXL_ROOT=paths.root)
        pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(
            [pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        try:
            log = open_append(paths.daemon_log)       # the daemon's stderr: 0600
        except UnsafePath as e:
            raise Fault("UNSAFE_HOST", root=paths.root, reason=e) from None
        except OSError as e:
            raise root_unusable(e, paths) from None
        proc = subprocess.Popen([sys.executable, "-m", "pyxl.toolstack.daemon"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                pass_fds=(w,), env=env, start_new_session=True,
                                cwd="/")
        os.close(w)
        os.close(log)
        import select

        # the pipe's other end is the daemon's alone: its readiness byte, or
        # end of file if it dies first
        ok = False
        if select.select([r], [], [], timeout)[0]:
            ok = os.read(r, 1) == b"R"
            if not ok:                # it is ending: its exit status for the fault
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
        os.close(r)
        if not ok:
            if proc.poll() is not None and daemon_alive(paths) and _can_connect(paths):
                return        # lost a race with a daemon started by hand: fine
            raise Fault("START_FAILED", reason="no readiness signal" if proc.poll() is None
                        else "exit status %s" % proc.returncode, log=paths.daemon_log)
    finally:
        os.close(lock)


def root_unusable(e: OSError, paths: Paths) -> Fault:
    """The host's directories or files cannot be made or opened (a user
    other than root on the default root): one line, no traceback."""
    return Fault("ROOT_UNUSABLE", path=e.filename or paths.root,
                 reason=e.strerror or str(e))


def _can_connect(paths: Paths) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(paths.control_socket)
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_daemon_gone(paths: Paths, pid: int, timeout: float = 30.0) -> bool:
    """The daemon `pid` (daemon_stop's answer) has ended and its lifetime
    lock is free.  Its pidfd becomes readable when it exits, which frees
    the lock (no other process holds that descriptor: it is close-on-exec)."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return not daemon_alive(paths)
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return not daemon_alive(paths)
