"""Certified migration keys against swtpm (libtpms): the scenarios and
refusals of test_engine_cmk.py between two swtpm (so their expected return
codes are libtpms's), and across implementations -- a CMK made by libtpms
converted into the engine and one made by the engine converted into
libtpms must load and sign on the other side."""

from __future__ import annotations

import pytest

import test_engine_cmk as K
from test_migration_swtpm import owned_engine, owned_swtpm


@pytest.mark.parametrize("src,dst", [("swtpm", "swtpm"), ("swtpm", "engine"),
                                     ("engine", "swtpm")])
@pytest.mark.parametrize("scenario", ["test_restrict_migrate_to_an_authority_key",
                                      "test_restrict_approve_with_signed_tickets"])
def test_round_trip_with_libtpms(start_swtpm, src, dst, scenario):
    pair = tuple(owned_swtpm(start_swtpm, "sw%d" % i) if kind == "swtpm" else owned_engine()
                 for i, kind in enumerate((src, dst)))
    getattr(K, scenario)(pair)


@pytest.mark.parametrize("scenario", ["test_cmk_is_made_and_used_where_it_was_made",
                                      "test_blob_opened_independently",
                                      "test_owner_commands", "test_create_key_refusals",
                                      "test_create_blob_refusals", "test_convert_refusals",
                                      "test_dsap_on_a_cmk_obeys_the_restrictions",
                                      "test_restrict_migrate_through_an_authority_tpm",
                                      "test_owner_evict_takes_migratable_keys"])
def test_same_on_swtpm(start_swtpm, scenario):
    getattr(K, scenario)(LazyPair(start_swtpm))


class LazyPair:
    """Two owned swtpm, the second started only if the scenario uses it
    (making a libtpms EK and SRK takes a second or two)."""

    def __init__(self, start_swtpm):
        self.start = start_swtpm
        self.tpms = {}

    def __getitem__(self, i):
        if i not in self.tpms:
            self.tpms[i] = owned_swtpm(self.start, "ab"[i])
        return self.tpms[i]

    def __iter__(self):
        return iter((self[0], self[1]))
