"""The spec a domain process starts from, and how it gets there.

The daemon (pyxl.toolstack.spawn) builds it with `make`, puts it in an
anonymous memory file the process inherits (`to_fd`) and starts the process
with `argv(domid, fd)`:

    python -S -c "...main()" pyxl-domain domid=N spec-fd=M

-- the domid on the command line, as Xen's device model gets -xen-domid --
and the domain process (pyxl.domain.process) reads the spec back with
`load(argv)`.  Nothing of the domain's configuration is ever on a command
line: /proc/PID/cmdline is readable by every local user, and the spec holds
the guest's kernel command line and its disks.  The memory file is reachable
only through the process's own fds, which other users cannot open.
"""

from __future__ import annotations

import json
import os

ARGV0 = "pyxl-domain"
SPEC_MAX = 1 << 20       # bytes: far more than any domain's spec


class SpecError(Exception):
    """No readable spec where the command line says it is."""


def make(*, domid: int, name: str, uuid: str, kernel: str, cmdline: str, memkb: int,
         vcpus: int, paused: bool, status: str, xenbus: str, disks: list, hv_fd: int,
         block: dict) -> dict:
    """Every key a domain process reads: who it is (domid, name, uuid,
    memkb, vcpus), what it boots (kernel, cmdline), whether it starts
    paused, its inherited fds (hv_fd: its hypervisor connection; block:
    vdev -> an image blkback opened), where it leaves its shutdown reason
    (status) and where it reconnects to a restarted daemon (xenbus)."""
    return {"domid": domid, "name": name, "uuid": uuid, "kernel": kernel, "cmdline": cmdline,
            "memkb": memkb, "vcpus": vcpus, "paused": paused, "status": status,
            "xenbus": xenbus, "disks": disks, "hv_fd": hv_fd, "block": block}


def to_fd(spec: dict) -> int:
    """The spec in a new memfd, at offset 0 (close-on-exec: the caller passes
    it on with pass_fds and closes its own copy)."""
    data = json.dumps(spec, separators=(",", ":")).encode()
    if len(data) > SPEC_MAX:
        raise SpecError("domain spec of %d bytes (at most %d)" % (len(data), SPEC_MAX))
    fd = os.memfd_create("pyxl-domain-spec", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def argv(domid: int, fd: int) -> list[str]:
    """The domain process's arguments: its domid and the spec's fd, nothing else."""
    return [ARGV0, "domid=%d" % domid, "spec-fd=%d" % fd]


def load(args: list[str]) -> dict:
    """Read (and close) the spec whose fd `args` names."""
    fd = next((int(a[len("spec-fd="):]) for a in args if a.startswith("spec-fd=")
               and a[len("spec-fd="):].isdigit()), None)
    if fd is None:
        raise SpecError("no spec-fd=N argument")
    chunks, size = [], 0
    try:
        while size <= SPEC_MAX:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise SpecError("cannot read the spec from fd %d: %s" % (fd, e.strerror)) from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    if size > SPEC_MAX:
        raise SpecError("domain spec larger than %d bytes" % SPEC_MAX)
    try:
        spec = json.loads(b"".join(chunks))
    except ValueError as e:
        raise SpecError("unreadable domain spec: %s" % e) from None
    if not isinstance(spec, dict):
        raise SpecError("unreadable domain spec: not an object")
    return spec
