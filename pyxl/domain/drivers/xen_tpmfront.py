"""Linux's xen-tpmfront (drivers/char/tpm/xen-tpmfront.c) on a
XenInterface, for the simulated Linux guest's /dev/tpm0, plus the TPM 1.2
sysfs files (drivers/char/tpm/tpm-sysfs.c, Linux 6.1) rendered from real
commands.

    front = XenTpmFront(xen)       # probe: ring page, event channel, v2 flag,
                                   # Initialised; a watch thread follows the backend
    front.wait_connected(10)
    rsp = front.transmit(request)  # what a write()+read() on /dev/tpm0 does
    pcrs_text(front.transmit)      # /sys/class/tpm/tpm0/pcrs (and caps_text, pubek_text)

Unlike mini-os, Linux publishes ring-ref, event-channel and
feature-protocol-v2 in one transaction and goes to Initialised; only when
the backend reports Connected *and* feature-protocol-v2 does it go to
Connected -- without the flag it fails with "vTPM protocol 2 required"
(xenbus_dev_fatal: error node, state Closing).  A backend that closes
unregisters the chip.  Sends wait for the shared page to be idle (timeout
C), then for the result up to the ordinal's duration, and cancel on expiry
(-ETIME).  The locality byte is never written: always 0.

A daemon restart does not fail a command in flight, nor one sent while
the daemon is away (pyxl's own: its restart kills the ring, where Xen's
toolstack restart leaves it alone, and Linux's tpmfront_resume -- "a
suspend/resume/migrate will interrupt a vTPM anyway" -- would fail it):
see transmit().
"""

from __future__ import annotations

import errno as _errno
import itertools
import struct
import threading
import time

from . import xenbus
from .tpmif import TPMIF_STATE_FINISH, TPMIF_STATE_IDLE, SharedPage

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable

    from pyxl.domain.xen import Page, XenInterface

    Transmit = Callable[[bytes], bytes]          # one TPM command -> its response

TOKEN = "xen-tpmfront"
TIMEOUT_C = 0.750                      # TIS default until the TPM says otherwise
DURATION = 120.0                       # the longest TPM 1.2 duration class
STEP = 0.5                             # the longest wait before registered and the ring are looked at
_IDLE = (TPMIF_STATE_IDLE, TPMIF_STATE_FINISH)   # the page is the frontend's
_devices = itertools.count()


class TpmDeviceError(OSError):
    pass


class XenTpmFront:
    def __init__(self, xen: XenInterface, nodename: str = "device/vtpm/0",
                 klog: Callable[[str], object] | None = None):
        self.xen, self.nodename = xen, nodename
        self.klog = klog or (lambda msg: None)
        # each device its own watch token: a removed device's thread, still
        # reading, must not take the events of the device that replaced it
        self.token = "%s-%d" % (TOKEN, next(_devices))
        self.registered = False
        self.unplugged = False                  # its node is gone: it writes nothing more
        self.error: str | None = None
        self.cond = threading.Condition()
        self.lock = threading.Lock()            # one command at a time, like tpm_mutex
        self.ring_lock = threading.Lock()       # the ring, while resume() replaces it
        self.inflight: Page | None = None      # the ring page a command went out on
        self.timeout_c, self.duration = TIMEOUT_C, DURATION
        self.page: Page | None = None          # the ring, once set up
        with self.ring_lock:                     # resume() waits for it
            self._setup_ring()
            while self._gone():                  # the daemon went away meanwhile: again
                self._setup_ring()
            self.registered = True               # tpm_chip_register: /dev/tpm0 appears
        xen.watch(self.bepath + "/state", self.token)
        self._thread = threading.Thread(target=self._watch, name="xen-tpmfront", daemon=True)
        self._thread.start()

    def _setup_ring(self) -> None:
        """setup_ring: a zeroed page granted to the backend, an unbound
        event channel, both published with the v2 flag; Initialised."""
        xen, nodename = self.xen, self.nodename
        self.bepath = xen.read_str(nodename + "/backend")
        self.bedomid = int(xen.read_str(nodename + "/backend-id"))
        self.generation = xen.generation         # the hypervisor this ring lives in
        page = xen.alloc_page()
        shared = SharedPage(page.buf)
        shared.init()
        self.ref = xen.grant_access(page, self.bedomid)
        self.port = xen.evtchn_alloc_unbound(self.bedomid)
        old, self.page, self.shared = self.page, page, shared
        if old is not None and old is not self.inflight:
            old.close()                          # (transmit() closes the one it waits on)

        def publish(tx: int) -> None:
            xen.write(nodename + "/ring-ref", "%u" % self.ref, tx)
            xen.write(nodename + "/event-channel", "%u" % self.port, tx)
            xen.write(nodename + "/feature-protocol-v2", "1", tx)
        xen.transaction(publish)
        xenbus.switch_state(xen, nodename, xenbus.XenbusStateInitialised)

    def resume(self) -> None:
        """tpmfront_resume after the hypervisor came back (the daemon was
        restarted): the old grant and event channel died with the old
        hypervisor; set the ring up afresh and walk the xenbus handshake
        again.  The chip stays registered meanwhile, and a command in
        flight carries on (transmit())."""
        if not self.registered:
            return
        with self.ring_lock:
            self.error = None
            self._setup_ring()                   # (Linux logs nothing here either)
        # the backend may have connected before our watch was back
        self._backend_changed(xenbus.read_state(self.xen, self.bepath))

    def _gone(self) -> bool:
        """The hypervisor this ring lives in is gone (or was replaced)."""
        return self.xen.closed or self.xen.generation != self.generation

    def away(self) -> bool:
        """The daemon is away (killed: not yet back, or this ring not yet
        set up on the next one): transmit() waits for it."""
        return self._gone()

    # -- xenbus: backend_changed -------------------------------------------------
    def _watch(self) -> None:
        while self.registered:
            if self.xen.read_watch(0.5, token=self.token) is None:
                if self.xen.closed:
                    time.sleep(0.05)             # until the domain resumes
                continue
            try:
                if not self._gone():
                    self._backend_changed(xenbus.read_state(self.xen, self.bepath))
            except OSError:
                pass

    def _backend_changed(self, state: int) -> None:
        own = xenbus.read_state(self.xen, self.nodename)
        if state == xenbus.XenbusStateConnected:
            if own == xenbus.XenbusStateConnected:
                return
            if self.xen.read_str(self.bepath + "/feature-protocol-v2", default="0") != "1":
                self._fatal(_errno.EINVAL, "vTPM protocol 2 required")
                return
            self._switch(xenbus.XenbusStateConnected)
        elif state in (xenbus.XenbusStateClosing, xenbus.XenbusStateClosed):
            self.remove()
        with self.cond:
            self.cond.notify_all()

    def _fatal(self, err: int, msg: str) -> None:
        """xenbus_dev_fatal: log, error node, Closing."""
        self.error = msg
        self.klog("vtpm vtpm-%s: %d %s" % (self.nodename.rsplit("/", 1)[-1], err, msg))
        try:
            self.xen.write("error/%s/error" % self.nodename, "%d %s" % (err, msg))
        except OSError:
            pass
        self._switch(xenbus.XenbusStateClosing)
        with self.cond:
            self.cond.notify_all()

    def wait_connected(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.xen.closed:
                return False                     # no hypervisor: no TPM until resumed
            if xenbus.read_state(self.xen, self.nodename) == xenbus.XenbusStateConnected:
                return True
            if self.error or not self.registered:
                return False
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            with self.cond:
                self.cond.wait(0.05 if left is None else min(0.05, left))

    # -- the TPM chip ------------------------------------------------------------------
    def _wait_idle(self, shared: SharedPage, port: int, gen: int, timeout: float) -> bool:
        """Wait for the page to be idle (IDLE or FINISH); False on expiry,
        or once the ring of hypervisor `gen` died while it waited (see
        _lost()).  An idle page is looked at once: no clock read."""
        if shared.state in _IDLE:
            return True
        deadline = time.monotonic() + timeout
        left = timeout
        while True:
            if not self.registered or self._lost(gen):
                return False
            self.xen.evtchn_wait(port, timeout=min(left, STEP))
            if shared.state in _IDLE:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False

    def _lost(self, gen: int) -> bool:
        return self.xen.closed or self.xen.generation != gen

    def transmit(self, request: bytes) -> bytes:
        """vtpm_send + vtpm_recv: TpmDeviceError(ETIME) after a cancel,
        (ENODEV) once the chip is gone.  A daemon restart under the command
        does not fail it: it is answered once, run once.  Once the backend
        is connected to the new ring, the answer is taken from the old
        ring's page if the backend wrote it there, else the request is sent
        again on the new ring, where tpmback answers it from what it kept
        if it had run it (TpmBack.resp).  A command sent while the daemon
        is away waits for the new ring the same way, then goes out once.
        The wait is bounded by the command's duration, as Linux's vtpm_send
        bounds its wait for the page, and fails the same: ETIME."""
        lock = self.lock                 # (acquire/release, not `with`: see _send)
        lock.acquire()
        try:
            if not self.registered:
                raise TpmDeviceError(_errno.ENODEV, "no TPM")
            deadline = time.monotonic() + self.duration
            try:
                rsp, gen = self._send(request)
                while rsp is None:                     # the ring of hypervisor `gen` died under it
                    rsp, gen = self._resend(request, gen, deadline)
            finally:
                self._release_inflight()
        finally:
            lock.release()
        if len(rsp) < 10:
            raise TpmDeviceError(_errno.EIO, "short response")
        return rsp

    def _send(self, request: bytes) -> tuple[bytes | None, int]:
        """One round trip on the current ring: the answer (None if the ring
        died under it), the ring's hypervisor generation."""
        # (the lock's own acquire and release, not `with`: no __enter__ and
        # __exit__ looked up and bound per command; nothing between them raises)
        ring_lock = self.ring_lock
        ring_lock.acquire()
        page, shared, port, gen = self.page, self.shared, self.port, self.generation
        self.inflight = page                     # open until we are done, even if replaced
        ring_lock.release()
        xen = self.xen
        submitted = False
        try:
            # (an idle page, the usual one, looked at here: no call)
            if shared.state not in _IDLE and not self._wait_idle(shared, port, gen, self.timeout_c) \
                    or self._lost(gen):
                self._give_up(shared, port, gen, "vTPM busy")      # unless the ring died
                self._release_inflight()                           # nothing went out on it
                return None, gen
            # no stale notification cleared first, as vtpm_send does not:
            # the waits are for the page's state, not for one notification
            shared.submit(request, 0)                       # Linux leaves locality 0
            submitted = True
            xen.evtchn_notify(port)
            # the first wait goes straight to the port, with no clock read
            # (what wakes it is usually the answer); _wait_idle waits the
            # rest of the duration, if the page is not idle after it
            duration = self.duration
            step = min(duration, STEP)
            if xen.evtchn_wait(port, step) is None:        # it ran out (or the connection closed)
                duration -= step
            state = shared.state
            if state not in _IDLE and duration > 0:
                self._wait_idle(shared, port, gen, duration)
                state = shared.state
            if state != TPMIF_STATE_FINISH:
                self._give_up(shared, port, gen, "vTPM timed out")
                return None, gen
        except TpmDeviceError:
            raise
        except OSError:
            if not self._lost(gen):
                raise TpmDeviceError(_errno.EIO, "vTPM went away") from None
            if not submitted:
                self._release_inflight()                 # nothing went out on it
            return None, gen
        return shared.response(), gen     # also from a ring that died: answered before

    def _release_inflight(self) -> None:
        """Done with the page the command went out on: closed if it is a
        ring that died (resume() left it open)."""
        ring_lock = self.ring_lock       # (acquire/release, not `with`: see _send)
        ring_lock.acquire()
        try:
            sent, self.inflight = self.inflight, None
            if sent is not None and sent is not self.page:
                sent.close()
        finally:
            ring_lock.release()

    def _give_up(self, shared: SharedPage, port: int, gen: int, why: str) -> None:
        """Cancel and fail the command, unless its ring died (then it is
        not given up: see _resend)."""
        if self._lost(gen):
            return
        shared.cancel()
        self.xen.evtchn_notify(port)
        raise TpmDeviceError(_errno.ETIME, why)

    def _resend(self, request: bytes, dead: int, deadline: float) -> tuple[bytes | None, int]:
        """The request's ring died with hypervisor `dead`: wait until the
        backend is connected to a new ring (it has then resumed, and writes
        nothing more on the old one); the answer it wrote on the old ring
        before, if any, else the request sent on the new one."""
        while True:
            left = deadline - time.monotonic()
            if not self.registered:
                raise TpmDeviceError(_errno.ENODEV, "no TPM")
            if left <= 0:          # vtpm_send's wait for the page, run out: -ETIME
                raise TpmDeviceError(_errno.ETIME, "vTPM timed out")
            try:
                if self.generation != dead and not self._gone() and \
                        self.wait_connected(min(left, 0.5)):
                    break
            except OSError:
                pass                                     # gone again meanwhile
            with self.cond:
                self.cond.wait(min(left, 0.05))
        sent = self.inflight                 # (only this thread sets it)
        if sent is not None:                 # the request went out on it
            shared = SharedPage(sent.buf)
            rsp = shared.response() if shared.state == TPMIF_STATE_FINISH else None
            self._release_inflight()
            if rsp is not None:
                return rsp, self.generation
        return self._send(request)

    def _switch(self, state: int) -> None:
        """xenbus_switch_state on our node, as __xenbus_switch_state does
        it: in a transaction, and not at all once the node is gone (its
        state unreadable) -- a removed device must not create its
        directory again.  Nor into a node at Initialising: that is a new
        device's, made by the toolstack after ours was removed (ours left
        Initialising at probe, and nothing sets it back)."""
        if self.unplugged:
            return
        nodename = self.nodename

        def body(tx: int) -> None:
            try:
                raw = self.xen.read(nodename + "/state", tx)
            except OSError:
                return                                     # gone: abort, as Linux does
            if raw.strip() in (b"%d" % state, b"%d" % xenbus.XenbusStateInitialising):
                return
            self.xen.write(nodename + "/state", "%d" % state, tx)
        self.xen.transaction(body)

    def remove(self) -> None:
        """backend_changed, backend Closing/Closed: device_unregister
        (tpmfront_remove: the chip unregistered) and xenbus_frontend_closed."""
        if not self.registered:
            return
        self.registered = False
        self._switch(xenbus.XenbusStateClosed)
        with self.cond:
            self.cond.notify_all()

    def unplug(self) -> None:
        """xenbus_cleanup_devices: our node is gone (`xl vtpm-detach`
        removed it).  tpmfront_remove: the chip unregistered, the ring
        freed; xenbus_dev_remove's switch to Closed finds no node and
        writes nothing (nor does anything later: the toolstack may make
        a new device at the same path)."""
        self.unplugged = True
        self.registered = False
        with self.cond:
            self.cond.notify_all()
        xen = self.xen
        try:
            xen.unwatch(self.bepath + "/state", self.token)
        except OSError:
            pass
        self._release_channel()
        with self.ring_lock:
            page, self.page = self.page, None
            if page is not None and page is not self.inflight:
                page.close()                     # (else transmit() closes it when done)

    def _release_channel(self) -> None:
        """The ring's event channel closed and its grant ended (either may
        already be gone with its hypervisor)."""
        for fn, arg in ((self.xen.evtchn_close, self.port), (self.xen.end_access, self.ref)):
            try:
                fn(arg)
            except OSError:
                pass

    def close(self) -> None:
        """Module unload / guest shutdown: Closing, wait for the backend, free."""
        xen = self.xen
        self.registered = False
        if self.unplugged:
            return                               # freed when its node went
        try:
            self._switch(xenbus.XenbusStateClosing)
            xenbus.wait_for_state(xen, self.bepath, {
                xenbus.XenbusStateClosing, xenbus.XenbusStateClosed,
                xenbus.XenbusStateInitWait, xenbus.XenbusStateUnknown}, 5)
            self._switch(xenbus.XenbusStateClosed)
            xen.unwatch(self.bepath + "/state", self.token)
            xenbus.wait_for_state(xen, self.bepath, {
                xenbus.XenbusStateClosed, xenbus.XenbusStateInitWait,
                xenbus.XenbusStateUnknown}, 5)
        except OSError:
            pass
        self._release_channel()
        if self.page is not None:
            self.page.close()


# -- sysfs (Linux 6.1 tpm-sysfs.c for TPM 1.2 chips) ----------------------------------

def _getcap_prop(transmit: Transmit, prop: int) -> bytes:
    rsp = transmit(struct.pack(">HIIIII", 0xC1, 22, 0x65, 5, 4, prop))
    if struct.unpack_from(">I", rsp, 6)[0]:
        raise TpmDeviceError(_errno.EIO, "GetCapability failed")
    return rsp[14:14 + struct.unpack_from(">I", rsp, 10)[0]]


def pcrs_text(transmit: Transmit) -> str:
    n = struct.unpack(">I", _getcap_prop(transmit, 0x101))[0]      # TPM_CAP_PROP_PCR
    out = []
    for i in range(n):
        rsp = transmit(struct.pack(">HIII", 0xC1, 14, 0x15, i))
        if struct.unpack_from(">I", rsp, 6)[0]:
            break
        out.append("PCR-%02d: " % i + "".join("%02X " % b for b in rsp[10:30]) + "\n")
    return "".join(out)


def caps_text(transmit: Transmit) -> str:
    try:
        manuf = struct.unpack(">I", _getcap_prop(transmit, 0x103))[0]  # PROP_MANUFACTURER
    except TpmDeviceError:
        return ""
    out = "Manufacturer: 0x%x\n" % manuf
    rsp = transmit(struct.pack(">HIIII", 0xC1, 18, 0x65, 0x1A, 0))   # CAP_VERSION_VAL (1.2)
    if struct.unpack_from(">I", rsp, 6)[0] == 0:
        major, minor, rmaj, rmin = rsp[16:20]
        return out + "TCG version: %d.%d\nFirmware version: %d.%d\n" % (major, minor, rmaj, rmin)
    rsp = transmit(struct.pack(">HIIII", 0xC1, 18, 0x65, 0x06, 0))   # CAP_VERSION (1.1)
    if struct.unpack_from(">I", rsp, 6)[0]:
        return ""
    major, minor, rmaj, rmin = rsp[14:18]
    return out + "TCG version: %d.%d\nFirmware version: %d.%d\n" % (major, minor, rmaj, rmin)


def pubek_text(transmit: Transmit) -> str:
    rsp = transmit(struct.pack(">HII", 0xC1, 30, 0x7C) + bytes(20))
    if struct.unpack_from(">I", rsp, 6)[0] or len(rsp) < 10 + 28 + 256:
        return ""
    o = rsp[10:]
    out = ("Algorithm: %02X %02X %02X %02X\nEncscheme: %02X %02X\nSigscheme: %02X %02X\n"
           % tuple(o[0:8]))
    out += "Parameters: " + " ".join("%02X" % b for b in o[12:24]) + "\n"
    out += "Modulus length: %d\nModulus:\n" % struct.unpack_from(">I", o, 24)[0]
    for i in range(256):
        out += "%02X " % o[28 + i]
        if (i + 1) % 16 == 0:
            out += "\n"
    return out
