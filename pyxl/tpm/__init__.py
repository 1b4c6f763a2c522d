"""The TPM 1.2 engine (TCG Main Specification 1.2): a Xen vTPM in Python.

Depends on nothing else in pyxl.  Entry points: TPM (engine.py), Identity,
XEN_VTPM_IDENTITY and IBM_SWTPM_IDENTITY (identity.py); the wire format is
marshal.py (Reader/Writer, TPMDecodeError) + structures.py + constants.py;
the commands are in commands/, the state blob in state.py.
"""

from .engine import TPM, TPMError, TPMStateError
from .identity import IBM_SWTPM_IDENTITY, XEN_VTPM_IDENTITY, Identity
from .marshal import TPMDecodeError

__all__ = ["TPM", "TPMError", "TPMStateError", "Identity", "XEN_VTPM_IDENTITY",
           "IBM_SWTPM_IDENTITY", "TPMDecodeError"]
