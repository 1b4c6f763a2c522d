"""What a guest's TPM commands cost the hypervisor process once the chain
is up: no event channel notification is relayed by it (each bound channel
notifies domain to domain, pyxl/hypervisor/evtchn.py), and the stub
domains' console lines of a run of commands reach it together, not one
console write per command per stub domain.

The run is one whose every command changes what the vTPM stores, so each
goes the whole way (guest -> vTPM -> manager -> vTPM -> guest): TPM 1.2
Part 3, TPM_SaveState keeps the TPM's volatile state in what it stores,
and the next command of another ordinal (here PCRRead) deletes it again.
A command that changes nothing is answered by the vTPM alone
(pyxl-vtpm(7), "What happens to a vTPM's state")."""

from __future__ import annotations

import collections
import time

from test_stubdom_e2e import MGR, VTPM, frame, host, run_guest, start_manager, start_vtpm  # noqa: F401

from pyxl.hypervisor import wire

RUN = 60                            # commands: RUN // 2 SaveState, PCRRead pairs
SAVE_STATE = frame(0x98)            # TPM_SaveState (no auth)


def test_a_run_of_guest_commands_is_not_relayed_by_the_hypervisor(host):  # noqa: F811
    start_manager(host)
    host.wait_console(MGR, "Waiting for commands from vTPM's:")
    start_vtpm(host)
    host.wait_console(VTPM, "Waiting for frontend domain to connect..")
    ops: collections.Counter = collections.Counter()
    dispatch = host.hv._dispatch

    def counting(conn, f):
        ops[conn.domid, f.op] += 1
        return dispatch(conn, f)
    host.hv._dispatch = counting
    said = "Sending encryption key to backend"
    saved = "Saved hash and key for vtpm"
    before = host.console(VTPM).count(said), host.console(MGR).count(saved)
    pcr_read = frame(0x15, (10).to_bytes(4, "big"))
    out = run_guest(host, *[SAVE_STATE, pcr_read] * (RUN // 2))
    assert len(out) == RUN and all(r[6:10] == b"\0\0\0\0" for r in out)
    assert all(r[10:30] == bytes(20) for r in out[1::2])   # PCR 10 after TPM_Startup(ST_CLEAR)
    relayed = sum(n for (_dom, op), n in ops.items() if op == wire.EVTCHN_SEND)
    # each end's first send may come before the socket pushed at its bind
    # was read; before: one relay per notification, 4 per command
    assert relayed <= 3, ops
    console = {d: ops[d, wire.CONSOLE_KICK] for d in (MGR, VTPM)}
    # before: one console write per command in each stub domain
    assert all(n <= RUN // 2 for n in console.values()), console
    # and every command's lines reach the consoles once the run is over,
    # each command's save with them (with one more save when the vTPM shuts
    # down after the guest left)
    deadline = time.monotonic() + 20
    while host.console(VTPM).count(said) < before[0] + RUN \
            or host.console(MGR).count(saved) < before[1] + RUN:
        assert time.monotonic() < deadline, (before, host.console(VTPM)[-2000:])
        time.sleep(0.02)
