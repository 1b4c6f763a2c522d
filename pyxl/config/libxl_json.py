"""libxl_domain_config_to_json, byte for byte.

Two layers, like libxl: the IDL walk (gentypes.py's generated *_gen_json:
fields in IDL order, a field skipped when it equals its IDL default,
aggregates always printed, KeyedUnions printed under "<keyvar>.<member>")
produces a tree of JSON values; `YajlWriter` then renders that tree the way
yajl_gen does with yajl_gen_beautify and a 4-space indent (empty containers
as "{", blank line, "}"; control characters as \\u00XX; "/" and non-ASCII
bytes verbatim; a final newline).

Strings in the model are str; bytes that were not valid UTF-8 in the config
file arrive as surrogate escapes and are written back as the original bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union

from pyxl.config import model as M

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
            "\r": "\\r", "\t": "\\t"}


def _quote(s: str) -> str:
    out = ['"']
    for ch in s:
        e = _ESCAPES.get(ch)
        if e is not None:
            out.append(e)
        elif ch < " ":
            out.append("\\u00%02X" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class Raw(str):
    """A pre-rendered scalar (number, true/false/null, quoted string)."""


if TYPE_CHECKING:
    from typing import TypeAlias

    # the JSON tree: objects in key order, arrays, pre-rendered scalars
    Tree: TypeAlias = Union[Raw, dict[str, "Tree"], list["Tree"]]


def _render(value: Tree, depth: int, out: list[str]) -> None:
    if isinstance(value, Raw):
        out.append(value)
        return
    ind = "    " * (depth + 1)
    if isinstance(value, dict):
        out.append("{\n")
        first = True
        for k, v in value.items():
            if not first:
                out.append(",\n")
            first = False
            out.append(ind + _quote(k) + ": ")
            _render(v, depth + 1, out)
        out.append("\n" + "    " * depth + "}")
    else:  # list
        out.append("[\n")
        first = True
        for v in value:
            if not first:
                out.append(",\n")
            first = False
            out.append(ind)
            _render(v, depth + 1, out)
        out.append("\n" + "    " * depth + "]")


def render(tree: Tree) -> str:
    out: list[str] = []
    _render(tree, 0, out)
    out.append("\n")
    return "".join(out)


# ---------------------------------------------------------------- IDL walk

def _string(s: str) -> Raw:
    return Raw(_quote(s))


def _int(v: int) -> Raw:
    return Raw(str(int(v)))


def _enum(cls: type[M.LibxlEnum], v: int) -> Raw:
    try:
        return _string(cls(v).name.lower())
    except ValueError:
        return Raw("null")          # libxl_<enum>_to_string gave NULL


def _is_default(meta: Mapping, v: Any) -> bool:
    """Whether `v` is its field's IDL default (`v` is whatever the field holds)."""
    t = meta["t"]
    if t in ("int", "uint", "enum"):
        return v == meta["init"]
    if t in ("string", "defbool", "uuid", "union"):
        if t == "uuid":
            return v is None or v.int == 0
        return v is None
    if t == "bool":
        return not v
    if t == "mac":
        return v is None or not any(v)
    if t == "bitmap":
        return v is None or v.is_empty()
    if t in ("string_list",):
        return not v or v[0] is None
    if t == "key_value_list":
        return not v
    if t == "array":
        return not v
    if t == "ms_vm_genid":
        return v.is_zero()
    if t == "cpuid":
        return v.is_empty()
    return False  # struct: always printed


def _value(meta: Mapping, v: Any) -> Tree:
    t = meta["t"]
    if t == "int" or t == "uint":
        return _int(v)
    if t == "enum":
        return _enum(meta["enum"], v)
    if t == "string":
        return _string(v)
    if t == "defbool":
        return _string("True" if v else "False")
    if t == "bool":
        return Raw("true" if v else "false")
    if t == "uuid":
        return _string(str(v))
    if t == "mac":
        return _string(":".join("%02x" % b for b in v))
    if t == "bitmap":
        return [_int(b) for b in v]
    if t == "string_list":
        items: list[Tree] = []
        for s in v:
            if s is None:
                break
            items.append(_string(s))
        return items
    if t == "key_value_list":
        return {k: (_string(x) if x is not None else Raw("null")) for k, x in v.items()}
    if t == "struct":
        return struct_tree(v)
    if t == "array":
        return [_elem(meta["elem"], x) for x in v]
    if t == "ms_vm_genid":
        return [_int(b) for b in v.bytes]
    if t == "cpuid":
        return _cpuid(v)
    raise TypeError("unknown IDL kind %r" % t)


def _elem(elem: object, x: Any) -> Tree:
    if elem == "bitmap":
        # (None: a map xl never filled in -- only reachable with create -i)
        return [_int(b) for b in x] if x is not None else []
    if elem == "uint32":
        return _int(x)
    if isinstance(elem, type) and issubclass(elem, M.LibxlEnum):
        return _enum(elem, x)
    return struct_tree(x)


def _cpuid(policy: M.CpuidPolicy) -> dict[str, Tree]:
    leaves: list[Tree] = []
    for e in policy.cpuid:
        d: dict[str, Tree] = {"leaf": _int(e["leaf"])}
        if e.get("subleaf") is not None:
            d["subleaf"] = _int(e["subleaf"])
        for reg in ("eax", "ebx", "ecx", "edx"):
            if e.get(reg) is not None:
                d[reg] = _string(e[reg])
        leaves.append(d)
    msrs: list[Tree] = [{"index": _int(m["index"]), "policy": _string(m["policy"])}
                        for m in policy.msr]
    return {"cpuid": leaves, "msr": msrs}


def _union_key(obj: M.Struct, keyvar: str) -> tuple[str | None, Any]:
    """The "<keyvar>.<member>" key and member value of a KeyedUnion."""
    if isinstance(obj, M.DomainBuildInfo):
        member = M.UNION_MEMBERS.get(obj.type)
        if member is None:
            return None, None
        return "type." + member[0], obj.u
    if isinstance(obj, M.DeviceUsbdev):
        try:
            name = M.UsbdevType(obj.type).name.lower()
        except ValueError:
            return None, None
        return "type." + name, obj.u or M.UsbdevHostdev()
    if isinstance(obj, M.DeviceChannel):
        try:
            name = M.ChannelConnection(obj.connection).name.lower()
        except ValueError:
            return None, None
        return "connection." + name, obj.u
    raise TypeError(type(obj).__name__)


def struct_tree(obj: M.Struct) -> dict[str, Tree]:
    """The JSON tree of one IDL struct (gentypes' <type>_gen_json)."""
    d: dict[str, Tree] = {}
    for f in dataclasses.fields(obj):
        meta = f.metadata
        t = meta.get("t")
        if t in ("keyvar", "private") or meta.get("const"):
            continue
        v = getattr(obj, f.name)
        if t == "union":
            key, member = _union_key(obj, f.name)
            if key is None:
                continue
            d[key] = struct_tree(member) if member is not None else {}
            continue
        if _is_default(meta, v):
            continue
        d[f.name] = _value(meta, v)
    return d


def domain_config_to_json(cfg: "M.DomainConfig") -> str:
    """libxl_domain_config_to_json(): the text `xl -N create` prints."""
    return render(struct_tree(cfg))


# ------------------------------------------------- JSON read back (list -l)

def json_tree(value: Any) -> Tree:
    """The tree *_gen_json makes of a value libxl_domain_config_from_json read
    back: objects and scalars as they were, in their order; an array with no
    element is left out, as gen_json leaves out an Array whose count is 0, an
    empty bitmap and an empty string list."""
    if isinstance(value, dict):
        return {k: json_tree(v) for k, v in value.items() if v != []}
    if isinstance(value, list):
        return [json_tree(v) for v in value]
    if value is None:
        return Raw("null")
    if isinstance(value, bool):
        return Raw("true" if value else "false")
    if isinstance(value, int):
        return _int(value)
    return _string(str(value))


def idl_order(obj: dict[str, Any], cls: type) -> dict[str, Any]:
    """OBJ's keys in the order of the IDL struct CLS's fields (a KeyedUnion's
    "<keyvar>.<member>" key where the union is); unknown keys last."""
    rank: dict[str, int] = {}
    keyvar = None
    for i, f in enumerate(dataclasses.fields(cls)):
        t = f.metadata.get("t")
        if t == "keyvar":
            keyvar = f.name
        elif t == "union" and keyvar is not None:
            rank[keyvar + "."] = i
        else:
            rank[f.name] = i

    def key(item: tuple[str, Any]) -> int:
        k = item[0]
        prefix = k.split(".", 1)[0] + "." if "." in k else ""
        return rank.get(k, rank.get(prefix, len(rank)))

    return dict(sorted(obj.items(), key=key))
