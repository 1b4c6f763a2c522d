"""vtpmmgr-stubdom: the one vTPM manager of a host (seed stubdom/vtpmmgr).

    boot(dom)      # what pyxl.domain.process runs for a vtpmmgr-stubdom kernel

It owns the hardware TPM (through the TIS pages xl's iomem= gave it),
keeps every vTPM's state hash and key in its disk image bound to a key
only that TPM can unbind, and answers the vTPMs' LoadHashKey/SaveHashKey
(and GetRandom/PcrRead passthrough) through tpmback.
"""

from __future__ import annotations

import os
import time

BOOT_DELAY_ENV = "PYXL_MINIOS_BOOT_DELAY"


def boot(dom) -> None:
    from pyxl.domain.minios import argv_of, echo_args, make_printk

    from .main import Manager

    printk = make_printk(dom.console_write)
    argv = argv_of(dom.cmdline)
    echo_args(printk, argv)
    time.sleep(float(os.environ.get(BOOT_DELAY_ENV, "2")))
    ret = Manager(dom, printk).main(argv)
    printk("main returned %d\n" % ret)
    if ret != 0:
        printk("Do_exit called!\n")
        dom.shutdown(3)              # SHUTDOWN_crash
    dom.shutdown(0)
