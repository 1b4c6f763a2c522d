"""LALR(1) parse tables from a plain BNF grammar, as Bison builds them.

libxlu's parser is a Bison LALR(1) automaton (tools/libs/util/libxlu_cfg_y.y);
cfgfile.py drives the same automaton over its own scanner.  This module
computes it from grammar/xl.cfg.lark: the LR(0) item sets, then the LALR(1)
lookaheads by propagation (the construction of Aho, Sethi & Ullman's
"Compilers", 4.7, "efficient construction of LALR parsing tables").  Any
conflict is an error: libxlu's grammar has none.

Only the plain BNF subset of Lark's syntax that grammar/xl.cfg.lark uses is
read (`name: SYM sym | ...`, empty alternatives, `//` comments; terminals
are the UPPER-case names); anything else in a rule is refused.
"""

from __future__ import annotations

import re
from typing import NamedTuple

END = "$END"


class GrammarError(ValueError):
    pass


class Rule(NamedTuple):
    lhs: str
    rhs: tuple[str, ...]

    def text(self) -> str:
        return "%s: %s" % (self.lhs, " ".join(self.rhs))


class Tables(NamedTuple):
    """states[i] maps a terminal to ("shift", state) or ("reduce", rule) and a
    nonterminal to ("shift", state) (its goto); accept is the state reached
    from start over the start symbol, where $END accepts."""
    rules: list[Rule]
    states: list[dict[str, tuple[str, int]]]
    start: int
    accept: int


_RULE_RE = re.compile(r"([a-z_][a-z_0-9]*)\s*:(.*)")
_SYM_RE = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def read_rules(grammar: str) -> list[Rule]:
    """The rules of a Lark grammar written in plain BNF, in file order;
    terminal definitions (UPPER: ...) and %directives are skipped."""
    rules: list[Rule] = []
    lhs = None
    for n, raw in enumerate(grammar.splitlines(), 1):
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        m = _RULE_RE.fullmatch(line)
        if m:
            lhs, body = m.group(1), m.group(2)
        elif line.startswith("|") and lhs is not None:
            body = line
        else:
            lhs = None                      # a terminal or a directive
            continue
        alts = body.split("|")
        if line.startswith("|"):
            alts = alts[1:]
        for alt in alts:
            syms = alt.split()
            bad = [s for s in syms if not _SYM_RE.fullmatch(s)]
            if bad:
                raise GrammarError("line %d: %r is not plain BNF" % (n, bad[0]))
            rules.append(Rule(lhs, tuple(syms)))
    return rules


def _is_terminal(sym: str) -> bool:
    return sym == END or sym.isupper()


def build(rules: list[Rule], start: str) -> Tables:
    """The LALR(1) automaton of the grammar, states numbered breadth-first
    from the start state, symbols taken in sorted order."""
    nonterms = {r.lhs for r in rules}
    for r in rules:
        for sym in r.rhs:
            if not _is_terminal(sym) and sym not in nonterms:
                raise GrammarError("%s: %s has no rule" % (r.text(), sym))
    root = len(rules)
    allrules = rules + [Rule("$root", (start,))]
    by_lhs: dict[str, list[int]] = {}
    for i, r in enumerate(allrules):
        by_lhs.setdefault(r.lhs, []).append(i)

    # nullable nonterminals and FIRST sets (of terminals)
    nullable: set[str] = set()
    first: dict[str, set[str]] = {a: set() for a in by_lhs}
    changed = True
    while changed:
        changed = False
        for r in allrules:
            f = first[r.lhs]
            before = len(f)
            all_null = True
            for sym in r.rhs:
                if _is_terminal(sym):
                    f.add(sym)
                    all_null = False
                    break
                f |= first[sym]
                if sym not in nullable:
                    all_null = False
                    break
            if all_null and r.lhs not in nullable:
                nullable.add(r.lhs)
                changed = True
            changed |= len(f) != before

    def first_of(seq: tuple[str, ...], la: set[str]) -> set[str]:
        out: set[str] = set()
        for sym in seq:
            if _is_terminal(sym):
                out.add(sym)
                return out
            out |= first[sym]
            if sym not in nullable:
                return out
        return out | la

    Item = tuple[int, int]                  # (rule, dot)

    def closure(kernel: dict[Item, set[str]]) -> dict[Item, set[str]]:
        items = {k: set(v) for k, v in kernel.items()}
        changed = True
        while changed:
            changed = False
            for (ri, dot), la in list(items.items()):
                rhs = allrules[ri].rhs
                if dot < len(rhs) and not _is_terminal(rhs[dot]):
                    new = first_of(rhs[dot + 1:], la)
                    for rj in by_lhs[rhs[dot]]:
                        cur = items.get((rj, 0))
                        if cur is None:
                            items[(rj, 0)] = set(new)
                            changed = True
                        elif not new <= cur:
                            cur |= new
                            changed = True
        return items

    # LR(0) automaton over kernels, breadth-first, symbols sorted
    kernels: list[frozenset[Item]] = [frozenset({(root, 0)})]
    index = {kernels[0]: 0}
    trans: list[dict[str, int]] = []
    i = 0
    while i < len(kernels):
        items = closure({k: set() for k in kernels[i]})
        moves: dict[str, set[Item]] = {}
        for ri, dot in items:
            rhs = allrules[ri].rhs
            if dot < len(rhs):
                moves.setdefault(rhs[dot], set()).add((ri, dot + 1))
        targets = {}
        for sym in sorted(moves):
            k = frozenset(moves[sym])
            if k not in index:
                index[k] = len(kernels)
                kernels.append(k)
            targets[sym] = index[k]
        trans.append(targets)
        i += 1

    # LALR(1) lookaheads of the kernel items, propagated to a fixed point
    la: list[dict[Item, set[str]]] = [{k: set() for k in ks} for ks in kernels]
    la[0][(root, 0)].add(END)
    changed = True
    while changed:
        changed = False
        for s in range(len(kernels)):
            for (ri, dot), look in closure(la[s]).items():
                rhs = allrules[ri].rhs
                if dot < len(rhs):
                    dest = la[trans[s][rhs[dot]]][(ri, dot + 1)]
                    if not look <= dest:
                        dest |= look
                        changed = True

    states: list[dict[str, tuple[str, int]]] = []
    accept = trans[0][start]
    for s in range(len(kernels)):
        row: dict[str, tuple[str, int]] = {sym: ("shift", t) for sym, t in trans[s].items()}
        for (ri, dot), look in closure(la[s]).items():
            if ri == root or dot != len(allrules[ri].rhs):
                continue
            for t in sorted(look):
                if t in row:
                    other = ("shift" if row[t][0] == "shift"
                             else "reduce by " + allrules[row[t][1]].text())
                    raise GrammarError("conflict in state %d on %s: %s or reduce by %s"
                                       % (s, t, other, allrules[ri].text()))
                row[t] = ("reduce", ri)
        states.append(row)
    return Tables(list(rules), states, 0, accept)
