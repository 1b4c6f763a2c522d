"""`pyxl tpm-serve`: the TPM 1.2 engine alone, as a raw command socket that
TrouSerS' `tcsd -e` (TCSD_TCP_DEVICE_PORT) or any swtpm client can use; with
--tpm2, libtpms's TPM 2.0 for tpm2-tools (`-T swtpm:port=PORT`).

Once it accepts connections it prints one line on stdout, for scripts:
    pyxl tpm-serve: ready, tcp 127.0.0.1:PORT[, ctrl tcp 127.0.0.1:PORT+1]
    [, unix PATH[, ctrl unix PATH.ctrl]], state DIR[ (new TPM)]
(the ctrl entries with --tpm2: swtpm's control channel).
Errors go to stderr (with the global -v, also one line per command); exit 0
after a clean stop (SIGTERM/SIGINT: TPM_SaveState, state written), 1 for a
busy/damaged state dir, a port in use, or a state it could not write (the
final one, or any after which the TPM could not be restarted from the last
one written), 2 for bad options.  See pyxl/tpm/serve.py for framing and the
state dir."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer


def tpm_serve(
    state: Annotated[str, typer.Option(
        "--state", metavar="DIR",
        help="State directory (created; kept across restarts, locked while served)")],
    port: Annotated[Optional[int], typer.Option(
        "--port", "-p", metavar="PORT",
        help="TCP port (0: any free port, printed in the ready line; "
             "default 6545, tcsd's, or with --tpm2 2321, tpm2-tools' swtpm TCTI's; "
             "none if only --unix is given)")] = None,
    unix: Annotated[Optional[str], typer.Option(
        "--unix", metavar="PATH", help="Also (or only) listen on this Unix socket")] = None,
    unix_mode: Annotated[Optional[str], typer.Option(
        "--unix-mode", metavar="MODE",
        help="Permissions of the Unix socket, octal (0666 lets tcsd, user tss, connect)")] = None,
    host: Annotated[str, typer.Option(
        "--host", metavar="ADDR", help="Address to listen on")] = "127.0.0.1",
    startup: Annotated[str, typer.Option(
        "--startup", metavar="TYPE",
        help="TPM_Startup type sent at power-on: clear, state or deactivated "
             "(TPM 2.0: clear or state)")] = "clear",
    no_startup: Annotated[bool, typer.Option(
        "--no-startup", help="Power on without TPM_Startup (the client must send it)")] = False,
    vendor: Annotated[Optional[str], typer.Option(
        "--vendor", metavar="ID",
        help="TPM identity: ETHZ (the Xen vTPM) or IBM (like swtpm, a hardware-like TPM)")
    ] = None,
    emulator: Annotated[Optional[str], typer.Option(
        "--emulator", metavar="FAMILY",
        help="Behave as libtpms (swtpm) or as berlios (the emulator inside vtpm-stubdom)")
    ] = None,
    locality: Annotated[int, typer.Option(
        "--locality", metavar="N", help="Locality the commands are executed at")] = 0,
    tpm2: Annotated[bool, typer.Option(
        "--tpm2", help="Serve a TPM 2.0 (libtpms in-process) instead of the TPM 1.2 engine, "
                       "with swtpm's control channel on PORT+1 (and PATH.ctrl for --unix)")
    ] = False,
) -> int:
    from pyxl.cli.main import Globals
    from pyxl.tpm.serve import Options, run

    if tpm2 and (vendor is not None or emulator is not None):
        print("pyxl tpm-serve: --vendor and --emulator choose a TPM 1.2; "
              "they do not apply with --tpm2", file=sys.stderr)
        return 2
    mode = None
    if unix_mode is not None:
        try:
            mode = int(unix_mode, 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            print("pyxl tpm-serve: --unix-mode must be octal permissions like 0660",
                  file=sys.stderr)
            return 2
    return run(Options(state_dir=state, port=port, unix=unix, unix_mode=mode, host=host,
                       startup=None if no_startup else startup.lower(),
                       vendor=vendor or "ETHZ", emulator=emulator or "libtpms",
                       locality=locality, trace=Globals.verbose > 0,
                       tpm2=tpm2))
