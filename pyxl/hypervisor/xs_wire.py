"""xenstored's wire ABI: xen/include/public/io/xs_wire.h (Xen 4.17).

The one home of the xenstore protocol's numbers: message types, the error
names sent in XS_ERROR replies (`xsd_errors`, in the header's order), the
payload and path limits, and the 16-byte message header
`struct xsd_sockmsg {u32 type, req_id, tx_id, len}` (host byte order, as
libxenstore writes it).  Both the daemon's socket server
(pyxl.hypervisor.xenstored) and pyxl's xenstore client speak it; the
domains' internal wire (pyxl.hypervisor.wire) keeps these type numbers.
"""

from __future__ import annotations

import errno as _errno
import struct
from enum import IntEnum


class XsType(IntEnum):
    """enum xsd_sockmsg_type."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    # 20 was XS_RESTRICT, removed
    RESET_WATCHES = 21
    DIRECTORY_PART = 22


XS_TYPE_COUNT = 23
XS_INVALID = 0xFFFF

# struct xsd_errors xsd_errors[]: the only error strings on the wire.
XSD_ERRORS = ("EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
              "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM")

XENSTORE_PAYLOAD_MAX = 4096       # "Violating this is very bad."
XENSTORE_ABS_PATH_MAX = 3072      # "Violating these just gets you an error back"
XENSTORE_REL_PATH_MAX = 2048

XS_WATCH_PATH = 0                 # enum xs_watch_type: fields of a WATCH_EVENT
XS_WATCH_TOKEN = 1

DOMID_SELF = 0x7FF0               # xen/include/public/xen.h

SOCKET_NAME = "socket"            # xs_lib.c: xenstored's socket is <rundir>/socket

HEADER = struct.Struct("=IIII")   # type, req_id, tx_id, len


def error_name(err: int) -> str:
    """xenstored's send_error: the errno's name if the table has it, else
    "EINVAL" (an untranslatable error)."""
    name = _errno.errorcode.get(err, "")
    return name if name in XSD_ERRORS else "EINVAL"


def error_number(name: bytes | str) -> int:
    """libxenstore's get_error: the errno of an XS_ERROR string, EINVAL for
    anything not in the table."""
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return getattr(_errno, name) if name in XSD_ERRORS else _errno.EINVAL


def pack(kind: int, payload: bytes, req_id: int = 0, tx_id: int = 0) -> bytes:
    """One message: header + payload."""
    return HEADER.pack(int(kind), req_id, tx_id, len(payload)) + payload


def strings(payload: bytes) -> list[bytes]:
    """The nul-terminated strings of a payload (what follows the last nul
    is not a string: xenstored's get_strings)."""
    parts = payload.split(b"\0")
    return parts[:-1]


def atoi(text: bytes) -> int:
    """C's atoi, as xenstored parses domids and offsets: optional blanks and
    sign, then digits; junk gives 0; the result wraps as a C int."""
    s = text.lstrip(b" \t\n\v\f\r")
    sign = 1
    if s[:1] in (b"+", b"-"):
        sign = -1 if s[:1] == b"-" else 1
        s = s[1:]
    n = 0
    for c in s:
        if not 0x30 <= c <= 0x39:
            break
        n = n * 10 + c - 0x30
    n = (sign * n) & 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n
