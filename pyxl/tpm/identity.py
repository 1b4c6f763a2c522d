"""Who the TPM says it is: the values of TPM_CAP_VERSION_VAL and friends.

The Xen vTPM (the Berlios TPM emulator 0.7 inside vtpm-stubdom) answers
chip version 1.2.0.7, spec level 2, errata 1, vendor "ETHZ"; a simulated
hardware TPM can present another identity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    version: tuple[int, int, int, int] = (1, 2, 0, 7)   # TPM_VERSION major.minor.revMajor.revMinor
    spec_level: int = 2
    errata_rev: int = 1
    vendor_id: bytes = b"ETHZ"                         # TPM_CAP_VERSION_INFO.tpmVendorID
    manufacturer: int = 0x4554485A                     # TPM_CAP_PROP_MANUFACTURER
    vendor_specific: bytes = b""
    # what differs between implementations and clients can observe
    max_random: int = 2048        # GetRandom cap (Berlios 2048, libtpms 4082)
    input_buffer: int = 4088      # TPM_CAP_PROP_INPUT_BUFFER (Xen's vtpm-bufsize patch)
    max_keys: int = 10
    max_sessions: int = 4
    tis_timeouts: tuple[int, int, int, int] = (750000, 2000000, 750000, 750000)
    durations: tuple[int, int, int] = (3000000, 3000000, 600000000)

    def __post_init__(self):
        if len(self.vendor_id) != 4:
            raise ValueError("vendor_id must be 4 bytes")


XEN_VTPM_IDENTITY = Identity()
