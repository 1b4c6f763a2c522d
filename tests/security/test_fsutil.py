"""pyxl.fsutil, in-process and against the real kernel: atomic_write under a
file-size limit (real short writes), links never followed, directories
others could change refused, names that stay in their directory."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nobody import as_nobody
from pyxl.fsutil import UnsafePath, atomic_write, ensure_dir, open_append, safe_name

REPO = Path(__file__).resolve().parents[2]


# -- atomic_write ------------------------------------------------------------

def test_atomic_write_sets_the_mode_exactly_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f"
    old = os.umask(0o077)
    try:
        atomic_write(str(p), b"one", 0o644)
    finally:
        os.umask(old)
    assert p.read_bytes() == b"one" and stat.S_IMODE(p.stat().st_mode) == 0o644
    atomic_write(str(p), b"two")
    assert p.read_bytes() == b"two" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_write_replaces_a_link_and_never_writes_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "state").symlink_to(victim)
    atomic_write(str(tmp_path / "state"), b"new")
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "state").is_symlink()
    assert (tmp_path / "state").read_bytes() == b"new"


SHORT = r"""
import os, resource, sys
sys.path.insert(0, sys.argv[3])
mod, fn = sys.argv[4].rsplit(".", 1)
atomic_write = getattr(__import__(mod, fromlist=[fn]), fn)
path = sys.argv[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
try:
    atomic_write(path, b"N" * 10000)        # Python ignores SIGXFSZ: write() comes back short
except OSError as e:
    print("error", e.errno)
else:
    print("ok")
"""


def _short_write(tmp_path, impl: str) -> tuple[str, bytes]:
    p = tmp_path / "state"
    p.write_bytes(b"O" * 100)
    r = subprocess.run([sys.executable, "-c", SHORT, str(p), "4096", str(REPO), impl],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip(), p.read_bytes()


def test_a_short_write_never_becomes_the_file(tmp_path):
    """With RLIMIT_FSIZE at 4096 the kernel writes 4096 of 10000 bytes and
    then refuses (EFBIG): the write must fail and the old file stay whole."""
    out, data = _short_write(tmp_path, "pyxl.fsutil.atomic_write")
    assert out == "error 27"          # EFBIG, from the write after the short one
    assert data == b"O" * 100
    assert sorted(os.listdir(tmp_path)) == ["state"]


def test_atomic_write_fails_cleanly_when_the_rename_cannot_happen(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        atomic_write(str(tmp_path / "d"), b"data")      # a non-empty directory is in the way
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_there_is_one_atomic_write_and_fsutil_is_a_leaf():
    defs = []
    for f in (REPO / "pyxl").rglob("*.py"):
        tree = ast.parse(f.read_text())
        defs += [str(f.relative_to(REPO)) for n in ast.walk(tree)
                 if isinstance(n, ast.FunctionDef) and n.name == "atomic_write"]
    assert defs == ["pyxl/fsutil.py"]
    tree = ast.parse((REPO / "pyxl/fsutil.py").read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [m for m in imported if m and m.startswith("pyxl")] == []


# -- open_append -------------------------------------------------------------

def test_open_append_refuses_links_fifos_and_hard_links(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "link.log").symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link"):
        open_append(str(tmp_path / "link.log"))
    os.mkfifo(tmp_path / "fifo.log")
    with pytest.raises(UnsafePath, match="not a regular file"):
        open_append(str(tmp_path / "fifo.log"))       # no reader: it would block
    os.link(victim, tmp_path / "hard.log")
    with pytest.raises(UnsafePath, match="hard links"):
        open_append(str(tmp_path / "hard.log"))
    assert victim.read_bytes() == b"precious"


def test_open_append_makes_a_private_file_and_narrows_an_old_one(tmp_path):
    fd = open_append(str(tmp_path / "new.log"))
    os.close(fd)
    assert stat.S_IMODE((tmp_path / "new.log").stat().st_mode) == 0o600
    old = tmp_path / "old.log"
    old.write_bytes(b"kept\n")
    old.chmod(0o644)
    fd = open_append(str(old))
    os.write(fd, b"more\n")
    os.close(fd)
    assert old.read_bytes() == b"kept\nmore\n" and stat.S_IMODE(old.stat().st_mode) == 0o600


def test_open_append_refuses_another_users_file(shared):
    f = shared / "theirs.log"
    assert as_nobody("touch", f).returncode == 0
    with pytest.raises(UnsafePath, match="owned by uid 65534"):
        open_append(str(f))


# -- ensure_dir ----------------------------------------------------------------

def test_ensure_dir_makes_private_directories(tmp_path):
    d = tmp_path / "a" / "b" / "c"
    ensure_dir(str(d), 0o700)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) & 0o022 == 0
    ensure_dir(str(d), 0o700)           # again: nothing to do
    (tmp_path / "wide").mkdir(mode=0o755)
    (tmp_path / "wide").chmod(0o755)
    ensure_dir(str(tmp_path / "wide"), 0o700)
    assert stat.S_IMODE((tmp_path / "wide").stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_ensure_dir_refuses_a_directory_others_can_write(tmp_path, mode):
    d = tmp_path / "run"
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(UnsafePath, match="writable by group or others"):
        ensure_dir(str(d / "pyxl"), 0o700)     # on the way to ours
    assert not (d / "pyxl").exists()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777, 0o720])
def test_ensure_dir_refuses_its_own_directory_if_others_can_write(tmp_path, mode):
    d = tmp_path / "pyxl"
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(UnsafePath, match="writable by group or others"):
        ensure_dir(str(d), 0o700)              # sticky or not: ours is ours alone
    assert stat.S_IMODE(d.stat().st_mode) == mode       # and left as found


def test_ensure_dir_accepts_a_sticky_directory_on_the_way(shared):
    ensure_dir(str(shared / "mine" / "pyxl"), 0o700)      # /tmp and `shared`: 1777, root's
    assert (shared / "mine" / "pyxl").is_dir()


def test_ensure_dir_refuses_another_users_directory_or_link(shared, tmp_path):
    assert as_nobody("mkdir", shared / "theirs").returncode == 0
    with pytest.raises(UnsafePath, match="owned by uid 65534"):
        ensure_dir(str(shared / "theirs" / "pyxl"), 0o700)
    assert not (shared / "theirs" / "pyxl").exists()
    # a link of theirs in /tmp pointing at a directory of ours: they could retarget it
    mine = tmp_path / "mine"
    mine.mkdir()
    assert as_nobody("ln", "-s", mine, shared / "link").returncode == 0
    with pytest.raises(UnsafePath, match="symbolic link owned by uid 65534"):
        ensure_dir(str(shared / "link" / "pyxl"), 0o700)


def test_ensure_dir_follows_roots_own_links(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via").symlink_to(real)          # like /var/run -> /run
    ensure_dir(str(tmp_path / "via" / "pyxl"), 0o700)
    assert (real / "pyxl").is_dir()


def test_ensure_dir_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UnsafePath, match="not a directory"):
        ensure_dir(str(tmp_path / "f" / "pyxl"), 0o700)


# -- safe_name -------------------------------------------------------------------

NAMES = ["vm", "domu-vtpm", "vtpmmgr", "..", ".", "", "../x", "a/b", "/abs", "%2E", ".hidden",
         "a%b", "sp ace", "nul\0byte", "ünï", "\udcff", "x" * 300, "x" * 299 + "y", "-", "~"]


def test_safe_name_keeps_ordinary_names_as_xen_writes_them():
    for n in ("vm", "domu-vtpm", "vtpmmgr", "Domain-0", "guest_1.2", "a+b,c=d@e"):
        assert safe_name(n) == n


def test_safe_name_stays_in_its_directory_and_is_one_to_one(tmp_path):
    out = [safe_name(n) for n in NAMES]
    assert len(set(out)) == len(out)
    for n, s in zip(NAMES, out):
        assert s and s not in (".", "..") and "/" not in s and "\0" not in s, (n, s)
        assert len("guest-%s.log.stderr" % s) <= 255
        f = tmp_path / ("guest-%s.log" % s)
        f.write_bytes(b"")                   # the kernel agrees: one file, right here
        assert f.parent == tmp_path
    assert len(list(tmp_path.iterdir())) == len(NAMES)
