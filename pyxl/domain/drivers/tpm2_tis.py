"""mini-os init_tpm2_tis (tpm_tis.c, "TPM 2.0"): the same FIFO driver as
tpm_tis.TpmTis, started the way vtpmmgr's TPM 2.0 path starts it.

    tis = TpmTis2(xen, printk, baseaddr=0xFED40000, localities=1 << 0)

It prints init_tpm2_tis's lines ("2.0 TPM (device-id=..."), reads no TIS
timeouts or durations (mini-os keeps its defaults for a 2.0 chip) and ends
with tpm2_selftest: TPM2_SelfTest(fullTest=YES), whose answer mini-os does
not look at -- so on a TPM 1.2 chip this driver comes up and it is the
manager's first TPM 2.0 command that fails, as on Xen.
"""

from __future__ import annotations

from .tpm_tis import TpmTis

# tpm_tis.c tpm2_selftest: TPM_ST_NO_SESSIONS, 11 bytes, TPM_CC_SelfTest, YES
TPM2_SELFTEST = bytes.fromhex("80010000000b0000014301")


class TpmTis2(TpmTis):
    BANNER = "============= Init TPM2 TIS Driver ==============\n"
    BAD_LOCALITIES = "init_tpm2_tis Invalid locality specification! %X\n"
    NO_MAP = "Unable to map iomem page a address %x\n"
    FAMILY = "2.0"

    def _start(self) -> None:
        self.transmit(TPM2_SELFTEST)
