"""vtpm-stubdom: one guest's virtual TPM (seed stubdom/vtpm/vtpm.c).

    boot(dom)      # what pyxl.domain.process runs for a vtpm-stubdom kernel

Order as in the seed's main(): parse the command line and print the
summary, tpmback (serves the guest), tpmfront to the manager
(device/vtpm/0), RNG seeded from the hardware TPM via the manager,
vtpmblk on hda, then the main loop: restore state (or a brand-new TPM),
hwinitpcr copies, wait for a frontend, serve that one frontend until it is
freed, save, power off.
"""

from __future__ import annotations

import os
import time

BOOT_DELAY_ENV = "PYXL_MINIOS_BOOT_DELAY"     # seed main() sleeps 2 s before anything


def boot(dom) -> None:
    from pyxl.domain.minios import argv_of, echo_args, make_printk

    from .main import Vtpm

    printk = make_printk(dom.console_write)
    argv = argv_of(dom.cmdline)
    echo_args(printk, argv)
    time.sleep(float(os.environ.get(BOOT_DELAY_ENV, "2")))
    ret = Vtpm(dom, printk).main(argv)
    printk("main returned %d\n" % ret)
    if ret != 0:
        printk("Do_exit called!\n")
        dom.shutdown(3)              # SHUTDOWN_crash
    dom.shutdown(0)
