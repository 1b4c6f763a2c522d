"""Parse a command line straight from a handler's typer signature.

typer (0.29) builds a click command and coerces every parameter through
pydantic, which costs ~150 ms per run -- more than the rest of `pyxl list`
together -- and importing typer alone costs ~40 ms.  Most command lines are plain: flags, options with a string or int
value, positional strings.  For those this module reads the same
`Annotated[..., typer.Option("-l", "--long")]` declarations the handler
already has and calls it directly; anything it does not fully understand
(an unknown option, a type other than bool/str/int/list[str], a missing
value, extra arguments) returns None and the caller falls back to typer, so
errors and help keep their one implementation.
"""

from __future__ import annotations

import typing

_SCALARS = (str, int)


def _unwrap(ann: object) -> tuple[type | None, typing.Any]:
    """Annotated[T, info] -> (T, info) with Optional stripped; (None, None) if unsupported.
    `info` is typer's OptionInfo/ArgumentInfo or the stubs below, told apart by name."""
    if typing.get_origin(ann) is not typing.Annotated:
        return None, None
    base, *meta = typing.get_args(ann)
    info = next((m for m in meta if type(m).__name__ in ("OptionInfo", "ArgumentInfo")), None)
    if info is None:
        return None, None
    if typing.get_origin(base) is typing.Union:
        args = [a for a in typing.get_args(base) if a is not type(None)]
        if len(args) != 1:
            return None, None
        base = args[0]
    if base is bool or base in _SCALARS:
        return base, info
    if typing.get_origin(base) is list and typing.get_args(base) == (str,):
        return list, info
    return None, None


class OptionInfo:
    """Stand-in for typer.Option while reading a signature: records the
    declarations without importing typer (~40 ms of every command's start-up)."""

    def __init__(self, default: object = None, *param_decls: str, **kw: object):
        self.default = default
        self.param_decls = param_decls
        self.callback = kw.get("callback")
        self.is_eager = kw.get("is_eager", False)


class ArgumentInfo(OptionInfo):
    pass


class _StubTyper:
    Option = OptionInfo
    Argument = ArgumentInfo


_NO_DEFAULT = object()


def _signature(handler: typing.Callable[..., object]
               ) -> tuple[list[tuple[str, object]], dict[str, object]] | None:
    """[(name, default)] of the handler's parameters, and its type hints,
    evaluated with typer stubbed out (handler modules bind typer lazily)."""
    fn = handler
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    code = fn.__code__
    if code.co_flags & 0x0C:                 # *args / **kwargs: not a plain signature
        return None
    names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    pos = names[:code.co_argcount]
    defaults = dict(zip(pos[len(pos) - len(fn.__defaults__ or ()):], fn.__defaults__ or ()))
    defaults.update(fn.__kwdefaults__ or {})
    hints = typing.get_type_hints(fn, globalns=dict(fn.__globals__, typer=_StubTyper),
                                  include_extras=True)
    return [(n, defaults.get(n, _NO_DEFAULT)) for n in names], hints


def parse(handler: typing.Callable[..., object], argv: list[str]) -> dict | None:
    try:
        sig = _signature(handler)
    except Exception:
        return None
    if sig is None:
        return None
    params, hints = sig
    options: dict[str, tuple[str, type]] = {}
    positionals: list[tuple[str, type]] = []
    kwargs: dict = {}
    for name, default in params:
        typ, info = _unwrap(hints.get(name))
        if typ is None or getattr(info, "callback", None) or getattr(info, "is_eager", False):
            return None
        if default is _NO_DEFAULT:
            return None           # required: let typer report it
        kwargs[name] = default
        if type(info).__name__ == "OptionInfo":
            # inside Annotated, typer takes Option's first positional (stored as
            # its default) as the first declaration
            first = [info.default] if isinstance(info.default, str) else []
            decls = [d for d in first + list(info.param_decls or ()) if d.startswith("-")]
            if not decls or typ is list:
                return None
            for d in decls:
                if "/" in d:
                    return None
                options[d] = (name, typ)
        else:
            positionals.append((name, typ))
    pos_values: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            pos_values += argv[i:]
            break
        if a.startswith("--") and len(a) > 2:
            key, eq, val = a.partition("=")
            if key not in options:
                return None
            name, typ = options[key]
            if typ is bool:
                if eq:
                    return None
                kwargs[name] = True
                continue
            if not eq:
                if i >= len(argv):
                    return None
                val = argv[i]
                i += 1
            if not _set(kwargs, name, typ, val):
                return None
        elif a.startswith("-") and len(a) > 1 and not a[1:].lstrip("-").isdigit():
            j = 1
            while j < len(a):
                key = "-" + a[j]
                if key not in options:
                    return None
                name, typ = options[key]
                if typ is bool:
                    kwargs[name] = True
                    j += 1
                    continue
                val = a[j + 1:]
                if not val:
                    if i >= len(argv):
                        return None
                    val = argv[i]
                    i += 1
                if not _set(kwargs, name, typ, val):
                    return None
                break
        else:
            pos_values.append(a)
    for name, typ in positionals:
        if typ is list:
            kwargs[name] = pos_values or kwargs[name]
            pos_values = []
        elif pos_values:
            if not _set(kwargs, name, typ, pos_values.pop(0)):
                return None
    if pos_values:
        return None
    return kwargs


def _set(kwargs: dict, name: str, typ: type, val: str) -> bool:
    if typ is int:
        try:
            kwargs[name] = int(val)
        except ValueError:
            return False
    else:
        kwargs[name] = val
    return True
