"""Key migration against swtpm (libtpms): the scenarios of
test_engine_migration.py between two swtpm, and across implementations --
a key migrated out of libtpms into the engine and out of the engine into
libtpms must load and sign on the other side."""

from __future__ import annotations

import os

import pytest

import engine_helpers as H
import test_engine_migration as M
from pyxl.tpm import structures as S
from tpm.fixtures import transact


class Remote:
    def __init__(self, sw):
        self.sw = sw

    def execute(self, req: bytes, locality: int = 0) -> bytes:
        return transact(self.sw.addr, req)


def owned_swtpm(start_swtpm, name):
    tpm = Remote(start_swtpm(name=name))
    # a libtpms TPM starts without an EK, disabled and deactivated
    parms = S.TPM_KEY_PARMS(1, 3, 1, S.TPM_RSA_KEY_PARMS(2048, 2, b"").to_bytes())
    assert H.run(tpm, 0xC1, 0x78, os.urandom(20) + parms.to_bytes()).rc == 0
    assert H.run(tpm, 0xC1, 0x4000000A, H.u16(0x20)).rc == 0   # PP command enable
    assert H.run(tpm, 0xC1, 0x4000000A, H.u16(0x08)).rc == 0   # PP present
    assert H.run(tpm, 0xC1, 0x6F).rc == 0                     # PhysicalEnable
    assert H.run(tpm, 0xC1, 0x72, b"\x00").rc == 0            # PhysicalSetDeactivated
    H.take_ownership(tpm)
    return tpm


def owned_engine():
    tpm = H.new_tpm()
    H.take_ownership(tpm)
    return tpm


@pytest.mark.parametrize("src,dst", [("swtpm", "swtpm"), ("swtpm", "engine"),
                                     ("engine", "swtpm")])
@pytest.mark.parametrize("scenario", ["test_rewrap_round_trip",
                                      "test_migrate_round_trip_through_convert",
                                      "test_migrate_through_a_migration_authority"])
def test_round_trip_with_libtpms(start_swtpm, src, dst, scenario):
    pair = tuple(owned_swtpm(start_swtpm, "sw%d" % i) if kind == "swtpm" else owned_engine()
                 for i, kind in enumerate((src, dst)))
    getattr(M, scenario)(pair)


@pytest.mark.parametrize("scenario", ["test_migrate_blob_opened_independently",
                                      "test_refusals"])
def test_same_on_swtpm(start_swtpm, scenario):
    getattr(M, scenario)((owned_swtpm(start_swtpm, "a"), owned_swtpm(start_swtpm, "b")))
