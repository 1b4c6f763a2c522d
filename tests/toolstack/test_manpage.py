"""man/pyxl.1 is generated from the command table; the committed page must match."""

from pathlib import Path

from pyxl.cli import table
from pyxl.cli.manpage import render

PAGE = Path(__file__).resolve().parents[2] / "man" / "pyxl.1"


def test_committed_page_is_the_generated_one():
    assert PAGE.read_text() == render(), \
        "man/pyxl.1 is stale: run `python -m pyxl.cli.manpage > man/pyxl.1`"


def test_every_command_and_its_options_are_documented():
    page = PAGE.read_text()
    for cmd in table.COMMANDS:
        assert "\\fB%s\\fR" % cmd.name.replace("-", "\\-") in page, cmd.name
    assert ".B \\-l, \\-\\-long" in page          # list's options come from its handler
    assert "NAME_IN_USE (3)" in page              # exit statuses from the fault table
