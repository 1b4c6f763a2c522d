"""The TPM 1.2 engine (TCG Main Specification 1.2): a Xen vTPM in Python.

Depends on nothing else in pyxl.  Entry points: TPM (engine.py), Identity,
XEN_VTPM_IDENTITY and IBM_SWTPM_IDENTITY (identity.py); the wire format is
marshal.py (Reader/Writer, TPMDecodeError) + structures.py + constants.py;
the commands are in commands/, the state blob in state.py.

The names below are loaded on first use (PEP 562 module __getattr__):
importing a part of the package (constants, marshal, structures) does not
load the engine and its commands, so a process that only speaks the wire
format (vtpmmgr-stubdom, the TIS driver) starts without them.
"""

from __future__ import annotations

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from .engine import TPM, TPMError, TPMStateError
    from .identity import IBM_SWTPM_IDENTITY, XEN_VTPM_IDENTITY, Identity
    from .marshal import TPMDecodeError

__all__ = ["TPM", "TPMError", "TPMStateError", "Identity", "XEN_VTPM_IDENTITY",
           "IBM_SWTPM_IDENTITY", "TPMDecodeError"]

_HOME = {"TPM": "engine", "TPMError": "engine", "TPMStateError": "engine",
         "Identity": "identity", "XEN_VTPM_IDENTITY": "identity",
         "IBM_SWTPM_IDENTITY": "identity", "TPMDecodeError": "marshal"}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    import importlib

    value = getattr(importlib.import_module("." + home, __name__), name)
    globals()[name] = value
    return value
