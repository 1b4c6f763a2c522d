"""Benchmark the simulated hypervisor services (not a test; prints numbers).

    PYTHONPATH=. python bench/hv_services.py

- xenstore: READ round trips from a domain process through the daemon.
- tpmif: frontend/backend round trips through a granted page + event
  channel between two domain processes (the path every guest TPM command
  takes, minus the TPM).
- memory: unique memory (USS) of a connected domain process, against the
  same interpreter doing nothing (the baseline a Python stub domain pays).

There is no real xenstored/Xen on a test host to run as a peer, so the
ratios printed are against the bare interpreter / a plain socketpair echo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyxl.hypervisor.services import Hypervisor  # noqa: E402

N = int(os.environ.get("HV_BENCH_N", "2000"))

CHILD = r"""
import json, os, sys, time
from pyxl.domain.xen import XenInterface
from pyxl.domain.drivers.tpmif import SharedPage, TPMIF_STATE_SUBMIT
role, n = sys.argv[1], int(sys.argv[2])
xen = XenInterface.from_env()
def uss():
    d = {}
    for line in open('/proc/self/smaps_rollup'):
        k, v = line.split(':', 1); d[k] = v.split()
    return int(d['Private_Clean'][0]) + int(d['Private_Dirty'][0])
out = {}
if role == 'front':
    xen.write('data/x', 'v')
    t = time.perf_counter()
    for _ in range(n):
        xen.read('data/x')
    out['xs_read_us'] = (time.perf_counter() - t) / n * 1e6
    page = xen.alloc_page(); sp = SharedPage(page.buf); sp.init()
    ref = xen.grant_access(page, 2); port = xen.evtchn_alloc_unbound(2)
    xen.write('data/ring', f'{ref} {port}')
    while xen.read_str('/local/domain/2/data/ready', default='0') != '1':
        time.sleep(0.01)
    xen.evtchn_wait(port, 0.2)
    t = time.perf_counter(); tn = 0.0
    for i in range(n):
        sp.submit(b'\x00\xc1\x00\x00\x00\x0a\x00\x00\x00\x46')
        t0 = time.perf_counter()
        xen.evtchn_notify(port)
        tn += time.perf_counter() - t0
        xen.evtchn_wait(port, 5)
    out['tpmif_rtt_us'] = (time.perf_counter() - t) / n * 1e6
    out['notify_us'] = tn / n * 1e6
    sp.submit(b'quit'); xen.evtchn_notify(port)
    out['uss_kb'] = uss()
else:
    while True:
        v = xen.read_str('/local/domain/1/data/ring', default='')
        if v: break
        time.sleep(0.01)
    ref, rport = map(int, v.split())
    m = xen.map_grant(1, ref); port = xen.evtchn_bind_interdomain(1, rport)
    xen.write('data/ready', '1')
    sp = SharedPage(m.buf)
    while True:
        xen.evtchn_wait(port, 5)
        if sp.state == TPMIF_STATE_SUBMIT:
            req, _ = sp.request()
            if req == b'quit': break
            sp.finish(b'\x00\xc4\x00\x00\x00\x0a\x00\x00\x00\x00')
            xen.evtchn_notify(port)
print(json.dumps(out))
"""

BARE = r"""
d = {}
for line in open('/proc/self/smaps_rollup'):
    k, v = line.split(':', 1); d[k] = v.split()
print(int(d['Private_Clean'][0]) + int(d['Private_Dirty'][0]))
"""


def spawn(hv, domid, role):
    sock = hv.connect_domain(domid)
    env = dict(os.environ, PYXL_XEN_FD=str(sock.fileno()), PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-c", CHILD, role, str(N)], pass_fds=[sock.fileno()],
                         env=env, stdout=subprocess.PIPE)
    sock.close()
    return p


def socket_echo_us() -> float:
    """A bare request/response over a socketpair between two threads: the
    floor any daemon round trip pays in Python."""
    import socket
    import threading
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def echo():
        while (m := b.recv(256)):
            b.send(m)
    threading.Thread(target=echo, daemon=True).start()
    t = time.perf_counter()
    for _ in range(N):
        a.send(b"x" * 32)
        a.recv(256)
    us = (time.perf_counter() - t) / N * 1e6
    a.close()
    return us


def main() -> None:
    hv = Hypervisor()
    hv.domain_created(1, name="front")
    hv.domain_created(2, name="back")
    xs = hv.xs()                  # let each side read the other's data/ (as a toolstack would)
    xs.set_perms("/local/domain/1/data", ["n1", "r2"])
    xs.set_perms("/local/domain/2/data", ["n2", "r1"])
    back = spawn(hv, 2, "back")
    front = spawn(hv, 1, "front")
    res = json.loads(front.communicate(timeout=120)[0])
    back.wait(timeout=30)
    hv.close()
    bare = int(subprocess.run([sys.executable, "-c", BARE], capture_output=True,
                              text=True).stdout)
    echo = socket_echo_us()
    print(f"xenstore READ round trip     {res['xs_read_us']:8.1f} us  "
          f"({res['xs_read_us'] / echo:.1f}x a bare socketpair echo of {echo:.1f} us)")
    print(f"tpmif request/response       {res['tpmif_rtt_us']:8.1f} us  "
          f"(grant page + 2 evtchn sends of {res['notify_us']:.1f} us each)")
    print(f"domain process USS           {res['uss_kb']:8d} kB  "
          f"(bare interpreter {bare} kB, +{res['uss_kb'] - bare} kB)")
    if sys.flags.dont_write_bytecode:
        print("  note: PYTHONDONTWRITEBYTECODE is set, so the domain compiled pyxl's modules "
              "from source; with cached .pyc files the domain side costs ~1.3 MB less")


if __name__ == "__main__":
    main()
