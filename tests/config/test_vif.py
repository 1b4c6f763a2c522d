"""vif= specs and rates (pyxl/config/vif.py)."""

import pytest

from pyxl.config.errors import ConfigError
from pyxl.config.model import DeviceNic, NicType
from pyxl.config.vif import parse_nic, parse_rate


def nic(spec):
    said = []
    n = DeviceNic(devid=0)
    parse_nic(n, spec, "t.cfg", said.append)
    return n, said


@pytest.mark.parametrize("rate,expected", [
    ("10Mb/s@20ms", (25000, 20000)),
    ("10Mb/s", (62500, 50000)),
    ("1GB/s@1s", (10**9, 10**6)),
    ("100KB/s@50us", (5, 50)),
    ("010Mb/s", (50000, 50000)),        # base 0: octal
    ("5MB/s@3", (15 * 10**6, 3 * 10**6)),
])
def test_rates(rate, expected):
    assert parse_rate(rate, "t.cfg") == expected


@pytest.mark.parametrize("rate,msg", [
    ("08Mb/s", "rate overflow in `08Mb/s'"),
    ("10Xb/s", "invalid rate in `10Xb/s'"),
    ("@20ms", "no rate specified in `@20ms'"),
    ("10Mb/s@1h", "invalid replenishment interval in `1h'"),
    ("10Mb/s@5000s", "replenishment interval overflow in `5000s'"),
])
def test_rate_errors(rate, msg):
    with pytest.raises(ConfigError) as e:
        parse_rate(rate, "t.cfg")
    assert e.value.lines == ["t.cfg: config parsing error in vif: " + msg]
    assert e.value.exit_code == 1


def test_full_spec_keeps_trailing_blanks():
    n, said = nic("mac=00:16:3E:01:02:0a,bridge=xenbr0 , ip=1.2.3.4,type=ioemu,vifname=v,mtu=9000,devid=3,trusted")
    assert said == []
    assert n.mac == (0, 0x16, 0x3E, 1, 2, 10) and n.bridge == "xenbr0 " and n.ip == "1.2.3.4"
    assert (n.nictype, n.ifname, n.mtu, n.devid, n.trusted) == (NicType.VIF_IOEMU, "v", 9000, 3, True)


def test_mistakes_are_only_messages():
    n, said = nic("mac=zz,type=bogus,netdev=eth1,accel=x,what")
    assert said == ["Invalid parameter `mac'.", "Invalid parameter `type'.",
                    "the netdev parameter is deprecated, please use gatewaydev instead",
                    "the accel parameter for vifs is currently not supported",
                    "unrecognized argument `what'"]
    assert n.gatewaydev == "eth1"


def test_short_mac_reads_on_into_the_next_item_like_xl():
    n, said = nic("mac=00:16,bridge=x")
    # xl's loop steps past the NUL strtok left and parses "bridge=x" as hex "b"
    assert n.mac[:3] == (0, 0x16, 0xB) and said == ["Invalid parameter `mac'."]


def test_bad_mtu_is_fatal():
    with pytest.raises(ConfigError) as e:
        nic("mtu=abc")
    assert e.value.lines == ['xl: failed to convert "abc" to number']


def test_a_stale_erange_makes_a_good_rate_overflow_like_xl():
    from pyxl.config import ConfigError, load_data
    text = (b'name="g"\nkernel="/k"\nvmtrace_buf_kb=99999999999999999999\n'
            b'vif=["rate=10Mb/s"]\n')
    with pytest.raises(ConfigError) as e:
        load_data(text, "t.cfg", warn=lambda s: None)
    assert e.value.lines == ["t.cfg: config parsing error in vif: rate overflow in `10Mb/s'"]
    # without the overflow the same rate is fine
    load_data(text.replace(b'vif=', b'vmtrace_buf_kb=1\nvif='), "t.cfg", warn=lambda s: None)
