"""pci= and rdm= (pyxl/config/pci.py)."""

import pytest

from pyxl.config.model import PCI_FUNC_ALL, UNINITIALISED, DevicePci, RdmReservePolicy, RdmReserveStrategy
from pyxl.config.pci import ERROR_FAIL, ERROR_INVAL, parse_pci, parse_rdm


def pci(spec):
    said = []
    p = DevicePci()
    rc = parse_pci(p, spec, said.append)
    return rc, p, said


def test_bdf_forms():
    rc, p, _ = pci("0000:03:1f.7")
    assert rc == 0 and (p.domain, p.bus, p.dev, p.func, p.vfunc_mask) == (0, 3, 0x1F, 7, 1)
    rc, p, _ = pci("04:00.*@3,permissive=1,seize=1")
    assert rc == 0 and p.vfunc_mask == PCI_FUNC_ALL and p.vdevfn == 3 << 3
    assert p.permissive and p.seize and not p.msitranslate


def test_key_value_only_forms():
    rc, p, _ = pci("name=gpu")
    assert rc == 0 and p.name == "gpu"
    rc, p, _ = pci("bdf=05:00.1,vslot=4,rdm_policy=relaxed")
    assert rc == 0 and p.bus == 5 and p.vdevfn == 32 and p.rdm_policy == RdmReservePolicy.RELAXED


@pytest.mark.parametrize("spec", ["garbage", "10000:00:02.0", "00:20.0", "00:02.8",
                                  "03:00.0@20", "03:00.0,name=x", "03:00.0,noequals", "03:00.0x"])
def test_invalid_specs(spec):
    assert pci(spec)[0] == ERROR_INVAL


def test_messages_without_newline_and_their_codes():
    assert pci("03:00.0,bogus=1")[0::2] == (ERROR_INVAL, ["Unknown PCI_SPEC_STRING option: bogus"])
    assert pci("03:00.0,rdm_policy=x")[0::2] == (ERROR_FAIL, ["Unknown RDM policy: x"])


def test_rdm_quirks():
    said = []
    assert parse_rdm("strategy=host", said.append) == (RdmReserveStrategy.HOST, UNINITIALISED)
    assert parse_rdm("strategy=host,policy=relaxed", said.append) is None   # inverted check in xl
    assert parse_rdm("policy=bogus", said.append) == (UNINITIALISED, UNINITIALISED)
    assert parse_rdm("bogus=1", said.append) is None
    assert said == ["Unknown RDM policy: bogus", "Unknown RDM state option: bogus"]
