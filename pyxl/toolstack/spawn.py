"""Making a domain on the simulated host: what libxl_create.c does for
libxl_domain_create_new (do_domain_create, initiate_domain_create,
libxl__domain_make, the devices' xenstore entries, then waiting for their
backends) and what the domain builder does (here: spawning the domain
process).  Each function takes the HostState (pyxl.toolstack.hostd).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid as uuidlib

from pyxl.hypervisor import sched
from pyxl.hypervisor.domain import HVM_MAX_VCPUS, MAX_VIRT_CPUS, Domain, guest_cmdline, \
    pid_start_time
from pyxl.fsutil import open_append
from pyxl.hypervisor.xenstore import payload_fits
from pyxl.toolstack import devices, teardown
from pyxl.toolstack.errors import Fault
from pyxl.toolstack.resources import free_memory_kb, place, set_affinity_locked

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from pyxl.toolstack.hostd import HostState

MAXMEM_SLACK_KB = 1024       # LIBXL_MAXMEM_CONSTANT


def cfg(d: Any, *keys: str, default: Any = None) -> Any:
    """d[k1][k2]... of a libxl_domain_config JSON object, or `default`."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def fault_point(name: str) -> None:
    """Test-only: with PYXL_TEST_FAULT_AT=<name> in its environment the
    daemon SIGKILLs itself at that point (the crash-consistency tests)."""
    if os.environ.get("PYXL_TEST_FAULT_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def create(st: HostState, config: dict, config_file: str = "", config_text: str = "",
           paused: bool = False, monitor: bool = True,
           device_timeout: float = devices.DEVICE_TIMEOUT) -> dict:
    """libxl_domain_create_new: checks as initiate_domain_create makes
    them, the domain made (libxl__domain_make), its xenstore entries and
    devices written, its process started, then (without the host's lock)
    every vTPM backend awaited (libxl__wait_device_connection)."""
    name = cfg(config, "c_info", "name") or ""
    if not name:
        raise Fault("BAD_REQUEST", reason="domain config without a name")
    max_memkb = int(cfg(config, "b_info", "max_memkb", default=32 * 1024))
    target_memkb = int(cfg(config, "b_info", "target_memkb", default=max_memkb))
    vcpus = int(cfg(config, "b_info", "max_vcpus", default=1) or 1)
    kernel = cfg(config, "b_info", "kernel", default=None) \
        or cfg(config, "b_info", "type.pv", "kernel", default="") or ""
    uuid = cfg(config, "c_info", "uuid") or str(uuidlib.uuid4())
    disks = config.get("disks") or []
    vtpms = config.get("vtpms") or []
    check_name(name)
    # libxl__domain_build_info_setdefault: avail_vcpus (vcpus=) may be at
    # most HVM_MAX_VCPUS *bytes* long, whatever the guest type
    avail = cfg(config, "b_info", "avail_vcpus", default=None) or []
    if avail and (max(avail) + 8) // 8 > HVM_MAX_VCPUS:
        raise Fault("VCPUS_BITMAP")
    with st.lock:
        if st.stopping:
            raise Fault("SHUTTING_DOWN")
        # seed xl resolves vtpm backends while parsing
        vtpm_backends = []
        for v in vtpms:
            be = v.get("backend_domname")
            if be is None:
                be = str(v.get("backend_domid", 0))
            try:
                vtpm_backends.append(st.resolve(be).domid)
            except Fault:
                raise Fault("VTPM_BACKEND_MISSING", backend=be) from None
        # xl's freemem(): does it fit?
        if free_memory_kb(st) < max_memkb + MAXMEM_SLACK_KB:
            raise Fault("NOMEM")
        # libxl__domain_config_setdefault: pool= names an existing pool
        poolid = 0
        pool_name = cfg(config, "c_info", "pool_name", default=None)
        if pool_name is not None:
            pool = sched.pool_of_qualifier(st.host, pool_name)
            if pool is None:
                raise Fault("ILLEGAL_POOL", pool=pool_name)
            poolid = pool["poolid"]
        domid = st.table.allocate_domid()
        # XEN_DOMCTL_createdomain: arch_sanitise_domain_config's limit
        limit = MAX_VIRT_CPUS if cfg(config, "c_info", "type", default="pv") == "pv" \
            else HVM_MAX_VCPUS
        if not 1 <= vcpus <= limit:
            st.save()
            raise Fault("DOMAIN_CREATE_FAIL", reason="Invalid argument")
        if st.table.by_name(name) is not None:
            # libxl__domain_make: the domain is made, the rename fails, it is torn down
            st.save()
            raise Fault("NAME_IN_USE", domid=domid, name=name)
        if not payload_fits("/local/domain/%d/name" % domid, name):
            st.save()             # as above: xs_write of the name fails (E2BIG)
            raise Fault("NAME_WRITE_FAILED", domid=domid, name=name)
        # initiate_domain_create, after libxl__domain_make: disk backends are stat'ed
        for i, disk in enumerate(disks):
            path = disk.get("pdev_path") or ""
            if path and not os.path.exists(path):
                st.save()
                raise Fault("DISK_MISSING", domid=domid, vdev=disk.get("vdev", ""),
                            path=path, index=i)
        dom = Domain(domid, name, uuid, max_memkb, target_memkb, vcpus, kernel=kernel,
                     config=config, config_text=config_text, config_file=config_file)
        dom.cpupool = poolid
        dom.monitored = monitor
        set_config_affinity(st, dom)      # libxl__build_pre, before the kernel is read
        from pyxl.toolstack import platform

        if kernel and not os.path.isfile(kernel) and not platform.embedded_kernel(kernel):
            st.save()
            raise Fault("KERNEL_MISSING", domid=domid, path=kernel)
        # libxl__build_post: cpu/N/availability "online" for the vcpus in
        # avail_vcpus (all of them unless vcpus= is below maxvcpus=)
        if avail and set(range(vcpus)) - set(avail):
            dom.vcpus_online = sorted(v for v in set(avail) if v < vcpus)
        st.table.domains[domid] = dom
        try:
            st.hv.domain_created(domid, name=name, home=False,
                                 console_log=st.paths.console_log(name))
            platform.grant_iomem(st.hv, domid, config.get("b_info") or {})
            write_xenstore(st, dom)
            open_disks(st, dom)
            spawn(st, dom, paused)
        except Exception:
            teardown.teardown(st, dom)
            raise
        # A daemon killed from here until save() returns never recorded
        # the domain: its process, not known to the next daemon, is told
        # so when it dials in and ends (persist.refuse).  From save()
        # on it is the next daemon's to adopt, whether or not its first
        # HELLO reached us (it dials the next daemon if not).
        fault_point("create:spawned")
        dom.config.setdefault("c_info", {})["uuid"] = uuid
        st.monitor_log(dom, "Waiting for domain %s (domid %d) to die [pid %d]"
                       % (name, domid, os.getpid()))
        st.save()
        st.changed.notify_all()
    # libxl waits (without our lock) for every backend to reach InitWait
    # (libxl's domain is still paused then; this one's process runs, and its
    # frontend may already have taken the backend on past it)
    for devid, be_domid in enumerate(vtpm_backends):
        be = "/local/domain/%d/backend/vtpm/%d/%d" % (be_domid, domid, devid)
        if not devices.wait_vtpm_backend(st.xs, be, device_timeout,
                                         alive=lambda: be_domid in st.table.domains):
            with st.lock:
                teardown.destroy_locked(st, dom)
            raise Fault("DEVICE_TIMEOUT", domid=domid, path=be, kind="vtpm")
    return {"domid": domid, "name": name, "uuid": uuid}


def set_config_affinity(st: HostState, dom: Domain) -> None:
    """libxl__build_pre (libxl_dom.c): each vcpu's hard and soft affinity
    from the configuration (cpus=, cpus_soft=), one libxl_set_vcpuaffinity
    per vcpu.  A hard affinity with no CPU of the domain's pool is Xen's
    -EINVAL (vcpu_set_hard_affinity), and the build fails at that vcpu:
    the domain made (its domid used) is torn down before it ever ran."""
    hard = cfg(dom.config, "b_info", "vcpu_hard_affinity", default=None) or []
    soft = cfg(dom.config, "b_info", "vcpu_soft_affinity", default=None) or []
    for v in range(min(max(len(hard), len(soft)), dom.vcpus)):
        h = hard[v] if v < len(hard) else None
        s = soft[v] if v < len(soft) else None
        if not set_affinity_locked(st, dom, v, h, s):
            st.save()
            raise Fault("AFFINITY_BUILD_FAILED", domid=dom.domid, vcpu=v)


def check_name(name: str) -> None:
    """What pyxl itself cannot take in a domain name (libxl takes any
    bytes that fit in xenstore): bytes that are not UTF-8 (they reach
    the daemon as lone surrogates).  A long name is no problem: the log
    files named after it use fsutil.safe_name, which bounds them."""
    try:
        name.encode()
    except UnicodeEncodeError:
        raise Fault("NAME_NOT_UTF8", shown=ascii(name.encode("utf-8", "surrogateescape")
                                                 .decode("latin-1"))) from None


def _either(value: int | None, default: int) -> int:
    return default if value is None else value


def write_xenstore(st: HostState, dom: Domain) -> None:
    """libxl__domain_make's and the devices' xenstore entries (written
    again for each domain a restarted daemon adopts, with what mem-set,
    mem-max and vcpu-set wrote since)."""
    devices.write_domain(st.xs, dom.domid, dom.name, dom.uuid,
                         _either(dom.mem_static_max_kb, dom.max_memkb),
                         _either(dom.mem_target_kb, dom.target_memkb), dom.vcpus,
                         sched.online(dom), dom.kernel,
                         cfg(dom.config, "b_info", "cmdline", default="") or "", dom.created)
    for disk in dom.config.get("disks") or []:
        devid = devices.vdev_to_devid(disk.get("vdev", ""))
        if devid >= 0:
            devices.add_vbd(st.xs, dom.domid, 0, disk, devid)
    for i, v in enumerate(dom.config.get("vtpms") or []):
        be = v.get("backend_domname")
        be_dom = st.table.by_name(be) if be is not None else \
            st.table.domains.get(int(v.get("backend_domid", 0)))
        if not v.get("uuid"):
            v["uuid"] = str(uuidlib.uuid4())
        if be_dom is None:
            # its backend's domain died (a restarted daemon): xenstore kept
            # the frontend's device, naming the dead backend, until
            # vtpm-detach; so does this one (from state that records it)
            if "backend_domid" in v:
                devices.add_vtpm(st.xs, dom.domid, int(v["backend_domid"]),
                                 int(v.get("devid", i)), v["uuid"], backend_alive=False)
            continue
        v["backend_domid"] = be_dom.domid
        devices.add_vtpm(st.xs, dom.domid, be_dom.domid, int(v.get("devid", i)), v["uuid"])
    for i, nic in enumerate(dom.config.get("nics") or []):
        # libxl__device_nic_setdefault; the MAC it draws is kept in the config
        nic.setdefault("devid", i)
        full = devices.nic_setdefault(nic, uuidlib.uuid4().bytes)
        nic["mac"] = full["mac"]
        _, be = devices.add_vif(st.xs, dom.domid, 0, full)
        devices.backend_ready(st.xs, be, hotplug=True)      # netback, vif-bridge


def open_disks(st: HostState, dom: Domain) -> None:
    """blkback opens every image the domain was given."""
    fds = []
    for i, disk in enumerate(dom.config.get("disks") or []):
        path = disk.get("pdev_path") or ""
        if not path:
            continue
        flags = os.O_RDWR if devices.disk_readwrite(disk) else os.O_RDONLY
        try:
            fds.append((disk.get("vdev", ""), os.open(path, flags | os.O_CLOEXEC)))
        except OSError:
            for _, fd in fds:
                os.close(fd)
            raise Fault("DISK_MISSING", domid=dom.domid, vdev=disk.get("vdev", ""),
                        path=path, index=i) from None
        devid = devices.vdev_to_devid(disk.get("vdev", ""))
        if devid >= 0:
            be = "/local/domain/0/backend/vbd/%d/%d" % (dom.domid, devid)
            size = os.fstat(fds[-1][1]).st_size
            st.xs.write(be + "/sectors", str(size // 512))
            st.xs.write(be + "/sector-size", "512")
            st.xs.write(be + "/state", str(devices.XenbusStateInitWait))
    st.disk_fds[dom.domid] = fds


def spawn(st: HostState, dom: Domain, paused: bool) -> None:
    """The domain builder: the domain's process, given its hypervisor
    connection, its spec and the block devices blkback opened."""
    from pyxl.domain import spec as domspec

    status = st.paths.domain_status_file(dom.domid)
    try:
        os.unlink(status)
    except FileNotFoundError:
        pass
    st.forget_disconnect(dom.domid)
    child_sock = st.hv.connect_domain(dom.domid)
    # the block devices blkback opened, handed to the domain's blkfront
    block = st.disk_fds.get(dom.domid, [])
    spec = domspec.make(
        domid=dom.domid, name=dom.name, uuid=dom.uuid, kernel=dom.kernel,
        cmdline=guest_cmdline(cfg(dom.config, "b_info", "cmdline", default="") or ""),
        memkb=dom.target_memkb, vcpus=dom.vcpus, paused=paused, status=status,
        xenbus=st.paths.xenbus_socket, disks=dom.config.get("disks") or [],
        hv_fd=child_sock.fileno(), block={vdev: fd for vdev, fd in block})
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    boot = ("import sys;sys.path[:0]=%r;from pyxl.domain.process import main;main()"
            % ([os.path.dirname(pkg_root)] + _site_paths()))
    spec_fd = err = -1
    try:
        spec_fd = domspec.to_fd(spec)     # never on the command line: /proc is public
        err = open_append(st.paths.console_log(dom.name) + ".stderr")
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", boot] + domspec.argv(dom.domid, spec_fd),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            pass_fds=(child_sock.fileno(), spec_fd) + tuple(fd for _, fd in block),
            start_new_session=True, close_fds=True)
    finally:
        child_sock.close()
        for fd in (spec_fd, err):
            if fd >= 0:
                os.close(fd)
    dom.pid = proc.pid
    dom.pid_start = pid_start_time(proc.pid)
    dom.paused = paused
    st.procs[dom.domid] = proc
    st.pidfds[dom.domid] = os.pidfd_open(proc.pid)
    place(st, dom)       # still starting Python: before any of the domain's own code
    st.wake()
    if paused:   # the domain stops itself before running a single instruction
        _stopped_or_gone(proc.pid, 2.0)


def _stopped_or_gone(pid: int, timeout: float) -> bool:
    """Wait until our child `pid` has stopped (SIGSTOP) or ended, as
    waitid(WSTOPPED | WEXITED | WNOWAIT) reports it, without reaping it;
    False after `timeout`.  waitid cannot time out, so it waits on a thread
    of its own, which a child that never stops leaves waiting until the
    child ends (destroy kills it)."""
    done = threading.Event()

    def wait() -> None:
        try:
            os.waitid(os.P_PID, pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        done.set()

    threading.Thread(target=wait, name="stopped-%d" % pid, daemon=True).start()
    return done.wait(timeout)


def _site_paths() -> list[str]:
    # stub domains need cryptography & co.; a Linux guest imports none of them
    return [p for p in sys.path if p.endswith("site-packages")]
