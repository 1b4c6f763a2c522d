"""A guest's TPM is reachable only by that guest (and root).

The attack: the guide's chain is up, the guest has loaded xen-tpmfront and
started tcsd.  Another local user (`nobody`, through util-linux setpriv)
tries every TCP port the guest's userland listens on -- tcsd's and the TCP
device tcsd uses as /dev/tpm0 -- from the host: a raw TPM_Extend of PCR 12,
the real `tpm_version` and `tpm_takeownership -y -z` with TSS_TCSD_PORT
pointing at the port -- and a look into tcsd's directory.  All of it must
fail, and no process of this host (daemon, stub domains, guest, tcsd) may
have any TCP or UDP socket, listening or not, in the host's network
namespace.  The guest itself still runs the real tcsd and tpm-tools and
owns its TPM.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess

import pytest
from test_walkthrough_e2e import GUIDE_TPM_VERSION, host  # noqa: F401  (the fixture)
from wt_host import REPO, in_netns, procs_with_root, squeeze

from peers import which
from pyxl.domain.linux.netns import GuestNetwork

TPM_ORD_Extend, TPM_ORD_GetRandom = 0x14, 0x46
LISTEN = "0A"                                    # TCP_LISTEN in /proc/net/tcp


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return inodes
    for fd in fds:
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            continue
        if m:
            inodes.add(int(m.group(1)))
    return inodes


def _inet_sockets(net_dir: str) -> dict[int, tuple[str, int, str]]:
    """inode -> (protocol, local port, state) of every IPv4/IPv6 socket of
    a network namespace, as its /proc/.../net/{tcp,udp}{,6} list them."""
    out = {}
    for name in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = open(os.path.join(net_dir, name)).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            out[int(f[9])] = (name, int(f[1].rsplit(":", 1)[1], 16), f[3])
    return out


def _tcp_listeners(net_dir: str) -> dict[int, int]:
    """inode -> port of every listening TCP socket of a network namespace."""
    return {ino: port for ino, (proto, port, st) in _inet_sockets(net_dir).items()
            if proto.startswith("tcp") and st == LISTEN}


def _pid_of_program(root: str, prog: str) -> int:
    pids = [p for p in procs_with_root(root) if _argv0(p) == prog]
    assert len(pids) == 1, (prog, pids)
    return pids[0]


def _argv0(pid: int) -> str:
    try:
        return os.path.basename(open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")[0].decode())
    except OSError:
        return ""


def _as_nobody(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                           "--", *argv], env=env, capture_output=True, text=True, timeout=60,
                          errors="replace", cwd="/")


def _guide_chain(h) -> None:
    """The guide's three domains, created one by one."""
    mgr_img, vtpm_img, kernel = h.dir / "mgr.img", h.dir / "vtpm.img", h.dir / "vmlinuz"
    for path, size in ((mgr_img, 16 << 20), (vtpm_img, 8 << 20)):
        with open(path, "wb") as f:
            f.truncate(size)
    kernel.write_text("stand-in kernel\n")
    h.create("vtpmmgr-stubdom.cfg", 'disk=["file:%s,hda,w"]' % mgr_img)
    h.wait_console("vtpmmgr", "Waiting for commands from vTPM's:")
    h.create("vtpm.cfg", 'disk=["file:%s,hda,w"]' % vtpm_img)
    h.wait_console("domu-vtpm", "Waiting for frontend domain to connect..")
    h.create("domu.cfg", 'kernel="%s"' % kernel)


EXTEND = r"""
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(struct.pack(">HII I", 0xC1, 34, %d, 12) + bytes(20))
print(s.recv(4096).hex())
""" % TPM_ORD_Extend


@pytest.mark.slow
def test_other_users_cannot_reach_the_guests_tpm(host):  # noqa: F811
    if shutil.which("setpriv") is None:
        pytest.skip("needs util-linux setpriv")
    h = host
    _guide_chain(h)
    h.guest("modprobe xen-tpmfront", "tcsd")

    # what the guest's userland listens on, seen from inside its own network
    tcsd = _pid_of_program(h.root, "tcsd")
    procs = procs_with_root(h.root)
    ours = set().union(*(_socket_inodes(p) for p in procs))
    guest_ports = sorted({port for ino, port in _tcp_listeners("/proc/%d/net" % tcsd).items()
                          if ino in ours})
    assert len(guest_ports) >= 2, guest_ports           # tcsd's port and /dev/tpm0's

    # -- the attack, as another local user --------------------------------------
    python = "/usr/bin/python3"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", "TSS_TCSD_HOSTNAME": "127.0.0.1"}
    # (a port some unrelated program listens on in the host's namespace --
    # tpm-serve's default is 6545 too -- says nothing about the guest's)
    host_listeners = _tcp_listeners("/proc/%d/net" % os.getpid())
    foreign = {port for ino, port in host_listeners.items() if ino not in ours}
    breaches = []
    for port in sorted(set(guest_ports) - foreign):
        r = _as_nobody([python, "-S", "-c", EXTEND, str(port)], env)
        if r.returncode == 0 or "ConnectionRefusedError" not in r.stderr:
            breaches.append("connected to port %d: %s%s" % (port, r.stdout, r.stderr[-200:]))
        for tool in (["tpm_version"], ["tpm_takeownership", "-y", "-z"]):
            r = _as_nobody([which(tool[0]), *tool[1:]], dict(env, TSS_TCSD_PORT=str(port)))
            if r.returncode == 0 or "Communication failure" not in r.stdout + r.stderr:
                breaches.append("%s through port %d: rc %d %s%s"
                                % (tool[0], port, r.returncode, r.stdout, r.stderr[-200:]))
    # nor can it look into the directory of the guest's tcsd (config, storage, log)
    argv = open("/proc/%d/cmdline" % tcsd, "rb").read().decode().split("\0")
    work = os.path.dirname(argv[argv.index("-c") + 1])
    r = _as_nobody(["ls", "-A", work], env)
    if r.returncode == 0:
        breaches.append("listed %s: %s" % (work, r.stdout.split()))
    assert breaches == [], "\n".join(breaches)

    # no process of this host has any TCP or UDP socket in the host's network
    # namespace (so no listener either): daemon, stub domains, guest, tcsd
    host_view = _inet_sockets("/proc/%d/net" % os.getpid())
    leaks = {p: sorted(host_view[i] for i in _socket_inodes(p) if i in host_view)
             for p in procs_with_root(h.root)}
    assert {p: ports for p, ports in leaks.items() if ports} == {}, \
        {_argv0(p): ports for p, ports in leaks.items() if ports}

    # -- inside the guest its TPM is still its own --------------------------------
    out = "root@domu:~# " + h.guest("tpm_version", "tpm_takeownership -y -z").replace("\r", "")
    lines = out.splitlines()
    i = lines.index("root@domu:~# tpm_version")
    assert [squeeze(x) for x in lines[i + 1:i + 8]] == GUIDE_TPM_VERSION.splitlines(), out
    j = lines.index("root@domu:~# tpm_takeownership -y -z")
    assert lines[j + 1:] == ["root@domu:~# "], out          # silent: the guest took ownership


NO_ROOT = r"""
import sys
sys.path.insert(0, sys.argv[1])
from pyxl.domain.linux import netns, userland

class NoChip:
    def device_address(self):
        raise AssertionError("a TPM endpoint was opened")

out = []
ul = userland.Userland(NoChip(), out.append, netns.GuestNetwork())
for name in ("tcsd", "tpm_version"):
    assert ul.run(name, [])
print("".join(out), end="")
"""


def test_without_root_the_guests_userland_is_refused_not_moved_to_the_host(peer):
    """A pyxl run by an ordinary user cannot give a guest a network of its
    own: the guest's tcsd and tools say so, and open nothing anywhere."""
    peer("tcsd")
    peer("tpm-tools")
    if shutil.which("setpriv") is None:
        pytest.skip("needs util-linux setpriv")
    r = _as_nobody(["/usr/bin/python3", "-S", "-c", NO_ROOT, str(REPO)])
    assert r.returncode == 0, r.stderr
    why = "unshare(CLONE_NEWNET): Operation not permitted (a guest's private network needs root)"
    assert r.stdout.splitlines() == [
        "-bash: %s: not run: the guest has no network of its own: %s" % (name, why)
        for name in ("tcsd", "tpm_version")]


def test_the_guests_network_is_its_own():
    """In-process: what GuestNetwork runs is in a namespace of its own with
    lo up, and a socket listening there is not in the host's."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root")

    def ns() -> int:
        return os.stat("/proc/thread-self/ns/net").st_ino

    def listen() -> socket.socket:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        return s

    net = GuestNetwork()
    assert net.call(ns) != ns()
    assert net.call(ns) == net.call(ns)                 # one namespace per guest
    with net.call(listen) as s:
        port = s.getsockname()[1]
        net.call(lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close())
        inode = os.fstat(s.fileno()).st_ino
        assert inode in net.call(lambda: _tcp_listeners("/proc/thread-self/net"))
        assert inode not in _tcp_listeners("/proc/thread-self/net")
    with pytest.raises(ZeroDivisionError):
        net.call(lambda: 1 // 0)                        # the caller gets the exception


@pytest.mark.slow
def test_without_its_chip_the_guests_tcsd_never_reaches_the_hosts_tpm(host):  # noqa: F811
    """tcsd -e opens its TCP device anew for every command and, when that
    cannot be reached, the host's /dev/tpm0, /udev/tpm0 or /dev/tpm
    (open_device in TrouSerS' src/tddl/tddl.c).  After `rmmod xen_tpmfront`
    the guest's device must therefore still be there, failing every
    command, for as long as the guest lives."""
    h = host
    _guide_chain(h)
    h.guest("modprobe xen-tpmfront", "tcsd")
    tcsd = _pid_of_program(h.root, "tcsd")
    env = dict(e.split("=", 1) for e in open("/proc/%d/environ" % tcsd, "rb").read()
               .decode().split("\0") if "=" in e)
    dev = env["TCSD_TCP_DEVICE_HOSTNAME"], int(env["TCSD_TCP_DEVICE_PORT"])
    h.guest("rmmod xen_tpmfront")
    out = h.guest("tpm_version").replace("\r", "")
    assert "failed: 0x00001087 - layer=tddl, code=0087 (135), I/O error\n" in out, out
    with in_netns(tcsd, lambda: socket.create_connection(dev, timeout=10)) as s:
        s.sendall(struct.pack(">HIII", 0xC1, 14, TPM_ORD_GetRandom, 16))
        assert s.recv(4096) == b""                     # the command failed: no chip


def test_the_guests_userland_runs_tpm_tools_by_name_only():
    """A `tpm_` word with a slash names a path, not a tool: not the
    userland's to run (the guest's shell says command not found)."""
    from pyxl.domain.linux.userland import Userland

    ul = Userland(None, None, None)
    assert ul.handles("tpm_version") and ul.handles("tcsd")
    assert not ul.handles("tpm_/../../usr/bin/id")
