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
