"""The Xen vTPM guide's client stack against the TPM: real TrouSerS tcsd plus
tpm-tools, driven as a guest would, against `pyxl tpm-serve` (the Xen vTPM's
identity, ETHZ, answering like libtpms), against `pyxl tpm-serve --emulator
berlios` (behaving as the emulator inside vtpm-stubdom), against `pyxl
tpm-serve --vendor IBM` (the engine as a hardware-like TPM) -- and the same
sequence against swtpm (libtpms), which checks the harness itself.

One TPM and one tcsd per backend serve the whole module.  Each test first
brings them to the state it needs (`Run.unowned`, `Run.owned`, an NV area
defined or not, data sealed): in file order that costs nothing, and any
test also passes alone or in another order.  A test that leaves the TPM
cleared (libtpms then refuses ownership until physical presence) makes the
next one that needs it start a fresh TPM and tcsd.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from peers import need_peer
from tpm.fixtures import (PyxlServe, Swtpm, Tcsd, frame, free_port, getcap, rc_of,
                          transact)

NV_INDEX = "0x00011101"

# what tpm_version must print (tpm-tools' tpm_version.c; values column 24)
EXPECTED_VERSION = {
    # docs/man/xen-vtpm.7.pod, and the Berlios emulator inside vtpm-stubdom
    "pyxl": {"Chip Version": "1.2.0.7", "Spec Level": "2", "Errata Revision": "1",
             "TPM Vendor ID": "ETHZ", "TPM Version": "01010000",
             "Manufacturer Info": "4554485a"},
    # swtpm 0.7.1 / libtpms 0.9.2 (vendor ID "IBM\0"), and pyxl presenting
    # itself as that TPM (--vendor IBM: a simulated hardware TPM)
    "swtpm": {"Chip Version": "1.2.18.158", "Spec Level": "2", "Errata Revision": "3",
              "TPM Vendor ID": "IBM", "TPM Version": "01010000",
              "Manufacturer Info": "49424d00"},
}
EXPECTED_VERSION["pyxl-ibm"] = EXPECTED_VERSION["swtpm"]
EXPECTED_VERSION["pyxl-berlios"] = EXPECTED_VERSION["pyxl"]
# backend -> `pyxl tpm-serve` arguments
SERVE_ARGS = {"pyxl": (), "pyxl-ibm": ("--vendor", "IBM"),
              "pyxl-berlios": ("--emulator", "berlios")}

UNOWNED, OWNED, CLEARED = "unowned", "owned", "cleared"


class Run:
    """One backend's TPM and tcsd, and what the tests have done to them."""

    def __init__(self, backend, factory, pyxl_cmd):
        self.backend = backend
        self.factory = factory
        self.pyxl_cmd = pyxl_cmd
        self.tpm = self.tcsd = None
        self.generation = 0
        self.start()

    def start(self) -> None:
        """A fresh TPM (no owner) and a tcsd in front of it."""
        self.work = self.factory.mktemp("acceptance-%s-%d" % (self.backend, self.generation))
        self.generation += 1
        if self.backend == "swtpm":
            self.tpm = Swtpm(self.work / "swtpm").start()
        else:
            self.tpm = PyxlServe(self.pyxl_cmd, self.work / "state",
                                 *SERVE_ARGS[self.backend]).start()
        try:
            self.tcsd = Tcsd(self.work / "tcsd", "127.0.0.1", self.tpm.port).start()
        except Exception:
            self.tpm.stop()
            raise
        self.state = UNOWNED
        self.ek_modulus = None
        self.nv = {}            # NV index -> data written (b"" if only defined)
        self.sealed = self.seal_in = None

    def stop(self) -> None:
        self.tcsd.stop()
        self.tpm.stop()

    def tool(self, *argv, stdin="", timeout=60):
        return self.tcsd.tool(*argv, stdin=stdin, timeout=timeout)

    # -- the state a test needs ------------------------------------------------
    def unowned(self) -> None:
        """No owner, enabled and active, tcsd running."""
        if self.state != UNOWNED:
            self.stop()
            self.start()

    def endorsement_key(self) -> str:
        """The EK's modulus, read while the TPM has no owner (swtpm starts
        without an EK: tpm_createek first)."""
        if self.ek_modulus is None:
            self.unowned()
            r = self.tool("tpm_getpubek", "-z")
            if r.rc != 0 and "No EK" in r.err:
                assert self.backend == "swtpm", "pyxl's engine always has an EK: " + str(r)
                c = self.tool("tpm_createek")
                assert c.rc == 0, str(c)
                r = self.tool("tpm_getpubek", "-z")
            assert r.rc == 0 and "Public Endorsement Key" in r.out, str(r)
            assert re.search(r"Key Size:\s+2048 bits", r.out), r.out
            self.ek_modulus = ek_modulus(r.out)
        return self.ek_modulus

    def owned(self) -> None:
        """Owned with the well-known owner secret (-z), its EK known."""
        if self.state == OWNED:
            return
        self.unowned()           # a cleared TPM: a fresh one
        self.endorsement_key()
        r = self.tool("tpm_takeownership", "-y", "-z")
        assert r.rc == 0, str(r)
        self.state = OWNED

    def nv_defined(self, index: str, size: int = 32) -> None:
        self.owned()
        if index not in self.nv:
            r = self.tool("tpm_nvdefine", "-i", index, "-s", str(size), "-p",
                          "OWNERWRITE|OWNERREAD", "-y", "-z")
            assert r.rc == 0 and "Successfully created NVRAM area" in r.out, str(r)
            self.nv[index] = b""

    def nv_written(self, index: str) -> bytes:
        self.nv_defined(index)
        if not self.nv[index]:
            data = os.urandom(32)
            f = self.work / "nv.in"
            f.write_bytes(data)
            r = self.tool("tpm_nvwrite", "-i", index, "-z", "-f", str(f))
            assert r.rc == 0, str(r)
            self.nv[index] = data
        return self.nv[index]

    def nv_released(self, index: str) -> None:
        if index in self.nv:
            r = self.tool("tpm_nvrelease", "-i", index, "-y")
            assert r.rc == 0 and "Successfully released" in r.out, str(r)
            del self.nv[index]

    def sealed_data(self) -> tuple[Path, bytes]:
        """A blob tpm_sealdata made (SRK, no PCRs), and what it seals."""
        self.owned()
        if self.sealed is None:
            data = b"pyxl seal test\n" + os.urandom(48).hex().encode() + b"\n"
            src, dst = self.work / "seal.in", self.work / "sealed"
            src.write_bytes(data)
            r = self.tool("tpm_sealdata", "-z", "-i", str(src), "-o", str(dst))
            assert r.rc == 0, str(r)
            assert dst.read_text().startswith("-----BEGIN TSS-----")
            self.sealed, self.seal_in = dst, data
        return self.sealed, self.seal_in

    def clear(self) -> None:
        """TPM_OwnerClear through tcsd; what a test may do after it depends
        on the TPM, so the next test that needs an owner starts afresh."""
        self.owned()
        r = self.tool("tpm_clear", "-z")
        assert r.rc == 0 and "Cleared" in r.out, str(r)
        self.state = CLEARED
        self.nv.clear()
        self.sealed = self.seal_in = None


@pytest.fixture(scope="module", params=["swtpm", *SERVE_ARGS])
def run(request, tmp_path_factory, pyxl_cmd):
    backend = request.param
    need_peer("tcsd")
    need_peer("tpm-tools")
    if os.geteuid() != 0:
        pytest.skip("tcsd needs root (its config must be root:tss 0640)")
    if backend == "swtpm":
        need_peer("swtpm")
    r = Run(backend, tmp_path_factory, pyxl_cmd)
    yield r
    r.stop()


def version_fields(out: str) -> dict[str, str]:
    fields = {}
    for line in out.splitlines():
        m = re.match(r"\s*([A-Za-z0-9 ]+):\s*(.*?)\s*$", line)
        if m and m.group(2):
            fields[m.group(1)] = m.group(2)
    return fields


def ek_modulus(out: str) -> str:
    after = out.split("Public Key:", 1)
    return re.sub(r"\s+", "", after[1]) if len(after) == 2 else ""


def test_version(run):
    r = run.tool("tpm_version")
    assert r.rc == 0 and "TPM 1.2 Version Info:" in r.out, str(r)
    got = version_fields(r.out)
    want = EXPECTED_VERSION[run.backend]
    assert {k: got.get(k) for k in want} == want


def test_direct_client_while_tcsd_holds_a_connection(run):
    """tcsd keeps its last TPM connection open; pyxl serves another client
    meanwhile (swtpm would queue it behind tcsd's idle socket)."""
    if run.backend == "swtpm":
        pytest.skip("swtpm serves one connection at a time")
    resp = transact(run.tpm.addr, getcap(0x1A), timeout=5)
    assert rc_of(resp) == 0 and (b"IBM\0" if run.backend == "pyxl-ibm" else b"ETHZ") in resp


def test_selftest(run):
    r = run.tool("tpm_selftest")
    assert r.rc == 0, str(r)
    m = re.search(r"TPM Test Results: ([0-9a-f ]+)", r.out)
    assert m, r.out
    if run.backend == "pyxl-berlios":    # the emulator reports its last self test: "Success\0"
        assert m.group(1).split() == ["53756363", "65737300"]
    else:                                # libtpms its test state: "Shutdown 00000002\n"
        assert "".join(m.group(1).split()) == b"Shutdown 00000002\n".hex()


def test_endorsement_key(run):
    run.unowned()
    run.ek_modulus = None
    assert len(run.endorsement_key()) == 512


def test_takeownership(run):
    run.unowned()
    run.endorsement_key()        # swtpm starts without one
    r = run.tool("tpm_takeownership", "-y", "-z")
    assert r.rc == 0, str(r)
    run.state = OWNED


def test_status_enabled(run):
    run.owned()
    r = run.tool("tpm_setenable", "--status", "-z")
    assert r.rc == 0 and "Disabled status: false" in r.out, str(r)


def test_status_active(run):
    run.owned()
    r = run.tool("tpm_setactive", "--status", "-z")
    assert r.rc == 0, str(r)
    assert "Persistent Deactivated Status: false" in r.out, r.out
    assert "Volatile Deactivated Status: false" in r.out, r.out


# The owner-authorised status queries (OIAP + GetCapabilityOwner each), as
# tpm-tools prints them on a freshly owned swtpm (measured) -- what pyxl must
# print too, except where the Xen vTPM's start-up flags differ.
STATUS_QUERIES = {
    "tpm_setownable": "Ownable status: true\n",
    "tpm_setclearable": "Owner Clear Disabled: false\nForce Clear Disabled: false\n",
    "tpm_restrictpubek": "Public Endorsement Key readable by: owner\n",
    "tpm_restrictsrk": "Storage Root Key readable with: owner auth\n",
    "tpm_setpresence": "Physical Presence Status:\n\tCommand Enable: false\n\tHardware Enable: "
                       "false\n\tLifetime Lock: false\n\tPhysical Presence: false\n\tLock: false\n",
}
XEN_VTPM_STATUS = {   # the emulator starts with readSRKPub TRUE
    "tpm_restrictsrk": "Storage Root Key readable with: SRK auth\n",
}


@pytest.mark.parametrize("tool", sorted(STATUS_QUERIES))
def test_owner_status_queries(run, tool):
    run.owned()
    r = run.tool(tool, "--status", "-z")
    want = STATUS_QUERIES[tool]
    if run.backend == "pyxl-berlios":
        want = XEN_VTPM_STATUS.get(tool, want)
    assert r.rc == 0 and r.out == want, str(r)


def test_pubek_with_owner(run):
    run.owned()
    r = run.tool("tpm_getpubek", "-z")   # ReadPubek is refused now; owner-read instead
    assert r.rc == 0 and "Public Endorsement Key" in r.out, str(r)
    assert ek_modulus(r.out) == run.endorsement_key()


def test_wrong_owner_password_is_authfail(run):
    run.owned()
    r = run.tool("tpm_setenable", "--status", stdin="definitely-not-the-owner-password\n")
    assert r.rc != 0, "owner query succeeded with a wrong password: " + str(r)
    assert re.search(r"code=0001|Authentication failed", r.err), str(r)


def test_resetdalock(run):
    run.owned()
    r = run.tool("tpm_resetdalock", "-z")
    assert r.rc == 0, str(r)


def test_nv_define(run):
    run.owned()
    run.nv_released(NV_INDEX)
    r = run.tool("tpm_nvdefine", "-i", NV_INDEX, "-s", "32", "-p", "OWNERWRITE|OWNERREAD",
                 "-y", "-z")
    assert r.rc == 0 and "Successfully created NVRAM area" in r.out, str(r)
    run.nv[NV_INDEX] = b""


def test_nv_info(run):
    run.nv_defined(NV_INDEX)
    r = run.tool("tpm_nvinfo", "-i", NV_INDEX)
    assert r.rc == 0, str(r)
    assert re.search(r"NVRAM index\s*:\s*%s" % NV_INDEX, r.out, re.I), r.out
    assert re.search(r"Size\s*:\s*32 \(0x20\)", r.out), r.out
    assert re.search(r"Permissions\s*:\s*0x00020002 \(OWNERREAD\|OWNERWRITE\)", r.out), r.out


def test_nv_write(run):
    run.nv_defined(NV_INDEX)
    data = os.urandom(32)
    f = run.work / "nv.in"
    f.write_bytes(data)
    r = run.tool("tpm_nvwrite", "-i", NV_INDEX, "-z", "-f", str(f))
    assert r.rc == 0, str(r)
    run.nv[NV_INDEX] = data


def test_nv_read(run):
    data = run.nv_written(NV_INDEX)
    f = run.work / "nv.out"
    r = run.tool("tpm_nvread", "-i", NV_INDEX, "-s", "32", "-z", "-f", str(f))
    assert r.rc == 0, str(r)
    assert f.read_bytes() == data


def test_nv_release(run):
    run.nv_defined(NV_INDEX)
    r = run.tool("tpm_nvrelease", "-i", NV_INDEX, "-y")
    assert r.rc == 0 and "Successfully released" in r.out, str(r)
    del run.nv[NV_INDEX]


def test_nv_gone(run):
    run.nv_defined(NV_INDEX)
    run.nv_released(NV_INDEX)
    r = run.tool("tpm_nvinfo", "-n")
    assert r.rc == 0, str(r)
    assert NV_INDEX.lower() not in r.out.lower(), r.out


def test_seal(run):
    run.sealed = None
    sealed, _ = run.sealed_data()
    assert sealed.read_text().startswith("-----BEGIN TSS-----")


def test_unseal(run):
    sealed, data = run.sealed_data()
    out = run.work / "seal.out"
    r = run.tool("tpm_unsealdata", "-z", "-i", str(sealed), "-o", str(out))
    assert r.rc == 0, str(r)
    assert out.read_bytes() == data


def test_nv_area_with_its_own_password(run):
    """AUTHREAD|AUTHWRITE: NV_WriteValueAuth / NV_ReadValueAuth with the area's
    secret; a wrong one is TPM_AUTHFAIL."""
    idx, data = "0x00011102", os.urandom(16)
    run.owned()
    r = run.tool("tpm_nvdefine", "-i", idx, "-s", "16", "-p", "AUTHREAD|AUTHWRITE",
                 "--pwda=nv-secret", "-y")
    assert r.rc == 0, str(r)
    src, dst = run.work / "nva.in", run.work / "nva.out"
    src.write_bytes(data)
    r = run.tool("tpm_nvwrite", "-i", idx, "--password=nv-secret", "-f", str(src))
    assert r.rc == 0, str(r)
    r = run.tool("tpm_nvread", "-i", idx, "-s", "16", "--password=nv-secret", "-f", str(dst))
    assert r.rc == 0 and dst.read_bytes() == data, str(r)
    r = run.tool("tpm_nvread", "-i", idx, "-s", "16", "--password=not-the-secret")
    assert r.rc != 0 and "code=0001" in r.err, str(r)
    r = run.tool("tpm_nvrelease", "-i", idx, "-y")
    assert r.rc == 0, str(r)


def test_seal_to_pcrs(run):
    """tpm_sealdata -p 0 -p 7 binds to the current PCR values: unseal works,
    and after PCR 7 changes it is refused (TPM_WRONGPCRVAL)."""
    run.owned()
    src, sealed, out = run.work / "pcr.in", run.work / "pcr.sealed", run.work / "pcr.out"
    src.write_bytes(b"bound to PCR 0 and 7\n")
    r = run.tool("tpm_sealdata", "-z", "-p", "0", "-p", "7", "-i", str(src), "-o", str(sealed))
    assert r.rc == 0, str(r)
    r = run.tool("tpm_unsealdata", "-z", "-i", str(sealed), "-o", str(out))
    assert r.rc == 0 and out.read_bytes() == src.read_bytes(), str(r)
    if run.backend == "swtpm":
        return      # a direct Extend would queue behind tcsd's idle connection
    extend = frame(0xC1, 0x14, (7).to_bytes(4, "big") + b"\x07" * 20)
    assert rc_of(transact(run.tpm.addr, extend)) == 0
    out.unlink()
    r = run.tool("tpm_unsealdata", "-z", "-i", str(sealed), "-o", str(out))
    assert r.rc != 0 and not (out.exists() and out.read_bytes() == src.read_bytes()), str(r)


def test_change_owner_password_and_back(run):
    run.owned()
    r = run.tool("tpm_changeownerauth", "-o", "-z", stdin="new-owner-pw\nnew-owner-pw\n")
    assert r.rc == 0, str(r)
    r = run.tool("tpm_setenable", "--status", "-z")                  # the old secret fails
    assert r.rc != 0 and "code=0001" in r.err, str(r)
    r = run.tool("tpm_setenable", "--status", stdin="new-owner-pw\n")
    assert r.rc == 0 and "Disabled status: false" in r.out, str(r)
    r = run.tool("tpm_changeownerauth", "-o", "-r", stdin="new-owner-pw\n")   # well-known again
    assert r.rc == 0, str(r)
    r = run.tool("tpm_setenable", "--status", "-z")
    assert r.rc == 0, str(r)


def test_clear_then_unowned(run):
    run.clear()
    if run.backend == "swtpm":
        # swtpm serves one connection at a time and tcsd keeps its last one
        # open: stop tcsd before probing directly.  pyxl serves both at once.
        run.tcsd.stop()
    resp = transact(run.tpm.addr, getcap(0x05, (0x111).to_bytes(4, "big")), timeout=10)
    assert rc_of(resp) == 0, resp.hex()
    assert resp[-1] == 0, "TPM_CAP_PROP_OWNER still TRUE after tpm_clear"
    if run.backend == "swtpm":
        run.unowned()            # tcsd is gone: the next test gets a fresh pair


def test_xen_vtpm_can_be_owned_again_after_clear(run):
    """The emulator leaves the TPM enabled and active after TPM_OwnerClear
    (libtpms disables and deactivates it until physical presence)."""
    if run.backend != "pyxl-berlios":
        pytest.skip("only the emulator stays enabled after tpm_clear")
    if run.state != CLEARED:
        run.clear()
    r = run.tool("tpm_takeownership", "-y", "-z")
    assert r.rc == 0, str(r)
    run.state = OWNED
    r = run.tool("tpm_setenable", "--status", "-z")
    assert r.rc == 0 and "Disabled status: false" in r.out, str(r)


def test_physical_presence_commands(run):
    """ForceClear needs physical presence: always asserted in the emulator,
    never through tcsd on libtpms (TPM_BAD_PRESENCE)."""
    if run.backend == "swtpm":
        pytest.skip("tcsd was stopped for the direct probe; pyxl-ibm covers libtpms' answer")
    r = run.tool("tpm_clear", "-f")
    if run.backend == "pyxl-berlios":
        assert r.rc == 0 and "Cleared" in r.out, str(r)
        run.state = CLEARED
        run.nv.clear()
        run.sealed = run.seal_in = None
        resp = transact(run.tpm.addr, getcap(0x05, (0x111).to_bytes(4, "big")), timeout=10)
        assert rc_of(resp) == 0 and resp[-1] == 0
    else:
        assert r.rc != 0 and re.search(r"code=00(2d|07)", r.err), str(r)


def test_tcsd_over_unix_socket(pyxl_cmd, tmp_path):
    """tcsd's other device: a Unix socket (as the Berlios tpmd offers), here
    `pyxl tpm-serve --unix PATH --unix-mode 0666` (tcsd runs as user tss)."""
    need_peer("tcsd")
    need_peer("tpm-tools")
    if os.geteuid() != 0:
        pytest.skip("tcsd needs root (its config must be root:tss 0640)")
    sockdir = Path(tempfile.mkdtemp(prefix="pyxl-tpm-"))   # reachable by tss
    os.chmod(sockdir, 0o755)
    path = str(sockdir / "tpmd_socket")
    tpm = PyxlServe(pyxl_cmd, tmp_path / "state", "--unix-mode", "0666", unix=path,
                    tcp=False).start()
    try:
        tcsd = Tcsd(tmp_path / "tcsd", "127.0.0.1", free_port(), unix_device=path).start()
        try:
            r = tcsd.tool("tpm_version")
            assert r.rc == 0 and version_fields(r.out) == dict(
                version_fields(r.out), **EXPECTED_VERSION["pyxl"]), str(r)
            r = tcsd.tool("tpm_takeownership", "-y", "-z")
            assert r.rc == 0, str(r)
            r = tcsd.tool("tpm_setenable", "--status", "-z")
            assert r.rc == 0 and "Disabled status: false" in r.out, str(r)
        finally:
            tcsd.stop()
    finally:
        tpm.stop()
        shutil.rmtree(sockdir, ignore_errors=True)
