"""What pyxl's stub domains share with mini-os: its console output rules.

mini-os's console_print turns every "\\n" into "\\r\\n" on the PV console
ring, and call_main echoes the argument vector it built from the domain's
command line (`"main" "a" "b" `).  Stub-domain code writes through a
`printk` made here so every line reaches the console the same way.
"""

from __future__ import annotations

import shlex
import threading
from typing import Callable

Printk = Callable[[str], None]


def make_printk(console_write) -> Printk:
    """A thread-safe printk over a domain's console_write(bytes)."""
    lock = threading.Lock()

    def printk(text: str) -> None:
        data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace")
        with lock:
            console_write(data)
    return printk


def argv_of(cmdline: str) -> list[str]:
    """mini-os splits the command line on spaces (quotes honoured) and puts
    "main" in front."""
    try:
        args = shlex.split(cmdline or "")
    except ValueError:
        args = (cmdline or "").split()
    return ["main"] + args


def echo_args(printk: Printk, argv: list[str]) -> None:
    printk("".join('"%s" ' % a for a in argv) + "\n")
