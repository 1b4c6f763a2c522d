"""`xl devd`: main_devd (tools/xl/xl_misc.c) and the handler it runs,
libxl_device_events_handler (tools/libs/light/libxl_device.c).

xl devd is the daemon a driver domain runs so that the backends other
domains ask of it get their hotplug scripts: it watches its own
/local/domain/<domid>/backend, follows each backend through
backend_watch_callback, and for a new one waits for the backend driver's
InitWait and runs the script (libxl__wait_device_connection, device_hotplug);
for one that went offline and Closed it runs the script's removal and
cleans the backend out of xenstore (libxl__initiate_device_generic_remove,
libxl__device_destroy).  Run in dom0 of the simulated host it does the same
for dom0's backends, beside the daemon (which, as libxl in dom0 does,
runs the scripts of the devices it adds itself).

The scripts are the simulated host's: vif-bridge and block have no network
bridge or loop device to set up here, and end as they end on Xen
(xen-hotplug-common.sh `success`: hotplug-status connected).  Only the vbd
and vif kinds have scripts (libxl__get_hotplug_script_info, libxl_linux.c).
A qdisk backend would need a QEMU to be spawned (libxl__spawn_qdisk_backend);
pyxl never writes one (its disks are all vbd), and devd leaves such a backend
alone.

Without -F the command daemonizes as do_daemonize (xl_utils.c) does: the
command returns once the daemon has started, whose output goes to the
host's xldevd.log; -p writes its pid to a file, created without following
a symbolic link.  SIGTERM ends it.
"""

from __future__ import annotations

import enum
import errno as _errno
import os
import re
import select
import signal
import sys
import time

from pyxl.fsutil import strerror

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Callable

    from pyxl.cli.xlopt import Opts
    from pyxl.toolstack.xsclient import XsClient

# libxl_internal.h: how long a backend gets to reach InitWait, to close
LIBXL_INIT_TIMEOUT = 10.0
LIBXL_DESTROY_TIMEOUT = 10.0

_DAEMON_NAME = "xldevd"                  # main_devd's do_daemonize("xldevd", pidfile)
_WAITDAEMON = "domain monitoring daemonizing child"   # do_daemonize's xl_fork description


class Level(enum.IntEnum):
    """xentoollog_level (xentoollog.h), in its order."""
    DEBUG = 1
    VERBOSE = 2
    DETAIL = 3
    PROGRESS = 4
    INFO = 5
    NOTICE = 6
    WARN = 7
    ERROR = 8


class Action(enum.Enum):
    """libxl__device_action."""
    ADD = "add"
    REMOVE = "remove"


# Positions in Debian's libxenlight 4.17.5 (tests/toolstack/test_devd.py
# reads each back from the binary).
_POS = {
    "get_domid": "libxl_domain.c:1639:libxl__get_domid",
    "no_domid": "libxl_device.c:1844:libxl_device_events_handler",
    "backend_cb": "libxl_device.c:1181:device_backend_callback",
    "no_info": "libxl_device.c:1026:libxl__initiate_device_generic_remove",
    "vbd_script": "libxl_linux.c:174:libxl__hotplug_disk",
    "vif_script": "libxl_linux.c:119:libxl__hotplug_nic",
    "child_exit": "libxl_exec.c:117:libxl_report_child_exitstatus",
}


class Logger:
    """xl's stderr logger (xtl_createlogger_stdiostream, xtl_logger_stdio.c)
    as libxl__log writes through it: `-T` adds the date and the pid."""

    def __init__(self, verbose: int, timestamps: bool):
        self.min_level = Level.PROGRESS - verbose      # xl.c: each -v lowers it
        self.timestamps = timestamps

    def log(self, level: Level, pos: str, msg: str, domid: int | None = None,
            errno: int | None = None) -> None:
        if level < self.min_level:
            return
        head = ""
        if self.timestamps:
            lt = time.localtime()
            head = time.strftime("%Y-%m-%d %H:%M:%S ", lt) + time.tzname[lt.tm_isdst > 0] + " "
            head += "[%d] " % os.getpid()
        text = "%slibxl: %s: %s: " % (head, level.name.lower(), pos)
        if domid is not None:
            text += "Domain %d:" % domid
        text += msg
        if errno is not None:
            text += ": " + os.strerror(errno)
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


# -- the device-events handler ------------------------------------------------

_BACKEND = re.compile(r"/local/domain/(-?\d+)/backend/([^/]{1,15})/(\d+)/(-?\d+)")
_KINDS_WITH_SCRIPTS = ("vbd", "vif")     # libxl__get_hotplug_script_info


def _atoi(v: bytes) -> int:
    m = re.match(rb"\s*([+-]?\d+)", v)
    return int(m.group(1)) if m else 0


class _Device:
    """libxl__ddomain_device with the libxl__ao_device it has running."""

    def __init__(self, path: str, kind: str, domid: int, devid: int):
        self.path = path
        self.kind, self.domid, self.devid = kind, domid, devid
        self.action: Action | None = None     # what is being waited for
        self.want = 0                         # the backend state awaited
        self.deadline = 0.0
        self.force = False


class Handler:
    """libxl_device_events_handler: the state of one driver domain's
    handler (libxl__ddomain) over a xenstore connection."""

    def __init__(self, xs: XsClient, log: Logger):
        self.xs = xs
        self.log = log
        self.domid = -1
        self.guests: dict[int, dict[tuple[str, int], _Device]] = {}
        self.waiting: list[_Device] = []

    # xenstore, as libxl__xs_* (a missing node reads as None)
    def _read(self, path: str) -> bytes | None:
        try:
            return self.xs.read(path)
        except OSError as e:
            if e.errno == _errno.ENOENT:
                return None
            raise

    def _dir(self, path: str) -> list[str]:
        try:
            return [d.decode() for d in self.xs.directory(path)]
        except OSError:
            return []

    def _transaction(self, body: Callable[[int], None]) -> None:
        """libxl__xs_transaction_start/commit, retried on EAGAIN."""
        while True:
            t = self.xs.transaction_start()
            try:
                body(t)
            except BaseException:
                self.xs.transaction_end(t, True)
                raise
            try:
                self.xs.transaction_end(t, False)
                return
            except OSError as e:
                if e.errno != _errno.EAGAIN:
                    raise

    def start(self) -> bool:
        """The handler's set-up: our domid (libxl__get_domid), the watch on
        our backend directory, and a callback for each backend already in
        InitWait.  False where the domid cannot be had."""
        from pyxl.toolstack.devices import XenbusStateInitWait

        got = self._read("domid")                 # DOMID_XS_PATH, relative to our home
        if got is None:
            self.log.log(Level.ERROR, _POS["get_domid"], "failed to get own domid (domid)")
            self.log.log(Level.ERROR, _POS["no_domid"], "unable to get domain id")
            return False
        self.domid = _atoi(got)
        be_path = "/local/domain/%d/backend" % self.domid
        self.xs.watch(be_path, "devd")
        for kind in self._dir(be_path):
            for dom in self._dir("%s/%s" % (be_path, kind)):
                for dev in self._dir("%s/%s/%s" % (be_path, kind, dom)):
                    state_path = "%s/%s/%s/%s/state" % (be_path, kind, dom, dev)
                    state = self._read(state_path)
                    if state is not None and _atoi(state) == XenbusStateInitWait:
                        self.backend_event(state_path)
        return True

    def backend_event(self, event_path: str) -> None:
        """backend_watch_callback: an event on a backend's state or online
        node; a new device is added, a known one that is offline and
        Closed is removed; everything else is left alone."""
        from pyxl.toolstack.devices import XenbusStateClosed

        path, _, leaf = event_path.rpartition("/")
        if leaf not in ("state", "online") or not path:
            self._wake(event_path)
            return
        sstate, sonline = self._read(path + "/state"), self._read(path + "/online")
        m = _BACKEND.match(path)
        if sstate is None or sonline is None or m is None or \
                m.group(2) not in _KINDS_WITH_SCRIPTS + ("qdisk",):
            self._wake(event_path)          # libxl__parse_backend_path failed: skip
            return
        state, online = _atoi(sstate), _atoi(sonline)
        kind, domid, devid = m.group(2), int(m.group(3)), int(m.group(4))
        key = (kind, devid)
        devs = self.guests.get(domid)
        if kind == "qdisk":
            pass                             # needs a QEMU (libxl__spawn_qdisk_backend)
        elif devs is None and state == XenbusStateClosed:
            pass                             # spurious: gone already, or never attached
        elif devs is None or key not in devs:
            if state != XenbusStateClosed:
                dev = _Device(path, kind, domid, devid)
                self.guests.setdefault(domid, {})[key] = dev
                self._add_device(dev)
        elif state == XenbusStateClosed and online == 0:
            dev = devs.pop(key)
            if dev in self.waiting:
                self.waiting.remove(dev)
            self._remove_device(dev)
        self._maybe_remove_guest(domid)
        self._wake(event_path)

    def _maybe_remove_guest(self, domid: int) -> None:
        """check_and_maybe_remove_guest: a guest with no device left goes,
        and libxl/<domid> under our home with it."""
        if domid in self.guests and not self.guests[domid]:
            del self.guests[domid]
            try:
                self.xs.rm("libxl/%d" % domid)
            except OSError:
                pass

    # -- add: libxl__wait_device_connection, device_hotplug -------------------
    def _add_device(self, dev: _Device) -> None:
        from pyxl.toolstack.devices import XenbusStateInitWait

        dev.action, dev.want = Action.ADD, XenbusStateInitWait
        dev.deadline = time.monotonic() + LIBXL_INIT_TIMEOUT
        self.waiting.append(dev)
        self._check(dev)

    # -- remove: libxl__initiate_device_generic_remove --------------------------
    def _remove_device(self, dev: _Device) -> None:
        from pyxl.toolstack.devices import XenbusStateClosed, XenbusStateClosing

        dev.action = Action.REMOVE
        if self.domid == 0 and not self._domain_exists(dev.domid):
            self.log.log(Level.ERROR, _POS["no_info"],
                         "unable to get info for domain %d" % dev.domid, dev.domid)
            self._hotplug_done(dev, failed=True)
            return
        gone: list[bool] = []

        def body(t: int) -> None:
            gone.clear()
            if dev.force:
                self._path_cleanup(t, self._frontend_path(dev))
            try:
                state = self.xs.read(dev.path + "/state", t)
            except OSError as e:
                if e.errno != _errno.ENOENT:
                    raise
                gone.append(True)      # backend already removed: the frontend only
                return
            self.xs.write(dev.path + "/online", b"0", t)
            if _atoi(state) != XenbusStateClosed:
                self.xs.write(dev.path + "/state", b"%d" % XenbusStateClosing, t)

        self._transaction(body)
        if gone:
            self._hotplug_done(dev, failed=False)
            return
        dev.want = XenbusStateClosed
        dev.deadline = time.monotonic() + LIBXL_DESTROY_TIMEOUT
        self.waiting.append(dev)
        self._check(dev)

    def _domain_exists(self, domid: int) -> bool:
        """libxl_domain_info in dom0: whether the hypervisor knows the domain
        (its xenstore home is what this side of the host can see)."""
        return self._read("/local/domain/%d" % domid) is not None

    # -- waiting for a backend state (libxl__ev_devstate_wait) ------------------
    def _wake(self, event_path: str) -> None:
        for dev in list(self.waiting):
            if event_path == dev.path or event_path.startswith(dev.path + "/"):
                self._check(dev)

    def _check(self, dev: _Device) -> None:
        state = self._read(dev.path + "/state")
        if state is not None and _atoi(state) == dev.want:
            self.waiting.remove(dev)
            self._hotplug(dev)

    def timeouts(self) -> float | None:
        """Fire the waits that are past their deadline; the seconds to the
        next one, None if nothing waits."""
        now = time.monotonic()
        for dev in list(self.waiting):
            if dev.deadline <= now:
                self.waiting.remove(dev)
                self._backend_timed_out(dev)
        if not self.waiting:
            return None
        return max(0.0, min(d.deadline for d in self.waiting) - now)

    def _backend_timed_out(self, dev: _Device) -> None:
        """device_backend_callback with ERROR_TIMEDOUT: a removal is forced
        once; anything else fails."""
        assert dev.action is not None
        if dev.action == Action.REMOVE and not dev.force:
            dev.force = True
            self._remove_device(dev)
            return
        self.log.log(Level.ERROR, _POS["backend_cb"], "unable to %s device with path %s"
                     % (dev.action.value, dev.path), dev.domid)
        self._hotplug_done(dev, failed=True)

    # -- the hotplug script (device_hotplug, libxl__get_hotplug_script_info) ----
    def _hotplug(self, dev: _Device) -> None:
        """The backends watched are our own (device_hotplug's driver-domain
        case, another domain's backend, never arises here)."""
        script = self._read(dev.path + "/script")
        if script is None:
            self.log.log(Level.ERROR, _POS["%s_script" % dev.kind],
                         "unable to read script from %s" % dev.path, dev.domid,
                         errno=_errno.ENOENT)
            self._hotplug_done(dev, failed=True)
            return
        if dev.action == Action.ADD:
            # the script's end (xen-hotplug-common.sh success)
            self.xs.write(dev.path + "/hotplug-status", b"connected")
        self._hotplug_done(dev, failed=False)

    def _hotplug_done(self, dev: _Device, failed: bool) -> None:
        """device_hotplug_done: a removal that succeeded (or was forced)
        cleans xenstore (libxl__device_destroy)."""
        if dev.action == Action.REMOVE and (dev.force or not failed):
            self._device_destroy(dev)

    def _frontend_path(self, dev: _Device) -> str:
        """libxl__device_frontend_path of the device backend_watch_callback
        built: libxl__parse_backend_path sets no frontend kind, which stays
        LIBXL__DEVICE_KIND_NONE ("none")."""
        return "/local/domain/%d/device/none/%d" % (dev.domid, dev.devid)

    def _device_destroy(self, dev: _Device) -> None:
        """libxl__device_destroy: the toolstack domain removes the frontend
        and libxl's copy; the backend domain removes the backend."""
        def body(t: int) -> None:
            if self.domid == 0:
                self._path_cleanup(t, self._frontend_path(dev))
                self._path_cleanup(t, "/libxl/%d/device/none/%d" % (dev.domid, dev.devid))
            self._path_cleanup(t, dev.path)
        self._transaction(body)

    def _path_cleanup(self, t: int, path: str) -> None:
        from pyxl.toolstack.devices import path_cleanup

        path_cleanup(self.xs, t, path)

    def run(self) -> None:
        """The event loop the handler's never-ending ao runs in."""
        while True:
            while self.xs.events:
                path, _token = self.xs.events.popleft()
                self.backend_event(path.decode(errors="replace"))
            wait = self.timeouts()
            if self.xs.events:
                continue
            ready, _, _ = select.select([self.xs.sock], [], [], wait)
            if ready:
                self.xs.events.append(self.xs.read_watch())


# -- main_devd ----------------------------------------------------------------

def _log_path() -> str:
    """libxl_create_logfile(ctx, "xldevd"): NAME.log in the host's log directory."""
    from pyxl.toolstack.paths import Paths

    return os.path.join(Paths.from_env().log_dir, _DAEMON_NAME + ".log")


def _daemonize(pidfile: str | None, log: Logger) -> int | None:
    """do_daemonize: None in the daemon; in the command, its exit status
    once the daemonizing child has ended (child_report)."""
    child = os.fork()
    if child:
        _, status = os.waitpid(child, 0)
        if status == 0:
            return 0
        if os.WIFEXITED(status):
            msg = "%s [%d] exited with error status %d" % (_WAITDAEMON, child,
                                                          os.WEXITSTATUS(status))
        else:
            sig = os.WTERMSIG(status)
            msg = "%s [%d] died due to fatal signal %s" % (_WAITDAEMON, child,
                                                          signal.strsignal(sig))
        log.log(Level.ERROR, _POS["child_exit"], msg)
        return -3 & 0xFF                             # ERROR_FAIL
    try:
        _become_daemon(pidfile)
    except BaseException:
        os._exit(1)
    return None


def _become_daemon(pidfile: str | None) -> None:
    from pyxl.fsutil import ensure_dir, open_append

    path = _log_path()
    try:
        ensure_dir(os.path.dirname(path))
        logfd = open_append(path)                  # 0600, no symbolic link followed
    except OSError as e:
        # do_daemonize's CHK_SYSCALL (xl_utils.c, stable-4.17 line 277)
        sys.stderr.write("xl: fatal error: xl_utils.c:277: %s: logfile = open(fullname, "
                         "O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)\n" % strerror(e))
        sys.stderr.flush()
        os._exit(1)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    os.close(null)
    os.close(logfd)
    if os.fork():                                  # daemon(0, 1)
        os._exit(0)
    os.setsid()
    os.chdir("/")
    if pidfile:
        try:
            fd = os.open(pidfile, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
        except OSError as e:
            sys.stderr.write("Unable to open pidfile: %s\n" % strerror(e))    # perror
            sys.stderr.flush()
            os._exit(1)
        try:
            os.write(fd, b"%d\n" % os.getpid())
        finally:
            os.close(fd)


def devd(opts: Opts | None, args: list[str]) -> int:
    """main_devd: -F stays in the foreground; -p FILE (--pidfile) names the
    pid file written when daemonizing."""
    from pyxl.cli.main import Globals
    from pyxl.cli.xenstore import _open

    foreground, pidfile = False, None
    for k, v in opts or []:
        if k == "F":
            foreground = True
        elif k == "p":
            pidfile = v
    log = Logger(Globals.verbose, Globals.timestamps)
    if not foreground:
        rc = _daemonize(pidfile, log)
        if rc is not None:
            return rc
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    xs = _open()
    handler = Handler(xs, log)
    if not handler.start():
        return 1
    try:
        handler.run()
    except OSError as e:            # xenstored went away (the host's daemon stopped)
        sys.stderr.write("pyxl: devd: lost the xenstore connection: %s\n" % strerror(e))
        return 1
    return 0
