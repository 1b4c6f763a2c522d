"""No acknowledged TPM command is lost, whatever part of the vTPM chain is
SIGKILLed at whatever instant (pyxl-vtpm(7), "What happens to a vTPM's
state", "Exactly once across a daemon restart").

The guide's chain (vtpmmgr-stubdom, vtpm-stubdom, the Linux guest), and
in the guest a counter in the vTPM's NV storage that the guest steps, one
command at a time, each a change of the vTPM's permanent state that it
saves through the manager before it answers:
- TPM 1.2: the guest's tcsd and tpm-tools take ownership and define an NV
  area that needs no authorization to write (PPWRITE: the vTPM, as the
  Berlios emulator, always asserts physical presence); the guest writes
  an incrementing value into it, one TPM_NV_WriteValue per open of its
  /dev/tpm0 (as tcsd opens it), and reads it with TPM_NV_ReadValue (TPM
  Main Part 3, 20.2 and 20.4).
- TPM 2.0 (tpm2=1): the guest's tpm2-tools define an NV counter
  (TPMA_NV_COUNTER, TPM2_NV_DefineSpace); the guest steps it with
  TPM2_NV_Increment and reads it with TPM2_NV_Read through its
  /dev/tpmrm0, one open per command (TPM 2.0 Part 3, 31.8 and 31.13).

At seeded random instants -- after the k-th acknowledged step, plus a
random delay -- one of vtpm-stubdom, vtpmmgr-stubdom or the daemon is
SIGKILLed and brought back as a user would: the dead stub domain created
again on its disk and re-attached (vtpm-detach, vtpm-attach; the guest's
driver unloaded and loaded again), or any pyxl command for the next
daemon.  A TPM 2.0 vTPM whose save failed answers TPM_RC_FAILURE until it
restarts (pyxl-vtpm(7), "TPM 2.0 vTPM state"), so after the manager's
death the user restarts it as well.  Then the counter must be at the last
acknowledged step, or the next one if a step was in flight: never less,
never more, never a fresh TPM (which has no such index); the step in
flight got either an answer the value agrees with or an error, not a
hang.

The seed is PYXL_CRASH_SEED if set, else a fixed one under CI=true, else a
new one each run (as the suite's hypothesis profile does); every failure
names it.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import threading
import time
from typing import Callable

import pytest
from test_daemon_restart_vtpm import _ended, _pid_of, _tpm0, _transact, _wait_connected
from test_walkthrough_e2e import host  # noqa: F401  (the fixture)
from wt_host import in_netns

from peers import need_peer

UUID = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
KINDS = ("vtpm-stubdom", "vtpmmgr-stubdom", "daemon")
ROUNDS = 9

# TPM 1.2
TPM_ORD_NV_WriteValue, TPM_ORD_NV_ReadValue = 0xCD, 0xCF
TPM_BADINDEX = 0x02
NV_INDEX = 0x10000

# TPM 2.0
TPM_ST_SESSIONS, TPM_RS_PW = 0x8002, 0x40000009
TPM_CC_NV_Increment, TPM_CC_NV_Read = 0x134, 0x14E
TPM_RC_HANDLE = 0x08B                  # (+ the handle's number) no such NV index
NV_COUNTER = 0x01500016
TPM2_PORT, TPM_SEND_COMMAND = 2321, 8  # /dev/tpmrm0 in the guest (mssim protocol)


def _seed() -> int:
    env = os.environ.get("PYXL_CRASH_SEED")
    if env:
        return int(env)
    if os.environ.get("CI") == "true":
        return 20261207
    return random.SystemRandom().randrange(1 << 32)


def _rc(rsp: bytes) -> int | None:
    """The response's return code; None for no (or a short) response."""
    return struct.unpack_from(">I", rsp, 6)[0] if len(rsp) >= 10 else None


# -- TPM 1.2: an NV area written with the next value ----------------------------------

def _nv_write(value: int) -> bytes:
    data = struct.pack(">I", value)
    return struct.pack(">HIIIII", 0xC1, 22 + len(data), TPM_ORD_NV_WriteValue, NV_INDEX, 0,
                       len(data)) + data


def _nv_read() -> bytes:
    return struct.pack(">HIIIII", 0xC1, 22, TPM_ORD_NV_ReadValue, NV_INDEX, 0, 4)


class Tpm12Counter:
    def __init__(self, h):
        out = h.guest("modprobe xen-tpmfront", "tcsd", "tpm_takeownership -y -z",
                      "tpm_nvdefine -i %#x -s 4 -p PPWRITE -y -z" % NV_INDEX)
        assert "Successfully created NVRAM area at index %#x" % NV_INDEX in out, out
        self.dev = _tpm0(h)
        assert _rc(self.step(0)) == 0

    def step(self, value: int) -> bytes:
        # a daemon restart under the write: answered once the next daemon is up
        return _transact(self.dev, _nv_write(value), timeout=150)

    def value(self, why: str) -> int:
        rsp = _transact(self.dev, _nv_read(), timeout=30)
        assert _rc(rsp) != TPM_BADINDEX, ("a fresh TPM: the NV area is gone", why)
        assert _rc(rsp) == 0 and len(rsp) == 18, (why, rsp.hex())
        assert struct.unpack_from(">I", rsp, 10)[0] == 4, (why, rsp.hex())
        return int(struct.unpack_from(">I", rsp, 14)[0])


# -- TPM 2.0: an NV counter incremented --------------------------------------------------

def _pw_session() -> bytes:
    """The authorization area of one password session with an empty
    password (TPM 2.0 Part 1, 19.8.4): handle, nonce, attributes, hmac."""
    session = struct.pack(">IHBH", TPM_RS_PW, 0, 0, 0)
    return struct.pack(">I", len(session)) + session


def _nv_increment() -> bytes:
    body = struct.pack(">II", NV_COUNTER, NV_COUNTER) + _pw_session()
    return struct.pack(">HII", TPM_ST_SESSIONS, 10 + len(body), TPM_CC_NV_Increment) + body


def _nv_read2() -> bytes:
    body = struct.pack(">II", NV_COUNTER, NV_COUNTER) + _pw_session() + struct.pack(">HH", 8, 0)
    return struct.pack(">HII", TPM_ST_SESSIONS, 10 + len(body), TPM_CC_NV_Read) + body


def _netns_thread(h) -> int:
    """The guest process's thread that lives in the guest's network
    namespace (netns.py), as a pid for in_netns."""
    domu = _pid_of(h, b"pyxl-domain\0domid=%d\0" % int(h.domains()["domu"][0]))
    own = os.readlink("/proc/%d/ns/net" % domu)
    for tid in os.listdir("/proc/%d/task" % domu):
        try:
            if os.readlink("/proc/%d/task/%s/ns/net" % (domu, tid)) != own:
                return int(tid)
        except OSError:
            continue
    raise AssertionError("the guest has no network namespace")


class Tpm2Counter:
    def __init__(self, h):
        define = "tpm2_nvdefine %#x -C o -s 8 -a 'nt=counter|authread|authwrite|no_da'" \
            % NV_COUNTER
        out = h.guest("modprobe xen-tpmfront", define, "tpm2_nvincrement %#x" % NV_COUNTER)
        assert "nv-index: %#x" % NV_COUNTER in out, out
        self.ns = _netns_thread(h)
        self.base = 0
        self.base = self.value("after the first increment")     # a counter starts anywhere

    def _command(self, request: bytes, timeout: float) -> bytes:
        """One open() of the guest's /dev/tpmrm0, one command; b"" if the
        device failed it."""
        s = in_netns(self.ns, lambda: socket.create_connection(("127.0.0.1", TPM2_PORT),
                                                               timeout=timeout))
        with s:
            s.sendall(struct.pack(">IBI", TPM_SEND_COMMAND, 0, len(request)) + request)
            out = b""
            while len(out) < 4 or len(out) < 4 + struct.unpack_from(">I", out)[0] + 4:
                chunk = s.recv(4096)
                if not chunk:
                    return b""
                out += chunk
            return out[4:-4]

    def step(self, value: int) -> bytes:
        return self._command(_nv_increment(), timeout=150)

    def value(self, why: str) -> int:
        rsp = self._command(_nv_read2(), timeout=30)
        assert _rc(rsp) is not None and _rc(rsp) & 0xFFF != TPM_RC_HANDLE, \
            ("a fresh TPM: the NV index is gone", why, rsp.hex())
        assert _rc(rsp) == 0 and struct.unpack_from(">H", rsp, 14)[0] == 8, (why, rsp.hex())
        return int(struct.unpack_from(">Q", rsp, 16)[0]) - self.base


# -- the experiment ----------------------------------------------------------------------

class Stepper:
    """The guest's loop of steps, on a thread: `acked` is the last step
    answered success; `sent` the last step sent; `outcome` what the last
    one sent got (a response, b"" or an exception: the device failed it)."""

    def __init__(self, step: Callable[[int], bytes], start: int):
        self.step = step
        self.acked = self.sent = start
        self.outcome: bytes | BaseException | None = None
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            value = self.sent + 1
            self.sent = value
            try:
                rsp = self.step(value)
            except OSError as e:
                self.outcome = e
                return
            self.outcome = rsp
            if _rc(rsp) != 0:
                return                    # an error: the loop ends, the value is unknown
            with self.cond:
                self.acked = value
                self.cond.notify_all()

    def wait_acked(self, n: int, why: str) -> None:
        deadline = time.monotonic() + 60
        with self.cond:
            while self.acked < n and self.thread.is_alive():
                assert time.monotonic() < deadline, why
                self.cond.wait(0.1)
        assert self.acked >= n, (why, self.outcome)


def _pid(h, kind: str) -> int:
    if kind == "daemon":
        return _pid_of(h, b"pyxl.toolstack.daemon")
    name = {"vtpm-stubdom": "domu-vtpm", "vtpmmgr-stubdom": "vtpmmgr"}[kind]
    return _pid_of(h, b"pyxl-domain\0domid=%d\0" % int(h.domains()[name][0]))


def _new_vtpm(h, vtpm_cfg: str) -> None:
    """The guest's vTPM domain is gone: a new one on its disk, and the
    guest's device re-attached to it, as a user does: the guest's xenbus
    removes the old device and binds the new one (xen-tpmfront loaded)."""
    h.wait_gone("domu-vtpm")
    h.create_vtpm(vtpm_cfg)
    for args in (("vtpm-detach", "domu", "0"), ("vtpm-attach", "domu", "backend=domu-vtpm")):
        p = h.run(*args)
        assert p.returncode == 0, p.stderr


def _recover(h, kind: str, victim: int, vtpm_cfg: str) -> None:
    """What a user does once `kind` (process `victim`) was killed; returns
    once the guest's vTPM is connected again."""
    if kind == "daemon":
        deadline = time.monotonic() + 10
        while not _ended(victim):
            assert time.monotonic() < deadline, "the daemon did not die"
            time.sleep(0.02)
        assert h.run("list").returncode == 0          # the next daemon
    elif kind == "vtpmmgr-stubdom":
        h.wait_gone("vtpmmgr")                        # reaped: on_crash=destroy
        h.create_manager()
        if vtpm_cfg == "vtpm2.cfg":                   # TPM_RC_FAILURE until restarted
            assert h.run("destroy", "domu-vtpm").returncode == 0
            _new_vtpm(h, vtpm_cfg)
        else:
            for args in (("vtpm-detach", "domu-vtpm", "0"),
                         ("vtpm-attach", "domu-vtpm", "backend=vtpmmgr", "uuid=" + UUID)):
                p = h.run(*args)
                assert p.returncode == 0, p.stderr
    else:
        _new_vtpm(h, vtpm_cfg)
    _wait_connected(h, int(h.domains()["domu-vtpm"][0]))


def _round(h, counter, vtpm_cfg: str, kind: str, k: int, delay: float, value: int) -> int:
    """One kill of `kind` once the guest has had k more steps acknowledged,
    plus `delay`; the counter's value after the recovery."""
    victim = _pid(h, kind)
    w = Stepper(counter.step, value)
    w.wait_acked(value + k, "the guest's steps before the kill")
    time.sleep(delay)             # the instant: the experiment, not a wait
    os.kill(victim, signal.SIGKILL)
    _recover(h, kind, victim, vtpm_cfg)          # the guest keeps stepping meanwhile
    return _settled(w, counter)


def _settled(w: Stepper, counter) -> int:
    """The guest stops stepping; the counter's value after the recovery,
    checked against what the guest was answered: every acknowledged step
    is there, the one in flight at most once."""
    w.stop.set()
    w.thread.join(150)
    assert not w.thread.is_alive(), "the step in flight was never answered"
    value = counter.value("after the recovery")
    acked, sent, outcome = w.acked, w.sent, w.outcome
    seen = "acked %d, sent %d, got %r, read %d" % (acked, sent, outcome, value)
    print("   ", seen)
    if isinstance(outcome, bytes) and _rc(outcome) == 0:
        assert value == acked == sent, seen            # all acknowledged
    else:
        assert value in (acked, acked + 1) and sent == acked + 1, seen
    return value


def _seeded_rounds(kinds: list[str], rounds: int, one: Callable[..., int]) -> None:
    """`rounds` rounds, each kind as often as the others in a seeded order;
    round n is one(rnd, kind, k, delay, value) -> the value after it, with
    k and delay drawn from the seed.  A failure names the seed and round."""
    seed = _seed()
    rnd = random.Random(seed)
    print("PYXL_CRASH_SEED=%d" % seed)
    order = [kinds[i % len(kinds)] for i in range(rounds)]
    rnd.shuffle(order)
    value = 0
    for n, kind in enumerate(order):
        k, delay = rnd.randint(1, 20), rnd.uniform(0, 0.05)
        why = "PYXL_CRASH_SEED=%d round %d: %s, %.4f s after the %d-th step" % (
            seed, n, kind, delay, k)
        print(why)
        try:
            value = one(rnd, kind, k, delay, value)
        except AssertionError as e:
            raise AssertionError("%s: %s" % (why, e)) from e


def _kill_at_random_instants(h, counter, vtpm_cfg: str) -> None:
    _seeded_rounds(KINDS, ROUNDS, lambda rnd, kind, k, delay, value:
                   _round(h, counter, vtpm_cfg, kind, k, delay, value))


@pytest.mark.slow
def test_acknowledged_nv_writes_survive_sigkills_at_random_instants(host):
    host.guide_chain("vtpm.cfg")
    _kill_at_random_instants(host, Tpm12Counter(host), "vtpm.cfg")


@pytest.mark.slow
@pytest.mark.peer("tpm2-tools")
def test_acknowledged_nv_increments_of_a_tpm2_vtpm_survive_sigkills(host):
    need_peer("tpm2-tools")
    host.guide_chain("vtpm2.cfg")
    _kill_at_random_instants(host, Tpm2Counter(host), "vtpm2.cfg")


@pytest.mark.slow
def test_manager_killed_registering_a_second_vtpm_keeps_the_first(host):
    """The manager SIGKILLed as it registers a second vTPM (its first
    save), between writing the new uuid table and its key block (the hook
    PYXL_TEST_FAULT_AT=file:, pyxl/hypervisor/testfault.py): the next
    manager loads the first vTPM's record, and the first vTPM, started
    again on its disk, has the state it saved.  The seed's order -- a new
    key block first, then the table -- left a table no manager could read
    ("refusing to initialize it"), and every vTPM's state with it."""
    h = host
    armed = h.dir / "fault-at"
    armed.write_text("")
    h.env["PYXL_TEST_FAULT_AT"] = "file:%s" % armed       # the domains inherit it
    h.guide_chain("vtpm.cfg")
    h.guest("modprobe xen-tpmfront")
    pubek = h.guest("cat /sys/devices/vtpm-0/pubek")
    assert "Modulus length: 256" in pubek, pubek
    h.wait_console("vtpmmgr", "Saved hash and key for vtpm %s" % UUID)

    other = "11111111-2222-4333-8444-555555555555"
    (h.dir / "b.img").write_bytes(bytes(8 << 20))
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % (h.dir / "b.img"), 'name="vb"',
             'vtpm=["backend=vtpmmgr,uuid=%s"]' % other)
    h.wait_console("vb", "Waiting for frontend domain to connect..")
    armed.write_text("vtpmmgr:table-written")
    h.create("domu.cfg", 'kernel="%s"' % (h.dir / "vmlinuz"), 'name="gb"',
             'vtpm=["backend=vb"]')
    h.console("type", "modprobe xen-tpmfront", "cat /sys/devices/vtpm-0/caps", "--",
              "console", "gb")
    h.wait_gone("vtpmmgr")                            # killed itself at the hook
    armed.write_text("")
    h.wait_console("vb", "tpm_store_permanent_data() failed")   # its first save: unanswered

    since = h.console_size("vtpmmgr")
    h.create_manager()
    mgr = h.console_log("vtpmmgr")[since:]
    assert "Loaded 1 vtpms!" in mgr, mgr
    assert h.run("destroy", "domu-vtpm").returncode == 0
    since = h.console_size("domu-vtpm")
    _new_vtpm(h, "vtpm.cfg")
    assert "Loaded hash and key for vtpm %s" % UUID in h.console_log("vtpmmgr")
    assert "holds no state" not in h.console_log("domu-vtpm")[since:]
    again = h.guest("cat /sys/devices/vtpm-0/pubek")
    assert again[again.index("Algorithm"):] == pubek[pubek.index("Algorithm"):]
