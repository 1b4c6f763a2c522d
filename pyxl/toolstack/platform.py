"""The host platform the toolstack sets up around the hypervisor: the
motherboard's hardware TPM behind its TIS pages, the iomem permissions
xl grants (`iomem=`), and the stub-domain images Xen's stubdom package
installs under /usr/lib/xen/boot.

The daemon calls three hooks from here so its own code stays about domains:

    tis = attach_hardware_tpm(paths, hv)      # hostd.HostState.__init__
    grant_iomem(hv, domid, b_info)            # spawn.create and persist.rewire, after domain_created
    embedded_kernel(path) -> bool             # spawn.create: a missing file is fine
"""

from __future__ import annotations

import os

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.hypervisor.services import Hypervisor
    from pyxl.hypervisor.tis import TisDevice
    from collections.abc import Mapping

    from pyxl.toolstack.paths import Paths

HW_TPM_STATE = ("tpm", "tpm12.state")
HW_TPM2_STATE = ("tpm", "tpm20.state")
HW_TPM_CHIP = ("tpm", "chip")     # the chip the host has: "1.2" or "2.0"
HW_TPM_ENV = "PYXL_HWTPM"          # "1.2" or "2.0": which chip the board carries
CHIPS = {"1.2": 1, "1": 1, "2.0": 2, "2": 2}


class PlatformError(Exception):
    """The host cannot come up as configured (the daemon refuses to start)."""


def hardware_tpm_state(paths: Paths, version: int = 1) -> str:
    return os.path.join(paths.lib_dir, *(HW_TPM2_STATE if version == 2 else HW_TPM_STATE))


def hardware_tpm_version(paths: Paths, env: Mapping[str, str] = os.environ) -> int:
    """Which chip the host has: PYXL_HWTPM=1.2 or 2.0 when the daemon
    starts; unset, the chip the host had last (the "chip" file next to the
    state files), else a TPM 1.2.  Each chip keeps its own state file, so
    switching back and forth loses neither."""
    want = env.get(HW_TPM_ENV, "").strip()
    if want:
        if want not in CHIPS:
            raise PlatformError("%s=%s: the hardware TPM is 1.2 or 2.0" % (HW_TPM_ENV, want))
        return CHIPS[want]
    try:
        with open(os.path.join(paths.lib_dir, *HW_TPM_CHIP), "rb") as f:
            return CHIPS.get(f.read(8).decode(errors="replace").strip(), 1)
    except FileNotFoundError:
        return 1


def attach_hardware_tpm(paths: Paths, hv: Hypervisor) -> TisDevice:
    """Load (or, on the host's first boot, manufacture) the TPM soldered on
    the board and map its five locality pages at 0xFED40000.  A state file
    that exists but cannot be read is never replaced by a new chip: that
    would silently orphan every vTPM the manager sealed to the old one."""
    from pyxl.hypervisor.tis import TIS_BASE, TIS_LEN, TisDevice
    from pyxl.tpm.engine import TPMStateError
    from pyxl.tpm.tpm2.engine import TPM2Error

    from pyxl.fsutil import UnsafePath, atomic_write, ensure_dir

    version = hardware_tpm_version(paths)
    path = hardware_tpm_state(paths, version)
    try:
        ensure_dir(os.path.dirname(path), 0o700)     # the chip's secrets: the daemon's alone
    except UnsafePath as e:
        raise PlatformError("hardware TPM state: %s" % e) from None
    try:
        tis = TisDevice(path, version=version)
    except TPM2Error as e:
        raise PlatformError("hardware TPM 2.0: %s" % e) from None
    except TPMStateError as e:
        raise PlatformError("%s; refusing to start (move the file away to give the host a "
                            "new TPM, which loses every vTPM sealed to the old one)" % e) from None
    except OSError as e:
        raise PlatformError("hardware TPM state %s: %s" % (path, e.strerror or e)) from None
    chip = os.path.join(paths.lib_dir, *HW_TPM_CHIP)
    if hardware_tpm_version(paths, {}) != version or not os.path.exists(chip):
        atomic_write(chip, b"2.0\n" if version == 2 else b"1.2\n")
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
