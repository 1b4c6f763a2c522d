"""The guest's shell: the part of bash a person types at the guest's console.

    sh = Shell(tree, system, console)
    sh.complete(text)        # False: bash would print PS2 ("> ") and read on
    sh.run(text)             # run one complete input; returns $?

The language follows the POSIX Shell Command Language (XCU chapter 2) as bash
implements it: token recognition (2.3) with single quotes, double quotes and
backslash (2.2); parameter expansion of `$NAME`, `${NAME}`, `${NAME:-word}`
(and `-`, `=`, `+`, `?` with or without the colon), `${#NAME}`, `$?`, `$$`,
`$#`, `$0` (2.6.2), command substitution `$(...)` and backquotes (2.6.3),
tilde expansion (2.6.1), field splitting on blanks (2.6.5), pathname
expansion of `*`, `?`, `[...]` (2.6.6) and quote removal; lists with `;`,
`&&`, `||` (2.9.3), pipelines with `|` and `!` (2.9.2), `( list )`
subshells, and the redirections `<`, `>`, `>|`, `>>`, `<>`, `N>&M`, `N<&M`,
`&>`, `&>>` (2.7).  A syntax error runs nothing of the line and is reported as
bash reports it (`-bash: syntax error near unexpected token `;'`, status 2);
input that is not finished yet -- an open quote, a trailing `|`, `&&`, `||`
or backslash -- makes `complete()` false, as bash at a prompt would ask for
the rest with PS2.  Not supported: here-documents, arithmetic, functions,
`if`/`for`/`while`/`case` (their names are `command not found`), history
expansion, job control (`&` runs the command in the foreground).

A pipeline's commands run one after another, each reading what the one
before wrote; each runs, as in bash, in a copy of the shell (`cd /tmp | cat`
does not move the shell).  The built-ins are bash's `cd`, `pwd`, `echo`,
`export`, `unset`, `exit`/`logout`, `true`, `false`, `:` and, standing in for
coreutils, `cat`, `ls`, `rm` and `mkdir` (coreutils.py); files are those of
the guest's own tree (fs.GuestTree).  Every other name goes to `system.command()` (the
kernel side: uname, modprobe, the host's TPM tools, ...); a name nobody
runs is `-bash: NAME: command not found`, status 127.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re

from pyxl.domain.linux import coreutils
from pyxl.domain.linux.fs import HOME, UMASK, VIRTUAL_TOP, GuestTree

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing in every domain
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator, Protocol, TypeAlias, Union

    # the grammar's shapes (see "the grammar" below)
    Command: TypeAlias = Union["Simple", "Subshell"]
    Pipeline: TypeAlias = tuple[bool, list[Command]]

    class System(Protocol):
        """The kernel side of the guest, as the shell uses it."""

        def read_file(self, path: str) -> str | bytes | None: ...

        def list_dir(self, path: str) -> list[str] | None: ...

        def write_file(self, path: str) -> Sink | None: ...

        def command(self, name: str, args: list[str], io: Io, sh: Shell,
                    env: dict) -> int | None: ...

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SPECIAL_PARAMS = "?$#!0123456789@*-"
BLANKS = " \t\n"
METACHARS = " \t\n;&|<>()"
# longest first: token recognition takes the longest operator (XCU 2.3 rule 2)
OPERATORS = ("&>>", "&&", "||", ";;", "<<", ">>", ">&", "<&", ">|", "<>", "&>",
             ";", "&", "|", "<", ">", "(", ")")
REDIRECTS = ("<", ">", ">>", ">|", "<>", ">&", "<&", "&>", "&>>")
STATUS_SYNTAX, STATUS_NOT_FOUND = 2, 127


class Incomplete(Exception):
    """The input ends inside a construct: bash reads on with PS2."""


class ParseError(Exception):
    def __init__(self, token: str):
        super().__init__("syntax error near unexpected token `%s'" % token)


class ExpansionError(Exception):
    """An expansion failed (bad substitution, ambiguous redirect): the
    command does not run, $? is 1."""


class ExpansionAbort(Exception):
    """${...} that is no parameter expansion, or ${NAME?word} with NAME
    unset: as in an interactive bash, the rest of the input line (or of the
    subshell) is abandoned, $? is 1."""


class ShellExit(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


# -- tokens ---------------------------------------------------------------------
# A word is a list of parts: (kind, value, quoted).  kind: "lit" (literal
# text), "param" (value = name, or (name, op, word) for ${name:-word}),
# "cmd" (value = command text of $(...) or `...`), "tilde".

class Tok:
    __slots__ = ("kind", "text", "parts")

    def __init__(self, kind: str, text: str, parts: list | None = None):
        self.kind = kind       # "word", "op", "io", "newline", "eof"
        self.text = text
        self.parts: list = [] if parts is None else parts     # a word's (kind, value, quoted)

    def __repr__(self) -> str:
        return "Tok(%s,%r)" % (self.kind, self.text)

    def shown(self) -> str:
        """How bash names the token in a syntax error."""
        return "newline" if self.kind in ("newline", "eof") else self.text


def tokenize(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t":
            i += 1
        elif c == "\\" and src.startswith("\\\n", i):
            i += 2                         # line continuation between words
        elif c == "\n":
            toks.append(Tok("newline", "\n"))
            i += 1
        elif c == "#":
            while i < n and src[i] != "\n":
                i += 1
        else:
            op = next((o for o in OPERATORS if src.startswith(o, i)), None)
            if op:
                toks.append(Tok("op", op))
                i += len(op)
                continue
            start = i
            parts, i = _word(src, i)
            text = src[start:i]
            if (i < n and src[i] in "<>" and text.isdigit()
                    and all(k == "lit" and not q for k, _, q in parts)):
                toks.append(Tok("io", text))
            else:
                toks.append(Tok("word", text, parts))
    toks.append(Tok("eof", ""))
    return toks


def _word(src: str, i: int) -> tuple[list, int]:
    parts: list = []
    n = len(src)
    if src[i] == "~":
        j = i + 1
        while j < n and (src[j].isalnum() or src[j] in "_-."):
            j += 1
        if j == i + 1 and (j == n or src[j] in "/" + METACHARS):
            parts.append(("tilde", "", False))
            i = j
    while i < n and src[i] not in METACHARS:
        c = src[i]
        if c == "\\":
            if i + 1 == n:
                raise Incomplete()
            if src[i + 1] != "\n":
                parts.append(("lit", src[i + 1], True))
            i += 2
        elif c == "'":
            j = src.find("'", i + 1)
            if j < 0:
                raise Incomplete()
            parts.append(("lit", src[i + 1:j], True))
            i = j + 1
        elif c == '"':
            i = _dquote(src, i + 1, parts)
        elif c == "$" and src.startswith("$'", i):
            i = _ansi_c(src, i + 2, parts)
        elif c == "$":
            i = _dollar(src, i, parts, quoted=False)
        elif c == "`":
            i = _backquote(src, i, parts, quoted=False)
        else:
            parts.append(("lit", c, False))
            i += 1
    return parts, i


def _dquote(src: str, i: int, parts: list) -> int:
    parts.append(("lit", "", True))        # "" is an empty field, not nothing
    n = len(src)
    while True:
        if i >= n:
            raise Incomplete()
        c = src[i]
        if c == '"':
            return i + 1
        if c == "\\":
            if i + 1 >= n:
                raise Incomplete()
            nxt = src[i + 1]
            if nxt == "\n":
                pass
            elif nxt in '$`"\\':
                parts.append(("lit", nxt, True))
            else:
                parts.append(("lit", "\\" + nxt, True))
            i += 2
        elif c == "$":
            i = _dollar(src, i, parts, quoted=True)
        elif c == "`":
            i = _backquote(src, i, parts, quoted=True)
        else:
            parts.append(("lit", c, True))
            i += 1


ANSI_C = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r",
          "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


def _ansi_c(src: str, i: int, parts: list) -> int:
    """$'...' (bash): backslash escapes as in C."""
    out: list[str] = []
    n = len(src)
    while True:
        if i >= n:
            raise Incomplete()
        c = src[i]
        if c == "'":
            parts.append(("lit", "".join(out), True))
            return i + 1
        if c == "\\" and i + 1 < n:
            nxt = src[i + 1]
            if nxt in ANSI_C:
                out.append(ANSI_C[nxt])
                i += 2
                continue
            m = re.compile(r"x([0-9A-Fa-f]{1,2})|([0-7]{1,3})").match(src, i + 1)
            if m:
                out.append(chr(int(m.group(1), 16) if m.group(1) else int(m.group(2), 8)))
                i = m.end()
                continue
        out.append(c)
        i += 1


def _dollar(src: str, i: int, parts: list, quoted: bool) -> int:
    n = len(src)
    j = i + 1
    if j < n and src[j] == "{":
        k = src.find("}", j)
        if k < 0:
            raise Incomplete()
        body = src[j + 1:k]
        if re.fullmatch(r"#[A-Za-z_][A-Za-z0-9_]*|#[%s]" % re.escape(SPECIAL_PARAMS), body):
            parts.append(("length", body[1:], quoted))
            return k + 1
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*|[%s])(?:(:?[-=+?])(.*))?"
                         % re.escape(SPECIAL_PARAMS), body, re.S)
        if m:
            value = m.group(1) if m.group(2) is None else (m.group(1), m.group(2), m.group(3))
            parts.append(("param", value, quoted))
        else:
            parts.append(("bad", src[i:k + 1], quoted))
        return k + 1
    if j < n and src[j] == "(":
        depth, k = 1, j + 1
        while k < n and depth:
            if src[k] in "'\"\\":
                k = _skip_quoted(src, k)
                continue
            depth += {"(": 1, ")": -1}.get(src[k], 0)
            k += 1
        if depth:
            raise Incomplete()
        parts.append(("cmd", src[j + 1:k - 1], quoted))
        return k
    m = NAME.match(src, j)
    if m:
        parts.append(("param", m.group(0), quoted))
        return m.end()
    if j < n and src[j] in SPECIAL_PARAMS:
        parts.append(("param", src[j], quoted))
        return j + 1
    parts.append(("lit", "$", quoted))
    return j


def _skip_quoted(src: str, k: int) -> int:
    if src[k] == "\\":
        return k + 2
    end = src.find(src[k], k + 1)
    if end < 0:
        raise Incomplete()
    return end + 1


def _backquote(src: str, i: int, parts: list, quoted: bool) -> int:
    k = i + 1
    body: list[str] = []
    while True:
        if k >= len(src):
            raise Incomplete()
        c = src[k]
        if c == "`":
            parts.append(("cmd", "".join(body), quoted))
            return k + 1
        if c == "\\" and k + 1 < len(src) and src[k + 1] in "$`\\":
            body.append(src[k + 1])
            k += 2
            continue
        body.append(c)
        k += 1


# -- the grammar ------------------------------------------------------------------
# List = [(AndOr, sep)]; AndOr = [(op, Pipeline)]; Pipeline = (negate, [Command]);
# Command = Simple | Subshell.

class Redir:
    __slots__ = ("fd", "op", "target")

    def __init__(self, fd: int, op: str, target: Tok):
        self.fd, self.op, self.target = fd, op, target


class Simple:
    __slots__ = ("assigns", "words", "redirs")

    def __init__(self) -> None:
        self.assigns: list[tuple[str, Tok]] = []
        self.words: list[Tok] = []
        self.redirs: list[Redir] = []


class Subshell:
    __slots__ = ("body", "redirs")

    def __init__(self, body: list, redirs: list[Redir]):
        self.body, self.redirs = body, redirs


class Parser:
    def __init__(self, toks: list[Tok]):
        self.toks = toks
        self.i = 0

    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def program(self) -> list:
        body = self.list_(top=True)
        if self.tok.kind != "eof":
            raise ParseError(self.tok.shown())
        return body

    def list_(self, top: bool) -> list:
        items: list = []
        while True:
            while self.tok.kind == "newline":
                self.take()
            if self.tok.kind == "eof" or (not top and self.is_op(")")):
                return items
            ao = self.and_or()
            if self.is_op(";", "&"):
                items.append((ao, self.take().text))
            elif self.tok.kind == "newline":
                self.take()
                items.append((ao, ";"))
            else:
                items.append((ao, ";"))
                if self.tok.kind == "eof" or (not top and self.is_op(")")):
                    return items
                raise ParseError(self.tok.shown())

    def _more(self) -> None:
        """After `|`, `&&`, `||`: newlines may follow; the end of the input
        means the command goes on on the next line."""
        while self.tok.kind == "newline":
            self.take()
        if self.tok.kind == "eof":
            raise Incomplete()

    def and_or(self) -> list:
        items = [("", self.pipeline())]
        while self.is_op("&&", "||"):
            op = self.take().text
            self._more()
            items.append((op, self.pipeline()))
        return items

    def pipeline(self) -> Pipeline:
        negate = False
        if self.tok.kind == "word" and self.tok.text == "!":
            self.take()
            negate = True
        cmds = [self.command()]
        while self.is_op("|"):
            self.take()
            self._more()
            cmds.append(self.command())
        return negate, cmds

    def command(self) -> Command:
        if self.is_op("("):
            self.take()
            body = self.list_(top=False)
            if self.tok.kind == "eof":
                raise Incomplete()
            if not body:
                raise ParseError(self.tok.shown())
            self.take()                          # ")"
            redirs: list[Redir] = []
            while self.tok.kind == "io" or self.is_op(*REDIRECTS):
                redirs.append(self.redirect())
            if self.tok.kind == "word" or self.is_op("("):
                raise ParseError(self.tok.shown())
            return Subshell(body, redirs)
        cmd = Simple()
        while True:
            t = self.tok
            if t.kind == "word":
                self.take()
                m = NAME.match(t.text)
                if not cmd.words and m and t.text[m.end():m.end() + 1] == "=":
                    cmd.assigns.append((m.group(0), _after_equals(t, m.end() + 1)))
                else:
                    cmd.words.append(t)
            elif t.kind == "io" or (t.kind == "op" and t.text in REDIRECTS):
                cmd.redirs.append(self.redirect())
            elif t.kind == "op" and t.text == "(" and (cmd.words or cmd.assigns):
                self.take()                      # bash reads NAME ( as a function definition
                raise ParseError(self.tok.shown() if not self.is_op(")") else "(")
            else:
                break
        if not (cmd.words or cmd.assigns or cmd.redirs):
            if self.tok.kind == "eof":
                raise Incomplete()
            raise ParseError(self.tok.shown())
        return cmd

    def redirect(self) -> Redir:
        fd = int(self.take().text) if self.tok.kind == "io" else None
        op = self.take().text
        if op == "<<":
            raise ParseError("<<")               # here-documents: not supported
        t = self.tok
        if t.kind != "word":
            raise ParseError(t.shown())
        self.take()
        if fd is None:
            fd = 0 if op in ("<", "<&", "<>") else 1
        return Redir(fd, op, t)


def _after_equals(t: Tok, offset: int) -> Tok:
    """The value of NAME=value: the word after the `=`.  Every unquoted
    character is a part of its own, so the value's parts start at `offset`."""
    return Tok("word", t.text[offset:], t.parts[offset:])


def parse(src: str) -> list:
    """Raises Incomplete or ParseError."""
    return Parser(tokenize(src)).program()


# -- output ----------------------------------------------------------------------
class Sink:
    tty = False

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Buffer(Sink):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def value(self) -> bytes:
        return b"".join(self.chunks)


class Null(Sink):
    def write(self, data: bytes) -> None:
        pass


class FileSink(Sink):
    def __init__(self, fd: int):
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        os.close(self.fd)


class Call(Sink):
    """Output handed to a function (the console, /proc/sysrq-trigger)."""

    def __init__(self, fn: Callable[[bytes], Any], tty: bool = False):
        self.fn, self.tty = fn, tty

    def write(self, data: bytes) -> None:
        self.fn(data)


class Io:
    """One command's standard streams: stdin is bytes (None: the console,
    which here reads as empty) and the outputs are Sinks."""

    __slots__ = ("stdin", "out", "err")

    def __init__(self, stdin: bytes | None, out: Sink, err: Sink):
        self.stdin, self.out, self.err = stdin, out, err

    def print(self, text: str) -> None:
        self.out.write(text.encode())

    def error(self, text: str) -> None:
        self.err.write(text.encode() + b"\n")


# -- the shell --------------------------------------------------------------------
class Shell:
    """One login shell.  `system` is the kernel side of the guest:
    read_file(path) -> str | bytes | None and list_dir(path) -> list | None (the
    simulated /proc, /sys, /dev), write_file(path) -> Sink | None (a
    special file opened for writing), and command(name, args, io, shell,
    env) -> status | None (a program; None: there is no such program)."""

    def __init__(self, tree: GuestTree, system: System, console: Sink):
        self.tree = tree
        self.system = system
        self.console = console
        self.reset()

    def reset(self) -> None:
        """A fresh login: home directory, the login environment."""
        self.cwd = HOME
        self.status = 0
        self.vars = {"HOME": HOME, "PWD": HOME, "SHELL": "/bin/bash", "USER": "root",
                     "LOGNAME": "root", "TERM": "linux", "SHLVL": "1",
                     "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "IFS": " \t\n"}
        self.exported = {"HOME", "PWD", "SHELL", "USER", "LOGNAME", "TERM", "SHLVL", "PATH",
                         "OLDPWD"}

    def fork(self) -> "Shell":
        """A subshell: a copy of the variables and the working directory."""
        sub = Shell.__new__(Shell)
        sub.__dict__.update(self.__dict__)
        sub.vars, sub.exported = dict(self.vars), set(self.exported)
        return sub

    # -- entry points ----------------------------------------------------------
    @staticmethod
    def complete(src: str) -> bool:
        try:
            parse(src)
        except Incomplete:
            return False
        except ParseError:
            pass
        return True

    def run(self, src: str) -> int:
        """Run one complete input line (with its continuation lines) at
        the console.  Raises ShellExit for `exit` at the top level."""
        io = Io(None, self.console, self.console)
        try:
            body = parse(src)
        except ParseError as e:
            io.error("-bash: %s" % e)
            self.status = STATUS_SYNTAX
            return self.status
        except Incomplete:
            io.error("-bash: syntax error: unexpected end of file")
            self.status = STATUS_SYNTAX
            return self.status
        try:
            self.run_list(body, io)
        except ExpansionAbort as e:
            io.error("-bash: %s" % e)
            self.status = 1
        except RecursionError:                   # $( $( $( ... ) ) ) nested thousands deep
            io.error("-bash: command substitution: nested too deeply")
            self.status = 1
        return self.status

    # -- the grammar's parts -----------------------------------------------------
    def run_list(self, body: list, io: Io) -> int:
        for and_or, _sep in body:
            status = None
            for op, pipeline in and_or:
                if (op == "&&" and status != 0) or (op == "||" and status == 0):
                    continue
                status = self.run_pipeline(pipeline, io)
        return self.status

    def run_pipeline(self, pipeline: Pipeline, io: Io) -> int:
        negate, cmds = pipeline
        if len(cmds) == 1:
            status = self.run_command(cmds[0], io)
        else:
            data = io.stdin
            for k, cmd in enumerate(cmds):
                if k == len(cmds) - 1:
                    status = self.fork().run_command(cmd, Io(data, io.out, io.err), subshell=True)
                else:
                    out = Buffer()
                    status = self.fork().run_command(cmd, Io(data, out, io.err), subshell=True)
                    data = out.value()
        self.status = (0 if status else 1) if negate else status
        return self.status

    def run_command(self, cmd: Command, io: Io, subshell: bool = False) -> int:
        try:
            if isinstance(cmd, Subshell):
                sub = self.fork()
                try:
                    cio, opened = sub.redirect(cmd.redirs, io)
                except (ExpansionError, OSError) as e:
                    return self._failed(io, e)
                try:
                    status = sub._in_subshell(cmd.body, cio)
                finally:
                    for s in opened:
                        s.close()
            else:
                status = self.run_simple(cmd, io)
        except ShellExit as e:
            if not subshell:
                raise
            status = e.status
        except ExpansionAbort as e:
            if not subshell:
                raise
            io.error("-bash: %s" % e)
            status = 1
        self.status = status
        return status

    def _in_subshell(self, body: list, io: Io) -> int:
        try:
            self.run_list(body, io)
            return self.status
        except ShellExit as e:
            return e.status
        except ExpansionAbort as e:
            io.error("-bash: %s" % e)
            return 1

    def _failed(self, io: Io, e: ExpansionError | OSError) -> int:
        io.error("-bash: %s" % (e if isinstance(e, ExpansionError) else
                                "%s: %s" % (e.filename, e.strerror)))
        self.status = 1
        return 1

    def run_simple(self, cmd: Simple, io: Io) -> int:
        try:
            argv: list[str] = []
            for w in cmd.words:
                argv += self.expand(w, io)
            assigns = [(name, self.expand_one(value, io)) for name, value in cmd.assigns]
            cio, opened = self.redirect(cmd.redirs, io)
        except (ExpansionError, OSError) as e:
            return self._failed(io, e)
        try:
            if not argv:
                for name, value in assigns:
                    self.vars[name] = value
                # bash: the status of the last command substitution, else 0
                return self.status if any(_has_cmd(w) for _, w in cmd.assigns) else 0
            return self.invoke(argv, cio, dict(assigns))
        finally:
            for s in opened:
                s.close()

    def invoke(self, argv: list[str], io: Io, assigns: dict) -> int:
        name, args = argv[0], argv[1:]
        builtin = BUILTINS.get(name)
        if builtin is not None:
            return builtin(self, args, io)
        env = {k: self.vars[k] for k in self.exported if k in self.vars}
        env.update(assigns)
        status = self.system.command(name, args, io, self, env)
        if status is not None:
            return status
        if "/" in name:
            io.error("-bash: %s: No such file or directory" % name)
        else:
            io.error("-bash: %s: command not found" % name)
        return STATUS_NOT_FOUND

    # -- redirections (XCU 2.7) ------------------------------------------------------
    def redirect(self, redirs: list[Redir], io: Io) -> tuple[Io, list[Sink]]:
        fds = {0: io.stdin, 1: io.out, 2: io.err}
        opened: list[Sink] = []
        try:
            for r in redirs:
                target = self.expand(r.target, io)
                if len(target) != 1:
                    raise ExpansionError("%s: ambiguous redirect" % r.target.text)
                word = target[0]
                if r.op in (">&", "<&") and (word.isdigit() or word == "-"):
                    if word == "-":
                        fds[r.fd] = b"" if r.fd == 0 else Null()
                        continue
                    if int(word) not in fds or (r.fd == 0) != (int(word) == 0):
                        raise ExpansionError("%s: Bad file descriptor" % word)
                    fds[r.fd] = fds[int(word)]
                    continue
                if r.op in ("<", "<&"):
                    fds[r.fd] = self.read_path(word)
                    continue
                if r.op == "<>":
                    self.read_path(word)
                    continue
                sink = self.open_output(word, append=r.op in (">>", "&>>"))
                opened.append(sink)
                if r.op in ("&>", "&>>") or (r.op == ">&" and r.fd == 1):
                    fds[1] = fds[2] = sink
                else:
                    fds[r.fd] = sink
        except BaseException:
            for s in opened:
                s.close()
            raise
        out, err = fds[1], fds[2]
        if not isinstance(out, Sink) or not isinstance(err, Sink):
            raise ExpansionError("%s: Bad file descriptor" % redirs[-1].target.text)
        stdin = fds[0] if isinstance(fds[0], (bytes, type(None))) else None
        return Io(stdin, out, err), opened

    def read_path(self, word: str) -> bytes:
        gpath = self.tree.resolve(self.cwd, word)
        text = self.system.read_file(gpath)
        if text is not None:
            return text if isinstance(text, bytes) else text.encode()
        if GuestTree.is_virtual(gpath):
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), word)
        try:
            return self.tree.read(gpath)
        except OSError as e:
            raise OSError(e.errno, e.strerror, word) from None

    def open_output(self, word: str, append: bool) -> Sink:
        gpath = self.tree.resolve(self.cwd, word)
        if GuestTree.is_virtual(gpath):
            sink = self.system.write_file(gpath)
            if sink is None:
                exists = self.system.read_file(gpath) is not None or \
                    self.system.list_dir(gpath) is not None
                e = errno.EACCES if exists else errno.ENOENT
                raise OSError(e, os.strerror(e), word)
            return sink
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            return FileSink(self.tree.open(gpath, flags, 0o666 & ~UMASK))
        except OSError as e:
            raise OSError(e.errno, e.strerror, word) from None

    # -- word expansion (XCU 2.6) ------------------------------------------------------
    def expand_one(self, word: Tok, io: Io) -> str:
        """An assignment's value: expansions without field splitting or globbing."""
        return "".join(text for text, _ in self._pieces(word, io, split=False))

    def expand(self, word: Tok, io: Io) -> list[str]:
        fields: list[tuple[str, str | None]] = []    # (text, glob pattern or None)
        cur: list | None = None                # [text, pattern, globbing]
        for text, quoted in self._pieces(word, io, split=True):
            if quoted is None:                 # a field break from splitting
                if cur is not None:
                    fields.append((cur[0], cur[1] if cur[2] else None))
                cur = None
                continue
            if cur is None:
                cur = ["", "", False]
            cur[0] += text
            if quoted:
                cur[1] += "".join("[%s]" % c if c in "*?[" else c for c in text)
            else:
                cur[1] += text
                cur[2] = cur[2] or any(c in text for c in "*?[")
        if cur is not None:
            fields.append((cur[0], cur[1] if cur[2] else None))
        out = []
        for text, pattern in fields:
            matches = self.glob(pattern) if pattern is not None else []
            out += matches or [text]
        return out

    def _pieces(self, word: Tok, io: Io, split: bool) -> Iterator[tuple[str, bool | None]]:
        """(text, quoted) pieces; ("", None) marks where splitting ends a field."""
        for kind, value, quoted in word.parts:
            if kind == "lit":
                yield value, quoted
            elif kind == "tilde":
                yield self.vars.get("HOME", HOME), True
            elif kind == "bad":
                raise ExpansionAbort("%s: bad substitution" % value)
            else:
                text = self.param(value) if kind == "param" else \
                    str(len(self.param(value))) if kind == "length" else self.substitute(value, io)
                if quoted or not split:
                    yield text, True
                    continue
                ifs = self.vars.get("IFS", BLANKS)
                words = text.split() if set(ifs) <= set(BLANKS) else re.split(
                    "[%s]" % re.escape(ifs), text) if ifs else [text]
                if text and text[0] in ifs:
                    yield "", None
                for k, w in enumerate(x for x in words if x):
                    if k:
                        yield "", None
                    yield w, False
                if text and text[-1] in ifs:
                    yield "", None

    def param(self, value: str | tuple[str, str, str]) -> str:
        if isinstance(value, tuple):
            name, op, word = value
            cur = self.param(name)
            unset = name not in self.vars if NAME.fullmatch(name) else False
            empty = unset or (op.startswith(":") and cur == "")
            if op.endswith("-"):
                return word if empty else cur
            if op.endswith("+"):
                return "" if empty else word
            if op.endswith("="):
                if empty:
                    self.vars[name] = word
                    return word
                return cur
            if empty:
                raise ExpansionAbort("%s: %s" % (name, word or "parameter null or not set"))
            return cur
        if value == "?":
            return str(self.status)
        if value == "$":
            return str(os.getpid())
        if value == "#":
            return "0"
        if value == "0":
            return "-bash"
        return self.vars.get(value, "")

    def substitute(self, src: str, io: Io) -> str:
        """$(...): the commands' output, trailing newlines removed."""
        sub = self.fork()
        out = Buffer()
        try:
            body = parse(src)
        except (ParseError, Incomplete) as e:
            raise ExpansionError("command substitution: %s" % e) from None
        sub._in_subshell(body, Io(None, out, io.err))
        self.status = sub.status
        return out.value().decode("utf-8", "replace").rstrip("\n")

    def glob(self, pattern: str) -> list[str]:
        """Pathname expansion in the guest's tree; no match leaves the word."""
        absolute = pattern.startswith("/")
        comps = [c for c in pattern.split("/") if c]
        found = ["/" if absolute else ""]
        for k, comp in enumerate(comps):
            nxt = []
            for base in found:
                if not any(c in comp for c in "*?["):
                    lit = fnmatch_unescape(comp)
                    nxt.append(base + lit if base in ("", "/") else base + "/" + lit)
                    continue
                names = self.listing(self.tree.resolve(self.cwd, base or "."))
                if names is None:
                    continue
                for name in sorted(names):
                    if name.startswith(".") and not comp.startswith("."):
                        continue
                    if fnmatch.fnmatchcase(name, comp):
                        nxt.append(base + name if base in ("", "/") else base + "/" + name)
            found = nxt
        return [f for f in found if self.exists(f)]

    # -- the guest's files ------------------------------------------------------------
    def listing(self, gpath: str) -> list[str] | None:
        """Names in a directory (virtual or in the tree), None if it is none."""
        names = self.system.list_dir(gpath)
        if names is not None:
            return list(names)
        if GuestTree.is_virtual(gpath):
            return None
        try:
            names = self.tree.listdir(gpath)
        except OSError:
            return None
        if gpath == "/":
            names = sorted(set(names) | set(VIRTUAL_TOP))
        return names

    def exists(self, word: str) -> bool:
        gpath = self.tree.resolve(self.cwd, word)
        if self.system.read_file(gpath) is not None or self.system.list_dir(gpath) is not None:
            return True
        if GuestTree.is_virtual(gpath):
            return gpath.strip("/") in VIRTUAL_TOP
        try:
            self.tree.stat(gpath)
            return True
        except OSError:
            return False

    def is_dir(self, word: str) -> bool:
        gpath = self.tree.resolve(self.cwd, word)
        if GuestTree.is_virtual(gpath):
            return self.system.list_dir(gpath) is not None or gpath.strip("/") in VIRTUAL_TOP
        return self.tree.is_dir(gpath)

    def host_cwd(self) -> str:
        """The working directory of a program the guest runs."""
        return self.tree.host_path("/" if GuestTree.is_virtual(self.cwd) else self.cwd)

    def host_arg(self, arg: str) -> str:
        """A program's path argument, as the same path in the guest's tree:
        `/root/x`, `--file=/root/x` and tpm2-tools' `file:/root/x` name the
        guest's files, not the host's."""
        if arg.startswith("/"):
            gpath = self.tree.resolve("/", arg)
            if gpath in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"):
                return gpath
            return self.tree.host_path(gpath)
        m = re.match(r"(--?[A-Za-z][\w-]*=|file:)(/.*)$", arg)
        if m:
            return m.group(1) + self.host_arg(m.group(2))
        return arg


def fnmatch_unescape(comp: str) -> str:
    return re.sub(r"\[(.)\]", r"\1", comp)


def _has_cmd(word: Tok) -> bool:
    return any(kind == "cmd" for kind, _, _ in word.parts)


# -- built-ins ---------------------------------------------------------------------
def b_true(sh: Shell, args: list[str], io: Io) -> int:
    return 0


def b_false(sh: Shell, args: list[str], io: Io) -> int:
    return 1


ECHO_ESCAPES = {"a": b"\a", "b": b"\b", "e": b"\x1b", "E": b"\x1b", "f": b"\f", "n": b"\n",
                "r": b"\r", "t": b"\t", "v": b"\v", "\\": b"\\"}


def b_echo(sh: Shell, args: list[str], io: Io) -> int:
    """bash's builtin echo: -n, -e, -E (only as leading words of those letters)."""
    newline, escapes = True, False
    while args and re.fullmatch(r"-[neE]+", args[0]):
        for c in args[0][1:]:
            newline = newline and c != "n"
            escapes = True if c == "e" else (False if c == "E" else escapes)
        args = args[1:]
    data = " ".join(args).encode()
    if escapes:
        data, stop = _echo_escapes(data)
        newline = newline and not stop
    io.out.write(data + (b"\n" if newline else b""))
    return 0


def _echo_escapes(data: bytes) -> tuple[bytes, bool]:
    out = bytearray()
    i = 0
    while i < len(data):
        c = data[i:i + 1]
        if c != b"\\" or i + 1 == len(data):
            out += c
            i += 1
            continue
        nxt = chr(data[i + 1])
        if nxt == "c":
            return bytes(out), True
        if nxt in ECHO_ESCAPES:
            out += ECHO_ESCAPES[nxt]
            i += 2
        elif nxt == "0":
            m = re.compile(rb"[0-7]{0,3}").match(data, i + 2)
            assert m is not None        # {0,3}: matches nothing at worst
            out.append(int(m.group(0) or b"0", 8) & 0xFF)
            i = m.end()
        elif nxt == "x" and re.compile(rb"[0-9A-Fa-f]").match(data, i + 2):
            m = re.compile(rb"[0-9A-Fa-f]{1,2}").match(data, i + 2)
            assert m is not None        # a hex digit is there (tested above)
            out.append(int(m.group(0), 16))
            i = m.end()
        else:
            out += c
            i += 1
    return bytes(out), False


def b_pwd(sh: Shell, args: list[str], io: Io) -> int:
    io.print(sh.cwd + "\n")
    return 0


def b_cd(sh: Shell, args: list[str], io: Io) -> int:
    if len(args) > 1:
        io.error("-bash: cd: too many arguments")
        return 1
    target = args[0] if args else sh.vars.get("HOME", "")
    show = False
    if target == "-":
        if "OLDPWD" not in sh.vars:
            io.error("-bash: cd: OLDPWD not set")
            return 1
        target, show = sh.vars["OLDPWD"], True
    if target == "":
        return 0
    if not sh.exists(target):
        io.error("-bash: cd: %s: No such file or directory" % target)
        return 1
    if not sh.is_dir(target):
        io.error("-bash: cd: %s: Not a directory" % target)
        return 1
    sh.vars["OLDPWD"] = sh.cwd
    sh.cwd = sh.tree.resolve(sh.cwd, target)
    sh.vars["PWD"] = sh.cwd
    if show:
        io.print(sh.cwd + "\n")
    return 0


def b_export(sh: Shell, args: list[str], io: Io) -> int:
    if not args or args == ["-p"]:
        for name in sorted(sh.exported):
            if name in sh.vars:
                value = sh.vars[name].replace("\\", "\\\\").replace('"', '\\"') \
                    .replace("$", "\\$").replace("`", "\\`")
                io.print('declare -x %s="%s"\n' % (name, value))
            else:
                io.print("declare -x %s\n" % name)
        return 0
    status = 0
    for a in args:
        name, eq, value = a.partition("=")
        if not NAME.fullmatch(name):
            io.error("-bash: export: `%s': not a valid identifier" % a)
            status = 1
            continue
        if eq:
            sh.vars[name] = value
        sh.exported.add(name)
    return status


def b_unset(sh: Shell, args: list[str], io: Io) -> int:
    status = 0
    for a in args:
        if not NAME.fullmatch(a):
            io.error("-bash: unset: `%s': not a valid identifier" % a)
            status = 1
            continue
        sh.vars.pop(a, None)
        sh.exported.discard(a)
    return status


def b_exit(sh: Shell, args: list[str], io: Io) -> int:
    if not args:
        raise ShellExit(sh.status)
    if not re.fullmatch(r"[-+]?[0-9]+", args[0]):
        io.error("-bash: exit: %s: numeric argument required" % args[0])
        raise ShellExit(2)
    if len(args) > 1:
        io.error("-bash: exit: too many arguments")
        return 1
    raise ShellExit(int(args[0]) & 0xFF)


BUILTINS = {
    "echo": b_echo, "cd": b_cd, "pwd": b_pwd, "export": b_export, "unset": b_unset,
    "exit": b_exit, "logout": b_exit, "true": b_true, ":": b_true, "false": b_false,
}
BUILTINS.update(coreutils.COMMANDS)
