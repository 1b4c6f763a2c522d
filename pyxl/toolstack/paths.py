"""Where one simulated host keeps its files.

Everything lives under one root, laid out as Xen lays out a real host: /run
for sockets and locks, /var/lib for state that survives the daemon, /var/log
for logs and console logs.  PYXL_ROOT=DIR relocates the whole tree, so several
hosts (and test runs) can live side by side without root.

The daemon runs as root and writes below the root, so the tree must be its
own: `make_dirs` refuses (UnsafePath, one line) a root, run, state or log
directory another user owns or may write (pyxl.fsutil.ensure_dir), and a
domain name only ever becomes one escaped file-name component
(pyxl.fsutil.safe_name) -- xenconsoled's guest-NAME.log takes the name as
found, and a name such as "../../x" would otherwise climb out of the log
directory.
"""

from __future__ import annotations

import os

from pyxl.fsutil import ensure_dir, safe_name

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Mapping


class Paths:
    """The file layout of the host rooted at `root` (cheap to import: no dataclasses)."""

    __slots__ = ("root",)

    def __init__(self, root: str):
        self.root = root

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and other.root == self.root

    def __repr__(self) -> str:
        return "Paths(%r)" % self.root

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Paths:
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
        """xl's per-domain log, xl-NAME.log (the name escaped: see safe_name)."""
        return os.path.join(self.log_dir, "xl-%s.log" % safe_name(name))

    @property
    def console_dir(self) -> str:
        return os.path.join(self.log_dir, "console")

    def console_log(self, name: str) -> str:
        """xenconsoled --log=guest: console/guest-NAME.log (the name escaped)."""
        return os.path.join(self.console_dir, "guest-%s.log" % safe_name(name))

    @property
    def hypervisor_log(self) -> str:
        """`pyxl dmesg` reads this: the hypervisor's own console."""
        return os.path.join(self.console_dir, "hypervisor.log")

    @property
    def domain_status_dir(self) -> str:
        """Where a domain process leaves its shutdown reason (N.status)."""
        return os.path.join(self.run_dir, "dom")

    def domain_status_file(self, domid: int) -> str:
        """The file domain `domid`'s process writes its shutdown reason to."""
        return os.path.join(self.domain_status_dir, "%d.status" % domid)

    def make_dirs(self) -> None:
        """Create the host's directories, or check the ones that exist: each
        owned by this user and private (0700), every directory above them
        owned by root or this user and not writable by others (unless
        sticky).  Raises pyxl.fsutil.UnsafePath naming the first that is not."""
        for d in (self.run_dir, self.domain_status_dir, self.lib_dir, self.log_dir,
                  self.console_dir):
            ensure_dir(d, 0o700)
