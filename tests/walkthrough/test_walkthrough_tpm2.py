"""examples/walkthrough-tpm2.sh, run for real: a TPM 2.0 vTPM in the guide's
chain, a secret sealed inside the guest (Debian's tpm2-tools) to the PCRs
pv-grub measured the kernel into, unsealed again after the whole chain was
shut down and started anew."""

from __future__ import annotations

import os
import subprocess

import pytest
from wt_host import EXAMPLES, Host

from peers import need_peer


@pytest.fixture
def host(tmp_path, pyxl_cmd):
    need_peer("tpm2-tools")
    if os.geteuid() != 0:
        pytest.skip("the guest's private network (its /dev/tpmrm0) needs root")
    h = Host(tmp_path, pyxl_cmd)
    yield h
    assert h.stop() == [], "processes outlived the host"


def answer(lines: list[str], typed: str, nth: int = 0) -> list[str]:
    """What the console showed after the nth time `typed` was typed."""
    starts = [i for i, ln in enumerate(lines) if ln == "root@domu:~# " + typed]
    i = starts[nth] + 1
    j = next(k for k in range(i, len(lines)) if lines[k].startswith("root@domu:"))
    return lines[i:j]


@pytest.mark.slow
@pytest.mark.peer("tpm2-tools")
def test_seal_in_the_guest_unseal_after_restart(host):
    p = subprocess.run(["bash", str(EXAMPLES / "walkthrough-tpm2.sh"), str(host.dir)],
                       env=host.env, capture_output=True, text=True, timeout=300,
                       errors="replace")
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr
    lines = [ln.rstrip("\r") for ln in p.stdout.splitlines()]
    assert answer(lines, "cat /sys/class/tpm/tpm0/tpm_version_major") == ["2"]
    unseal = "tpm2_unseal -c 0x81000001 -p pcr:sha256:4,5"
    assert answer(lines, unseal, 0) == ["the guest secret"]
    assert answer(lines, unseal, 1) == ["the guest secret"]        # after the restart
    # pv-grub measured the kernel: PCR 4 and 5 are not their reset value
    pcrs = answer(lines, "tpm2_pcrread sha256:4,5")
    assert len(pcrs) == 3 and all(("0x" + "0" * 64) not in ln for ln in pcrs[1:]), pcrs
    assert [ln.split()[0] for ln in lines[-2:]] == ["Name", "Domain-0"]   # all gone
