"""The guest's own file tree: a private directory of the host that is the
guest's `/`, with /proc, /sys and /dev simulated on top of it.

    fs = GuestTree.create(dom, virtual)     # <host root>/run/pyxl/dom/<domid>.guest.XXXX
    fs.resolve("/root", "ctx/primary.ctx")  # "/root/ctx/primary.ctx"
    fd = fs.open("/root/key.pub", os.O_RDONLY)

The directory is made 0700 (mkdtemp) inside the daemon's 0700 per-domain
runtime directory, so no other local user reaches anything the guest keeps
there; it holds `root` (the guest's home and first working directory),
`tmp` and `etc`.  Every path is walked component by component from the
tree's top with O_NOFOLLOW, after `..` was resolved lexically against `/`:
nothing the guest names leads out of its tree.

The tree lives as long as the guest: a small reaper process, holding the read
end of a pipe whose write end only the guest process has, removes it when it
reads EOF -- which the kernel delivers however the guest ends (shutdown,
`pyxl destroy`'s SIGKILL, a crash).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import subprocess
import sys
import tempfile

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from pyxl.domain.process import Domain

TREE_DIRS = ("root", "tmp", "etc")
HOME = "/root"
UMASK = 0o022                          # the guest's: what its shell creates is at most 0644
VIRTUAL_TOP = ("proc", "sys", "dev")   # simulated by the guest's kernel, not in the tree

# the reaper: stdin is the guest's lifeline
REAPER = r"""
import os, shutil, signal, sys
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
while True:
    try:
        if not os.read(0, 4096):
            break
    except InterruptedError:
        continue
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


class GuestTree:
    def __init__(self, top: str):
        self.top = top                 # host path of the guest's "/"
        self.lifeline: int | None = None
        self.reaper: subprocess.Popen | None = None

    @classmethod
    def create(cls, dom: Domain) -> GuestTree:
        """Make the tree next to the domain's status file (the daemon's
        private per-domain runtime directory), or in the system's temporary
        directory for a domain run without a daemon."""
        status = getattr(dom, "status_path", None)
        parent = os.path.dirname(status) if status else None
        top = tempfile.mkdtemp(prefix="%d.guest." % dom.domid, dir=parent)   # 0700
        tree = cls(top)
        for d in TREE_DIRS:
            os.mkdir(os.path.join(top, d), 0o700 if d == "root" else 0o777 & ~UMASK)
        tree._start_reaper()
        return tree

    def _start_reaper(self) -> None:
        r, w = os.pipe()
        os.set_inheritable(w, False)
        try:
            self.reaper = subprocess.Popen(
                [sys.executable, "-S", "-c", REAPER, self.top], stdin=r,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
        finally:
            os.close(r)
        self.lifeline = w              # closes when this guest process ends, however it ends

    def close(self) -> None:
        """Let the tree go now (the reaper removes it), and wait for that."""
        if self.lifeline is not None:
            os.close(self.lifeline)
            self.lifeline = None
        if self.reaper is not None:
            self.reaper.wait()
            self.reaper = None

    # -- names -----------------------------------------------------------
    @staticmethod
    def resolve(cwd: str, path: str) -> str:
        """The absolute guest path `path` names from `cwd`, `..` resolved
        lexically (as bash's logical `cd` does) and never above `/`."""
        p = posixpath.normpath(posixpath.join(cwd, path))
        if p.startswith("//"):
            p = "/" + p.lstrip("/")
        return p

    @staticmethod
    def is_virtual(gpath: str) -> bool:
        parts = gpath.strip("/").split("/")
        return parts[0] in VIRTUAL_TOP

    def host_path(self, gpath: str) -> str:
        """Where the guest path lives on the host (for the programs the
        guest runs: their working directory and their path arguments)."""
        return os.path.join(self.top, gpath.lstrip("/")) if gpath != "/" else self.top

    # -- access, never following a symbolic link ----------------------------
    def _parent(self, gpath: str) -> tuple[int, str]:
        """An open fd of the directory holding gpath, and gpath's last name."""
        parts = [p for p in gpath.split("/") if p]
        fd = os.open(self.top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for p in parts[:-1]:
                nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
                os.close(fd)
                fd = nfd
        except OSError as e:
            os.close(fd)
            raise _plain(e) from None
        return fd, (parts[-1] if parts else ".")

    def open(self, gpath: str, flags: int, mode: int = 0o666) -> int:
        fd, name = self._parent(gpath)
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
        except OSError as e:
            raise _plain(e) from None
        finally:
            os.close(fd)

    def stat(self, gpath: str) -> os.stat_result:
        fd, name = self._parent(gpath)
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def is_dir(self, gpath: str) -> bool:
        try:
            return stat.S_ISDIR(self.stat(gpath).st_mode)
        except OSError:
            return False

    def listdir(self, gpath: str) -> list[str]:
        fd = self.open(gpath, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def read(self, gpath: str) -> bytes:
        fd = self.open(gpath, os.O_RDONLY)
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
            chunks: list[bytes] = []
            while True:
                b = os.read(fd, 1 << 16)
                if not b:
                    return b"".join(chunks)
                chunks.append(b)
        finally:
            os.close(fd)

    def remove(self, gpath: str, recursive: bool) -> None:
        import shutil

        fd, name = self._parent(gpath)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=fd)
            elif not recursive:
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
            else:
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
                try:
                    for entry in os.listdir(sub):
                        shutil.rmtree(entry, dir_fd=sub) if stat.S_ISDIR(os.stat(
                            entry, dir_fd=sub, follow_symlinks=False).st_mode) \
                            else os.unlink(entry, dir_fd=sub)
                finally:
                    os.close(sub)
                os.rmdir(name, dir_fd=fd)
        finally:
            os.close(fd)

    def mkdir(self, gpath: str) -> None:
        fd, name = self._parent(gpath)
        try:
            os.mkdir(name, 0o777 & ~UMASK, dir_fd=fd)
        finally:
            os.close(fd)


def _plain(e: OSError) -> OSError:
    """A symbolic link met on the way is, to the guest, a name that is not there."""
    if e.errno == errno.ELOOP:
        return OSError(errno.ENOENT, os.strerror(errno.ENOENT))
    return e
