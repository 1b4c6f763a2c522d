"""vtpm-stubdom: one guest's virtual TPM (seed stubdom/vtpm/vtpm.c).

    boot(dom)      # what pyxl.domain.process runs for a vtpm-stubdom kernel

Order as in the seed's main(): parse the command line and print the
summary, tpmback (serves the guest), tpmfront to the manager
(device/vtpm/0), RNG seeded from the hardware TPM via the manager,
vtpmblk on hda, then the main loop: restore state (a brand-new TPM only
for a uuid the manager has never seen; a state that does not authenticate
stops the domain),
hwinitpcr copies, wait for a frontend, serve that one frontend until it is
freed, save, power off.
"""

from __future__ import annotations

from pyxl.domain.minios import BOOT_DELAY_ENV  # noqa: F401  (tests set it)

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from pyxl.domain.process import Domain


def boot(dom: Domain) -> None:
    from pyxl.domain.minios import run_app

    from .main import Vtpm

    run_app(dom, Vtpm)
