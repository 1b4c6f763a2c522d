"""Helpers shared by the config-language tests (not a test module)."""

from __future__ import annotations

from pyxl.config import cfgfile

FAILED = "Failed to parse config: Invalid argument"


def xl_stderr(data: bytes, path: str = "t.cfg") -> tuple[int, list[str]]:
    """What `xl create` prints and returns as far as libxlu decides it:
    (rc, stderr lines) for a parse failure, (0, [Parsing line, warnings...])
    when the text parses (later semantic checks are cfg-model's)."""
    lines = [f"Parsing config from {path}"]
    try:
        cfgfile.parse(data, path, warn=lines.append)
    except cfgfile.ConfigParseError as e:
        if e.exit_code is not None:
            return e.exit_code, lines + e.lines
        return 1, lines + e.lines + [FAILED]
    return 0, lines


def parse_error_lines(r) -> list[str]:
    """The libxlu part of an oracle Result's stderr: location-prefixed parse
    errors, the Python warning, the final failure line and assertions."""
    keep = []
    for line in r.stderr_lines[1:]:
        if ("config parsing error near" in line or line.startswith("warning: ")
                or line == FAILED or "Assertion" in line):
            keep.append(line)
    return keep


def rejected_by_libxlu(r) -> bool:
    return r.rc == -6 or FAILED in r.stderr_lines
