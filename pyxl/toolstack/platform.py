"""The host platform the toolstack sets up around the hypervisor: the
motherboard's hardware TPM behind its TIS pages, the iomem permissions
xl grants (`iomem=`), and the stub-domain images Xen's stubdom package
installs under /usr/lib/xen/boot.

hostd.py calls three hooks from here so its own code stays about domains:

    tis = attach_hardware_tpm(paths, hv)      # HostState.__init__
    grant_iomem(hv, domid, b_info)            # create(), after domain_created
    embedded_kernel(path) -> bool             # create(): a missing file is fine
"""

from __future__ import annotations

import os

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.hypervisor.services import Hypervisor
    from pyxl.hypervisor.tis import TisDevice
    from pyxl.toolstack.paths import Paths

HW_TPM_STATE = ("tpm", "tpm12.state")


class PlatformError(Exception):
    """The host cannot come up as configured (the daemon refuses to start)."""


def hardware_tpm_state(paths: Paths) -> str:
    return os.path.join(paths.lib_dir, *HW_TPM_STATE)


def attach_hardware_tpm(paths: Paths, hv: Hypervisor) -> TisDevice:
    """Load (or, on the host's first boot, manufacture) the TPM soldered on
    the board and map its five locality pages at 0xFED40000.  A state file
    that exists but cannot be read is never replaced by a new chip: that
    would silently orphan every vTPM the manager sealed to the old one."""
    from pyxl.hypervisor.tis import TIS_BASE, TIS_LEN, TisDevice
    from pyxl.tpm.engine import TPMStateError

    from pyxl.fsutil import UnsafePath, ensure_dir

    path = hardware_tpm_state(paths)
    try:
        ensure_dir(os.path.dirname(path), 0o700)     # the chip's secrets: the daemon's alone
    except UnsafePath as e:
        raise PlatformError("hardware TPM state: %s" % e) from None
    try:
        tis = TisDevice(path)
    except TPMStateError as e:
        raise PlatformError("%s; refusing to start (move the file away to give the host a "
                            "new TPM, which loses every vTPM sealed to the old one)" % e) from None
    except OSError as e:
        raise PlatformError("hardware TPM state %s: %s" % (path, e.strerror or e)) from None
    hv.iomem.add_device(TIS_BASE, TIS_LEN, tis)
    return tis


def grant_iomem(hv: Hypervisor, domid: int, b_info: dict) -> None:
    """xl's iomem=: XEN_DOMCTL_iomem_permission for each {start, number}."""
    for r in (b_info or {}).get("iomem") or []:
        hv.iomem.permit(domid, int(r.get("start", 0)), int(r.get("number", 0)))


def embedded_kernel(path: str) -> bool:
    """A stub-domain image pyxl carries itself (vtpmmgr-stubdom.gz,
    vtpm-stubdom.gz, ...): it boots even where no such file is installed.
    Any other kernel must exist on disk, as xl requires."""
    import importlib.util

    from pyxl.domain.process import KERNELS

    base = os.path.basename(path)
    for needle, mod, _ in KERNELS:
        if needle in base:
            try:
                return importlib.util.find_spec(mod) is not None
            except ImportError:
                return False
    return False
