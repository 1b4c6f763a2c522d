"""The guest's TPM userland: the host's real TrouSerS tcsd and tpm-tools,
run on behalf of the simulated guest against the guest's own /dev/tpm0.

    ul = Userland(guest_tpm, out, net)
    ul.run("tcsd", [])            # True: handled (printed what a shell would)
    ul.run("tpm_version", [])

Everything here runs inside the guest's own network namespace (netns.py):
tcsd listens on its usual port, 30003, and reaches /dev/tpm0 at
127.0.0.1:6545 -- both in that namespace, so no other local user can
reach them -- and the tools connect to tcsd there.  A host without a
namespace for the guest (pyxl not run as root) gets a clear error on the
console instead; nothing ever listens in the host's namespace.

`tcsd` starts the host's tcsd in TCP-device mode (`tcsd -e`, with
TCSD_TCP_DEVICE_* pointing at the guest's /dev/tpm0 endpoint) with a
private config (root:tss 0640, as tcsd insists) and persistent storage
file.  tcsd runs under a small guardian process holding the read end of a
pipe whose write end only the guest process has: when the guest dies --
shutdown, destroy (SIGKILL) or crash -- the guardian sees EOF, stops tcsd
and removes the private directory.  So nothing a guest started outlives it.

`tpm_*` runs the host's tpm-tools program against this guest's tcsd (before
`tcsd` ran nobody listens there, so the tool fails as it would in a guest
without tcsd) and shows its output on the console.  A program the host
lacks is `-bash: NAME: command not found`.

`tpm2_*` (and `tpm2`) runs the host's tpm2-tools against the guest's
/dev/tpmrm0 (tpmrm.py) with no flags, as on a real guest: the environment
names the guest's TCTI (TPM2TOOLS_TCTI, forced after whatever the guest
exported) and a `-T`/`--tcti` option may only name the guest's own device
(`device`, `device:/dev/tpmrm0`, `device:/dev/tpm0`) -- any other TCTI would
reach the host (its /dev/tpm*, or `cmd:` running a host program).  On a
TPM 1.2 vTPM there is no /dev/tpmrm0 and nothing listens: the tools fail
as they do on such a guest.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from pyxl.domain.linux.netns import NoNetwork
from pyxl.domain.linux.tpmrm import TPM2_PORT

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Any, Callable

    from pyxl.domain.linux.netns import GuestNetwork
    from pyxl.domain.linux.tpm import GuestTpm

SBIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
TCSD_START_TIMEOUT = 30.0
TOOL_TIMEOUT = 120.0
TCSD_HOST, TCSD_PORT = "127.0.0.1", 30003    # tcsd.conf's default port, in the guest's network
TCTI_OPTIONS = ("-T", "--tcti")
GUEST_TCTIS = ("device", "device:/dev/tpmrm0", "device:/dev/tpm0")
# variables through which TSS2 and tpm2-tools (old and new) choose a TCTI
TCTI_VARIABLES = ("TPM2TOOLS_TCTI", "TPM2TOOLS_TCTI_NAME", "TPM2TOOLS_DEVICE_FILE",
                  "TPM2TOOLS_SOCKET_ADDRESS", "TPM2TOOLS_SOCKET_PORT", "TCTI", "TSS2_TCTI")

# runs in the guardian process: stdin is the guest's lifeline
GUARDIAN = r"""
import os, select, shutil, signal, subprocess, sys
argv, log, work = sys.argv[1:-2], sys.argv[-2], sys.argv[-1]
with open(log, "ab") as f:
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
signal.signal(signal.SIGTERM, lambda *a: None)
while p.poll() is None:
    r, _, _ = select.select([0], [], [], 0.5)
    if r and not os.read(0, 4096):
        break
if p.poll() is None:
    p.terminate()
    try:
        p.wait(3)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
shutil.rmtree(work, ignore_errors=True)
"""


def which(prog: str) -> str | None:
    return shutil.which(prog, path=os.pathsep.join(SBIN + tuple(
        os.environ.get("PATH", "").split(os.pathsep))))


def listening(port: int) -> bool:
    """Whether tcsd serves yet; called inside the guest's network."""
    try:
        socket.create_connection((TCSD_HOST, port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Userland:
    def __init__(self, tpm: GuestTpm, out: Callable[[str], None], net: GuestNetwork):
        self.tpm = tpm                 # GuestTpm
        self.out = out                 # console printer (str)
        self.net = net                 # the guest's network namespace (GuestNetwork)
        self.guardian: subprocess.Popen | None = None
        self.lifeline: int | None = None

    def handles(self, name: str) -> bool:
        """tcsd, tpm-tools and tpm2-tools by name; never a path (which would
        run whatever host program the path names)."""
        return name in ("tcsd", "tpm2") or (name.startswith(("tpm_", "tpm2_"))
                                            and "/" not in name)

    def run(self, name: str, args: list[str], **io: Any) -> int | None:
        """The program's exit status; None if it is not one of ours.  `io`
        is passed to tool(): where the program runs and its streams."""
        if not self.handles(name):
            return None
        prog = which(name)
        if prog is None:
            (io.get("err") or self._print)(b"-bash: %s: command not found\n" % name.encode())
            return 127
        try:
            if name == "tcsd":
                self.net.call(self.start_tcsd, prog, args)
                return 0
            if name == "tpm2" or name.startswith("tpm2_"):
                return self.tpm2_tool(name, prog, args, io)
            return self.net.call(self.tool, prog, args, **io)
        except NoNetwork as e:
            (io.get("err") or self._print)(
                b"-bash: %s: not run: the guest has no network of its own: %s\n"
                % (name.encode(), (e.strerror or str(e)).encode()))
            return 126

    # -- tcsd ----------------------------------------------------------------
    def tcsd_running(self) -> bool:
        return self.guardian is not None and self.guardian.poll() is None

    def start_tcsd(self, prog: str, args: list[str]) -> None:
        """Like the real daemon started from a shell: silent, back to the
        prompt once it serves (its complaints would go to syslog)."""
        if self.tcsd_running():
            return                    # a second tcsd cannot bind the port: it just exits
        try:
            dev = self.tpm.device_address()    # here already inside the guest's network
        except OSError:
            dev = None
        if dev is None:
            return                    # no TPM device: tcsd gives up (TDDL_Open failed)
        work = tempfile.mkdtemp(prefix="pyxl-guest-tcsd-")        # 0700, ours
        ps = os.path.join(work, "ps")
        conf = os.path.join(work, "tcsd.conf")
        try:
            # tcsd, once it is tss, reaches its files here; other users see nothing
            shutil.chown(work, "root", "tss")
            os.chmod(work, 0o750)
            os.mkdir(ps, 0o700)
            shutil.chown(ps, "tss", "tss")
            with open(conf, "w") as f:
                f.write("port = %d\nsystem_ps_file = %s\n"
                        % (TCSD_PORT, os.path.join(ps, "system.data")))
            shutil.chown(conf, "root", "tss")
            os.chmod(conf, 0o640)
        except (OSError, LookupError):
            shutil.rmtree(work, ignore_errors=True)
            return                    # no tss user / not root: tcsd refuses its config
        env = dict(os.environ, TCSD_TCP_DEVICE_HOSTNAME=dev[0], TCSD_TCP_DEVICE_PORT=str(dev[1]),
                   TCSD_UN_SOCKET_DEVICE_PATH=os.path.join(work, "no-such-socket"))
        r, w = os.pipe()
        os.set_inheritable(w, False)
        try:
            self.guardian = subprocess.Popen(
                [sys.executable, "-S", "-c", GUARDIAN, prog, "-e", "-f", "-c", conf,
                 os.path.join(work, "tcsd.log"), work],
                stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                start_new_session=True, close_fds=True)
        finally:
            os.close(r)
        if self.lifeline is not None:
            os.close(self.lifeline)
        self.lifeline = w             # closes when this guest process ends, however it ends
        deadline = time.monotonic() + TCSD_START_TIMEOUT
        while time.monotonic() < deadline and self.tcsd_running():
            if listening(TCSD_PORT):
                return
            time.sleep(0.05)

    def stop(self) -> None:
        if self.lifeline is not None:
            os.close(self.lifeline)
            self.lifeline = None
        if self.guardian is not None:
            try:
                self.guardian.wait(5)
            except subprocess.TimeoutExpired:
                pass

    # -- tpm2-tools ------------------------------------------------------------
    def tpm2_tool(self, name: str, prog: str, args: list[str], io: dict) -> int:
        """A tpm2-tools program on the guest's /dev/tpmrm0 (module doc)."""
        err = io.get("err") or self._print
        try:
            args = guest_tcti_args(args)
        except ValueError as e:
            err(b"%s: %s\n" % (name.encode(), str(e).encode()))
            return 1
        try:
            addr = self.tpm.tpmrm_address()
        except OSError:
            addr = None
        # nothing listens on a guest without a TPM 2.0: the tool fails to connect
        host, port = addr or ("127.0.0.1", TPM2_PORT)
        env = {k: v for k, v in (io.get("env") or {}).items() if k not in TCTI_VARIABLES}
        env["TPM2TOOLS_TCTI"] = "mssim:host=%s,port=%d" % (host, port)
        return self.net.call(self.tool, prog, args, **dict(io, env=env))

    # -- tpm-tools -------------------------------------------------------------
    def tool(self, prog: str, args: list[str], cwd: str | None = None, stdin: bytes | None = None,
             out: Callable[[bytes], object] | None = None,
             err: Callable[[bytes], object] | None = None, env: dict | None = None) -> int:
        """Run a tool to its end: `cwd` its working directory, `stdin` its
        input (None: nothing), `out`/`err` where its output goes (callables
        taking bytes; default the console), `env` variables the guest
        exported.  Returns its exit status, as a shell's $? shows it."""
        out = out or self._print
        err = err or self._print
        host_env = {k: v for k, v in os.environ.items() if k not in TCTI_VARIABLES}
        env = dict(host_env, **(env or {}), TSS_TCSD_HOSTNAME=TCSD_HOST,
                   TSS_TCSD_PORT=str(TCSD_PORT))
        status = 0
        try:
            p = subprocess.run([prog, *args], input=stdin or b"", capture_output=True, cwd=cwd,
                               env=env, timeout=TOOL_TIMEOUT, start_new_session=True)
            stdout, stderr, status = p.stdout, p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            stdout, stderr, status = e.stdout or b"", e.stderr or b"", 128 + 9
        except OSError as e:
            err(b"-bash: %s: %s\n" % (os.path.basename(prog).encode(),
                                       (e.strerror or str(e)).encode()))
            return 126
        if stdout:
            out(stdout)
        text = _stderr_text(stderr)
        if text:
            err((text if text.endswith("\n") else text + "\n").encode())
        return 128 - status if status < 0 else status

    def _print(self, data: bytes) -> None:
        self.out(data.decode("utf-8", "replace"))


def guest_tcti_args(args: list[str]) -> list[str]:
    """args without a -T/--tcti option that names the guest's own device
    (the environment's TCTI applies); ValueError for any other TCTI."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        value = None
        if a in TCTI_OPTIONS:
            if i + 1 >= len(args):
                raise ValueError("option %s needs a TCTI" % a)
            value, i = args[i + 1], i + 2
        elif a.startswith("--tcti="):
            value, i = a[len("--tcti="):], i + 1
        elif a.startswith("-T") and not a.startswith("--"):
            value, i = a[2:], i + 1
        else:
            out.append(a)
            i += 1
            continue
        if value not in GUEST_TCTIS:
            raise ValueError("TCTI %r: this guest's TPM is /dev/tpmrm0 (-T device)" % value)
    return out


def _stderr_text(err: bytes) -> str:
    """A tool's stderr minus binary junk: tpm_version writes an unterminated
    buffer of stray bytes there on every run (a tpm-tools bug); a terminal
    would show mojibake the guide does not.  Real error lines are text."""
    lines = err.replace(b"\0", b"").decode("utf-8", "replace").splitlines(keepends=True)
    keep = [ln for ln in lines if ln.rstrip("\r\n").isprintable()]
    return "".join(k for k in keep if k.strip())
