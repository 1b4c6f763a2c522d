"""TPM 1.2 command handlers, one module per area; importing registers them."""

from . import (admin, audit, capability, context, counter, identity, keys, misc, nv,  # noqa: F401
               owner, pcr, session)
