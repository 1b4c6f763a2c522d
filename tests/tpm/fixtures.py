"""The TPM peers of the suite, as Python objects: a throw-away swtpm (libtpms,
TPM 1.2), `pyxl tpm-serve`, a private TrouSerS tcsd and the tpm-tools run
against it, plus a raw-socket TPM client.

Facts these helpers rely on (measured on Debian 12: trousers 0.3.15,
tpm-tools 1.3.9.2, swtpm 0.7.1):
* swtpm without --tpm2 is a TPM 1.2; `--flags not-need-init,startup-clear`
  makes it answer at once, already started (tcsd never sends TPM_Startup).
  It serves ONE connection at a time.
* `tcsd -e` talks to a TCP TPM at TCSD_TCP_DEVICE_HOSTNAME/PORT and, when that
  fails, silently falls back to the Unix socket TCSD_UN_SOCKET_DEVICE_PATH and
  /dev/tpm0 -- so the Unix path is pointed at nothing.  Its config must be
  root:tss mode 0640 (so tcsd needs root); it chmods the directory holding
  system_ps_file to 0700 and drops to user tss.  It listens only after its
  nine start-up GetCapability queries succeeded.
* tpm-tools ask for passwords through getpass(): with no controlling terminal
  (setsid) they read stdin, so every tool runs under setsid with stdin from a
  file and a time limit.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from peers import which

HEADER = struct.Struct(">HII")


# ---------------------------------------------------------------- sockets

def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_port_pair() -> int:
    """A port P with P+1 free too (swtpm: command port + control port)."""
    for _ in range(100):
        a = socket.socket()
        a.bind(("127.0.0.1", 0))
        p = a.getsockname()[1]
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", p + 1))
        except OSError:
            continue
        finally:
            b.close()
            a.close()
        return p
    raise RuntimeError("no free port pair")


def wait_port(port: int, timeout: float, alive=lambda: True, host="127.0.0.1") -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not alive():
            return False
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def frame(tag: int, ordinal: int, params: bytes = b"", size: int | None = None) -> bytes:
    body = struct.pack(">I", ordinal) + params
    return struct.pack(">HI", tag, size if size is not None else 6 + len(body)) + body


def read_response(sock: socket.socket, timeout: float) -> tuple[bytes, int]:
    """Read one response frame -> (bytes, number of recv() calls).  Returns
    what arrived so far if the peer closes or the time runs out."""
    buf = b""
    calls = 0
    end = time.monotonic() + timeout
    while True:
        if len(buf) >= 6:
            size = struct.unpack(">I", buf[2:6])[0]
            if size < 10 or len(buf) >= size:
                return buf, calls
        left = end - time.monotonic()
        if left <= 0:
            return buf, calls
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return buf, calls
        except OSError:
            return buf, calls
        if not d:
            return buf, calls
        calls += 1
        buf += d


def transact(addr, data: bytes, timeout: float = 10.0) -> bytes:
    """One command over a fresh connection, as tcsd sends it."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr)
    else:
        s = socket.create_connection(addr, timeout=timeout)
    try:
        s.sendall(data)
        resp, _ = read_response(s, timeout)
        return resp
    finally:
        s.close()


def rc_of(resp: bytes) -> int:
    return HEADER.unpack_from(resp)[2]


def getcap(cap: int, sub: bytes = b"") -> bytes:
    return frame(0xC1, 0x65, struct.pack(">II", cap, len(sub)) + sub)


# ---------------------------------------------------------------- processes

def _stop(proc: subprocess.Popen, sig=signal.SIGTERM, wait: float = 5.0) -> int | None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class Swtpm:
    """A throw-away swtpm TPM 1.2 on 127.0.0.1:port, already started."""

    def __init__(self, state_dir: Path, startup: bool = True):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.startup = startup
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def start(self) -> "Swtpm":
        flags = "not-need-init,startup-clear" if self.startup else "not-need-init"
        last = ""
        for _ in range(3):   # a port may be taken between choosing and binding
            self.port = free_port_pair()
            log = self.dir / "swtpm.log"
            self.proc = subprocess.Popen(
                [which("swtpm"), "socket", "--tpmstate", "dir=%s" % self.dir,
                 "--server", "type=tcp,port=%d,bindaddr=127.0.0.1" % self.port,
                 "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1" % (self.port + 1),
                 "--flags", flags, "--log", "file=%s" % log],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if wait_port(self.port, 10, lambda: self.proc.poll() is None):
                return self
            _stop(self.proc)
            last = (self.proc.stderr.read() or b"").decode(errors="replace")
            last += log.read_text(errors="replace") if log.exists() else ""
        raise RuntimeError("swtpm did not start: %s" % last.strip())

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc)
            if self.proc.stderr:
                self.proc.stderr.close()


READY = re.compile(r"ready, (.*), state ")


class PyxlServe:
    """`pyxl tpm-serve` on a free port (--port 0, read back from the ready line)."""

    def __init__(self, pyxl_cmd: list[str], state_dir: Path, *args: str, unix: str | None = None,
                 tcp: bool = True):
        self.cmd = list(pyxl_cmd)
        self.dir = Path(state_dir)
        self.args = list(args)
        self.unix = unix
        self.tcp = tcp
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.ready_line = ""
        self.stderr_path = self.dir.parent / (self.dir.name + ".serve.err")

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def argv(self) -> list[str]:
        a = self.cmd + ["tpm-serve", "--state", str(self.dir)]
        if self.tcp:
            a += ["--port", "0"]
        if self.unix:
            a += ["--unix", self.unix]
        return a + self.args

    def start(self, timeout: float = 60.0) -> "PyxlServe":
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.err, env=env)
        line = self._readline(timeout)
        m = READY.search(line)
        if not m:
            self.stop()
            raise RuntimeError("pyxl tpm-serve did not become ready (exit %s): %r %s"
                               % (self.proc.returncode, line, self.stderr()))
        self.ready_line = line
        t = re.search(r"tcp [^ ,]*:(\d+)", m.group(1))
        if t:
            self.port = int(t.group(1))
        return self

    def _readline(self, timeout: float) -> str:
        end = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf and time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            d = os.read(fd, 4096)
            if not d:
                break
            buf += d
        return buf.decode(errors="replace").strip()

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM) -> int | None:
        if not self.proc:
            return None
        rc = _stop(self.proc, sig, wait=15)
        self.proc.stdout.close()
        self.err.close()
        return rc


# ---------------------------------------------------------------- tcsd + tools

@dataclass
class ToolResult:
    rc: int
    out: str
    err: str

    def __str__(self):
        return "exit %d\nstdout: %s\nstderr: %s" % (self.rc, self.out, self.err)


class Tcsd:
    """A private tcsd talking to a TCP TPM, on its own port and ps file."""

    def __init__(self, work: Path, dev_host: str, dev_port: int, unix_device: str | None = None):
        """unix_device: talk to a Unix-socket TPM (tcsd's fallback device, the
        Berlios tpmd's kind) instead; dev_port should then be a closed port."""
        self.work = Path(work)
        self.dev = (dev_host, dev_port)
        self.unix_device = unix_device
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 30.0) -> "Tcsd":
        w = self.work
        w.mkdir(parents=True, exist_ok=True)
        os.chmod(w, 0o755)
        ps = w / "ps"
        ps.mkdir(exist_ok=True)
        shutil.chown(ps, "tss", "tss")
        os.chmod(ps, 0o700)
        env = dict(os.environ, TCSD_TCP_DEVICE_HOSTNAME=self.dev[0],
                   TCSD_TCP_DEVICE_PORT=str(self.dev[1]),
                   TCSD_UN_SOCKET_DEVICE_PATH=self.unix_device or str(w / "no-such-socket"))
        conf = w / "tcsd.conf"
        for attempt in range(3):     # its port may be taken between choosing and binding
            self.port = free_port()
            conf.write_text("port = %d\nsystem_ps_file = %s\n" % (self.port, ps / "system.data"))
            shutil.chown(conf, "root", "tss")
            os.chmod(conf, 0o640)
            self.log = open(w / "tcsd.log", "wb")
            self.proc = subprocess.Popen([which("tcsd"), "-e", "-f", "-c", str(conf)],
                                         stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=subprocess.STDOUT, env=env)
            if wait_port(self.port, timeout, lambda: self.proc.poll() is None):
                return self
            self.stop()
            log = (w / "tcsd.log").read_text(errors="replace")
            if "bind" not in log.lower():
                break
        raise RuntimeError("tcsd did not come up: %s" % log[-600:])

    def env(self) -> dict:
        return dict(os.environ, TSS_TCSD_HOSTNAME="127.0.0.1", TSS_TCSD_PORT=str(self.port))

    def tool(self, *argv: str, stdin: str = "", timeout: float = 60.0) -> ToolResult:
        """Run one tpm-tools program with no controlling tty, stdin from a file."""
        with tempfile.TemporaryFile() as inp:
            inp.write(stdin.encode())
            inp.seek(0)
            prog = which(argv[0]) or argv[0]
            # timeout(1) inside the new session kills the tool itself; the
            # outer limit is only a safety net for setsid
            cmd = ["setsid", "-w", "timeout", "-k", "5", "%g" % timeout, prog, *argv[1:]]
            try:
                p = subprocess.run(cmd, stdin=inp, capture_output=True, timeout=timeout + 15,
                                   env=self.env())
            except subprocess.TimeoutExpired as e:
                return ToolResult(124, _text(e.stdout), "hung: %s" % _text(e.stderr))
        err = _text(p.stderr)
        if p.returncode in (124, 137):
            err = "timed out after %gs; %s" % (timeout, err)
        return ToolResult(p.returncode, _text(p.stdout), err)

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc)
            self.log.close()


def _text(b: bytes | None) -> str:
    # tpm_version writes stray bytes (and NULs) to stderr; keep printable text
    return (b or b"").replace(b"\0", b"").decode("utf-8", "replace")


# ---------------------------------------------------------------- real faults

def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mount, tcsd)")


class Tmpfs:
    """A small tmpfs at `path` that the test fills and frees: a real ENOSPC
    for whatever writes there."""

    def __init__(self, path: Path, size: str = "1m"):
        self.path = Path(path)
        self.size = size
        self.filler = self.path / "filler"

    def mount(self) -> "Tmpfs":
        self.path.mkdir()
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % self.size,
                            "pyxl-test", str(self.path)], capture_output=True, text=True)
        if p.returncode:        # root without CAP_SYS_ADMIN (a container)
            pytest.skip("cannot mount a tmpfs: %s" % p.stderr.strip())
        return self

    def fill(self) -> None:
        """Write until the kernel says ENOSPC, down to single bytes."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            chunk = 1 << 16
            while chunk:
                try:
                    os.write(fd, bytes(chunk))
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    chunk //= 2
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()

    def umount(self) -> None:
        subprocess.run(["umount", str(self.path)], check=True)

    def __enter__(self) -> "Tmpfs":
        return self.mount()

    def __exit__(self, *exc) -> None:
        self.umount()


def set_fsize(pid: int, limit: int | None) -> None:
    """Lower the soft RLIMIT_FSIZE of process pid to limit (None: back up to
    the hard limit): the kernel then refuses its writes beyond it, EFBIG."""
    hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)[1]
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard if limit is None else limit, hard))
