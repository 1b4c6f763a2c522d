"""The xenstored socket, message by message, against the expectations of
Xen 4.17's tools/xenstore/xenstored_core.c (process_message, wire_funcs,
send_reply, send_error, handle_input), xenstored_watch.c,
xenstored_transaction.c and xenstored_domain.c.  (Xen's own xenstored
cannot run here: without a hypervisor it crashes on the first request.)
In-process: a Hypervisor and its socket server in a private directory."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from pyxl.hypervisor import xs_wire
from pyxl.hypervisor.services import Hypervisor
from pyxl.hypervisor.xenstored import XenstoredServer, process_message
from pyxl.hypervisor.xs_wire import XsType
from pyxl.toolstack.xsclient import XsClient


class Raw:
    """A client speaking the bare wire format."""

    def __init__(self, path: str):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)

    def send(self, kind, payload: bytes, req_id=7, tx_id=0) -> None:
        self.s.sendall(xs_wire.HEADER.pack(int(kind), req_id, tx_id, len(payload)) + payload)

    def recv(self):
        head = self._exact(16)
        if head is None:
            return None
        kind, req_id, tx_id, n = xs_wire.HEADER.unpack(head)
        return kind, req_id, tx_id, self._exact(n) if n else b""

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            d = self.s.recv(n - len(buf))
            if not d:
                return None
            buf += d
        return buf

    def ask(self, kind, payload: bytes, tx_id=0):
        self.send(kind, payload, tx_id=tx_id)
        return self.recv()

    def close(self):
        self.s.close()


@pytest.fixture
def server():
    base = tempfile.mkdtemp(prefix="pyxl-xsd-")
    os.chmod(base, 0o755)            # only the server's own directory keeps others out
    hv = Hypervisor()
    hv.domain_created(1, name="vm")
    logs = []
    srv = XenstoredServer(hv, os.path.join(base, "xenstored"), logs.append)
    srv.start()
    srv.logs = logs
    clients = []

    def connect():
        c = Raw(srv.path)
        clients.append(c)
        return c
    srv.connect = connect
    yield srv
    for c in clients:
        c.close()
    srv.stop()
    hv.close()
    shutil.rmtree(base)


def test_header_echo_and_replies(server):
    c = server.connect()
    c.send(XsType.WRITE, b"/t/a\0hello", req_id=42)
    assert c.recv() == (XsType.WRITE, 42, 0, b"OK\0")                # send_ack
    assert c.ask(XsType.READ, b"/t/a\0") == (XsType.READ, 7, 0, b"hello")
    assert c.ask(XsType.DIRECTORY, b"/t\0")[3] == b"a\0"
    assert c.ask(XsType.GET_PERMS, b"/t/a\0")[3] == b"n0\0"
    assert c.ask(XsType.SET_PERMS, b"/t/a\0r0\0b1\0")[3] == b"OK\0"
    assert c.ask(XsType.GET_PERMS, b"/t/a\0")[3] == b"r0\0b1\0"
    assert c.ask(XsType.MKDIR, b"/t/d\0")[3] == b"OK\0"
    assert c.ask(XsType.RM, b"/t/d\0")[3] == b"OK\0"
    assert c.ask(XsType.GET_DOMAIN_PATH, b"5\0")[3] == b"/local/domain/5\0"
    assert c.ask(XsType.READ, b"name\0")[3] == b"Domain-0"           # relative: dom0's home


@pytest.mark.parametrize("kind,payload,err", [
    (XsType.READ, b"/nope\0", b"ENOENT\0"),
    (XsType.READ, b"/bad path\0", b"EINVAL\0"),               # is_valid_nodename
    (XsType.READ, b"/t\0/u\0", b"EINVAL\0"),                  # onearg: exactly one nul
    (XsType.READ, b"/t", b"EINVAL\0"),                        # onearg: no nul
    (XsType.READ, b"", b"EINVAL\0"),
    (XsType.WRITE, b"/x", b"EINVAL\0"),                       # get_strings < 1
    (XsType.WATCH, b"/x\0", b"EINVAL\0"),                     # get_strings != 2
    (XsType.WATCH, b"/x\0t\0u\0", b"EINVAL\0"),
    (XsType.SET_PERMS, b"/x\0", b"EINVAL\0"),                 # fewer than 2 strings
    (XsType.SET_PERMS, b"/\0q0\0", b"EINVAL\0"),              # xs_strings_to_perms
    (XsType.DIRECTORY_PART, b"/\0", b"EINVAL\0"),
    (XsType.WATCH_EVENT, b"/x\0t\0", b"ENOSYS\0"),            # no function in wire_funcs
    (XsType.ERROR, b"EINVAL\0", b"ENOSYS\0"),
    (20, b"", b"ENOSYS\0"),                                   # XS_RESTRICT, removed
    (xs_wire.XS_TYPE_COUNT, b"", b"ENOSYS\0"),
    (xs_wire.XS_INVALID, b"", b"ENOSYS\0"),
    (XsType.RM, b"/nope/deeper\0", b"ENOENT\0"),
    (XsType.RM, b"/\0", b"EINVAL\0"),
    (XsType.UNWATCH, b"/x\0t\0", b"ENOENT\0"),
    (XsType.TRANSACTION_END, b"T\0", b"ENOENT\0"),            # no transaction
    (XsType.TRANSACTION_END, b"X\0", b"EINVAL\0"),
    (XsType.CONTROL, b"nope\0", b"EINVAL\0"),
    (XsType.CONTROL, b"", b"EINVAL\0"),
    (XsType.INTRODUCE, b"1\0" b"0\0" b"0\0", b"EINVAL\0"),     # port 0
    (XsType.INTRODUCE, b"1\0" b"0\0", b"EINVAL\0"),
    (XsType.RELEASE, b"0\0", b"EINVAL\0"),                    # onearg_domain: domid 0
    (XsType.RELEASE, b"99\0", b"ENOENT\0"),                   # find_connected_domain
    (XsType.RESUME, b"99\0", b"ENOENT\0"),
    (XsType.RESUME, b"1\0", b"EINVAL\0"),                     # no connection: not connected
    (XsType.SET_TARGET, b"99\0" b"1\0", b"ENOENT\0"),
])
def test_errors_are_xsd_error_strings(server, kind, payload, err):
    c = server.connect()
    assert c.ask(kind, payload) == (XsType.ERROR, 7, 0, err)
    assert c.ask(XsType.GET_DOMAIN_PATH, b"0\0")[3] == b"/local/domain/0\0"   # still served


def test_domain_ops(server):
    c = server.connect()
    for domid, answer in ((b"0", b"T"), (b"1", b"T"), (b"99", b"F"), (b"32752", b"T")):  # DOMID_SELF
        assert c.ask(XsType.IS_DOMAIN_INTRODUCED, domid + b"\0")[3] == answer + b"\0"
    assert c.ask(XsType.INTRODUCE, b"1\0" b"1234\0" b"5\0")[3] == b"OK\0"
    assert c.ask(XsType.CONTROL, b"check\0")[3] == b"OK\0"
    assert c.ask(XsType.CONTROL, b"print\0hello from a test\0")[3] == b"OK\0"
    assert "xenstored: hello from a test" in server.logs
    assert c.ask(XsType.CONTROL, b"help\0")[3] == b"check\t\nprint\t<string>\nhelp\t\n\0"


def test_set_target_gives_the_target_rights(server):
    """perm_for_conn: a domain with a target has the target's rights."""
    server.hv.domain_created(2, name="dm")
    xs = server.hv.xs()
    xs.write("/local/domain/1/data/secret", b"s")          # owned by 1 (n1)
    dm = server.store.connect(2)
    with pytest.raises(OSError) as e:
        dm.read("/local/domain/1/data/secret")
    assert e.value.errno == errno.EACCES
    req = server.connect()
    # find_connected_domain wants connected domains: give both a connection
    a1, b1 = server.hv.connect_domain(1), server.hv.connect_domain(2)
    try:
        assert req.ask(XsType.SET_TARGET, b"2\0" b"1\0")[3] == b"OK\0"
        assert dm.read("/local/domain/1/data/secret") == b"s"
    finally:
        a1.close()
        b1.close()


def test_payload_over_the_limit_ends_the_connection(server):
    """handle_input: a header announcing more than XENSTORE_PAYLOAD_MAX bytes
    is a bad client; the connection is dropped."""
    c = server.connect()
    c.s.sendall(xs_wire.HEADER.pack(XsType.READ, 1, 0, xs_wire.XENSTORE_PAYLOAD_MAX + 1))
    assert c.recv() is None
    c2 = server.connect()
    c2.send(XsType.WRITE, b"/t/max\0" + b"x" * (xs_wire.XENSTORE_PAYLOAD_MAX - 7))
    assert c2.recv()[3] == b"OK\0"                              # exactly the limit is fine


def test_long_directory_is_e2big_then_read_in_parts(server):
    """send_reply: a reply over the payload limit is E2BIG; libxenstore then
    reads the list with XS_DIRECTORY_PART (send_directory_part)."""
    xs = server.hv.xs()
    names = ["child-%04d-%s" % (i, "x" * 40) for i in range(200)]
    for n in names:
        xs.write("/big/" + n, b"")
    c = server.connect()
    assert c.ask(XsType.DIRECTORY, b"/big\0")[3] == b"E2BIG\0"
    first = c.ask(XsType.DIRECTORY_PART, b"/big\0" b"0\0")[3]
    gen, _, part = first.partition(b"\0")
    assert gen.isdigit() and len(first) <= xs_wire.XENSTORE_PAYLOAD_MAX
    assert not part.endswith(b"\0\0")                          # more to come
    end = c.ask(XsType.DIRECTORY_PART, b"/big\0" b"999999\0")[3]
    assert end == gen + b"\0\0"                                 # offset behind the list
    cl = XsClient.open(server.path)
    try:
        assert [n.decode() for n in cl.directory("/big")] == names
    finally:
        cl.close()


def test_watch_ack_comes_before_its_first_event(server):
    """do_watch sends its ack, then fires once up front; a write by another
    connection fires it again (path and token, nul-terminated)."""
    c, w = server.connect(), server.connect()
    c.send(XsType.WATCH, b"/w\0tok\0", req_id=3)
    assert c.recv() == (XsType.WATCH, 3, 0, b"OK\0")
    assert c.recv() == (XsType.WATCH_EVENT, 0, 0, b"/w\0tok\0")
    assert w.ask(XsType.WRITE, b"/w/x\0" b"1")[3] == b"OK\0"
    assert c.recv() == (XsType.WATCH_EVENT, 0, 0, b"/w/x\0tok\0")
    assert c.ask(XsType.WATCH, b"/w\0tok\0")[3] == b"EEXIST\0"
    c.send(XsType.WATCH, b"rel\0t2\0")                         # relative: reported relative
    assert c.recv()[3] == b"OK\0"
    assert c.recv()[3] == b"rel\0t2\0"
    assert c.ask(XsType.RESET_WATCHES, b"")[3] == b"OK\0"
    assert w.ask(XsType.WRITE, b"/w/y\0" b"1")[3] == b"OK\0"
    assert c.ask(XsType.GET_DOMAIN_PATH, b"0\0")[0] == XsType.GET_DOMAIN_PATH   # no event came first


def test_transactions(server):
    """EAGAIN when what the transaction read changed; EBUSY for a nested
    start; ENOENT for an unknown transaction id (transaction_lookup)."""
    a, b = server.connect(), server.connect()
    assert a.ask(XsType.WRITE, b"/tx/n\0" b"0")[3] == b"OK\0"
    kind, _, _, body = a.ask(XsType.TRANSACTION_START, b"\0")
    assert kind == XsType.TRANSACTION_START and body.endswith(b"\0")
    tx = int(body[:-1])
    assert a.ask(XsType.READ, b"/tx/n\0", tx_id=tx)[3] == b"0"
    assert a.ask(XsType.WRITE, b"/tx/n\0" b"1", tx_id=tx)[3] == b"OK\0"
    assert a.ask(XsType.TRANSACTION_START, b"\0", tx_id=tx)[3] == b"EBUSY\0"
    assert b.ask(XsType.READ, b"/tx/n\0", tx_id=tx)[3] == b"ENOENT\0"   # not b's transaction
    assert b.ask(XsType.WRITE, b"/tx/n\0" b"2")[3] == b"OK\0"
    assert a.ask(XsType.TRANSACTION_END, b"T\0", tx_id=tx)[3] == b"EAGAIN\0"
    assert a.ask(XsType.READ, b"/tx/n\0")[3] == b"2"
    assert a.ask(XsType.TRANSACTION_END, b"T\0", tx_id=tx)[3] == b"ENOENT\0"   # it is gone
    # watches ignore the transaction id (XS_FLAG_NOTID)
    a.send(XsType.WATCH, b"/tx\0t\0", tx_id=12345)
    assert a.recv()[3] == b"OK\0"


def test_privileged_ops_refuse_unprivileged_connections(server):
    """process_message: XS_FLAG_PRIV rows answer EACCES to an unprivileged
    connection (the socket's are all dom0; a domain's would not be)."""
    from types import SimpleNamespace

    Conn = SimpleNamespace(xs=server.store.connect(1), server=server)
    for kind in (XsType.CONTROL, XsType.INTRODUCE, XsType.RELEASE, XsType.IS_DOMAIN_INTRODUCED,
                 XsType.RESUME, XsType.SET_TARGET):
        assert process_message(Conn, kind, 0, b"1\0" b"2\0" b"3\0") == (XsType.ERROR, b"EACCES\0")
    assert process_message(Conn, XsType.GET_DOMAIN_PATH, 0, b"1\0") == \
        (XsType.GET_DOMAIN_PATH, b"/local/domain/1\0")


def _as_nobody(code: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                           sys.executable, "-c", code], capture_output=True, text=True, timeout=30)


CONNECT = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1] if len(sys.argv) > 1 else %r)
except OSError as e:
    print("connect", e.errno); sys.exit(0)
try:
    s.sendall(struct.pack("=IIII", 10, 1, 0, 2) + b"0\\0")
    print("reply", repr(s.recv(100)))
except (BrokenPipeError, ConnectionResetError):
    print("reply b''")
"""


def test_non_root_cannot_connect(server):
    """The directory is 0700 and the socket 0600: another uid gets EACCES."""
    assert os.stat(server.directory).st_mode & 0o777 == 0o700
    assert os.stat(server.path).st_mode & 0o777 == 0o600
    p = _as_nobody(CONNECT % server.path)
    assert p.stdout.strip() == "connect %d" % errno.EACCES, p.stderr


def test_other_uids_are_refused_even_through_open_permissions(server):
    """SO_PEERCRED: should the permissions be opened up, a connection from
    another uid is still closed unanswered."""
    os.chmod(server.directory, 0o755)
    os.chmod(server.path, 0o666)
    p = _as_nobody(CONNECT % server.path)
    assert p.stdout.strip() == "reply b''", p.stderr
    c = server.connect()                                        # root still served
    assert c.ask(XsType.GET_DOMAIN_PATH, b"0\0")[3] == b"/local/domain/0\0"


def test_symlinked_directory_is_refused(tmp_path):
    """The socket's directory must be a real directory of the daemon's uid."""
    hv = Hypervisor()
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "xenstored").symlink_to(target)
    srv = XenstoredServer(hv, str(tmp_path / "xenstored"))
    with pytest.raises(OSError):
        srv.start()
    assert not os.listdir(target)


def test_a_long_host_root_still_gets_its_socket(tmp_path):
    """The socket is bound and reached through its directory's descriptor:
    a directory path past AF_UNIX's 108 bytes still works."""
    hv = Hypervisor()
    d = tmp_path / ("d" * 60) / ("e" * 60) / "xenstored"
    d.parent.mkdir(parents=True)
    srv = XenstoredServer(hv, str(d))
    srv.start()
    try:
        assert len(srv.path) > 108
        c = XsClient.open(srv.path)
        try:
            assert c.read("/local/domain/0/name") == b"Domain-0"
        finally:
            c.close()
    finally:
        srv.stop()
        hv.close()
    assert not os.path.exists(srv.path)


def test_path_length_binds_dom0_too(server):
    """is_valid_nodename: at most XENSTORE_REL_PATH_MAX characters below
    /local/domain/<id>/, or in the whole path elsewhere -- for every
    connection (quota_max_path_len has no privilege exception)."""
    c = server.connect()
    rel = xs_wire.XENSTORE_REL_PATH_MAX
    assert c.ask(XsType.WRITE, b"/t/" + b"x" * (rel - 3) + b"\0v")[3] == b"OK\0"
    assert c.ask(XsType.WRITE, b"/t/" + b"x" * (rel - 2) + b"\0v")[3] == b"EINVAL\0"
    home = b"/local/domain/1/"
    assert c.ask(XsType.WRITE, home + b"x" * rel + b"\0v")[3] == b"OK\0"
    assert c.ask(XsType.WRITE, home + b"x" * (rel + 1) + b"\0v")[3] == b"EINVAL\0"
