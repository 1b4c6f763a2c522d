"""Migration: AuthorizeMigrationKey (Part 3 11.3).

Only the owner's approval of a migration destination is implemented; the
commands that use it (CreateMigrationBlob, ConvertMigrationBlob, MigrateKey,
the CMK family) are not, and TPM_CAP_ORD says so.
"""

from __future__ import annotations

from .. import constants as C
from ..crypto import sha1
from ..engine import CHECK_ALL, T1, TPMError, command
from ..structures import TPM_PUBKEY


@command(C.TPM_ORD_AuthorizeMigrationKey)
def AuthorizeMigrationKey(tpm, ctx, r):
    """-> TPM_MIGRATIONKEYAUTH: migrationKey, migrationScheme and
    SHA-1(migrationKey || migrationScheme || tpmProof), which binds the
    approval to this TPM and its current owner."""
    ctx.mark(r)
    scheme = r.u16()
    key = TPM_PUBKEY.unmarshal(r)
    rsa = key.algorithmParms.rsa() if key.algorithmParms.algorithmID == C.TPM_ALG_RSA else None
    ctx.start(r, T1, CHECK_ALL)
    # at least the strength of a 2048-bit RSA key with the default exponent
    if rsa is None or rsa.keyLength < 2048 or rsa.exponent_int != 65537:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    if key.algorithmParms.encScheme != C.TPM_ES_RSAESOAEP_SHA1_MGF1:
        raise TPMError(C.TPM_INAPPROPRIATE_ENC)
    pub = key.to_bytes()
    sch = scheme.to_bytes(2, "big")
    return pub + sch + sha1(pub, sch, tpm.perm.tpm_proof)
