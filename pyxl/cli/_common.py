"""Small helpers shared by the toolstack's command handlers (xl's xl_utils.c)."""

from __future__ import annotations

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable, ParamSpec

    _P = ParamSpec("_P")


def call(op: str, **args: Any) -> Any:
    from pyxl.toolstack.client import call as _call

    return _call(op, **args)


def faults(fn: Callable[_P, int | None]) -> Callable[_P, int]:
    """Run a handler body; a Fault prints xl's text and becomes the exit status."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a: _P.args, **kw: _P.kwargs) -> int:
        from pyxl.toolstack.errors import Fault

        try:
            rc = fn(*a, **kw)
        except Fault as f:
            return f.report()
        except BrokenPipeError:
            return 0
        return rc or 0

    return wrapper
