"""Delegation, the family table part: Delegate_Manage and Delegate_ReadTable
(Part 3 19.1, 19.6; Part 2 20).

The family table lives in permanent data (state.py).  Delegate rows, DSAP
sessions and the blob commands (CreateKeyDelegation, CreateOwnerDelegation,
LoadOwnerDelegation, UpdateVerification, VerifyDelegation) are not
implemented: the delegate table is always empty, so ReadTable lists no
delegate rows and no command is ever authorised by a delegation.
"""

from __future__ import annotations

from .. import constants as C
from ..engine import CHECK_ALLOW_NO_OWNER, T0, T10, FamilyRow, TPMError, command
from ..marshal import Writer

FAMILY_ROWS = 16            # TPM_CAP_PROP_FAMILYROWS (the emulator's and swtpm's build)
DELEGATE_ROWS = 4           # TPM_CAP_PROP_DELEGATE_ROW
MAX_NV_WRITE_NOOWNER = 64   # TPM_MAX_NV_WRITE_NOOWNER

# TPM_FAMILY_OPERATION (Part 2 20.11) and TPM_FAMILY_FLAGS (20.12)
TPM_FAMILY_CREATE = 1
TPM_FAMILY_ENABLE = 2
TPM_FAMILY_ADMIN = 3
TPM_FAMILY_INVALIDATE = 4
TPM_DELEGATE_ADMIN_LOCK = 0x00000002
TPM_FAMFLAG_ENABLED = 0x00000001


def family_entry(f: FamilyRow) -> bytes:
    """TPM_FAMILY_TABLE_ENTRY as ReadTable returns it."""
    return (Writer().u16(C.TPM_TAG_FAMILY_TABLE_ENTRY).u8(f.label).u32(f.family_id)
            .u32(f.verification_count).u32(f.flags).getvalue())


def _row_of(tpm, family_id: int) -> int:
    for row, f in tpm.perm.families.items():
        if f.family_id == family_id:
            return row
    raise TPMError(C.TPM_BADINDEX)


def _bool_op(data: bytes) -> bool:
    if len(data) != 1:
        raise TPMError(C.TPM_BAD_PARAM_SIZE)
    return bool(data[0])


@command(C.TPM_ORD_Delegate_Manage)
def Delegate_Manage(tpm, ctx, r):
    ctx.mark(r)                  # familyID is a parameter (HMAC'ed), not a handle
    family_id = r.u32()
    op = r.u32()
    op_data = r.sized32("opData")
    ctx.start(r, T10, CHECK_ALLOW_NO_OWNER)
    p = tpm.perm
    row = _row_of(tpm, family_id) if op != TPM_FAMILY_CREATE else None
    counted = False
    if ctx.n_auth:
        ctx.verify(0, p.owner_auth, C.TPM_ET_OWNER)
    else:
        if tpm.owned or not tpm.identity.unowned_delegate_manage:
            raise TPMError(C.TPM_AUTHFAIL)
        if row is not None and p.families[row].flags & TPM_DELEGATE_ADMIN_LOCK:
            raise TPMError(C.TPM_DELEGATE_LOCK)
        if p.no_owner_nv_write + 1 > MAX_NV_WRITE_NOOWNER:
            raise TPMError(C.TPM_MAXNVWRITES)
        counted = True
    _end_sessions(tpm, ctx)
    if op == TPM_FAMILY_CREATE:
        free = next((i for i in range(FAMILY_ROWS) if i not in p.families), None)
        if free is None:
            raise TPMError(C.TPM_NOSPACE)
        if len(op_data) != 1:
            raise TPMError(C.TPM_BAD_PARAM_SIZE)
        p.last_family_id += 1
        p.families[free] = FamilyRow(op_data[0], p.last_family_id)
        out = Writer().u32(4).u32(p.last_family_id).getvalue()
    elif op == TPM_FAMILY_ADMIN:
        f = p.families[row]
        f.flags = (f.flags | TPM_DELEGATE_ADMIN_LOCK if _bool_op(op_data)
                   else f.flags & ~TPM_DELEGATE_ADMIN_LOCK)
        out = Writer().u32(0).getvalue()
    elif op == TPM_FAMILY_ENABLE:
        f = p.families[row]
        f.flags = (f.flags | TPM_FAMFLAG_ENABLED if _bool_op(op_data)
                   else f.flags & ~TPM_FAMFLAG_ENABLED)
        out = Writer().u32(0).getvalue()
    elif op == TPM_FAMILY_INVALIDATE:
        del p.families[row]
        out = Writer().u32(0).getvalue()
    else:
        raise TPMError(C.TPM_BAD_PARAMETER)
    if counted:
        p.no_owner_nv_write += 1
    return out


def _end_sessions(tpm, ctx) -> None:
    """A change of the delegation tables ends sessions: libtpms every OSAP/DSAP
    session (the command's own included, so it answers continueAuthSession
    FALSE); the emulator every other session."""
    own = ctx.auths[0].handle if ctx.n_auth else None
    if tpm.identity.unowned_delegate_manage:          # libtpms
        for h, s in list(tpm.sessions.items()):
            if s.protocol == C.TPM_PID_OSAP:
                if h == own:
                    ctx.auths[0].cont = 0
                else:
                    del tpm.sessions[h]
    else:
        for h in list(tpm.sessions):
            if h != own:
                del tpm.sessions[h]


@command(C.TPM_ORD_Delegate_ReadTable)
def Delegate_ReadTable(tpm, ctx, r):
    ctx.start(r, T0, CHECK_ALLOW_NO_OWNER)
    fam = b"".join(family_entry(f) for _, f in sorted(tpm.perm.families.items()))
    return Writer().sized32(fam).u32(0).getvalue()     # no delegate rows (see above)
