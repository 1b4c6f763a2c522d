"""mini-os tpmback on a XenInterface: the backend half of the vTPM split
driver (tpmif v2), as vtpm-stubdom and vtpmmgr-stubdom use it.

    back = TpmBack(xen, printk)             # prints the Init banner, starts
                                            # the xenbus listener thread
    domid, handle = back.wait_for_frontend_connect()
    cmd = back.req_any()                    # TpmCmd(domid, handle, uuid, req, locality)
    back.resp(cmd, response)
    back.shutdown()

The listener thread plays mini-os's event thread: a watch on backend/vtpm
finds new interfaces (uuid validated, feature-protocol-v2 written, state
InitWait, the frontend's state watched); frontend Initialised/Connected ->
connect (map the ring page, bind the event channel, ready=1, Connected);
Closing -> Closing; Closed -> disconnect back to InitWait (the front may
re-open, as pv-grub then the guest kernel do); Unknown (the frontend is
gone) -> free the interface and remove its backend directory.  Interfaces
are kept sorted by (domid, handle); each has at most one request in
flight.  The event-channel "interrupt handler" runs in whichever thread
waits for requests (SUBMIT marks the interface ready; CANCEL while idle is
acknowledged with IDLE).

Exactly once across a daemon restart (pyxl's own: Xen's frontends never
resume, a toolstack restart leaving their rings alone): a request taken
off a ring that then died with the hypervisor is answered on it if the
answer is ready before resume() drops that ring, else its answer is kept
(`TpmIf.kept`) and given to the byte-identical request the frontend sends
again first on its new ring, which is then not run a second time (see
resp()).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from pyxl.hypervisor import testfault

from . import xenbus
from .tpmif import (TPMIF_STATE_CANCEL, TPMIF_STATE_SUBMIT, SharedPage, TpmifError)

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable

    from pyxl.domain.xen import Mapping, XenInterface

    OpenClose = Callable[[int, int], object]        # (domid, handle)
    from typing import TypeVar

    _W = TypeVar("_W")

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NEW_FE = re.compile(r"^backend/vtpm/(\d+)/(\d+)$")
_FE_STATE = re.compile(r"^/local/domain/(\d+)/device/vtpm/(\d+)/state$")
TOKEN = "tpmback"    # one token for all our watches: other waiters in this domain
                     # (tpmfront's state waits) must never lose their events to us
POLL = 0.1          # how often a request waiter looks for newly connected interfaces

DISCONNECTED, DISCONNECTING, CONNECTED = 0, 1, 2


def parse_uuid(text: str) -> bytes | None:
    """xenbus_read_uuid: 36 characters 8-4-4-4-12 hex, else None."""
    if not UUID_RE.match(text or ""):
        return None
    return bytes.fromhex(text.replace("-", ""))


def uuid_text(u: bytes) -> str:
    """A uuid's 16 bytes as the 8-4-4-4-12 lower-case form (uuid.UUID's
    str, without importing uuid into every stub domain)."""
    h = bytes(u).hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


@dataclass(slots=True)
class TpmCmd:
    domid: int
    handle: int
    uuid: bytes
    req: bytes
    locality: int
    ring: int = 0           # TpmIf.ring of the ring it was taken from

    @property
    def uuid_str(self) -> str:
        return uuid_text(self.uuid)


class TpmIf:
    def __init__(self, domid: int, handle: int):
        self.domid, self.handle = domid, handle
        self.fe_path = ""
        self.state = xenbus.XenbusStateInitialising
        self.status = DISCONNECTED
        self.uuid = bytes(16)
        self.mapping: Mapping | None = None
        self.page: SharedPage | None = None
        self.port = -1
        self.ready = False          # a request is waiting to be served
        self.closed = False
        self.ring = 0               # bumped for each ring connected
        self.closed_ring = 0        # the last ring its frontend closed (not lost to a restart)
        # (request, locality, answer) of a request whose ring died with the
        # hypervisor before its answer was ready: for the frontend's resend
        self.kept: tuple[bytes, int, bytes] | None = None

    def connected_page(self) -> SharedPage | None:
        """The ring while CONNECTED (connecting maps it, leaving that
        status drops it), else None."""
        return self.page if self.status == CONNECTED else None

    @property
    def be_path(self) -> str:
        return "backend/vtpm/%u/%u" % (self.domid, self.handle)

    @property
    def fe_state_path(self) -> str:
        return self.fe_path + "/state"


class TpmBack:
    def __init__(self, xen: XenInterface, printk: Callable[[str], None],
                 open_callback: OpenClose | None = None, close_callback: OpenClose | None = None):
        self.xen = xen
        self.printk = printk
        self.open_callback = open_callback
        self.close_callback = close_callback
        self.tpms: list[TpmIf] = []
        self.closed = False
        # `with self.mutex` takes the condition's lock itself (a Condition's
        # __enter__/__exit__ are Python calls, several on every request)
        self.mutex = threading.RLock()
        self.cond = threading.Condition(self.mutex)
        self.xb_lock = threading.RLock()        # one xenbus handler at a time
        # the hypervisor connection our interfaces were set up on; after a
        # restart, events wait for resume() to reset them (a frontend's
        # Connected on the new hypervisor must not meet an interface that
        # still thinks it is on the old one)
        self.generation = xen.generation
        printk("============= Init TPM BACK ================\n")
        self._thread = threading.Thread(target=self._listener, name="tpmback-listener",
                                        daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait(10)

    # -- logging -----------------------------------------------------------
    def log(self, msg: str) -> None:
        self.printk("Tpmback:Info " + msg)

    def err(self, msg: str) -> None:
        self.printk("Tpmback:Error " + msg)

    # -- the interface list ------------------------------------------------
    def get(self, domid: int, handle: int) -> TpmIf | None:
        with self.mutex:
            return self._find(domid, handle)

    def _find(self, domid: int, handle: int) -> TpmIf | None:
        """get(), called with cond held."""
        for t in self.tpms:
            if t.domid == domid and t.handle == handle:
                return t
        return None

    def num_frontends(self) -> int:
        with self.mutex:
            return len(self.tpms)

    def get_uuid(self, domid: int, handle: int) -> bytes | None:
        t = self.get(domid, handle)
        return None if t is None else t.uuid

    def _change_state(self, t: TpmIf, state: int) -> None:
        if t.state == state:
            return
        try:
            raw = self.xen.read_str(t.be_path + "/state")
            t.state = int(raw)
        except (OSError, ValueError, TypeError):
            self.err("Unable to read backend state %s/state\n" % t.be_path)
            return
        if t.state == state:
            return
        try:
            self.xen.write(t.be_path + "/state", "%u" % state)
            t.state = state
        except OSError as e:
            self.err("Error writing to xenstore %s, error was %s new state=%d\n"
                     % (t.be_path, e.strerror, state))

    def _new_tpmif(self, domid: int, handle: int) -> None:
        if self.get(domid, handle) is not None:
            return
        t = TpmIf(domid, handle)
        raw = self.xen.read_str(t.be_path + "/uuid", default="")
        u = parse_uuid(raw)
        if u is None:
            self.err("Error reading %s/uuid\n" % t.be_path)
            self.err("Failed to create new tpm instance %u/%u\n" % (domid, handle))
            return
        t.uuid = u
        self._change_state(t, xenbus.XenbusStateInitWait)
        try:
            t.fe_path = self.xen.read_str(t.be_path + "/frontend")
        except OSError as e:
            self.err("Error creating new tpm instance xenbus_read(%s/frontend), Error = %s"
                     % (t.be_path, e.strerror))
            self.err("Failed to create new tpm instance %u/%u\n" % (domid, handle))
            return
        with self.mutex:
            self.tpms.append(t)
            self.tpms.sort(key=lambda x: (x.domid, x.handle))
        try:
            self.xen.write(t.be_path + "/feature-protocol-v2", "1")
            self.xen.watch(t.fe_state_path, TOKEN)
        except OSError as e:
            self.err("Unable to write feature-protocol-v2 node: %s\n" % e.strerror)
            with self.mutex:
                self.tpms.remove(t)
            return
        if self.open_callback:
            self.open_callback(domid, handle)
        with self.mutex:
            self.cond.notify_all()
        self._frontend_changed(t)     # the watch fires at once too; harmless twice

    def _connect_fe(self, t: TpmIf) -> bool:
        if t.status == CONNECTED:
            return True
        xen = self.xen
        vals = {}
        for key in ("ring-ref", "event-channel"):
            path = "%s/%s" % (t.fe_path, key)
            try:
                raw = xen.read_str(path)
            except OSError as e:
                self.err("Error creating new tpm instance xenbus_read(%s) Error = %s"
                         % (path, e.strerror))
                return False
            try:
                vals[key] = int(raw)
            except ValueError:
                self.err("Non integer value (%s) in %s ??\n" % (raw, path))
                return False
        path = t.fe_path + "/feature-protocol-v2"
        try:
            v2 = xen.read_str(path)
        except OSError as e:
            self.err("Unable to read %s during tpmback initialization! error = %s\n"
                     % (path, e.strerror))
            return False
        if v2 != "1":
            self.err("%s has an invalid value (%s)\n" % (path, v2))
            return False
        try:
            mapping = xen.map_grant(t.domid, vals["ring-ref"])
        except OSError:
            self.err("Failed to map grant reference %u/%u\n" % (t.domid, t.handle))
            return False
        try:
            port = xen.evtchn_bind_interdomain(t.domid, vals["event-channel"])
        except OSError:
            self.err("%u/%u Unable to bind to interdomain event channel!\n" % (t.domid, t.handle))
            xen.unmap_grant(mapping)
            return False
        try:
            xen.write(t.be_path + "/ready", "1")
        except OSError:
            self.err("%u/%u Unable to write ready flag on connect_fe()\n" % (t.domid, t.handle))
            xen.evtchn_close(port)
            xen.unmap_grant(mapping)
            return False
        with self.mutex:
            t.mapping, t.page, t.port = mapping, SharedPage(mapping.buf), port
            t.ring += 1
            t.status = CONNECTED
            t.ready = False
            self.cond.notify_all()
        self._change_state(t, xenbus.XenbusStateConnected)
        self.log("Frontend %u/%u connected\n" % (t.domid, t.handle))
        return True

    def _left(self, t: TpmIf) -> None:
        """Its frontend closed (or went): nothing will be sent again."""
        with self.mutex:
            t.closed_ring, t.kept = t.ring, None

    def _unmap(self, t: TpmIf) -> None:
        self._left(t)
        with self.mutex:
            if t.status != CONNECTED:
                t.status = DISCONNECTED
                return
            t.status = DISCONNECTING
            mapping, port = t.mapping, t.port
            t.page, t.mapping, t.port, t.ready = None, None, -1, False
        assert mapping is not None            # CONNECTED: connect_fe mapped the ring
        try:
            self.xen.unmap_grant(mapping)
        except OSError:
            self.err("%u/%u Error occured while trying to unmap shared page\n" % (t.domid, t.handle))
        try:
            self.xen.evtchn_close(port)
        except OSError:
            pass
        t.status = DISCONNECTED

    def _disconnect_fe(self, t: TpmIf) -> None:
        self._unmap(t)
        self._change_state(t, xenbus.XenbusStateInitWait)
        self.log("Frontend %u/%u disconnected\n" % (t.domid, t.handle))

    def _free_tpmif(self, t: TpmIf) -> None:
        if t.closed:
            return
        t.closed = True
        self._change_state(t, xenbus.XenbusStateClosing)
        self._unmap(t)
        self._change_state(t, xenbus.XenbusStateClosed)
        if self.close_callback:
            self.close_callback(t.domid, t.handle)
        with self.mutex:
            if t in self.tpms:
                self.tpms.remove(t)
            self.cond.notify_all()
        try:
            self.xen.unwatch(t.fe_state_path, TOKEN)
        except OSError:
            pass
        try:
            self.xen.rm(t.be_path)
        except OSError as e:
            self.err("Error cleaning up xenbus entries path=%s error=%s\n" % (t.be_path, e.strerror))
        self.log("Frontend %u/%u disconnected\n" % (t.domid, t.handle))

    def _frontend_changed(self, t: TpmIf) -> None:
        state = xenbus.read_state(self.xen, t.fe_path)
        if state in (xenbus.XenbusStateInitialised, xenbus.XenbusStateConnected):
            if not self._connect_fe(t):
                self.err("Failed to connect to front end %u/%u\n" % (t.domid, t.handle))
                self._change_state(t, xenbus.XenbusStateClosed)
        elif state == xenbus.XenbusStateClosing:
            self._change_state(t, xenbus.XenbusStateClosing)
        elif state == xenbus.XenbusStateClosed:
            if t.status == CONNECTED:
                self._disconnect_fe(t)
            else:
                self._left(t)
                self._change_state(t, xenbus.XenbusStateInitWait)
        elif state == xenbus.XenbusStateUnknown:
            self._free_tpmif(t)

    def resume(self) -> None:
        """The hypervisor came back (the daemon was restarted): the old
        mappings and event channels died with it and the toolstack wrote
        every device's directories afresh (state Initialising).  Keep each
        interface -- its uuid, and a vTPM's serving loop waiting on it --
        but take it back to InitWait and reconnect when its frontend
        publishes a new ring, as for a frontend that re-opened."""
        with self.xb_lock:
            with self.mutex:
                tpms = list(self.tpms)
                for t in tpms:
                    mapping = t.mapping
                    t.page, t.mapping, t.port, t.ready = None, None, -1, False
                    t.status, t.state = DISCONNECTED, xenbus.XenbusStateUnknown
                    if mapping is not None:
                        mapping.close()          # our view only: the old grant is gone
                self.generation = self.xen.generation
                self.cond.notify_all()
            for t in tpms:
                if t.closed:
                    continue
                if not self.xen.exists(t.be_path):
                    self._free_tpmif(t)          # detached while the daemon was away
                    continue
                self._change_state(t, xenbus.XenbusStateInitWait)
                self.xen.write(t.be_path + "/feature-protocol-v2", "1")
                self.log("Frontend %u/%u resumed\n" % (t.domid, t.handle))
                self._frontend_changed(t)
            self._scan()

    def handle_event(self, path: str) -> None:
        with self.xb_lock:
            self._handle_event(path)

    def _handle_event(self, path: str) -> None:
        if self.generation != self.xen.generation:
            return               # resume() has not run yet; it rescans everything
        home = self.xen.home + "/"
        rel = path[len(home):] if path.startswith(home) else path
        m = _NEW_FE.match(rel)
        if m:
            if self.xen.exists(rel):
                self._new_tpmif(int(m.group(1)), int(m.group(2)))
            return
        m = _FE_STATE.match(path)
        if m:
            t = self.get(int(m.group(1)), int(m.group(2)))
            if t is not None and not t.closed:
                self._frontend_changed(t)

    def _scan(self) -> None:
        try:
            fes = self.xen.directory("backend/vtpm")
        except OSError:
            return
        for fe in fes:
            try:
                handles = self.xen.directory("backend/vtpm/%s" % fe)
            except OSError:
                continue
            for h in handles:
                self.handle_event("backend/vtpm/%s/%s" % (fe, h))

    def _listener(self) -> None:
        # what this thread does with xenstore goes with the hypervisor it
        # was read from (rings, channels): on a break its calls fail at once
        # rather than carry on in the next one, and resume() redoes it all
        self.xen.no_wait(True)
        while True:
            try:
                self.xen.watch("backend/vtpm", TOKEN)
                break
            except OSError as e:
                if self.xen.closed and not self.xen.detached:
                    time.sleep(0.05)             # the daemon is away: until the domain resumes
                    continue
                self.err("xenbus_watch_path_token(backend/vtpm) failed with error %s!\n"
                         % e.strerror)
                self._started.set()
                return
        self._started.set()
        self._scan()
        while not self.closed:
            ev = self.xen.read_watch(0.5, token=TOKEN)
            if ev is None or self.closed:
                if self.xen.closed:
                    time.sleep(0.05)             # until the domain resumes (see resume())
                continue
            path = ev[0]
            try:
                if not path.startswith("/"):
                    m = re.match(r"^(?:%s/)?backend/vtpm/(\d+)/(\d+)(/.*)?$"
                                 % re.escape(self.xen.home), path)
                    if m:
                        self.handle_event("backend/vtpm/%s/%s" % (m.group(1), m.group(2)))
                        if m.group(3) is None and not self.xen.exists(
                                "backend/vtpm/%s/%s" % (m.group(1), m.group(2))):
                            t = self.get(int(m.group(1)), int(m.group(2)))
                            if t is not None:
                                with self.xb_lock:
                                    self._free_tpmif(t)    # the toolstack removed the device
                else:
                    self.handle_event(path)
            except OSError:
                pass                             # a closed connection: resume() redoes it
        with self.mutex:
            self.cond.notify_all()

    # -- requests ----------------------------------------------------------
    def _irq(self, port: int) -> None:
        """tpmback_handler: what the event channel means for its interface
        (called with cond held)."""
        for t in self.tpms:
            page = t.connected_page() if t.port == port else None
            if page is not None:
                st = page.state
                if st == TPMIF_STATE_SUBMIT:
                    t.ready = True
                elif st == TPMIF_STATE_CANCEL and not t.ready:
                    page.idle()
                    try:
                        self.xen.evtchn_notify(port)
                    except OSError:
                        pass
                return

    def _pump(self, want: Callable[[], _W | None], timeout: float | None) -> _W | None:
        """Wait until want() (called with cond held) gives something, and
        give that, servicing event channels; None if shut down or timed
        out.  The event a wait brings is taken in the same hold of cond as
        the want() that follows it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        port = None
        while True:
            with self.mutex:
                if port is not None:
                    self._irq(port)
                got = want()
                if got:
                    return got
                if self.closed:
                    return None
                tpms = self.tpms
                if len(tpms) == 1:
                    # one interface (a vTPM's guest, usually the manager's vTPM):
                    # its port as an int, evtchn_wait's quickest case
                    ports: int | list[int] | None = \
                        tpms[0].port if tpms[0].status == CONNECTED else None
                else:
                    ports = [t.port for t in tpms if t.status == CONNECTED] or None
            port = None
            if deadline is None:
                step = POLL
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                step = min(POLL, left)
            if self.xen.closed:                  # the daemon is away: wait for resume()
                time.sleep(step)
            elif ports is not None:
                port = self.xen.evtchn_wait(ports, timeout=step)
            else:
                with self.mutex:
                    got = want()
                    if got:
                        return got
                    self.cond.wait(step)

    def wait_for_frontend_connect(self, timeout: float | None = None) -> tuple[int, int] | None:
        """Block until at least one interface is known; the first one's
        (domid, handle), or None if shut down / timed out."""
        t = self._pump(lambda: self.tpms[0] if self.tpms else None, timeout)
        return None if t is None else (t.domid, t.handle)

    def _take(self, t: TpmIf) -> TpmCmd | None:
        """The request waiting on `t`, handed to the server (called with
        cond held); None if there is none for it: none waiting, a bad
        length, or a resend answered from `t.kept` (resp())."""
        if not t.ready:
            return None                      # (the usual answer, looked at first)
        page = t.connected_page()
        if page is None:
            return None
        kept, t.kept = t.kept, None          # for the first request taken after it only
        try:
            req, locality = page.request()
        except TpmifError:
            self.err("%u/%u Command size too long for shared page!\n" % (t.domid, t.handle))
            t.ready = False
            return None
        if kept is not None and kept[0] == req and kept[1] == locality:
            page.finish(kept[2])
            t.ready = False
            try:
                self.xen.evtchn_notify(t.port)
            except OSError:
                pass                 # the hypervisor went away again: kept by no one now
            self.log("Frontend %u/%u: answered again, without running it twice\n"
                     % (t.domid, t.handle))
            return None
        cmd = TpmCmd(t.domid, t.handle, t.uuid, req, locality, t.ring)
        if testfault.ARMED and self._fault("serve", cmd):
            # its answer comes after the ring died: wait until resume() ran
            gen = self.generation
            self.cond.wait_for(lambda: self.generation != gen or self.closed, 60)
        return cmd

    def _fault(self, kind: str, cmd: TpmCmd) -> bool:
        """Test-only (pyxl/hypervisor/testfault.py): the daemon SIGKILLed
        here, if the spec armed is <kind>:<frontend domid>:<ordinal>."""
        if testfault.spec() != "%s:%d:%d" % (kind, cmd.domid, int.from_bytes(cmd.req[6:10], "big")):
            return False
        testfault.kill_peer(self.xen.sock)
        return True

    def _take_any(self) -> TpmCmd | None:
        """The request waiting on the first interface that has one, taken
        (called with cond held)."""
        for t in self.tpms:
            if t.ready:
                cmd = self._take(t)
                if cmd is not None:
                    return cmd
        return None

    def req_any(self, timeout: float | None = None) -> TpmCmd | None:
        """The next request from any connected interface (None: shut down or
        timed out)."""
        return self._pump(self._take_any, timeout)

    def req(self, domid: int, handle: int, timeout: float | None = None) -> TpmCmd | None:
        """The next request from one interface; None once it is freed."""
        t = self.get(domid, handle)
        if t is None:
            return None
        got = self._pump(lambda: t.closed or self._take(t), timeout)
        return got if isinstance(got, TpmCmd) else None

    def resp(self, cmd: TpmCmd, response: bytes) -> None:
        """Answer `cmd` on the ring it came from.  If that ring died with
        the hypervisor meanwhile (a daemon restart: resume() dropped it),
        the frontend, once on its new ring, finds no answer on the old one
        and sends the request again: the answer is kept for it, and the
        first request taken from the interface next, if byte-identical
        (locality included), gets it instead of being run again (_take).
        Any other request drops it; so does the frontend closing.  What a
        resend gets is what the first request did.  A byte-identical
        request that is not a resend is served rightly that way too: its
        frontend never saw the first one's answer, so, to it, the first one
        may as well have been lost on the ring before the vTPM ran it, and
        this one run instead -- the same state, the same answer.  Requests
        of one interface are served one at a time (its server answers one
        before it takes the next), so the resend is never taken before the
        answer is kept."""
        with self.mutex:
            t = self._find(cmd.domid, cmd.handle)
            if t is None:
                self.err("Tried to send a reponse to non existant frontend %u/%u\n"
                         % (cmd.domid, cmd.handle))
                return
            page = t.connected_page()
            if (page is None or cmd.ring != t.ring) and cmd.ring > t.closed_ring:
                t.kept = (cmd.req, cmd.locality, response)     # its ring died with the hypervisor
                return
            if not t.ready or page is None or cmd.ring != t.ring:
                self.err("Tried to send response to a frontend that was not waiting for one %u/%u\n"
                         % (cmd.domid, cmd.handle))
                return
            try:
                page.finish(response)
            except TpmifError:
                self.err("%u/%u Command size too long for shared page!\n" % (t.domid, t.handle))
                return
            finally:
                t.ready = False
            if testfault.ARMED:
                self._fault("answered", cmd)
            try:
                self.xen.evtchn_notify(t.port)
            except OSError:
                pass             # the hypervisor went away: the frontend resends or fails

    def shutdown(self) -> None:
        self.log("Shutting down tpm backend\n")
        with self.mutex:
            self.closed = True
            tpms = list(self.tpms)
            self.cond.notify_all()
        for t in tpms:
            self._free_tpmif(t)
        try:
            self.xen.unwatch("backend/vtpm", TOKEN)
        except OSError:
            pass
        self._thread.join(2)
