"""TPM 1.2 command handlers, one module per area; importing registers them."""

from . import admin, capability, keys, nv, owner, pcr, session  # noqa: F401
