"""The domain wire's table of operations, row by row, over a real socket.

Expected errors come from Xen 4.17's sources:

- tools/xenstore/xenstored_core.c, process_message: a type with no
  `wire_funcs` handler (or past XS_TYPE_COUNT) is ENOSYS; an XS_FLAG_PRIV
  row on a connection for which domain_is_unprivileged is EACCES; then
  transaction_lookup (an unknown tx_id is ENOENT) unless the row has
  XS_FLAG_NOTID (WATCH, UNWATCH); then each handler's own payload check:
  onearg ("exactly one nul, at the end"), do_watch/do_unwatch's
  get_strings != 2, do_write's get_strings < 1, do_set_perms'
  xs_count_strings < 2, send_directory_part's xs_count_strings != 2 -- all
  EINVAL.  A domain's xenstore request is that payload: each argument a
  nul-terminated string (xs_talkv), XS_WRITE's data without one.
- xen/common/kernel.c do_ni_hypercall: an operation Xen does not have is
  -ENOSYS.
- xen/common/event_channel.c: a field out of range is -EINVAL (evtchn_send,
  evtchn_close: !port_is_valid).  The domain wire carries a hypercall's
  struct one field per argument, so a missing or extra field, a field that
  is not a number, or a page descriptor too many or too few, is such a field:
  EINVAL.
"""

from __future__ import annotations

import os

import pytest

from pyxl.domain.xen import XenError, XenInterface
from pyxl.hypervisor import services, wire
from pyxl.hypervisor.services import Hypervisor
from pyxl.hypervisor.xs_wire import XsType


@pytest.fixture(scope="module")
def hv():
    h = Hypervisor()
    for d in (1, 2):
        h.domain_created(d, name=f"dom{d}")
    yield h
    h.close()


@pytest.fixture
def x1(hv):
    x = XenInterface(hv.connect_domain(1))
    yield x
    x.close()


def fails(x: XenInterface, op: int, args=(), tx: int = 0, fds=()) -> str:
    with pytest.raises(XenError) as ei:
        x._call(op, args, tx, fds)
    return ei.value.name


# -- hypercalls ----------------------------------------------------------------
# op: the struct's fields as pyxl.domain.xen sends them ("u" a number, "b"
# bytes) and how many page descriptors go with it
HYPERCALLS = {
    wire.HELLO: ("u", 1),
    wire.EVTCHN_ALLOC_UNBOUND: ("uu", 0),
    wire.EVTCHN_BIND_INTERDOMAIN: ("uu", 0),
    wire.EVTCHN_SEND: ("u", 0),
    wire.EVTCHN_CLOSE: ("u", 0),
    wire.EVTCHN_STATUS: ("uu", 0),
    wire.GNT_GRANT: ("uu", 1),
    wire.GNT_END_ACCESS: ("u", 0),
    wire.GNT_MAP: ("uuu", 0),
    wire.GNT_UNMAP: ("uu", 0),
    wire.CONSOLE_KICK: ("b", 0),
    wire.MMIO_READ: ("uuu", 0),
    wire.MMIO_WRITE: ("uub", 0),
    wire.MEMORY_RESERVATION: ("u", 0),
}
NOT_NUMBERS = [b"", b"x", b"-1", b" 1", b"1 ", b"+1", b"1_0", b"0x10", b"\xd9\xa1",
               b"9" * 21]


def test_every_row_of_the_table_is_covered_here():
    """A new row needs its line in HYPERCALLS (or is a xenstored row)."""
    hypercalls = {op for op in services.OPS if op >= 0x100}
    assert hypercalls == set(HYPERCALLS)
    assert all(op in XsType.__members__.values() for op in services.OPS if op < 0x100)


@pytest.fixture
def page():
    fd = os.memfd_create("page")
    os.ftruncate(fd, 4096)
    yield fd
    os.close(fd)


@pytest.mark.parametrize("op", HYPERCALLS, ids=lambda op: op.name)
def test_a_hypercall_of_the_wrong_shape_is_einval(x1, op, page):
    kinds, nfds = HYPERCALLS[op]
    fds = [page] * nfds
    shaped = [b"1"] * len(kinds)
    assert fails(x1, op, shaped[:-1], fds=fds) == "EINVAL"              # a field missing
    assert fails(x1, op, shaped + [b"1"], fds=fds) == "EINVAL"          # one too many
    assert fails(x1, op, shaped, fds=fds + [page]) == "EINVAL"          # a page too many
    if nfds:
        assert fails(x1, op, shaped, fds=fds[:-1]) == "EINVAL"          # a page too few
    for i, kind in enumerate(kinds):
        if kind == "u":
            for junk in NOT_NUMBERS:
                args = list(shaped)
                args[i] = junk
                assert fails(x1, op, args, fds=fds) == "EINVAL", (i, junk)
    assert x1.read("name") == b"dom1"           # the connection lives on


def test_a_hypercall_ignores_the_transaction_id(hv, x1):
    port = x1.evtchn_alloc_unbound(2)
    assert x1._call(wire.EVTCHN_STATUS, [0x7FF0, port], tx=12345) == [b"unbound", b"2", b""]
    x1._call(wire.EVTCHN_CLOSE, [port], tx=12345)


@pytest.mark.parametrize("op", [0x7777, 0x1FF, 0x205, 0x280, 0x480, 0xFFFF,
                                20,                 # XS_RESTRICT, removed
                                XsType.WATCH_EVENT, XsType.ERROR,   # no handler
                                23])                # XS_TYPE_COUNT
def test_an_unknown_operation_is_enosys(x1, op):
    assert fails(x1, op, [b"1", b"2", b"3"]) == "ENOSYS"
    assert fails(x1, op, [b"1"], tx=999) == "ENOSYS"       # before transaction_lookup


# -- xenstore: xenstored's rows ---------------------------------------------------
PRIVILEGED = [XsType.CONTROL, XsType.INTRODUCE, XsType.RELEASE, XsType.IS_DOMAIN_INTRODUCED,
              XsType.RESUME, XsType.SET_TARGET]


@pytest.mark.parametrize("kind", PRIVILEGED, ids=lambda k: k.name)
def test_a_privileged_xenstore_op_is_eacces_for_a_domain(x1, kind):
    assert fails(x1, kind, [b"1", b"2", b"3"]) == "EACCES"
    assert fails(x1, kind, []) == "EACCES"                  # before the payload's check
    assert fails(x1, kind, [b"1"], tx=999) == "EACCES"      # before transaction_lookup


def test_dom0s_connection_is_privileged(hv):
    x0 = XenInterface(hv.connect_domain(0))
    assert x0._call(XsType.IS_DOMAIN_INTRODUCED, [b"1"]) == [b"T"]
    assert x0._call(XsType.IS_DOMAIN_INTRODUCED, [b"77"]) == [b"F"]
    assert x0._call(XsType.CONTROL, [b"check"]) == [b"OK"]
    x0.close()


ONEARG = [XsType.DIRECTORY, XsType.READ, XsType.GET_PERMS, XsType.TRANSACTION_END,
          XsType.GET_DOMAIN_PATH, XsType.MKDIR, XsType.RM]
EINVAL_PAYLOADS = (
    [(kind, []) for kind in ONEARG]
    + [(kind, [b"data", b"x"]) for kind in ONEARG]
    + [(kind, [b"da\0ta"]) for kind in ONEARG]               # a nul inside: two strings
    + [(XsType.WATCH, [b"data"]), (XsType.WATCH, [b"data", b"t", b"u"]),
       (XsType.UNWATCH, [b"data"]), (XsType.UNWATCH, [b"data", b"t", b"u"]),
       (XsType.WRITE, []), (XsType.WRITE, [b"data/x"]),
       (XsType.SET_PERMS, []), (XsType.SET_PERMS, [b"data"]),
       (XsType.DIRECTORY_PART, [b"data"]), (XsType.DIRECTORY_PART, [b"data", b"0", b"1"])])


@pytest.mark.parametrize("kind,args", EINVAL_PAYLOADS,
                         ids=[f"{k.name}-{len(a)}" for k, a in EINVAL_PAYLOADS])
def test_a_xenstore_payload_of_the_wrong_shape_is_einval(x1, kind, args):
    assert fails(x1, kind, args) == "EINVAL"


WELL_SHAPED = [
    (XsType.DIRECTORY, [b"data"]), (XsType.READ, [b"name"]), (XsType.GET_PERMS, [b"data"]),
    (XsType.TRANSACTION_END, [b"T"]), (XsType.GET_DOMAIN_PATH, [b"1"]),
    (XsType.WRITE, [b"data/x", b"1"]), (XsType.MKDIR, [b"data/y"]), (XsType.RM, [b"data/y"]),
    (XsType.SET_PERMS, [b"data/x", b"n1"]), (XsType.DIRECTORY_PART, [b"data", b"0"]),
    (XsType.TRANSACTION_START, []), (XsType.RESET_WATCHES, [])]


@pytest.mark.parametrize("kind,args", WELL_SHAPED, ids=[k.name for k, _ in WELL_SHAPED])
def test_an_unknown_transaction_is_enoent(x1, kind, args):
    assert fails(x1, kind, args, tx=999) == "ENOENT"


def test_watches_ignore_the_transaction_id(x1):
    assert x1._call(XsType.WATCH, [b"data", b"notid"], tx=999) == []
    assert x1.read_watch(2, "notid") == ("data", "notid")
    assert x1._call(XsType.UNWATCH, [b"data", b"notid"], tx=999) == []


def test_xenstored_rows_answer_a_domain(hv, x1):
    """Replies as the domain side reads them: READ's value whole (nuls and
    all), "OK" as no arguments, lists as their strings; the rows a domain
    never had before come with xenstored's table."""
    assert x1._call(XsType.WRITE, [b"data/v", b"a\0b"]) == []
    assert x1._call(XsType.READ, [b"data/v"]) == [b"a\0b"]
    assert x1._call(XsType.WRITE, [b"data/w", b"OK\0"]) == []
    assert x1._call(XsType.READ, [b"data/w"]) == [b"OK\0"]
    assert x1._call(XsType.GET_DOMAIN_PATH, [b"7"]) == [b"/local/domain/7"]
    gen, *children = x1._call(XsType.DIRECTORY_PART, [b"data", b"0"])
    assert int(gen) >= 0 and {b"v", b"w"} <= set(children) and children[-1] == b""
    assert x1._call(XsType.RESET_WATCHES, []) == []
    tx = int(x1._call(XsType.TRANSACTION_START)[0])
    assert fails(x1, XsType.TRANSACTION_START, [], tx=tx) == "EBUSY"    # no nesting
    assert fails(x1, XsType.TRANSACTION_END, [b"X"], tx=tx) == "EINVAL"
    x1.transaction_end(tx, False)
    # a special path longer than XENSTORE_REL_PATH_MAX: do_watch's own check
    assert fails(x1, XsType.WATCH, [b"@" + b"a" * 2048, b"t"]) == "EINVAL"


@pytest.mark.parametrize("kind,args", WELL_SHAPED, ids=[k.name for k, _ in WELL_SHAPED])
def test_a_xenstore_request_takes_no_page(x1, kind, args, page):
    """xs_wire has no descriptors: one riding along is a malformed request."""
    assert fails(x1, kind, args, fds=[page]) == "EINVAL"


def test_what_xenstored_does_not_check_a_domain_may_send(x1):
    """do_transaction_start and do_reset_watches read no payload: extra
    strings are no error there."""
    tx = int(x1._call(XsType.TRANSACTION_START, [b"junk", b"more"])[0])
    x1.transaction_end(tx, False)
    assert x1._call(XsType.RESET_WATCHES, [b"junk"]) == []
