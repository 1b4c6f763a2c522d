"""The console ring page: struct xencons_interface
(xen/include/public/io/console.h), one 4096-byte page shared by a domain
and the console daemon.

    char in[1024];                        offset 0     input, to the domain
    char out[2048];                       offset 1024  output, from the domain
    XENCONS_RING_IDX in_cons, in_prod;    offset 3072  (uint32_t each,
    XENCONS_RING_IDX out_cons, out_prod;  offset 3080   little-endian: x86)

Indices run free (modulo 2**32) and are masked into the ring
(MASK_XENCONS_IDX).  The producer writes bytes, then its index; the
consumer reads bytes, then advances its own index -- so whatever the
consumer has not taken stays on the page, for a console daemon restarted
meanwhile to take (`out`), or for the domain to read after a resume
(`in`, keyboard input the daemon put there).

Imports only struct: domain processes import this.
"""

from __future__ import annotations

import struct

PAGE_SIZE = 4096
IN_OFF = 0                      # offsetof(struct xencons_interface, in)
IN_SIZE = 1024                  # sizeof(intf->in)
IN_CONS = 3072                  # offsetof(..., in_cons)
IN_PROD = 3076                  # offsetof(..., in_prod)
OUT_OFF = 1024                  # offsetof(struct xencons_interface, out)
OUT_SIZE = 2048                 # sizeof(intf->out)
_IDX_MOD = 0xFFFFFFFF           # XENCONS_RING_IDX is a uint32_t
OUT_CONS = 3080                 # offsetof(..., out_cons)
OUT_PROD = 3084                 # offsetof(..., out_prod)
_IDX = struct.Struct("<II")     # (cons, prod) of a ring
_U32 = struct.Struct("<I")


def _put(page: memoryview, base: int, size: int, idx: int,
         data: bytes | bytearray | memoryview) -> int:
    """The producer's side of the ring of `size` bytes at `base` whose
    (cons, prod) are at `idx`: as many bytes of `data` as it has room for,
    at prod (each offset masked, MASK_XENCONS_IDX), then prod advanced past
    them; returns how many.  Each index is read once; a ring whose indices
    say it holds more than `size` counts as full: nothing is written."""
    cons, prod = _IDX.unpack_from(page, idx)
    used = (prod - cons) & _IDX_MOD
    if used >= size:
        return 0
    n = size - used
    if len(data) < n:
        n = len(data)
    if n == 0:
        return 0
    at = prod & (size - 1)
    end = at + n
    if end <= size:
        page[base + at:base + end] = data[:n] if n < len(data) else data
    else:
        first = size - at
        page[base + at:base + size] = data[:first]
        page[base:base + n - first] = data[first:n]
    _U32.pack_into(page, idx + 4, (prod + n) & _IDX_MOD)
    return n


def _peek(page: memoryview, base: int, size: int, idx: int) -> tuple[bytes, int, bool]:
    """The consumer's side of the same ring: (the bytes cons..prod, the
    cons that consumes them, whether the indices were sane).  Each index
    is read once, every offset masked; a ring whose indices say it holds
    more than `size` is not read at all.  Nothing is stored."""
    cons, prod = _IDX.unpack_from(page, idx)
    n = (prod - cons) & _IDX_MOD
    if n == 0:
        return b"", cons, True
    if n > size:
        return b"", cons, False
    at = cons & (size - 1)
    end = at + n
    if end <= size:
        data = bytes(page[base + at:base + end])
    else:
        data = bytes(page[base + at:base + size]) + bytes(page[base:base + end - size])
    return data, (cons + n) & _IDX_MOD, True


def write_out(page: memoryview, data: bytes | bytearray | memoryview) -> int:
    """The domain's side, Linux's __write_console (drivers/tty/hvc/hvc_xen.c):
    as many bytes of `data` as `out` has room for, then out_prod advanced
    past them; returns how many.  A page whose indices say more than the
    ring holds (Linux: BUG_ON) takes nothing."""
    return _put(page, OUT_OFF, OUT_SIZE, OUT_CONS, data)


def read_out(page: memoryview) -> tuple[bytes, int, bool]:
    """The console daemon's side, xenconsoled's buffer_append
    (tools/console/daemon/io.c): (the bytes out_cons..out_prod, the
    out_cons that consumes them, whether the indices were sane -- the ring
    then has room once they are consumed).

    The page is the domain's and may say anything: a ring whose indices
    say it holds more than sizeof(out) is not read at all (as
    buffer_append returns when size > sizeof(intf->out)) -- so at most a
    ring's worth is taken, never a byte outside the page.  The caller
    stores the new out_cons (consumed()) once it has kept the bytes."""
    return _peek(page, OUT_OFF, OUT_SIZE, OUT_CONS)


def consumed(page: memoryview, cons: int) -> None:
    """out_cons = cons: the bytes before it are the daemon's now."""
    _U32.pack_into(page, OUT_CONS, cons)


def write_in(page: memoryview, data: bytes | bytearray | memoryview) -> int:
    """The console daemon's side, xenconsoled's handle_tty_read
    (tools/console/daemon/io.c): as many bytes of `data` as `in` has room
    for, at in_prod, then in_prod advanced past them; returns how many.
    The page is the domain's and may say anything: a ring whose indices
    say it holds more than sizeof(in) counts as full (nothing written) --
    so in_prod - in_cons never exceeds sizeof(in) through us, and no byte
    is written outside `in`."""
    return _put(page, IN_OFF, IN_SIZE, IN_CONS, data)


def in_pending(page: memoryview) -> int:
    """How many bytes `in` holds for the domain (0 for indices that say
    more than the ring holds)."""
    cons, prod = _IDX.unpack_from(page, IN_CONS)
    size = (prod - cons) & _IDX_MOD
    return size if size <= IN_SIZE else 0


def read_in(page: memoryview) -> bytes:
    """The domain's side, mini-os's handle_input (console/xencons_ring.c)
    and Linux's domU_read_console (drivers/tty/hvc/hvc_xen.c): the bytes
    in_cons..in_prod, then in_cons advanced past them.  Indices that say
    the ring holds more than sizeof(in) are left as they are, unread."""
    data, cons, _ = _peek(page, IN_OFF, IN_SIZE, IN_CONS)
    if data:
        _U32.pack_into(page, IN_CONS, cons)
    return data
