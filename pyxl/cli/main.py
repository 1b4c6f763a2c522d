"""Entry point: xl's global options, command lookup, lazy dispatch and help.

Start-up cost matters (scripts call pyxl in loops), so this module imports
nothing heavy: the table is plain data, the handler's module is imported
only once a command has been chosen, and typer only for the commands whose
handlers declare their options through it (table.Command.typer).
"""

from __future__ import annotations

import sys

from pyxl.cli import table

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing on every run
if TYPE_CHECKING:
    from typing import Any, Callable


class Globals:
    """The global options of `pyxl [-vfNtT] CMD`, readable by every handler."""

    verbose = 0
    dryrun = False
    force = False
    timestamps = False
    command = ""          # the table name of the command running


def usage_flags(cmd: table.Command) -> str:
    return "-vtT" + ("f" if cmd.modifies else "") + ("N" if cmd.can_dryrun else "")


def usage_line(cmd: table.Command) -> str:
    """The first line of help(CMD), and of a usage error."""
    return "Usage: pyxl [%s] %s %s" % (usage_flags(cmd), cmd.name, cmd.usage)


def print_help(command: str | None = None) -> None:
    """xl's help() (tools/xl/xl.c), with pyxl's own commands after xl's."""
    out = sys.stdout
    if command is None or command == "help":
        out.write("Usage pyxl [-vfNtT] <subcommand> [args]\n\n")
        out.write("pyxl full list of subcommands:\n\n")
        for c in table.COMMANDS:
            if not c.xl and c is table.COMMANDS[len(table.XL_COMMANDS)]:
                out.write("\npyxl's own subcommands (the simulated host):\n\n")
            line = " %-19s " % c.name
            if len(c.name) > 19:
                line += "\n %-19s " % ""
            out.write(line + c.desc + "\n")
        return
    cmd = table.lookup(command)
    if cmd is None:
        out.write('command "%s" not implemented\n' % command)
        return
    out.write("%s\n\n%s.\n\n" % (usage_line(cmd), cmd.desc))
    opts = options_help(cmd) if cmd.typer else cmd.options
    if opts is not None:            # xl prints an empty cmd_option too
        out.write("Options:\n\n%s\n" % opts)


def options_help(cmd: table.Command) -> str:
    """xl-style option lines for a typer row (help(CMD)'s "Options:")."""
    lines = []
    for names, helptext in typer_options(cmd):
        if len(names) >= 24:
            lines.append(names)
            lines.append(" " * 24 + helptext)
        else:
            lines.append("%-24s%s" % (names, helptext))
    return "\n".join(lines)


def typer_options(cmd: table.Command) -> list[tuple[str, str]]:
    """(names with metavar, help) of each option a typer row's handler
    declares, for help(CMD) and the man page."""
    out = []
    for p in build_click(cmd).params:
        if p.param_type_name != "option" or getattr(p, "hidden", False):
            continue
        names = ", ".join(list(p.opts) + list(p.secondary_opts))
        if not p.is_flag:
            names += " " + (p.metavar or p.name.upper())
        out.append((names, " ".join((p.help or "").split())))
    return out


def load_handler(cmd: table.Command) -> Callable[..., Any]:
    import importlib

    modname, _, func = cmd.handler.partition(":")
    return getattr(importlib.import_module(modname), func)


def build_click(cmd: table.Command) -> Any:
    """A click command for one table row, built through typer from its handler."""
    import typer

    app = typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": []},
    )
    app.command(name=cmd.name, help=cmd.desc + ".")(load_handler(cmd))
    return typer.main.get_command(app)


def wants_help(args: list[str]) -> bool:
    for a in args:
        if a == "--":
            return False
        if a == "--help" or (a.startswith("-") and not a.startswith("--") and "h" in a[1:2]):
            return True
    return False


def run_command(cmd: table.Command, args: list[str]) -> int:
    """Run one table row: through typer if its handler's signature declares
    its options, else as xl's main_* functions run (def_getopt, then the
    handler)."""
    from pyxl.cli import xlopt

    Globals.command = cmd.name
    try:
        rc = run_typer(cmd, args) if cmd.typer else run_getopt(cmd, args)
    except xlopt.Exit as e:
        return e.code
    except BrokenPipeError:
        return 0
    return rc if isinstance(rc, int) else 0


def run_getopt(cmd: table.Command, args: list[str]) -> object:
    """def_getopt as a main_* function calls it, then the handler."""
    from pyxl.cli import xlopt

    if cmd.getopt is None or cmd.selfparse:
        opts, rest = None, args
    else:
        opts, rest = xlopt.def_getopt(cmd, args)
    return load_handler(cmd)(opts, rest)


def run_typer(cmd: table.Command, args: list[str]) -> object:
    """The handler called by typer with the options it parsed.  As for xl's
    commands, -h or --help before "--" prints help(CMD) and exits 0, and an
    unknown option or one missing its value is def_getopt's "option `%c'
    not supported." (getopt's optopt: NUL for a long option), exit 2; other
    usage errors print the table's usage line and typer's message, exit 2."""
    if wants_help(args):
        print_help(cmd.name)
        return 0
    import typer

    errors = click_errors()
    try:
        return build_click(cmd).main(args, prog_name="pyxl " + cmd.name, standalone_mode=False)
    except (errors.NoSuchOption, errors.BadOptionUsage) as e:
        name = e.option_name
        ch = name[1] if len(name) == 2 and name[0] == "-" and name[1] != "-" else "\0"
        sys.stderr.write("option `%s' not supported.\n" % ch)
        return 2
    except errors.UsageError as e:
        sys.stderr.write("%s\n\nError: %s\n" % (usage_line(cmd), e.format_message()))
        return 2
    except typer.Abort:            # Ctrl-C, with a typer still on click's own exceptions
        return 130


def click_errors() -> Any:
    """The exceptions module of the click typer runs on: typer.BadParameter is
    click's BadParameter, whether typer bundles click or depends on it."""
    import importlib

    import typer

    return importlib.import_module(typer.BadParameter.__module__)


def parse_globals(argv: list[str]) -> list[str] | int:
    """xl's getopt("+vftTN"): options stop at the first non-option argument."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return argv[i + 1:]
        if not a.startswith("-") or a == "-":
            return argv[i:]
        for ch in a[1:]:
            if ch == "v":
                Globals.verbose += 1
            elif ch == "f":
                Globals.force = True
            elif ch == "N":
                Globals.dryrun = True
            elif ch == "t":
                Globals.timestamps = True
            elif ch == "T":
                Globals.timestamps = True
            else:
                print("pyxl: invalid option -- '%s'" % ch, file=sys.stderr)
                print("unknown global option", file=sys.stderr)
                return 1
        i += 1
    return []


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (`pyxl help | head`): no traceback, and none at exit
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = parse_globals(argv)
    if isinstance(rest, int):
        return rest
    if not rest:
        print_help()
        return 1
    name, args = rest[0], rest[1:]
    cmd = table.lookup(name)
    if cmd is None:
        if name == "help":              # xl.c main(): not in the table, only the full name
            print_help(args[0] if args else None)
            return 0
        print("command not implemented", file=sys.stderr)
        return 1
    if Globals.dryrun and not cmd.can_dryrun:
        print("command does not implement -N (dryrun) option", file=sys.stderr)
        return 1
    try:
        return run_command(cmd, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
