"""The daemon's half of `save`, `migrate` and `remus`: asking the guest to
suspend (pyxl.toolstack.suspend).  The streams themselves are written by
the command, as xl and its save helper write them to xl's file descriptor."""

from __future__ import annotations

from pyxl.toolstack.ops import Op
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


OPS: dict[str, Op] = {
    "suspend": Op(_suspend, ("dom",)),
}
