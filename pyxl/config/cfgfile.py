"""libxlu's config-file layer: bytes -> settings, with xl 4.17's exact errors.

Xen's xl reads a domain config with libxlu (tools/libs/util/libxlu_cfg*):
a flex scanner, a Bison LALR(1) parser and a handful of typed getters.  This
module reproduces that layer, quirks included, because scripts and users see
its messages verbatim.

Stages (each usable on its own):

  scan(data)                 -> [Token]     flex's rules and error states
  parse_tree(data, path)     -> Tree        Bison's automaton, error recovery
  config_from_tree(tree, ..) -> XluConfig   settings and libxlu's getters
  parse(data, path, warn)    -> XluConfig   all three in one pass (the usual
                                            entry; `+=` errors interleave with
                                            syntax errors, so the real work is
                                            done during the parse)

The parse tables come from grammar/xl.cfg.lark (package data): lalr.py
computes the LALR(1) automaton, then Bison's policy is applied on top of it
(default reductions, which states read a lookahead, which tokens an error
message lists) so that errors name exactly the tokens xl names.  The tables
are computed once and cached (marshal) in the user's cache directory
(start-up latency is benchmarked).  A few
common statement shapes skip the automaton (see _FAST_RE) with identical
effects.

Values stay bytes-faithful: strings are decoded as UTF-8 with
surrogateescape, so arbitrary bytes round-trip through .encode("utf-8",
"surrogateescape"); messages use the same decoding.
"""

from __future__ import annotations

import errno as _errno
import marshal
import os
import re
import sys
import zlib
from typing import Callable, Iterator, NamedTuple, Protocol, Sequence

from pyxl.fsutil import strerror

__all__ = [
    "ConfigParseError", "ConfigReadError", "XluConfig", "XluList", "Setting",
    "Token", "Tree", "parse", "parse_tree", "read_config", "read_config_data",
    "scan", "grammar_text", "parse_tables", "strtol", "config_from_tree",
]

Warn = Callable[[str], None]

LONG_MIN = -(1 << 63)
LONG_MAX = (1 << 63) - 1
YYMAXDEPTH = 10000          # Bison's stack limit in libxlu's generated parser

PYTHON_WARNING = [
    "warning: Config file looks like it contains Python code.",
    "warning:  Arbitrary Python is no longer supported.",
    "warning:  See https://wiki.xen.org/wiki/PythonInXlConfig",
]


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _stderr(line: str) -> None:
    sys.stderr.buffer.write(line.encode("utf-8", "surrogateescape") + b"\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# errors

class ConfigParseError(Exception):
    """The config was rejected.  .lines are xl's stderr lines for it, without
    the caller's "Failed to parse config: Invalid argument".  .exit_code is
    None for an ordinary rejection (xl then exits 1); 134 when real xl dies
    on an assertion (a NUL byte inside a quoted string) -- .lines then end
    with xl's assertion message and xl prints nothing more."""

    def __init__(self, lines: list[str], exit_code: int | None = None):
        super().__init__("\n".join(lines))
        self.lines = lines
        self.exit_code = exit_code


class ConfigReadError(Exception):
    """The config file could not be read (xl create exits 3, before printing
    "Parsing config from ...")."""

    def __init__(self, lines: list[str], exit_code: int = 3):
        super().__init__("\n".join(lines))
        self.lines = lines
        self.exit_code = exit_code


class _Abort(Exception):
    """A libxlu assert() fired."""


# --------------------------------------------------------------------------
# stage 1: the scanner (libxlu_cfg_l.l)

class Token(NamedTuple):
    type: str        # IDENT NUMBER STRING NEWLINE EQUALS PLUS_EQUALS SEMICOLON
                     # COMMA LSQB RSQB $END
    text: bytes      # flex's yytext for the token
    line: int        # Bison location first_line (NEWLINE: its own line)
    value: object    # IDENT/NUMBER: str; STRING: dequoted str (None after an error)


# Tokens of the INITIAL start condition.  flex takes the longest match; the
# alternatives below never compete for the same length except where the
# earlier flex rule is listed first, so Python's first-match gives the same
# result.  A comment is a NEWLINE token that includes its newline.
_TOKEN_RE = re.compile(rb"""
    (?P<ws>[ \t]+)
  | (?P<IDENT>[a-z][._0-9a-z]*)
  | (?P<NUMBER>[0-9][0-9a-fx]*)
  | (?P<NEWLINE>\n|\#[^\n]*\n)
  | (?P<STRING>"[^"\\\n]*+(?:\\[^\n][^"\\\n]*+)*+"
              |'[^'\\\n]*+(?:\\[^\n][^'\\\n]*+)*+')
  | (?P<PLUS_EQUALS>\+=)
  | (?P<EQUALS>=) | (?P<SEMICOLON>;) | (?P<COMMA>,) | (?P<LSQB>\[) | (?P<RSQB>\])
  | (?P<python>[+\-.():])
  | (?P<bad>[^\n])
""", re.X | re.S)
# The `lexerr` start condition swallows the rest of the non-blank run (a
# newline right after the bad character is swallowed instead).
_LEXERR_RE = re.compile(rb"[^ \t\n]*")
_match_token = _TOKEN_RE.match
_STRTOUL_RE = re.compile(rb"[ \t\n\v\f\r]*[+-]?[0-9]+")


def _dequote_bytes(src: bytes) -> tuple[bytes, str | None]:
    """xlu__cfgl_dequote on a C string (the token up to its first NUL).
    Returns (value, error message or None); raises _Abort where libxlu's
    asserts fire."""
    n = len(src)
    if not (n >= 2 and src[0] == src[-1]):
        raise _Abort("xl: libxlu_cfg.c:607: xlu__cfgl_dequote: "
                     "Assertion `len>=2 && src[0]==src[len-1]' failed.")
    if 0x5c not in src:
        return src[1:-1], None
    out = bytearray()
    p, end = 1, n - 1
    simple = {0x22: 0x22, 0x27: 0x27, 0x5c: 0x5c, 0x61: 7, 0x62: 8, 0x66: 12,
              0x6e: 10, 0x72: 13, 0x74: 9, 0x76: 11}
    while p < end:
        c = src[p]
        p += 1
        if c != 0x5c:
            out.append(c)
            continue
        if not p < end:
            raise _Abort("xl: libxlu_cfg.c:619: xlu__cfgl_dequote: "
                         "Assertion `p < src+len-1' failed.")
        nc = src[p]
        p += 1
        if nc in simple:
            out.append(simple[nc])
        elif nc == 0x78:  # \x: the length check can never pass in 4.17
            return bytes(out), ("invalid digit after backslash hexnumerical "
                                "character escape in quoted string")
        elif 0x30 <= nc <= 0x37:
            # strtoul(base 10) on the next three characters must consume at
            # least two; then the escape is dropped, nothing is written.
            m = _STRTOUL_RE.match(src[p:p + 3])
            used = m.end() if m else 0
            if used <= 1:
                return bytes(out), ("invalid digit after backslash octalnumerical "
                                    "character escape in quoted string")
            p += used
        else:
            return bytes(out), "invalid character after backlash in quoted string"
    return bytes(out), None


class _Scanner:
    """flex's scanner over the whole buffer, reporting lexical errors to the
    parse context as it goes (lexing is on demand, like yylex).  token()
    returns plain (type, text, line, value) tuples (see Token)."""

    def __init__(self, data: bytes, ctx: "_Context"):
        self.data = data
        self.n = len(data)
        self.pos = 0
        self.lineno = 1          # yylineno
        self.ctx = ctx
        self.eof: tuple | None = None

    def token(self) -> tuple:
        data, ctx, n = self.data, self.ctx, self.n
        pos = self.pos
        while pos < n:
            m = _match_token(data, pos)
            assert m is not None        # `bad` and NEWLINE match any byte
            kind = m.lastgroup
            pos = m.end()
            if kind == "ws":
                continue
            text = m.group()
            self.pos = pos
            if kind == "NEWLINE":
                self.lineno += 1
                ctx.text = text
                return ("NEWLINE", text, self.lineno - 1, None)
            if kind == "IDENT" or kind == "NUMBER":
                ctx.text = text
                return (kind, text, self.lineno, text.decode("ascii"))
            if kind == "STRING":
                ctx.text = text
                value = None
                if not ctx.err:
                    cut = text.find(b"\0")
                    raw, msg = _dequote_bytes(text if cut < 0 else text[:cut])
                    value = _text(raw)
                    if msg:
                        ctx.lexical_error(msg, self.lineno)
                        ctx.err = _errno.EINVAL
                return ("STRING", text, self.lineno, value)
            if kind == "python" or kind == "bad":
                if kind == "python":
                    ctx.likely_python = True
                if pos < n and data[pos] == 0x0A:
                    # <lexerr>\n: the error ends here and the newline is a token
                    self.pos = pos + 1
                    text += b"\n"
                    ctx.text = text
                    self.lineno += 1
                    ctx.lexical_error("lexical error", self.lineno)
                    return ("NEWLINE", text, self.lineno, None)
                run = _LEXERR_RE.match(data, pos)
                assert run is not None      # `*`: matches the empty run
                pos = self.pos = run.end()
                text += run.group()
                ctx.text = text
                if pos < n or len(text) > 1:
                    # <lexerr>[^ \t\n]*: the rest of the run (maybe nothing);
                    # a newline after it is an ordinary NEWLINE token
                    ctx.lexical_error("lexical error", self.lineno)
                    continue
                # the error state met end of input with nothing more to
                # swallow: no error; the text stays in yytext for $end
                ctx.text = text + b"\0"
                self.eof = ("$END", ctx.text, -1, None)
                return self.eof
            ctx.text = text
            return (kind, text, self.lineno, None)
        self.pos = pos
        if self.eof is None:
            ctx.text = b"\0"         # flex's yytext at end of buffer: one NUL
            self.eof = ("$END", b"\0", -1, None)
        return self.eof

    def __iter__(self) -> Iterator[tuple]:
        while True:
            tok = self.token()
            yield tok
            if tok[0] == "$END":
                return


def scan(data: bytes) -> list[Token]:
    """The token stream flex would produce (no diagnostics; for inspection
    and tests).  $END carries line -1: Bison keeps the previous location."""
    ctx = _Context("<scan>", lambda line: None)
    out = []
    try:
        for tok in _Scanner(data, ctx):
            out.append(Token(*tok))
    except _Abort:
        pass
    return out


# --------------------------------------------------------------------------
# stage 2: tables from the grammar, Bison's way

BISON_NAMES = {  # token -> name in Bison messages, in Bison's token order
    "$END": "$end", "IDENT": "IDENT", "STRING": "STRING", "NUMBER": "NUMBER",
    "NEWLINE": "NEWLINE", "PLUS_EQUALS": "+=", "EQUALS": "'='",
    "SEMICOLON": "';'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
}
_ORDER = list(BISON_NAMES)
_TABLES_VERSION = 2


def grammar_text() -> str:
    """grammar/xl.cfg.lark, loaded as package data (pyxl/grammar)."""
    return _grammar_bytes().decode("utf-8")


def _grammar_bytes() -> bytes:
    # The package directory holds grammar/ (a symlink in the source tree, a
    # copy in a wheel); read it directly when it is a plain file -- start-up
    # matters and importlib.resources drags in pathlib and zipfile -- and
    # through importlib.resources otherwise (zipped installs).
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "grammar", "xl.cfg.lark")
    try:
        with open(here, "rb") as f:
            return f.read()
    except OSError:
        from importlib.resources import files
        return (files("pyxl") / "grammar" / "xl.cfg.lark").read_bytes()


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyxl")


def _compute_tables(grammar: str) -> dict:
    """Build the LALR(1) automaton (lalr.py) and apply Bison's table policy:
    per state the explicit actions (shift: state+1, reduce: -(rule+1)), the
    default reduction, whether it reduces without reading a lookahead, where
    the `error` token shifts, and the expected tokens a message lists."""
    from . import lalr

    table = lalr.build(lalr.read_rules(grammar), "file")
    out_states = []
    for acts in table.states:
        shifts: dict[str, int] = {}
        gotos: dict[str, int] = {}
        reduces: dict[str, int] = {}
        for sym, (action, arg) in acts.items():
            if action == "shift":
                (shifts if sym.isupper() or sym == "$END" else gotos)[sym] = arg
            else:
                reduces[sym] = arg
        rset = set(reduces.values())
        token_shifts = shifts
        # Bison: a state needs no lookahead when it has a single reduction
        # and shifts no token; it then reduces at once ("consistent").
        consistent = len(rset) <= 1 and (not rset or not token_shifts)
        default = None
        if rset and "ERROR" not in token_shifts:   # no default where `error` shifts
            # the reduction with the most lookaheads (this grammar never has
            # two reductions in one state, so ties cannot arise)
            counts = {r: list(reduces.values()).count(r) for r in rset}
            default = max(sorted(rset), key=lambda r: counts[r])
        explicit = {}
        for sym, st in token_shifts.items():
            if sym != "ERROR":
                explicit[sym] = st + 1                  # shift: state + 1
        for sym, r in reduces.items():
            if r != default and sym in BISON_NAMES:
                explicit[sym] = -(r + 1)               # reduce: -(rule + 1)
        expected = [BISON_NAMES[t] for t in _ORDER if t in explicit]
        out_states.append({
            "act": explicit,
            "default": default,
            "nolook": bool(consistent and rset),
            "goto": gotos,
            "error": token_shifts.get("ERROR"),
            "expected": expected,
        })
    rule_info = [[r.text(), r.lhs, len(r.rhs)] for r in table.rules]
    return {"version": _TABLES_VERSION, "rules": rule_info, "states": out_states,
            "start": table.start, "accept": table.accept}


_TABLES: dict | None = None


def parse_tables() -> dict:
    """The parser tables, built once per grammar (and _TABLES_VERSION, bump
    it when _compute_tables changes) and cached in $XDG_CACHE_HOME/pyxl;
    an unreadable or malformed cache is rebuilt, never trusted."""
    global _TABLES
    if _TABLES is not None:
        return _TABLES
    raw = _grammar_bytes()
    key = "%08x%06x-%d" % (zlib.crc32(raw), len(raw), _TABLES_VERSION)
    path = os.path.join(_cache_dir(), f"xl.cfg-{key}.marshal")
    try:
        with open(path, "rb") as f:
            tables = marshal.load(f)
        if tables.get("version") != _TABLES_VERSION or tables.get("grammar") != raw:
            raise ValueError("stale")
        prepared = _prepare(tables)
    except Exception:       # missing, truncated, foreign or malformed cache
        tables = _compute_tables(raw.decode("utf-8"))
        tables["grammar"] = raw
        _write_cache(path, tables)
        prepared = _prepare(tables)
    _TABLES = prepared
    return _TABLES


def _write_cache(path: str, tables: dict) -> None:
    """Atomically (pyxl.fsutil.atomic_write); a cache we cannot write is no error."""
    from pyxl.fsutil import atomic_write

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, marshal.dumps(tables))
    except OSError:
        pass


def _prepare(tables: dict) -> dict:
    """JSON tables -> per-state lists for the driver loop."""
    states = tables["states"]
    # one dict per state: explicit actions; dflt: the default reduction or 0
    # (error).  The accept state shifts $END to _ACCEPT.
    tables["full"] = [dict(s["act"]) for s in states]
    tables["dflt"] = [-(s["default"] + 1) if s["default"] is not None else 0
                      for s in states]
    tables["full"][tables["accept"]] = {"$END": _ACCEPT}
    states[tables["accept"]]["expected"] = ["$end"]
    tables["nolook"] = [s["nolook"] for s in states]
    tables["goto"] = [s["goto"] for s in states]
    tables["err"] = [s["error"] for s in states]
    tables["expected"] = [s["expected"] for s in states]
    tables["rules"] = [(_RULE_CODES.get(text, 0), lhs, n)
                       for text, lhs, n in tables["rules"]]
    return tables


# --------------------------------------------------------------------------
# values and settings (libxlu_cfg.c)

class XluList:
    """A list value (libxlu XLU_ConfigList); items are str (atoms: STRING or
    NUMBER text) or XluList.  .line is the line of its '['."""

    __slots__ = ("values", "line")

    def __init__(self, line: int, values: list | None = None):
        self.line = line
        self.values = values if values is not None else []

    @property
    def count(self) -> int:
        return len(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def get_item(self, i: int) -> str | None:
        """xlu_cfg_get_listitem: the string at i, None if absent or a list."""
        if 0 <= i < len(self.values):
            v = self.values[i]
            if isinstance(v, str):
                return v
        return None

    def leading_strings(self) -> list[str]:
        """What xl's `for (i = 0; (s = xlu_cfg_get_listitem(l, i)); i++)`
        loops see: the strings up to the first non-string item."""
        out = []
        for v in self.values:
            if not isinstance(v, str):
                break
            out.append(v)
        return out

    def get_value(self, i: int) -> str | XluList | None:
        """xlu_cfg_get_listitem2: the raw value at i (or None)."""
        return self.values[i] if 0 <= i < len(self.values) else None

    def __repr__(self) -> str:
        return f"XluList(line={self.line}, count={len(self.values)})"


class Setting(NamedTuple):
    name: str
    value: str | XluList
    op: str            # "=" or "+="
    line: int


_DIGITS = {8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


def strtol(text: str) -> tuple[int | None, int, str]:
    """C strtol(text, &end, 0) -> (value, characters used, "ERANGE" or "").
    value is None when no digits were found (end == text)."""
    i, n = 0, len(text)
    while i < n and text[i] in " \t\n\v\f\r":
        i += 1
    neg = i < n and text[i] == "-"
    if i < n and text[i] in "+-":
        i += 1
    if text[i:i + 2] in ("0x", "0X") and i + 2 < n and text[i + 2] in _DIGITS[16]:
        base, i = 16, i + 2
    elif text[i:i + 1] == "0":
        base = 8
    else:
        base = 10
    digits = _DIGITS[base]
    j = i
    while j < n and text[j] in digits:
        j += 1
    if j == i:
        return None, 0, ""
    value = int(text[i:j], base)
    if neg:
        value = -value
    if value > LONG_MAX:
        return LONG_MAX, j, "ERANGE"
    if value < LONG_MIN:
        return LONG_MIN, j, "ERANGE"
    return value, j, ""


class Settings(Protocol):
    """What xl_parse.c reads of a parsed config: XluConfig's getters."""

    def get_value(self, key: str) -> str | XluList | None: ...

    def get_string(self, key: str, dont_warn: bool = False) -> str | None: ...

    def get_bounded_long(self, key: str, min: int, max: int,
                         dont_warn: bool = False) -> int | None: ...

    def get_long(self, key: str, dont_warn: bool = False) -> int | None: ...

    def get_defbool(self, key: str, dont_warn: bool = False) -> bool | None: ...

    def get_list(self, key: str, dont_warn: bool = False) -> XluList | None: ...


class XluConfig:
    """Parsed settings with libxlu's getters (xlu_cfg_get_* minus the
    prefix).  Getters return None where libxlu returns an error; warnings go
    through the `warn` callback given to parse()."""

    def __init__(self, path: str, warn: Warn | None = None):
        self.path = path
        self.warn: Warn = warn or _stderr
        self._settings: dict[str, Setting] = {}
        self.order: list[Setting] = []        # every assignment, file order

    # -- libxlu's find()/find_atom()
    def setting(self, key: str) -> Setting | None:
        return self._settings.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._settings

    def keys(self) -> list[str]:
        return list(self._settings)

    def line_of(self, key: str) -> int | None:
        s = self._settings.get(key)
        return s.line if s else None

    def get_value(self, key: str) -> str | XluList | None:
        s = self._settings.get(key)
        return s.value if s else None

    def _atom(self, key: str, dont_warn: bool) -> tuple[Setting, str] | None:
        """-> (setting, its string value), or None if unset or a list."""
        s = self._settings.get(key)
        if s is None:
            return None
        if not isinstance(s.value, str):
            if not dont_warn:
                self.warn(f"{self.path}:{s.line}: warning: parameter `{key}' is"
                          " a list but should be a single value")
            return None
        return s, s.value

    def get_string(self, key: str, dont_warn: bool = False) -> str | None:
        atom = self._atom(key, dont_warn)
        return None if atom is None else atom[1]

    def get_bounded_long(self, key: str, min: int, max: int,
                         dont_warn: bool = False) -> int | None:
        atom = self._atom(key, dont_warn)
        if atom is None:
            return None
        s, text = atom
        where = f"{self.path}:{s.line}: warning: "
        if s.op == "+=":
            if not dont_warn:
                self.warn(where + f"can't use += with numbers for parameter `{key}'")
            return None
        value, used, err = strtol(text)
        if err:
            if not dont_warn:
                self.warn(where + f"parameter `{key}' could not be parsed as a "
                          "number: Numerical result out of range")
            return None
        if value is None or used != len(text):
            if not dont_warn:
                self.warn(where + f"parameter `{key}' is not a valid number")
            return None
        if value < min:
            if not dont_warn:
                self.warn(where + f"value `{value}' is smaller than minimum bound '{min}'")
            return None
        if value > max:
            if not dont_warn:
                self.warn(where + f"value `{value}' is greater than maximum bound '{max}'")
            return None
        return value

    def get_long(self, key: str, dont_warn: bool = False) -> int | None:
        return self.get_bounded_long(key, LONG_MIN, LONG_MAX, dont_warn)

    def get_defbool(self, key: str, dont_warn: bool = False) -> bool | None:
        value = self.get_long(key, dont_warn)
        return None if value is None else value != 0

    def get_list(self, key: str, dont_warn: bool = False) -> XluList | None:
        s = self._settings.get(key)
        if s is None:
            return None
        if not isinstance(s.value, XluList):
            if not dont_warn:
                self.warn(f"{self.path}:{s.line}: warning: parameter `{key}' is a "
                          "single value but should be a list")
            return None
        return s.value

    def get_list_as_string_list(self, key: str,
                                dont_warn: bool = False) -> list[str | None] | None:
        lst = self.get_list(key, dont_warn)
        if lst is None:
            return None
        return [lst.get_item(i) for i in range(lst.count)]

    def __repr__(self) -> str:
        return f"XluConfig({self.path!r}, keys={self.keys()})"


# --------------------------------------------------------------------------
# stage 3: the parser (libxlu_cfg_y.y driven the way Bison's yacc.c does)

class Tree:
    """A parse-tree node shaped like lark.Tree (.data, .children); leaves are
    Tokens.  Built without recursion; deep lists stay cheap."""

    __slots__ = ("data", "children", "line")

    def __init__(self, data: str, children: list, line: int = 0):
        self.data = data
        self.children = children
        self.line = line

    def __repr__(self) -> str:
        return f"Tree({self.data!r}, <{len(self.children)} children>)"


class _Context:
    """CfgParseContext: error state shared by scanner, parser and actions."""

    def __init__(self, path: str, emit: Callable[[str], None]):
        self.path = path
        self.emit = emit
        self.err = 0
        self.lexerrlineno = -1
        self.likely_python = False
        self.text = b""               # yytext of the last scanner match
        self.scanner: _Scanner = None  # type: ignore[assignment]  # set by _run at once

    def yyerror(self, line: int, msg: str) -> None:
        if line <= self.lexerrlineno:
            return
        text = self.text
        newline = ""
        if text.endswith(b"\n"):
            text = text[:-1]
            line -= 1
            if not text:
                newline = "<newline>"
        text = text.rstrip(b" \t")
        shown = _text(text.split(b"\0", 1)[0])    # printf %.*s stops at NUL
        quoted = f"`{shown}'" if text else ""
        self.emit(f"{self.path}:{line}: config parsing error near "
                  f"{quoted}{newline}: {msg}")
        if not self.err:
            self.err = _errno.EINVAL

    def lexical_error(self, msg: str, lineno: int) -> None:
        self.yyerror(lineno, msg)
        self.lexerrlineno = lineno


_ACCEPT = 1 << 30

# Fast path.  Most statements are `key = atom` or `key = [atom, ...]` with
# plain (escape-free) strings.  Such a statement, met where the parser waits
# for the next statement, can only be parsed one way and can report no error
# of its own, so one regex match replaces its ~20 automaton steps; the
# effects on the parse context (yytext, yylineno, the setting) are applied
# exactly as the steps would.  Anything else takes the general path.
_W = rb"(?:[ \t]|\n|\#[^\n]*\n)*+"
_FAST_ATOM = rb"""(?:"[^"\\\n\0]*+"|'[^'\\\n\0]*+'|[0-9][0-9a-fx]*+)"""
_FAST_RE = re.compile(
    rb"[ \t]*+(?P<key>[a-z][._0-9a-z]*+)[ \t]*+(?P<op>\+?=)[ \t]*+"
    rb"(?:(?P<atom>" + _FAST_ATOM + rb")|\[(?P<list>" + _W + rb"(?:" + _FAST_ATOM + _W
    + rb"(?:," + _W + _FAST_ATOM + _W + rb")*+(?:," + _W + rb")?)?)\])"
    rb"[ \t]*+(?P<end>\n|\#[^\n]*\n|;)")
_FAST_ITEM_RE = re.compile(rb"""\n|\#[^\n]*\n|"[^"]*"|'[^']*'|[0-9][0-9a-fx]*""")


def _fast_statement(m: re.Match[bytes], ctx: _Context, cfg: XluConfig, tree: list | None) -> int:
    """Apply one fast-path statement; returns yylloc of its terminator."""
    scanner = ctx.scanner
    line = scanner.lineno
    key, op, atom, body, end = m.group("key", "op", "atom", "list", "end")
    if atom is not None:
        ctx.text = atom
        value = _text(atom[1:-1]) if atom[0] in b"\"'" else atom.decode("ascii")
    else:
        ctx.text = b"]"
        items = []
        for item in _FAST_ITEM_RE.findall(body):
            if item[-1] == 0x0A:
                scanner.lineno += 1
            else:
                items.append(_text(item[1:-1]) if item[0] in b"\"'" else item.decode("ascii"))
        value = XluList(line, items)
    if not ctx.err:
        _store(ctx, cfg, key.decode("ascii"), op == b"+=", value, line, tree, key, op)
    ctx.text = end
    scanner.pos = m.end()
    if end[-1] == 0x0A:
        scanner.lineno += 1
        return scanner.lineno - 1
    return scanner.lineno


def _run(data: bytes, path: str, warn: Warn | None, want_tree: bool) -> tuple[XluConfig, Tree]:
    tables = parse_tables()
    full, dflt, nolook = tables["full"], tables["dflt"], tables["nolook"]
    goto, errshift, expected = tables["goto"], tables["err"], tables["expected"]
    rules = tables["rules"]

    lines_out: list[str] = []
    ctx = _Context(path, lines_out.append)
    cfg = XluConfig(path, warn)
    ctx.scanner = _Scanner(data, ctx)
    next_token = ctx.scanner.token

    states = [tables["start"]]
    vals: list = [None]
    tok: tuple | None = None     # the lookahead (yychar); None = YYEMPTY
    loc = 1                      # yylloc: the last token's first_line
    errstatus = 0
    result = 0
    statements: list = []
    tree = statements if want_tree else None

    fast = _FAST_RE.match
    stmts_state = goto[tables["start"]]["stmts"]
    scanner = ctx.scanner

    try:
        while True:
            s = states[-1]
            if s == stmts_state and tok is None:
                m = fast(data, scanner.pos)
                if m is not None:
                    loc = _fast_statement(m, ctx, cfg, tree)
                    errstatus = 0
                    continue
            if nolook[s]:
                a = dflt[s]
            else:
                if tok is None:
                    tok = next_token()
                    if tok[2] >= 0:
                        loc = tok[2]
                a = full[s].get(tok[0], dflt[s])
            if a > 0:                                   # shift
                if a == _ACCEPT:
                    break
                if errstatus:
                    errstatus -= 1
                states.append(a - 1)
                vals.append(tok)
                tok = None
                if len(states) >= YYMAXDEPTH:
                    ctx.yyerror(loc, "memory exhausted")
                    result = 2
                    break
            elif a < 0:                                 # reduce
                code, lhs, n = rules[-a - 1]
                if n:
                    rhs = vals[-n:]
                    del states[-n:], vals[-n:]
                else:
                    rhs = []
                states.append(goto[states[-1]][lhs])
                vals.append(_action(code, rhs, ctx, cfg, tree, loc) if code else None)
                if len(states) >= YYMAXDEPTH:
                    ctx.yyerror(loc, "memory exhausted")
                    result = 2
                    break
            else:                                       # syntax error (yyerrlab)
                # only a state that reads the lookahead can reject it
                assert tok is not None
                if not errstatus:
                    wanted = expected[s]
                    msg = f"syntax error, unexpected {BISON_NAMES[tok[0]]}"
                    if 0 < len(wanted) <= 4:
                        msg += ", expecting " + " or ".join(wanted)
                    ctx.yyerror(loc, msg)
                if errstatus == 3:
                    if tok[0] == "$END":
                        result = 1
                        break
                    tok = None                          # discard the lookahead
                errstatus = 3
                while errshift[states[-1]] is None:     # pop to a state taking `error`
                    if len(states) == 1:
                        result = 1
                        break
                    states.pop()
                    vals.pop()
                if result:
                    break
                states.append(errshift[states[-1]])
                vals.append(None)
                if len(states) >= YYMAXDEPTH:
                    ctx.yyerror(loc, "memory exhausted")
                    result = 2
                    break
    except _Abort as e:
        raise ConfigParseError(lines_out + [str(e)], exit_code=134) from None

    if ctx.err or result:
        if ctx.likely_python:
            lines_out.extend(PYTHON_WARNING)
        raise ConfigParseError(lines_out)
    return cfg, Tree("file", statements)


# Semantic actions of libxlu_cfg_y.y, by rule (other rules just build
# nothing: statements, terminators, nlok).
_ATOM, _VALUE_ATOM, _VALUE_LIST, _LIST_EMPTY, _LIST_SAME, _VALUES_FIRST, \
    _VALUES_MORE, _ASSIGN = range(1, 9)
_RULE_CODES = {
    "atom: STRING": _ATOM, "atom: NUMBER": _ATOM,
    "value: atom": _VALUE_ATOM,
    "value: LSQB nlok valuelist RSQB": _VALUE_LIST,
    "valuelist: ": _LIST_EMPTY,
    "valuelist: values": _LIST_SAME, "valuelist: values COMMA nlok": _LIST_SAME,
    "values: value nlok": _VALUES_FIRST,
    "values: values COMMA nlok value nlok": _VALUES_MORE,
    "assignment: IDENT EQUALS value": _ASSIGN,
    "assignment: IDENT PLUS_EQUALS value": _ASSIGN,
}


def _action(code: int, rhs: list, ctx: _Context, cfg: XluConfig,
            tree: list | None, loc: int) -> object:
    """Rule `code`'s semantic action: the value it leaves on the stack."""
    if code == _ATOM:
        tok = rhs[0]
        return None if ctx.err else tok[3]
    if code == _VALUE_ATOM or code == _LIST_SAME:
        return rhs[0]
    if code == _VALUES_FIRST:
        return None if ctx.err else XluList(0, [rhs[0]])
    if code == _VALUES_MORE:
        lst = rhs[0]
        if not ctx.err and lst is not None:
            lst.values.append(rhs[3])
        return lst
    if code == _VALUE_LIST:
        lst = rhs[2]
        if lst is not None:
            lst.line = rhs[0][2]           # a list is located at its '['
        return lst
    if code == _LIST_EMPTY:
        return None if ctx.err else XluList(loc)
    if code == _ASSIGN:
        if not ctx.err:
            ident, optok, value = rhs
            _store(ctx, cfg, ident[3], optok[0] == "PLUS_EQUALS", value, ident[2],
                   tree, ident[1], optok[1])
    return None


def _store(ctx: _Context, cfg: XluConfig, name: str, add: bool, value: str | XluList, line: int,
           tree: list | None, key_text: bytes, op_text: bytes) -> None:
    """xlu__cfg_set_store, including `+=` concatenation.  LINE is where the
    value starts, which is the key's line (no newline may come between)."""
    if add:
        prev = cfg._settings.get(name)
        if prev is not None:
            pv = prev.value
            if isinstance(value, XluList) and isinstance(pv, XluList):
                value.values[:0] = pv.values
            elif not isinstance(value, XluList) and not isinstance(pv, XluList):
                value = pv + value
            else:
                # reported like a lexical error: current scanner line and text
                ctx.lexical_error("can't add [list] to \"string\" or vice versa",
                                  ctx.scanner.lineno)
                ctx.err = _errno.EINVAL
                return
    setting = Setting(name, value, "+=" if add else "=", line)
    cfg._settings[name] = setting
    cfg.order.append(setting)
    if tree is not None:
        tree.append(Tree("assignment", [
            Token("IDENT", key_text, line, name),
            Token("PLUS_EQUALS" if add else "EQUALS", op_text, line, None), value], line))


# --------------------------------------------------------------------------
# public entry points

def parse(data: bytes, path: str, warn: Warn | None = None) -> XluConfig:
    """libxlu's xlu_cfg_init(report, path) + xlu_cfg_readdata(data): the
    settings of DATA, or ConfigParseError with xl's messages naming PATH."""
    cfg, _ = _parse(data, path, warn, False)
    return cfg


def parse_tree(data: bytes, path: str = "<config>") -> Tree:
    """The statements as a Tree('file', [Tree('assignment', [IDENT, op,
    value])...]) -- values already combined as libxlu combines them."""
    _, tree = _parse(data, path, None, True)
    return tree


def config_from_tree(tree: Tree, path: str, warn: Warn | None = None) -> XluConfig:
    """The last stage on its own: settings from parse_tree()'s statements
    (whose values already carry `+=` combination, as libxlu stores them)."""
    cfg = XluConfig(path, warn)
    for stmt in tree.children:
        ident, op, value = stmt.children
        setting = Setting(ident.value, value, "+=" if op.type == "PLUS_EQUALS" else "=",
                          stmt.line)
        cfg._settings[setting.name] = setting
        cfg.order.append(setting)
    return cfg


def _parse(data: bytes | str, path: str, warn: Warn | None,
           want_tree: bool) -> tuple[XluConfig, Tree]:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return _run(bytes(data), path, warn, want_tree)


def read_config_data(path: str, extra: Sequence[str] = (), *,
                     dev_null_empty: bool = True) -> bytes:
    """What xl create hands to libxlu: the file's bytes, then -- if there are
    KEY=VALUE extras -- "\\n", each extra followed by "\\n", and "\\n".  Raises
    ConfigReadError with xl's message (exit 3) when the file cannot be read.
    dev_null_empty=False: no /dev/null special case (xl config-update)."""
    spath = os.fsdecode(path)
    if spath == "/dev/null" and dev_null_empty:   # xl create special-cases it: empty config
        data = b""
    else:
        data = _read_file(path, spath)
    extras = [e.encode("utf-8", "surrogateescape") if isinstance(e, str) else e
              for e in extra]
    if extras:
        # xl: each KEY=VALUE + "\n" into extra_config, then sprintf("\n%s\n")
        data += b"\n" + b"".join(e + b"\n" for e in extras) + b"\n"
    return data


def _read_file(path: str | bytes, spath: str) -> bytes:
    """libxl_read_file_contents: a regular file, read whole."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise ConfigReadError([f"Failed to read config file: {spath}: {strerror(e)}"])
    try:
        import stat
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            msg = os.strerror(_errno.ENOTTY)
            raise ConfigReadError([
                "libxl: error: libxl_utils.c:346:libxl_read_file_contents: "
                f"{spath} is not a plain file: {msg}",
                f"Failed to read config file: {spath}: {msg}"])
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError as e:
                raise ConfigReadError(
                    [f"Failed to read config file: {spath}: {strerror(e)}"])
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_config(path: str, extra: Sequence[str] = (), warn: Warn | None = None) -> XluConfig:
    """read_config_data + parse, as xl create does.  (xl prints "Parsing
    config from PATH" between the two; callers that print it use the two
    functions separately.)"""
    return parse(read_config_data(path, extra), os.fsdecode(path), warn)
