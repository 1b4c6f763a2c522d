"""Run the genuine Xen 4.17 `xl -N create` as an oracle for pyxl's tests.

How callers use it (tests/ is on sys.path via tests/conftest.py)::

    from oracle.xl import run_xl_dryrun, run_xl_text

    r = run_xl_dryrun("tests/config/x.cfg", extra=["memory=64"])
    r.rc, r.stdout, r.stderr         # xl's exit status, JSON, messages
    r = run_xl_text(b'name="a"\\n')  # same, for config text (temp file)

Both call ``need_peer("xl")`` when xl or gcc is missing, so the calling test
is skipped -- or fails under PYXL_REQUIRE_PEERS=1.  Call them from inside a
test (not at import time).  ``run_many`` runs several texts in parallel.

The run is hermetic: the LD_PRELOAD shim in xlshim.c (built with gcc into
``$XDG_CACHE_HOME/pyxl-oracle`` on first use, keyed by its hash) fakes a host
with 2 pCPUs, 1 NUMA node and 16 GiB, replaces /etc/xen/xl.conf with an empty
file, and -- unless ``fixed_uuid=False`` -- makes every UUID xl would
generate ``FIXED_UUID``.  stdout/stderr are decoded as UTF-8 with
surrogateescape, so raw bytes survive (``.encode("utf-8", "surrogateescape")``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, NamedTuple

XL = os.environ.get("PYXL_ORACLE_XL", "/usr/lib/xen-4.17/bin/xl")
SHIM_SOURCE = Path(__file__).with_name("xlshim.c")
FIXED_UUID = "deadbeef-dead-4ead-8ead-deaddeadbeef"


class Result(NamedTuple):
    rc: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.split("\n")[:-1] if self.stderr.endswith("\n") else self.stderr.split("\n")


def _need_xl() -> None:
    try:
        from peers import need_peer
    except ImportError:  # used outside pytest: fail loudly instead of skipping
        def need_peer(name: str) -> None:
            raise RuntimeError("the xl oracle needs xen-utils-4.17 and gcc")
    if not (os.access(XL, os.X_OK) and shutil.which("gcc")):
        need_peer("xl")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.environ.get("HOME") or tempfile.gettempdir(), ".cache")
    return Path(base) / "pyxl-oracle"


def shim() -> Path:
    """Path of the built shim (compiled on first use; parallel builders race
    harmlessly because the result is renamed into place)."""
    digest = hashlib.sha256(SHIM_SOURCE.read_bytes()).hexdigest()[:16]
    target = cache_dir() / f"xlshim-{digest}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so")
        os.close(fd)
        try:
            subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", tmp,
                            str(SHIM_SOURCE), "-ldl"], check=True,
                           capture_output=True)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def empty_xl_conf() -> Path:
    path = cache_dir() / "empty-xl.conf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return path


def xl_env(env: dict[str, str] | None = None, fixed_uuid: bool = True) -> dict[str, str]:
    full = dict(os.environ)
    full.update({
        "LD_PRELOAD": str(shim()),
        "PYXL_ORACLE_XL_CONF": str(empty_xl_conf()),
        "PYXL_ORACLE_FIXED_UUID": "1" if fixed_uuid else "",
        "LC_ALL": "C",  # strerror() texts in English
    })
    if env:
        full.update(env)
    return full


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def run_xl_dryrun(cfg_path: str | os.PathLike, extra: Iterable[str] = (),
                  env: dict[str, str] | None = None, *, fixed_uuid: bool = True,
                  cwd: str | os.PathLike | None = None,
                  timeout: float = 30) -> Result:
    """`xl -N create -f CFG_PATH EXTRA...` under the shim.  CFG_PATH is passed
    exactly as given (xl prints it in its messages)."""
    _need_xl()
    proc = subprocess.run([XL, "-N", "create", "-f", os.fspath(cfg_path), *extra],
                          env=xl_env(env, fixed_uuid), cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout)
    return Result(proc.returncode, _decode(proc.stdout), _decode(proc.stderr))


def run_xl_text(text: bytes | str, extra: Iterable[str] = (), *,
                name: str = "t.cfg", **kw) -> Result:
    """Write TEXT to a temporary NAME and dry-run it; messages name the file
    as NAME (xl runs in the temporary directory)."""
    _need_xl()
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    with tempfile.TemporaryDirectory(prefix="pyxl-oracle-") as d:
        Path(d, name).write_bytes(data)
        return run_xl_dryrun(name, extra, cwd=d, **kw)


def run_many(texts: Iterable[bytes | str], *, jobs: int = 4, **kw) -> list[Result]:
    """run_xl_text for each text, in parallel, results in input order."""
    _need_xl()
    shim()                  # build once, before the threads race
    empty_xl_conf()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda t: run_xl_text(t, **kw), texts))
