"""`pyxl create`: xl create's options, config loading, dry run, hand-off.

Like xl_vmcontrol.c main_create/create_domain: the config file is the first
argument that is not an option and has no '=', or -f FILE; every KEY=VALUE
argument is appended to the config.  "Parsing config from PATH" goes to
stderr unless -q.  With -n (or the global -N) the libxl JSON is printed and
nothing is created; otherwise the domain is handed to the toolstack.
"""

from __future__ import annotations

import sys
from typing import Annotated, List, Optional

from pyxl.cli._common import typer   # lazy: the CLI's fast path never imports typer


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


def create(
    args: Annotated[Optional[List[str]], typer.Argument(metavar="[ConfigFile] [KEY=VALUE...]",
                                                        show_default=False)] = None,
    console: Annotated[bool, typer.Option("-c", help="Connect to the console after the domain is created.")] = False,
    debug: Annotated[bool, typer.Option("-d", help="Enable debug messages.")] = False,
    no_monitor: Annotated[bool, typer.Option(
        "-e", help="Do not wait in the background for the death of the domain.")] = False,
    foreground: Annotated[bool, typer.Option("-F", help="Run in foreground until death of the domain.")] = False,
    defconfig: Annotated[Optional[str], typer.Option("-f", "--defconfig", metavar="FILE",
                                                     help="Use the given configuration file.")] = None,
    dryrun: Annotated[bool, typer.Option("-n", "--dryrun", help="Dry run - prints the resulting configuration "
                                         "(deprecated in favour of global -N option).")] = False,
    paused: Annotated[bool, typer.Option("-p", help="Leave the domain paused after it is created.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Quiet.")] = False,
    vncviewer: Annotated[bool, typer.Option(
        "-V", "--vncviewer", help="Connect to the VNC display after the domain is created.")] = False,
    vncviewer_autopass: Annotated[bool, typer.Option("-A", "--vncviewer-autopass",
                                                     help="Pass VNC password to viewer via stdin.")] = False,
    ignore_masks: Annotated[bool, typer.Option("-i", "--ignore-global-affinity-masks",
                                               help="Ignore global masks in xl.conf.")] = False,
) -> int:
    from pyxl.cli.main import Globals

    args = list(args or [])
    config_file = None
    if args and not args[0].startswith("-") and "=" not in args[0]:
        config_file = args.pop(0)
    if defconfig is not None:
        config_file = defconfig
    extra = []
    for a in args:
        if "=" in a:
            extra.append(a)
        elif config_file is None:
            config_file = a
        else:
            from pyxl.cli.main import print_help
            print_help("create")
            return 2
    if config_file is None:
        _err("Config file not specified and none in save file")
        return 6
    dry = dryrun or Globals.dryrun

    from pyxl.config import ConfigError, config_text, load_data, to_json
    try:
        data = config_text(config_file, extra)
    except ConfigError as e:
        for line in e.lines:
            _err(line)
        return e.exit_code
    if not quiet:
        _err("Parsing config from %s" % config_file)
    try:
        d_config = load_data(data, config_file, warn=_err, warn_partial=sys.stderr.write,
                             ignore_global_affinity_masks=ignore_masks)
    except ConfigError as e:
        sys.stderr.write(e.text())
        sys.stderr.flush()
        return e.exit_code

    if dry or debug:
        text = to_json(d_config).encode("utf-8", "surrogateescape")
        stream = sys.stdout if dry else sys.stderr
        stream.flush()
        stream.buffer.write(text)
        stream.flush()
    if dry:
        return 0

    from pyxl.toolstack.create import create_domain
    return create_domain(d_config, config_file=config_file,
                         config_data=d_config.source, console=console, paused=paused,
                         quiet=quiet, monitor=not no_monitor, foreground=foreground)
