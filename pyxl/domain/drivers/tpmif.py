"""The tpmif v2 shared page (xen/include/public/io/tpmif.h, since Apr 2013).

    struct tpmif_shared_page {
        uint32_t length;         /* request/response length in bytes */
        uint8_t  state;          /* enum tpmif_state */
        uint8_t  locality;       /* for the current request */
        uint8_t  pad;            /* should be zero */
        uint8_t  nr_extra_pages; /* extra pages for long packets; may be zero */
        uint32_t extra_pages[0]; /* grant IDs; length is actually nr_extra_pages */
    };

Packet data follows the struct and its extra_pages array: offset
8 + 4 * nr_extra_pages (= 8; the header comment's "offset 16" is not what any
implementation does). Little-endian, as on x86. The frontend only sets
SUBMIT and CANCEL, the backend only IDLE and FINISH. Data and length are
written before state, and the state change is what the other end acts on
after the event channel fires.
"""

from __future__ import annotations

import struct

TPMIF_STATE_IDLE = 0
TPMIF_STATE_SUBMIT = 1
TPMIF_STATE_FINISH = 2
TPMIF_STATE_CANCEL = 3

PAGE_SIZE = 4096
HEADER = struct.Struct("<IBBBB")
_LENGTH = struct.Struct("<I")
DATA_OFFSET = HEADER.size          # 8
MAX_PACKET = PAGE_SIZE - DATA_OFFSET

_STATE_AT = 4
_LOCALITY_AT = 5
_EXTRA_AT = 7


class TpmifError(ValueError):
    """The shared page holds something a driver must refuse (bad length)."""


class SharedPage:
    """Accessors over a 4096-byte buffer (a granted Page or a Mapping's buf)."""

    def __init__(self, buf: memoryview | bytearray):
        if len(buf) < PAGE_SIZE:
            raise ValueError("tpmif shared page must be 4096 bytes")
        self.buf = buf

    # header fields
    @property
    def length(self) -> int:
        return HEADER.unpack_from(self.buf)[0]

    @property
    def state(self) -> int:
        return self.buf[_STATE_AT]

    @state.setter
    def state(self, value: int) -> None:
        self.buf[_STATE_AT] = value

    @property
    def locality(self) -> int:
        return self.buf[_LOCALITY_AT]

    @property
    def nr_extra_pages(self) -> int:
        return self.buf[_EXTRA_AT]

    @property
    def data_offset(self) -> int:
        return DATA_OFFSET + 4 * self.nr_extra_pages

    def init(self) -> None:
        """What the frontend does after allocating the page: all zero = IDLE."""
        self.buf[:DATA_OFFSET] = bytes(DATA_OFFSET)

    # _put and _get, on every message, read the header's fields themselves
    # rather than through the properties above (one function call each)
    def _put(self, data: bytes, state: int, locality: int | None) -> None:
        buf, n = self.buf, len(data)
        off = DATA_OFFSET + 4 * buf[_EXTRA_AT]
        if n > PAGE_SIZE - off:
            raise TpmifError(f"packet of {n} bytes does not fit the shared page")
        buf[off:off + n] = data
        _LENGTH.pack_into(buf, 0, n)
        if locality is not None:
            buf[_LOCALITY_AT] = locality
        buf[_STATE_AT] = state      # last: the other end acts on the state

    def _get(self) -> tuple[bytes, int]:
        """The packet and the locality it was sent with."""
        n, _state, locality, _pad, extra = HEADER.unpack_from(self.buf)
        off = DATA_OFFSET + 4 * extra
        if n > PAGE_SIZE - off:
            raise TpmifError(f"length {n} exceeds the shared page")
        return bytes(self.buf[off:off + n]), locality

    # frontend side
    def submit(self, request: bytes, locality: int = 0) -> None:
        self._put(request, TPMIF_STATE_SUBMIT, locality)

    def cancel(self) -> None:
        self.state = TPMIF_STATE_CANCEL

    def response(self) -> bytes:
        return self._get()[0]

    # backend side
    request = _get           # the request and its locality

    def finish(self, response: bytes) -> None:
        self._put(response, TPMIF_STATE_FINISH, None)

    def idle(self) -> None:
        self.state = TPMIF_STATE_IDLE
