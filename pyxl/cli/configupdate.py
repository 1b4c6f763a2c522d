"""`pyxl config-update` (xl_misc.c main_config_update): a new configuration
for a running domain, kept as its "xl" userdata and used when the domain is
next rebuilt after a reboot (xl_vmcontrol.c reload_domain_config).  Until
then the domain and `list -l` (libxl's own stored configuration) are as
they were, as with xl."""

from __future__ import annotations

import errno
import os
import sys

from pyxl.cli._common import call, faults

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()


@faults
def config_update(opts: Opts | None, args: list[str]) -> int:
    """main_config_update: the domain argument is checked, and the warning
    printed, before anything else; then a config file (the first argument
    that is neither an option nor KEY=VALUE, or -f), -d/-N print the
    parsed configuration, and unless -N it is stored."""
    from pyxl.cli import table, xlopt
    from pyxl.cli.main import Globals, print_help

    if not args:
        _err("pyxl config-update requires a domain argument\n")
        print_help("config-update")
        return 1
    _err("WARNING: xl now has better capability to manage domain configuration, "
         "avoid using this command when possible\n")
    dom = call("list", dom=args[0])[0]          # find_domain
    rest = args[1:]
    filename = None
    if rest and not rest[0].startswith("-") and "=" not in rest[0]:
        filename, rest = rest[0], rest[1:]
    opts, rest = xlopt.def_getopt(table.BY_NAME["config-update"], rest)
    debug = any(k == "d" for k, _ in opts)
    for k, v in opts:
        if k == "f":
            filename = v
    extra = []
    for a in rest:
        if "=" in a:
            extra.append(a)
        elif filename is None:
            filename = a
        else:
            print_help("create")
            return 2
    if filename is None:
        _err("Config file not specified\n")
        return 1
    from pyxl.config import ConfigError, load_data, to_json

    from pyxl.config import cfgfile

    try:       # unlike create, no /dev/null special case: libxl_read_file_contents
        data = cfgfile.read_config_data(filename, extra, dev_null_empty=False)
    except cfgfile.ConfigReadError as e:
        for line in e.lines:
            if line.startswith("libxl: error: "):
                # LOGE's errno is the one left by xl's last failed call, on this
                # path EBADF (the real xl 4.17.5 prints it), not create's ENOTTY
                line = line.rsplit(": ", 1)[0] + ": " + os.strerror(errno.EBADF)
            _err(line + "\n")
        return -3 & 0xFF             # main returns libxl's ERROR_FAIL
    try:
        d_config = load_data(data, filename, warn=lambda s: _err(s + "\n"),
                             warn_partial=_err)
    except ConfigError as e:
        _err(e.text())
        return e.exit_code
    text = to_json(d_config)
    if debug or Globals.dryrun:
        sys.stdout.write(text)
        sys.stdout.flush()
    if Globals.dryrun:
        return 0
    _err("setting dom%u configuration\n" % dom["domid"])
    source = d_config.source
    call("config_update", dom=str(dom["domid"]), config=text,
         config_text=source.decode("utf-8", "surrogateescape")
         if isinstance(source, bytes) else source, config_file=filename)
    return 0
