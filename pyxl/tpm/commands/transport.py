"""Transport sessions: EstablishTransport, ExecuteTransport,
ReleaseTransportSigned (Part 3 24), in libtpms's order of checks."""

from __future__ import annotations

import struct
from hmac import compare_digest as _eq
from typing import TYPE_CHECKING

from .. import constants as C
from ..crypto import HmacSha1, nonce, sha1
from ..engine import COMMANDS, CHECK_ALL, T10, T21, TPMError, command, trailer_fields
from ..marshal import Reader, TPMDecodeError, Writer
from ..structures import TPM_SIGN_INFO, TPM_STORE_PUBKEY, TPM_TRANSPORT_PUBLIC, TPMStructError
from ..transport import (SPECIAL, TPM_HANDLE_TRANS_BASE, TPM_TRANSPORT_ENCRYPT,
                         TPM_TRANSPORT_EXCLUSIVE, TransportSession, check_scheme,
                         log_in, log_out, session_crypt, transport_auth, wrap_info)
from .admin import current_ticks
from .keys import check_pcr_binding, key_pcr_info, use_key

if TYPE_CHECKING:
    from ..engine import Ctx, TPM

_TRAILER = 4 + 20 + 1 + 20       # a request's authHandle, nonceOdd, continue, auth
_RSP_TRAILER = 20 + 1 + 20
# the auth trailers' length by a wrapped request's / response's tag
_AUTH_LEN: dict[int, int] = {C.TPM_TAG_RQU_AUTH1_COMMAND: _TRAILER,
                             C.TPM_TAG_RQU_AUTH2_COMMAND: 2 * _TRAILER}
_RSP_AUTH_LEN: dict[int, int] = {C.TPM_TAG_RSP_AUTH1_COMMAND: _RSP_TRAILER,
                                 C.TPM_TAG_RSP_AUTH2_COMMAND: 2 * _RSP_TRAILER}


def _u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


_HEADER = struct.Struct(">HII")          # a wrapped command's / response's header
_II = struct.Struct(">II")
# ExecuteTransport's returnCode, ordinal, currentTicks, locality, size of wrappedRsp
# (the response digest's parameters before H2, Part 3 24.2)
_OUT_DIGEST = struct.Struct(">IIQII")
_OUT_HEAD = struct.Struct(">QII")       # currentTicks, locality, size of wrappedRsp


def new_transport_handle(tpm: TPM) -> int:
    for slot in range(tpm.identity.max_sessions):
        h = TPM_HANDLE_TRANS_BASE | slot
        if h not in tpm.transports:
            return h
    raise TPMError(C.TPM_RESOURCES)


@command(C.TPM_ORD_EstablishTransport)
def EstablishTransport(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    enc_handle = r.u32()
    ctx.mark(r)
    pub_start = r.pos
    pub = TPM_TRANSPORT_PUBLIC.unmarshal(r)
    pub_bytes = ctx.data[pub_start:r.pos]
    secret = r.sized32("secret")
    ctx.start(r, T10, CHECK_ALL)
    if enc_handle == C.TPM_KH_TRANSPORT:
        # a plain secret: no key, no encryption
        if ctx.tag != C.TPM_TAG_RQU_COMMAND:
            raise TPMError(C.TPM_BADTAG)
        if pub.transAttributes & TPM_TRANSPORT_ENCRYPT:
            raise TPMError(C.TPM_BAD_SCHEME)
        if len(secret) != 20:
            raise TPMError(C.TPM_BAD_PARAM_SIZE)
        auth = secret
    else:
        key = tpm.key_by_handle(enc_handle)
        if key.usage not in (C.TPM_KEY_STORAGE, C.TPM_KEY_LEGACY):
            raise TPMError(C.TPM_INVALID_KEYUSAGE)
        check_pcr_binding(tpm, key_pcr_info(key), ctx.locality)
        use_key(tpm, ctx, enc_handle)
        try:
            plain = key.rsa.decrypt_oaep(secret)
        except ValueError:
            raise TPMError(C.TPM_DECRYPT_ERROR) from None
        try:
            auth = transport_auth(plain)
        except TPMStructError:
            raise
        except TPMDecodeError:
            raise TPMError(C.TPM_BAD_PARAM_SIZE) from None
    if pub.transAttributes & TPM_TRANSPORT_ENCRYPT:
        check_scheme(pub, tpm.perm.flags.FIPS, tpm.identity.berlios)
    nonce_even = nonce()
    s = TransportSession(new_transport_handle(tpm), pub, auth, nonce_even)
    ticks = current_ticks(tpm)
    if s.logging:
        params = sha1(_u32(ctx.ordinal), pub_bytes, _u32(len(secret)), secret)
        s.digest = log_in(s.digest, params)
        out_params = sha1(_u32(0), _u32(ctx.ordinal), _u32(ctx.locality), ticks.to_bytes(),
                          nonce_even)
        s.digest = log_out(s.digest, ticks, out_params, ctx.locality)
    tpm.transports[s.handle] = s
    if pub.transAttributes & TPM_TRANSPORT_EXCLUSIVE:
        tpm.transport_exclusive = s.handle
    ctx.out_skip = 4
    return _u32(s.handle) + _u32(ctx.locality) + ticks.to_bytes() + nonce_even


_trans_trailer = trailer_fields     # a transport session's trailer is an auth trailer's shape


def _check_trans(tpm: TPM, t: TransportSession, in_digest: bytes, odd: bytes, cont: int,
                 auth: bytes) -> HmacSha1:
    """Check the transport session's HMAC; the keyed HMAC, for the response's."""
    mac = tpm.macs.keyed(t.auth)
    if not _eq(mac.digest(in_digest, t.nonce_even, odd, bytes((cont,))), auth):
        raise TPMError(C.TPM_AUTH2FAIL)
    return mac


def _trans_response(ctx: Ctx, t: TransportSession, mac: HmacSha1, out_digest: bytes,
                    odd: bytes, cont: int) -> None:
    """Append the transport session's response trailer (t.nonce_even is the new one)."""
    c = bytes((cont,))
    ctx.extra_tail = t.nonce_even + c + mac.digest(out_digest, t.nonce_even, odd, c)
    ctx.extra_auths = 1


def _end_exclusive_unless(tpm: TPM, handle: int) -> None:
    if tpm.transport_exclusive and tpm.transport_exclusive != handle:
        tpm.end_transport(tpm.transport_exclusive)


def _pub_key_digest(tpm: TPM, handle: int) -> bytes:
    """SHA-1 of a loaded key's TPM_STORE_PUBKEY (the EK included)."""
    if handle == C.TPM_KH_EK:
        if tpm.perm.ek is None:
            raise TPMError(C.TPM_INVALID_KEYHANDLE)
        modulus = tpm.perm.ek.modulus()
    else:
        modulus = tpm.key_by_handle(handle).blob.pubKey.key
    return sha1(TPM_STORE_PUBKEY(modulus).to_bytes())


@command(C.TPM_ORD_ExecuteTransport)
def ExecuteTransport(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    wrapped = r.sized32("wrappedCmd")
    tpm.check_state(ctx.tag, CHECK_ALL)
    if ctx.tag != C.TPM_TAG_RQU_AUTH1_COMMAND:
        raise TPMError(C.TPM_BADTAG)
    handle, odd, cont, auth = _trans_trailer(r)
    if r.remaining:
        raise TPMError(C.TPM_BAD_PARAM_SIZE)
    try:
        return _execute_transport(tpm, ctx, wrapped, handle, odd, cont, auth)
    except (TPMError, TPMDecodeError) as e:
        if getattr(e, "rc", None) != C.TPM_DEFEND_LOCK_RUNNING:
            tpm.end_transport(handle)
        raise


def _execute_transport(tpm: TPM, ctx: Ctx, wrapped: bytes, handle: int, odd: bytes, cont: int,
                       auth: bytes) -> bytes:
    _end_exclusive_unless(tpm, handle)
    live = tpm.transports.get(handle)
    if live is None:
        raise TPMError(C.TPM_INVALID_AUTHHANDLE)
    t = live.copy()          # the wrapped command may end the session
    # parse the wrapped command's header and find its DATAw area
    if len(wrapped) < 10:
        raise TPMError(C.TPM_BAD_PARAM_SIZE)
    tag_w, size_w, ord_w = _HEADER.unpack_from(wrapped)
    if size_w != len(wrapped):
        raise TPMError(C.TPM_BAD_PARAM_SIZE)
    row = wrap_info(ord_w, COMMANDS)
    if row is None:
        raise TPMError(C.TPM_BAD_ORDINAL)
    e1 = 10 + row.in_handles
    auth_len = _AUTH_LEN.get(tag_w, 0)
    if size_w < e1 + auth_len:
        raise TPMError(C.TPM_BAD_PARAM_SIZE)
    len1 = size_w - e1 - auth_len
    cmd = wrapped
    if t.encrypt:
        cmd = session_crypt(t.public, t.auth, wrapped, e1, len1, t.nonce_even, odd, b"in")
    key_handles = row.key_handles
    if key_handles == SPECIAL:
        # FlushSpecific / SaveContext: a key handle only if the resourceType says so
        rr = Reader(cmd[14:])
        key_handles = 1 if rr.u32() == C.TPM_RT_KEY else 0
    h1 = sha1(cmd[6:10], cmd[e1:e1 + len1])              # ordinal || DATAw
    mac = _check_trans(tpm, t, sha1(_II.pack(ctx.ordinal, len(wrapped)), h1), odd, cont, auth)
    if not row.wrappable:
        raise TPMError(C.TPM_NO_WRAP_TRANSPORT)
    if t.logging:
        key_hash = bytes(20)
        if key_handles:
            k = [_pub_key_digest(tpm, int.from_bytes(cmd[10 + 4 * i:14 + 4 * i], "big"))
                 for i in range(key_handles)]
            key_hash = sha1(*k)
        t.digest = log_in(t.digest, h1, key_hash)
    # the wrapped command, as if sent on its own
    rsp = tpm.dispatch(cmd, ctx.locality, transport=t)
    ticks = current_ticks(tpm)
    tag2, size2, rc_w = _HEADER.unpack_from(rsp)         # a response has its 10 bytes
    if rc_w == 0:
        s2 = 10 + row.out_handles
        auth2 = _RSP_AUTH_LEN.get(tag2, 0)
        if size2 < s2 + auth2:
            raise TPMError(C.TPM_BAD_PARAM_SIZE)
        len2 = size2 - s2 - auth2
    else:
        s2, len2 = 10, 0
    h2 = sha1(_II.pack(rc_w, ord_w), rsp[s2:s2 + len2])
    t.nonce_even = nonce()
    out_digest = sha1(_OUT_DIGEST.pack(0, ctx.ordinal, ticks.currentTicks, ctx.locality,
                                       len(rsp)), h2)
    if t.logging:
        t.digest = log_out(t.digest, ticks, h2, ctx.locality)
    if t.encrypt:
        rsp = session_crypt(t.public, t.auth, rsp, s2, len2, t.nonce_even, odd, b"out")
    if tpm.transports.get(handle) is live:
        tpm.transports[handle] = t
    else:
        cont = 0             # the wrapped command ended the session
    if not cont:
        tpm.end_transport(handle)
    ctx.audit_io = (h1, h2)
    _trans_response(ctx, t, mac, out_digest, odd, cont)
    # currentTicks, locality, wrappedRsp (a TPM_SIZED_BUFFER)
    return _OUT_HEAD.pack(ticks.currentTicks, ctx.locality, len(rsp)) + rsp


@command(C.TPM_ORD_ReleaseTransportSigned)
def ReleaseTransportSigned(tpm: TPM, ctx: Ctx, r: Reader) -> bytes:
    key_handle = r.u32()
    ctx.mark(r)
    anti_replay = r.digest()
    param_end = r.pos
    # the last trailer is the transport session's; ctx.start sees only the key's.
    # As libtpms: state, tag, then both trailers parsed (TPM_AuthParams_Get)
    tpm.check_state(ctx.tag, CHECK_ALL)
    if ctx.tag not in T21:
        raise TPMError(C.TPM_BADTAG)
    n_key = 1 if ctx.tag == C.TPM_TAG_RQU_AUTH2_COMMAND else 0
    at = r.pos
    if n_key:
        _trans_trailer(r)
    key_trailers = ctx.data[at:r.pos]
    handle, odd, cont, auth = _trans_trailer(r)
    if r.remaining:
        raise TPMError(C.TPM_BAD_PARAM_SIZE)
    ctx.tag = C.TPM_TAG_RQU_AUTH1_COMMAND if n_key else C.TPM_TAG_RQU_COMMAND
    kr = Reader(ctx.data[:param_end] + key_trailers)
    kr.pos = param_end
    ctx.start(kr, (ctx.tag,), CHECK_ALL)
    try:
        _end_exclusive_unless(tpm, handle)
        t = tpm.transports.get(handle)
        if t is None:
            raise TPMError(C.TPM_INVALID_AUTHHANDLE)
        key = tpm.key_by_handle(key_handle)
        if key.blob.algorithmParms.sigScheme not in (C.TPM_SS_RSASSAPKCS1v15_SHA1,
                                                     C.TPM_SS_RSASSAPKCS1v15_INFO):
            raise TPMError(C.TPM_INAPPROPRIATE_SIG)
        if not n_key and key.blob.authDataUsage != C.TPM_AUTH_NEVER:
            raise TPMError(C.TPM_AUTHFAIL)
        if key.usage != C.TPM_KEY_SIGNING:
            raise TPMError(C.TPM_INVALID_KEYUSAGE)
        check_pcr_binding(tpm, key_pcr_info(key), ctx.locality)
        if n_key:
            ctx.verify(0, key.usage_auth, C.TPM_ET_KEYHANDLE, key_handle)
        in_digest = sha1(_u32(ctx.ordinal), anti_replay)
        mac = _check_trans(tpm, t, in_digest, odd, cont, auth)
        if not t.logging:
            raise TPMError(C.TPM_BAD_MODE)
    except TPMError as e:
        if e.rc != C.TPM_DEFEND_LOCK_RUNNING:
            tpm.end_transport(handle)
        raise
    ticks = current_ticks(tpm)
    t.digest = log_out(t.digest, ticks, in_digest, ctx.locality)
    info = TPM_SIGN_INFO(b"TRAN", anti_replay, t.digest)
    sig = key.rsa.sign_sha1_digest(sha1(info.to_bytes()))
    out = _u32(ctx.locality) + ticks.to_bytes() + Writer().sized32(sig).getvalue()
    tpm.end_transport(handle)
    t.nonce_even = nonce()
    _trans_response(ctx, t, mac, sha1(bytes(4), _u32(ctx.ordinal), out), odd, 0)
    return out
