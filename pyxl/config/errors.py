"""The error a config load fails with."""

from __future__ import annotations

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Iterable


class ConfigError(Exception):
    """A config xl would reject.

    `lines` are the stderr lines of the failure (without trailing newlines),
    `exit_code` the status xl exits with (1, 3 for -ERROR_FAIL, 6 for
    -ERROR_INVAL, ...).  An empty `lines` is legitimate: xl fails silently
    on a bad max_grant_frames, for example.  `text()` is the exact stderr.
    """

    def __init__(self, lines: str | Iterable[str], exit_code: int = 1):
        if isinstance(lines, str):
            lines = [lines]
        self.lines = list(lines)
        self.exit_code = exit_code
        self.no_newline = False   # xl printed the last line without "\n"
        super().__init__("\n".join(self.lines) or "config rejected (exit %d)" % exit_code)

    def text(self) -> str:
        """The stderr xl writes for this failure, newlines included."""
        s = "".join(line + "\n" for line in self.lines)
        return s[:-1] if self.no_newline and s else s
