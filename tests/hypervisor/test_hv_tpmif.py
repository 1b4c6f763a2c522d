"""tpmif v2 shared page layout and xenbus state helpers."""

from __future__ import annotations

import struct

import pytest

from pyxl.domain.drivers import tpmif, xenbus
from pyxl.hypervisor.xenstore import QueueSink, XenStore


def test_header_layout_matches_tpmif_h():
    buf = bytearray(4096)
    page = tpmif.SharedPage(memoryview(buf))
    page.submit(b"\x00\xc1abc", locality=3)
    length, state, locality, pad, extra = struct.unpack_from("<IBBBB", buf)
    assert (length, state, locality, pad, extra) == (5, tpmif.TPMIF_STATE_SUBMIT, 3, 0, 0)
    assert bytes(buf[8:13]) == b"\x00\xc1abc"          # data at offset 8, not 16
    assert page.request() == (b"\x00\xc1abc", 3)
    page.finish(b"resp")
    assert (page.state, page.length, page.response()) == (tpmif.TPMIF_STATE_FINISH, 4, b"resp")
    assert page.locality == 3                           # the backend leaves locality alone
    page.cancel()
    assert page.state == tpmif.TPMIF_STATE_CANCEL
    page.idle()
    assert page.state == tpmif.TPMIF_STATE_IDLE


def test_extra_pages_move_the_data_and_limits_are_enforced():
    buf = bytearray(4096)
    page = tpmif.SharedPage(buf)
    page.submit(b"x" * tpmif.MAX_PACKET)
    assert page.response() == b"x" * 4088
    with pytest.raises(tpmif.TpmifError):
        page.submit(b"x" * 4089)
    buf[7] = 2                                          # nr_extra_pages
    assert page.data_offset == 16
    struct.pack_into("<I", buf, 0, 5000)                # hostile length
    with pytest.raises(tpmif.TpmifError):
        page.request()
    with pytest.raises(ValueError):
        tpmif.SharedPage(bytearray(100))


def test_xenbus_states_and_waiting():
    store = XenStore()
    sink = QueueSink()
    xs = store.connect(0, sink)

    class Shim:                                        # XenInterface's xenstore surface
        read = staticmethod(xs.read)
        write = staticmethod(xs.write)
        watch = staticmethod(xs.watch)
        unwatch = staticmethod(xs.unwatch)

        @staticmethod
        def read_watch(timeout=None, token=None):
            return sink.wait(timeout)
    shim = Shim()
    assert xenbus.read_state(shim, "/dev") == xenbus.XenbusStateUnknown
    xenbus.switch_state(shim, "/dev", xenbus.XenbusStateInitialising)
    assert xs.read("/dev/state") == b"1"
    assert xenbus.wait_for_state(shim, "/dev", {3, 4}, timeout=0.1) is None
    xs.write("/dev/state", "4")
    assert xenbus.wait_for_state(shim, "/dev", {3, 4}, timeout=1) == 4
    assert xs.watches == []                            # the wait cleaned up its watch
    assert xenbus.STATE_NAMES[xenbus.XenbusStateInitWait] == "InitWait"
