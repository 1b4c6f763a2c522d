#!/usr/bin/env python3
"""Regenerate tests/config/golden/errors/ from the real xl 4.17 (run once;
the outputs are committed so the golden test needs no xl).

    PYTHONPATH=. python tests/config/golden/make_error_goldens.py

Each case NAME becomes NAME.cfg (the config), NAME.stderr (xl -N create's
stderr, run as `xl -N create -f NAME.cfg` from this directory) and NAME.rc
(its exit status as a shell reports it: 134 for an abort)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "errors"
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from oracle.xl import XL, xl_env  # noqa: E402

OK = b'name="g"\nkernel="/k"\n'

CASES = {
    # lexical errors
    "uppercase-key": b'Name="a"\n',
    "dash-key": OK + b'on-crash="destroy"\n',
    "uppercase-hex": OK + b'memory=0X10\n',
    "bad-run-then-token": b'x = Bar 2\n',
    "negative-number": OK + b'memory=-1\n',
    "float": OK + b'memory=1.5\n',
    "python-call": b'name = "a"\nkernel = os.path.join("/", "k")\n',
    "python-tuple": OK + b'x = (1, 2)\n',
    "python-colon": OK + b'def f():\n  pass\n',
    "crlf": b'name="a"\r\nkernel="/k"\r\n',
    "nul-outside-string": OK + b'x = 1\x00\n',
    "non-utf8-run": OK + b'x = \xff\xfe\n',
    "comment-at-eof": OK + b'# no newline',
    "unterminated-string": b'name="abc\nkernel="/k"\n',
    "backslash-newline": b'x = "a\\\nb"\n',
    "lexerr-at-eof-empty-run": b'x = 1\ny = (',
    "lexerr-at-eof-run": b'x = 1\ny = (abc',
    "lexerr-suppresses-next-line": b'x = (\ny=]\nz=]\n',
    # escapes
    "escape-hex": OK + b'x = "\\x41"\n',
    "escape-octal-short": OK + b'x = "\\12"\n',
    "escape-octal-bad": OK + b'\n\n\nx = "\\1"\n',
    "escape-unknown": OK + b'x = "\\q" ]\n',
    "escape-unknown-then-line": b'x = "\\q"\ny = ]\n',
    "nul-in-string": OK + b'x = "a\x00b"\n',
    "nul-after-escaped-quote": OK + b'x = "\\"\x00"\n',
    "escapes-ok": OK + b'x = "\\101\\1 1\\a\\"\\\'\\\\"\ny = \'\\"\'\n',
    # syntax errors
    "missing-equals": OK + b'memory 512\n',
    "empty-value": OK + b'memory =\n',
    "empty-value-first-line": b'memory =\nname="a"\n',
    "empty-value-comment": OK + b'memory = # soon\n',
    "double-equals": OK + b'x = = 1\n',
    "value-equals": OK + b'x = 1 = 2\n',
    "two-on-a-line": OK + b'x=1 y=2\nz = ]\n',
    "number-suffix": OK + b'memory=12g\n',
    "string-string": OK + b'name="a" "b"\n',
    "bare-word": OK + b'x = foo\n',
    "newline-before-value": OK + b'x =\n 1\n',
    "newline-before-equals": OK + b'x\n= 1\n',
    "leading-equals": b'= 1\n' + OK,
    "leading-bracket": OK + b'[1]\n',
    "list-double-comma": OK + b'x = [1,,2]\n',
    "list-lone-comma": OK + b'x = [,]\n',
    "list-newline-comma": OK + b'x = [\n, "a"]\n',
    "list-missing-comma": OK + b'x = [1 2]\n',
    "list-extra-close": OK + b'x = [1]]\n',
    "list-unclosed-eof": OK + b'x = [1,\n',
    "list-unclosed-no-newline": OK + b'x = [1',
    "key-at-eof": OK + b'x',
    "equals-at-eof": OK + b'x = ',
    "close-close": OK + b'x = ] ]\n',
    "two-errors": OK + b'x = ]\ny = ]\n',
    "recovery-swallows": OK + b'x = ]\n]\ny = ]\n',
    "recovery-three-tokens": OK + b'x = 1\n]\ny ]\nz = ]\n',
    "comment-list-extra": OK + b'x = [ # c\n 1, # d\n ] ]\n',
    "semicolon-statements": b'name="a";kernel="/k";;x=[1,\n# c\n2,\n];y = ;\n',
    # += errors
    "append-list-to-string": OK + b'x = 1\nx += [1]\n',
    "append-string-to-list": OK + b'x = [1]\nx += "a"\n',
    "append-multiline": OK + b'x = "s"\nx += [\n"a"\n,1]\n',
    "append-after-error": OK + b'x = ]\nx = 1\nx += [1]\n',
    # limits
    "nesting-4996": OK + b'x = ' + b'[' * 4996 + b']' * 4996 + b'\n',
    "nesting-4997": OK + b'x = ' + b'[' * 4997 + b']' * 4997 + b'\n',
    "nesting-100k": OK + b'x = ' + b'[' * 100000 + b'\n',
    # accepted
    "accepted-forms": OK + b'a.b_c9 = 0x1f; on.0 = 017\nl = [\n  "a", # c\n  [1, [2]],\n]\n'
                      b'e = []\ns = \'\\t\'\ns += "x"\nlast = "no newline"',
}


def main():
    HERE.mkdir(parents=True, exist_ok=True)
    for old in HERE.iterdir():
        old.unlink()
    for name, data in CASES.items():
        (HERE / f"{name}.cfg").write_bytes(data)
        p = subprocess.run([XL, "-N", "create", "-f", f"{name}.cfg"], cwd=HERE,
                           env=xl_env(), capture_output=True, stdin=subprocess.DEVNULL)
        rc = p.returncode if p.returncode >= 0 else 128 - p.returncode
        (HERE / f"{name}.stderr").write_bytes(p.stderr)
        (HERE / f"{name}.rc").write_text(f"{rc}\n")
    print(f"{len(CASES)} goldens written to {HERE}")


if __name__ == "__main__":
    main()
