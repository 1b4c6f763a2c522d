"""parse_config_data semantics, key by key (pyxl/config/parse.py), on text
parsed by the real language layer."""

import pytest

from pyxl.config import ConfigError, load_data
from pyxl.config import model as M
from pyxl.config.host import HostInfo

PV = b'name="g"\nkernel="/k"\n'


def load(text: bytes, host=None):
    said = []
    d = load_data(text, "t.cfg", warn=said.append, host=host)
    return d, said


def fails(text: bytes):
    said = []
    with pytest.raises(ConfigError) as e:
        load_data(text, "t.cfg", warn=said.append)
    return e.value.exit_code, said + e.value.lines


@pytest.mark.parametrize("value,t", [("hvm", M.DomainType.HVM), ("h", M.DomainType.HVM),
                                     ("", M.DomainType.HVM), ("p", M.DomainType.PV),
                                     ("pv", M.DomainType.PV), ("pvh", M.DomainType.PVH)])
def test_type_is_a_prefix_match(value, t):
    d, _ = load(PV + b'type="%s"\n' % value.encode())
    assert d.c_info.type == t == d.b_info.type
    assert type(d.b_info.u) is M.UNION_MEMBERS[t][1]


def test_builder_and_type_must_agree():
    assert fails(PV + b'builder="hvm"\ntype="pv"\n') == \
        (1, ['Contradicting "builder" and "type" options specified.'])
    d, _ = load(PV + b'builder="generic"\n')
    assert d.c_info.type == M.DomainType.PV


def test_memory_wraps_like_a_c_long_times_1024():
    d, _ = load(PV + b'memory="-5"\n')
    assert d.b_info.target_memkb == d.b_info.max_memkb == (1 << 64) - 5120
    d, _ = load(PV + b'memory=0777\nmaxmem=0x400\n')
    assert (d.b_info.target_memkb, d.b_info.max_memkb) == (511 * 1024, 1024 * 1024)


def test_bad_number_is_a_warning_and_the_key_is_absent():
    d, said = load(PV + b'memory="512M"\n')
    assert said == ["t.cfg:3: warning: parameter `memory' is not a valid number"]
    assert d.b_info.target_memkb == M.MEMKB_DEFAULT


def test_vcpus_and_affinity_bitmaps_are_host_sized():
    d, _ = load(PV + b'vcpus=2\ncpus="all"\ncpus_soft="0-5,^1"\n')
    assert list(d.b_info.avail_vcpus) == [0, 1] and d.b_info.max_vcpus == 2
    assert [list(m) for m in d.b_info.vcpu_hard_affinity] == [list(range(8))] * 2
    assert [list(m) for m in d.b_info.vcpu_soft_affinity] == [[0, 2, 3, 4, 5]] * 2
    assert d.b_info.numa_placement is False
    d, _ = load(PV + b'vcpus=2\ncpus="all"\n', host=HostInfo(nr_cpus=12))
    assert list(d.b_info.vcpu_hard_affinity[0]) == list(range(16))


def test_affinity_errors():
    assert fails(PV + b'vcpus=1\ncpus="9"\n') == (1, ["vcpu hard affinity map is empty"])
    assert fails(PV + b'cpus="^all"\n') == (1, ['Can\'t combine "^" and "all".'])
    assert fails(PV + b'vcpus=4\nmaxvcpus=2\n') == (1, ["xl: maxvcpus < vcpus"])


def test_actions_defaults_and_errors():
    d, _ = load(PV)
    assert (d.on_poweroff, d.on_reboot, d.on_soft_reset) == \
        (M.ActionOnShutdown.DESTROY, M.ActionOnShutdown.RESTART, M.ActionOnShutdown.SOFT_RESET)
    assert fails(PV + b'on_crash="reboot"\n') == (1, ['Unknown on_crash action "reboot" specified'])


def test_uuid_given_or_generated():
    d, _ = load(PV + b'uuid="AC0A5B9E-CBE2-4C07-B43B-1D69E46FB839"\n')
    assert str(d.c_info.uuid) == "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
    assert load(PV)[0].c_info.uuid != load(PV)[0].c_info.uuid
    assert fails(PV + b'uuid="x"\n') == (1, ["Failed to parse UUID: x"])


def test_vtpm_keeps_the_backend_name():
    d, _ = load(PV + b'vtpm=["backend=vtpmmgr,uuid=ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839", "backend=x"]\n')
    assert [(v.backend_domname, v.devid) for v in d.vtpms] == [("vtpmmgr", 0), ("x", 1)]
    assert fails(PV + b'vtpm=["uuid=ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"]\n') == \
        (1, ["vtpm spec missing required backend field!"])


def test_exit_statuses_3_and_6():
    assert fails(PV + b'type="hvm"\nviridian=["bogus"]\n') == \
        (3, ["xl: unknown viridian enlightenment 'bogus'"])
    assert fails(PV + b'pci=["garbage"]\n') == \
        (6, ["unable to parse PCI_SPEC_STRING `garbage' for passthrough"])
    assert fails(PV + b'max_grant_frames="abc"\n') == (1, [])


def test_pci_on_pv_turns_on_e820_host_and_reads_the_hvm_rdm_memory():
    d, _ = load(PV + b'pci=["03:00.0"]\n')
    assert d.b_info.u.e820_host is True and d.pcidevs[0].rdm_policy == M.RdmReservePolicy.STRICT
    d, _ = load(PV + b'type="hvm"\npci=["03:00.0"]\n')
    assert d.pcidevs[0].rdm_policy == M.RdmReservePolicy.INVALID


def test_parse_errors_end_with_xls_failure_line():
    code, lines = fails(b'name="a"\nmemory=12g\n')
    assert code == 1 and lines[-1] == "Failed to parse config: Invalid argument"


def test_warnings_come_in_xls_order():
    _, said = load(PV + b'memory=[1]\ndevice_model="stubdom-dm"\ncmdline="c"\nroot="r"\n')
    assert said == ["t.cfg:3: warning: parameter `memory' is a list but should be a single value",
                    "Warning: ignoring root= and extra= in favour of cmdline=",
                    "WARNING: ignoring device_model directive.",
                    'WARNING: Use "device_model_override" instead if you really want a '
                    "non-default device_model",
                    'WARNING: ignoring "device_model_stubdomain_override" directive for pv guest']
