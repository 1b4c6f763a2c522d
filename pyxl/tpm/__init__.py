"""The TPM 1.2 engine (TCG Main Specification 1.2): a Xen vTPM in Python.

Depends on nothing else in pyxl.  Entry points: TPM (engine.py), Identity and
XEN_VTPM_IDENTITY (identity.py); the wire format is marshal.py + structures.py.
"""

from .engine import TPM, TPMError, TPMStateError
from .identity import XEN_VTPM_IDENTITY, Identity
from .marshal import TPMDecodeError

__all__ = ["TPM", "TPMError", "TPMStateError", "Identity", "XEN_VTPM_IDENTITY", "TPMDecodeError"]
