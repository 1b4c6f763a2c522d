"""A daemon SIGKILLed during or right after `create`: what the next one finds.

Once `create` has answered, the domain is the next daemon's to adopt, even
if its process had not yet said HELLO to the daemon that started it.  A
create interrupted before the domain was recorded leaves nothing behind:
its process is told by the next daemon that it is no domain of this host.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

from ts_host import MKDOM, cmdline, domain_pids, gone, kill_daemon, procs_of


def _domain_pids(host) -> list[int]:
    """Every domain process of the host (`pyxl-domain domid=N ...`), whether
    or not a daemon knows it."""
    return list(domain_pids(host.root).values())


def test_daemon_killed_right_after_create_returned_keeps_the_domain(host):
    """Killed the moment create answered -- before the domain process
    could have said HELLO (a Python start takes longer) -- and at seeded
    random instants within the next 0.2 s: the next daemon lists every
    domain running, and each one's monitor log tells one story."""
    rnd = random.Random(8)
    delays = [0.0, 0.0] + [rnd.uniform(0, 0.2) for _ in range(2)]
    for i, delay in enumerate(delays):
        name = "g%d" % i
        p = host.create(name)
        assert p.returncode == 0, p.stderr
        time.sleep(delay)            # the fault's instant, not a synchronisation
        kill_daemon(host)
        rows = host.domains()        # a new daemon
        assert name in rows, rows
        assert rows[name]["reason"] is None and rows[name]["state"][3] != "s", rows[name]
        host.wait_for(lambda: "login:" in host.console_log(name), what="%s boots" % name)
        log = Path(host.root, "var/log/pyxl/xl-%s.log" % name).read_text()
        assert "has shut down" not in log, log
    assert sorted(n for n in host.domains() if n != "Domain-0") == ["g0", "g1", "g2", "g3"]


def test_create_killed_before_the_domain_was_recorded_leaves_nothing(host):
    """The daemon dies between starting the domain's process and recording
    it: create fails, the next daemon has no such domain, and the process
    it never knew ends instead of dialling in forever."""
    env = dict(host.env, PYXL_TEST_FAULT_AT="create:spawned")
    p = subprocess.run([sys.executable, str(MKDOM), json.dumps(host.config("half"))],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr, p.stderr
    orphans = _domain_pids(host)          # "half", the only domain
    assert orphans, "the fault point was not reached"
    host.wait_for(lambda: all(gone(q) for q in procs_of(host.root)
                              if b"pyxl.toolstack.daemon" in cmdline(q)),
                  what="the daemon's death")
    assert "half" not in host.domains()              # a new daemon, without the fault
    host.wait_for(lambda: all(gone(q) for q in orphans), timeout=20,
                  what="the unrecorded domain's process to end")
    assert "half" not in host.domains()
    # the domid was never recorded either: the next domain may have it
    assert host.create("whole").returncode == 0
    assert host.domains()["whole"]["domid"] == 1


def test_an_action_the_killed_daemon_had_not_carried_out_is_carried_out(host):
    """The daemon dies between recording a domain's poweroff and acting on
    it (on_poweroff=destroy): the next one destroys it, and the monitor log
    says once why."""
    env = dict(host.env, PYXL_TEST_FAULT_AT="shutdown:recorded")
    p = subprocess.run([sys.executable, str(MKDOM), json.dumps(host.config("brief"))],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    host.wait_for(lambda: "login:" in host.console_log("brief"), what="boot")
    daemon = [q for q in procs_of(host.root) if b"pyxl.toolstack.daemon" in cmdline(q)]
    subprocess.run(host.pyxl_cmd + ["shutdown", "brief"], env=env, capture_output=True,
                   timeout=30)
    host.wait_for(lambda: all(gone(q) for q in daemon), what="the daemon's fault point")
    host.wait_for(lambda: "brief" not in host.domains(), what="on_poweroff=destroy")
    log = Path(host.root, "var/log/pyxl/xl-brief.log").read_text()
    assert log.count("has shut down") == 1, log
    assert "Domain 1 has shut down, reason code 0 0x0\n" in log
    assert "Action for shutdown reason code 0 is destroy\n" in log
