"""The TPM 2.0 peers: a throw-away `swtpm socket --tpm2` and tpm2-tools.

Facts these helpers rely on (measured on Debian 12: swtpm 0.7.1 with libtpms
0.9.2, tpm2-tools 5.4 with tpm2-tss 3.2.1):
* `swtpm socket --tpm2 --flags not-need-init,startup-clear` answers at once,
  already started; its control channel is on the port after the command one.
* tpm2-tools' `-T swtpm:host=H,port=P` opens a new connection to P for every
  command and one to P+1 for each control command (CMD_SET_LOCALITY at start).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from peers import which
from tpm.fixtures import _stop, free_port_pair, wait_port


class Swtpm2:
    """A throw-away swtpm TPM 2.0 on 127.0.0.1:port (control on port + 1)."""

    def __init__(self, state_dir: Path, startup: bool = True, unix: str | None = None):
        """unix: serve on the Unix socket unix (control: unix.ctrl) instead."""
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.startup = startup
        self.unix = unix
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def start(self) -> "Swtpm2":
        flags = "not-need-init,startup-clear" if self.startup else "not-need-init"
        last = ""
        for _ in range(3):   # a port may be taken between choosing and binding
            self.port = free_port_pair()
            log = self.dir / "swtpm.log"
            if self.unix:
                where = ["--server", "type=unixio,path=%s" % self.unix,
                         "--ctrl", "type=unixio,path=%s.ctrl" % self.unix]
            else:
                where = ["--server", "type=tcp,port=%d,bindaddr=127.0.0.1" % self.port,
                         "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1" % (self.port + 1)]
            self.proc = subprocess.Popen(
                [which("swtpm"), "socket", "--tpm2", "--tpmstate", "dir=%s" % self.dir,
                 *where, "--flags", flags, "--log", "file=%s" % log],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self.unix and wait_unix(self.unix, 10, lambda: self.proc.poll() is None):
                return self
            if not self.unix and wait_port(self.port + 1, 10, lambda: self.proc.poll() is None):
                return self
            _stop(self.proc)
            last = (self.proc.stderr.read() or b"").decode(errors="replace")
        raise RuntimeError("swtpm --tpm2 did not start: %s" % last.strip())

    def stop(self) -> int | None:
        if not self.proc:
            return None
        rc = _stop(self.proc)
        if self.proc.stderr:
            self.proc.stderr.close()
        return rc


@dataclass
class Run:
    rc: int
    out: str
    err: str


def wait_unix(path: str, timeout: float, alive=lambda: True) -> bool:
    """Wait until something accepts connections on the Unix socket path."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and alive():
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(path)
                return True
            except OSError:
                time.sleep(0.05)
    return False


def tool(where: int | str, *argv: str, cwd: Path, timeout: float = 120.0) -> Run:
    """One tpm2-tools program against the TPM on 127.0.0.1:where, or on the
    Unix socket where (its control channel at where.ctrl)."""
    env = dict(os.environ, TSS2_LOG="all+none")
    env.pop("TPM2TOOLS_TCTI", None)
    tcti = "swtpm:path=%s" % where if isinstance(where, str) else \
        "swtpm:host=127.0.0.1,port=%d" % where
    p = subprocess.run([which(argv[0]) or argv[0], "-T", tcti, *argv[1:]], cwd=cwd,
                       capture_output=True, timeout=timeout, env=env)
    return Run(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))
