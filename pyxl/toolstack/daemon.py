"""pyxld: the daemon that is the simulated host (Xen + xenstored +
xenconsoled + libxl's state), serving pyxl commands on a control socket.

    python -m pyxl.toolstack.daemon [-F]     (or `pyxl daemon start [-F]`)

One daemon per host root, never two: it holds an exclusive flock on
run/pyxl/daemon.lock for its whole life.  In the foreground (-F) it suits a
service manager (READY=1 through $NOTIFY_SOCKET); a pyxl command that finds no
daemon starts one in the background and waits for its readiness byte.

SIGTERM/SIGINT stop the daemon and leave domains running: a daemon started
later adopts them (their processes, consoles and state are all under the
root).  `pyxl daemon stop` refuses while guests exist unless --force, which
destroys them first.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import threading
import time
import traceback

from pyxl.fsutil import UnsafePath, atomic_write, open_append
from pyxl.toolstack import ops, protocol
from pyxl.toolstack.errors import Fault
from pyxl.toolstack.ops import core, devices, resources, saverestore
from pyxl.toolstack.paths import Paths

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, TextIO

    from pyxl.hypervisor.xenstored import XenstoredServer
    from pyxl.toolstack.hostd import HostState

OPS = ops.merge(core.OPS, resources.OPS, devices.OPS, saverestore.OPS)


class Daemon:
    # Made by run() before the control socket is served: the accept loop,
    # every client thread and the ops they dispatch find them.
    state: HostState
    xenstored: XenstoredServer
    listener: socket.socket

    def __init__(self, paths: Paths, foreground: bool):
        self.paths = paths
        self.foreground = foreground
        self.logf: TextIO | None = None
        self.stop_event = threading.Event()
        self.lock_fd = -1
        self._destroy_all = False

    def log(self, msg: str) -> None:
        line = time.strftime("%Y-%m-%d %H:%M:%S ") + msg + "\n"
        try:
            if self.logf is not None:
                self.logf.write(line)
                self.logf.flush()
        except OSError:
            pass
        if self.foreground:
            sys.stderr.write(line)

    # -- lifetime --------------------------------------------------------
    def acquire(self) -> bool:
        """The host's directories (checked: UnsafePath), then its lock."""
        self.paths.make_dirs()
        self.lock_fd = os.open(self.paths.lock_file,
                               os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def run(self, ready_fd: int = -1) -> int:
        from pyxl.toolstack.client import root_unusable

        os.umask(0o077)          # whatever the daemon makes is its own
        try:
            if not self.acquire():
                print("pyxl: a pyxl daemon is already running for %s" % self.paths.root,
                      file=sys.stderr)
                return 1
            # 0600: tracebacks in it may quote a domain's config
            self.logf = os.fdopen(open_append(self.paths.daemon_log), "a")
        except UnsafePath as e:
            print(Fault("UNSAFE_HOST", root=self.paths.root, reason=e).message, file=sys.stderr)
            return 1
        except OSError as e:
            return root_unusable(e, self.paths).report()
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:      # a pidfd and a socket per domain
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        from pyxl.toolstack.hostd import HostState

        from pyxl.toolstack.platform import PlatformError

        try:
            self.state = HostState(self.paths, self.log)
        except PlatformError as e:
            self.log("pyxld: %s" % e)        # the client's START_FAILED points here
            return 1
        from pyxl.hypervisor.xenstored import XenstoredServer

        self.xenstored = XenstoredServer(self.state.hv, self.paths.xenstored_dir, self.log)
        try:
            self.xenstored.start()
        except OSError as e:
            self.log("pyxld: xenstored socket: %s" % e)
            return 1
        self.state.start()
        sock_path = self.paths.control_socket
        try:
            os.unlink(sock_path)        # stale: we hold the lock, nobody else serves it
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(sock_path)
        os.chmod(sock_path, 0o600)
        self.listener.listen(128)
        atomic_write(self.paths.pid_file, b"%d\n" % os.getpid(), 0o644)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.stop_event.set())
        self.log("pyxld %d serving %s (protocol %d)" % (os.getpid(), sock_path, protocol.VERSION))
        threading.Thread(target=self._accept_loop, name="accept", daemon=True).start()
        if ready_fd >= 0:
            try:
                os.write(ready_fd, b"R")
            finally:
                os.close(ready_fd)
        _sd_notify("READY=1")
        while not self.stop_event.wait(1.0):
            pass
        self._shutdown(destroy_all=self._destroy_all)
        return 0

    def _shutdown(self, destroy_all: bool) -> None:
        self.log("stopping (%s)" % ("destroying domains" if destroy_all else "domains left running"))
        try:
            self.listener.close()
        except OSError:
            pass
        self.xenstored.stop()
        for p in (self.paths.control_socket, self.paths.pid_file):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        self.state.stop(destroy_all)
        self.log("stopped")

    def _accept_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    # -- one client ----------------------------------------------------
    def _client(self, conn: socket.socket) -> None:
        ch = protocol.Channel(conn)
        handed_over = False
        try:
            if self.state.peer_is_domain(conn):
                return            # a domain has no business on dom0's control socket
            hello = ch.recv()
            if not isinstance(hello, dict) or hello.get("hello") != protocol.MAGIC:
                ch.send({"ok": False, **Fault("BAD_REQUEST", reason="no handshake").to_wire()})
                return
            if hello.get("version") != protocol.VERSION:
                ch.send({"ok": False, **Fault("VERSION_MISMATCH", theirs=protocol.VERSION,
                                              ours=hello.get("version")).to_wire()})
                return
            ch.send({"hello": protocol.MAGIC, "version": protocol.VERSION, "pid": os.getpid(),
                     "root": self.paths.root})
            while True:
                req = ch.recv()
                if req is None:
                    return
                op = req.get("op", "")
                args = req.get("args") or {}
                if op == "console":
                    handed_over = self._console(ch, args)
                    if handed_over:
                        return
                    continue
                try:
                    result = self.dispatch(op, args)
                    ch.send({"ok": True, "result": result})
                except Fault as f:
                    ch.send({"ok": False, **f.to_wire()})
                except Exception as e:
                    self.log("op %s failed: %s" % (op, traceback.format_exc()))
                    ch.send({"ok": False, **Fault("INTERNAL", reason=repr(e)).to_wire()})
                if op == "daemon_stop":
                    return
        except (OSError, protocol.ProtocolError):
            return
        finally:
            if not handed_over:
                ch.close()

    def _console(self, ch: protocol.Channel, args: dict[str, Any]) -> bool:
        """xenconsole: the connection becomes a byte pipe to the domain's console."""
        st = self.state
        try:
            with st.lock:
                dom = st.resolve(args.get("dom", ""), missing_id="INVALID_DOMAIN")
                try:
                    console = st.hv.console(dom.domid)
                except OSError:
                    raise Fault("CONSOLE_UNAVAILABLE") from None
                if console.closed:
                    raise Fault("CONSOLE_UNAVAILABLE")
                reader = console.attach()
            ch.send({"ok": True, "result": {"domid": dom.domid, "name": dom.name}})
        except Fault as f:
            ch.send({"ok": False, **f.to_wire()})
            return False
        sock = ch.sock
        first = ch.take_buffered()
        if first:
            reader.write(first)

        def to_client() -> None:
            try:
                while True:
                    data = reader.read(1.0)
                    if data is None:
                        continue
                    if not data:
                        break            # the domain is gone: hang up, as the pty vanishes
                    sock.sendall(data)
            except OSError:
                pass
            finally:
                reader.detach()
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        t = threading.Thread(target=to_client, daemon=True)
        t.start()
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    break
                reader.write(data)
        except OSError:
            pass
        reader.detach()
        t.join()
        sock.close()
        return True

    def request_stop(self, destroy_all: bool) -> None:
        """End run(): the daemon stops, destroying its domains or leaving them."""
        self._destroy_all = destroy_all
        self.stop_event.set()

    def dispatch(self, op: str, a: dict[str, Any]) -> Any:
        """Look the op up in the one table, check its arguments, call it."""
        row = OPS.get(op) if isinstance(op, str) else None
        if row is None:
            raise Fault("BAD_REQUEST", reason="unknown op %r" % (op,))
        if not isinstance(a, dict):
            raise Fault("BAD_REQUEST", reason="%s: arguments are not an object" % op)
        missing = [k for k in row.required if k not in a]
        if missing:
            raise Fault("BAD_REQUEST", reason="%s: missing %s" % (op, ", ".join(missing)))
        extra = sorted(k for k in a if k not in row.required and k not in row.optional)
        if extra:
            raise Fault("BAD_REQUEST", reason="%s: unexpected %s" % (op, ", ".join(extra)))
        return row.handler(self, a)


def _sd_notify(msg: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.send(msg.encode())
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    foreground = "-F" in argv or "--foreground" in argv
    ready_fd = int(os.environ.pop("PYXL_READY_FD", "-1"))
    d = Daemon(Paths.from_env(), foreground)
    return d.run(ready_fd)


if __name__ == "__main__":
    sys.exit(main())
