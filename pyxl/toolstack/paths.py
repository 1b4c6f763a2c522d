"""Where one simulated host keeps its files.

Everything lives under one root, laid out as Xen lays out a real host: /run
for sockets and locks, /var/lib for state that survives the daemon, /var/log
for logs and console logs.  PYXL_ROOT=DIR relocates the whole tree, so several
hosts (and test runs) can live side by side without root.
"""

from __future__ import annotations

import os


class Paths:
    """The file layout of the host rooted at `root` (cheap to import: no dataclasses)."""

    __slots__ = ("root",)

    def __init__(self, root: str):
        self.root = root

    def __eq__(self, other) -> bool:
        return isinstance(other, Paths) and other.root == self.root

    def __repr__(self) -> str:
        return "Paths(%r)" % self.root

    @classmethod
    def from_env(cls, environ=os.environ) -> "Paths":
        root = environ.get("PYXL_ROOT") or "/"
        return cls(os.path.abspath(root))

    def _p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # /run/pyxl: sockets, lock, pid -- gone with the host (tmpfs on a real one)
    @property
    def run_dir(self) -> str:
        return self._p("run", "pyxl")

    @property
    def control_socket(self) -> str:
        """The toolstack's control socket: dom0-root only (0600), like privcmd."""
        return os.path.join(self.run_dir, "control.sock")

    @property
    def lock_file(self) -> str:
        """flock'ed by whoever starts the daemon, and by the daemon while it runs."""
        return os.path.join(self.run_dir, "daemon.lock")

    @property
    def pid_file(self) -> str:
        return os.path.join(self.run_dir, "daemon.pid")

    @property
    def xenbus_socket(self) -> str:
        """Where a domain reconnects to a restarted daemon (identified by SO_PEERCRED)."""
        return os.path.join(self.run_dir, "xenbus.sock")

    @property
    def xenstored_dir(self) -> str:
        """xenstored's run directory: its socket `socket` for Xen's tools
        (XENSTORED_PATH=<this>/socket); root-only (0700), as /run/xenstored."""
        return os.path.join(self.run_dir, "xenstored")

    # /var/lib/pyxl: the toolstack's persistent state
    @property
    def lib_dir(self) -> str:
        return self._p("var", "lib", "pyxl")

    @property
    def state_file(self) -> str:
        """The domain table, rewritten atomically after every change."""
        return os.path.join(self.lib_dir, "domains.json")

    # /var/log/pyxl: daemon log, per-domain monitor logs, console logs
    @property
    def log_dir(self) -> str:
        return self._p("var", "log", "pyxl")

    @property
    def daemon_log(self) -> str:
        return os.path.join(self.log_dir, "pyxld.log")

    def monitor_log(self, name: str) -> str:
        return os.path.join(self.log_dir, "xl-%s.log" % name)

    def console_log(self, name: str) -> str:
        """xenconsoled --log=guest: console/guest-<name>.log."""
        return os.path.join(self.log_dir, "console", "guest-%s.log" % name)

    @property
    def hypervisor_log(self) -> str:
        """`pyxl dmesg` reads this: the hypervisor's own console."""
        return os.path.join(self.log_dir, "console", "hypervisor.log")

    def make_dirs(self) -> None:
        for d, mode in ((self.run_dir, 0o700), (os.path.join(self.run_dir, "dom"), 0o700),
                        (self.lib_dir, 0o700), (self.log_dir, 0o755),
                        (os.path.join(self.log_dir, "console"), 0o755)):
            os.makedirs(d, mode=mode, exist_ok=True)


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write-then-rename: a reader (or a restarted daemon) never sees half a file."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
