"""Two real domain processes do a tpmif v2 frontend/backend handshake through
an in-test Hypervisor: xenstore states, a grant, an event channel, and
requests/responses through the shared page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pyxl.domain.drivers import xenbus
from pyxl.domain.drivers.tpmif import TPMIF_STATE_FINISH, TPMIF_STATE_IDLE
from pyxl.hypervisor.services import Hypervisor
from pyxl.hypervisor.xenstore import QueueSink

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BE, FE = 1, 2
UUID = "2a8a7c3e-1d4b-4f7e-9c55-6b0f4c1e9a10"


def spawn(hv: Hypervisor, domid: int, role: str) -> subprocess.Popen:
    sock = hv.connect_domain(domid)
    env = dict(os.environ, PYXL_XEN_FD=str(sock.fileno()),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    try:
        return subprocess.Popen([sys.executable, str(HERE / "hv_split_driver_domain.py"), role],
                                pass_fds=[sock.fileno()], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    finally:
        sock.close()


def add_vtpm(xs, fe: int, be: int, devid: int = 0) -> None:
    """What libxl__device_vtpm_add writes, in one transaction."""
    fe_path = f"/local/domain/{fe}/device/vtpm/{devid}"
    be_path = f"/local/domain/{be}/backend/vtpm/{fe}/{devid}"
    tx = xs.transaction_start()
    for path, owner, reader, keys in (
            (fe_path, fe, be, {"backend": be_path, "backend-id": be, "state": 1,
                               "handle": devid}),
            (be_path, be, fe, {"frontend": fe_path, "frontend-id": fe, "online": 1,
                               "state": 1, "handle": devid, "uuid": UUID,
                               "resume": "False"})):
        xs.mkdir(path, tx)
        xs.set_perms(path, [f"n{owner}", f"r{reader}"], tx)
        for k, v in keys.items():
            xs.write(f"{path}/{k}", str(v), tx)
    xs.transaction_end(tx, True)


def test_frontend_backend_handshake_and_tpmif_round_trips(tmp_path):
    hv = Hypervisor()
    try:
        hv.domain_created(BE, name="vtpm")
        hv.domain_created(FE, name="guest", console_log=str(tmp_path / "guest.log"))
        sink = QueueSink()
        xs = hv.xs(sink)
        be_path = f"/local/domain/{BE}/backend/vtpm/{FE}/0"
        fe_path = f"/local/domain/{FE}/device/vtpm/0"
        xs.watch(f"{be_path}/state", "be-state")
        backend = spawn(hv, BE, "backend")
        add_vtpm(xs, FE, BE)
        # libxl waits for the backend to reach InitWait before returning
        while True:
            assert sink.wait(10) is not None, "backend never reached InitWait"
            if xs.exists(f"{be_path}/state") and xs.read(f"{be_path}/state") == b"2":
                break
        frontend = spawn(hv, FE, "frontend")
        fout, ferr = frontend.communicate(timeout=30)
        bout, berr = backend.communicate(timeout=30)
        assert frontend.returncode == 0, ferr.decode()
        assert backend.returncode == 0, berr.decode()
        f, b = json.loads(fout), json.loads(bout)

        assert f["domid"] == FE and f["backend"] == BE
        assert [r["ok"] for r in f["results"]] == [True, True, True]
        assert all(r["state"] == TPMIF_STATE_FINISH for r in f["results"])
        assert f["results"][2]["length"] == 4 + 256 * 15
        assert f["busy_while_mapped"] is True
        assert f["cancel_state"] == TPMIF_STATE_IDLE
        assert b == {"role": "backend", "domid": BE, "frontend": [FE, 0], "uuid": UUID,
                     "served": 3, "cancels": 1}

        assert xs.read(f"{be_path}/state") == str(xenbus.XenbusStateClosed).encode()
        assert xs.read(f"{fe_path}/state") == str(xenbus.XenbusStateClosed).encode()
        assert xs.read(f"{be_path}/ready") == b"1"
        assert xs.read(f"{fe_path}/feature-protocol-v2") == b"1"
        assert hv.evtchn.ports(FE) == [] and hv.evtchn.ports(BE) == []
        assert hv.grants.refs(FE) == []
        assert (tmp_path / "guest.log").read_bytes() == b"frontend 2 done\n"
    finally:
        hv.close()
