"""An in-test host: a Hypervisor, dom0's xenstore, and domain processes
started much as the toolstack starts them: one socket each, handed over here
as PYXL_XEN_FD (the daemon puts it in the domain's spec as hv_fd)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pyxl.hypervisor.services import Hypervisor
from pyxl.hypervisor.xenstore import QueueSink

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


class Host:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.hv = Hypervisor()
        self.sink = QueueSink()
        self.xs = self.hv.xs(self.sink)
        self.procs: list[subprocess.Popen] = []

    def create(self, domid: int, name: str) -> None:
        self.hv.domain_created(domid, name=name, console_log=str(self.log_path(domid)))

    def log_path(self, domid: int) -> Path:
        return self.tmp / ("console-%d.log" % domid)

    def console(self, domid: int) -> str:
        """The console log as the hypervisor has written it so far."""
        p = self.log_path(domid)
        return p.read_bytes().decode(errors="replace") if p.exists() else ""

    def final_console(self, domid: int) -> str:
        """The whole console log of a domain whose process has ended: once
        its connection is gone the hypervisor has handled (and logged)
        everything it sent."""
        assert self.hv.wait_disconnected(domid, 20), "domain %d still connected" % domid
        return self.console(domid)

    def wait_console(self, domid: int, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.console(domid)
            if text in out:
                return out
            time.sleep(0.02)
        raise AssertionError("%r never appeared on console %d:\n%s"
                             % (text, domid, self.console(domid)))

    def spawn(self, domid: int, argv: list[str], pass_fds=(), env=None,
              stdin=None, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
        """`prefix`: a command to run the domain's Python under (a bench's
        valgrind), as spawn_kernel's."""
        sock = self.hv.connect_domain(domid)
        e = dict(os.environ, PYXL_XEN_FD=str(sock.fileno()),
                 PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        e.update(env or {})
        try:
            p = subprocess.Popen([*prefix, sys.executable, *argv], pass_fds=[sock.fileno(), *pass_fds],
                                 env=e, stdin=stdin, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        finally:
            sock.close()
        self.procs.append(p)
        return p

    def add_vtpm(self, fe: int, be: int, uuid: str, devid: int = 0) -> None:
        """What libxl__device_vtpm_add writes, in one transaction
        (Xen 4.17 libxl_vtpm.c libxl__set_xenstore_vtpm, through
        libxl_device.c libxl__device_add_async)."""
        xs = self.xs
        fe_path = f"/local/domain/{fe}/device/vtpm/{devid}"
        be_path = f"/local/domain/{be}/backend/vtpm/{fe}/{devid}"
        tx = xs.transaction_start()
        for path, owner, reader, keys in (
                (fe_path, fe, be, {"backend": be_path, "backend-id": be, "state": 1,
                                   "handle": devid}),
                (be_path, be, fe, {"frontend": fe_path, "frontend-id": fe, "online": 1,
                                   "state": 1, "handle": devid, "uuid": uuid,
                                   "resume": "False"})):
            xs.mkdir(path, tx)
            xs.set_perms(path, [f"n{owner}", f"r{reader}"], tx)
            for k, v in keys.items():
                xs.write(f"{path}/{k}", str(v), tx)
        xs.transaction_end(tx, True)

    def read(self, path: str, default=None):
        try:
            return self.xs.read(path).decode()
        except OSError:
            return default

    def wait_value(self, path: str, value: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.read(path) == value:
                return
            time.sleep(0.02)
        raise AssertionError("%s never became %r (is %r)" % (path, value, self.read(path)))

    def destroy(self, domid: int) -> None:
        """xl destroy's device part: remove the domain's xenstore dirs."""
        self.hv.domain_destroyed(domid)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(5)
        self.hv.close()


def spawn_kernel(host: Host, domid: int, name: str, kernel: str, cmdline: str = "",
                 disks: dict | None = None, readonly: bool = False,
                 prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start a domain the way the toolstack does: pyxl.domain.process.main
    with a spec (pyxl.domain.spec) naming the kernel, its hypervisor socket
    and its block fds (opened read-only for a `,r` disk, as blkback does).
    `prefix`: a command to run the domain's Python under (a bench's
    valgrind)."""
    from pyxl.domain import spec as domspec

    flags = os.O_RDONLY if readonly else os.O_RDWR
    fds = {vdev: os.open(path, flags) for vdev, path in (disks or {}).items()}
    sock = host.hv.connect_domain(domid)
    spec = domspec.make(domid=domid, name=name, uuid="00000000-0000-0000-0000-%012d" % domid,
                        kernel=kernel, cmdline=cmdline, memkb=16384, vcpus=1, paused=False,
                        status=str(host.tmp / ("status-%d" % domid)), xenbus="", disks=[],
                        hv_fd=sock.fileno(), block=fds)
    spec_fd = domspec.to_fd(spec)
    env = dict(os.environ, PYXL_MINIOS_BOOT_DELAY="0",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    # as pyxl.toolstack.spawn starts it: no site module, the paths given
    boot = ("import sys; sys.path[:0] = %r; from pyxl.domain.process import main; main()"
            % ([str(REPO)] + [p for p in sys.path if p.endswith("site-packages")]))
    try:
        p = subprocess.Popen([*prefix, sys.executable, "-S", "-c", boot]
                             + domspec.argv(domid, spec_fd),
                             pass_fds=[sock.fileno(), spec_fd, *fds.values()],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        sock.close()
        os.close(spec_fd)
        for fd in fds.values():
            os.close(fd)
    host.procs.append(p)
    return p
