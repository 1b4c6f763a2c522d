"""Key migration against swtpm (libtpms): the scenarios of
test_engine_migration.py between two swtpm, and across implementations --
a key migrated out of libtpms into the engine and out of the engine into
libtpms must load and sign on the other side."""

from __future__ import annotations


import pytest

import engine_helpers as H
import test_engine_migration as M


Remote, owned_swtpm = H.Remote, H.owned_swtpm      # also used by the CMK tests


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
