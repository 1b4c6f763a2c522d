"""How long a wide domain's create takes, and how long `list` waits meanwhile
(not a test; prints numbers).

    PYTHONPATH=. python bench/create_wide.py [VCPUS ...]

A private host (PYXL_ROOT in a temporary directory) creates one PV domain
per vCPU count (maxvcpus=N: N cpu/<n>/availability entries in xenstore,
written in one transaction under the host lock) while another thread sends
`list` over the control socket in a loop; printed per count: the create's
round trip and the longest `list` round trip seen during it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyxl.toolstack.client import Client  # noqa: E402
from pyxl.toolstack.paths import Paths  # noqa: E402


def main(counts: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PYXL_ROOT"] = tmp
        paths = Paths(tmp)
        kernel = Path(tmp, "vmlinuz")
        kernel.write_bytes(b"not a kernel")
        with Client(paths).connect() as c:
            for i, n in enumerate(counts):
                cfg = {"c_info": {"type": "pv", "name": "wide%d" % i},
                       "b_info": {"max_memkb": 32768, "target_memkb": 32768,
                                  "max_vcpus": n, "kernel": str(kernel)}}
                done = threading.Event()
                worst = [0.0]

                def poll():
                    with Client(paths).connect() as lc:
                        while not done.is_set():
                            t0 = time.perf_counter()
                            lc.call("list", rows=True)
                            worst[0] = max(worst[0], time.perf_counter() - t0)

                t = threading.Thread(target=poll)
                t.start()
                t0 = time.perf_counter()
                c.call("create", config=json.dumps(cfg))
                took = time.perf_counter() - t0
                done.set()
                t.join()
                print("maxvcpus=%-6d create %7.1f ms   longest list meanwhile %7.1f ms"
                      % (n, took * 1000, worst[0] * 1000))
            c.call("daemon_stop", force=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 1024, 8192])
