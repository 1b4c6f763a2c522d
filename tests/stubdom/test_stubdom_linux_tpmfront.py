"""Linux xen-tpmfront semantics against the real vtpm-stubdom chain, and
its refusal of a backend without protocol v2."""

from __future__ import annotations

import hashlib
import json

from hv_harness import HERE, Host  # noqa: F401
from test_stubdom_e2e import GUEST, MGR, VTPM, host, start_manager, start_vtpm  # noqa: F401

SCRIPT = str(HERE / "linux_tpmfront_domain.py")


def test_sysfs_files_through_the_vtpm(host):  # noqa: F811
    start_manager(host)
    host.wait_console(MGR, "Waiting for commands from vTPM's:")
    vtpm = start_vtpm(host)
    host.wait_console(VTPM, "Waiting for frontend domain to connect..")
    host.create(GUEST, "domu")
    host.add_vtpm(GUEST, VTPM, "d6e0a5f4-3b2c-4d1e-8f90-123456789abc")
    p = host.spawn(GUEST, [SCRIPT])
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    r = json.loads(out)
    assert r["connected"] and r["state"] == "4"
    assert r["caps"] == "Manufacturer: 0x4554485a\nTCG version: 1.2\nFirmware version: 0.7\n"
    lines = r["pcrs"].splitlines(True)
    assert len(lines) == 24
    assert lines[0] == "PCR-00: " + "00 " * 20 + "\n"
    ext = hashlib.sha1(b"\xff" * 20 + hashlib.sha1(b"x").digest()).digest()
    assert lines[16] == "PCR-16: " + "".join("%02X " % b for b in ext) + "\n"
    assert lines[23] == "PCR-23: " + "FF " * 20 + "\n"
    pub = r["pubek"].splitlines()
    assert pub[:3] == ["Algorithm: 00 00 00 01", "Encscheme: 00 03", "Sigscheme: 00 01"]
    assert pub[3] == "Parameters: 00 00 08 00 00 00 00 02 00 00 00 00"
    assert pub[4:6] == ["Modulus length: 256", "Modulus:"] and len(pub) == 6 + 16
    vcon = host.wait_console(VTPM, f"Tpmback:Info Frontend {GUEST}/0 disconnected")
    assert f"Tpmback:Info Frontend {GUEST}/0 connected" in vcon
    assert vtpm.poll() is None            # a clean close: the vTPM waits for a re-open
    # the next kernel opens it again (pv-grub's measure-then-kexec pattern): same vTPM,
    # PCR 16 still holds the extend
    q = host.spawn(GUEST, [str(HERE / "tpm_client_domain.py"),
                           (b"\x00\xc1\x00\x00\x00\x0e\x00\x00\x00\x15" + bytes([0, 0, 0, 16])).hex()])
    out, err = q.communicate(timeout=60)
    assert q.returncode == 0, err.decode()
    assert bytes.fromhex(json.loads(out)[0])[10:30] == ext


def test_backend_without_protocol_v2_is_refused(host):  # noqa: F811
    be, fe = 5, 6
    host.create(be, "oldback")
    host.create(fe, "guest")
    host.add_vtpm(fe, be, "d6e0a5f4-3b2c-4d1e-8f90-123456789abc")
    p = host.spawn(fe, [SCRIPT])
    bpath = f"/local/domain/{be}/backend/vtpm/{fe}/0"
    host.wait_value(f"/local/domain/{fe}/device/vtpm/0/state", "3")   # Initialised
    host.xs.write(bpath + "/state", "4")                              # a v1-only backend
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()
    assert json.loads(out) == {"connected": False, "state": "5"}
    assert host.read(f"/local/domain/{fe}/error/device/vtpm/0/error") == \
        "22 vTPM protocol 2 required"
