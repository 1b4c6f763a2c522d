"""Who the TPM says it is, and which implementation it behaves like.

The Xen vTPM (the Berlios TPM emulator 0.7 inside vtpm-stubdom) answers
chip version 1.2.0.7, spec level 2, errata 1, vendor "ETHZ"; a simulated
hardware TPM can present another identity.  Those numbers, and the sizes a
vendor chooses (slots, buffers, timeouts), are one axis.

The other axis is behaviour where TPM 1.2 implementations visibly differ.
Two families are modelled, as measured or read from source:
- libtpms (swtpm), the reference the engine answers like by default;
- the Berlios emulator inside Xen's vtpm-stubdom (berlios=True): physical
  presence always asserted, PCRs 16-23 start at all-0xFF, nvLocked and
  readSRKPub start TRUE, OwnerClear leaves the TPM enabled, a predefined DIR
  NV area, TPM_CAP_MFR answered, no TPM_CAP_DA_LOGIC, RSA/XOR-only
  transport and auth-data encryption, GetRandom capped at 2048 bytes.
`behaving_as(identity, "libtpms"|"berlios")` switches an identity between them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


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
    max_daa_sessions: int = 1     # DAA sessions (Berlios TPM_MAX_SESSIONS_DAA, libtpms 2)
    tis_timeouts: tuple[int, int, int, int] = (750000, 2000000, 750000, 750000)
    durations: tuple[int, int, int] = (3000000, 3000000, 600000000)
    # behaviour
    physical_presence: bool = True        # the emulator's presence test is constant TRUE
    pcrs_ff_at_startup: frozenset = frozenset(range(16, 24))
    nv_locked: bool = True                # initial TPM_PERMANENT_FLAGS.nvLocked
    read_srk_pub: bool = True             # initial TPM_PERMANENT_FLAGS.readSRKPub
    audit_by_default: bool = False        # libtpms audits the owner/EK commands from the start
    clear_keeps_enabled: bool = True      # OwnerClear/ForceClear: libtpms disables + deactivates
    # Delegate_Manage without authorization on an unowned TPM: libtpms allows it (up
    # to TPM_MAX_NV_WRITE_NOOWNER writes); the emulator looks up the missing
    # session first and always answers TPM_AUTHFAIL
    unowned_delegate_manage: bool = False
    # the Berlios emulator's remaining traits (module docstring); False: libtpms
    berlios: bool = True

    def __post_init__(self) -> None:
        if len(self.vendor_id) != 4:
            raise ValueError("vendor_id must be 4 bytes")


# The two behaviour families (the module docstring says what differs).
BEHAVIOURS: dict[str, dict] = {
    "berlios": dict(berlios=True, max_random=2048, physical_presence=True,
                    pcrs_ff_at_startup=frozenset(range(16, 24)), nv_locked=True,
                    read_srk_pub=True, audit_by_default=False, clear_keeps_enabled=True,
                    unowned_delegate_manage=False),
    "libtpms": dict(berlios=False, max_random=4082, physical_presence=False,
                    pcrs_ff_at_startup=frozenset(range(17, 23)), nv_locked=False,
                    read_srk_pub=False, audit_by_default=True, clear_keeps_enabled=False,
                    unowned_delegate_manage=True),
}


def behaving_as(identity: "Identity", family: str) -> "Identity":
    """identity's numbers with the behaviour of `family` ("libtpms" or "berlios")."""
    try:
        return replace(identity, **BEHAVIOURS[family])
    except KeyError:
        raise ValueError("unknown TPM behaviour %r (known: %s)"
                         % (family, ", ".join(sorted(BEHAVIOURS)))) from None


# What vtpm-stubdom runs: the Berlios emulator with Xen's patches.
XEN_VTPM_IDENTITY = Identity()

# A hardware-like TPM as swtpm 0.7 / libtpms 0.9 presents itself (measured):
# physical presence must be asserted with TSC_PhysicalPresence, PCRs 17-22
# start at all-0xFF, nvLocked and readSRKPub start FALSE.
IBM_SWTPM_IDENTITY = Identity(
    version=(1, 2, 18, 158), spec_level=2, errata_rev=3, vendor_id=b"IBM\x00",
    manufacturer=0x49424D00, input_buffer=4096, max_keys=20,
    max_sessions=16, max_daa_sessions=2, tis_timeouts=(1000000, 1000000, 1000000, 1000000),
    durations=(50000000, 100000000, 300000000), **BEHAVIOURS["libtpms"])
