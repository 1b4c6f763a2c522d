"""tpmback's kept answer (pyxl/domain/drivers/tpmback.py, TpmBack.resp and
_take), in this process on fake rings: a request whose ring died with the
hypervisor (a daemon restart) before it was answered has its answer kept,
one per frontend, for the byte-identical request the frontend sends first
on its new ring (pyxl-vtpm(7), "Exactly once across a daemon restart").

The fake is the hypervisor as tpmback sees it: xenstore as a dict, a grant
as the frontend's page itself (a bytearray both ends write, as the real
shared page), an event channel as a queue of ports.  The test plays the
frontend (tpmif.h's SUBMIT, read at FINISH) and the server (req/resp).
"""

from __future__ import annotations

import queue
import threading

import pytest

from pyxl.domain.drivers import xenbus
from pyxl.domain.drivers.tpmback import TpmBack
from pyxl.domain.drivers.tpmif import PAGE_SIZE, TPMIF_STATE_FINISH, SharedPage

UUID = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
HOME = "/local/domain/1"
# a TPM 1.2 TPM_Extend of PCR 10 and a TPM_PcrRead, as a guest sends them
EXTEND = bytes.fromhex("00c10000002200000014" "0000000a") + bytes(range(20))
PCRREAD = bytes.fromhex("00c10000000e00000015" "0000000a")
ANSWER = bytes.fromhex("00c40000001e00000000") + bytes(range(100, 120))


class FakeXen:
    """What TpmBack calls on its XenInterface, for one backend domain."""

    def __init__(self) -> None:
        self.store: dict[str, str] = {}
        self.pages: dict[tuple[int, int], bytearray] = {}     # (frontend domid, ref) -> page
        self.events: queue.Queue[int] = queue.Queue()
        self.notified: list[int] = []
        self.generation = 0
        self.closed = self.detached = False
        self.home = HOME
        self._next_port = 10

    def _abs(self, path: str) -> str:
        return path if path.startswith("/") else HOME + "/" + path

    # xenstore
    def read(self, path: str) -> str:
        try:
            return self.store[self._abs(path)]
        except KeyError:
            raise FileNotFoundError(2, "ENOENT", path) from None

    def read_str(self, path: str, default: str | None = None) -> str:
        try:
            return self.read(path)
        except FileNotFoundError:
            if default is None:
                raise
            return default

    def write(self, path: str, value: str) -> None:
        self.store[self._abs(path)] = value

    def exists(self, path: str) -> bool:
        p = self._abs(path)
        return any(k == p or k.startswith(p + "/") for k in self.store)

    def directory(self, path: str) -> list[str]:
        p = self._abs(path) + "/"
        return sorted({k[len(p):].split("/")[0] for k in self.store if k.startswith(p)})

    def rm(self, path: str) -> None:
        p = self._abs(path)
        for k in [k for k in self.store if k == p or k.startswith(p + "/")]:
            del self.store[k]

    def no_wait(self, on: bool) -> bool:
        return False

    def watch(self, path: str, token: str) -> None:
        pass

    def unwatch(self, path: str, token: str) -> None:
        pass

    def read_watch(self, timeout: float, token: str) -> None:
        threading.Event().wait(timeout)          # events are handed to tpmback by the test

    # grants and event channels
    def map_grant(self, domid: int, ref: int) -> _Mapping:
        return _Mapping(self.pages[(domid, ref)])

    def unmap_grant(self, mapping: _Mapping) -> None:
        mapping.close()

    def evtchn_bind_interdomain(self, domid: int, port: int) -> int:
        self._next_port += 1
        return self._next_port

    def evtchn_close(self, port: int) -> None:
        pass

    def evtchn_notify(self, port: int) -> None:
        self.notified.append(port)

    def evtchn_wait(self, ports: int | list[int], timeout: float | None = None) -> int | None:
        # as XenInterface.evtchn_wait: one port as an int, or several
        try:
            port = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        return port if port in ([ports] if isinstance(ports, int) else ports) else None


class _Mapping:
    def __init__(self, page: bytearray):
        self.buf = memoryview(page)

    def close(self) -> None:
        self.buf.release()


class Frontend:
    """One frontend domain's vtpm device: its rings, as the test makes them."""

    def __init__(self, xen: FakeXen, back: TpmBack, domid: int):
        self.xen, self.back, self.domid = xen, back, domid
        self.path = "/local/domain/%d/device/vtpm/0" % domid
        self.be = "backend/vtpm/%d/0" % domid
        self.ref = 0
        self.shared: SharedPage | None = None
        xen.write(self.be + "/uuid", UUID)
        xen.write(self.be + "/frontend", self.path)
        xen.write(self.be + "/state", str(xenbus.XenbusStateInitialising))
        xen.write(self.path + "/feature-protocol-v2", "1")
        self.new_ring()
        back.handle_event(self.be)                # the toolstack wrote the device
        assert self.connected()

    def new_ring(self) -> None:
        """A fresh page and event channel, published, Initialised."""
        self.ref += 1
        page = self.xen.pages[(self.domid, self.ref)] = bytearray(PAGE_SIZE)
        self.shared = SharedPage(page)
        self.xen.write(self.path + "/ring-ref", str(self.ref))
        self.xen.write(self.path + "/event-channel", str(self.ref))
        self.xen.write(self.path + "/state", str(xenbus.XenbusStateInitialised))

    def connected(self) -> bool:
        t = self.back.get(self.domid, 0)
        return t is not None and t.connected_page() is not None and \
            t.connected_page().buf.obj is self.xen.pages[(self.domid, self.ref)]

    def submit(self, request: bytes, locality: int = 0) -> None:
        assert self.shared is not None
        self.shared.submit(request, locality)
        t = self.back.get(self.domid, 0)
        assert t is not None
        self.xen.events.put(t.port)

    def answer(self) -> bytes | None:
        assert self.shared is not None
        return self.shared.response() if self.shared.state == TPMIF_STATE_FINISH else None

    def close(self) -> None:
        """The frontend closes its device (Closed): tpmback disconnects."""
        self.xen.write(self.path + "/state", str(xenbus.XenbusStateClosed))
        self.back.handle_event(self.path + "/state")


@pytest.fixture
def chain():
    xen = FakeXen()
    log: list[str] = []
    back = TpmBack(xen, log.append)      # type: ignore[arg-type]
    yield xen, back, log
    back.shutdown()


def restart(xen: FakeXen, back: TpmBack, *fronts: Frontend) -> None:
    """The daemon restarted: the rings died with it; each frontend sets up
    a new one, and tpmback resumes and connects to it."""
    xen.generation += 1
    for f in fronts:
        f.new_ring()
    back.resume()
    assert all(f.connected() for f in fronts)


def served(back: TpmBack, domid: int):
    """The next request the server gets from `domid` (None: none came)."""
    return back.req(domid, 0, timeout=0.3)


def test_a_resend_is_answered_from_what_was_kept_without_running_it(chain):
    xen, back, log = chain
    fe = Frontend(xen, back, 2)
    fe.submit(EXTEND)
    cmd = served(back, 2)
    assert cmd is not None and cmd.req == EXTEND
    restart(xen, back, fe)                       # before the server answered
    back.resp(cmd, ANSWER)                       # its ring is gone: kept
    assert fe.answer() is None                   # nothing written on the new ring
    fe.submit(EXTEND)                            # the frontend's resend
    assert served(back, 2) is None               # not handed to the server again
    assert fe.answer() == ANSWER
    assert log.count("Tpmback:Info Frontend 2/0: answered again, without running it twice\n") == 1
    fe.submit(EXTEND)                            # the next identical request is a new one
    again = served(back, 2)
    assert again is not None and again.req == EXTEND
    assert not [ln for ln in log if "Error" in ln], log


def test_a_different_request_drops_the_kept_answer_and_runs(chain):
    xen, back, log = chain
    fe = Frontend(xen, back, 2)
    fe.submit(EXTEND)
    cmd = served(back, 2)
    restart(xen, back, fe)
    back.resp(cmd, ANSWER)
    fe.submit(PCRREAD)
    other = served(back, 2)
    assert other is not None and other.req == PCRREAD
    back.resp(other, b"pcrread answer")
    assert fe.answer() == b"pcrread answer"
    fe.submit(EXTEND)                            # the kept answer went with it
    again = served(back, 2)
    assert again is not None and again.req == EXTEND
    assert not [ln for ln in log if "answered again" in ln], log


def test_the_same_bytes_at_another_locality_run(chain):
    xen, back, log = chain
    fe = Frontend(xen, back, 2)
    fe.submit(EXTEND, locality=0)
    cmd = served(back, 2)
    restart(xen, back, fe)
    back.resp(cmd, ANSWER)
    fe.submit(EXTEND, locality=2)
    other = served(back, 2)
    assert other is not None and (other.req, other.locality) == (EXTEND, 2)
    assert not [ln for ln in log if "answered again" in ln], log


@pytest.mark.parametrize("answered_first", [True, False])
def test_the_frontend_closing_drops_the_kept_answer(chain, answered_first):
    """Whether the answer was kept before the frontend closed or comes
    after it: a frontend that reopens gets no answer it did not ask on
    its new ring, and its identical request runs."""
    xen, back, log = chain
    fe = Frontend(xen, back, 2)
    fe.submit(EXTEND)
    cmd = served(back, 2)
    restart(xen, back, fe)
    if answered_first:
        back.resp(cmd, ANSWER)
    fe.close()
    if not answered_first:
        back.resp(cmd, ANSWER)
    fe.new_ring()                                # it opens the device again
    back.handle_event(fe.path + "/state")
    assert fe.connected()
    fe.submit(EXTEND)
    again = served(back, 2)
    assert again is not None and again.req == EXTEND
    assert fe.answer() is None
    assert not [ln for ln in log if "answered again" in ln], log


def test_one_kept_answer_per_frontend(chain):
    """Each frontend has its own; a frontend's next kept answer replaces
    its last (it had sent something else meanwhile)."""
    xen, back, log = chain
    a, b = Frontend(xen, back, 2), Frontend(xen, back, 3)
    a.submit(EXTEND)
    cmd_a = served(back, 2)
    b.submit(PCRREAD)
    cmd_b = served(back, 3)
    restart(xen, back, a, b)
    back.resp(cmd_a, ANSWER)
    back.resp(cmd_b, b"answer of 3")
    assert [back.get(d, 0).kept for d in (2, 3)] == [(EXTEND, 0, ANSWER), (PCRREAD, 0, b"answer of 3")]
    b.submit(PCRREAD)                            # each resend gets its own frontend's answer
    assert served(back, 3) is None and b.answer() == b"answer of 3"
    a.submit(PCRREAD)                            # not a's request: a's kept answer goes
    cmd2 = served(back, 2)
    assert cmd2 is not None and cmd2.req == PCRREAD
    restart(xen, back, a, b)
    back.resp(cmd2, b"second answer")            # a's only kept answer now
    assert back.get(2, 0).kept == (PCRREAD, 0, b"second answer")
    a.submit(EXTEND)                             # the first one's resend: runs
    cmd3 = served(back, 2)
    assert cmd3 is not None and cmd3.req == EXTEND
