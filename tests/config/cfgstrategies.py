"""Hypothesis strategies for xl config TEXT, from grammar/xl.cfg.lark.

valid_configs(): sentences of the grammar (hypothesis.extra.lark) with tame
strings.  configs(): the grammar's sentences where Bison's `error` token
stands for junk, then mutated with the error classes libxlu knows (bad
characters, Python-looking runs, CRLF, bad escapes, NUL, stray punctuation,
nesting), so both accepted and rejected files come out."""

from __future__ import annotations

from functools import lru_cache

from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from pyxl.config.cfgfile import grammar_text

JUNK = [b"(", b")", b"-1", b"1.5", b":", b".x", b"+", b"0X10", b"Foo", b"on-crash",
        b"\r", b"\x00", b"\xff", b"#", b"'", b'"', b"\\", b"$", b"@", b"x y",
        b"=", b"+=", b"[", b"]", b",", b";", b"\n", b" ", b"12g", b"[[", b"]]",
        b'"\\x41"', b'"\\q"', b'"\\1x"', b'"\\101"', b'"\\12"', b'"a\\\nb"', b'"\\"',
        b"# c\n", b"x=1", b"x+=[1]", b'x+="s"', b"name", b"\t"]

TAME_STRING = st.from_regex(r'\A"[a-z0-9/,=: ._-]{0,12}"\Z') | \
    st.from_regex(r"\A'[a-z0-9/ ._-]{0,8}'\Z")


@lru_cache(maxsize=None)
def _lark():
    import lark
    return lark.Lark(grammar_text(), parser="lalr", lexer="basic", start="file")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def valid_configs():
    return from_lark(_lark(), start="file", explicit={
        "STRING": TAME_STRING,
        "ERROR": st.just("x = 1"),      # a fine statement where `error` may stand
    }).map(_encode)


@st.composite
def configs(draw):
    text = draw(from_lark(_lark(), start="file", explicit={
        "ERROR": st.sampled_from([j.decode("latin-1") for j in JUNK]),
    }))
    data = bytearray(_encode(text))
    for _ in range(draw(st.integers(0, 3))):
        frag = draw(st.sampled_from(JUNK))
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["insert", "replace", "delete"]))
        if how == "insert":
            data[at:at] = frag
        elif how == "replace":
            data[at:at + len(frag)] = frag
        else:
            del data[at:at + draw(st.integers(1, 3))]
    return bytes(data)
