"""`pyxl tpm-serve --tpm2` and `swtpm socket --tpm2`, driven by the same
real tpm2-tools session, answer alike: capabilities, PCR extend/read on the
SHA-1 and SHA-256 banks, GetRandom, an NV index, a primary key, a sealed
object bound to a PCR policy (unsealed, then refused once the PCR moved),
saved contexts loaded back by the next tool.  Only what is random by nature
(key material, names, random bytes) is masked, and only in the steps that
carry it."""

from __future__ import annotations

import re

import pytest

from tpm2.fixtures import tool

pytestmark = pytest.mark.peer("swtpm", "tpm2-tools")

LONG_HEX = re.compile(r"\b(0x)?[0-9a-fA-F]{40,}\b")

D1 = "11" * 20
D256 = "22" * 32
# (argv, what is random in the answer): "keys" masks long hex strings,
# "size" keeps only the length of the bytes written to rand.bin
SESSION = [
    (["tpm2_getcap", "properties-fixed"], None),
    (["tpm2_getcap", "algorithms"], None),
    (["tpm2_getcap", "commands"], None),
    (["tpm2_getcap", "pcrs"], None),
    (["tpm2_getcap", "properties-variable"], None),
    (["tpm2_pcrread", "sha1:16,23+sha256:16,23"], None),
    (["tpm2_pcrextend", "16:sha1=%s,sha256=%s" % (D1, D256)], None),
    (["tpm2_pcrextend", "23:sha256=%s" % D256], None),
    (["tpm2_pcrread", "sha1:16,23+sha256:16,23"], None),
    (["tpm2_getrandom", "-o", "rand.bin", "32"], "size"),
    (["tpm2_getrandom", "-o", "rand.bin", "64"], "size"),      # TPM2B_DIGEST's most
    (["tpm2_nvdefine", "0x1500016", "-C", "o", "-s", "32", "-a", "ownerread|ownerwrite"], None),
    (["tpm2_nvwrite", "0x1500016", "-C", "o", "-i", "nv.bin"], None),
    (["tpm2_nvread", "0x1500016", "-C", "o", "-s", "32"], None),
    (["tpm2_nvreadpublic", "0x1500016"], "keys"),
    (["tpm2_nvread", "0x1500017", "-C", "o", "-s", "4"], "keys"),     # no such index
    (["tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", "prim.ctx"], "keys"),
    # no resource manager in between: a tool leaves its objects loaded, so
    # flush them; the next tool loads the saved context (ContextLoad)
    (["tpm2_flushcontext", "-t"], None),
    (["tpm2_pcrread", "sha256:0", "-o", "pcr0.bin"], None),
    (["tpm2_createpolicy", "--policy-pcr", "-l", "sha256:0", "-f", "pcr0.bin",
      "-L", "pcr.policy"], None),
    (["tpm2_create", "-C", "prim.ctx", "-L", "pcr.policy", "-i", "secret.txt",
      "-u", "seal.pub", "-r", "seal.priv"], "keys"),
    (["tpm2_flushcontext", "-t"], None),
    (["tpm2_load", "-C", "prim.ctx", "-u", "seal.pub", "-r", "seal.priv", "-c", "seal.ctx"],
     "keys"),
    (["tpm2_flushcontext", "-t"], None),
    (["tpm2_unseal", "-c", "seal.ctx", "-p", "pcr:sha256:0"], None),
    (["tpm2_pcrextend", "0:sha256=%s" % D256], None),
    (["tpm2_unseal", "-c", "seal.ctx", "-p", "pcr:sha256:0"], "keys"),
    (["tpm2_getcap", "handles-transient"], None),
    (["tpm2_getcap", "handles-nv-index"], None),
    (["tpm2_flushcontext", "-t"], None),
    (["tpm2_getcap", "handles-transient"], None),
    (["tpm2_startup", "-c"], None),                    # already started (the tool says 0)
]


def run_session(port: int, work) -> list[tuple]:
    work.mkdir()
    (work / "nv.bin").write_bytes(bytes(range(32)))
    (work / "secret.txt").write_bytes(b"sealed by the test")
    out = []
    for argv, random in SESSION:
        r = tool(port, *argv, cwd=work)
        text = r.out + "\n--stderr--\n" + r.err
        if random == "keys":
            text = LONG_HEX.sub("<hex>", text)
        elif random == "size":
            text = "%d random bytes\n%s" % (len((work / "rand.bin").read_bytes()), r.err)
        out.append((" ".join(argv), r.rc, text))
    return out


def test_same_tpm2_tools_session_same_answers(start_swtpm2, start_serve2, tmp_path):
    sw = start_swtpm2()
    px = start_serve2()
    expected = run_session(sw.port, tmp_path / "swtpm-work")
    got = run_session(px.port, tmp_path / "pyxl-work")
    for (step, rc_sw, out_sw), (_, rc_px, out_px) in zip(expected, got):
        assert (rc_px, out_px) == (rc_sw, out_sw), step
    # the session did what it says (on the peer, so the comparison is not vacuous)
    unseals = [(rc, out) for step, rc, out in expected if step.startswith("tpm2_unseal")]
    assert unseals[0][0] == 0 and unseals[0][1].startswith("sealed by the test")
    assert unseals[1][0] != 0 and "0x99D" in unseals[1][1]     # TPM_RC_POLICY_FAIL, session 1
    assert [out for step, _, out in expected if "getrandom" in step] == \
        ["32 random bytes\n", "64 random bytes\n"]
    nvread = [out for step, _, out in expected if step.startswith("tpm2_nvread 0x1500016")]
    assert nvread[0].startswith(bytes(range(32)).decode("latin-1"))
    assert [rc for _, rc, _ in expected].count(0) == len(SESSION) - 2   # no index; the policy


def test_over_unix_sockets(start_swtpm2, start_serve2, tmp_path):
    """-T swtpm:path=PATH: commands on PATH, control on PATH.ctrl, as swtpm
    serves them with --server type=unixio and --ctrl type=unixio."""
    sw = start_swtpm2(unix=str(tmp_path / "swtpm.sock"))
    px = start_serve2(unix=str(tmp_path / "pyxl.sock"))
    assert "ctrl unix %s.ctrl" % (tmp_path / "pyxl.sock") in px.ready_line
    steps = [["tpm2_getcap", "properties-fixed"],
             ["tpm2_pcrextend", "16:sha256=%s" % D256],
             ["tpm2_pcrread", "sha1:16+sha256:16"],
             ["tpm2_startup", "-c"]]
    for argv in steps:
        want = tool(sw.unix, *argv, cwd=tmp_path)
        got = tool(str(tmp_path / "pyxl.sock"), *argv, cwd=tmp_path)
        assert (got.rc, got.out, got.err) == (want.rc, want.out, want.err), argv
        assert want.rc == 0, want


def test_default_port_is_the_swtpm_tcti_default(pyxl_cmd, tmp_path):
    """Without --port, `pyxl tpm-serve --tpm2` is where a bare `-T swtpm` looks."""
    import socket
    import subprocess

    from tpm.fixtures import PyxlServe

    for port in (2321, 2322):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                pytest.skip("port %d is in use on this machine" % port)
    s = PyxlServe(pyxl_cmd, tmp_path / "st", "--tpm2")
    s.tcp = False                                    # no --port
    s.start()
    try:
        assert "tcp 127.0.0.1:2321, ctrl tcp 127.0.0.1:2322" in s.ready_line
        p = subprocess.run(["tpm2_getcap", "-T", "swtpm", "properties-fixed"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and 'value: "2.0"' in p.stdout, p.stderr
    finally:
        s.stop()
