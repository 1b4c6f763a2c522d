"""swtpm's control channel, the part `pyxl tpm-serve --tpm2` serves.

tpm2-tss's swtpm TCTI (`-T swtpm:host=H,port=P`) sends TPM commands to port
P and control commands to port P+1, each on a new connection: it sets the
locality (CMD_SET_LOCALITY) when it starts, and Tss2_Tcti_Swtpm_Reset sends
CMD_INIT (a power cycle).  The protocol is swtpm's include/swtpm/tpm_ioctl.h:
a big-endian u32 command code and the command's fixed-size request body; the
answer is a big-endian u32 result (ptm_res) and the response body.  Handled
as swtpm 0.7 does in src/swtpm/ctrlchannel.c (ctrlchannel_process_fd):

* CMD_GET_CAPABILITY: the u64 capability mask, nothing else (the commands
  below, and the TCG command prefix the command port understands);
* CMD_INIT (u32 init_flags): power off, _TPM_Init -- the TPM then waits for
  TPM2_Startup from the client; a body of another size is TPM_BAD_PARAMETER;
* CMD_SHUTDOWN (no body): answered 0, then the server stops;
* CMD_SET_LOCALITY (u8): localities 0..4, else TPM_BAD_LOCALITY;
* a message shorter than the command code: TPM_BAD_PARAMETER; any other
  command: TPM_BAD_ORDINAL (swtpm's answer to a command it does not know).

Framing (ControlFramer) as swtpm's ctrlchannel_recv_cmd: what has arrived
once the command code and its body are there is one message (swtpm reads the
whole request with one recvmsg); a message still short of that is given
GRACE seconds from its first byte, then the connection is closed without an
answer, as swtpm's poll() runs out; so does a connection closed mid-message.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Protocol


class Cmd(IntEnum):
    """enum in swtpm's include/swtpm/tpm_ioctl.h (the ones served here)."""
    GET_CAPABILITY = 0x01
    INIT = 0x02
    SHUTDOWN = 0x03
    SET_LOCALITY = 0x05


# PTM_CAP_* in tpm_ioctl.h
PTM_CAP_INIT = 1
PTM_CAP_SHUTDOWN = 1 << 1
PTM_CAP_SET_LOCALITY = 1 << 3
PTM_CAP_SEND_COMMAND_HEADER = 1 << 15    # the TCG prefix on the command port (serve.py)
CAPABILITIES = PTM_CAP_INIT | PTM_CAP_SHUTDOWN | PTM_CAP_SET_LOCALITY | \
    PTM_CAP_SEND_COMMAND_HEADER

# TPM 1.2 result codes swtpm answers with (libtpms include/libtpms/tpm_error.h)
TPM_SUCCESS = 0
TPM_BAD_PARAMETER = 3
TPM_BAD_ORDINAL = 10
TPM_BAD_LOCALITY = 0x3D

BODY_SIZE: dict[int, int] = {Cmd.INIT: 4, Cmd.SET_LOCALITY: 1}    # request bodies (ptm_init, ptm_loc)
MAX_MESSAGE = 4 + 4 + 4096                        # swtpm's struct input: cmd + ptm_hdata


GRACE = 0.5                                       # swtpm's deadline for the rest of a message


class ControlFramer:
    """Cuts a control connection's bytes into messages (the Framer
    interface of pyxl.tpm.serve: feed, deadline, take)."""

    def __init__(self, grace: float = GRACE):
        self.buf = bytearray()
        self.grace = grace
        self.first_data = 0.0

    def feed(self, data: bytes, now: float) -> None:
        if not self.buf:
            self.first_data = now
        self.buf += data

    @property
    def deadline(self) -> float | None:
        return self.first_data + self.grace if self.buf else None

    def take(self, now: float, eof: bool = False) -> tuple[str, bytes] | None:
        if not self.buf:
            return None
        if not complete(bytes(self.buf[:8])) and len(self.buf) < MAX_MESSAGE:
            if eof or now >= self.first_data + self.grace:
                self.buf.clear()
                return "close", b""           # no answer: the connection goes
            return None
        msg = bytes(self.buf[:MAX_MESSAGE])
        del self.buf[:MAX_MESSAGE]
        if self.buf:
            self.first_data = now
        return "control", msg


class Host(Protocol):
    """What the channel acts on (pyxl.tpm.serve.TPMServer)."""

    def ctrl_init(self, flags: int) -> int: ...
    def ctrl_shutdown(self) -> None: ...
    def ctrl_set_locality(self, locality: int) -> None: ...


def complete(buf: bytes) -> bool:
    """Has buf the whole of its message (the code and the command's body)?"""
    if len(buf) < 4:
        return False
    cmd = int.from_bytes(buf[:4], "big")
    return len(buf) >= 4 + BODY_SIZE.get(cmd, 0)


def handle(msg: bytes, host: Host) -> bytes:
    """The answer to one control message (what arrived in one read)."""
    res = struct.Struct(">I").pack
    if len(msg) < 4:
        return res(TPM_BAD_PARAMETER)
    cmd, body = int.from_bytes(msg[:4], "big"), msg[4:]
    if cmd == Cmd.GET_CAPABILITY:
        return struct.pack(">Q", CAPABILITIES)
    if cmd == Cmd.INIT:
        if len(body) != BODY_SIZE[Cmd.INIT]:
            return res(TPM_BAD_PARAMETER)
        return res(host.ctrl_init(int.from_bytes(body, "big")))
    if cmd == Cmd.SHUTDOWN:
        if body:
            return res(TPM_BAD_PARAMETER)
        host.ctrl_shutdown()
        return res(TPM_SUCCESS)
    if cmd == Cmd.SET_LOCALITY:
        if len(body) < BODY_SIZE[Cmd.SET_LOCALITY]:
            return res(TPM_BAD_PARAMETER)
        if body[0] > 4:
            return res(TPM_BAD_LOCALITY)
        host.ctrl_set_locality(body[0])
        return res(TPM_SUCCESS)
    return res(TPM_BAD_ORDINAL)
