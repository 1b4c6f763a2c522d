"""A domain's vCPU hard affinity is where its process runs.

On Xen a vcpu runs on the pCPUs of its hard affinity within its domain's
pool (xen/common/sched: the schedulers' cpumask_and of
unit->cpu_hard_affinity and cpupool_domain_master_cpumask); the affinity
comes from the config (libxl_dom.c libxl__build_pre, cpus=), `xl
vcpu-pin`, and is reset by a move between pools (sched_move_domain) or
broken by a CPU's removal from the pool (cpu_disable_scheduler).  Here the
domain is a process: every thread of it may run on the union of its online
vcpus' pCPUs, pCPU p being the p-th real CPU the daemon was started with
(modulo their number).  The expected sets below follow from the config and
those rules, mapped through this test's own CPU set (the daemon inherits
it), and are read from /proc/<pid>/task/<tid>/status.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from ts_host import domain_pids, kill_daemon

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
USABLE = sorted(os.sched_getaffinity(0))

pytestmark = pytest.mark.skipif(len(USABLE) < 2, reason="placement needs 2 CPUs or more"
                                " to be seen; this process may use %r" % (USABLE,))


def real(*pcpus: int) -> set[int]:
    """The real CPUs simulated pCPUs run on: the p-th of ours."""
    return {USABLE[p % len(USABLE)] for p in pcpus}


def allowed(pid: int) -> list[set[int]]:
    """Cpus_allowed_list of each thread of `pid`."""
    out = []
    for tid in sorted(os.listdir("/proc/%d/task" % pid)):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                line = [ln for ln in f if ln.startswith("Cpus_allowed_list:")][0]
        except (OSError, IndexError):
            continue                # a thread that ended meanwhile
        cpus: set[int] = set()
        for part in line.split(":", 1)[1].strip().split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
        out.append(cpus)
    return out


def runs_on(host, name: str) -> set[int]:
    """The one CPU set all of the domain's threads have (asserted)."""
    pid = domain_pids(host.root)[host.domains()[name]["domid"]]
    sets = allowed(pid)
    assert sets and all(s == sets[0] for s in sets), sets
    return sets[0]


def affinity_column(host, name: str) -> list[str]:
    p = host.run("vcpu-list", name)
    assert p.returncode == 0, p.stderr
    return [" ".join(line.split()[6:]) for line in p.stdout.splitlines()[1:]]


def guest(host, tmp_path, name: str, extra: str) -> None:
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text('name="%s"\nkernel="%s"\nmemory=64\nextra="console=hvc0"\n%s'
                   % (name, host.kernel, extra))
    p = host.run("create", cfg)
    assert p.returncode == 0, p.stderr


def test_cpus_in_the_config_place_the_process_and_vcpu_pin_moves_it(host, tmp_path):
    """cpus="1": libxl__build_pre sets each vcpu's hard affinity, and
    xl vcpu-list shows it (print_bitmap); the process runs on pCPU 1 only.
    vcpu-pin all 0 moves it; vcpu-set takes vcpu 1 (pinned to 1) down and
    the process leaves pCPU 1."""
    guest(host, tmp_path, "one", 'vcpus=2\ncpus="1"\n')
    assert affinity_column(host, "one") == ["1 / all", "1 / all"]
    assert runs_on(host, "one") == real(1)
    assert host.run("vcpu-pin", "one", "all", "0").returncode == 0
    assert runs_on(host, "one") == real(0)
    assert host.run("vcpu-pin", "one", "1", "1").returncode == 0
    assert runs_on(host, "one") == real(0, 1)
    assert host.run("vcpu-set", "one", "1").returncode == 0
    assert runs_on(host, "one") == real(0)
    assert host.run("vcpu-set", "one", "2").returncode == 0
    assert runs_on(host, "one") == real(0, 1)

    guest(host, tmp_path, "both", 'vcpus=1\ncpus="0-1"\n')
    assert runs_on(host, "both") == real(0, 1)
    guest(host, tmp_path, "free", "")
    assert runs_on(host, "free") == real(0, 1)
    # xl 4.17's parse_vcpu_affinity cuts the maps to max_vcpus, which is
    # still 0 without vcpus=: cpus= alone is dropped (as `xl -N create` shows)
    guest(host, tmp_path, "novcpus", 'cpus="1"\n')
    assert affinity_column(host, "novcpus") == ["all / all"]
    assert runs_on(host, "novcpus") == real(0, 1)


def test_cpupools_bound_where_the_process_runs(host, tmp_path):
    """A 4-pCPU host: the effective affinity is the hard affinity within
    the pool's CPUs; cpupool-migrate resets it to all (sched_move_domain),
    so the process follows the pool; a pool's new CPU widens it; removing
    the last CPU of a vcpu's hard affinity from its pool breaks the
    affinity back to all (cpu_disable_scheduler)."""
    host.env["PYXL_HOST_CPUS"] = "4"
    guest(host, tmp_path, "web", 'vcpus=1\ncpus="1-2"\n')
    assert runs_on(host, "web") == real(1, 2)
    assert host.run("cpupool-cpu-remove", "Pool-0", "2-3").returncode == 0
    assert runs_on(host, "web") == real(1)                  # 1-2 within Pool-0's 0,1
    assert affinity_column(host, "web") == ["1-2 / all"]
    p = host.run("cpupool-create", 'name="p1"', 'cpus="2"')
    assert p.returncode == 0, p.stderr
    assert host.run("cpupool-migrate", "web", "p1").returncode == 0
    assert affinity_column(host, "web") == ["all / all"]
    assert runs_on(host, "web") == real(2)
    assert host.run("cpupool-cpu-add", "p1", "3").returncode == 0
    assert runs_on(host, "web") == real(2, 3)
    assert host.run("vcpu-pin", "web", "0", "3").returncode == 0
    assert runs_on(host, "web") == real(3)
    assert host.run("cpupool-cpu-remove", "p1", "3").returncode == 0
    assert affinity_column(host, "web") == ["all / all"]
    assert runs_on(host, "web") == real(2)


def test_pool_in_the_config_places_the_domain_in_it(host, tmp_path):
    """pool="p1" (c_info.pool_name; libxl__domain_make creates the domain
    in that pool, cpupool_id): the process runs on the pool's CPUs, the
    pool counts the domain and cannot be destroyed while it holds it; a
    pool given by its id (all digits) is the same pool."""
    host.env["PYXL_HOST_CPUS"] = "4"
    assert host.run("cpupool-cpu-remove", "Pool-0", "2-3").returncode == 0
    p = host.run("cpupool-create", 'name="p1"', 'cpus="2-3"')
    assert p.returncode == 0, p.stderr
    guest(host, tmp_path, "inp1", 'pool="p1"\n')
    assert runs_on(host, "inp1") == real(2, 3)
    rows = {r.split()[0]: r.split() for r in host.run("cpupool-list").stdout.splitlines()[1:]}
    assert rows["p1"][-1] == "1" and rows["Pool-0"][-1] == "1"     # Domain-0
    assert host.run("cpupool-destroy", "p1").returncode != 0
    guest(host, tmp_path, "byid", 'pool="0"\nvcpus=1\ncpus="1"\n')
    assert runs_on(host, "byid") == real(1)


def test_placement_survives_a_daemon_restart(host, tmp_path):
    """The affinity is the hypervisor's, kept with the domain: a daemon
    SIGKILLed and restarted places the adopted domain again, even one
    moved meanwhile by someone else."""
    guest(host, tmp_path, "web", 'vcpus=1\ncpus="1"\n')
    pid = domain_pids(host.root)[host.domains()["web"]["domid"]]
    assert runs_on(host, "web") == real(1)
    subprocess.run(["taskset", "-a", "-p", "-c", str(USABLE[0]), str(pid)], check=True,
                   capture_output=True)
    assert runs_on(host, "web") == {USABLE[0]}
    kill_daemon(host)
    assert affinity_column(host, "web") == ["1 / all"]      # a command starts the daemon
    assert runs_on(host, "web") == real(1)


def test_a_stopped_domain_is_placed(host, tmp_path):
    """A paused or stopped process is moved all the same (sched_setaffinity
    needs no cooperation of the process)."""
    guest(host, tmp_path, "web", "")
    pid = domain_pids(host.root)[host.domains()["web"]["domid"]]
    os.kill(pid, signal.SIGSTOP)
    try:
        p = host.run("vcpu-pin", "web", "all", "1")
        assert (p.returncode, p.stderr) == (0, "")
        assert runs_on(host, "web") == real(1)
    finally:
        os.kill(pid, signal.SIGCONT)


def test_what_a_domain_started_moves_with_it():
    """A guest's programs (its shell, tcsd) are its children: moving the
    domain moves them, threads and grandchildren included."""
    from pyxl.hypervisor import placement

    child = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE)
    try:
        grandchild = int(child.stdout.readline())
        for cpus in ({USABLE[1]}, {USABLE[0]}):
            lines: list[str] = []
            placement.apply(child.pid, cpus, lines.append)
            assert lines == []
            assert allowed(child.pid) == [cpus] and allowed(grandchild) == [cpus]
    finally:
        child.kill()
        child.wait()
        os.kill(grandchild, signal.SIGKILL)


def test_a_failure_to_place_is_logged_and_ignored():
    """sched_setaffinity refused (a CPU the process may not have: EINVAL)
    or a process that has ended (ESRCH): one line for the daemon's log, no
    exception."""
    from pyxl.hypervisor import placement

    child = subprocess.Popen(["sleep", "30"])
    lines: list[str] = []
    try:
        placement.apply(child.pid, {max(USABLE) + 4096}, lines.append)
        assert len(lines) == 1 and lines[0].startswith("pid %d: cannot run it on CPUs %d: "
                                                       % (child.pid, max(USABLE) + 4096)), lines
    finally:
        child.kill()
        child.wait()
    lines.clear()
    placement.apply(child.pid, {USABLE[0]}, lines.append)
    assert lines == ["pid %d: cannot run it on CPUs %d: No such process" % (child.pid, USABLE[0])]


def test_a_stub_domain_is_placed(host, tmp_path):
    """vtpmmgr-stubdom and vtpm-stubdom from the guide's configs, with
    vcpus=1 and cpus= added: every thread of each (the stub domains run several) on
    its own pCPU, once each has said it is ready."""
    host.env["PYXL_MINIOS_BOOT_DELAY"] = "0"
    for img in ("mgr.img", "vtpm.img"):
        (tmp_path / img).write_bytes(bytes(16 << 20 if img == "mgr.img" else 8 << 20))
    p = host.run("create", os.path.join(EXAMPLES, "vtpmmgr-stubdom.cfg"), "vcpus=1", 'cpus="1"',
                 'disk=["file:%s,hda,w"]' % (tmp_path / "mgr.img"), timeout=120)
    assert p.returncode == 0, p.stderr
    host.wait_for(lambda: "Waiting for commands from vTPM" in host.console_log("vtpmmgr"),
                  timeout=60, what="the manager's console line")
    p = host.run("create", os.path.join(EXAMPLES, "vtpm.cfg"), "vcpus=1", 'cpus="0"',
                 'disk=["file:%s,hda,w"]' % (tmp_path / "vtpm.img"), timeout=120)
    assert p.returncode == 0, p.stderr
    host.wait_for(lambda: "Waiting for frontend domain" in host.console_log("domu-vtpm"),
                  timeout=60, what="the vTPM's console line")
    assert runs_on(host, "vtpmmgr") == real(1)
    assert runs_on(host, "domu-vtpm") == real(0)
    for name in ("vtpmmgr", "domu-vtpm"):
        assert len(allowed(domain_pids(host.root)[host.domains()[name]["domid"]])) > 1, name
