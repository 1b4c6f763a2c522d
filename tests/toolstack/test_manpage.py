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
    assert "\\-l, \\-\\-long              Output all VM details" in page   # xl's option text
    assert "NAME_IN_USE (3)" in page              # exit statuses from the fault table


def test_pages_render_without_troff_warnings():
    """Every page in man/ is valid man(7) markup: groff, all warnings on, says nothing."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    for page in sorted(PAGE.parent.iterdir()):
        p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stderr == "", "%s: %s" % (page.name, p.stderr)


def test_tpm_serve_options_are_in_the_vtpm_page():
    """pyxl-vtpm(7) describes tpm-serve's identity and behaviour switches."""
    text = (PAGE.parent / "pyxl-vtpm.7").read_text()
    for option in ("\\-\\-vendor IBM", "\\-\\-emulator berlios", "\\-\\-no\\-startup"):
        assert option in text, option
