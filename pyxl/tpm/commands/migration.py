"""Migration: AuthorizeMigrationKey, CreateMigrationBlob, ConvertMigrationBlob
(Part 3 11.1-11.3), following libtpms's order of checks.

TPM_MS_REWRAP re-encrypts a key's TPM_STORE_ASYMKEY to the approved migration
key.  TPM_MS_MIGRATE splits the private key: its first 20 serialized bytes
(length + 16 bytes of p) become the OAEP seed, the rest travels in a
TPM_MIGRATE_ASYMKEY, OAEP-encoded with pHash = migrationAuth, XORed with a
random string handed to the caller, then RSA-OAEP encrypted to the migration
key.  MigrateKey lets a migration authority's TPM re-encrypt such a blob to
its final destination.  The certified-migration (CMK) commands reuse the
MIGRATE split and its inverse from here (commands/cmk.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import RSAKey, mgf1, random_bytes, xor
from ..engine import CHECK_ALL, READ_ONLY, T1, T10, T21, TPMError, command
from ..marshal import TPMDecodeError
from ..structures import (TPM_MIGRATE_ASYMKEY, TPM_MIGRATIONKEYAUTH, TPM_PUBKEY,
                          TPM_STORE_ASYMKEY)
from .keys import storage_parent, use_key

if TYPE_CHECKING:
    from ..engine import Ctx, LoadedKey, TPM
    from ..marshal import Reader

# none of them changes the state blob (tpm-serve need not re-serialize it)
READ_ONLY.update({C.TPM_ORD_AuthorizeMigrationKey, C.TPM_ORD_CreateMigrationBlob,
                  C.TPM_ORD_ConvertMigrationBlob, C.TPM_ORD_MigrateKey})

TPM_MS_MIGRATE = C.TPM_MS_MIGRATE
TPM_MS_REWRAP = C.TPM_MS_REWRAP
_H = 20     # SHA-1 digest size


@command(C.TPM_ORD_AuthorizeMigrationKey)
def AuthorizeMigrationKey(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
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
    approval = TPM_MIGRATIONKEYAUTH(key, scheme)
    approval.digest = approval.digest_for(tpm.perm.tpm_proof)
    return approval.to_bytes()


# ---------------------------------------------------------------- OAEP encoding with a given seed

def oaep_encode(message: bytes, em_len: int, p_hash: bytes, seed: bytes) -> bytes:
    """EME-OAEP encoding (PKCS#1 v2.0 9.1.1.1, no leading zero octet) with
    pHash and seed supplied by the caller, as TPM_MS_MIGRATE needs."""
    if em_len < 2 * _H + 1 + len(message):
        raise TPMError(C.TPM_ENCRYPT_ERROR)
    db = p_hash + bytes(em_len - len(message) - 2 * _H - 1) + b"\x01" + message
    masked_db = xor(db, mgf1(seed, len(db)))
    return xor(seed, mgf1(masked_db, _H)) + masked_db


def oaep_decode(em: bytes) -> tuple[bytes, bytes, bytes]:
    """Inverse of oaep_encode -> (message, pHash, seed); pHash is returned, not
    checked (it carries the key's migrationAuth)."""
    if len(em) < 2 * _H + 1:
        raise TPMError(C.TPM_DECRYPT_ERROR)
    masked_seed, masked_db = em[:_H], em[_H:]
    seed = xor(masked_seed, mgf1(masked_db, _H))
    db = xor(masked_db, mgf1(seed, len(masked_db)))
    rest = db[_H:].lstrip(b"\x00")
    if not rest or rest[0] != 1:
        raise TPMError(C.TPM_DECRYPT_ERROR)
    return rest[1:], db[:_H], seed


def encrypt_to(pub: TPM_PUBKEY, data: bytes) -> bytes:
    """RSA-OAEP("TCPA") encryption to a migration destination's public key."""
    try:
        rsa = RSAKey(int.from_bytes(pub.pubKey.key, "big"),
                     pub.algorithmParms.rsa().exponent_int)
        return rsa.encrypt_oaep(data)
    except (ValueError, TPMDecodeError):
        raise TPMError(C.TPM_ENCRYPT_ERROR) from None


def migrate_split(d1: TPM_STORE_ASYMKEY, p_hash: bytes, payload: int) -> bytes:
    """o1: the OAEP encoding (seed = the first 20 bytes of the serialized
    private key, pHash as given) of a TPM_MIGRATE_ASYMKEY carrying the rest."""
    k1k2 = len(d1.privKey).to_bytes(4, "big") + d1.privKey
    m1 = TPM_MIGRATE_ASYMKEY(payload, d1.usageAuth, d1.pubDataDigest, k1k2[_H:]).to_bytes()
    return oaep_encode(m1, len(m1) + 2 * _H + 1, p_hash, k1k2[:_H])


def migrate_join(o1: bytes) -> TPM_STORE_ASYMKEY:
    """Inverse of migrate_split: a TPM_STORE_ASYMKEY whose payload is the
    TPM_MIGRATE_ASYMKEY's and whose migrationAuth is the OAEP pHash."""
    m1_bytes, p_hash, seed = oaep_decode(o1)
    try:
        m1 = TPM_MIGRATE_ASYMKEY.from_bytes(m1_bytes)
    except TPMDecodeError:
        raise TPMError(C.TPM_BAD_PARAM_SIZE) from None
    if m1.payload not in (C.TPM_PT_MIGRATE, C.TPM_PT_MAINT, C.TPM_PT_CMK_MIGRATE):
        raise TPMError(C.TPM_INVALID_STRUCTURE)
    k1k2 = seed + m1.partPrivKey
    n = int.from_bytes(k1k2[:4], "big")
    if n > len(k1k2) - 4:
        raise TPMError(C.TPM_BAD_PARAM_SIZE)
    return TPM_STORE_ASYMKEY(m1.payload, m1.usageAuth, p_hash, m1.pubDataDigest, k1k2[4:4 + n])


def xor_and_encrypt(o1: bytes, pub: TPM_PUBKEY) -> tuple[bytes, bytes]:
    """-> (random, outData): o1 XOR a fresh random string, encrypted to pub."""
    rnd = random_bytes(len(o1))
    return rnd, encrypt_to(pub, xor(o1, rnd))


def decrypt_and_xor(parent: LoadedKey, in_data: bytes, rnd: bytes) -> bytes:
    """The destination's half of xor_and_encrypt: o1 back, with parent's key."""
    try:
        d1 = parent.rsa.decrypt_oaep(in_data)
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    if len(d1) != len(rnd):
        raise TPMError(C.TPM_BAD_PARAMETER)
    return xor(d1, rnd)


# ---------------------------------------------------------------- CreateMigrationBlob

@command(C.TPM_ORD_CreateMigrationBlob)
def CreateMigrationBlob(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """-> random, outData.  AUTH2: parent usage, then the key's migrationAuth
    (OIAP only); AUTH1 (parent needs no auth): the migrationAuth alone.  A
    non-migratable key's migrationAuth is tpmProof, so it cannot be authorized."""
    parent_handle = r.u32()
    ctx.mark(r)
    mtype = r.u16()
    mka = TPM_MIGRATIONKEYAUTH.unmarshal(r)
    mig_pub = mka.migrationKey
    enc = r.sized32("encData")
    ctx.start(r, T21, CHECK_ALL)
    parent = tpm.key_by_handle(parent_handle)
    if ctx.n_auth == 2:
        ctx.verify(0, parent.usage_auth, C.TPM_ET_KEYHANDLE, parent_handle)
    elif parent.blob.authDataUsage != C.TPM_AUTH_NEVER:
        raise TPMError(C.TPM_AUTHFAIL)
    storage_parent(parent)
    try:
        d1_bytes = parent.rsa.decrypt_oaep(enc)
        d1 = TPM_STORE_ASYMKEY.from_bytes(d1_bytes)
    except (ValueError, TPMDecodeError):
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    if d1.payload != C.TPM_PT_ASYM:
        raise TPMError(C.TPM_BAD_MIGRATION)
    ei = ctx.n_auth - 1
    try:
        ctx.verify(ei, d1.migrationAuth, allow_osap=False)
    except TPMError as e:
        # libtpms checks this trailer as the second one whatever the tag
        raise TPMError(C.TPM_AUTH2FAIL if e.rc == C.TPM_AUTHFAIL else e.rc) from None
    if mka.digest_for(tpm.perm.tpm_proof) != mka.digest:
        raise TPMError(C.TPM_AUTHFAIL)
    if mtype == TPM_MS_MIGRATE:
        o1 = migrate_split(d1, d1.migrationAuth, C.TPM_PT_MIGRATE)
        rnd, out = xor_and_encrypt(o1, mig_pub)
    elif mtype == TPM_MS_REWRAP:
        rnd = b""
        out = encrypt_to(mig_pub, d1_bytes)
    else:
        raise TPMError(C.TPM_BAD_PARAMETER)
    return (len(rnd).to_bytes(4, "big") + rnd + len(out).to_bytes(4, "big") + out)


@command(C.TPM_ORD_ConvertMigrationBlob)
def ConvertMigrationBlob(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """The destination side of TPM_MS_MIGRATE: undo the XOR and the OAEP
    encoding, rebuild the TPM_STORE_ASYMKEY and wrap it to parentHandle."""
    parent_handle = r.u32()
    ctx.mark(r)
    in_data = r.sized32("inData")
    rnd = r.sized32("random")
    ctx.start(r, T10, CHECK_ALL)
    parent = storage_parent(use_key(tpm, ctx, parent_handle))
    d2 = migrate_join(decrypt_and_xor(parent, in_data, rnd))
    if d2.payload != C.TPM_PT_MIGRATE:
        raise TPMError(C.TPM_BAD_MIGRATION)
    d2.payload = C.TPM_PT_ASYM
    out = parent.rsa.encrypt_oaep(d2.to_bytes())
    return len(out).to_bytes(4, "big") + out


@command(C.TPM_ORD_MigrateKey)
def MigrateKey(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """A migration authority's step (Part 3 11.5): decrypt inData with the
    TPM_KEY_MIGRATE key maKeyHandle, re-encrypt it to pubKey."""
    ma_handle = r.u32()
    ctx.mark(r)
    dest = TPM_PUBKEY.unmarshal(r)
    in_data = r.sized32("inData")
    ctx.start(r, T10, CHECK_ALL)
    ma = use_key(tpm, ctx, ma_handle)
    if ma.usage != C.TPM_KEY_MIGRATE:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if ma.blob.algorithmParms.encScheme != C.TPM_ES_RSAESOAEP_SHA1_MGF1:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    try:
        plain = ma.rsa.decrypt_oaep(in_data)
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    out = encrypt_to(dest, plain)
    return len(out).to_bytes(4, "big") + out
