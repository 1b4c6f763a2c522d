"""The guest's shell against real bash.

Each line of the table runs twice: in `bash --norc --noprofile -c` in a
scratch directory (HOME set to it, the C locale), and in the guest's shell
in a fresh guest tree whose working directory is /root.  Standard output,
standard error and $? must be the same, and so must the files the line left
behind.  bash -c and an interactive login bash word their errors a little
differently (`bash: line 1: ` for `-bash: `; a syntax error also echoes
the line); the guest is a login shell, so bash's text is mapped to that.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import types

import pytest

from pyxl.domain.linux import shell
from pyxl.domain.linux.fs import GuestTree

LINES = [
    # quoting and escapes (XCU 2.2)
    r"""echo "a  b" c\ d 'e  f' g""",
    r"""echo 'single "double" \back' "dq 'sq' \$ \" \\ \n" \'\"\\""",
    r"""echo a\
b""",
    r"""echo "" '' x "" > f; echo "$?" """,
    r"""echo $'tab\there' $'nl\nx' $'\x41\101'""",
    r"""echo "OWNERWRITE|OWNERREAD" 'a;b&&c' "x>y" "<z>" """,
    r"""echo -n no newline; echo; echo -e 'a\tb\c' not; echo -E '\t'; echo -nx""",
    r"""echo \# # a comment; echo a#b""",
    # parameters (XCU 2.6.2), splitting (2.6.5), tilde (2.6.1), $(...) (2.6.3)
    r"""x="a  b"; echo $x "$x" ${x} "${x}" '$x' \$x""",
    r"""x='  lead and trail  '; echo [$x] "[$x]"; printf_unset=; echo [${printf_unset}]""",
    r"""echo ${nosuch:-default} ${nosuch-d2} "${nosuch:+alt}" ${HOME:+set}""",
    r"""false; echo $?; true; echo $?; nosuchcmd; echo $?""",
    r"""echo ~ ~/x "~" '~' x~""",
    r"""echo $(echo a   b) "$(echo a   b)" `echo bq`; x=$(false); echo $?""",
    r"""A=1 B="two words"; echo "$A $B"; export C=3; echo $C""",
    r"""echo ${a b}; echo after""",
    r"""(echo ${a b}; echo not); echo after $?""",
    r"""export 1a=b; echo $?""",
    r"""unset HOME; echo [$HOME]""",
    # lists (2.9.3) and pipelines (2.9.2)
    r"""true && echo and1; false && echo and2; false || echo or1; true || echo or2""",
    r"""false && echo no || echo yes; ! false && echo negated; ! true; echo $?""",
    r"""echo one; echo two ; ; echo three""",
    r"""; echo x""",
    r"""echo a && && echo b""",
    r"""echo a | | cat""",
    r"""| cat""",
    r"""echo x )""",
    r"""echo (""",
    r"""echo piped | cat | cat; echo "$?" """,
    r"""cat nosuch | echo still; echo $?""",
    r"""echo a | false; echo $?""",
    r"""cd / | cat; pwd; x=1 | cat; echo [$x]""",
    r"""(cd sub 2>/dev/null; echo in); (exit 4); echo $?; (echo sub) > f; cat f""",
    # redirections (2.7)
    r"""echo a > f; echo b >> f; cat f; cat < f; cat - < f""",
    r"""echo first > f; echo second > f; cat f; >empty; cat empty; ls""",
    r"""echo err 1>&2; echo err2 >&2 2>/dev/null; echo both > f 2>&1; cat f""",
    r"""cat nosuch 2> e; echo $?; cat e; cat nosuch 2>> e; cat e""",
    r"""cat nosuch > f 2>&1; cat f; cat nosuch 2>&1 > f | cat; echo [$(cat f)]""",
    r"""cat nosuch &> f; cat f; echo x &>> f; cat f""",
    r"""echo x > ; echo y""",
    r"""echo x >""",
    r"""cat < nosuch; echo $?""",
    r"""echo a >&3""",
    r"""echo hi > nodir/f; echo $?""",
    r"""x="a b"; echo hi > $x""",
    r"""echo "quoted name" > "a b"; cat a\ b; ls""",
    r"""echo data > f; cat < f | cat | cat > g; cat g""",
    r"""ls > listing; cat listing""",
    # built-ins
    r"""pwd; mkdir sub; cd sub; pwd; cd ..; pwd; cd; pwd""",
    r"""cd nosuch; echo $?; echo x > f; cd f; cd a b; echo $?""",
    r"""mkdir -p a/b/c; cd a/b/c; pwd; cd ../..; pwd; cd -; cd; cd /; pwd""",
    r"""mkdir d; mkdir d; echo $?; mkdir; echo $?""",
    r"""echo 1 > f1; echo 2 > f2; mkdir d; ls; ls -a; ls f1 d nosuch; echo $?""",
    r"""mkdir d; echo x > d/in; ls d; ls -d d; ls nosuch; echo $?""",
    r"""echo x > .hidden; ls; ls -A; ls -1""",
    r"""echo 1 > f; rm f; ls; rm f; echo $?; rm -f f; echo $?""",
    r"""mkdir d; rm d; echo $?; echo x > d/y; rm -r d; ls; rm -rf nosuch; echo $?""",
    r"""rm; echo $?; rm -f; echo $?; rm -r .; echo $?""",
    r"""cat nosuch; echo $?; mkdir d; cat d; echo $?; cat -x; echo $?""",
    r"""echo x > f; cat f - f < f""",
    r"""ls -z; echo $?""",
    r"""exit 3; echo not here""",
    r"""(exit 5); echo $?; exit""",
    r"""exit abc""",
    r"""nosuch_program arg; echo $?""",
    r"""./nosuch; echo $?""",
    r"""echo *; echo x > b1; echo x > b2; echo b*; echo "b*"; echo b?; echo z*; echo [b]1""",
    r"""mkdir d; echo x > d/f; echo d/*; echo */f""",
    r"""true; : ignored args; echo $?""",
    # odds and ends
    r"""echo "$?"; echo a;""",
    r"""x=1; x=2 echo $x; echo $x""",
    r"""echo a'b'"c"\d "a\"b" '\' it\'s""",
    r"""echo $1 [$#] [$@] [$*]""",
    r"""true | false | true; echo $?; false | true; echo $?""",
    r"""echo a > f | cat; cat f; >g echo hi; cat g; echo 2>&1 x""",
    r"""A=b; echo "${A}c" [$Ac] ${#A} ${#nosuch} x${A:+set}y ${B=dflt} $B""",
    r"""echo a >> "new file"; echo b >> new\ file; cat "new file" """,
    r"""echo -n "no eol" > f; cat f f; echo""",
    r"""echo $HOME/x ~/y""",
]


class NoKernel:
    """The kernel side of a guest with nothing simulated but /dev/null:
    these lines use the guest's own files only."""

    def read_file(self, path):
        return None

    def list_dir(self, path):
        return None

    def write_file(self, path):
        return shell.Null() if path == "/dev/null" else None

    def command(self, name, args, io, sh, env):
        return None


@pytest.fixture
def tree(tmp_path):
    t = GuestTree.create(types.SimpleNamespace(domid=7, status_path=str(tmp_path / "7.status")))
    yield t
    t.close()


def run_guest(tree: GuestTree, line: str, terminal: bool = False):
    """(stdout, stderr, $?); on a terminal both streams are one."""
    out = shell.Buffer()
    err = out if terminal else shell.Buffer()
    sh = shell.Shell(tree, NoKernel(), out)
    io = shell.Io(None, out, err)
    try:
        body = shell.parse(line)
    except shell.ParseError as e:
        io.error("-bash: %s" % e)
        status = 2
    else:
        try:
            sh.run_list(body, io)
            status = sh.status
        except shell.ShellExit as e:
            status = e.status
        except shell.ExpansionAbort as e:
            io.error("-bash: %s" % e)
            status = 1
    return out.value(), err.value(), status


def run_bash(workdir, line: str):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "LC_ALL": "C"}
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", line], cwd=workdir, env=env,
                       capture_output=True, timeout=20)
    home = str(workdir).encode()
    err = []
    for ln in p.stderr.splitlines(keepends=True):
        if ln.startswith(b"bash: -c: line 1: `"):
            continue                         # bash -c echoes the offending line
        ln = ln.replace(b"bash: -c: line 1: ", b"-bash: ").replace(b"bash: line 1: ", b"-bash: ")
        err.append(ln)
    return (p.stdout.replace(home, b"/root"), b"".join(err).replace(home, b"/root"),
            p.returncode)


def files(top: str) -> dict:
    found = {}
    for d, subdirs, names in os.walk(top):
        for n in subdirs:
            found[os.path.relpath(os.path.join(d, n), top)] = "dir"
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                found[os.path.relpath(os.path.join(d, n), top)] = f.read()
    return found


@pytest.mark.parametrize("line", LINES)
def test_line_as_bash_runs_it(line, tree, tmp_path):
    work = tmp_path / "bash"
    work.mkdir()
    want = run_bash(work, line)
    got = run_guest(tree, line)
    assert got == want, "\n  bash: %r\n guest: %r" % (want, got)
    assert files(tree.host_path("/root")) == files(str(work))


def test_unfinished_input_continues_as_at_a_bash_prompt():
    """An open quote, a trailing |, && or \\ leave the line unfinished:
    interactive bash prints PS2 and reads on (bash -c instead reports an
    unexpected EOF, which a console never sees)."""
    for text in ('echo "a', "echo 'a", "echo a |", "echo a &&", "false ||", "echo a\\",
                 "echo ${x", "echo $(echo", "(echo a", "echo `x"):
        assert not shell.Shell.complete(text), text
    for text in ("echo a", "echo a;", "; x", "echo 'a\nb'", "echo a |\ncat", "echo a\\\nb"):
        assert shell.Shell.complete(text), text


@pytest.mark.parametrize("lines", [['echo "a', 'b"'], ["echo 'x", "", "y'"],
                                   ["echo a |", "cat"], ["echo x\\", "y"],
                                   ["false ||", "echo fallback"],
                                   ["echo ${nosuch?unset here}; echo after"],
                                   ["(echo ${nosuch?x}; echo in); echo $?"],
                                   ["echo ${a b}; echo after"]])
def test_lines_as_interactive_bash(lines, tree, tmp_path):
    """The lines typed one by one at a real interactive bash (through a
    pty, PS2 prompts and all) print what the guest prints for the joined
    input.  (Interactive: bash -c leaves at an unset ${NAME?}, a prompt
    abandons the line.)"""
    pexpect = pytest.importorskip("pexpect")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C", "PS1": "$ ",
           "PS2": "> ", "TERM": "dumb"}
    b = pexpect.spawn("bash", ["--norc", "--noprofile", "-i"], env=env, cwd=str(tmp_path),
                      encoding="utf-8", timeout=10)
    b.setecho(False)
    b.expect_exact("$ ")
    for k, ln in enumerate(lines):
        b.sendline(ln)
        b.expect_exact("> " if k < len(lines) - 1 else "$ ")
    want = b.before.replace("\r\n", "\n")
    if want.startswith(lines[-1] + "\n"):
        want = want[len(lines[-1]) + 1:]         # readline's own echo of the typed line
    want = re.sub(r"(?m)^bash: ", "-bash: ", want)   # a login shell's name
    b.sendline("exit")
    b.expect(pexpect.EOF)
    text = ""
    for k, ln in enumerate(lines):
        text += ln
        assert shell.Shell.complete(text) == (k == len(lines) - 1)
        text += "\n"
    out, _, status = run_guest(tree, text[:-1], terminal=True)
    assert out.decode() == want


def test_the_tree_is_private_and_goes_with_the_guest(tmp_path):
    """0700 in the daemon's per-domain directory; the reaper removes it once
    the guest's lifeline closes (here: the guest process is killed)."""
    parent = tmp_path / "dom"
    parent.mkdir(mode=0o700)
    code = ("import types, sys, time\n"
            "from pyxl.domain.linux.fs import GuestTree\n"
            "t = GuestTree.create(types.SimpleNamespace(domid=9, status_path=sys.argv[1]))\n"
            "print(t.top, flush=True)\n"
            "time.sleep(600)\n")
    import sys

    p = subprocess.Popen([sys.executable, "-c", code, str(parent / "9.status")],
                         stdout=subprocess.PIPE, text=True)
    try:
        top = p.stdout.readline().strip()
        assert os.path.dirname(top) == str(parent)
        assert stat.S_IMODE(os.stat(top).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(os.path.join(top, "root")).st_mode) == 0o700
    finally:
        p.kill()
        p.wait()
    import time

    deadline = time.monotonic() + 10
    while os.path.exists(top):
        assert time.monotonic() < deadline, "the guest's tree outlived it"
        time.sleep(0.05)


def test_paths_stay_in_the_tree(tree):
    """`..` stops at the guest's /, and a symbolic link is never followed."""
    out, err, status = run_guest(tree, "cd ../../..; pwd; echo x > ../../escape; ls /")
    assert out == b"/\ndev\nescape\netc\nproc\nroot\nsys\ntmp\n" and status == 0
    assert os.path.exists(os.path.join(tree.top, "escape"))
    outside = os.path.join(os.path.dirname(tree.top), "outside")
    with open(os.path.join(os.path.dirname(tree.top), "secret"), "w") as f:
        f.write("host file\n")
    os.symlink(os.path.dirname(tree.top), tree.host_path("/root/link"))
    os.symlink(os.path.join(os.path.dirname(tree.top), "secret"), tree.host_path("/root/file"))
    out, err, status = run_guest(tree, "echo x > link/outside; cat link/secret file; ls link; "
                                       "echo y > file; cd link")
    assert not os.path.exists(outside) and open(f.name).read() == "host file\n"
    assert out == b"link\n"
    assert err == (b"-bash: link/outside: Not a directory\ncat: link/secret: Not a directory\n"
                   b"cat: file: No such file or directory\n-bash: file: No such file or directory\n"
                   b"-bash: cd: link: Not a directory\n")


def _populate(tree: GuestTree) -> None:
    names = ["a", "bb", "ccc", "a-much-longer-name.ctx", "primary.ctx", "sealed.blob",
             "policy.digest", "key.pub", "key.priv", "x" * 30, "nv info.txt", "z9"]
    for k, n in enumerate(names):
        with open(tree.host_path("/root/" + n), "wb") as f:
            f.write(b"x" * (k * 700))
    os.mkdir(tree.host_path("/root/sub"))


NAME_SETS = [
    ["a", "bb", "ccc", "a-much-longer-name.ctx", "primary.ctx", "sealed.blob", "policy.digest",
     "key.pub", "key.priv", "x" * 30, "nv info.txt", "z9"],
    ["f%d" % k for k in range(60)],
    ["x" * 79, "y"],
    ["n" * 38, "m" * 38, "o"],
    ["%s%d" % ("k" * (k * 7 % 23), k) for k in range(25)],
]


@pytest.mark.parametrize("names", NAME_SETS)
def test_ls_on_the_terminal_fills_columns_as_coreutils_ls_does(names, tree):
    """ls to a terminal is `ls -C` for 80 columns: real ls, on the same files."""
    for n in names:
        open(tree.host_path("/root/" + n), "w").close()
    out = shell.Buffer()
    out.tty = True
    sh = shell.Shell(tree, NoKernel(), out)
    assert sh.run("ls") == 0
    want = subprocess.run(["ls", "-C", tree.host_path("/root")], capture_output=True,
                          env={"LC_ALL": "C", "COLUMNS": "80", "PATH": "/usr/bin:/bin"}).stdout
    assert out.value() == want


def test_ls_l_as_coreutils_ls_l(tree):
    """ls -l: real ls -l on the same files (the guest's owner is root: as root only)."""
    if os.geteuid() != 0:
        pytest.skip("the guest's files are root's; real ls names the host user")
    _populate(tree)
    got = run_guest(tree, "ls -l; ls -l a bb; ls -la sub")
    env = {"LC_ALL": "C", "PATH": "/usr/bin:/bin", "TZ": os.environ.get("TZ", "")}
    want = subprocess.run(["bash", "-c", "ls -l; ls -l a bb; ls -la sub"], env=env,
                          cwd=tree.host_path("/root"), capture_output=True)
    assert got == (want.stdout, want.stderr, want.returncode)


def test_nesting_too_deep_is_an_error_not_a_crash(tree):
    out = shell.Buffer()
    sh = shell.Shell(tree, NoKernel(), out)
    line = "echo " + "$(echo " * 1000 + "x" + ")" * 1000
    assert sh.run(line) == 1
    assert out.value() == b"-bash: command substitution: nested too deeply\n"
    assert sh.run("echo fine") == 0
