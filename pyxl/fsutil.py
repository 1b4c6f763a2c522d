"""Files and directories made the way a root daemon must make them.

A leaf module: it imports nothing from pyxl, so every layer -- pyxl/tpm
included -- may use it.  It is the one home of:

    atomic_write(path, data, mode)   replace a file: the old or the new, never half
    open_append(path, mode) -> fd    a log file, opened without following links
    ensure_dir(path, mode)           a directory only this user can change
    safe_name(text) -> str           any text as one file-name component

What "safe" means here is OpenSSH's StrictModes (`safe_path` in its
misc.c): every directory on the way to a file the daemon writes is owned by
root or by the daemon's user and is not writable by group or others (a
sticky directory such as /tmp is allowed on the way, as no one can rename
another's entries in it); the directories the daemon keeps its own files in
are owned by the daemon's user.  Inside such directories nobody else can
plant a link or swap a file, and the files themselves are opened with
O_NOFOLLOW (and created O_EXCL), so a link that is there anyway is refused
rather than followed.
"""

from __future__ import annotations

import errno
import os
import stat

NAME_MAX_PART = 200        # leaves room for "guest-" ... ".log.stderr" within NAME_MAX (255)
_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+,=@")


class UnsafePath(OSError):
    """A file or directory the daemon must not trust; str() is one line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def strerror(e: OSError) -> str:
    """C's strerror(errno) for `e`; an OSError raised without an errno (never
    by a system call) gives its own text."""
    return os.strerror(e.errno) if e.errno is not None else str(e)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write until every byte is written (a write may be short)."""
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        view = view[n:]


def atomic_write(path: str, data: bytes | bytearray | memoryview, mode: int = 0o600) -> None:
    """Replace `path` with `data`, durably: a reader, a restarted daemon or a
    host that lost power sees the old file or the new one, never a torn one.

    The temp file is created in the same directory, O_EXCL|O_NOFOLLOW, with
    `mode` set exactly (whatever the umask); every byte is written, the file
    is fsynced, renamed over `path` (a link at `path` is replaced, never
    followed) and the directory is fsynced so the rename itself survives a
    crash.  On any error the temp file is removed and `path` is untouched."""
    d, base = os.path.split(os.path.abspath(path))
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        while True:
            tmp = "%s.tmp.%d.%s" % (base, os.getpid(), os.urandom(4).hex())
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, mode & 0o777, dir_fd=dfd)
                break
            except FileExistsError:
                continue
        try:
            try:
                os.fchmod(fd, mode & 0o777)
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, base, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
        os.fsync(dfd)
    finally:
        os.close(dfd)


def open_append(path: str, mode: int = 0o600) -> int:
    """Open (creating it with `mode`) a file to append to, for a log.

    Refused with UnsafePath: a symbolic link (O_NOFOLLOW), anything but a
    regular file (a FIFO would block the daemon: O_NONBLOCK until checked),
    a file owned by another user, a file with other hard links.  A file that
    others may read or write is brought down to `mode` (logs of an older
    pyxl were 0644)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_CLOEXEC, mode & 0o777)
    except OSError as e:
        if e.errno == errno.ELOOP:       # the last component is a symbolic link
            raise UnsafePath(errno.ELOOP, "%s is a symbolic link; refusing to write through it"
                             % path) from None
        if e.errno == errno.ENXIO:       # a FIFO with no reader
            raise UnsafePath(errno.ENXIO, "%s is not a regular file; refusing to write to it"
                             % path) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(errno.EPERM, "%s is not a regular file; refusing to write to it"
                             % path)
        if st.st_uid != os.geteuid():
            raise UnsafePath(errno.EPERM, "%s is owned by uid %d, not %d; refusing to write to it"
                             % (path, st.st_uid, os.geteuid()))
        if st.st_nlink != 1:
            raise UnsafePath(errno.EPERM, "%s has %d hard links; refusing to write to it"
                             % (path, st.st_nlink))
        if stat.S_IMODE(st.st_mode) & ~mode & 0o077:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check(path: str, st: os.stat_result, own: bool) -> None:
    """One directory on the way (own=False) or one the daemon keeps its
    files in (own=True)."""
    uid = os.geteuid()
    if own and st.st_uid != uid:
        raise UnsafePath(errno.EPERM, "%s is owned by uid %d, not by uid %d"
                         % (path, st.st_uid, uid))
    if not own and st.st_uid not in (0, uid):
        raise UnsafePath(errno.EPERM, "%s is owned by uid %d, neither root nor uid %d"
                         % (path, st.st_uid, uid))
    if st.st_mode & 0o022 and (own or not st.st_mode & stat.S_ISVTX):
        raise UnsafePath(errno.EPERM, "%s is writable by group or others (mode %04o)"
                         % (path, stat.S_IMODE(st.st_mode)))


def ensure_dir(path: str, mode: int = 0o700) -> None:
    """Make `path` (and what is missing above it, 0755) a directory the
    caller alone can change, or raise UnsafePath saying which directory is
    wrong and why.

    Both the path as given and the path its links lead to are walked from
    /: every link on the way must belong to root or the caller, every
    directory must pass the StrictModes rule above, and `path` itself must
    be owned by the caller and not writable by group or others.  An existing
    `path` that others may read is narrowed to `mode`."""
    path = os.path.abspath(path)
    real = os.path.realpath(path)
    for resolved, walk in ((False, path), (True, real)):
        if resolved and walk == path:
            break              # no link on the way: already walked
        cur = "/"
        parts = [p for p in walk.split("/") if p]
        _check(cur, os.lstat(cur), own=not parts)
        for i, part in enumerate(parts):
            cur = os.path.join(cur, part)
            last = i == len(parts) - 1
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                try:
                    os.mkdir(cur, mode if last else 0o755)
                except FileExistsError:
                    pass
                st = os.lstat(cur)
            if stat.S_ISLNK(st.st_mode):
                if resolved:
                    raise UnsafePath(errno.EPERM, "%s became a symbolic link" % cur)
                if st.st_uid not in (0, os.geteuid()):
                    raise UnsafePath(errno.EPERM, "%s is a symbolic link owned by uid %d"
                                     % (cur, st.st_uid))
                break              # the rest is checked on the real path
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafePath(errno.ENOTDIR, "%s is not a directory" % cur)
            _check(cur, st, own=last)
            if last and stat.S_IMODE(st.st_mode) & ~mode:
                os.chmod(cur, stat.S_IMODE(st.st_mode) & mode)


def safe_name(text: str) -> str:
    """`text` (a domain name: any string) as one file-name component that
    stays in its directory: letters, digits and -_.+,=@ are kept, every
    other byte of its UTF-8 (/, %, NUL, spaces...) becomes %XX, and a
    leading dot is %2E, so no result is empty, "." or "..", or holds a "/".
    Different names give different results; a result longer than
    NAME_MAX_PART ends in "~" and a SHA-256 of the name instead."""
    raw = text.encode("utf-8", "surrogatepass")
    out = "".join(chr(b) if b in _SAFE_BYTES else "%%%02X" % b for b in raw)
    if out.startswith("."):
        out = "%2E" + out[1:]
    if not out:
        out = "%"          # the empty name: "%" alone is no escape of anything
    if len(out) > NAME_MAX_PART:
        import hashlib

        out = out[:NAME_MAX_PART - 65] + "~" + hashlib.sha256(raw).hexdigest()
    return out
