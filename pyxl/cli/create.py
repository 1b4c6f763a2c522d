"""`pyxl create`: xl create's options, config loading, dry run, hand-off.

Like xl_vmcontrol.c main_create/create_domain: the config file is the first
argument that is not an option and has no '=', or -f FILE; every KEY=VALUE
argument is appended to the config.  "Parsing config from PATH" goes to
stderr unless -q.  With -n (or the global -N) the libxl JSON is printed and
nothing is created; otherwise the domain is handed to the toolstack.
"""

from __future__ import annotations

import sys


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


def create(opts: None, args: list[str]) -> int:
    """main_create: a first argument that is no option and has no '=' is the
    config file, taken before def_getopt reads the options."""
    from pyxl.cli import table, xlopt
    from pyxl.cli.main import Globals

    config_file = None
    if args and not args[0].startswith("-") and "=" not in args[0]:
        config_file, args = args[0], args[1:]
    got, rest = xlopt.def_getopt(table.BY_NAME["create"], args)
    flags = {k for k, _ in got}
    for k, v in got:
        if k == "f":
            config_file = v
    console, debug, no_monitor, foreground = ("c" in flags, "d" in flags, "e" in flags,
                                              "F" in flags)
    dryrun, paused, quiet, ignore_masks = "n" in flags, "p" in flags, "q" in flags, "i" in flags
    extra = []
    for a in rest:
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

    config_json = to_json(d_config)
    if dry or debug:
        stream = sys.stdout if dry else sys.stderr
        stream.flush()
        stream.buffer.write(config_json.encode("utf-8", "surrogateescape"))
        stream.flush()
    if dry:
        return 0

    from pyxl.toolstack.create import create_domain
    source = d_config.source
    assert source is not None            # load_data keeps the text it parsed
    return create_domain(config_json, config_file=config_file,
                         config_data=source, console=console, paused=paused,
                         quiet=quiet, monitor=not no_monitor, foreground=foreground)
