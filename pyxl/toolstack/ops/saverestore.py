"""The daemon's half of `save`, `migrate` and `remus` (asking the guest to
suspend: pyxl.toolstack.suspend) and of `restore` and `migrate-receive`
(making the domain the stream is restored into).  The streams themselves
are written and read by the command, as xl, libxl and their save/restore
helper write and read them on xl's file descriptor."""

from __future__ import annotations

from pyxl.toolstack.errors import Fault
from pyxl.toolstack.ops import Op, libxl_json
from pyxl.toolstack.resources import free_memory_kb
from pyxl.toolstack.spawn import MAXMEM_SLACK_KB, cfg, check_name
from pyxl.toolstack.suspend import domain_suspend

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from pyxl.toolstack.daemon import Daemon


def _suspend(d: Daemon, a: dict[str, Any]) -> Any:
    st = d.state
    with st.lock:
        dom = st.resolve(a["dom"])
        domid = dom.domid
    return domain_suspend(st, domid)


def _restore_make(d: Daemon, a: dict[str, Any]) -> Any:
    """libxl_domain_create_restore up to the stream: xl's freemem(), then
    libxl__domain_make (a domid; the name taken, as libxl__domain_rename
    checks).  The simulated host has no memory to give the domain, so the
    stream read next never completes its restore; what libxl made is then
    destroyed (domcreate_complete), leaving only the domid used."""
    config = libxl_json("restore_make", a["config"])
    name = cfg(config, "c_info", "name") or ""
    if not name:
        raise Fault("BAD_REQUEST", reason="domain config without a name")
    check_name(name)
    max_memkb = int(cfg(config, "b_info", "max_memkb", default=32 * 1024))
    st = d.state
    with st.lock:
        if st.stopping:
            raise Fault("SHUTTING_DOWN")
        if free_memory_kb(st) < max_memkb + MAXMEM_SLACK_KB:
            raise Fault("NOMEM")
        domid = st.table.allocate_domid()
        st.save()
        if st.table.by_name(name) is not None:
            raise Fault("NAME_IN_USE", domid=domid, name=name)
    return {"domid": domid}


OPS: dict[str, Op] = {
    "suspend": Op(_suspend, ("dom",)),
    "restore_make": Op(_restore_make, ("config",)),
}
