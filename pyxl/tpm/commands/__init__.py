"""TPM 1.2 command handlers, one module per area; importing registers them."""

from . import (admin, audit, capability, cmk, context, counter, daa, delegate,  # noqa: F401
               identity, keys, migration, misc, nv, owner, pcr, session, transport)
