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

__all__ = ["load", "load_data", "to_json", "ConfigError", "HostInfo", "DomainConfig"]


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")


def config_text(path: str, extra=()) -> bytes:
    """What xl create parses: the file (/dev/null reads as empty) plus the
    KEY=VALUE arguments, appended as "\\n" + each + "\\n" ... + "\\n".
    Raises ConfigError (exit 3) when the file cannot be read."""
    if path == "/dev/null":
        data = b""
    else:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigError("Failed to read config file: %s: %s" % (path, e.strerror), 3)
    if extra:
        data += b"\n" + "".join(x + "\n" for x in extra).encode("utf-8", "surrogateescape") + b"\n"
    return data


def load(path: str, extra=(), *, warn=_stderr, host=None,
         ignore_global_affinity_masks: bool = False, optarg=None):
    """Parse an xl domain config like `xl create PATH KEY=VALUE...` does.

    Warnings go to `warn` (one line per call) as they happen; a config xl
    rejects raises ConfigError(lines, exit_code).  `host` (a HostInfo) sizes
    CPU bitmaps; the default is the 2-CPU, 1-node simulated host.
    (The "Parsing config from PATH" line is the caller's, as in xl.)
    """
    return load_data(config_text(path, extra), path, warn=warn, host=host,
                     ignore_global_affinity_masks=ignore_global_affinity_masks,
                     optarg=optarg)


def load_data(data: bytes, source: str, *, warn=_stderr, host=None,
              ignore_global_affinity_masks: bool = False, optarg=None):
    """load() for config text already in memory (`source` names it in messages)."""
    from pyxl.config import cfgfile
    from pyxl.config.host import DEFAULT_HOST
    from pyxl.config.parse import Output, apply_global_affinity_masks, parse_config

    out = Output(warn)
    out.optarg = optarg
    try:
        cfg = cfgfile.parse(data, source, warn=warn)
    except cfgfile.ConfigParseError as e:
        raise ConfigError(list(e.lines) + ["Failed to parse config: Invalid argument"], 1)
    d = parse_config(cfg, source, out, host or DEFAULT_HOST)
    if not ignore_global_affinity_masks:
        apply_global_affinity_masks(d, host or DEFAULT_HOST, out)
    out.flush()
    d.source = data.decode("utf-8", "surrogateescape")
    return d


def to_json(d_config) -> str:
    """libxl_domain_config_to_json(d_config): what `xl -N create` prints."""
    from pyxl.config.libxl_json import domain_config_to_json
    return domain_config_to_json(d_config)


def __getattr__(name):
    if name == "DomainConfig":
        from pyxl.config.model import DomainConfig
        return DomainConfig
    if name == "HostInfo":
        from pyxl.config.host import HostInfo
        return HostInfo
    raise AttributeError(name)
