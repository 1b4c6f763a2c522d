"""vtpmmgr-stubdom: the one vTPM manager of a host (seed stubdom/vtpmmgr).

    boot(dom)      # what pyxl.domain.process runs for a vtpmmgr-stubdom kernel

It owns the hardware TPM (through the TIS pages xl's iomem= gave it),
keeps every vTPM's state hash and key in its disk image bound to a key
only that TPM can unbind, and answers the vTPMs' LoadHashKey/SaveHashKey
(and GetRandom/PcrRead passthrough) through tpmback.
"""

from __future__ import annotations

from pyxl.domain.minios import BOOT_DELAY_ENV  # noqa: F401  (tests set it)

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from pyxl.domain.process import Domain


def boot(dom: Domain) -> None:
    from pyxl.domain.minios import argv_of, run_app

    from .main import Manager
    from .main2 import Manager2, wants_tpm2

    # vtpmmgr.c main: parse_cmdline_hw picks the TPM 2.0 path on "tpm2=1"
    run_app(dom, Manager2 if wants_tpm2(argv_of(dom.cmdline)) else Manager)
