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

SBIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
TCSD_START_TIMEOUT = 30.0
TOOL_TIMEOUT = 120.0
TCSD_HOST, TCSD_PORT = "127.0.0.1", 30003    # tcsd.conf's default port, in the guest's network

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
    def __init__(self, tpm, out, net):
        self.tpm = tpm                 # GuestTpm
        self.out = out                 # console printer (str)
        self.net = net                 # the guest's network namespace (GuestNetwork)
        self.guardian: subprocess.Popen | None = None
        self.lifeline: int | None = None

    def handles(self, name: str) -> bool:
        """tcsd and tpm-tools by name; never a path (which would run
        whatever host program the path names)."""
        return name == "tcsd" or (name.startswith("tpm_") and "/" not in name)

    def run(self, name: str, args: list[str], **io) -> int | None:
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
            return self.net.call(self.tool, prog, args, **io)
        except NoNetwork as e:
            (io.get("err") or self._print)(
                b"-bash: %s: not run: the guest has no network of its own: %s\n"
                % (name.encode(), e.strerror.encode()))
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

    # -- tpm-tools -------------------------------------------------------------
    def tool(self, prog: str, args: list[str], cwd: str | None = None, stdin: bytes | None = None,
             out=None, err=None, env: dict | None = None) -> int:
        """Run a tool to its end: `cwd` its working directory, `stdin` its
        input (None: nothing), `out`/`err` where its output goes (callables
        taking bytes; default the console), `env` variables the guest
        exported.  Returns its exit status, as a shell's $? shows it."""
        out = out or self._print
        err = err or self._print
        env = dict(os.environ, **(env or {}), TSS_TCSD_HOSTNAME=TCSD_HOST,
                   TSS_TCSD_PORT=str(TCSD_PORT))
        status = 0
        try:
            p = subprocess.run([prog, *args], input=stdin or b"", capture_output=True, cwd=cwd,
                               env=env, timeout=TOOL_TIMEOUT, start_new_session=True)
            stdout, stderr, status = p.stdout, p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            stdout, stderr, status = e.stdout or b"", e.stderr or b"", 128 + 9
        except OSError as e:
            err(b"-bash: %s: %s\n" % (os.path.basename(prog).encode(), e.strerror.encode()))
            return 126
        if stdout:
            out(stdout)
        text = _stderr_text(stderr)
        if text:
            err((text if text.endswith("\n") else text + "\n").encode())
        return 128 - status if status < 0 else status

    def _print(self, data: bytes) -> None:
        self.out(data.decode("utf-8", "replace"))


def _stderr_text(err: bytes) -> str:
    """A tool's stderr minus binary junk: tpm_version writes an unterminated
    buffer of stray bytes there on every run (a tpm-tools bug); a terminal
    would show mojibake the guide does not.  Real error lines are text."""
    lines = err.replace(b"\0", b"").decode("utf-8", "replace").splitlines(keepends=True)
    keep = [ln for ln in lines if ln.rstrip("\r\n").isprintable()]
    return "".join(k for k in keep if k.strip())
