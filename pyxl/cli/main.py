"""Entry point: xl's global options, command lookup, lazy dispatch and help.

Start-up cost matters (scripts call pyxl in loops), so this module imports
nothing heavy: the table is plain data, and typer plus the handler's module
are imported only once a command has been chosen.
"""

from __future__ import annotations

import sys

from pyxl.cli import table

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing on every run
if TYPE_CHECKING:
    from typing import Any, Callable, Protocol

    class _ClickError(Protocol):
        """What is read of click's exceptions, matched by class name because
        typer may bundle its own click."""

        option_name: str
        exit_code: int

        def show(self) -> None: ...


class Globals:
    """The global options of `pyxl [-vfNtT] CMD`, readable by every handler."""

    verbose = 0
    dryrun = False
    force = False
    timestamps = False
    command = ""          # the table name of the command running


def usage_flags(cmd: table.Command) -> str:
    return "-vtT" + ("f" if cmd.modifies else "") + ("N" if cmd.can_dryrun else "")


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
    out.write("Usage: pyxl [%s] %s %s\n\n%s.\n\n" % (usage_flags(cmd), cmd.name, cmd.usage, cmd.desc))
    if cmd.xl:
        if cmd.options is not None:
            out.write("Options:\n\n%s\n" % cmd.options)
        return
    try:
        opts = options_help(cmd)
    except ImportError:
        opts = ""
    if opts:
        out.write("Options:\n\n" + opts + "\n")


def options_help(cmd: table.Command) -> str:
    """xl-style option lines, rendered from the handler's own parameters."""
    click_cmd = build_click(cmd)
    lines = []
    for p in click_cmd.params:
        if not getattr(p, "opts", None) or p.param_type_name != "option" or getattr(p, "hidden", False):
            continue
        names = ", ".join(list(p.opts) + list(p.secondary_opts))
        if not p.is_flag and p.metavar:
            names += " " + p.metavar
        elif not p.is_flag and p.param_type_name == "option":
            names += " " + p.name.upper()
        helptext = (p.help or "").strip()
        if len(names) >= 24:
            lines.append(names)
            lines.append(" " * 24 + helptext)
        else:
            lines.append("%-24s%s" % (names, helptext))
    return "\n".join(lines)


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


def run_xl(cmd: table.Command, args: list[str]) -> int:
    """An xl command: def_getopt as its main_* function calls it, then the handler."""
    from pyxl.cli import xlopt

    Globals.command = cmd.name
    try:
        if cmd.getopt is None or cmd.selfparse:
            opts, rest = None, args
        else:
            opts, rest = xlopt.def_getopt(cmd, args)
        rc = load_handler(cmd)(opts, rest)
    except xlopt.Exit as e:
        return e.code
    except BrokenPipeError:
        return 0
    return rc if isinstance(rc, int) else 0


def run_command(cmd: table.Command, args: list[str]) -> int:
    if cmd.xl:
        return run_xl(cmd, args)
    try:
        handler: Callable[..., Any] | None = load_handler(cmd)
    except ImportError:
        handler = None
    if handler is not None and getattr(handler, "raw_argv", False):
        return handler(args)              # the command parses its own argv
    if wants_help(args):  # -h prints the command's help, exit 0
        print_help(cmd.name)
        return 0
    rc = run_fast(cmd, args)
    if rc is not None:
        return rc
    try:
        click_cmd = build_click(cmd)
    except ImportError as e:
        if e.name and cmd.handler.startswith(e.name):
            print("pyxl: command %s is not available in this build" % cmd.name, file=sys.stderr)
            return 1
        raise
    try:
        rc = click_cmd.main(args, prog_name="pyxl " + cmd.name, standalone_mode=False)
    except BrokenPipeError:
        return 0
    except Exception as exc:
        from typing import cast

        # typer may bundle its own click: match the exception classes by name.
        kinds = {k.__name__ for k in type(exc).__mro__}
        ce = cast("_ClickError", exc)
        if kinds & {"NoSuchOption", "BadOptionUsage"} and getattr(ce, "option_name", None):
            # xl's def_getopt: getopt's optopt, which is 0 for a long option
            name = ce.option_name
            ch = name[1] if len(name) == 2 and name[0] == "-" and name[1] != "-" else "\0"
            sys.stderr.write("option `%s' not supported.\n" % ch)
            return 2
        if "UsageError" in kinds:
            ce.show()
            return 2
        if "Exit" in kinds:
            return ce.exit_code
        if "Abort" in kinds:
            return 130
        raise
    if isinstance(rc, int):
        return rc
    return 0


def run_fast(cmd: table.Command, args: list[str]) -> int | None:
    """Plain command lines skip click/pydantic (pyxl.cli.fastargs); None = use typer."""
    try:
        handler = load_handler(cmd)
    except ImportError:
        return None
    from pyxl.cli import fastargs

    kwargs = fastargs.parse(handler, args)
    if kwargs is None:
        return None
    try:
        rc = handler(**kwargs)
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if "Exit" in {k.__name__ for k in type(exc).__mro__}:
            from typing import cast

            return cast("_ClickError", exc).exit_code
        raise
    return rc if isinstance(rc, int) else 0


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
