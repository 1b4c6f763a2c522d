"""The model mirrors libxl_types.idl: names, order, defaults."""

import dataclasses

from pyxl.config import model as M


def names(cls):
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("t") != "private"]


def test_domain_config_fields_in_idl_order():
    assert names(M.DomainConfig) == [
        "c_info", "b_info", "disks", "nics", "pcidevs", "rdms", "dtdevs", "vfbs", "vkbs", "vtpms",
        "p9s", "pvcallsifs", "vdispls", "vsnds", "channels", "usbctrls", "usbdevs",
        "on_poweroff", "on_reboot", "on_watchdog", "on_crash", "on_soft_reset"]
    assert names(M.DeviceVtpm) == ["backend_domid", "backend_domname", "devid", "uuid"]


def test_defaults_are_the_idl_init_values():
    b = M.DomainBuildInfo()
    assert b.max_memkb == b.target_memkb == M.MEMKB_DEFAULT == (1 << 64) - 1
    assert b.sched_params.weight == -1 and b.max_grant_frames == (1 << 32) - 1
    assert b.timer_mode == M.TimerMode.UNKNOWN and b.claim_mode is None
    assert M.DeviceNic().devid == -1 and M.IomemRange().gfn == M.INVALID_GFN


def test_init_type_selects_the_union_member():
    b = M.DomainBuildInfo()
    b.init_type(M.DomainType.HVM)
    assert b.hvm is b.u and b.pv is None and b.hvm.hdtype == M.Hdtype.IDE
    assert b.hvm.rdm.policy == M.RdmReservePolicy.INVALID


def test_bitmap_ignores_bits_beyond_its_bytes():
    m = M.Bitmap(2)
    assert m.nbits == 8
    m.set(7)
    m.set(8)
    m.set_any()
    assert list(m) == list(range(8))


def test_enum_names_and_from_string():
    assert M.ActionOnShutdown.RESTART_RENAME.libxl_name == "restart_rename"
    assert M.TscMode.from_string("NATIVE") == M.TscMode.NATIVE
    assert M.TscMode.from_string("x") is None
