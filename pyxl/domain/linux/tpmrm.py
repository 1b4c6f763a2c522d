"""The guest kernel's /dev/tpmrm0 for a TPM 2.0 vTPM: Linux's in-kernel
resource manager (drivers/char/tpm/tpm2-space.c, tpmrm-dev.c), reached by
the guest's userland -- the host's real tpm2-tools and any TSS2 program --
through the Microsoft simulator's socket protocol, TSS2's `mssim` TCTI.

Why mssim: a TSS2 context of the mssim TCTI keeps one connection to the TPM
port for its whole life (tpm2-tss src/tss2-tcti/tcti-mssim.c: connected at
init, closed at finalize), so one connection is one open() of /dev/tpmrm0
and the resource manager's space lives exactly as long as it; the swtpm
TCTI (tcti-swtpm.c) opens a new connection for every command, which would
make every command its own space.  The guest's userland gets
TPM2TOOLS_TCTI=mssim:host=127.0.0.1,port=2321 (userland.py); both ports are
in the guest's private network namespace (netns.py), so only the guest (and
the host's root) can reach them.

The protocol (tcti-mssim.c; the simulator's TpmTcpProtocol.h):
  TPM port 2321:      u32 TPM_SEND_COMMAND (8) | u8 locality | u32 size |
                      command  ->  u32 size | response | u32 0
                      u32 TPM_SESSION_END (20): the client goes
  platform port 2322: u32 command -> u32 result.  The TCTI sends
                      MS_SIM_POWER_ON (1) and MS_SIM_NV_ON (11) when it
                      starts, MS_SIM_CANCEL_ON/OFF (9/10) around a cancel:
                      answered 0 and nothing done -- the chip is powered
                      by its vtpm-stubdom, and a guest's kernel device
                      cannot power-cycle it.  Anything else: 1 (refused).
The locality byte is ignored: Linux sends every command at locality 0.

The space (tpm2-space.c's semantics, per connection): transient objects
and sessions a client's commands create are the client's; TPM2_FlushContext
of one forgets it, and so does TPM2_ContextSave of a session (the client
took it out of the space, as tpm2_save_context's TPM2_RC_REFERENCE_H0 case
forgets it); when the client closes, everything still in its space is
flushed.  Unlike Linux, handles are not virtualised: commands from
different clients are not interleaved by the guest's shell, which runs one
program at a time.
"""

from __future__ import annotations

import socket
import struct
import threading

from pyxl.domain.linux.tpm import _listen, _recv_exact
from pyxl.domain.tpm2_frames import TPM_CC_ContextSave, TPM_CC_FlushContext, flush_request

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Callable

TPM2_PORT = 2321                       # tpm2-tss's TCTI_MSSIM_DEFAULT_PORT (platform: +1)
TPM_SEND_COMMAND, TPM_SESSION_END = 8, 20
MS_SIM_POWER_ON, MS_SIM_CANCEL_ON, MS_SIM_CANCEL_OFF, MS_SIM_NV_ON = 1, 9, 10, 11
PLATFORM_OK = (MS_SIM_POWER_ON, MS_SIM_NV_ON, MS_SIM_CANCEL_ON, MS_SIM_CANCEL_OFF)
MAX_FRAME = 4096                       # TPM_BUFSIZE: a bigger write() is -E2BIG

# commands whose response carries a new object or session handle
CREATES_HANDLE = frozenset({
    0x131,    # CreatePrimary
    0x157,    # Load
    0x167,    # LoadExternal
    0x191,    # CreateLoaded
    0x161,    # ContextLoad
    0x176,    # StartAuthSession
    0x15B,    # HMAC_Start
    0x107,    # MAC_Start
    0x186,    # HashSequenceStart
})
HT_TRANSIENT, HT_HMAC_SESSION, HT_POLICY_SESSION = 0x80, 0x02, 0x03


def is_space_handle(handle: int) -> bool:
    return handle >> 24 in (HT_TRANSIENT, HT_HMAC_SESSION, HT_POLICY_SESSION)


def is_session(handle: int) -> bool:
    return handle >> 24 in (HT_HMAC_SESSION, HT_POLICY_SESSION)


class Space:
    """One open() of /dev/tpmrm0: its commands go to `transmit`, what they
    leave loaded is flushed by close()."""

    def __init__(self, transmit: Callable[[bytes], bytes]):
        self.transmit = transmit
        self.handles: set[int] = set()

    def command(self, req: bytes) -> bytes:
        rsp = self.transmit(req)
        if len(req) < 10 or len(rsp) < 10 or rsp[6:10] != b"\0\0\0\0":
            return rsp
        cc = int.from_bytes(req[6:10], "big")
        if cc in CREATES_HANDLE and len(rsp) >= 14:
            h = int.from_bytes(rsp[10:14], "big")
            if is_space_handle(h):
                self.handles.add(h)
        elif cc in (TPM_CC_FlushContext, TPM_CC_ContextSave) and len(req) >= 14:
            h = int.from_bytes(req[10:14], "big")
            if cc == TPM_CC_FlushContext or is_session(h):
                self.handles.discard(h)
        return rsp

    def close(self) -> None:
        """tpm2_del_space: flush what the client left behind."""
        for h in sorted(self.handles):
            try:
                self.transmit(flush_request(h))
            except OSError:
                break                  # the chip went away: nothing is left to flush
        self.handles.clear()


class TpmrmServer:
    """/dev/tpmrm0 for the guest's userland: both mssim ports, listening
    inside the guest's network namespace (call start() there)."""

    def __init__(self, transmit: Callable[[bytes], bytes]):
        self.transmit = transmit       # GuestTpm.transmit: through the tpmif ring
        self.listeners: list[socket.socket] = []

    def start(self, host: str = "127.0.0.1", port: int = TPM2_PORT) -> tuple[str, int]:
        tpm, platform = _listen((host, port)), _listen((host, port + 1))
        self.listeners = [tpm, platform]
        for lst, serve in ((tpm, self._serve_tpm), (platform, self._serve_platform)):
            threading.Thread(target=_accept, args=(lst, serve), name="tpmrm0",
                             daemon=True).start()
        return tpm.getsockname()[:2]

    def _serve_tpm(self, conn: socket.socket) -> None:
        space = Space(self.transmit)
        try:
            while True:
                head = _recv_exact(conn, 4)
                if head is None or int.from_bytes(head, "big") != TPM_SEND_COMMAND:
                    return                 # TPM_SESSION_END, EOF or garbage: close()
                hdr = _recv_exact(conn, 5)
                if hdr is None:
                    return
                size = int.from_bytes(hdr[1:], "big")
                if not 10 <= size <= MAX_FRAME:
                    return
                req = _recv_exact(conn, size)
                if req is None:
                    return
                try:
                    rsp = space.command(req)
                except OSError:
                    return                 # the chip is gone: the file's I/O fails
                conn.sendall(struct.pack(">I", len(rsp)) + rsp + bytes(4))
        except OSError:
            return
        finally:
            conn.close()
            space.close()

    def _serve_platform(self, conn: socket.socket) -> None:
        with conn:
            while True:
                cmd = _recv_exact(conn, 4)
                if cmd is None or int.from_bytes(cmd, "big") == TPM_SESSION_END:
                    return
                try:
                    conn.sendall(struct.pack(">I", 0 if int.from_bytes(cmd, "big")
                                             in PLATFORM_OK else 1))
                except OSError:
                    return


def _accept(listener: socket.socket, serve: Callable[[socket.socket], None]) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
