"""libxl_json: yajl's pretty printing and the IDL default rules."""

from pyxl.config import model as M
from pyxl.config.libxl_json import domain_config_to_json, render, struct_tree


def test_empty_containers_render_with_a_blank_line():
    assert render({"a": {}, "b": []}) == '{\n    "a": {\n\n    },\n    "b": [\n\n    ]\n}\n'


def test_string_escapes_like_yajl():
    d = M.DeviceDtdev(path='a/"b"\\\x01\x1f\t\n\xe9')
    assert render(struct_tree(d)) == '{\n    "path": "a/\\"b\\"\\\\\\u0001\\u001F\\t\\n\xe9"\n}\n'


def test_fields_equal_to_their_idl_default_are_omitted():
    b = M.DomainBuildInfo()
    b.init_type(M.DomainType.PV)
    tree = struct_tree(b)
    assert list(tree) == ["sched_params", "type.pv", "arch_arm", "arch_x86"]
    b.max_memkb = 0          # 0 differs from LIBXL_MEMKB_DEFAULT: printed
    b.sched_params.weight = -1  # the default weight: omitted
    b.claim_mode = False
    tree = struct_tree(b)
    assert tree["max_memkb"] == "0" and tree["claim_mode"] == '"False"'
    assert "weight" not in tree["sched_params"]


def test_hvm_union_always_prints_its_aggregates():
    b = M.DomainBuildInfo()
    b.init_type(M.DomainType.HVM)
    assert list(struct_tree(b)["type.hvm"]) == ["vga", "vnc", "sdl", "spice", "rdm"]


def test_enums_bitmaps_uuids_and_u64():
    d = M.DomainConfig()
    d.c_info.type = M.DomainType.PVH
    d.c_info.uuid = __import__("uuid").UUID("AC0A5B9E-CBE2-4C07-B43B-1D69E46FB839")
    d.b_info.init_type(M.DomainType.PVH)
    d.b_info.avail_vcpus = M.Bitmap(3, [0, 2, 9])
    d.b_info.target_memkb = (1 << 64) - 5120
    d.on_reboot = M.ActionOnShutdown.RESTART_RENAME
    d.on_crash = M.ActionOnShutdown.DESTROY
    text = domain_config_to_json(d)
    assert '"type": "pvh"' in text and '"uuid": "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"' in text
    assert '"avail_vcpus": [\n            0,\n            2\n        ]' in text
    assert '"target_memkb": 18446744073709546496' in text
    assert '"on_reboot": "restart_rename"' in text and "on_crash" not in text


def test_out_of_range_enum_prints_null():
    r = M.RdmReserve(strategy=M.RdmReserveStrategy.HOST, policy=M.UNINITIALISED)
    assert render(struct_tree(r)) == '{\n    "strategy": "host",\n    "policy": null\n}\n'
