"""The TPM 2.0 engine: libtpms's TPM 2.0 loaded in-process through ctypes.

Depends on nothing else in pyxl.  Entry point: TPM2 (engine.py), with the
same interface as the TPM 1.2 engine (pyxl.tpm.engine.TPM); libtpms.py is
the ctypes binding.  One TPM 2.0 per process (libtpms is a singleton).
"""

from .engine import TPM2, TPM2Error, TPM2StateError

__all__ = ["TPM2", "TPM2Error", "TPM2StateError"]
