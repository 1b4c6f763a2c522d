"""xl's option handling: glibc getopt_long as xl runs it, and def_getopt.

xl's main() first reads its global options with getopt("+vftTN") and then
sets optind = 1 for the command's own getopt_long calls.  glibc initialises
its ordering only when optind is 0, so the "+" (REQUIRE_ORDER) of the first
call stays in force: a command's options end at its first non-option
argument (`xl list d -l` has two positional arguments), or after "--".

def_getopt (tools/xl/xl_utils.c) wraps getopt_long with opterr = 0:

- an unknown option, an option missing its argument, an argument given to
  a long option that takes none, or an ambiguous long prefix: "option `%c'
  not supported." on stderr with getopt's optopt (0 for an unknown or
  ambiguous long option, the option's val for the others), exit 2 -- unless
  optopt is 'h', then help as for -h;
- -h or --help: help(command), exit 0;
- fewer than nreq positional arguments: "'xl CMD' requires at least N
  argument(s).", a blank line, help(command), exit 2.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Callable, Iterator, Sequence, TypeAlias

    from pyxl.cli.table import Command

    # getopt's answer for one option: a short option's letter or a long
    # option's val, and its argument
    Opt: TypeAlias = tuple[str | int, str | None]
    Opts: TypeAlias = list[Opt]
    # (name, has_arg, val), as struct option
    LongOpts: TypeAlias = Sequence[tuple[str, int, str | int]]


class Exit(Exception):
    """The command ends here with this status (xl calls exit())."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class GetoptError(Exception):
    """getopt returned '?': optopt, and the options it returned before."""

    def __init__(self, optopt: str | int, before: Sequence[Opt] = ()):
        super().__init__(optopt)
        self.optopt = optopt
        self.before = list(before)


def getopt_long(args: list[str], optstring: str, longopts: LongOpts,
                permute: bool = False) -> tuple[Opts, list[str]]:
    """glibc's getopt_long in REQUIRE_ORDER mode (unless PERMUTE) over ARGS
    (the command's arguments, without its name), with opterr = 0, as xl
    runs it.  Returns
    ([(val, optarg)], positional); raises GetoptError(optopt) at the first
    bad option.  longopts: ((name, has_arg, val), ...); val is a
    one-character string or an int."""
    out: Opts = []
    rest: list[str] = []
    for got in scan(args, optstring, longopts, rest, permute=permute):
        if isinstance(got, GetoptError):
            raise GetoptError(got.optopt, out)
        out.append(got)
    return out, rest


def scan(args: list[str], optstring: str, longopts: LongOpts, operands: list[str], *,
         permute: bool = False, prog: str | None = None) -> Iterator[Opt | GetoptError]:
    """glibc's getopt_long (posix/getopt.c, _getopt_internal_r) over ARGS:
    yields (val, optarg) for each option in turn and GetoptError(optopt)
    for each bad one, where glibc returns '?' (optopt 0 for an unknown or
    ambiguous long option), going on after it as glibc does; the other arguments are appended to OPERANDS.
    REQUIRE_ORDER (xl's commands) unless PERMUTE (a program's own
    getopt_long, GNU's default: options anywhere before "--").  With PROG,
    opterr is 1: each error prints glibc's message after "PROG: "."""
    def error(fmt: str, *a: object) -> None:
        if prog is not None:
            sys.stderr.write(("%s: " + fmt + "\n") % ((prog,) + a))

    i, n = 0, len(args)
    while i < n:
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            if not permute:
                break
            operands.append(a)
            i += 1
            continue
        i += 1
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            found = [o for o in longopts if o[0] == name]
            if not found:
                found = [o for o in longopts if o[0].startswith(name)]
                # several prefixes are ambiguous unless they are the same option
                ambiguous = [o for o in found[1:] if o[1:] != found[0][1:]]
                if ambiguous:
                    error("option '%s' is ambiguous; possibilities:%s", a,
                          "".join(" '--%s'" % o[0] for o in found[:1] + ambiguous))
                    yield GetoptError(0)
                    continue
            if not found:
                error("unrecognized option '%s'", a)
                yield GetoptError(0)
                continue
            lname, has_arg, val = found[0]
            optarg = None
            if eq:
                if not has_arg:
                    error("option '--%s' doesn't allow an argument", lname)
                    yield GetoptError(val)
                    continue
                optarg = value
            elif has_arg == 1:
                if i >= n:
                    error("option '--%s' requires an argument", lname)
                    yield GetoptError(val)
                    continue
                optarg = args[i]
                i += 1
            yield val, optarg
            continue
        j = 1
        while j < len(a):
            c = a[j]
            j += 1
            k = optstring.find(c)
            if k < 0 or c == ":":
                error("invalid option -- '%s'", c)
                yield GetoptError(c)
                continue
            if optstring[k + 1:k + 2] == ":":
                if optstring[k + 2:k + 3] == ":":      # optional: only attached
                    yield c, a[j:] or None
                elif j < len(a):
                    yield c, a[j:]
                elif i < n:
                    yield c, args[i]
                    i += 1
                else:
                    error("option requires an argument -- '%s'", c)
                    yield GetoptError(c)
                break
            yield c, None
    operands.extend(args[i:])


HELP_ONLY = (("help", 0, "h"),)


def def_getopt(cmd: Command, args: list[str], helpname: str | None = None,
               each: Callable[[str | int, str | None], None] | None = None,
               permute: bool = False) -> tuple[Opts, list[str]]:
    """def_getopt + SWITCH_FOREACH_OPT for table row CMD: the options and
    positional arguments, or Exit after printing what xl prints.  EACH, if
    given, is called with every (option, optarg) in turn, as the body of the
    command's switch runs before getopt reads the next option.  PERMUTE:
    GNU ordering (options after positional arguments too), for pyxl's own
    commands that want it; xl's always stop at the first positional one."""
    from pyxl.cli.main import print_help

    helpname = helpname or cmd.name
    longopts = HELP_ONLY if cmd.longopts is None else cmd.longopts + HELP_ONLY
    error = None
    try:
        opts, rest = getopt_long(args, "h" + cmd.getopt, longopts, permute)
    except GetoptError as e:
        opts, rest, error = e.before, [], e.optopt
    for val, optarg in opts:
        if val == "h":
            print_help(helpname)
            raise Exit(0)
        if each is not None:
            each(val, optarg)
    if error is not None:
        optopt = error if isinstance(error, str) else chr(error & 0xFF)
        if optopt == "h":
            print_help(helpname)
            raise Exit(0)
        sys.stdout.flush()
        sys.stderr.write("option `%s' not supported.\n" % optopt)
        raise Exit(2)
    if len(rest) < cmd.nreq:
        sys.stdout.flush()
        sys.stderr.write("'pyxl %s' requires at least %d argument%s.\n\n"
                         % (helpname, cmd.nreq, "s" if cmd.nreq > 1 else ""))
        sys.stderr.flush()
        print_help(helpname)
        raise Exit(2)
    return opts, rest
