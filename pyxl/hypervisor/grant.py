"""Grant tables backed by real shared memory (xen/common/grant_table.c, v1).

A domain's page is a 4096-byte memfd that the domain process maps shared.
Granting hands the hypervisor a descriptor of that page; the hypervisor keeps
it in the granting domain's table under a grant reference and gives a
descriptor back ONLY to the domain named in the entry, when it maps the
grant -- reopened read-only if the grant is read-only, so the grantee's
kernel refuses a writable mapping. Bytes then move between the two domain
processes without the daemon, as on Xen.

Rules kept from Xen: refs are per granting domain (the first 8 are reserved,
as GNTTAB_NR_RESERVED_ENTRIES in Linux); mapping needs the right grantee
(GNTST_permission_denied), a live ref (GNTST_bad_gntref) and a live granter
(GNTST_bad_domain); a read-only grant cannot be mapped writable; ending
access fails while the grant is mapped (gnttab_end_foreign_access_ref);
a dying domain's grants are revoked and its own mappings released.

This module only keeps descriptors; the wire layer moves them (SCM_RIGHTS).
All descriptors taken in are owned here and closed on revoke; a domain
can pin at most `max_pages` distinct pages (one descriptor each in the
daemon), so grants cannot exhaust the daemon's descriptor table.
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import stat
import threading
from dataclasses import dataclass, field

PAGE_SIZE = 4096
GNTTAB_NR_RESERVED_ENTRIES = 8

# grant_status_t (public/grant_table.h)
GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -4
GNTST_permission_denied = -8

_STATUS_ERRNO = {
    GNTST_general_error: _errno.EINVAL,
    GNTST_bad_domain: _errno.ESRCH,
    GNTST_bad_gntref: _errno.EINVAL,
    GNTST_permission_denied: _errno.EPERM,
}


class GrantError(OSError):
    """A grant operation failed; `.status` is the GNTST_* code when one applies."""

    def __init__(self, err: int, what: str, status: int = GNTST_general_error):
        super().__init__(err, what)
        self.status = status
        self.name = _errno.errorcode.get(err, "EINVAL")


def _gntst(status: int, what: str) -> GrantError:
    return GrantError(_STATUS_ERRNO[status], what, status)


@dataclass
class _Page:
    fd: int
    refs: int = 0       # grant entries using this page


@dataclass
class _Entry:
    page: _Page
    grantee: int
    readonly: bool
    mapped: dict[int, int] = field(default_factory=dict)   # mapper domid -> count


def open_page_fd(fd: int, readonly: bool) -> int:
    """A new descriptor for the same page; read-only ones are a new open file
    description (O_RDONLY), so mmap(PROT_WRITE, MAP_SHARED) on it fails."""
    if not readonly:
        return os.dup(fd)
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


def check_page(fd: int, what: str = "a grant") -> None:
    """A page a domain hands the hypervisor (to grant, or as its console
    ring) is one 4096-byte memfd sealed against shrinking (F_SEAL_SHRINK):
    Xen's pages are the domain's memory and cannot go away under a mapper,
    where a file the granter could truncate would make every access of
    the mapping domain -- a backend, the daemon -- fault (SIGBUS).
    Anything else is EINVAL."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != PAGE_SIZE:
        raise GrantError(_errno.EINVAL, "%s must be one 4096-byte shared page" % what)
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        seals = 0          # not a memfd
    if not seals & fcntl.F_SEAL_SHRINK:
        raise GrantError(_errno.EINVAL, "%s must be a memfd sealed against shrinking" % what)


class GrantTables:
    def __init__(self, max_entries: int = 4096, max_pages: int = 64):
        self.lock = threading.RLock()
        self._max_entries = max_entries
        self._max_pages = max_pages
        self._tables: dict[int, dict[int, _Entry]] = {}
        self._pages: dict[int, dict[tuple[int, int], _Page]] = {}   # (dev, ino) -> page

    # -- domains -------------------------------------------------------
    def add_domain(self, domid: int) -> None:
        with self.lock:
            self._tables.setdefault(domid, {})
            self._pages.setdefault(domid, {})

    def remove_domain(self, domid: int) -> None:
        """Revoke every grant of `domid` and release its mappings of others'."""
        with self.lock:
            for table in self._tables.values():
                for entry in table.values():
                    entry.mapped.pop(domid, None)
            self._tables.pop(domid, None)
            for page in self._pages.pop(domid, {}).values():
                os.close(page.fd)

    def _table(self, domid: int) -> dict[int, _Entry]:
        table = self._tables.get(domid)
        if table is None:
            raise _gntst(GNTST_bad_domain, f"domain {domid}")
        return table

    # -- granting side -------------------------------------------------
    def grant(self, caller: int, fd: int, grantee: int, readonly: bool) -> int:
        """gnttab_grant_foreign_access: returns the new ref. `fd` stays the
        caller's (it is duplicated if new to the table)."""
        with self.lock:
            table = self._table(caller)
            check_page(fd)
            st = os.fstat(fd)
            if len(table) >= self._max_entries:
                raise GrantError(_errno.ENOSPC, "grant table full")
            pages = self._pages[caller]
            key = (st.st_dev, st.st_ino)
            page = pages.get(key)
            if page is None:
                if len(pages) >= self._max_pages:
                    raise GrantError(_errno.ENOSPC, "too many granted pages")
                page = pages[key] = _Page(os.dup(fd))
            ref = next(r for r in range(GNTTAB_NR_RESERVED_ENTRIES, self._max_entries + GNTTAB_NR_RESERVED_ENTRIES)
                       if r not in table)
            table[ref] = _Entry(page, grantee, bool(readonly))
            page.refs += 1
            return ref

    def end_access(self, caller: int, ref: int) -> None:
        """gnttab_end_foreign_access_ref: EBUSY while someone maps it."""
        with self.lock:
            table = self._table(caller)
            entry = table.get(ref)
            if entry is None:
                raise _gntst(GNTST_bad_gntref, f"grant ref {ref}")
            if any(entry.mapped.values()):
                raise GrantError(_errno.EBUSY, f"grant ref {ref} is still mapped")
            del table[ref]
            entry.page.refs -= 1
            if entry.page.refs == 0:
                for key, page in list(self._pages[caller].items()):
                    if page is entry.page:
                        del self._pages[caller][key]
                os.close(entry.page.fd)

    # -- mapping side --------------------------------------------------
    def map(self, caller: int, granter: int, ref: int, readonly: bool) -> int:
        """GNTTABOP_map_grant_ref: a new descriptor of the page for `caller`
        (the caller of map() must close it once passed on)."""
        with self.lock:
            entry = self._table(granter).get(ref)
            if entry is None:
                raise _gntst(GNTST_bad_gntref, f"grant ref {ref} of domain {granter}")
            if entry.grantee != caller:
                raise _gntst(GNTST_permission_denied,
                             f"grant ref {ref} of domain {granter} is not granted to domain {caller}")
            if entry.readonly and not readonly:
                raise _gntst(GNTST_permission_denied, f"grant ref {ref} is read-only")
            fd = open_page_fd(entry.page.fd, readonly)
            entry.mapped[caller] = entry.mapped.get(caller, 0) + 1
            return fd

    def unmap(self, caller: int, granter: int, ref: int) -> None:
        with self.lock:
            table = self._tables.get(granter, {})
            entry = table.get(ref)
            if entry is None or not entry.mapped.get(caller):
                if entry is None and granter not in self._tables:
                    return   # the granter is gone: its grants were revoked already
                raise _gntst(GNTST_bad_gntref, f"grant ref {ref} of domain {granter} is not mapped")
            entry.mapped[caller] -= 1
            if not entry.mapped[caller]:
                del entry.mapped[caller]

    def query(self, granter: int, ref: int) -> dict | None:
        with self.lock:
            entry = self._tables.get(granter, {}).get(ref)
            if entry is None:
                return None
            return {"grantee": entry.grantee, "readonly": entry.readonly,
                    "mapped": sum(entry.mapped.values())}

    def refs(self, granter: int) -> list[int]:
        with self.lock:
            return sorted(self._tables.get(granter, {}))
