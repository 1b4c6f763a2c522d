"""The guest kernel's TPM: xen-tpmfront bound to device/vtpm/0, the chip's
/dev/tpm0 and its sysfs files.

The guest runs Debian's kernel, where xen-tpmfront is a module
(CONFIG_TCG_XEN=m): at boot device/vtpm/0 has no driver, and the guide's
`modprobe xen-tpmfront` binds it (`rmmod xen_tpmfront` lets it go).

The guest's xenbus follows device/vtpm as Linux's frontend bus does
(xenbus_probe_frontend.c's watch on "device", xenbus_dev_changed): a
device whose node went (`xl vtpm-detach`) is removed -- its chip
unregistered, /dev/tpm0 gone, nothing written to the node -- and a new
node at Initialising (`xl vtpm-attach`) is a new device, bound at once
while the module is loaded.  A device whose backend closed is
unregistered (tpmfront's backend_changed) and leaves the bus, node or
not.  A daemon restart removes no node: the frontend resumes instead.

The guest is simulated but its userland is the host's real programs, so
/dev/tpm0 must be reachable from a host process: the chip is exposed as a
TCP endpoint speaking raw TPM 1.2 frames -- what tcsd's TCSD_TCP_DEVICE
expects -- on 127.0.0.1:6545 *of the guest's own network namespace*
(netns.py), so only the guest's userland (and root) can reach it; it lives
as long as this guest process.  Every frame goes through
XenTpmFront.transmit, i.e. through the shared ring to the guest's
vtpm-stubdom.
"""

from __future__ import annotations

import errno as _errno
import socket
import struct
import threading

from pyxl.domain.drivers import xenbus
from pyxl.domain.drivers.xen_tpmfront import (TpmDeviceError, XenTpmFront, caps_text,
                                              pcrs_text, pubek_text)
from pyxl.hypervisor import testfault

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable

    from pyxl.domain.linux.netns import GuestNetwork
    from pyxl.domain.linux.tpmrm import TpmrmServer
    from pyxl.domain.process import Domain

NODE = "device/vtpm/0"
DEVICES = "device/vtpm"              # the frontend bus's vtpm devices
BUS_TOKEN = "xenbus-vtpm"
CONNECT_TIMEOUT = 30.0
HEADER = 10
MAX_FRAME = 4096                     # TPM_BUFSIZE in Linux's tpm driver
DEVICE_PORT = 6545                   # TrouSerS' default TCSD_TCP_DEVICE_PORT (src/tddl/tddl.c)

# sysfs names of the chip: the old flat layout under the xenbus device (what
# the guide's era showed) and the class device.  A TPM 1.2 has pcrs, pubek
# and caps; tpm_version_major is there for both versions; a TPM 2.0 has none
# of the 1.2 files (Linux 6.1 drivers/char/tpm/tpm-sysfs.c)
SYSFS_DIRS = ("/sys/devices/vtpm-0", "/sys/class/tpm/tpm0", "/sys/class/misc/tpm0/device")
SYSFS_FILES = {"pcrs": pcrs_text, "pubek": pubek_text, "caps": caps_text}
VERSION_FILE = "tpm_version_major"


class GuestTpm:
    """One guest's TPM chip (xen-tpmfront + /dev/tpm0)."""

    def __init__(self, dom: Domain, klog: Callable[[str], object], net: GuestNetwork):
        self.dom = dom
        self.klog = klog
        self.net = net                   # the guest's network namespace (GuestNetwork)
        self.front: XenTpmFront | None = None
        self.listener: socket.socket | None = None
        self.tpmrm: TpmrmServer | None = None    # /dev/tpmrm0's endpoint (tpmrm.py), TPM 2.0 only
        self._version: tuple[object, int] | None = None    # (front, 1 or 2)
        self.lock = threading.Lock()
        self.loaded = False              # the xen-tpmfront module
        self.bus: set[str] | None = None     # device/vtpm/N on the guest's xenbus
        dom.on_resume(self.resume)

    # -- the frontend bus (drivers/xen/xenbus/xenbus_probe_frontend.c) -------
    def watch_devices(self) -> None:
        """The frontend bus's watch on the guest's device nodes (here
        only device/vtpm): xenbus_dev_changed on every event.  Registered
        again after a daemon restart (the resume), which removes no node."""
        self.dom.xen.watch(DEVICES, BUS_TOKEN)
        for _ in self.dom.watch_events(BUS_TOKEN):
            try:
                self.devices_changed()
            except OSError:
                pass                             # the connection broke: resumed, then again

    def devices_changed(self) -> None:
        """xenbus_dev_changed: a device whose node is gone is removed
        (xenbus_cleanup_devices; XenTpmFront.unplug), a new one probed --
        and bound while the module is loaded."""
        with self.lock:
            gone = self._scan()
            f = self.front
            if f is not None and f.nodename in gone:
                f.unplug()
                self.front = None
            bind = self.loaded and (self.front is None or not self.front.registered)
        if bind:
            self._bind(wait=False)

    def _scan(self) -> set[str]:
        """Bring self.bus up to date with xenstore; the nodes that went.
        A node joins at Initialising only (xenbus_probe_node: "Device is
        not new, so ignore it"), except at the first scan (the boot's
        xenbus_probe_devices); a device whose backend closed has been
        unregistered (tpmfront's backend_changed) and left it.  Called
        with self.lock held."""
        xen = self.dom.xen
        try:
            ids = xen.directory(DEVICES)
        except OSError as e:
            if getattr(e, "errno", None) != _errno.ENOENT:
                raise
            ids = []
        now = {DEVICES + "/" + i for i in ids if i.isdigit()}
        first, bus = self.bus is None, self.bus or set()
        f = self.front
        if f is not None and not f.registered and not f.unplugged:
            bus.discard(f.nodename)              # device_unregister'ed by backend_changed
        gone = bus - now
        for node in sorted(now - bus):
            if first or xenbus.read_state(xen, node) == xenbus.XenbusStateInitialising:
                bus.add(node)
        self.bus = bus & now
        return gone

    # -- the driver --------------------------------------------------------
    def probe(self, wait: bool = False) -> bool:
        """modprobe: the module loaded, bound to the first vtpm device on
        the bus (tpmfront_probe: ring, event channel, Initialised); the
        chip is usable once the backend connects (waited for in the
        background unless `wait`)."""
        self.loaded = True
        return self._bind(wait)

    def _bind(self, wait: bool) -> bool:
        with self.lock:
            if self.front is not None and self.front.registered:
                return True
            try:
                self._scan()
            except OSError:
                return False
            node = min(self.bus or (), key=lambda n: int(n.rsplit("/", 1)[1]), default=None)
            if node is None:
                return False
            try:
                self.front = XenTpmFront(self.dom.xen, node, klog=self.klog)
            except OSError as e:
                self.klog("vtpm vtpm-%s: probe failed: %s" % (node.rsplit("/", 1)[1], e))
                return False
        if wait:
            return self.front.wait_connected(CONNECT_TIMEOUT)
        threading.Thread(target=self.front.wait_connected, args=(CONNECT_TIMEOUT,),
                         daemon=True).start()
        return True

    def resume(self) -> None:
        """The domain's hypervisor connection came back: the bound
        frontend sets its ring up again (xenbus_dev_resume)."""
        f = self.front
        if f is not None and f.registered:
            f.resume()

    def transmit(self, request: bytes) -> bytes:
        """A write()+read() of /dev/tpm0: ENODEV without a chip, or when
        its backend does not connect.  While the daemon is away (killed,
        not yet restarted) the command waits for it as one in flight does
        (XenTpmFront.transmit): on Xen a toolstack restart leaves the ring
        alone, and the guest sees nothing of it."""
        if testfault.ARMED:
            testfault.away(self.dom.xen, request)
        try:
            f = self.front
            if f is None or not f.registered or not (f.wait_connected(CONNECT_TIMEOUT) or f.away()):
                raise TpmDeviceError(19, "No such device")       # ENODEV
            return f.transmit(request)
        except TpmDeviceError:
            raise
        except OSError:                  # the hypervisor connection broke meanwhile
            raise TpmDeviceError(5, "Input/output error") from None

    def close(self) -> None:
        """rmmod, or guest shutdown: the frontend closes so the backend sees
        it leave.  The /dev/tpm0 endpoint stays open as long as this guest
        process, failing every command while there is no chip: tcsd -e
        opens the device anew for every command, and when its TCP device
        cannot be reached it falls back to the host's own /dev/tpm0,
        /udev/tpm0 or /dev/tpm (open_device in TrouSerS' src/tddl/tddl.c)
        -- a guest must never reach the host's TPM."""
        self.loaded = False
        with self.lock:
            f, self.front = self.front, None
        if f is not None and f.registered:
            f.close()

    # -- what the guest's shell sees -----------------------------------------
    def has_chip(self) -> bool:
        return self.front is not None and self.front.registered

    def version(self) -> int:
        """1 or 2: Linux's tpm2_probe when the chip registers (a TPM 2.0
        answers TPM2_GetCapability with TPM_ST_NO_SESSIONS); 0 without a
        chip."""
        from pyxl.domain.tpm2_frames import is_tpm2_response, probe_request

        front = self.front
        if not self.has_chip():
            return 0
        known = self._version
        if known is not None and known[0] is front:
            return known[1]
        try:
            v = 2 if is_tpm2_response(self.transmit(probe_request())) else 1
        except TpmDeviceError:
            return 1                     # not connected (yet): the 1.2 files fail as before
        self._version = (front, v)
        return v

    def read_sysfs(self, path: str) -> str | None:
        """Text of a chip attribute, or None when there is no such file."""
        if not self.has_chip():
            return None
        d, _, name = path.rstrip("/").rpartition("/")
        if d not in SYSFS_DIRS or name not in self._sysfs_names():
            return None
        if name == VERSION_FILE:
            return "%d\n" % self.version()
        try:
            return SYSFS_FILES[name](self.transmit)
        except (TpmDeviceError, struct.error):
            return ""

    def _sysfs_names(self) -> list[str]:
        return sorted([VERSION_FILE] + ([] if self.version() == 2 else list(SYSFS_FILES)))

    def list_sysfs(self, path: str) -> list[str] | None:
        if self.has_chip() and path.rstrip("/") in SYSFS_DIRS:
            return self._sysfs_names()
        return None

    def devices(self) -> list[str]:
        """The chip's nodes in /dev: tpm0, and tpmrm0 for a TPM 2.0."""
        if not self.has_chip():
            return []
        return ["tpm0", "tpmrm0"] if self.version() == 2 else ["tpm0"]

    def tpmrm_address(self) -> tuple[str, int] | None:
        """(host, port) of /dev/tpmrm0 (tpmrm.py), inside the guest's
        network namespace; None when the chip is not a TPM 2.0.  Raises
        netns.NoNetwork when the guest has none."""
        from pyxl.domain.linux.tpmrm import TpmrmServer

        if self.version() != 2:
            return None
        with self.lock:
            if self.tpmrm is None:
                server = TpmrmServer(self.transmit)
                self.net.call(server.start)
                self.tpmrm = server
            return self.tpmrm.listeners[0].getsockname()[:2]

    # -- /dev/tpm0 for host programs ------------------------------------------
    def device_address(self) -> tuple[str, int] | None:
        """(host, port) where raw TPM frames reach this guest's /dev/tpm0,
        inside the guest's network namespace.  Raises netns.NoNetwork when
        the guest has none."""
        if not self.has_chip():
            return None
        with self.lock:
            if self.listener is None:
                self.listener = self.net.call(_listen, ("127.0.0.1", DEVICE_PORT))
                threading.Thread(target=self._accept, args=(self.listener,), name="tpm0",
                                 daemon=True).start()
            return self.listener.getsockname()[:2]

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        """One open() of /dev/tpm0: write a command, read its response, repeat."""
        with conn:
            while True:
                head = _recv_exact(conn, HEADER)
                if head is None:
                    return
                size = struct.unpack_from(">I", head, 2)[0]
                if not HEADER <= size <= MAX_FRAME:
                    return                       # write() fails with EINVAL; drop the client
                body = _recv_exact(conn, size - HEADER)
                if body is None:
                    return
                try:
                    rsp = self.transmit(head + body)
                except TpmDeviceError:
                    return
                try:
                    conn.sendall(rsp)
                except OSError:
                    return


def _listen(addr: tuple[str, int]) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(8)
    return s


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = conn.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)
