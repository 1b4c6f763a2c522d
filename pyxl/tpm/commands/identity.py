"""Attestation identities and certification: MakeIdentity, ActivateIdentity,
Quote2, CertifyKey (Part 3 14-16) -- what a vTPM manager asks of the
hardware TPM to make and activate its group keys."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import hmac_sha1, sha1
from ..engine import CHECK_ALL, T10, T21, T210, TPMError, command
from ..marshal import TPMDecodeError, Writer
from ..structures import (TPM_ASYM_CA_CONTENTS, TPM_CAP_VERSION_INFO, TPM_CERTIFY_INFO,
                          TPM_CERTIFY_INFO2, TPM_CMK_MIGAUTH, TPM_PCR_INFO_LONG,
                          TPM_EK_BLOB, TPM_IDENTITY_CONTENTS,
                          TPM_PCR_INFO_SHORT, TPM_PCR_SELECTION, TPM_QUOTE_INFO2, TPM_SIGN_INFO,
                          TPM_STORE_ASYMKEY, TPM_STORE_PUBKEY, TPM_STRUCT_VER, TPM_VERSION,
                          TPMBadValue, unmarshal_any_key)
from .admin import current_ticks
from .keys import (check_key_template, check_pcr_binding, fill_creation, key_properties,
                   parse_pcr_info, sign_key)

if TYPE_CHECKING:
    from ..engine import Ctx, TPM
    from ..marshal import Reader


@command(C.TPM_ORD_MakeIdentity)
def MakeIdentity(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    enc_auth = r.digest()
    label_digest = r.digest()
    info = unmarshal_any_key(r)
    ctx.start(r, T21, CHECK_ALL)
    key_properties(info, 2048)           # libtpms: before the sessions
    srk = tpm.key_by_handle(C.TPM_KH_SRK)  # CHECK_ALL: owned, so the SRK is there
    owner_i = ctx.n_auth - 1             # the owner's session is the last one
    # libtpms TPM_Process_MakeIdentity: the owner first (TPM_Auth2data_Check),
    # then the SRK (TPM_Authdata_Check) or, without its session, its authDataUsage
    ctx.verify(owner_i, tpm.perm.owner_auth, C.TPM_ET_OWNER, allow_oiap=False,
               fail=C.TPM_AUTH2FAIL)
    if ctx.n_auth == 2:
        ctx.verify(0, srk.usage_auth, C.TPM_ET_SRK, C.TPM_KH_SRK, fail=C.TPM_AUTHFAIL)
    elif srk.blob.authDataUsage != C.TPM_AUTH_NEVER:
        raise TPMError(C.TPM_AUTHFAIL)
    id_auth = ctx.decrypt_auth(enc_auth, owner_i)
    parms = info.algorithmParms
    if info.keyUsage != C.TPM_KEY_IDENTITY or info.keyFlags & 0x2:
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if (parms.encScheme != C.TPM_ES_NONE or parms.sigScheme != C.TPM_SS_RSASSAPKCS1v15_SHA1):
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    bits = check_key_template(info, loading=True)
    if bits != 2048:
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    pcr = parse_pcr_info(info.PCRInfo, info.is_key12)
    if pcr is not None:
        fill_creation(tpm, pcr, ctx.locality)
        info.PCRInfo = pcr.to_bytes()
    rsa = tpm.key_source(bits)
    info.pubKey = TPM_STORE_PUBKEY(rsa.modulus())
    asym = TPM_STORE_ASYMKEY(C.TPM_PT_ASYM, id_auth, tpm.perm.tpm_proof,
                             sha1(info.public_bytes()), rsa.prime())
    info.encData = srk.rsa.encrypt_oaep(asym.to_bytes())
    contents = TPM_IDENTITY_CONTENTS(TPM_STRUCT_VER(), C.TPM_ORD_MakeIdentity, label_digest,
                                     info.pubkey())
    binding = rsa.sign_sha1_digest(sha1(contents.to_bytes()))
    return info.to_bytes() + Writer().sized32(binding).getvalue()


@command(C.TPM_ORD_ActivateIdentity)
def ActivateIdentity(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    blob = r.sized32("blob")
    ctx.start(r, T21, CHECK_ALL)
    # libtpms TPM_Process_ActivateIdentity: the owner (the last trailer,
    # TPM_Authdata_Check) before the key, then the key's session
    # (TPM_Auth2data_Check) or, without one, its authDataUsage must be NEVER
    ctx.verify(ctx.n_auth - 1, tpm.perm.owner_auth, C.TPM_ET_OWNER, fail=C.TPM_AUTHFAIL)
    key = tpm.key_by_handle(handle)
    if ctx.n_auth == 2:
        ctx.verify(0, key.usage_auth, C.TPM_ET_KEYHANDLE, handle, fail=C.TPM_AUTH2FAIL)
    elif key.blob.authDataUsage != C.TPM_AUTH_NEVER:
        raise TPMError(C.TPM_AUTHFAIL)
    if key.usage != C.TPM_KEY_IDENTITY:
        raise TPMError(C.TPM_BAD_PARAMETER)
    if tpm.perm.ek is None:
        raise TPMError(C.TPM_NO_ENDORSEMENT)
    try:
        plain = tpm.perm.ek.decrypt_oaep(blob)
    except ValueError:
        raise TPMError(C.TPM_DECRYPT_ERROR) from None
    id_digest = sha1(key.blob.pubkey().to_bytes())
    try:
        if plain[:2] == b"\x00\x0c":
            act = TPM_EK_BLOB.from_bytes(plain).activate()
            if act.idDigest != id_digest:
                raise TPMError(C.TPM_BAD_PARAMETER)
            info = act.pcrInfo
            if not tpm.check_locality(info.localityAtRelease, ctx.locality):
                raise TPMError(C.TPM_BAD_LOCALITY)
            if info.pcrSelection.indices() and tpm.pcr_composite_hash(
                    info.pcrSelection.pcrSelect) != info.digestAtRelease:
                raise TPMError(C.TPM_WRONGPCRVAL)
            return act.sessionKey.to_bytes()
        ca = TPM_ASYM_CA_CONTENTS.from_bytes(plain)
    except TPMBadValue as e:
        # an ekType other than TPM_EK_TYPE_ACTIVATE is TPM_BAD_TYPE, a defect of the blob is not
        raise TPMError(C.TPM_BAD_TYPE if e.rc == C.TPM_BAD_TYPE else C.TPM_BAD_PARAMETER) from None
    except TPMDecodeError:
        raise TPMError(C.TPM_BAD_PARAMETER) from None
    if ca.idDigest != id_digest:
        raise TPMError(C.TPM_BAD_PARAMETER)
    return ca.sessionKey.to_bytes()


@command(C.TPM_ORD_Quote2)
def Quote2(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    external = r.digest()
    sel = TPM_PCR_SELECTION.unmarshal(r)
    add_version = r.bool()
    ctx.start(r, T10, CHECK_ALL)
    key = sign_key(tpm, ctx, handle, (C.TPM_KEY_SIGNING, C.TPM_KEY_IDENTITY, C.TPM_KEY_LEGACY))
    if key.blob.algorithmParms.sigScheme not in (C.TPM_SS_RSASSAPKCS1v15_SHA1,
                                                 C.TPM_SS_RSASSAPKCS1v15_INFO):
        raise TPMError(C.TPM_INAPPROPRIATE_SIG)
    if len(sel.pcrSelect) > C.TPM_NUM_PCR_SELECT:
        raise TPMError(C.TPM_INVALID_PCR_INFO)
    loc = 1 << ctx.locality if 0 <= ctx.locality <= 4 else 0
    short = TPM_PCR_INFO_SHORT(sel, loc, tpm.pcr_composite_hash(sel.pcrSelect))
    signed = TPM_QUOTE_INFO2(external, short).to_bytes()
    version = b""
    if add_version:
        i = tpm.identity
        version = TPM_CAP_VERSION_INFO(TPM_VERSION(*i.version), i.spec_level, i.errata_rev,
                                       i.vendor_id, i.vendor_specific).to_bytes()
    sig = key.rsa.sign_sha1_digest(sha1(signed + version))
    return short.to_bytes() + Writer().sized32(version).sized32(sig).getvalue()


@command(C.TPM_ORD_TickStampBlob)
def TickStampBlob(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    anti_replay = r.digest()
    digest = r.digest()
    ctx.start(r, T10, CHECK_ALL)
    key = sign_key(tpm, ctx, handle, (C.TPM_KEY_SIGNING, C.TPM_KEY_IDENTITY, C.TPM_KEY_LEGACY))
    if key.blob.algorithmParms.sigScheme not in (C.TPM_SS_RSASSAPKCS1v15_SHA1,
                                                 C.TPM_SS_RSASSAPKCS1v15_INFO):
        raise TPMError(C.TPM_INAPPROPRIATE_SIG)
    ticks = current_ticks(tpm).to_bytes()
    info = TPM_SIGN_INFO(b"TSTP", anti_replay, digest + ticks)
    sig = key.rsa.sign_sha1_digest(sha1(info.to_bytes()))
    return ticks + Writer().sized32(sig).getvalue()


@command(C.TPM_ORD_CertifyKey)
def CertifyKey(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    cert_handle = r.u32()
    key_handle = r.u32()
    ctx.mark(r)
    anti_replay = r.digest()
    ctx.start(r, T210, CHECK_ALL)
    cert = tpm.key_by_handle(cert_handle)
    key = tpm.key_by_handle(key_handle)
    # AUTH2: certifying key, then key; AUTH1: whichever of the two needs auth
    needs = [k.blob.authDataUsage != C.TPM_AUTH_NEVER for k in (cert, key)]
    if ctx.n_auth == 2:
        order = [(cert_handle, cert), (key_handle, key)]
    else:
        order = [hk for hk, n in zip(((cert_handle, cert), (key_handle, key)), needs) if n]
        if len(order) != ctx.n_auth:
            raise TPMError(C.TPM_AUTHFAIL)
    for i, (h, k) in enumerate(order):
        ctx.verify(i, k.usage_auth, C.TPM_ET_KEYHANDLE, h)
    if cert.usage not in (C.TPM_KEY_SIGNING, C.TPM_KEY_IDENTITY, C.TPM_KEY_LEGACY):
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if cert.blob.algorithmParms.sigScheme != C.TPM_SS_RSASSAPKCS1v15_SHA1:
        raise TPMError(C.TPM_INAPPROPRIATE_SIG)
    check_pcr_binding(tpm, parse_pcr_info(cert.blob.PCRInfo, cert.blob.is_key12), ctx.locality)
    b = key.blob
    info = TPM_CERTIFY_INFO(TPM_STRUCT_VER(), b.keyUsage, b.keyFlags, b.authDataUsage,
                            b.algorithmParms, sha1(b.pubKey.key), anti_replay, 0,
                            b"" if b.is_key12 else b.PCRInfo)
    sig = cert.rsa.sign_sha1_digest(sha1(info.to_bytes()))
    return info.to_bytes() + Writer().sized32(sig).getvalue()



@command(C.TPM_ORD_CertifyKey2)
def CertifyKey2(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    """CertifyKey with a TPM_CERTIFY_INFO2 (PCR_INFO_SHORT, payload type): the key
    first, then the certifying key (AUTH2: key, cert; AUTH1: cert), as libtpms.
    For a certified-migration key, migrationPubDigest must be the digest of
    the TPM_MSA_COMPOSITE it was made with (its migrationAuth proves it), and
    the certificate names SHA-1(migrationPubDigest || payload)."""
    key_handle = r.u32()
    cert_handle = r.u32()
    ctx.mark(r)
    msa_digest = r.digest()                      # migrationPubDigest (CMKs only)
    anti_replay = r.digest()
    ctx.start(r, T210, CHECK_ALL)
    key = tpm.key_by_handle(key_handle)
    cert = tpm.key_by_handle(cert_handle)
    check_pcr_binding(tpm, parse_pcr_info(key.blob.PCRInfo, key.blob.is_key12), ctx.locality)
    check_pcr_binding(tpm, parse_pcr_info(cert.blob.PCRInfo, cert.blob.is_key12), ctx.locality)
    if cert.blob.algorithmParms.sigScheme not in (C.TPM_SS_RSASSAPKCS1v15_SHA1,
                                                  C.TPM_SS_RSASSAPKCS1v15_INFO):
        raise TPMError(C.TPM_BAD_KEY_PROPERTY)
    if ctx.n_auth == 2:
        ctx.verify(0, key.usage_auth, C.TPM_ET_KEYHANDLE, key_handle)
    elif key.blob.authDataUsage == C.TPM_AUTH_ALWAYS:
        raise TPMError(C.TPM_AUTHFAIL)
    if ctx.n_auth:
        ctx.verify(ctx.n_auth - 1, cert.usage_auth, C.TPM_ET_KEYHANDLE, cert_handle)
    elif cert.blob.authDataUsage != C.TPM_AUTH_NEVER:
        raise TPMError(C.TPM_AUTHFAIL)
    cmk = key.payload in (C.TPM_PT_MIGRATE_RESTRICTED, C.TPM_PT_MIGRATE_EXTERNAL)
    if cert.usage == C.TPM_KEY_IDENTITY and key.blob.keyFlags & 0x2 and \
            not (key.blob.keyFlags & 0x10 and cmk):
        # an identity certifies only keys that stay in the TPM or move under an MA's control
        raise TPMError(C.TPM_MIGRATEFAIL)
    if cert.usage not in (C.TPM_KEY_SIGNING, C.TPM_KEY_IDENTITY, C.TPM_KEY_LEGACY):
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    if key.usage not in (C.TPM_KEY_SIGNING, C.TPM_KEY_STORAGE, C.TPM_KEY_IDENTITY,
                         C.TPM_KEY_BIND, C.TPM_KEY_LEGACY):
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    b = key.blob
    payload: int = C.TPM_PT_ASYM
    authority = b""
    if cmk:
        m2 = TPM_CMK_MIGAUTH(msa_digest, sha1(b.pubkey().to_bytes()))
        if not hmac.compare_digest(hmac_sha1(tpm.perm.tpm_proof, m2.to_bytes()),
                                   key.migration_auth):
            raise TPMError(C.TPM_MA_SOURCE)
        payload, authority = key.payload, sha1(msa_digest, bytes((key.payload,)))
    pcr = b""
    info = parse_pcr_info(b.PCRInfo, b.is_key12)
    if isinstance(info, TPM_PCR_INFO_LONG):
        pcr = TPM_PCR_INFO_SHORT(info.releasePCRSelection, info.localityAtRelease,
                                 info.digestAtRelease).to_bytes()
    elif info is not None:
        pcr = TPM_PCR_INFO_SHORT(info.pcrSelection, C.TPM_LOC_ALL, info.digestAtRelease).to_bytes()
    c1 = TPM_CERTIFY_INFO2(payload, b.keyUsage, b.keyFlags, b.authDataUsage,
                           b.algorithmParms, sha1(b.pubKey.key), anti_replay, 0, pcr, authority)
    sig = cert.rsa.sign_sha1_digest(sha1(c1.to_bytes()))
    return c1.to_bytes() + Writer().sized32(sig).getvalue()
