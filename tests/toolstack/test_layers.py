"""The daemon's jobs are modules of their own (hostd.py is their
composition): none of them imports the command line, none imports hostd
at run time (only for type annotations), and they import one another
without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

TOOLSTACK = Path(__file__).resolve().parents[2] / "pyxl" / "toolstack"
JOBS = ("persist", "spawn", "teardown", "monitor", "control", "vtpm", "resources")


def _imports(path: Path) -> set[str]:
    """The pyxl modules `path` imports at run time (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pyxl"):
            out.add(node.module)
            out.update("%s.%s" % (node.module, a.name) for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("pyxl"))
    return out


def test_jobs_import_no_cli_no_hostd_and_no_cycle():
    graph = {}
    for name in JOBS + ("hostd",):
        deps = _imports(TOOLSTACK / ("%s.py" % name))
        assert not any(d.startswith("pyxl.cli") for d in deps), name
        graph[name] = {d.rsplit(".", 1)[1] for d in deps
                       if d.startswith("pyxl.toolstack.")} & set(JOBS + ("hostd",))
    assert all("hostd" not in graph[j] for j in JOBS), graph

    def reach(start, seen):
        for n in graph[start]:
            if n == seen[0]:
                return True
            if n not in seen:
                seen.append(n)
                if reach(n, seen):
                    return True
        return False

    for name in graph:
        assert not reach(name, [name]), "import cycle through %s: %r" % (name, graph)
