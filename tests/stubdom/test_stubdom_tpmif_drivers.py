"""mini-os tpmback/tpmfront between real domain processes on an in-test
Hypervisor: the xenstore handshake, requests with locality, re-open after a
clean close, the uuid check, and freeing an interface whose frontend left."""

from __future__ import annotations

import json

import pytest

from hv_harness import HERE, Host

BE, FE, FE2 = 1, 2, 3
UUID = "ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839"
UUID2 = "1b9e4a80-0c1d-4e53-8f00-2f4c5a6b7c8d"
SCRIPT = str(HERE / "driver_domain.py")


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    yield h
    h.close()


def run(p, timeout=30):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err.decode()
    return json.loads(out)


def test_connect_serve_reopen_and_shutdown(host):
    host.create(BE, "vtpm")
    host.create(FE, "guest")
    back = host.spawn(BE, [SCRIPT, "backend"])
    be_path = f"/local/domain/{BE}/backend/vtpm/{FE}/0"
    fe_path = f"/local/domain/{FE}/device/vtpm/0"
    host.wait_console(BE, "Init TPM BACK")
    host.add_vtpm(FE, BE, UUID)
    host.wait_value(be_path + "/state", "2")          # what libxl waits for
    assert host.read(be_path + "/feature-protocol-v2") == "1"
    front = host.spawn(FE, [SCRIPT, "frontend", "3", "reopen", "quit"])
    f = run(front)
    b = run(back)
    assert f == {"results": [True] * 7}
    assert b["first"] == [FE, 0]
    assert b["served"] == [[FE, 0, UUID, i % 5, 2 * (1 + 300 * i)] for i in range(3)] * 2
    assert b["events"] == [["open", FE, 0], ["close", FE, 0]]   # freed at shutdown

    fcon, bcon = host.final_console(FE), host.final_console(BE)
    assert fcon.count("============= Init TPM Front ================\r\n") == 2
    assert ("Tpmfront:Info Waiting for backend connection..\r\n"
            "Tpmfront:Info Backend Connected\r\n"
            "Tpmfront:Info Initialization Completed successfully\r\n") in fcon
    assert ("Tpmfront:Info Waiting for backend to close..\r\n"
            "Tpmfront:Info Backend Closed (waiting for reconnect)\r\n") in fcon
    assert bcon.startswith("============= Init TPM BACK ================\r\n")
    assert bcon.count(f"Tpmback:Info Frontend {FE}/0 connected\r\n") == 2
    # a clean close (round 1) and the free at backend shutdown (round 2 still open)
    assert bcon.endswith(f"Tpmback:Info Frontend {FE}/0 connected\r\n"
                         "Tpmback:Info Shutting down tpm backend\r\n"
                         f"Tpmback:Info Frontend {FE}/0 disconnected\r\n")
    assert bcon.count(f"Tpmback:Info Frontend {FE}/0 disconnected\r\n") == 2
    # mini-os front: feature flag, ring-ref/event-channel gone after close, back to 1
    assert host.read(fe_path + "/feature-protocol-v2") == "1"
    assert host.read(fe_path + "/ring-ref") is None
    assert host.read(fe_path + "/state") == "1"
    assert host.read(be_path + "/ready") is None        # backend dir removed on free
    assert host.hv.grants.refs(FE) == []


def test_bad_uuid_refused_and_good_sibling_served(host):
    host.create(BE, "vtpmmgr")
    host.create(FE, "a")
    host.create(FE2, "b")
    host.add_vtpm(FE, BE, "not-a-uuid")
    host.add_vtpm(FE2, BE, UUID2)                       # present before the backend starts
    back = host.spawn(BE, [SCRIPT, "backend"])
    host.wait_value(f"/local/domain/{BE}/backend/vtpm/{FE2}/0/state", "2")
    assert host.read(f"/local/domain/{BE}/backend/vtpm/{FE}/0/state") == "1"
    f = run(host.spawn(FE2, [SCRIPT, "frontend", "2", "quit"]))
    b = run(back)
    assert f == {"results": [True, True, True]}
    assert [s[:3] for s in b["served"]] == [[FE2, 0, UUID2]] * 2
    con = host.final_console(BE)
    assert f"Tpmback:Error Error reading backend/vtpm/{FE}/0/uuid\r\n" in con
    assert f"Tpmback:Error Failed to create new tpm instance {FE}/0\r\n" in con


def test_frontend_domain_gone_frees_interface(host):
    host.create(BE, "vtpm")
    host.create(FE, "guest")
    back = host.spawn(BE, [SCRIPT, "backend"])
    host.add_vtpm(FE, BE, UUID)
    be_path = f"/local/domain/{BE}/backend/vtpm/{FE}/0"
    host.wait_value(be_path + "/state", "2")
    # a frontend that connects and then its domain dies without closing
    front = host.spawn(FE, [SCRIPT, "frontend", "1"])
    run(front)
    host.wait_value(be_path + "/state", "2")   # its clean close: back to InitWait
    host.xs.rm(f"/local/domain/{FE}/device/vtpm/0")
    host.wait_console(BE, f"Tpmback:Info Frontend {FE}/0 disconnected\r\n"
                          f"Tpmback:Info Frontend {FE}/0 disconnected\r\n")
    assert host.read(be_path + "/state") is None
    back.kill()
    back.wait(5)
