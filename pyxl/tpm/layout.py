"""Wire types for TPM 1.2 structure fields, and the one marshal/unmarshal
they drive.

A structure (structures.py) is a dataclass whose annotations, in order, are
its wire layout (Part 2 2.1: big-endian, no padding):

    @structure
    @dataclass(slots=True)
    class TPM_PCR_INFO_SHORT(TPMStruct):
        pcrSelection: TPM_PCR_SELECTION = ...      # a nested structure
        localityAtRelease: TPM_LOCALITY_SELECTION = ...
        digestAtRelease: TPM_DIGEST = ...

A field's type is `Annotated[python type, wire type, checks...]`; a nested
structure is simply its class.  Bytes the spec fixes but the object does not
hold (a TPM_STRUCTURE_TAG, "QUOT", a fill byte) are ClassVar annotations with
their value: written from it, checked against it when read.

`structure` compiles each declaration once into a read and a write function
(generated source, as dataclasses generates __init__; Layout.source shows
it): consecutive fixed-size fields become one struct.Struct, read in one
bounds-checked step when the buffer holds all of them.  When it does not,
the fields are read one by one, so a short buffer fails at the same field,
after the same checks, with the same error as a field-by-field loader
(libtpms's TPM_Load* chain).  Every bounds check is the Reader's (marshal.py).
"""

from __future__ import annotations

import operator
import struct
import sys
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import (Any, Callable, ClassVar, Generic, Protocol, Self, TypeVar, cast,
                    dataclass_transform, get_args, get_origin)

from .marshal import ALLOC_MAX, Reader, TPMBadBool, TPMDecodeError, TPMSizeError, Writer

T = TypeVar("T")

CheckFn = Callable[[Any, int], None]     # (value, its offset) -> None, or raises


class TPMStructError(TPMDecodeError):
    """Well-sized bytes that are not the structure expected (bad tag, bad value)."""

    def __init__(self, offset: int, what: str):
        super().__init__(offset, 0, 0, what)
        self.args = ("bad %s at offset %d" % (what, offset),)


class TPMBadValue(TPMStructError):
    """A field value this TPM refuses while parsing, with the TPM return code
    libtpms gives for it (e.g. a PCR selection larger than 24 PCRs)."""

    def __init__(self, offset: int, what: str, rc: int):
        super().__init__(offset, what)
        self.rc = rc


class Check:
    """Annotated metadata: validate a field as soon as it is read (fn raises).
    `when`, an expression in {v} (the value), says when fn needs calling at
    all; the generated reader tests it inline (fn must still check on its
    own: a short buffer's fields are checked one by one through it)."""

    __slots__ = ("fn", "when")

    def __init__(self, fn: CheckFn, when: str | None = None):
        self.fn, self.when = fn, when


class Fixed:
    """A fixed-size field packed with struct format `fmt` ("B", "H", "I",
    "Q", "20s", ...); `convert` maps the raw value read (e.g. to bool)."""

    __slots__ = ("fmt", "convert")

    def __init__(self, fmt: str, convert: Callable[[Any], Any] | None = None):
        self.fmt, self.convert = fmt, convert


class Sized:
    """A byte string after its size (TPM_SIZED_BUFFER and friends).

    prefix: "I" (UINT32) or "H" (UINT16).  A size over `limit` is refused
    before its bytes are looked for, with `refuse(offset, size, remaining,
    name)` (default: TPM_SIZE, as TPM_SizedBuffer_Load's TPM_Malloc).
    holds: a structure the bytes must parse as when not empty (trailing bytes
    are not looked at, as libtpms loads them from the stream in place)."""

    __slots__ = ("prefix", "limit", "refuse", "holds")

    def __init__(self, prefix: str = "I", limit: int | None = ALLOC_MAX,
                 refuse: Callable[[int, int, int, str], Exception] | None = None,
                 holds: type[TPMStruct] | None = None):
        self.prefix, self.limit, self.refuse, self.holds = prefix, limit, refuse, holds


class Union:
    """Annotated metadata for sized bytes whose structure a preceding field
    selects (Part 2's unions, e.g. TPM_KEY_PARMS.parms by algorithmID): the
    bytes are parsed as holds[that field] at once (None: not parsed), and a
    value not in holds is refused with refuse(offset of the structure, value)."""

    __slots__ = ("by", "holds", "refuse")

    def __init__(self, by: str, holds: dict[int, type[TPMStruct] | None],
                 refuse: Callable[[int, int], Exception]):
        self.by, self.holds, self.refuse = by, holds, refuse


class Rest:
    """The rest of the buffer (an open-ended last field)."""


class Custom(Protocol):
    """A field kind with its own reader and writer (TPM_MSA_COMPOSITE's
    counted list of digests)."""

    def read(self, r: Reader, name: str) -> Any: ...

    def write(self, value: Any, parts: list[bytes]) -> None: ...


class _Ignored:
    """A ClassVar's fixed bytes that are written but not checked on read."""


IGNORED = _Ignored()

# ---------------------------------------------------------------- the basic types (Part 2 2.2)

UINT8 = typing.Annotated[int, Fixed("B")]
UINT16 = typing.Annotated[int, Fixed("H")]
UINT32 = typing.Annotated[int, Fixed("I")]
UINT64 = typing.Annotated[int, Fixed("Q")]
BYTE4 = typing.Annotated[bytes, Fixed("4s")]
TPM_DIGEST = typing.Annotated[bytes, Fixed("20s")]     # also TPM_NONCE, TPM_AUTHDATA (5.4-5.6)
SIZED32 = typing.Annotated[bytes, Sized("I")]
SIZED16 = typing.Annotated[bytes, Sized("H", None)]
REST = typing.Annotated[bytes, Rest()]


def _bool_check(v: int, at: int) -> None:
    if v > 1:
        raise TPMBadBool(at, 1, 1, "BOOL %#x" % v)


# TPM_BOOL (2.2.1): 0 or 1, anything else TPM_BAD_PARAMETER (TPM_LoadBool)
TPM_BOOL = typing.Annotated[int, Fixed("B"), Check(_bool_check, "{v} > 1")]
# a flag byte of TPM_PERMANENT_FLAGS / TPM_STCLEAR_FLAGS as the state blob
# holds them: written 0 or 1, any non-zero read as set
FLAG = typing.Annotated[bool, Fixed("B", convert=bool)]
# a TPM_STRUCTURE_TAG (3.1) in a ClassVar: checked when read (a wrong one is
# a TPMStructError unless the structure says otherwise)
TAG = typing.Annotated[int, Fixed("H")]


class _Item:
    """One field of a layout, or (name None) a constant from a ClassVar."""

    __slots__ = ("name", "kind", "const", "checks", "after", "union", "st", "cls")

    def __init__(self, name: str | None, kind: Any, const: Any = None,
                 checks: tuple[Check, ...] = (), after: tuple[_After, ...] = (),
                 union: Union | None = None, cls: type[TPMStruct] | None = None):
        self.name, self.kind, self.const, self.cls = name, kind, const, cls
        self.checks, self.after, self.union = checks, after, union
        self.st = struct.Struct(">" + kind.fmt) if isinstance(kind, Fixed) else None


def _size(item: _Item) -> int:
    assert item.st is not None
    return item.st.size


class _After:
    """A check that runs only once a later field of the run is read."""

    __slots__ = ("check", "name")

    def __init__(self, check: Check, name: str):
        self.check, self.name = check, name


def _check_source(ns: dict[str, Any], fn_name: str, chk: Check, v: str, at: str) -> list[str]:
    ns[fn_name] = chk.fn
    if chk.when is None:
        return ["    %s(%s, %s)" % (fn_name, v, at)]
    return ["    if %s:" % chk.when.format(v=v), "        %s(%s, %s)" % (fn_name, v, at)]


def after(field_name: str, fn: CheckFn) -> _After:
    """Check a ClassVar constant only after `field_name` has been read too
    (libtpms reads e.g. TPM_STORED_DATA12's tag and et before checking the tag)."""
    return _After(Check(fn), field_name)


def _one_by_one(r: Reader, items: list[_Item], checks: list[tuple[Check, int, int]]) -> None:
    """A run of fixed-size fields the buffer ends inside: read them one by one,
    each check as soon as the field it follows is read, until the Reader
    refuses the field that does not fit (so this never returns)."""
    raw: list[Any] = []
    at: list[int] = []
    for k, item in enumerate(items):
        at.append(r.pos)
        assert item.st is not None
        raw.append(r.fixed(item.st)[0])
        for c, follows, which in checks:
            if follows == k:
                c.fn(raw[which], at[which])
    raise AssertionError("a run that fits was read one by one")


def _masked(st: struct.Struct, widths: tuple[int | None, ...], args: tuple[Any, ...]) -> bytes:
    """As Writer.u8/u16/...: an integer too wide for its field is reduced to it."""
    return st.pack(*(a if w is None else a & w for a, w in zip(args, widths)))


class Layout(Generic[T]):
    """A structure's compiled declaration: one read and one write function,
    generated from its items (as dataclasses generates __init__), so that a
    structure costs what a hand-written pair of functions does.

    The generation waits for the first use of the layout (any of its
    attributes but `cls`): a process that reads three structures compiles
    three, not all of them at import.  Until then the slots are empty and
    __getattr__ (called only for an empty slot) compiles; after it, every
    access is a plain slot read."""

    __slots__ = ("cls", "items", "names", "open_ended", "read", "write", "source")

    items: list[_Item]
    names: list[str]
    open_ended: bool              # the last field takes the rest of the buffer
    read: Callable[[Reader], T]
    write: Callable[[T, list[bytes]], None]
    source: str

    def __init__(self, cls: type[T]):
        self.cls = cls

    def __getattr__(self, name: str) -> Any:
        if name == "cls" or name.startswith("__"):
            raise AttributeError(name)
        self._compile()
        return object.__getattribute__(self, name)

    def _compile(self) -> None:
        cls = self.cls
        self.items = items = _items(cls)
        self.names = [i.name for i in items if i.name is not None]
        self.open_ended = any(isinstance(i.kind, Rest) for i in items)
        ns: dict[str, Any] = {"TPMDecodeError": TPMDecodeError, "Reader": Reader,
                              "TPMSizeError": TPMSizeError, "_one_by_one": _one_by_one,
                              "_masked": _masked, "struct_error": struct.error, "cls": cls}
        src = self._read_source(ns) + self._write_source(ns)
        source = "\n".join(src)
        exec(compile(source, "<layout of %s>" % cls.__name__, "exec"), ns)
        self.read, self.write, self.source = ns["read"], ns["write"], source

    def _runs(self) -> list[list[_Item] | _Item]:
        steps: list[list[_Item] | _Item] = []
        for item in self.items:
            if item.st is None:
                steps.append(item)
            elif steps and isinstance(steps[-1], list):
                steps[-1].append(item)
            else:
                steps.append([item])
        return steps

    def _read_source(self, ns: dict[str, Any]) -> list[str]:
        out = ["def read(r):"]
        if any(i.union is not None for i in self.items):
            out.append("    start = r.pos")
        var = {}                    # field name -> local variable
        for s, step in enumerate(self._runs()):
            if isinstance(step, list):
                st = ns["st%d" % s] = struct.Struct(">" + "".join(i.kind.fmt for i in step))
                names = ["c%d_%d" % (s, k) if i.name is None else "v_" + i.name
                         for k, i in enumerate(step)]
                for i, n in zip(step, names):
                    if i.name is not None:
                        var[i.name] = n
                checks: list[tuple[Check, int, int]] = []
                for k, i in enumerate(step):
                    for chk in i.checks:
                        checks.append((chk, k, k))
                    for a in i.after:
                        follows = next(j for j, it in enumerate(step) if it.name == a.name)
                        checks.append((a.check, follows, k))
                checks.sort(key=lambda c: c[1])
                ns["items%d" % s], ns["checks%d" % s] = step, checks
                offsets = [sum(_size(i) for i in step[:k]) for k in range(len(step))]
                unpack = ", ".join(names) + ("," if len(names) == 1 else "")
                # the Reader refuses a run that does not fit without moving
                out += ["    p = r.pos"] if checks else []
                out += ["    try:",
                        "        %s = r.fixed(st%d)" % (unpack, s),
                        "    except TPMDecodeError:",
                        "        _one_by_one(r, items%d, checks%d)" % (s, s)]
                for c, (chk, _follows, k) in enumerate(checks):
                    out += _check_source(ns, "chk%d_%d" % (s, c), chk, names[k],
                                         "p + %d" % offsets[k])
                for k, i in enumerate(step):
                    if i.name is not None and i.kind.convert is not None:
                        ns["conv%d_%d" % (s, k)] = i.kind.convert
                        out.append("    %s = conv%d_%d(%s)" % (names[k], s, k, names[k]))
                assert st.size == offsets[-1] + _size(step[-1])
                continue
            item, kind = step, step.kind
            assert item.name is not None
            v = var[item.name] = "v_" + item.name
            if item.checks:
                out.append("    at = r.pos")
            if item.cls is not None:
                ns["read%d" % s] = item.cls._layout.read
                out.append("    %s = read%d(r)" % (v, s))
            elif isinstance(kind, Sized):
                width = 4 if kind.prefix == "I" else 2
                if kind.limit is None:
                    out.append("    %s = r.bytes(r.%s(), %r)" % (v, "u32" if width == 4 else "u16",
                                                                  item.name))
                elif kind.refuse is None and width == 4 and kind.limit == ALLOC_MAX:
                    out.append("    %s = r.sized32(%r)" % (v, item.name))
                else:
                    ns["refuse%d" % s] = kind.refuse
                    out += ["    at_size = r.pos",
                            "    n = r.%s()" % ("u32" if width == 4 else "u16"),
                            "    if n > %d:" % kind.limit,
                            "        raise refuse%d(at_size, n, r.remaining, %r)"
                            % (s, item.name) if kind.refuse is not None else
                            "        raise TPMSizeError(at_size, n, r.remaining, %r)" % item.name,
                            "    %s = r.bytes(n, %r)" % (v, item.name)]
                if kind.holds is not None:
                    ns["holds%d" % s] = kind.holds._layout.read
                    out += ["    if %s:" % v, "        holds%d(Reader(%s))" % (s, v)]
                if item.union is not None:
                    u = item.union
                    ns["union%d" % s] = {k: None if c is None else c._layout.read
                                         for k, c in u.holds.items()}
                    ns["refuse%d" % s] = u.refuse
                    out += ["    if v_%s not in union%d:" % (u.by, s),
                            "        raise refuse%d(start, v_%s)" % (s, u.by),
                            "    sel = union%d[v_%s]" % (s, u.by),
                            "    if sel is not None:",
                            "        sel(Reader(%s))" % v]
            elif isinstance(kind, Rest):
                out.append("    %s = r.rest()" % v)
            else:
                custom: Custom = kind
                ns["custom%d" % s] = custom
                out.append("    %s = custom%d.read(r, %r)" % (v, s, item.name))
            for c, chk in enumerate(item.checks):
                out += _check_source(ns, "chk%d_%d" % (s, c), chk, v, "at")
        init = [f.name for f in fields(self.cls) if f.init]     # type: ignore[arg-type]
        if init[:len(self.names)] == self.names:
            args = ", ".join(var[n] for n in self.names)
        else:
            args = ", ".join("%s=%s" % (n, var[n]) for n in self.names)
        out.append("    return cls(%s)" % args)
        return out

    def _write_source(self, ns: dict[str, Any]) -> list[str]:
        out = ["def write(o, parts):"]
        for s, step in enumerate(self._runs()):
            if isinstance(step, list):
                args = []
                for k, i in enumerate(step):
                    if i.name is None:
                        ns["const%d_%d" % (s, k)] = i.const
                        args.append("const%d_%d" % (s, k))
                    else:
                        args.append("o." + i.name)
                        if i.kind.fmt.endswith("s"):
                            n = _size(i)
                            out += ["    if len(o.%s) != %d:" % (i.name, n),
                                    "        raise ValueError('%s.%s: %%d bytes, not %d' %% len(o.%s))"
                                    % (self.cls.__name__, i.name, n, i.name)]
                ns["widths%d" % s] = tuple(None if i.kind.fmt.endswith("s")
                                           else (1 << 8 * _size(i)) - 1 for i in step)
                out += ["    try:",
                        "        parts.append(st%d.pack(%s))" % (s, ", ".join(args)),
                        "    except struct_error:",
                        "        parts.append(_masked(st%d, widths%d, (%s,)))" % (s, s, ", ".join(args))]
                continue
            item, kind = step, step.kind
            if item.cls is not None:
                ns["write%d" % s] = item.cls._layout.write
                out.append("    write%d(o.%s, parts)" % (s, item.name))
            elif isinstance(kind, Sized):
                out += ["    v = o.%s" % item.name,
                        "    parts.append(len(v).to_bytes(%d, 'big'))" % (4 if kind.prefix == "I" else 2),
                        "    parts.append(bytes(v))"]
            elif isinstance(kind, Rest):
                out.append("    parts.append(bytes(o.%s))" % item.name)
            else:
                ns["custom%d" % s] = kind
                out.append("    custom%d.write(o.%s, parts)" % (s, item.name))
        if len(out) == 1:
            out.append("    pass")
        return out


def _items(cls: type) -> list[_Item]:
    """The class's own annotations, in order, as layout items."""
    namespace = vars(sys.modules[cls.__module__])
    items = []
    for name, t in cls.__dict__.get("__annotations__", {}).items():
        if name.startswith("_"):
            continue
        if isinstance(t, str):
            t = eval(t, namespace)      # the declaration's own annotation, in its module
        is_const = get_origin(t) is ClassVar
        if is_const:
            (t,) = get_args(t)
        base, meta = t, ()      # type: tuple[Any, tuple[Any, ...]]
        if get_origin(t) is typing.Annotated:
            base, *rest = get_args(t)
            meta = tuple(rest)
        kinds: list[Any] = [m for m in meta
                            if not isinstance(m, (Check, _After, _Ignored, Union))]
        unions = [m for m in meta if isinstance(m, Union)]
        checks: list[Check] = [m for m in meta if isinstance(m, Check)]
        afters: tuple[_After, ...] = tuple(m for m in meta if isinstance(m, _After))
        if isinstance(base, type) and issubclass(base, TPMStruct):
            items.append(_Item(name, None, checks=tuple(checks), cls=base))
            continue
        if len(kinds) != 1:
            raise TypeError("%s.%s: no wire type" % (cls.__name__, name))
        kind: Any = kinds[0]
        if not is_const:
            items.append(_Item(name, kind, checks=tuple(checks), after=afters,
                               union=unions[0] if unions else None))
            continue
        const = getattr(cls, name)
        if not checks and not afters and not any(isinstance(x, _Ignored) for x in meta):
            checks = [_const_check(cls.__name__, name, const)]
        items.append(_Item(None, kind, const=const, checks=tuple(checks), after=afters))
    return items


def _const_check(struct_name: str, name: str, want: Any) -> Check:
    def check(got: Any, at: int) -> None:
        if got == want:
            return
        if isinstance(want, int):
            raise TPMStructError(at, "%s %s 0x%04x (want 0x%04x)" % (struct_name, name, got, want))
        raise TPMStructError(at, "%s %s" % (struct_name, name))
    return Check(check, "{v} != %r" % (int(want) if isinstance(want, int) else bytes(want),))


class TPMStruct:
    """Base of every structure: the generic marshal/unmarshal of its layout,
    and the == and repr() a dataclass would generate for it (structures.py
    declares its dataclasses with eq=False, repr=False: one pair of methods
    for all of them instead of two generated and compiled per class at
    import)."""

    __slots__ = ()
    _layout: ClassVar[Layout[Any]]
    _field_names: ClassVar[tuple[str, ...]] = ()
    _field_values: ClassVar[operator.attrgetter[Any] | None] = None     # the fields, in order

    def __eq__(self, other: object) -> bool:
        """As dataclasses' __eq__: the same class and equal fields, in order."""
        if other.__class__ is not self.__class__:
            return NotImplemented
        values = self._field_values
        return values is None or bool(values(self) == values(other))

    __hash__ = None      # type: ignore[assignment]   # as a dataclass with eq: mutable, unhashable

    def __repr__(self) -> str:
        """As dataclasses' __repr__: Class(field=value, ...)."""
        return "%s(%s)" % (type(self).__qualname__, ", ".join(
            "%s=%r" % (n, getattr(self, n)) for n in self._field_names))

    def marshal(self, w: Writer) -> None:
        self._layout.write(self, w.parts)

    @classmethod
    def unmarshal(cls, r: Reader) -> Self:
        return cls._layout.read(r)

    def to_bytes(self) -> bytes:
        parts: list[bytes] = []
        self._layout.write(self, parts)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(data)
        v = cls._layout.read(r)
        r.expect_end(cls.__name__)
        return v

    def copy(self) -> Self:
        return type(self).from_bytes(self.to_bytes())


S = TypeVar("S", bound=type[TPMStruct])


def structure(cls: S) -> S:
    """Give a dataclass its layout, compiled from its declaration when first
    used, and its fields for TPMStruct's == and repr()."""
    cls._layout = Layout(cls)
    names = tuple(f.name for f in fields(cls))     # type: ignore[arg-type]
    cls._field_names = names
    cls._field_values = operator.attrgetter(*names) if names else None
    return cls


@dataclass_transform(field_specifiers=(field,))
def dataclass_structure(cls: S) -> S:
    """Declare a structure: `@dataclass(slots=True, eq=False, repr=False)`
    and `structure`, except that its __init__ -- the same function
    dataclasses would generate -- is compiled when the class is first
    constructed, as its layout is when first used.  dataclasses compiles
    each class's __init__ from generated source at import, about two thirds
    of what declaring a structure costs; a process that uses a handful of
    structures (vtpmmgr-stubdom) then compiles a handful."""
    made = cast(S, dataclass(slots=True, eq=False, repr=False, init=False)(cls))
    if hasattr(made, "__post_init__") or any(not f.init for f in fields(made)):   # type: ignore[arg-type]
        # _compile_init writes neither: such a class is a plain @dataclass + structure
        raise TypeError("%s: dataclass_structure takes no __post_init__ or init=False field"
                        % cls.__name__)
    type.__setattr__(made, "__init__", _first_init(made))
    return structure(made)


class _Factory:
    """The default of a field with a default_factory (dataclasses' _HAS_DEFAULT_FACTORY)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _first_init(cls: type[TPMStruct]) -> Callable[..., None]:
    def __init__(self: TPMStruct, *args: Any, **kwargs: Any) -> None:
        init = _compile_init(cls)
        type.__setattr__(cls, "__init__", init)
        init(self, *args, **kwargs)
    return __init__


def _compile_init(cls: type[TPMStruct]) -> Callable[..., None]:
    """The __init__ dataclasses generates for `cls` (fields in order, as
    parameters with their defaults; a default_factory called for each
    object that gets no value)."""
    ns: dict[str, Any] = {"_FACTORY": _FACTORY}
    params, body = ["self"], []
    for f in fields(cls):     # type: ignore[arg-type]
        n = f.name
        if f.default_factory is not MISSING:
            ns["_factory_" + n] = f.default_factory
            params.append("%s=_FACTORY" % n)
            body.append("self.%s = _factory_%s() if %s is _FACTORY else %s" % (n, n, n, n))
            continue
        if f.default is not MISSING:
            ns["_default_" + n] = f.default
            params.append("%s=_default_%s" % (n, n))
        else:
            params.append(n)
        body.append("self.%s = %s" % (n, n))
    source = "def __init__(%s):\n    %s\n" % (", ".join(params), "\n    ".join(body or ["pass"]))
    exec(compile(source, "<__init__ of %s>" % cls.__name__, "exec"), ns)
    init: Callable[..., None] = ns["__init__"]
    init.__qualname__ = "%s.__init__" % cls.__qualname__
    init.__annotations__ = {f.name: f.type for f in fields(cls)}     # type: ignore[arg-type]
    init.__annotations__["return"] = None
    return init
