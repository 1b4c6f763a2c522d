"""Domain configuration: xl config files -> libxl_domain_config (+ its JSON).

    from pyxl.config import load, to_json, ConfigError
    d_config = load("guest.cfg", ["memory=512"])    # raises ConfigError
    print(to_json(d_config), end="")

Layers: cfgfile (the config language, libxlu) -> parse (xl_parse.c: keys ->
model) -> model (libxl_types.idl) -> libxl_json (libxl's JSON).  Imports are
lazy: `pyxl create` start-up time is measured.
"""

from __future__ import annotations

import sys

from pyxl.config.errors import ConfigError

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Callable, Sequence

    from pyxl.config.host import HostInfo
    from pyxl.config.model import DomainConfig

__all__ = ["load", "load_data", "to_json", "ConfigError", "HostInfo", "DomainConfig"]


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")


def config_text(path: str, extra: Sequence[str] = ()) -> bytes:
    """What xl create parses: the file (/dev/null reads as empty) plus the
    KEY=VALUE arguments, appended as "\n" + "KEY=VALUE\n"... + "\n" (xl's
    sprintf("\n%s\n", extra_config)).  Raises ConfigError (exit 3) when
    the file cannot be read."""
    from pyxl.config import cfgfile

    if path == "/dev/null":
        data = b""
    else:
        try:
            data = cfgfile.read_config_data(path, [])
        except cfgfile.ConfigReadError as e:
            raise ConfigError(e.lines, e.exit_code)
    if extra:
        data += b"\n" + "".join(x + "\n" for x in extra).encode("utf-8", "surrogateescape") + b"\n"
    return data


def load(path: str, extra: Sequence[str] = (), *, warn: Callable[[str], object] = _stderr,
         host: HostInfo | None = None,
         ignore_global_affinity_masks: bool = False) -> DomainConfig:
    """Parse an xl domain config like `xl create PATH KEY=VALUE...` does.

    Warnings go to `warn` (one line per call) as they happen; a config xl
    rejects raises ConfigError(lines, exit_code).  `host` (a HostInfo) sizes
    CPU bitmaps; the default is the 2-CPU, 1-node simulated host.
    (The "Parsing config from PATH" line is the caller's, as in xl.)
    """
    return load_data(config_text(path, extra), path, warn=warn, host=host,
                     ignore_global_affinity_masks=ignore_global_affinity_masks)


def load_data(data: bytes, source: str, *, warn: Callable[[str], object] = _stderr,
              host: HostInfo | None = None, ignore_global_affinity_masks: bool = False,
              warn_partial: Callable[[str], object] | None = None) -> DomainConfig:
    """load() for config text already in memory (`source` names it in messages).
    `warn_partial`, if given, receives a final message xl prints without a
    newline (otherwise it goes to `warn` as a line)."""
    from pyxl.config import cfgfile
    from pyxl.config.host import DEFAULT_HOST
    from pyxl.config.parse import Output, apply_global_affinity_masks, parse_config

    out = Output(warn, warn_partial)
    try:
        # the language layer's warnings go through `out` too, so that a
        # message xl printed without a newline runs into them as in xl
        cfg = cfgfile.parse(data, source, warn=out.say)
    except cfgfile.ConfigParseError as e:
        if e.exit_code is not None:      # xl itself aborts (exit_code 134)
            raise ConfigError(list(e.lines), e.exit_code)
        raise ConfigError(list(e.lines) + ["Failed to parse config: Invalid argument"], 1)
    d = parse_config(cfg, source, out, host or DEFAULT_HOST)
    if not ignore_global_affinity_masks:
        apply_global_affinity_masks(d, host or DEFAULT_HOST, out)
    out.flush()
    d.source = data.decode("utf-8", "surrogateescape")
    return d


def to_json(d_config: DomainConfig) -> str:
    """libxl_domain_config_to_json(d_config): what `xl -N create` prints."""
    from pyxl.config.libxl_json import domain_config_to_json
    return domain_config_to_json(d_config)


def __getattr__(name: str) -> object:
    if name == "DomainConfig":
        from pyxl.config.model import DomainConfig
        return DomainConfig
    if name == "HostInfo":
        from pyxl.config.host import HostInfo
        return HostInfo
    raise AttributeError(name)
