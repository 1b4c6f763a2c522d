"""TPM 1.2 command handlers, one module per area; importing registers them."""

from . import (admin, audit, capability, context, counter, delegate, identity, keys,  # noqa: F401
               migration, misc, nv, owner, pcr, session, transport)
