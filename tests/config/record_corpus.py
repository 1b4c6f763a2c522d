#!/usr/bin/env python3
"""Record the oracle's answers for tests/config/corpus/*.cfg.

    python tests/config/record_corpus.py [NAME...]

For each NAME.cfg (plus KEY=VALUE arguments from NAME.args, one per line)
runs the real `xl -N create -f NAME.cfg` through tests/oracle (in the corpus
directory, so messages name the file as NAME.cfg) and writes NAME.stdout,
NAME.stderr and NAME.rc next to it.  test_corpus_golden.py checks pyxl
against these without xl; test_oracle_json.py re-checks them live.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
sys.path.insert(0, str(HERE.parent))

from oracle.xl import run_xl_dryrun  # noqa: E402


def extra_args(cfg: Path) -> list[str]:
    args = cfg.with_suffix(".args")
    return args.read_text().splitlines() if args.exists() else []


def record(cfg: Path) -> None:
    r = run_xl_dryrun(cfg.name, extra_args(cfg), cwd=CORPUS)
    cfg.with_suffix(".stdout").write_bytes(r.stdout.encode("utf-8", "surrogateescape"))
    cfg.with_suffix(".stderr").write_bytes(r.stderr.encode("utf-8", "surrogateescape"))
    cfg.with_suffix(".rc").write_text("%d\n" % r.rc)


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in CORPUS.glob("*.cfg"))
    for n in names:
        record(CORPUS / (n + ".cfg"))
    print("recorded %d configs" % len(names), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
