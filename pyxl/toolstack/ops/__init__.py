"""The daemon's operations, one table: xenstored's `wire_funcs` idea applied
to the control socket.  Each module of this package exports
`OPS: dict[str, Op]`; the daemon (pyxl.toolstack.daemon) merges them and
dispatches a request by looking its op up, checking its arguments against
the row, and calling the handler.  A new operation is a new row."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple


class Op(NamedTuple):
    """One operation: handler(daemon, args) -> a JSON-able result.  Its
    arguments must include every name in `required` and nothing outside
    `required` + `optional` (else the client gets BAD_REQUEST)."""
    handler: Callable[[Any, dict], Any]
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


def libxl_json(op: str, text: Any) -> dict:
    """A request's domain configuration: the libxl_domain_config JSON text
    the client rendered (libxl_domain_config_to_json), parsed here, once,
    into what the daemon keeps (list -l, config-update, reboot)."""
    import json

    from pyxl.toolstack.errors import Fault

    try:
        config = json.loads(text) if isinstance(text, str) else None
    except ValueError as e:
        raise Fault("BAD_REQUEST", reason="%s: config is not JSON (%s)" % (op, e)) from None
    if not isinstance(config, dict):
        raise Fault("BAD_REQUEST",
                    reason="%s: config is not a libxl_domain_config JSON object" % op)
    return config


def merge(*tables: dict[str, Op]) -> dict[str, Op]:
    """One table from several; an op defined twice is a programming error."""
    out: dict[str, Op] = {}
    for t in tables:
        for name, op in t.items():
            if name in out:
                raise ValueError("daemon op %r defined twice" % name)
            out[name] = op
    return out
