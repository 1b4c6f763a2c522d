"""The one bounds-checked reader and writer for the TPM 1.2 wire format.

Everything the engine parses (command frames, structures, the state blob)
goes through Reader, what it produces through Writer (structures append
their packed runs to a Writer's parts, layout.py).  All integers are big-endian
(Part 2 2.1).  Reading follows libtpms's loaders (src/tpm12/tpm_load.c,
tpm_sizedbuffer.c), and each refusal carries the return code they give:
a read past the end raises TPMDecodeError (TPM_BAD_PARAM_SIZE, TPM_Load*);
a 32-bit sized buffer longer than libtpms would allocate raises TPMSizeError
before its bytes are looked for (TPM_SIZE, TPM_SizedBuffer_Load ->
TPM_Malloc); a BOOL other than 0 or 1 raises TPMBadBool (TPM_BAD_PARAMETER,
TPM_LoadBool).
"""

from __future__ import annotations

import builtins
import struct
from typing import Any

from .constants import TPM_BAD_PARAM_SIZE, TPM_BAD_PARAMETER, TPM_SIZE

# The largest buffer libtpms allocates (TPM_ALLOC_MAX, include/libtpms/tpm_memory.h);
# a sized field announcing more is refused whatever follows it.
ALLOC_MAX = 0x20000

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class TPMDecodeError(ValueError):
    """A structure or parameter ran past the end of its buffer."""

    rc: int = TPM_BAD_PARAM_SIZE

    def __init__(self, offset: int, need: int, have: int, what: str = ""):
        self.offset, self.need, self.have, self.what = offset, need, have, what
        super().__init__("TPM decode error%s at offset %d: need %d bytes, have %d"
                         % (" in " + what if what else "", offset, need, have))


class TPMSizeError(TPMDecodeError):
    """A sized field longer than the TPM allocates (TPM_Malloc)."""

    rc = TPM_SIZE


class TPMBadBool(TPMDecodeError):
    """A TPM_BOOL that is neither 0 nor 1 (TPM_LoadBool)."""

    rc = TPM_BAD_PARAMETER


class Reader:
    """Sequential, bounds-checked view over bytes."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: builtins.bytes, pos: int = 0, end: int | None = None):
        self.data = data if isinstance(data, bytes) else bytes(data)
        self.pos = pos
        self.end = len(self.data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, n: int, what: str = "") -> int:
        if n < 0 or self.pos + n > self.end:
            raise TPMDecodeError(self.pos, n, self.end - self.pos, what)
        p = self.pos
        self.pos = p + n
        return p

    def u8(self) -> int:
        return self.data[self._take(1, "u8")]

    def bool(self) -> int:
        p = self._take(1, "BOOL")
        v = self.data[p]
        if v > 1:
            raise TPMBadBool(p, 1, 1, "BOOL %#x" % v)
        return v

    # u16, u32 and digest check their bounds themselves, as fixed() does
    # (nearly every command reads one: a call to _take each saved)
    def u16(self) -> int:
        p = self.pos
        if p + 2 > self.end:
            raise TPMDecodeError(p, 2, self.end - p, "u16")
        self.pos = p + 2
        return _U16.unpack_from(self.data, p)[0]

    def u32(self) -> int:
        p = self.pos
        if p + 4 > self.end:
            raise TPMDecodeError(p, 4, self.end - p, "u32")
        self.pos = p + 4
        return _U32.unpack_from(self.data, p)[0]

    def u64(self) -> int:
        return _U64.unpack_from(self.data, self._take(8, "u64"))[0]

    def bytes(self, n: int, what: str = "bytes") -> builtins.bytes:
        p = self._take(n, what)
        return self.data[p:p + n]

    def fixed(self, st: struct.Struct) -> tuple[Any, ...]:
        """The fields of struct `st`, read in one step (a structure's run of
        fixed-size fields, layout.py)."""
        p, n = self.pos, st.size
        if p + n > self.end:
            raise TPMDecodeError(p, n, self.end - p, "fixed-size fields")
        self.pos = p + n
        return st.unpack_from(self.data, p)

    def digest(self) -> builtins.bytes:
        p = self.pos
        if p + 20 > self.end:
            raise TPMDecodeError(p, 20, self.end - p, "TPM_DIGEST")
        self.pos = p + 20
        return self.data[p:p + 20]

    def sized32(self, what: str = "sized buffer") -> builtins.bytes:
        """UINT32 size followed by that many bytes (TPM_SIZED_BUFFER,
        TPM_SizedBuffer_Load: a size over ALLOC_MAX is TPM_SIZE)."""
        n = self.u32()
        if n > ALLOC_MAX:
            raise TPMSizeError(self.pos - 4, n, self.remaining, what)
        return self.bytes(n, what)

    def rest(self) -> builtins.bytes:
        return self.bytes(self.remaining, "rest")

    def expect_end(self, what: str = "") -> None:
        if self.pos != self.end:
            raise TPMDecodeError(self.pos, 0, self.end - self.pos, what or "trailing bytes")


class Writer:
    """Append-only builder of wire bytes."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[builtins.bytes] = []

    def u8(self, v: int) -> "Writer":
        self.parts.append(bytes((v & 0xFF,)))
        return self

    bool = u8

    def u16(self, v: int) -> "Writer":
        self.parts.append(_U16.pack(v & 0xFFFF))
        return self

    def u32(self, v: int) -> "Writer":
        self.parts.append(_U32.pack(v & 0xFFFFFFFF))
        return self

    def u64(self, v: int) -> "Writer":
        self.parts.append(_U64.pack(v & 0xFFFFFFFFFFFFFFFF))
        return self

    def bytes(self, b: builtins.bytes) -> "Writer":
        self.parts.append(bytes(b))
        return self

    def sized32(self, b: builtins.bytes) -> "Writer":
        return self.u32(len(b)).bytes(b)

    def getvalue(self) -> builtins.bytes:
        return b"".join(self.parts)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)
