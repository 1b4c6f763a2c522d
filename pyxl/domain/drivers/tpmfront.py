"""mini-os tpmfront on a XenInterface: the frontend half of the vTPM split
driver (tpmif v2), as vtpm-stubdom uses it to reach the manager and pv-grub
to reach a guest's vTPM.

    front = TpmFront(xen, printk)           # init_tpmfront("device/vtpm/0")
    rsp = front.cmd(request)                # send, wait for FINISH, copy out
    front.shutdown()                        # Closing -> Closed -> wait -> Initialising

As mini-os does it: feature-protocol-v2 first, then ring-ref and
event-channel in one transaction, then state Connected directly (no
Initialised step), wait for the backend's Connected, check its v2 flag.
Failures print mini-os's messages and raise TpmFrontError after the
device was shut down again.
"""

from __future__ import annotations

import threading
import time

from pyxl.hypervisor import testfault

from . import xenbus
from .tpmif import (MAX_PACKET, TPMIF_STATE_FINISH, TPMIF_STATE_IDLE, SharedPage)

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable

    from pyxl.domain.xen import Page, XenInterface


RESUME_TIMEOUT = 30.0      # how long a command waits for the ring to come back
POLL = 0.5                 # how often a waiting command looks whether its backend is still there
GONE = {xenbus.XenbusStateUnknown, xenbus.XenbusStateClosing, xenbus.XenbusStateClosed}


class TpmFrontError(OSError):
    """The frontend could not connect, or a command could not be carried."""


class BackendGone(TpmFrontError):
    """The backend's domain went away while a command waited for it."""


class TpmFront:
    def __init__(self, xen: XenInterface, printk: Callable[[str], None], nodename: str = "device/vtpm/0",
                 timeout: float | None = None):
        self.xen = xen
        self.printk = printk
        self.nodename = nodename
        self.state = xenbus.XenbusStateInitialising
        self.page: Page | None = None          # the ring, while connected
        self.shared: SharedPage | None = None
        self.ref = self.port = -1
        self.locality = 0
        self.bepath = ""
        self.lock = threading.Lock()          # one command (or resume) at a time
        self.commands = threading.Lock()      # one command at a time, across a resume too
        self.inflight: Page | None = None     # the ring page a command went out on
        self.generation = xen.generation      # the hypervisor the ring lives in
        self.broken = False                   # the backend went away under a command
        self._meanwhile: Callable[[], object] | None = None     # cmd(meanwhile=): not run yet
        printk("============= Init TPM Front ================\n")
        while True:
            gen = xen.generation
            # a break fails the handshake at once: it starts over below, on
            # the next hypervisor, rather than finish with a ring of the old one
            waited = xen.no_wait(True)
            try:
                self._init(timeout)
            except (TpmFrontError, OSError) as e:
                xen.no_wait(waited)
                if not self._lost(gen) or not self._await_hypervisor(gen):
                    self.shutdown()
                    raise e if isinstance(e, TpmFrontError) \
                        else TpmFrontError(e.errno, str(e)) from None
            else:
                xen.no_wait(waited)
                if not self._lost(gen):
                    break
                if not self._await_hypervisor(gen):
                    self.shutdown()
                    raise TpmFrontError(32, "hypervisor connection closed")
            # the hypervisor went away mid-handshake (the daemon was
            # restarted) and the new one wrote the device afresh: start over
            self.log("Resuming: reconnecting to the backend\n")
            self._drop_ring()
        self.log("Initialization Completed successfully\n")

    def log(self, msg: str) -> None:
        self.printk("Tpmfront:Info " + msg)

    def err(self, msg: str) -> None:
        if not self.xen.closed:      # a lost hypervisor is not the device's error
            self.printk("Tpmfront:Error " + msg)

    def _lost(self, gen: int) -> bool:
        return self.xen.closed or self.xen.generation != gen

    def _await_hypervisor(self, gen: int) -> bool:
        """Wait until the domain is resumed on a new hypervisor connection."""
        deadline = time.monotonic() + RESUME_TIMEOUT
        while self.xen.closed or self.xen.generation == gen:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _drop_ring(self) -> None:
        """Forget a ring that died with the old hypervisor (its page stays
        open while a command that went out on it waits)."""
        self.state = xenbus.XenbusStateInitialising
        if self.page is not None and self.page is not self.inflight:
            self.page.close()
        self.page = self.shared = None
        self.ref = self.port = -1

    def _read(self, path: str) -> str:
        try:
            return self.xen.read_str(path)
        except OSError as e:
            self.err("Unable to read %s during tpmfront initialization! error = %s\n"
                     % (path, e.strerror))
            raise TpmFrontError(e.errno, str(e)) from None

    def _init(self, timeout: float | None) -> None:
        xen = self.xen
        raw = self._read(self.nodename + "/backend-id")
        try:
            self.bedomid = int(raw)
        except ValueError:
            self.err("%s/backend-id has non-integer value (%s)\n" % (self.nodename, raw))
            raise TpmFrontError(22, "bad backend-id") from None
        self.bepath = self._read(self.nodename + "/backend")
        try:
            xen.write(self.nodename + "/feature-protocol-v2", "1")
        except OSError as e:
            self.err("Unable to write feature-protocol-v2 node: %s\n" % e.strerror)
            raise TpmFrontError(e.errno, str(e)) from None
        self._connect(timeout)

    def _connect(self, timeout: float | None) -> None:
        """tpmfront_connect: page, grant, event channel, publish, Connected,
        then wait for the backend's Connected and its v2 flag."""
        xen = self.xen
        self.generation = xen.generation
        page = self.page = xen.alloc_page()
        shared = self.shared = SharedPage(page.buf)
        shared.init()
        self.ref = xen.grant_access(page, self.bedomid)
        self.port = xen.evtchn_alloc_unbound(self.bedomid)

        def publish(tx: int) -> None:
            xen.write(self.nodename + "/ring-ref", "%u" % self.ref, tx)
            xen.write(self.nodename + "/event-channel", "%u" % self.port, tx)
        try:
            xen.transaction(publish)
        except OSError as e:
            self.err("Unable to complete xenbus transaction, error was %s\n" % e.strerror)
            raise TpmFrontError(e.errno, str(e)) from None
        self.state = xenbus.XenbusStateConnected
        xen.write(self.nodename + "/state", "%u" % self.state)
        # wait_for_backend_connect
        self.log("Waiting for backend connection..\n")
        st = xenbus.wait_for_state(xen, self.bepath, GONE | {xenbus.XenbusStateConnected}, timeout)
        if st != xenbus.XenbusStateConnected:
            self.err("Unable to connect to backend\n")
            raise TpmFrontError(107, "backend did not connect")
        self.log("Backend Connected\n")
        path = self.bepath + "/feature-protocol-v2"
        v2 = self._read(path)
        if v2 != "1":
            self.err("%s has an invalid value (%s)\n" % (path, v2))
            raise TpmFrontError(93, "backend lacks protocol v2")

    # -- resume (after the hypervisor came back) --------------------------------
    def _gone(self) -> bool:
        return self.xen.closed or self.xen.generation != self.generation

    def resume(self) -> None:
        """The daemon was restarted: the ring's grant and event channel
        died with the old hypervisor and the toolstack wrote the device
        afresh.  Drop the old page, connect again (Linux frontends' xenbus
        resume; mini-os itself never resumes)."""
        with self.lock:
            if self.state != xenbus.XenbusStateConnected or self.page is None:
                return                           # shut down, or never connected
            if not self._gone():
                return                           # already on the current hypervisor
            self.log("Resuming: reconnecting to the backend\n")
            self._drop_ring()
            try:
                self.xen.write(self.nodename + "/feature-protocol-v2", "1")
                self._connect(RESUME_TIMEOUT)
            except (TpmFrontError, OSError) as e:
                # no backend to resume with (its domain died while the daemon
                # was away): as when a backend goes away under a command, the
                # next command connects to whatever backend the device names
                # then (_reattach), so a re-attach to a new one is taken up
                self.err("Resume failed: %s\n" % e)
                self.state = xenbus.XenbusStateConnected
                self.broken = True

    def _release_ring(self) -> None:
        for fn, arg in ((self.xen.evtchn_close, self.port), (self.xen.end_access, self.ref)):
            if arg is not None and arg >= 0:
                try:
                    fn(arg)
                except OSError:
                    pass
        self.port = self.ref = -1
        if self.page is not None:
            self.page.close()
            self.page = self.shared = None

    def _backend_state(self) -> int | None:
        """The backend's state; None while the hypervisor itself is away
        (a daemon restart: resume() handles that, not a dead backend)."""
        if self._gone():
            return None
        try:
            return xenbus.read_state(self.xen, self.bepath)
        except OSError:
            return None

    def _reattach(self, timeout: float | None) -> None:
        """The backend went away (its domain died, as a killed vtpmmgr
        does): connect to whatever backend the device names now -- the
        toolstack re-attached it to a new one -- or fail at once.  Not in
        mini-os, whose frontend then waits forever."""
        self._release_ring()
        self.state = xenbus.XenbusStateInitialising
        try:
            self._init(timeout)
        except (TpmFrontError, OSError) as e:
            self.state = xenbus.XenbusStateConnected      # still ours to retry next time
            raise TpmFrontError(107, "backend gone: %s" % e) from None
        self.broken = False
        self.log("Reconnected to backend %s\n" % self.bepath)

    def _wait_resumed(self, dead: int, timeout: float) -> bool:
        """Wait for a ring newer than the one of generation `dead`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.generation > dead and not self._gone() and \
                    self.state == xenbus.XenbusStateConnected:
                return True
            if self.state == xenbus.XenbusStateClosed:
                return False
            if not self.xen.closed and self._gone():
                self.resume()        # the domain is back (before our handler was registered)
                continue
            time.sleep(0.02)
        return False

    # -- commands ------------------------------------------------------------
    def set_locality(self, locality: int) -> None:
        self.locality = locality

    def cmd(self, request: bytes, timeout: float | None = None,
            meanwhile: Callable[[], object] | None = None) -> bytes:
        """tpmfront_cmd: one request, its response (b"" if it was cancelled).
        If the hypervisor goes away meanwhile (the daemon was restarted;
        mini-os never resumes, a Xen toolstack restart leaving rings alone),
        the request is still answered once, run once: once the backend is
        connected to the new ring, its answer is taken from the old ring's
        page if the backend wrote it there, else the request is sent again
        on the new ring, where tpmback answers it from what it kept if it
        had run it (TpmBack.resp).  A request whose backend went away is
        sent again on the backend the device names now, if any (that
        backend's domain died: what it had run is its own state's matter).

        `meanwhile()`, if given, runs once, while the backend works on the
        request (after the notification, before the wait); what it raises
        is raised once the response is in (the ring stays usable)."""
        if len(request) > MAX_PACKET:
            self.err("Message too long for shared page\n")
            raise TpmFrontError(90, "message too long")
        if testfault.ARMED:
            testfault.away(self.xen, request)
        with self.commands:                   # the resend is the new ring's first request
            self._meanwhile = meanwhile
            try:
                return self._cmd_resent(request, timeout)
            finally:
                self._meanwhile = None
                with self.lock:
                    sent, self.inflight = self.inflight, None
                    if sent is not None and sent is not self.page:
                        sent.close()             # a ring that died under it

    def _answered_on_dead_ring(self) -> bytes | None:
        """Called with self.lock held, on a live ring: the answer the
        backend wrote on the ring the request went out on, if that ring
        died meanwhile.  The backend, connected to the current ring, has
        resumed: it writes nothing more there (TpmBack.resp)."""
        sent = self.inflight
        if sent is None or sent is self.page:
            return None
        self.inflight = None
        shared = SharedPage(sent.buf)
        rsp = shared.response() if shared.state == TPMIF_STATE_FINISH else None
        sent.close()
        return rsp

    def _cmd_resent(self, request: bytes, timeout: float | None) -> bytes:
        for _ in range(3):
            with self.lock:
                dead = self.generation
                if not self._gone():
                    rsp = self._answered_on_dead_ring() if self.inflight is not None else None
                    if rsp is not None:
                        return rsp
                    if self.state != xenbus.XenbusStateConnected:
                        self.err("Tried to send message through disconnected frontend\n")
                        raise TpmFrontError(107, "frontend not connected")
                    if self.broken:
                        self._reattach(timeout)
                    try:
                        rsp = self._cmd(request, timeout)
                    except BackendGone:
                        # the device may already name a new backend: once more there
                        self._reattach(timeout)
                        rsp = self._cmd(request, timeout)
                    if rsp is not None:
                        return rsp
            if not self._wait_resumed(dead, RESUME_TIMEOUT):
                break
        raise TpmFrontError(32, "hypervisor connection closed")

    def _cmd(self, request: bytes, timeout: float | None) -> bytes | None:
        """One round trip on the current ring; None if the ring died under it.
        Called with self.lock held, while Connected (so there is a ring)."""
        shared = self.shared
        assert shared is not None
        try:
            # no stale notification is cleared first (as mini-os tpmfront_send
            # does not): _wait_response waits for the page's state, so one
            # (the backend's bind) only makes it look once more
            self.inflight = self.page
            shared.submit(request, self.locality)
            self.xen.evtchn_notify(self.port)
        except OSError:
            return None
        # cmd(meanwhile=), once across resends
        meanwhile, self._meanwhile = self._meanwhile, None
        failed: Exception | None = None
        if meanwhile is not None:
            try:
                meanwhile()
            except Exception as e:
                failed = e
        rsp = self._wait_response(timeout)
        if failed is not None:
            raise failed
        return rsp

    def _wait_response(self, timeout: float | None) -> bytes | None:
        shared = self.shared
        assert shared is not None       # Connected: there is a ring
        deadline = None if timeout is None else time.monotonic() + timeout
        while shared.state not in (TPMIF_STATE_FINISH, TPMIF_STATE_IDLE):
            if self._gone():
                return None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.broken = True            # an answer may still come: a fresh ring next time
                raise TpmFrontError(62, "no response from the backend")
            step = POLL if left is None else min(POLL, left)
            if self.xen.evtchn_wait(self.port, timeout=step) is None and \
                    shared.state not in (TPMIF_STATE_FINISH, TPMIF_STATE_IDLE) and \
                    self._backend_state() in GONE:
                self.broken = True
                self.err("Backend %s went away during a command\n" % self.bepath)
                raise BackendGone(107, "backend gone")
        if shared.state != TPMIF_STATE_FINISH:
            return None if self._gone() else b""
        return shared.response()          # also from a ring that died: answered before

    def shutdown(self, timeout: float | None = 10.0) -> None:
        xen = self.xen
        self.log("Shutting down tpmfront\n")
        if self.state == xenbus.XenbusStateConnected:
            self.state = xenbus.XenbusStateClosing
            try:
                xen.write(self.nodename + "/state", "%u" % self.state)
                for key in ("event-channel", "ring-ref"):
                    try:
                        xen.rm("%s/%s" % (self.nodename, key))
                    except OSError:
                        pass
                self.state = xenbus.XenbusStateClosed
                xen.write(self.nodename + "/state", "%u" % self.state)
                self.log("Waiting for backend to close..\n")
                st = xenbus.wait_for_state(xen, self.bepath, {
                    xenbus.XenbusStateUnknown, xenbus.XenbusStateClosed,
                    xenbus.XenbusStateInitWait}, timeout)
                if st == xenbus.XenbusStateClosed:
                    self.log("Backend Closed\n")
                elif st == xenbus.XenbusStateInitWait:
                    self.log("Backend Closed (waiting for reconnect)\n")
                elif st == xenbus.XenbusStateUnknown:
                    self.err("Backend Unknown state, forcing shutdown\n")
                self.state = xenbus.XenbusStateInitialising
                xen.write(self.nodename + "/state", "%u" % self.state)
            except OSError:
                pass
        self._release_ring()
