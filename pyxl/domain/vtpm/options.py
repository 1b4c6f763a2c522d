"""vtpm-stubdom's command line (seed vtpm.c parse_cmd_line), quirks kept:
unknown loglevel values and maintcmds values are ignored silently; a
`hwinitpcr=` item is tried as a single number before it is tried as a
range, so "12-16" selects PCR 12 only; an index >= 24 is an error that
stops the domain; unknown options are reported and skipped."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import log as L

ST_CLEAR, ST_SAVE, ST_DEACTIVATED = 1, 2, 3
STARTUP_NAMES = {ST_CLEAR: "clear", ST_SAVE: "save", ST_DEACTIVATED: "deactivated"}
NUM_PCR = 24
PCR_ALL = (1 << NUM_PCR) - 1
MAINTENANCE_ORDINALS = (0x2C, 0x2D, 0x2E, 0x2F, 0x30)   # Create/LoadMaintenanceArchive,
# KillMaintenanceFeature, LoadManuMaintPub, ReadManuMaintPub


class OptionError(ValueError):
    pass


@dataclass
class Options:
    startup: int = ST_CLEAR
    loglevel: int = L.LOG_INFO
    logstr: str | None = None
    hwinitpcrs: int = 0
    maint_cmds: bool = False
    bad_ordinals: list[int] = field(default_factory=list)
    tpm2: bool = False           # pyxl's `tpm2=1`: a TPM 2.0 (engine2.py)


def _scan_u(text: str) -> int | None:
    """sscanf("%u"): leading digits (after optional spaces/sign), else None."""
    m = re.match(r"\s*[+]?(\d+)", text)
    return int(m.group(1)) if m else None


def parse_cmd_line(argv: list[str], log: L.VtpmLog) -> Options:
    """Parse argv[1:] and print the summary; OptionError after the error
    line when the seed's parse_cmd_line returns -1."""
    o = Options()
    for arg in argv[1:]:
        if arg.startswith("loglevel=") and len(arg) > 9:
            sval = arg[9:].split()[0][:25]
            levels = {"debug": L.LOG_DEBUG, "info": L.LOG_INFO, "error": L.LOG_ERR}
            if sval in levels:
                o.loglevel, o.logstr = levels[sval], sval
                log.loglevel = o.loglevel
        elif arg == "clear":
            o.startup = ST_CLEAR
        elif arg == "save":
            o.startup = ST_SAVE
        elif arg == "deactivated":
            o.startup = ST_DEACTIVATED
        elif arg.startswith("maintcmds="):
            if arg[10:] == "1":
                o.maint_cmds = True
            elif arg[10:] == "0":
                o.maint_cmds = False
        elif arg in ("tpm2=1", "tpm2=0"):      # pyxl's own option (engine2.py)
            o.tpm2 = arg == "tpm2=1"
        elif arg.startswith("hwinitpcr="):
            for item in (p for p in arg[10:].split(",") if p):    # strtok skips empties
                v1 = _scan_u(item)
                if item == "all":
                    o.hwinitpcrs = PCR_ALL
                elif item == "none":
                    o.hwinitpcrs = 0
                elif v1 is not None:          # also swallows "X-Y" (the seed's bug)
                    if v1 >= NUM_PCR:
                        log.error(L.L_PCR_INDEX, "hwinitpcr error: Invalid PCR index %u" % v1)
                        raise OptionError(item)
                    o.hwinitpcrs |= 1 << v1
                else:
                    log.error(L.L_PCR_SPEC, "hwintipcr error: Invalid PCR specification : %s" % item)
                    raise OptionError(item)
        else:
            log.error(L.L_BAD_OPTION, "Invalid command line option `%s'" % arg)

    if o.tpm2:
        log.printk("tpm2: Info: TPM 2.0 selected (tpm2=1)\n")
    log.info(L.L_MODE[o.startup], "Startup mode is `%s'" % STARTUP_NAMES[o.startup])
    if o.hwinitpcrs & PCR_ALL:
        log.info(L.L_HWPCR_LIST,
                 "The following PCRs will be initialized with values from the hardware TPM:")
        log.info(L.L_HWPCR_ROW, "\t" + ", ".join(str(i) for i in range(NUM_PCR)
                                                 if o.hwinitpcrs >> i & 1))
    else:
        log.info(L.L_PCR_DEFAULT, "All PCRs initialized to default values")
    if not o.maint_cmds:
        log.info(L.L_MAINT_OFF, "TPM Maintenance Commands disabled")
        o.bad_ordinals = list(MAINTENANCE_ORDINALS)
    else:
        log.info(L.L_MAINT_ON, "TPM Maintenance Commands enabled")
    # newlib prints a NULL %s as "(null)" when no loglevel= was given
    log.info(L.L_LOGLEVEL, "Log level set to %s" % (o.logstr if o.logstr else "(null)"))
    return o
