"""Command auditing (Part 1 sec. 8, Part 3 8): the audit digest chain over the
audited ordinals, GetAuditDigest(Signed), SetOrdinalAuditStatus.

After every successful audited command the TPM extends auditDigest with a
TPM_AUDIT_EVENT_IN (the input parameter digest) and a TPM_AUDIT_EVENT_OUT
(the output parameter digest), both carrying the audit monotonic counter,
which counts up whenever a new digest chain starts.  The Xen vTPM audits
nothing until the owner asks; a libtpms-like identity starts with libtpms's
default set (the owner- and EK-related commands).  OwnerClear restores the
default."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import sha1
from ..engine import CHECK_ALL, CHECK_ALLOW_NO_OWNER, T0, T1, T10, TPMError, command
from ..marshal import Writer
from ..structures import (TPM_AUDIT_EVENT_IN, TPM_AUDIT_EVENT_OUT, TPM_COUNTER_VALUE,
                          TPM_SIGN_INFO)
from .keys import sign_key

if TYPE_CHECKING:
    from ..engine import Ctx, TPM
    from ..identity import Identity
    from ..marshal import Reader

O = C.TPM_ORD
DEFAULT_AUDITED = frozenset({
    O.TPM_ORD_ActivateIdentity, O.TPM_ORD_AuthorizeMigrationKey, O.TPM_ORD_ChangeAuthOwner,
    O.TPM_ORD_ConvertMigrationBlob, O.TPM_ORD_CreateMigrationBlob, O.TPM_ORD_CreateWrapKey,
    O.TPM_ORD_DisableForceClear, O.TPM_ORD_DisableOwnerClear, O.TPM_ORD_DisablePubekRead,
    O.TPM_ORD_ForceClear, O.TPM_ORD_MakeIdentity, O.TPM_ORD_OwnerClear, O.TPM_ORD_OwnerReadPubek,
    O.TPM_ORD_OwnerSetDisable, O.TPM_ORD_PhysicalDisable, O.TPM_ORD_PhysicalEnable,
    O.TPM_ORD_PhysicalSetDeactivated, O.TPM_ORD_ReadPubek, O.TPM_ORD_SetOrdinalAuditStatus,
    O.TPM_ORD_SetOwnerInstall, O.TPM_ORD_SetTempDeactivated, O.TPM_ORD_TakeOwnership,
})
NOT_AUDITABLE = frozenset({O.TPM_ORD_GetAuditDigest, O.TPM_ORD_GetAuditDigestSigned,
                           O.TPM_ORD_GetOrdinalAuditStatus})


def default_audited(identity: Identity) -> set[int]:
    """The audited ordinals of a new (or cleared) TPM: none on the Xen vTPM."""
    return set(DEFAULT_AUDITED) if identity.audit_by_default else set()


def _counter(tpm: TPM) -> TPM_COUNTER_VALUE:
    return TPM_COUNTER_VALUE(bytes(4), tpm.perm.audit_counter)


def audit(tpm: TPM, ctx: Ctx, out: bytes) -> None:
    """Extend the audit digest for a successful audited command."""
    if tpm.audit_digest == bytes(20):
        tpm.perm.audit_counter += 1          # a new chain starts
    ordinal = ctx.ordinal.to_bytes(4, "big")
    encrypted = ctx.transport is not None and ctx.transport.encrypt
    if ctx.audit_io is not None:            # ExecuteTransport audits H1 / H2
        in_digest, out_digest = ctx.audit_io
    elif encrypted:
        # a command in an encrypted transport session: its parameters are not audited
        in_digest, out_digest = sha1(ordinal), sha1(bytes(4), ordinal)
    else:
        in_digest = sha1(ordinal, ctx.data[ctx.mark_pos:ctx.param_end])
        out_digest = sha1(bytes(4), ordinal, out[ctx.out_skip:])
    count = _counter(tpm)
    event_in = TPM_AUDIT_EVENT_IN(in_digest, count)
    tpm.audit_digest = sha1(tpm.audit_digest, event_in.to_bytes())
    if ctx.ordinal != C.TPM_ORD_SaveState:   # SaveState audits its input only
        event_out = TPM_AUDIT_EVENT_OUT(out_digest, count)
        tpm.audit_digest = sha1(tpm.audit_digest, event_out.to_bytes())


def _ord_list(tpm: TPM, start: int = 0) -> bytes:
    return b"".join(o.to_bytes(4, "big") for o in sorted(tpm.perm.audited) if o >= start)


@command(C.TPM_ORD_GetAuditDigest)
def GetAuditDigest(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    start = r.u32()
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    return (_counter(tpm).to_bytes() + tpm.audit_digest + b"\x00"
            + Writer().sized32(_ord_list(tpm, start)).getvalue())


@command(C.TPM_ORD_GetAuditDigestSigned)
def GetAuditDigestSigned(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    handle = r.u32()
    ctx.mark(r)
    close = r.bool()
    anti_replay = r.digest()
    ctx.start(r, T10, CHECK_ALL)
    key = sign_key(tpm, ctx, handle, (C.TPM_KEY_SIGNING, C.TPM_KEY_IDENTITY, C.TPM_KEY_LEGACY))
    if key.blob.algorithmParms.sigScheme not in (C.TPM_SS_RSASSAPKCS1v15_SHA1,
                                                 C.TPM_SS_RSASSAPKCS1v15_INFO):
        raise TPMError(C.TPM_INVALID_KEYUSAGE)
    ord_digest = sha1(_ord_list(tpm))
    counter, digest = _counter(tpm).to_bytes(), tpm.audit_digest
    info = TPM_SIGN_INFO(b"ADIG", anti_replay, digest + counter + ord_digest)
    sig = key.rsa.sign_sha1_digest(sha1(info.to_bytes()))
    if close:
        if key.usage != C.TPM_KEY_IDENTITY:
            raise TPMError(C.TPM_INVALID_KEYUSAGE)
        tpm.audit_digest = bytes(20)
    return counter + digest + ord_digest + Writer().sized32(sig).getvalue()


@command(C.TPM_ORD_SetOrdinalAuditStatus)
def SetOrdinalAuditStatus(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    ordinal = r.u32()
    state = r.bool()
    ctx.start(r, T1, CHECK_ALL)
    ctx.verify(0, tpm.perm.owner_auth, C.TPM_ET_OWNER)
    if state:
        if ordinal in NOT_AUDITABLE or ordinal not in C.TPM_ORD.__members__.values() and \
                ordinal not in (C.TSC_ORD_PhysicalPresence, C.TSC_ORD_ResetEstablishmentBit):
            raise TPMError(C.TPM_BAD_PARAMETER)
        tpm.perm.audited.add(ordinal)
    else:
        tpm.perm.audited.discard(ordinal)
    return b""
