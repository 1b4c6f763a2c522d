"""The hand-written corpus (every key xl 4.17 parses, for PV, PVH and HVM, and
their error cases) against the oracle's recorded answers -- no xl needed.

Goldens live next to each corpus/NAME.cfg: NAME.stdout / NAME.stderr /
NAME.rc, recorded by record_corpus.py from the real xl 4.17.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from domcfg import Answer, differences, run_pyxl

CORPUS = Path(__file__).resolve().parent / "corpus"
NAMES = sorted(p.stem for p in CORPUS.glob("*.cfg"))


def recorded(name: str) -> Answer:
    p = CORPUS / name
    return Answer(int(p.with_suffix(".rc").read_text()),
                  p.with_suffix(".stdout").read_bytes().decode("utf-8", "surrogateescape"),
                  p.with_suffix(".stderr").read_bytes().decode("utf-8", "surrogateescape"))


def extra_args(name: str) -> list[str]:
    args = CORPUS / (name + ".args")
    return args.read_text().splitlines() if args.exists() else []


def test_corpus_is_big_and_balanced():
    rcs = [recorded(n + ".cfg").rc for n in NAMES]
    assert len(NAMES) >= 150
    assert rcs.count(0) >= 80 and len(rcs) - rcs.count(0) >= 50
    assert {1, 3, 6} <= set(rcs)


@pytest.mark.parametrize("name", NAMES)
def test_corpus_matches_xl(name):
    expected = recorded(name + ".cfg")
    actual = run_pyxl(name + ".cfg", extra_args(name), cwd=str(CORPUS))
    assert differences(expected, actual) == []
