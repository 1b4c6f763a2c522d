"""vtpmmgr's log lines (seed log.h): `INFO[<MOD>]: <msg>` and
`ERROR[<MOD>]: <msg>`, modules VTPM and TPM enabled (TXDATA dumps off).
stdout and stderr both land on the mini-os console."""

from __future__ import annotations

from pyxl.tpm import constants as C

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from pyxl.domain.minios import Printk


class MgrLog:
    def __init__(self, printk: Printk):
        self.printk = printk

    def info(self, msg: str, mod: str = "VTPM") -> None:
        self.printk("INFO[%s]: %s" % (mod, msg))

    def error(self, msg: str, mod: str = "VTPM") -> None:
        self.printk("ERROR[%s]: %s" % (mod, msg))

    def tryfail(self, func: str, file: str, line: int, rc: int) -> None:
        """What TPMTRYRETURN prints when a call fails."""
        self.printk("ERROR in %s at %s:%i code: %s.\n" % (func, file, line, error_name(rc)))


def error_name(rc: int) -> str:
    """tpm_get_error_name."""
    name = C.rc_name(rc)
    return name if not name.startswith("TPM_RESULT_") else "Unknown Error Code"
