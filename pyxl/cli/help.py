"""`pyxl help [CMD]`."""

from typing import Annotated, Optional

import typer


def help_(command: Annotated[Optional[str], typer.Argument(help="Command to describe.")] = None) -> int:
    from pyxl.cli.main import print_help

    print_help(command)
    return 0
