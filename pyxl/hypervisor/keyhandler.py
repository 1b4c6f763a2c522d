"""Xen's debug keys (xen/common/keyhandler.c), as XEN_SYSCTL_debug_keys
delivers them: each key is handle_keypress'd in turn; a key without a
handler does nothing; a handler's output goes to the hypervisor's console
(what `xl dmesg` reads).

The table is keyhandler.c's own key_table (the handlers every build has,
without CONFIG_PERF_COUNTERS or CONFIG_DEBUG_LOCK_PROFILE).  Of them the
simulated hypervisor carries out 'h' (show_handlers) and 'q' (dump_domains,
the general information block of each domain); the others are accepted and,
having nothing of a real machine to show, print nothing -- 'R' in
particular does not reboot the simulated host.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Callable, Iterable

    from pyxl.hypervisor.domain import Domain

# key -> desc, in key_table's (ASCII) order when listed
KEY_TABLE = {
    "%": "trap to xendbg",
    "*": "print all diagnostics",
    "0": "dump Dom0 registers",
    "A": "toggle alternative key handling",
    "R": "reboot machine",
    "d": "dump registers",
    "h": "show this message",
    "q": "dump domain (and guest debug) info",
    "r": "dump run queues",
    "t": "display multi-cpu clock info",
}


def show_handlers(key: str) -> list[str]:
    """show_handlers: every installed handler, by ASCII code."""
    out = ["'%s' pressed -> showing installed handlers" % key]
    for k in sorted(KEY_TABLE, key=ord):
        out.append(" key '%s' (ascii '%02x') => %s" % (k, ord(k), KEY_TABLE[k]))
    return out


def dump_domains(key: str, domains: Iterable[Domain], now_ns: int) -> list[str]:
    """dump_domains: the general information block of each domain, as an
    x86 build prints it (CONFIG_MEM_PAGING, no CONFIG_MEM_SHARING); the
    reference count is the one reference a live domain's list holds, no
    CPU has its state dirty, and vm_assist is unset."""
    out = ["'%s' pressed -> dumping domain info (now = %d)" % (key, now_ns)]
    for d in domains:
        pages = d.target_memkb // 4
        out.append("General information for domain %u:" % d.domid)
        out.append("    refcnt=%d dying=%d pause_count=%d"
                   % (1, 1 if d.dying else 0, 1 if d.paused else 0))
        out.append("    nr_pages=%u xenheap_pages=%u paged_pages=%u dirty_cpus={%s}"
                   " max_pages=%u" % (pages, 0, 0, "", d.max_memkb // 4))
        out.append("    handle=%s vm_assist=%08x" % (d.uuid, 0))
    return out


def handle_keys(keys: str, domains: Iterable[Domain], log: Callable[[str], object]) -> None:
    """XEN_SYSCTL_debug_keys: handle_keypress for each key; `log(line)`
    writes one line of the hypervisor's console."""
    for key in keys:
        if key == "h":
            lines = show_handlers(key)
        elif key == "q":
            lines = dump_domains(key, domains, time.monotonic_ns())
        else:
            lines = []
        for line in lines:
            log("(XEN) " + line)
