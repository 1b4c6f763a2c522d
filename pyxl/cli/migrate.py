"""`pyxl migrate` and `pyxl remus` (xl_migrate.c main_migrate, migrate_domain,
main_remus).

Both run the transport command xl runs (`ssh HOST pyxl migrate-receive`, or
the -s command), read the receiver's banner and send xl's header, as xl
does.  Then libxl asks the guest to suspend: the simulated Linux guest
cannot (pyxl.cli.saverestore), so migrate fails as xl fails when the
guest does not acknowledge the request in libxl's 60 s.  remus stops at
libxl's first check on this host: Debian's libxenlight is built without
network buffering (libxl_nonetbuffer.c), which Remus uses unless -n is
given, and without COLO (libxl_no_colo.c, -c); -n, -d or -b need -F
(libxl_domain_remus_start).  With -F -n each of the domain's disks (unless
-d) must be a DRBD device, as Xen's block-drbd-probe script says; with
none left to check, the first checkpoint fails at the suspend as migrate
does."""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time

from pyxl.cli.saverestore import (ERROR_GUEST_TIMEDOUT, MIGRATE_RECEIVER_BANNER, _err, _logd,
                                  config_data, domain_resume, domain_suspend,
                                  domain_type_error, find, write_config)

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts

XTL_PROGRESS = 4           # xentoollog.h: xl's default minimum message level
ERROR_FAIL = -3
_READ_EXACTLY = "libxl: error: libxl_utils.c:505:libxl_read_exactly: "
_UNSAFE = ("libxl_domain.c:448:libxl_domain_remus_start",
           "Unsafe mode must be enabled to replicate to /dev/null,"
           "disable network buffering and disk replication")
_NO_NETBUF = ("libxl_remus.c:87:libxl__remus_setup", "Remus: No support for network buffering")
# Debian's libxenlight is built without COLO (libxl_no_colo.c)
_NO_COLO = ("libxl_no_colo.c:42:libxl__colo_save_setup", "COLO is not supported")
_NOT_HANDLED = "libxl_checkpoint_device.c:153:device_setup_iterate"
_SETUP_FAILED = "libxl_remus.c:134:remus_setup_done"
_TEARDOWN = "libxl_remus.c:168:libxl__remus_teardown"
ERROR_CHECKPOINT_DEVICE_NOT_SUPPORTED = -19      # libxl_types.idl
# libxl_remus_disk_drbd.c init_subkind_drbd_disk: in libxl__xen_script_dir_path()
DRBD_PROBE = "/etc/xen/scripts/block-drbd-probe"


class _Child:
    """create_migration_child: `sh -c RUNE` with xl's pipes as its stdin
    and stdout; stderr is xl's."""

    def __init__(self, rune: str):
        send_r, self.send_fd = os.pipe()
        self.recv_fd, recv_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:                              # pragma: no cover - the child
            try:
                os.dup2(send_r, 0)
                os.dup2(recv_w, 1)
                for fd in (send_r, self.send_fd, self.recv_fd, recv_w):
                    os.close(fd)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                os.execlp("sh", "sh", "-c", rune)
            except OSError as e:
                os.write(2, b"failed to exec sh: %s\n" % os.strerror(e.errno or 0).encode())
            os._exit(1)
        os.close(send_r)
        os.close(recv_w)
        self.status: int | None = None

    def report(self, recv_fd: int) -> None:
        """migration_child_report: up to 2 s for the transport to exit (or
        to say something), then its exit status if it failed."""
        deadline = time.monotonic() + 2
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = status
                if status:
                    _report_child_exitstatus("migration transport process", pid, status)
                return
            left = deadline - time.monotonic()
            if left <= 0:
                _err("migration child [%d] not exiting, no longer waiting (exit status"
                     " will be unreported)\n" % self.pid)
                return
            if recv_fd >= 0:
                r, _, x = select.select([recv_fd], [], [recv_fd], left)
                if r or x:
                    recv_fd = -1
            else:
                time.sleep(min(left, 0.001))


def _report_child_exitstatus(what: str, pid: int, status: int, level: str = "info") -> None:
    """libxl_report_child_exitstatus (libxl_exec.c) at LEVEL."""
    pre = "libxl: %s: libxl_exec.c:" % level
    if os.WIFEXITED(status):
        st = os.WEXITSTATUS(status)
        if st:
            _err(pre + "117:libxl_report_child_exitstatus: "
                 "%s [%d] exited with error status %d\n" % (what, pid, st))
        else:
            _err(pre + "120:libxl_report_child_exitstatus: "
                 "%s [%d] unexpectedly exited status zero\n" % (what, pid))
    elif os.WIFSIGNALED(status):
        _err(pre + "127:libxl_report_child_exitstatus: "
             "%s [%d] died due to fatal signal %s%s\n"
             % (what, pid, signal.strsignal(os.WTERMSIG(status)),
                " (core dumped)" if os.WCOREDUMP(status) else ""))


def _read_fixedmessage(child: _Child, msg: bytes, what: str, rune: str) -> bool:
    """migrate_read_fixedmessage: libxl_read_exactly, then a comparison."""
    stream = "migration receiver stream"
    buf = b""
    while len(buf) < len(msg):
        try:
            chunk = os.read(child.recv_fd, len(msg) - len(buf))
        except InterruptedError:
            continue
        except OSError as e:
            _err(_READ_EXACTLY + "failed to read %s from %s: %s\n"
                 % (what, stream, os.strerror(e.errno or 0)))
            return False
        if not chunk:
            _err(_READ_EXACTLY + "file/stream truncated reading %s from %s\n" % (what, stream))
            return False
        buf += chunk
    if buf != msg:
        _err("%s contained unexpected data instead of %s\n" % (stream, what))
        _err("(command run was: %s )\n" % rune)
        return False
    return True


def _preamble(child: _Child, config: bytes, rune: str) -> bool:
    """migrate_do_preamble: the receiver's banner, then xl's header."""
    if not _read_fixedmessage(child, MIGRATE_RECEIVER_BANNER.rstrip(b"\n") + b"\n",
                              "banner", rune):
        os.close(child.send_fd)
        child.report(child.recv_fd)
        return False
    return write_config(child.send_fd, "migration stream", config)


def _remote(ssh: str, host: str, args: str) -> str:
    return "exec %s %s pyxl%s" % (ssh, host, args)


def migrate(opts: Opts | None, args: list[str]) -> int:
    """main_migrate: [options] Domain Host."""
    from pyxl.cli._common import faults
    from pyxl.cli.main import Globals

    config_file, ssh = None, "ssh"
    for k, v in opts or []:
        if k == "C":
            config_file = v
        elif k == "s":
            ssh = v or ""
    flags = {k for k, _ in opts or []}
    daemonize, debug, pause_after = not flags & {"F", "e"}, 256 in flags, "p" in flags
    host = args[1]
    if not ssh:
        rune = host
    else:
        minlevel = max(XTL_PROGRESS - Globals.verbose, 0)
        verbose = "" if minlevel == XTL_PROGRESS else " -" + "v" * (XTL_PROGRESS - minlevel)
        rune = _remote(ssh, host, "%s%s%s migrate-receive%s%s%s" % (
            " -t" if os.isatty(2) else "", " -T" if Globals.timestamps else "", verbose,
            "" if daemonize else " -e", " -d" if debug else "", " -p" if pause_after else ""))
    return faults(_migrate)(args[0], rune, "D" in flags, config_file)


def _migrate(dom: str, rune: str, preserve: bool, config_file: str | None) -> int:
    """migrate_domain up to its failure: the suspend."""
    d = find(dom)
    if d is None:
        _err("unable to retrieve domain configuration\n")
        return 1
    domid = d["domid"]
    try:
        config = config_data(d, preserve, config_file)
    except SystemExit as e:
        return int(e.code or 0)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    child = _Child(rune)
    if not _preamble(child, config, rune):
        return 1
    rc = domain_suspend(domid, child.send_fd)
    _err("migration sender: libxl_domain_suspend failed (rc=%d)\n" % rc)
    os.close(child.send_fd)
    child.report(child.recv_fd)
    if rc == ERROR_GUEST_TIMEDOUT:
        _err("Migration failed, failed to suspend at sender.\n")
    else:
        _err("Migration failed, resuming at sender.\n")
        domain_resume(domid)
    return 1


def remus(opts: Opts | None, args: list[str]) -> int:
    """main_remus: [options] Domain Host."""
    from pyxl.cli._common import faults

    flags = {k for k, _ in opts or []}
    ssh, interval, script = "ssh", 0, None
    for k, v in opts or []:
        if k == "s":
            ssh = v or ""
        elif k == "i":
            interval = _atoi(v or "")
        elif k == "N":
            script = v
    colo = "c" in flags
    if "p" in flags and not colo:
        _err("Option -p must be used in conjunction with -c")
        return 255
    if colo:
        if interval or flags & {"b", "n", "d"}:
            _perror("option -c is conflict with -i, -d, -n or -b")
            return 255
        if "u" not in flags:
            _perror("COLO can't be used with memory compression. "
                    "Disable memory checkpoint compression now...")
    return faults(_remus)(args[0], args[1], ssh, flags, script)


def _atoi(text: str) -> int:
    """atoi(3): leading blanks, a sign, the digits that follow."""
    t = text.lstrip(" \t\n\v\f\r")
    sign = -1 if t[:1] == "-" else 1
    t = t[1:] if t[:1] in "+-" else t
    digits = len(t) - len(t.lstrip("0123456789"))
    return sign * int(t[:digits]) if digits else 0


# What perror(3) appends in main_remus: errno as xl's earlier calls left it,
# which the source does not determine.  Xen 4.17's xl (Debian's, run by
# tests/oracle) leaves EBADF there after find_domain of a domain id.
_REMUS_ERRNO = errno.EBADF


def _perror(msg: str) -> None:
    _err("%s: %s\n" % (msg, os.strerror(_REMUS_ERRNO)))


def _remus(dom: str, host: str, ssh: str, flags: set, script: str | None) -> int:
    d = find(dom)
    domid = d["domid"] if d is not None else min(int(dom), 2**64 - 1) & 0xFFFFFFFF
    colo, unsafe = "c" in flags, "F" in flags
    blackhole, netbuf, diskbuf = "b" in flags, "n" not in flags, "d" not in flags
    send_fd = -1
    if blackhole:
        try:
            send_fd = os.open("/dev/null", os.O_RDWR)
        except OSError as e:
            _err("failed to open /dev/null: %s\n" % os.strerror(e.errno or 0))
            return 1
    else:
        if not ssh:
            rune = host
        elif colo:      # colo.default.proxyscript: unset in xl.conf, so no script
            rune = _remote(ssh, host, " migrate-receive --colo %s %s %s %s" % (
                "--coloft-script" if script else "", script or "",
                "--userspace-colo-proxy" if "p" in flags else "",
                "" if "e" not in flags else " -e"))
        else:
            rune = _remote(ssh, host, " migrate-receive -r %s"
                           % ("" if "e" not in flags else " -e"))
        if d is None:
            _err("unable to retrieve domain configuration\n")
            return 1
        try:
            config = config_data(d, False, None)
        except SystemExit as e:
            return int(e.code or 0)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        child = _Child(rune)
        if not _preamble(child, config, rune):
            return 1
        send_fd = child.send_fd
    # libxl_domain_remus_start: its checks, then libxl__colo_save_setup or
    # libxl__remus_setup
    rc = ERROR_FAIL
    if d is None:
        domain_type_error(domid)
    elif colo:
        _logd(_NO_COLO[0], domid, _NO_COLO[1])
    elif not unsafe and (blackhole or not netbuf or not diskbuf):
        _logd(_UNSAFE[0], domid, _UNSAFE[1])
    elif netbuf:
        _logd(_NO_NETBUF[0], domid, _NO_NETBUF[1])
    else:
        rc = _replicate(d, send_fd, diskbuf)
    what = "COLO" if colo else "Remus"
    if find(str(domid)) is None:
        _err("%s: Primary domain has been destroyed.\n" % what)
        os.close(send_fd)
        return 0
    if rc == ERROR_GUEST_TIMEDOUT:
        _err("Failed to suspend domain at primary.\n")
    else:
        _err("%s: Backup failed? resuming domain at primary.\n" % what)
        domain_resume(domid)
    os.close(send_fd)
    return 1


def _replicate(d: dict, send_fd: int, diskbuf: bool) -> int:
    """libxl__remus_setup without network buffering (-F -n): the domain's
    disks, unless -d, must each be a DRBD device (libxl_remus_disk_drbd.c,
    asked of Xen's block-drbd-probe script); then the first checkpoint,
    libxl__domain_save, whose suspend the guest does not acknowledge.
    -> the rc libxl_domain_remus_start ends with.

    As for migrate, the save is shown as failing at the suspend: on Xen
    the live checkpoint first sends the guest's memory while it runs
    (xg_sr_save.c send_domain_memory_live), which the simulated host does
    not have."""
    domid = d["domid"]
    disks = ((d.get("config") or {}).get("disks") or []) if diskbuf else []
    failed = False
    for disk in disks:
        if _drbd_probe(disk.get("pdev_path") or ""):
            continue           # a DRBD device: matched (not on the simulated host)
        from pyxl.toolstack.devices import vdev_to_devid

        # device_setup_iterate: no other checkpoint ops for a vbd
        _err("libxl: error: %s: device not handled by checkpoint (device=vbd:%d/%d)\n"
             % (_NOT_HANDLED, int(disk.get("backend_domid") or 0),
                vdev_to_devid(disk.get("vdev") or "")))
        failed = True
    if failed:
        # remus_setup_done, then remus_setup_failed passes on the
        # teardown's rc (0, nothing was set up)
        _logd(_SETUP_FAILED, domid, "Remus: failed to setup device, rc %d"
              % ERROR_CHECKPOINT_DEVICE_NOT_SUPPORTED)
        return 0
    rc = domain_suspend(domid, send_fd)
    # domain_save_done -> libxl__remus_teardown, whose remus_teardown_done
    # completes with the teardown's rc (0)
    _err("libxl: warning: %s: Domain %d:Remus: Domain suspend terminated with rc %d,"
         " teardown Remus devices...\n" % (_TEARDOWN, domid, rc))
    return 0


def _drbd_probe(pdev_path: str) -> bool:
    """match_async_exec: libxl__async_exec of `block-drbd-probe PDEV` with
    xl's stdin, stdout and stderr; a non-zero exit status is logged
    (async_exec_done) and means no match."""

    what = "%s %s" % (DRBD_PROBE, pdev_path)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:                                   # pragma: no cover - the child
        try:
            os.execv(DRBD_PROBE, [DRBD_PROBE, pdev_path])
        except OSError as e:                       # libxl__exec
            os.write(2, b"libxl: cannot execute %s: %s\n"
                     % (DRBD_PROBE.encode(), os.strerror(e.errno or 0).encode()))
        os._exit(255)
    status = os.waitpid(pid, 0)[1]
    if status:
        _report_child_exitstatus(what, pid, status, "error")
    return status == 0
