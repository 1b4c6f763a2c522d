"""What a guest's TPM commands cost the hypervisor process once the chain
is up: no event channel notification is relayed by it (each bound channel
notifies domain to domain, pyxl/hypervisor/evtchn.py), and the stub
domains' console lines of a run of commands reach it together, not one
console write per command per stub domain."""

from __future__ import annotations

import collections
import time

from test_stubdom_e2e import MGR, VTPM, frame, host, run_guest, start_manager, start_vtpm  # noqa: F401

from pyxl.hypervisor import wire

RUN = 60


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
    out = run_guest(host, *[pcr_read] * RUN)
    assert len(out) == RUN and all(r[6:10] == b"\0\0\0\0" for r in out)
    relayed = sum(n for (_dom, op), n in ops.items() if op == wire.EVTCHN_SEND)
    # each end's first send may come before the socket pushed at its bind
    # was read; before: one relay per notification, 4 per command
    assert relayed <= 3, ops
    console = {d: ops[d, wire.CONSOLE_KICK] for d in (MGR, VTPM)}
    # before: one console write per command in each stub domain
    assert all(n <= RUN // 2 for n in console.values()), console
    # and every command's lines reach the consoles once the run is over
    # (with one more save when the vTPM shuts down after the guest left)
    deadline = time.monotonic() + 20
    while host.console(VTPM).count(said) < before[0] + RUN \
            or host.console(MGR).count(saved) < before[1] + RUN:
        assert time.monotonic() < deadline, (before, host.console(VTPM)[-2000:])
        time.sleep(0.02)
