"""No acknowledged TPM command is lost when the vTPM chain is SIGKILLed
again while it recovers, or two parts of it at once (pyxl-vtpm(7), "What
happens to a vTPM's state"); the sibling of test_vtpm_chain_crash.py,
whose guest, counters, recovery and invariant this file reuses.

Each round, once the guest has had k more steps acknowledged plus a
seeded random delay, one of:
- vtpm-in-start: vtpm-stubdom is killed; the one created again on its disk
  is killed a seeded random time after its process appeared -- before or
  while it asks the manager for its key (VTPM_LoadHashKey), while it reads
  its slots and loads its state, or once it waits for its frontend (the
  round says which) -- and then created again;
- manager-in-start: the same for vtpmmgr-stubdom, killed again while it
  starts on its disk (its header, its key unbound by the hardware TPM, its
  uuid table), then created again;
- daemon-in-create: vtpm-stubdom or vtpmmgr-stubdom is killed, and the
  daemon is killed while `xl create` of the new one runs; the user, not
  knowing how far it got, destroys what is there and creates it again;
- manager+vtpm, daemon+vtpm: both SIGKILLed together.
Then, as in the sibling, the counter must be at the last acknowledged step
or the next one if a step was in flight, never a fresh TPM.

The TPM 1.2 guest's step here needs the owner's authorization through an
OSAP session (TPM Main Part 3, 18.2 TPM_OSAP; 20.2 TPM_NV_WriteValue with
an AUTH1 tag on an NV area defined OWNERWRITE), so the saves that follow
an authorized command -- the session created, then used and closed -- are
what is killed.  The seed is PYXL_CRASH_SEED as in the sibling; every
failure names it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import signal
import struct
import subprocess
import time
from typing import Callable

import pytest
from test_daemon_restart_vtpm import _ended, _tpm0, _transact, _wait_connected
from test_vtpm_chain_crash import (UUID, Stepper, Tpm2Counter, _new_vtpm, _pid, _rc,
                                   _recover, _seeded_rounds, _settled)
from test_walkthrough_e2e import host  # noqa: F401  (the fixture)
from wt_host import EXAMPLES, procs_with_root

from peers import need_peer

ROUNDS = 7             # each of the five scenarios at least once; the file in about 2 minutes
START = 0.4           # seconds: a stub domain's start, from its process to ready, about this long
CREATE = 0.3          # seconds: `xl create` of a stub domain runs about this long

# TPM 1.2 (TPM Main Part 2, 4.1 and 5.6; Part 3, 18.2 and 20.2)
TPM_TAG_RQU_COMMAND, TPM_TAG_RQU_AUTH1_COMMAND = 0xC1, 0xC2
TPM_ORD_OSAP, TPM_ORD_NV_WriteValue, TPM_ORD_NV_ReadValue = 0x0B, 0xCD, 0xCF
TPM_ET_OWNER, TPM_KH_OWNER = 0x0002, 0x40000001
TPM_BADINDEX = 0x02
OWNER_AUTH = bytes(20)          # tpm_takeownership -y: the well-known secret
NV_INDEX = 0x10001


class Tpm12OwnerCounter:
    """An NV area only the owner may write (OWNERWRITE); each step is a
    TPM_OSAP for the owner, then a TPM_NV_WriteValue of the next value
    authorized with it (continueAuthSession FALSE: the write closes it),
    each on its own open of the guest's /dev/tpm0."""

    def __init__(self, h):
        out = h.guest("modprobe xen-tpmfront", "tcsd", "tpm_takeownership -y -z",
                      "tpm_nvdefine -i %#x -s 4 -p OWNERWRITE -y -z" % NV_INDEX)
        assert "Successfully created NVRAM area at index %#x" % NV_INDEX in out, out
        self.dev = _tpm0(h)
        assert _rc(self.step(0)) == 0

    def step(self, value: int) -> bytes:
        odd_osap = os.urandom(20)
        rsp = _transact(self.dev, struct.pack(">HIIHI", TPM_TAG_RQU_COMMAND, 36, TPM_ORD_OSAP,
                                              TPM_ET_OWNER, TPM_KH_OWNER) + odd_osap, timeout=150)
        if _rc(rsp) != 0:
            return rsp                    # the write was not sent
        handle, even, even_osap = struct.unpack_from(">I20s20s", rsp, 10)
        shared = hmac.new(OWNER_AUTH, even_osap + odd_osap, hashlib.sha1).digest()
        params = struct.pack(">IIII", NV_INDEX, 0, 4, value)
        digest = hashlib.sha1(struct.pack(">I", TPM_ORD_NV_WriteValue) + params).digest()
        odd = os.urandom(20)
        auth = hmac.new(shared, digest + even + odd + b"\0", hashlib.sha1).digest()
        body = params + struct.pack(">I", handle) + odd + b"\0" + auth
        return _transact(self.dev, struct.pack(">HII", TPM_TAG_RQU_AUTH1_COMMAND, 10 + len(body),
                                               TPM_ORD_NV_WriteValue) + body, timeout=150)

    def value(self, why: str) -> int:
        rsp = _transact(self.dev, struct.pack(">HIIIII", TPM_TAG_RQU_COMMAND, 22,
                                              TPM_ORD_NV_ReadValue, NV_INDEX, 0, 4), timeout=30)
        assert _rc(rsp) != TPM_BADINDEX, ("a fresh TPM: the NV area is gone", why)
        assert _rc(rsp) == 0 and len(rsp) == 18, (why, rsp.hex())
        return int(struct.unpack_from(">I", rsp, 14)[0])


# -- the stub domains, started without waiting ------------------------------------------

STUB = {"vtpm-stubdom": "domu-vtpm", "vtpmmgr-stubdom": "vtpmmgr"}
DISK = {"vtpm-stubdom": "vtpm.img", "vtpmmgr-stubdom": "mgr.img"}


def _domain_pids(h) -> set[int]:
    return {p for p in procs_with_root(h.root) if b"\0pyxl-domain\0domid=" in _cmdline(p)}


def _cmdline(pid: int) -> bytes:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _start(h, kind: str, vtpm_cfg: str) -> subprocess.Popen:
    """`xl create` of the stub domain `kind` on its disk, running."""
    cfg = vtpm_cfg if kind == "vtpm-stubdom" else "vtpmmgr-stubdom.cfg"
    return subprocess.Popen(h.pyxl + ["create", str(EXAMPLES / cfg),
                                      'disk=["file:%s,hda,w"]' % (h.dir / DISK[kind])],
                            env=h.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _new_process(h, before: set[int], create: subprocess.Popen) -> int:
    """The new domain's process, once it exists."""
    deadline = time.monotonic() + 30
    while True:
        new = _domain_pids(h) - before
        if new:
            assert len(new) == 1, new
            return new.pop()
        assert create.poll() is None or create.returncode == 0, create.stderr
        assert time.monotonic() < deadline, "the stub domain's process never appeared"
        time.sleep(0.002)


def _phase(h, kind: str, since: dict[str, int]) -> str:
    """How far the stub domain `kind` had got in its start (its console
    and the manager's since `since`)."""
    log = {d: h.console_log(d)[since[d]:] if since[d] <= h.console_size(d) else ""
           for d in since}
    if kind == "vtpm-stubdom":
        if "Waiting for frontend domain to connect" in log["domu-vtpm"]:
            return "started"
        if "Loaded hash and key for vtpm %s" % UUID in log["vtpmmgr"]:
            return "reading its slots"
        return "before its key came (LoadHashKey)"
    if "Waiting for commands from vTPM's" in log["vtpmmgr"]:
        return "started"
    if "Loaded " in log["vtpmmgr"] and " vtpms!" in log["vtpmmgr"]:
        return "after its uuid table"
    if "Loading disk image header" in log["vtpmmgr"]:
        return "loading its disk"
    return "before its disk"


def _sizes(h) -> dict[str, int]:
    return {d: h.console_size(d) for d in ("domu-vtpm", "vtpmmgr")}


def _kill_in_start(h, rnd: random.Random, kind: str, vtpm_cfg: str) -> str:
    """Kill `kind`, create it again, and kill the new one a random time
    after its process appeared; then recover it."""
    first = _pid(h, kind)
    os.kill(first, signal.SIGKILL)
    h.wait_gone(STUB[kind])
    since, before = _sizes(h), _domain_pids(h)
    create = _start(h, kind, vtpm_cfg)
    pid = _new_process(h, before, create)
    delay = rnd.uniform(0, START)
    time.sleep(delay)               # the instant: the experiment, not a wait
    os.kill(pid, signal.SIGKILL)
    create.communicate(timeout=60)
    phase = _phase(h, kind, since)
    create_rc = create.returncode
    if kind == "vtpm-stubdom":
        _new_vtpm(h, vtpm_cfg)
        _wait_connected(h, int(h.domains()["domu-vtpm"][0]))
    else:
        _recover(h, kind, pid, vtpm_cfg)
    return "killed again %.4f s into its start: %s (its create %s)" % (
        delay, phase, "succeeded" if create_rc == 0 else "failed")


def _daemon_in_create(h, rnd: random.Random, vtpm_cfg: str) -> str:
    """Kill a stub domain, and the daemon while `xl create` of the new one
    runs; the user destroys whatever is there and creates it again."""
    kind = rnd.choice(("vtpm-stubdom", "vtpmmgr-stubdom"))
    os.kill(_pid(h, kind), signal.SIGKILL)
    h.wait_gone(STUB[kind])
    daemon, before = _pid(h, "daemon"), _domain_pids(h)
    began = time.monotonic()
    create = _start(h, kind, vtpm_cfg)
    if rnd.random() < 0.5:          # the command's start, or the daemon at its request
        delay = rnd.uniform(0, CREATE)
        at = "%.4f s into it" % delay
    else:                           # the domain spawned, its devices not yet up
        _new_process(h, before, create)
        delay = rnd.uniform(0, 0.05)
        at = "%.4f s after its process appeared" % delay
    time.sleep(delay)               # the instant
    os.kill(daemon, signal.SIGKILL)
    _, err = create.communicate(timeout=60)
    took = time.monotonic() - began
    deadline = time.monotonic() + 10
    while not _ended(daemon):
        assert time.monotonic() < deadline, "the daemon did not die"
        time.sleep(0.02)
    there = STUB[kind] in h.domains()                      # the next daemon
    print("    %s's create, daemon killed %s: create %s after %.3f s, the domain %s"
          % (kind, at, "succeeded" if create.returncode == 0 else "failed (%s)"
             % err.strip()[-80:], took, "there" if there else "not there"))
    if there:
        p = h.run("destroy", STUB[kind])
        assert p.returncode == 0, p.stderr
    if kind == "vtpm-stubdom":
        _new_vtpm(h, vtpm_cfg)
        _wait_connected(h, int(h.domains()["domu-vtpm"][0]))
    else:
        _recover(h, kind, 0, vtpm_cfg)
    return "recovered"


def _two_at_once(h, other: str, vtpm_cfg: str) -> str:
    """SIGKILL `other` and vtpm-stubdom together; bring both back."""
    victims = [_pid(h, other), _pid(h, "vtpm-stubdom")]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    if other == "daemon":
        deadline = time.monotonic() + 10
        while not _ended(victims[0]):
            assert time.monotonic() < deadline, "the daemon did not die"
            time.sleep(0.02)
        assert h.run("list").returncode == 0            # the next daemon
    else:
        h.wait_gone("vtpmmgr")
        h.create_manager()
    _new_vtpm(h, vtpm_cfg)
    _wait_connected(h, int(h.domains()["domu-vtpm"][0]))
    return "%s and vtpm-stubdom killed together" % other


SCENARIOS: dict[str, Callable[[object, random.Random, str], str]] = {
    "vtpm-in-start": lambda h, rnd, cfg: _kill_in_start(h, rnd, "vtpm-stubdom", cfg),
    "manager-in-start": lambda h, rnd, cfg: _kill_in_start(h, rnd, "vtpmmgr-stubdom", cfg),
    "daemon-in-create": _daemon_in_create,
    "manager+vtpm": lambda h, rnd, cfg: _two_at_once(h, "vtpmmgr-stubdom", cfg),
    "daemon+vtpm": lambda h, rnd, cfg: _two_at_once(h, "daemon", cfg),
}


def _round(h, counter, vtpm_cfg: str, rnd: random.Random, scenario: str, k: int,
           delay: float, value: int) -> int:
    w = Stepper(counter.step, value)
    w.wait_acked(value + k, "the guest's steps before the kill")
    time.sleep(delay)             # the instant: the experiment, not a wait
    print("   ", SCENARIOS[scenario](h, rnd, vtpm_cfg))      # the guest keeps stepping
    return _settled(w, counter)


def _kill_during_recovery(h, counter, vtpm_cfg: str) -> None:
    _seeded_rounds(list(SCENARIOS), ROUNDS, lambda rnd, scenario, k, delay, value:
                   _round(h, counter, vtpm_cfg, rnd, scenario, k, delay, value))


@pytest.mark.slow
def test_owner_authorized_nv_writes_survive_kills_during_recovery_and_two_at_once(host):
    host.guide_chain("vtpm.cfg")
    _kill_during_recovery(host, Tpm12OwnerCounter(host), "vtpm.cfg")


@pytest.mark.slow
@pytest.mark.peer("tpm2-tools")
def test_nv_increments_of_a_tpm2_vtpm_survive_kills_during_recovery(host):
    need_peer("tpm2-tools")
    host.guide_chain("vtpm2.cfg")
    _kill_during_recovery(host, Tpm2Counter(host), "vtpm2.cfg")


@pytest.mark.slow
def test_a_vtpm_whose_manager_died_before_a_daemon_restart_saves_once_re_attached(host):
    """PYXL_CRASH_SEED=1, daemon-in-create: vtpmmgr-stubdom killed, then the
    daemon while no manager lives.  vtpm-stubdom, resumed on the next
    daemon, finds no backend to reconnect its frontend to ("Resume
    failed"); the user creates a manager and re-attaches the vTPM to it
    (vtpm-detach, vtpm-attach).  The vTPM's frontend had given up for good
    at the failed resume, so every later save failed and every command was
    answered TPM_FAIL until the vTPM was restarted; now the next command
    connects to the backend the device names then, as after a manager's
    death without a daemon restart."""
    h = host
    h.guide_chain("vtpm.cfg")
    counter = Tpm12OwnerCounter(h)
    assert _rc(counter.step(1)) == 0
    since = h.console_size("domu-vtpm")
    os.kill(_pid(h, "vtpmmgr-stubdom"), signal.SIGKILL)
    h.wait_gone("vtpmmgr")
    daemon = _pid(h, "daemon")
    os.kill(daemon, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _ended(daemon):
        assert time.monotonic() < deadline, "the daemon did not die"
        time.sleep(0.02)
    assert h.run("list").returncode == 0                      # the next daemon
    h.wait_console("domu-vtpm", "Tpmfront:Error Resume failed", since=since)
    _recover(h, "vtpmmgr-stubdom", daemon, "vtpm.cfg")
    rsp = counter.step(2)
    assert _rc(rsp) == 0, (rsp.hex(), h.console_log("domu-vtpm")[since:][-2000:])
    assert counter.value("after the re-attach") == 2
