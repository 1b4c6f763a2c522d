"""pyxl/config/lalr.py: the LALR(1) automaton of the config grammar.

Checked against a textbook table and against Lark's own LALR(1) parser for
grammar/xl.cfg.lark, through Lark's public interactive-parser API only
(Lark.parse_interactive, InteractiveParser.feed_token / accepts).  Runtime
pyxl does not import Lark at all, so a Lark release cannot change how xl
configs parse; here Lark is an independent second construction."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pyxl.config import lalr
from pyxl.config.cfgfile import grammar_text


def _canonical(t: lalr.Tables):
    """States renumbered breadth-first from the start, symbols sorted, so two
    constructions of one automaton compare equal; reductions by rule text."""
    order = {t.start: 0}
    queue = [t.start]
    out = []
    while queue:
        s = queue.pop(0)
        row = {}
        for sym in sorted(t.states[s]):
            action, arg = t.states[s][sym]
            if action == "shift":
                if arg not in order:
                    order[arg] = len(order)
                    queue.append(arg)
                row[sym] = ("shift", order[arg])
            else:
                row[sym] = ("reduce", t.rules[arg].text())
        out.append(row)
    return out, order[t.accept]


def test_textbook_lalr_table():
    """Aho, Lam, Sethi & Ullman, "Compilers" (2nd ed.), grammar 4.55
    (S -> C C, C -> c C | d) and its LALR table, Fig. 4.43: seven states,
    I36/I47/I89 being the merged LR(1) states."""
    t = lalr.build(lalr.read_rules("s: x x\nx: C x\n | D\n"), "s")
    rows, accept = _canonical(t)
    r_s, r_cx, r_d = "s: x x", "x: C x", "x: D"
    assert rows == [
        {"C": ("shift", 1), "D": ("shift", 2), "s": ("shift", 3), "x": ("shift", 4)},  # I0
        {"C": ("shift", 1), "D": ("shift", 2), "x": ("shift", 5)},                      # I36
        {"$END": ("reduce", r_d), "C": ("reduce", r_d), "D": ("reduce", r_d)},          # I47
        {},                                                                             # I1: accept
        {"C": ("shift", 1), "D": ("shift", 2), "x": ("shift", 6)},                      # I2
        {"$END": ("reduce", r_cx), "C": ("reduce", r_cx), "D": ("reduce", r_cx)},       # I89
        {"$END": ("reduce", r_s)},                                                      # I5
    ]
    assert accept == 3


def test_conflicts_and_non_bnf_are_refused():
    with pytest.raises(lalr.GrammarError, match="conflict"):
        lalr.build(lalr.read_rules("e: e PLUS e\n | NUM\n"), "e")
    with pytest.raises(lalr.GrammarError, match="not plain BNF"):
        lalr.read_rules("e: NUM?\n")
    with pytest.raises(lalr.GrammarError, match="has no rule"):
        lalr.read_rules("e: f\n") and lalr.build(lalr.read_rules("e: f\n"), "e")


def _accepts(t: lalr.Tables, stack: list[int], tok: str,
             visited: set[int] | None = None) -> list[int] | None:
    """The stack after shifting tok (reductions first; $END is accepted once
    the reductions reach the accept state), None on a syntax error."""
    stack = list(stack)
    while True:
        a = t.states[stack[-1]].get(tok)
        if a is None:
            return None
        if a[0] == "shift":
            return stack + [a[1]]
        rule = t.rules[a[1]]
        if rule.rhs:
            del stack[-len(rule.rhs):]
        stack.append(t.states[stack[-1]][rule.lhs][1])
        if visited is not None:
            visited.add(stack[-1])
        if tok == "$END" and stack[-1] == t.accept:
            return stack


_VALUES = {"IDENT": "x", "NUMBER": "1", "STRING": '"s"', "NEWLINE": "\n", "EQUALS": "=",
           "PLUS_EQUALS": "+=", "SEMICOLON": ";", "COMMA": ",", "LSQB": "[", "RSQB": "]",
           "ERROR": ""}


def test_same_automaton_as_larks_lalr_through_its_public_api():
    """Every token prefix that reaches a new stack of pyxl's automaton (up to
    a depth): the tokens that may come next are the ones Lark's parser for
    the same grammar accepts there, $END included."""
    lark = pytest.importorskip("lark")
    parser = lark.Lark(grammar_text(), parser="lalr", lexer="basic", start="file")
    ours = lalr.build(lalr.read_rules(grammar_text()), "file")
    terminals = sorted(_VALUES) + ["$END"]

    seen = {(ours.start,)}
    visited = {ours.start}
    frontier = [((), [ours.start])]
    compared = 0
    while frontier:
        prefix, stack = frontier.pop(0)
        ip = parser.parse_interactive("")
        for name in prefix:
            ip.feed_token(lark.Token(name, _VALUES[name]))
        ours_next = {t for t in terminals if _accepts(ours, stack, t, visited) is not None}
        assert ours_next == set(ip.accepts()), prefix
        compared += 1
        for t in sorted(ours_next - {"$END"}):
            nxt = _accepts(ours, stack, t, visited)
            if len(nxt) <= 12 and tuple(nxt) not in seen:
                seen.add(tuple(nxt))
                frontier.append((prefix + (t,), nxt))
    visited.update(s for st in seen for s in st)
    assert compared > 50 and visited == set(range(len(ours.states)))   # every state met


def test_parsing_a_config_never_imports_lark(tmp_path):
    """The tables are built (cold cache) and a config parsed without Lark."""
    code = ("import sys; from pyxl.config import cfgfile; "
            "cfg = cfgfile.parse(b'a = [1, \"x\"]\\nb += \"y\"\\n', 't.cfg'); "
            "assert 'lark' not in sys.modules, 'imported lark'; print('ok')")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    assert os.listdir(tmp_path / "pyxl")           # the tables were computed, not read
