"""Every xl 4.17 subcommand, compared live with the real xl (Debian's
xen-utils-4.17 through tests/oracle's shim) on everything xl decides before
it talks to a hypervisor: the command list, `help CMD`, command lookup by
prefix, -h/--help, bad options, missing option arguments and too few
arguments.  Only xl's own name in its messages ("xl" -> "pyxl") differs."""

from __future__ import annotations

import concurrent.futures
import re
import subprocess

import pytest

from pyxl.cli import table
from pyxl.cli.main import Globals, main

pytestmark = pytest.mark.peer("xl")

OWN = "\npyxl's own subcommands (the simulated host):\n"


def xl(args, cwd=None):
    from oracle.xl import XL, _need_xl, xl_env

    _need_xl()
    p = subprocess.run([XL, *args], env=xl_env(), capture_output=True, cwd=cwd,
                       stdin=subprocess.DEVNULL, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "surrogateescape"), \
        p.stderr.decode("utf-8", "surrogateescape")


def xl_many(argvs, cwd=None):
    from oracle.xl import shim, empty_xl_conf

    shim(), empty_xl_conf()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda a: xl(a, cwd), argvs))


def as_pyxl(text: str) -> str:
    """xl's own name where xl prints it (help(), def_getopt, main_config_update)."""
    text = re.sub(r"^Usage xl ", "Usage pyxl ", text, flags=re.M)
    text = re.sub(r"^xl full list", "pyxl full list", text, flags=re.M)
    text = re.sub(r"^Usage: xl \[", "Usage: pyxl [", text, flags=re.M)
    text = re.sub(r"^'xl ", "'pyxl ", text, flags=re.M)
    return re.sub(r"^xl config-update requires", "pyxl config-update requires", text, flags=re.M)


def xl_names() -> list[str]:
    """The subcommands, in order, as the real xl lists them."""
    rc, out, _ = xl(["help"])
    body = out.split("subcommands:\n\n", 1)[1]
    return [l.split()[0] for l in body.splitlines() if l.startswith(" ") and l[1:2] != " "]


def pyxl(capsys, args):
    capsys.readouterr()
    try:
        rc = main(list(args))
    finally:
        Globals.command = ""
    out = capsys.readouterr()
    return rc & 0xFF, out.out, out.err


def test_help_lists_xl_commands_in_xl_order_then_pyxl_own(capsys):
    rc, out, err = xl(["help"])
    assert rc == 0
    mine = pyxl(capsys, ["help"])
    assert mine[0] == 0 and mine[2] == ""
    ours, own = mine[1].split(OWN)
    assert ours == as_pyxl(out)
    assert [l.split()[0] for l in own.strip("\n").splitlines()] == \
        [c.name for c in table.COMMANDS if not c.xl]


def test_no_command_prints_the_list_and_fails(capsys):
    rc, out, err = xl([])
    mine = pyxl(capsys, [])
    assert mine[0] == rc == 1
    assert mine[1].split(OWN)[0] == as_pyxl(out)


def test_help_for_every_command_is_xls(capsys):
    names = xl_names()
    assert len(names) == 92
    for name, got in zip(names, xl_many([["help", n] for n in names])):
        assert pyxl(capsys, ["help", name]) == (got[0], as_pyxl(got[1]), got[2]), name


EXTRA_PREFIXES = ({"", "help", "he", "h", "-h", "xenstore-ls", "daemon", "tpm", "da",
                     "vtpm", "vtpm-l", "cpupool-c", "psr-c", "usb", "sched-credit",
                     "nosuch", "list-", "config_update"})


def test_prefix_lookup_is_xls(capsys):
    """`help PREFIX` goes through cmdtable_lookup without running anything; a
    command line PREFIX -h runs the command xl would run."""
    PREFIXES = sorted({n[:k] for n in xl_names() for k in (1, 2, 3, 4, 5, 7)} | EXTRA_PREFIXES)
    got = xl_many([["help", p] for p in PREFIXES])
    for p, g in zip(PREFIXES, got):
        mine = pyxl(capsys, ["help", p])
        if p == "help":                          # the whole list
            assert g[0] == mine[0] == 0 and mine[1].split(OWN)[0] == as_pyxl(g[1]), p
        elif p in table.BY_NAME and not table.BY_NAME[p].xl:   # pyxl's own, full name only
            assert g[1] == 'command "%s" not implemented\n' % p
            assert mine[1].startswith("Usage: pyxl [-vtT"), p
        else:
            assert mine == (g[0], as_pyxl(g[1]), as_pyxl(g[2])), p
    run = [p for p in PREFIXES if p not in ("", "help", "-h")]
    for p, g in zip(run, xl_many([[p, "-h"] for p in run])):
        if g[0] < 0:        # xl ran a command that needs a hypervisor (getenforce)
            continue
        mine = pyxl(capsys, [p, "-h"])
        if g[2] == "command not implemented\n" and p not in table.BY_NAME:
            assert mine == (1, "", g[2]), p
        elif p in table.BY_NAME and not table.BY_NAME[p].xl:
            continue
        else:
            assert mine == (g[0], as_pyxl(g[1]), as_pyxl(g[2])), p


def bad_lines(cmd):
    """Argument vectors def_getopt rejects (or answers with help) for CMD."""
    cases = [["-h"], ["--help"], ["-@"], ["--bogus"], ["--help=1"], ["-h", "-@"], ["-@", "-h"]]
    if cmd.nreq:
        cases += [[], ["--"]]
    spec = cmd.getopt or ""
    for i, ch in enumerate(spec):
        if ch.isalnum() and spec[i + 1:i + 2] == ":":
            cases.append(["-" + ch])                     # missing argument
            break
    for name, has_arg, _ in cmd.longopts or ():
        # a value for a flag, or none for an option that needs one; whole and abbreviated
        cases.append(["--" + name + ("" if has_arg else "=x")])
        cases.append(["--" + name[:2] + ("" if has_arg else "=x")])
    if cmd.getopt is None:
        cases += [[]]
    return [c for i, c in enumerate(cases) if c not in cases[:i]]


def test_every_command_rejects_what_xl_rejects(capsys, tmp_path, monkeypatch):
    """-h, --help, unknown and ambiguous options, missing arguments: rc,
    stdout and stderr as xl's, for each of the 92 commands."""
    monkeypatch.chdir(tmp_path)
    argvs = [[n] + a for n in xl_names() for a in bad_lines(table.lookup(n))]
    compared, bad = 0, []
    for argv, g in zip(argvs, xl_many(argvs, cwd=tmp_path)):
        if g[0] < 0:
            continue        # xl got past its checks and needed a hypervisor
        if table.lookup(argv[0]).nreq == 0 and argv[1:] in ([], ["--"]):
            continue
        mine = pyxl(capsys, argv)
        if mine != (g[0], as_pyxl(g[1]), as_pyxl(g[2])):
            bad.append((argv, mine, g))
        compared += 1
    assert not bad, "\n".join(map(repr, bad))
    assert compared > 700, compared


def test_options_stop_at_the_first_argument_as_in_xl(capsys):
    """xl's main() leaves getopt in REQUIRE_ORDER ("+vftTN"): `list d -l` has
    two arguments, so list prints its help and fails, as xl does."""
    for argv in (["list", "d", "-l"], ["list", "a", "b"], ["list", "-l", "a", "b", "-z"]):
        g = xl(argv)
        if g[0] < 0:
            continue
        assert pyxl(capsys, argv) == (g[0], as_pyxl(g[1]), as_pyxl(g[2])), argv


def test_global_options_and_unknown_commands(capsys):
    for argv, rc in ((["frobnicate"], 1), (["h"], 1), (["-h"], 1), (["--help"], 1),
                     (["-N", "list"], 1), (["-N", "help", "list"], 0)):
        g = xl(argv)
        mine = pyxl(capsys, argv)
        Globals.dryrun = False
        assert g[0] == mine[0] == rc, argv
        assert mine[1] == as_pyxl(g[1]), argv
        assert mine[2] == g[2].replace("/usr/lib/xen-4.17/bin/xl:", "pyxl:"), argv
