"""The command table drives dispatch and help."""

import subprocess
from pathlib import Path

from pyxl.cli import table
from pyxl.cli.main import main


def test_names_unique_and_described():
    names = [c.name for c in table.COMMANDS]
    assert len(names) == len(set(names))
    assert len(table.XL_COMMANDS) == 92           # xl 4.17's cmd_table
    assert table.COMMANDS[:92] == table.XL_COMMANDS  # xl's first, pyxl's own after
    for c in table.COMMANDS:
        assert c.desc and ":" in c.handler, c.name


def test_prefix_lookup_like_xl():
    assert table.lookup("create").name == "create"
    assert table.lookup("cr").name == "create"
    assert table.lookup("vtpm-l").name == "vtpm-list"
    assert table.lookup("vtpm") is None          # ambiguous
    assert table.lookup("") is None
    assert table.lookup("nosuch") is None
    # over xl's whole table these are ambiguous, as in xl 4.17
    for prefix in ("p", "de", "sh", "l", "d", "u"):
        assert table.lookup(prefix) is None, prefix
    assert table.lookup("sha").name == "sharing"
    # pyxl's own commands: full names only, so no abbreviation changes meaning
    assert table.lookup("daemon").name == "daemon"
    assert table.lookup("da") is None and table.lookup("h") is None


def test_help_lists_every_command(capsys):
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage pyxl [-vfNtT] <subcommand> [args]\n")
    for c in table.COMMANDS:
        assert "\n %-19s %s\n" % (c.name, c.desc) in out or f" {c.name}" in out


def test_unknown_command_and_no_args(capsys):
    assert main(["frobnicate"]) == 1
    assert capsys.readouterr().err == "command not implemented\n"
    assert main([]) == 1


def test_dryrun_refused_where_unsupported(capsys):
    from pyxl.cli.main import Globals

    try:
        assert main(["-N", "list"]) == 1
        assert "command does not implement -N (dryrun) option" in capsys.readouterr().err
    finally:
        Globals.dryrun = False


def test_entry_point_runs(pyxl_cmd):
    p = subprocess.run(pyxl_cmd + ["help"], capture_output=True, text=True)
    assert p.returncode == 0
    assert "vtpm-attach" in p.stdout


def test_unknown_or_incomplete_option_is_xl_getopt_error(pyxl_cmd, tmp_path):
    # xl's def_getopt prints getopt's optopt (0 for a long option) and exits 2
    for args, ch in ((["create", "-z", "x.cfg"], b"z"), (["create", "-f"], b"f"),
                     (["list", "--bogus"], b"\0")):
        p = subprocess.run(pyxl_cmd + args, capture_output=True, cwd=tmp_path,
                           env=dict(__import__("os").environ, PYXL_ROOT=str(tmp_path)))
        assert p.returncode == 2, (args, p)
        assert p.stderr == b"option `" + ch + b"' not supported.\n"
        assert p.stdout == b""


def test_help_into_a_closed_pipe_is_quiet(pyxl_cmd):
    """`pyxl help | head -1`: the reader is gone; no traceback on stderr."""
    import os

    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run(pyxl_cmd + ["help", "list"], stdout=w, stderr=subprocess.PIPE,
                           timeout=60)
    finally:
        os.close(w)
    assert p.stderr == b""


def test_own_commands_usage_errors(pyxl_cmd, tmp_path):
    """pyxl's own commands: an unknown option, or one missing its value, is
    def_getopt's message as for xl's commands; any other usage error shows
    the table's usage line (help()'s first line) and typer's message, or
    def_getopt's for a missing argument."""
    env = dict(__import__("os").environ, PYXL_ROOT=str(tmp_path))
    for args, ch in ((["tpm-serve", "--bogus"], b"\0"), (["tpm-serve", "--state"], b"\0"),
                     (["daemon", "-z", "status"], b"z")):
        p = subprocess.run(pyxl_cmd + args, capture_output=True, env=env, timeout=60)
        assert (p.returncode, p.stdout, p.stderr) == \
            (2, b"", b"option `" + ch + b"' not supported.\n"), args
    p = subprocess.run(pyxl_cmd + ["tpm-serve", "--state", str(tmp_path / "s"), "--port", "x"],
                       capture_output=True, text=True, env=env, timeout=60)
    first, blank, error = p.stderr.splitlines()
    assert p.returncode == 2 and p.stdout == "" and blank == ""
    assert first == ("Usage: pyxl [-vtT] tpm-serve "
                     + table.lookup("tpm-serve").usage), p.stderr
    assert error.startswith("Error: Invalid value for '--port'"), p.stderr
    assert not (tmp_path / "s").exists()
    p = subprocess.run(pyxl_cmd + ["daemon"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 2 and p.stderr == "'pyxl daemon' requires at least 1 argument.\n\n"
    assert p.stdout.startswith("Usage: pyxl [-vtTf] daemon <start|stop|status> [options]\n")
    # options after the action (GNU ordering, unlike xl's commands)
    p = subprocess.run(pyxl_cmd + ["daemon", "status", "--force"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert (p.returncode, p.stdout) == (3, "not running\n"), p.stderr


def test_commands_without_typer_rows_never_import_typer(tmp_path):
    """typer (and the pydantic behind it, ~0.2 s) is for the commands whose
    handlers declare their options through it (tpm-serve); xl's commands,
    the xenstore tools and `daemon` start without it."""
    import os
    import sys

    code = ("import sys\nfrom pyxl.cli.main import main\n"
            "for argv in (['help'], ['help', 'xenstore-ls'], ['list', '-z'],"
            " ['create', '-n', %r], ['xenstore-read', '-h'], ['daemon', 'status', '--force']):\n"
            "    main(argv)\n"
            "assert 'typer' not in sys.modules and 'pydantic' not in sys.modules,"
            " sorted(m for m in sys.modules if m.startswith(('typer', 'pydantic')))\n"
            % str(Path(__file__).resolve().parents[1] / "examples" / "vtpm.cfg"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYXL_ROOT=str(tmp_path)), timeout=60)
    assert p.returncode == 0, p.stderr
    assert '"c_info"' in p.stdout, p.stdout[-500:]
