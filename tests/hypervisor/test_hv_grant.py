"""Grant tables: real shared pages, grantee-only mapping, read-only, revoke."""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile

import pytest

from pyxl.hypervisor.grant import (GNTST_bad_domain, GNTST_bad_gntref, GNTST_permission_denied,
                                   GNTTAB_NR_RESERVED_ENTRIES, PAGE_SIZE, GrantError, GrantTables)


@pytest.fixture
def gt():
    t = GrantTables(max_entries=16, max_pages=4)
    for d in (1, 2, 3):
        t.add_domain(d)
    yield t
    for d in (1, 2, 3):
        t.remove_domain(d)


def sealed_page() -> int:
    """A domain's page as pyxl.domain.xen.Page makes it."""
    fd = os.memfd_create("test-page", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, PAGE_SIZE)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    return fd


@pytest.fixture
def page():
    fd = sealed_page()
    m = mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    yield fd, m
    m.close()
    os.close(fd)


def status(fn, *a):
    with pytest.raises(GrantError) as ei:
        fn(*a)
    return ei.value.status, ei.value.name


def test_mapped_grant_shares_bytes_both_ways(gt, page):
    fd, mem = page
    ref = gt.grant(1, fd, 2, False)
    assert ref == GNTTAB_NR_RESERVED_ENTRIES
    mfd = gt.map(2, 1, ref, False)
    try:
        other = mmap.mmap(mfd, PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(mfd)
    mem[0:5] = b"hello"
    assert other[0:5] == b"hello"
    other[100:103] = b"ack"
    assert mem[100:103] == b"ack"
    other.close()


def test_only_the_grantee_may_map(gt, page):
    fd, _ = page
    ref = gt.grant(1, fd, 2, False)
    assert status(gt.map, 3, 1, ref, False) == (GNTST_permission_denied, "EPERM")
    assert status(gt.map, 2, 1, ref + 1, False) == (GNTST_bad_gntref, "EINVAL")
    assert status(gt.map, 2, 9, ref, False) == (GNTST_bad_domain, "ESRCH")


def test_read_only_grant_gives_a_descriptor_that_cannot_map_writable(gt, page):
    fd, mem = page
    ref = gt.grant(1, fd, 2, True)
    assert status(gt.map, 2, 1, ref, False)[0] == GNTST_permission_denied
    mfd = gt.map(2, 1, ref, True)
    try:
        with pytest.raises(PermissionError):
            mmap.mmap(mfd, PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        ro = mmap.mmap(mfd, PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
    finally:
        os.close(mfd)
    mem[0:2] = b"ro"
    assert ro[0:2] == b"ro"
    ro.close()


def test_end_access_fails_while_mapped(gt, page):
    fd, _ = page
    ref = gt.grant(1, fd, 2, False)
    os.close(gt.map(2, 1, ref, False))
    with pytest.raises(GrantError) as ei:
        gt.end_access(1, ref)
    assert ei.value.name == "EBUSY"
    gt.unmap(2, 1, ref)
    assert status(gt.unmap, 2, 1, ref)[0] == GNTST_bad_gntref
    gt.end_access(1, ref)
    assert gt.refs(1) == []
    assert status(gt.map, 2, 1, ref, False)[0] == GNTST_bad_gntref


def test_refs_are_per_granting_domain_and_pages_shared(gt, page):
    fd, _ = page
    a = gt.grant(1, fd, 2, False)
    b = gt.grant(1, fd, 3, True)
    c = gt.grant(2, fd, 1, False)
    assert (a, b, c) == (8, 9, 8)
    assert gt.query(1, b) == {"grantee": 3, "readonly": True, "mapped": 0}


def test_bad_pages_and_full_tables(gt, page):
    fd, _ = page
    small = os.memfd_create("small")
    try:
        assert status(gt.grant, 1, small, 2, False)[1] == "EINVAL"
    finally:
        os.close(small)
    for _ in range(16):
        gt.grant(1, fd, 2, False)
    assert status(gt.grant, 1, fd, 2, False)[1] == "ENOSPC"


def test_destroy_revokes_grants_and_releases_mappings(gt, page):
    fd, _ = page
    ref = gt.grant(1, fd, 2, False)
    ref2 = gt.grant(2, fd, 1, False)
    os.close(gt.map(1, 2, ref2, False))
    gt.remove_domain(1)
    assert status(gt.map, 2, 1, ref, False)[0] == GNTST_bad_domain
    assert gt.query(2, ref2)["mapped"] == 0
    gt.end_access(2, ref2)                      # no longer busy
    gt.add_domain(1)


def test_a_page_its_granter_could_shrink_is_refused(gt):
    """A page that can be truncated under its mapper would make every access
    of the mapping domain (a backend, the daemon) fault with SIGBUS; Xen's
    pages are domain memory.  Refused: an unsealed memfd, one sealed only
    against growing, and a plain 4096-byte file; the shrink seal is taken."""
    unsealed = os.memfd_create("unsealed", os.MFD_ALLOW_SEALING)
    grow_only = os.memfd_create("grow-only", os.MFD_ALLOW_SEALING)
    with tempfile.TemporaryFile() as plain:
        try:
            for fd in (unsealed, grow_only, plain.fileno()):
                os.ftruncate(fd, PAGE_SIZE)
            fcntl.fcntl(grow_only, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW)
            for fd in (unsealed, grow_only, plain.fileno()):
                assert status(gt.grant, 1, fd, 2, False)[1] == "EINVAL"
            fcntl.fcntl(unsealed, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
            assert gt.grant(1, unsealed, 2, False) >= GNTTAB_NR_RESERVED_ENTRIES
            with pytest.raises(PermissionError):
                os.ftruncate(unsealed, 0)        # what the seal guarantees the mapper
        finally:
            os.close(unsealed)
            os.close(grow_only)
