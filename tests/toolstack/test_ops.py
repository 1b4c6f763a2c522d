"""The daemon's one op table: a request is looked up, its arguments checked
against the row, and only then handled."""

from __future__ import annotations

import pytest

from pyxl.toolstack import daemon
from pyxl.toolstack.errors import Fault
from pyxl.toolstack.ops import Op, core, devices, merge, resources, saverestore


def test_every_op_is_one_row_of_one_table():
    tables = (core.OPS, resources.OPS, devices.OPS, saverestore.OPS)
    assert set(daemon.OPS) == set().union(*tables)
    assert len(daemon.OPS) == sum(len(t) for t in tables)        # no op in two tables
    with pytest.raises(ValueError):
        merge({"x": Op(print)}, {"x": Op(print)})


def test_arguments_outside_the_row_are_a_bad_request(host):
    assert host.call("ping")["pid"] > 0
    for op, args in (("list", {"bogus": 1}), ("rename", {"dom": "0"}), ("nosuch", {}),
                     ("sysrq", {"dom": "0", "key": "bb"})):
        with pytest.raises(Fault) as e:
            host.call(op, **args)
        assert e.value.name == "BAD_REQUEST", (op, e.value.message)
    # the connection-level checks did not disturb the daemon
    assert [d["name"] for d in host.call("list")] == ["Domain-0"]


def test_create_carries_the_libxl_json_once(host, tmp_path, monkeypatch, capsys):
    """The create request's config (and config-update's) is the
    libxl_domain_config JSON text that `xl -N create` prints (pyxl's is
    compared with xl's in tests/config/test_create_dryrun.py): rendered once
    by the client, parsed once by the daemon; anything else is a bad
    request."""
    import json
    import re

    from pyxl.cli import create as cli_create
    from pyxl.toolstack.client import Client

    cfg = tmp_path / "g.cfg"
    cfg.write_text('name="g"\nmemory=32\nkernel="%s"\n' % host.kernel)
    monkeypatch.setenv("PYXL_ROOT", host.root)
    assert cli_create.create(None, [str(cfg), "-n"]) == 0
    dry = capsys.readouterr().out
    sent = []
    real = Client.call

    def spy(self, op, **args):
        if op == "create":
            sent.append(args["config"])
        return real(self, op, **args)

    monkeypatch.setattr(Client, "call", spy)
    assert cli_create.create(None, [str(cfg), "-q"]) == 0
    assert len(sent) == 1 and isinstance(sent[0], str)
    uuid = json.loads(sent[0])["c_info"]["uuid"]      # xl draws one per create
    assert sent[0] == re.sub(r'"uuid": "[0-9a-f-]{36}"', '"uuid": "%s"' % uuid, dry, count=1)
    assert host.call("list", dom="g", long=True)[0]["config"] == json.loads(sent[0])
    for op, args in (("create", {}), ("config_update", {"dom": "g"})):
        for bad in (json.loads(dry), "{not json", "[]"):
            with pytest.raises(Fault) as e:
                host.call(op, config=bad, **args)
            assert e.value.name == "BAD_REQUEST", (op, bad)
