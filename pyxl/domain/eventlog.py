"""A TCG2 crypto-agile event log, as firmware leaves it for the OS (TCG PC
Client Platform Firmware Profile, sec. 10: the log format): the first event
is a TCG_PCClientPCREvent in the SHA-1 format carrying the Spec ID Event03
structure (TCG_EfiSpecIDEventStruct: which banks the log records and their
digest sizes), every following one a TCG_PCR_EVENT2 with one digest per
bank.  All little-endian.  Linux shows it as
/sys/kernel/security/tpm0/binary_bios_measurements; tpm2_eventlog replays it.

    log = EventLog()
    log.add(4, EV_IPL, digests(kernel), b"kernel /boot/vmlinuz")
    blob = log.bytes()
"""

from __future__ import annotations

import struct

EV_NO_ACTION, EV_IPL = 0x00000003, 0x0000000D
SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
PLATFORM_CLASS_CLIENT = 0
SPEC_VERSION = (0, 2, 0)                 # minor, major (2.0), errata
UINTN_SIZE_64 = 2                        # UINTN is UINT64
DIGEST_SIZE = {0x0004: 20, 0x000B: 32}   # TPM_ALG_SHA1, TPM_ALG_SHA256


def spec_id_event(algs: list[int]) -> bytes:
    body = SPEC_ID_SIGNATURE + struct.pack("<IBBBB", PLATFORM_CLASS_CLIENT, *SPEC_VERSION,
                                           UINTN_SIZE_64)
    body += struct.pack("<I", len(algs))
    body += b"".join(struct.pack("<HH", a, DIGEST_SIZE[a]) for a in algs)
    body += b"\0"                        # vendorInfoSize
    # TCG_PCClientPCREvent: PCR 0, EV_NO_ACTION, a zero SHA-1 digest
    return struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(body)) + body


class EventLog:
    def __init__(self, algs: tuple[int, ...] = (0x0004, 0x000B)):
        self.algs = list(algs)
        self.events: list[bytes] = []

    def add(self, pcr: int, event_type: int, values: list[tuple[int, bytes]],
            data: bytes) -> None:
        """One TCG_PCR_EVENT2: values are (algorithm, digest), one per bank."""
        if [a for a, _ in values] != self.algs:
            raise ValueError("an event needs one digest per bank of the log")
        ev = struct.pack("<III", pcr, event_type, len(values))
        ev += b"".join(struct.pack("<H", a) + d for a, d in values)
        self.events.append(ev + struct.pack("<I", len(data)) + data)

    def bytes(self) -> bytes:
        return spec_id_event(self.algs) + b"".join(self.events)
