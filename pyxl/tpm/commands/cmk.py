"""Certified migration keys (CMK): CMK_SetRestrictions, CMK_ApproveMA,
CMK_CreateKey, CMK_CreateTicket, CMK_CreateBlob, CMK_ConvertMigration
(Part 3 11.4-11.9), in libtpms's order of checks and with its return codes.

A CMK may only move to (or with the approval of) a migration authority (MA)
its creator named.  The owner approves a list of MA public-key digests, a
TPM_MSA_COMPOSITE, with CMK_ApproveMA (an HMAC under tpmProof).
CMK_CreateKey checks that ticket and gives the key the migrateAuthority flag,
payload TPM_PT_MIGRATE_RESTRICTED and migrationAuth =
HMAC(tpmProof, TPM_CMK_MIGAUTH(SHA-1(msaList), SHA-1(its TPM_PUBKEY))), so
only this TPM can tell later which list the key was made with.

CMK_CreateBlob moves a CMK with the MIGRATE split of migration.py, payload
TPM_PT_CMK_MIGRATE and pHash = SHA-1(SHA-1(msaList) || SHA-1(key's
TPM_PUBKEY)).  The destination is either an MA itself (TPM_MS_RESTRICT_MIGRATE)
or a key an MA approved in a signed TPM_CMK_AUTH (TPM_MS_RESTRICT_APPROVE): the
signature is checked by CMK_CreateTicket, whose HMAC ticket stands for it.
CMK_ConvertMigration on the destination TPM checks the same things against a
ticket of its own and re-wraps the key with payload TPM_PT_MIGRATE_EXTERNAL
and a migrationAuth under its own tpmProof; LoadKey2 then loads it as usual.
"""

from __future__ import annotations

from hmac import compare_digest as _eq
from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import RSAKey, hmac_sha1, sha1
from ..engine import CHECK_ALL, READ_ONLY, T1, TPMError, command
from ..marshal import Reader, TPMDecodeError
from ..structures import (TPM_CMK_AUTH, TPM_CMK_MA_APPROVAL, TPM_CMK_MIGAUTH,
                          TPM_CMK_SIGTICKET, TPM_MIGRATIONKEYAUTH, TPM_MSA_COMPOSITE,
                          TPM_PUBKEY, TPM_STORE_ASYMKEY, unmarshal_any_key)
from .keys import check_key_template, generate_key, storage_parent
from .migration import decrypt_and_xor, migrate_join, migrate_split, xor_and_encrypt

if TYPE_CHECKING:
    from ..engine import Ctx, TPM
    from ..structures import AnyKey, TPMStruct

_MIGRATABLE = C.TPM_KEY_FLAGS.migratable
_MIGRATE_AUTHORITY = C.TPM_KEY_FLAGS.migrateAuthority

# all but CMK_SetRestrictions leave the state blob alone (tpm-serve need not
# re-serialize it after them; a failed authorization marks it itself)
READ_ONLY.update({C.TPM_ORD_CMK_ApproveMA, C.TPM_ORD_CMK_CreateTicket, C.TPM_ORD_CMK_CreateKey,
                  C.TPM_ORD_CMK_CreateBlob, C.TPM_ORD_CMK_ConvertMigration})

# restrictDelegate bit that lets a DSAP session use a CMK of each usage
_DELEGATE_BIT: dict[int, int] = {
    C.TPM_KEY_SIGNING: C.TPM_CMK_DELEGATE_SIGNING,
    C.TPM_KEY_STORAGE: C.TPM_CMK_DELEGATE_STORAGE,
    C.TPM_KEY_BIND: C.TPM_CMK_DELEGATE_BIND,
    C.TPM_KEY_LEGACY: C.TPM_CMK_DELEGATE_LEGACY,
    C.TPM_KEY_MIGRATE: C.TPM_CMK_DELEGATE_MIGRATE,
}


def check_restrict_delegate(tpm: TPM, handle: int) -> None:
    """A DSAP session may use a CMK only for the usages the owner allowed
    with CMK_SetRestrictions (libtpms TPM_Key_CheckRestrictDelegate)."""
    key = tpm.keys.get(handle)
    if key is None or not key.blob.keyFlags & _MIGRATE_AUTHORITY:
        return
    if not tpm.perm.restrict_delegate & _DELEGATE_BIT.get(key.usage, 0):
        raise TPMError(C.TPM_INVALID_KEYUSAGE)


def _ticket(tpm: TPM, struct: TPMStruct) -> bytes:
    """An HMAC under tpmProof: what makes a CMK structure this TPM's own word."""
    return hmac_sha1(tpm.perm.tpm_proof, struct.to_bytes())


def _msa_list(data: bytes) -> TPM_MSA_COMPOSITE:
    """A TPM_MSA_COMPOSITE from its sized buffer (bytes after it are ignored, as libtpms)."""
    return TPM_MSA_COMPOSITE.unmarshal(Reader(data))


def _check_sig_ticket(tpm: TPM, sig_ticket: bytes, msa: TPM_MSA_COMPOSITE, signed: bytes) -> None:
    """sigTicket must be CMK_CreateTicket's ticket, by one of the MAs in the
    list, over `signed` (the digest of a TPM_CMK_AUTH)."""
    for d in msa.migAuthDigest:
        if _eq(_ticket(tpm, TPM_CMK_SIGTICKET(d, signed)), sig_ticket):
            return
    raise TPMError(C.TPM_MA_TICKET_SIGNATURE)


def _pubkey_digest(blob: AnyKey) -> bytes:
    return sha1(blob.pubkey().to_bytes())


# ---------------------------------------------------------------- owner commands

@command(C.TPM_ORD_CMK_SetRestrictions)
def CMK_SetRestrictions(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """Which CMK usages DSAP sessions may authorize (TPM_CMK_DELEGATE bits)."""
    ctx.mark(r)
    restriction = r.u32()
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    tpm.perm.restrict_delegate = restriction
    return b""


@command(C.TPM_ORD_CMK_ApproveMA)
def CMK_ApproveMA(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """-> HMAC(tpmProof, TPM_CMK_MA_APPROVAL(migrationAuthorityDigest)):
    the owner's approval of a TPM_MSA_COMPOSITE, for CMK_CreateKey."""
    ctx.mark(r)
    ma_digest = r.digest()
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    return _ticket(tpm, TPM_CMK_MA_APPROVAL(ma_digest))


@command(C.TPM_ORD_CMK_CreateTicket)
def CMK_CreateTicket(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """Verify an MA's signature over signedData; -> sigTicket =
    HMAC(tpmProof, TPM_CMK_SIGTICKET(SHA-1(verificationKey), signedData))."""
    ctx.mark(r)
    ver_key = TPM_PUBKEY.unmarshal(r)
    signed = r.digest()
    signature = r.sized32("signatureValue")
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    parms = ver_key.algorithmParms
    if parms.algorithmID != C.TPM_ALG_RSA:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    if parms.encScheme != C.TPM_ES_NONE:
        raise TPMError(C.TPM_INAPPROPRIATE_ENC)
    if parms.sigScheme not in (C.TPM_SS_RSASSAPKCS1v15_SHA1, C.TPM_SS_RSASSAPKCS1v15_INFO):
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    try:
        rsa = RSAKey(int.from_bytes(ver_key.pubKey.key, "big"), parms.rsa().exponent_int)
        good = rsa.verify_sha1_digest(signature, signed)
    except (ValueError, TPMDecodeError):
        good = False
    if not good:
        raise TPMError(C.TPM_BAD_SIGNATURE)
    return _ticket(tpm, TPM_CMK_SIGTICKET(sha1(ver_key.to_bytes()), signed))


# ---------------------------------------------------------------- the key

@command(C.TPM_ORD_CMK_CreateKey)
def CMK_CreateKey(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """CreateWrapKey for a CMK: keyInfo must be a migratable TPM_KEY12 with
    migrateAuthority set, migrationAuthorityApproval CMK_ApproveMA's ticket
    for migrationAuthorityDigest.  The parent's OSAP session ends here."""
    parent_handle = r.u32()
    ctx.mark(r)
    enc_usage = r.digest()
    info = unmarshal_any_key(r)
    approval = r.digest()
    ma_digest = r.digest()
    ctx.start(r, T1, CHECK_ALL)
    parent = tpm.key_by_handle(parent_handle)
    ctx.verify(0, parent.usage_auth, C.TPM_ET_KEYHANDLE, parent_handle, allow_oiap=False)
    bits = check_key_template(info)
    storage_parent(parent)
    if parent.blob.keyFlags & _MIGRATABLE:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if not info.keyFlags & _MIGRATABLE or not info.keyFlags & _MIGRATE_AUTHORITY:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if not _eq(_ticket(tpm, TPM_CMK_MA_APPROVAL(ma_digest)), approval):
        raise TPMError(C.TPM_MA_AUTHORITY)
    if info.keyUsage in (C.TPM_KEY_IDENTITY, C.TPM_KEY_AUTHCHANGE):
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if not info.is_key12:
        raise TPMError(C.TPM_INVALID_STRUCTURE)
    usage_auth = ctx.decrypt_auth(enc_usage)
    ctx.auths[0].cont = 0
    rsa = generate_key(tpm, ctx, info, bits)
    mig_auth = _ticket(tpm, TPM_CMK_MIGAUTH(ma_digest, _pubkey_digest(info)))
    asym = TPM_STORE_ASYMKEY(C.TPM_PT_MIGRATE_RESTRICTED, usage_auth, mig_auth,
                             sha1(info.public_bytes()), rsa.prime())
    info.encData = parent.rsa.encrypt_oaep(asym.to_bytes())
    return info.to_bytes()


# ---------------------------------------------------------------- moving it

@command(C.TPM_ORD_CMK_CreateBlob)
def CMK_CreateBlob(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """-> random, outData: the CMK whose TPM_STORE_ASYMKEY is encData, split
    for migrationKeyAuth's key.  pubSourceKeyDigest and msaList must be the
    ones the key was made with (its migrationAuth proves it)."""
    parent_handle = r.u32()
    ctx.mark(r)
    r.u16()                               # migrationType: libtpms goes by the approved scheme
    mka = TPM_MIGRATIONKEYAUTH.unmarshal(r)
    source_digest = r.digest()
    msa = _msa_list(r.sized32("msaList"))
    restrict_ticket = r.sized32("restrictTicket")
    sig_ticket = r.sized32("sigTicket")
    enc = r.sized32("encData")
    ctx.start(r, T1, CHECK_ALL)
    parent = tpm.key_by_handle(parent_handle)
    ctx.verify(0, parent.usage_auth, C.TPM_ET_KEYHANDLE, parent_handle)
    if parent.blob.keyFlags & _MIGRATABLE:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    storage_parent(parent)
    try:
        d1 = TPM_STORE_ASYMKEY.unmarshal(Reader(parent.rsa.decrypt_oaep(enc)))
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    except TPMDecodeError:
        raise TPMError(C.TPM_BAD_PARAM_SIZE) from None
    if d1.payload not in (C.TPM_PT_ASYM, C.TPM_PT_MIGRATE_RESTRICTED,
                          C.TPM_PT_MIGRATE_EXTERNAL):
        raise TPMError(C.TPM_INVALID_STRUCTURE)
    mig_key = mka.migrationKey.to_bytes()
    if not _eq(mka.digest_for(tpm.perm.tpm_proof), mka.digest):
        raise TPMError(C.TPM_AUTHFAIL)
    if d1.payload not in (C.TPM_PT_MIGRATE_RESTRICTED, C.TPM_PT_MIGRATE_EXTERNAL):
        raise TPMError(C.TPM_INVALID_STRUCTURE)
    msa_digest = sha1(msa.to_bytes())
    if not _eq(_ticket(tpm, TPM_CMK_MIGAUTH(msa_digest, source_digest)), d1.migrationAuth):
        raise TPMError(C.TPM_MA_AUTHORITY)
    dest_digest = sha1(mig_key)
    parms = mka.migrationKey.algorithmParms
    if mka.migrationScheme == C.TPM_MS_RESTRICT_MIGRATE:
        # the destination is one of the MAs itself
        if dest_digest not in msa.migAuthDigest:
            raise TPMError(C.TPM_MA_TICKET_SIGNATURE)
        if parms.algorithmID != C.TPM_ALG_RSA:
            raise TPMError(C.TPM_BAD_KEY_PROPERTY)
        if parms.encScheme != C.TPM_ES_RSAESOAEP_SHA1_MGF1:
            raise TPMError(C.TPM_INAPPROPRIATE_ENC)
        if parms.sigScheme != C.TPM_SS_NONE:
            raise TPMError(C.TPM_INVALID_KEYUSAGE)
        if restrict_ticket or sig_ticket:
            raise TPMError(C.TPM_BAD_PARAMETER)
    elif mka.migrationScheme == C.TPM_MS_RESTRICT_APPROVE:
        # an MA signed a TPM_CMK_AUTH naming this key and this destination
        sig = Reader(sig_ticket).digest()
        _check_sig_ticket(tpm, sig, msa, sha1(restrict_ticket))
        cmk_auth = TPM_CMK_AUTH.unmarshal(Reader(restrict_ticket))
        if not _eq(dest_digest, cmk_auth.destinationKeyDigest):
            raise TPMError(C.TPM_MA_DESTINATION)
        if not _eq(source_digest, cmk_auth.sourceKeyDigest):
            raise TPMError(C.TPM_MA_SOURCE)
    else:
        raise TPMError(C.TPM_BAD_PARAMETER)
    o1 = migrate_split(d1, sha1(msa_digest, source_digest), C.TPM_PT_CMK_MIGRATE)
    rnd, out = xor_and_encrypt(o1, mka.migrationKey)
    return len(rnd).to_bytes(4, "big") + rnd + len(out).to_bytes(4, "big") + out


@command(C.TPM_ORD_CMK_ConvertMigration)
def CMK_ConvertMigration(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """The destination's side: rebuild the CMK from CMK_CreateBlob's outData
    and random, check that an MA of its list approved parentHandle as its
    destination (restrictTicket, ticketed here by CMK_CreateTicket), -> the
    key's new encData under parentHandle (payload TPM_PT_MIGRATE_EXTERNAL)."""
    parent_handle = r.u32()
    ctx.mark(r)
    restrict = TPM_CMK_AUTH.unmarshal(r)
    sig_ticket = r.digest()
    migrated = unmarshal_any_key(r)
    msa_bytes = r.sized32("msaList")
    rnd = r.sized32("random")
    ctx.start(r, T1, CHECK_ALL)
    parent = tpm.key_by_handle(parent_handle)
    ctx.verify(0, parent.usage_auth, C.TPM_ET_KEYHANDLE, parent_handle)
    storage_parent(parent)
    d2 = migrate_join(decrypt_and_xor(parent, migrated.encData, rnd))
    migrated_digest = _pubkey_digest(migrated)
    msa = _msa_list(msa_bytes)
    msa_digest = sha1(msa.to_bytes())
    if not _eq(d2.migrationAuth, sha1(msa_digest, migrated_digest)):
        raise TPMError(C.TPM_AUTHFAIL)
    if parent.blob.keyFlags & _MIGRATABLE:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if d2.payload != C.TPM_PT_CMK_MIGRATE:
        raise TPMError(C.TPM_BAD_MIGRATION)
    d2.payload = C.TPM_PT_MIGRATE_EXTERNAL
    _check_sig_ticket(tpm, sig_ticket, msa, sha1(restrict.to_bytes()))
    if not _eq(restrict.destinationKeyDigest, _pubkey_digest(parent.blob)):
        raise TPMError(C.TPM_MA_DESTINATION)
    try:
        RSAKey.from_modulus_prime(int.from_bytes(migrated.pubKey.key, "big"),
                                  migrated.algorithmParms.rsa().exponent_int,
                                  int.from_bytes(d2.privKey, "big"))
    except (ValueError, TPMDecodeError):
        raise TPMError(C.TPM_BAD_PARAMETER) from None
    if not migrated.keyFlags & _MIGRATABLE or not migrated.keyFlags & _MIGRATE_AUTHORITY:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if not _eq(restrict.sourceKeyDigest, migrated_digest):
        raise TPMError(C.TPM_MA_SOURCE)
    d2.migrationAuth = _ticket(tpm, TPM_CMK_MIGAUTH(msa_digest, migrated_digest))
    out = parent.rsa.encrypt_oaep(d2.to_bytes())
    return len(out).to_bytes(4, "big") + out
