"""The TPM's state blob: complete, versioned, deterministic.

    blob = MAGIC | u16 format version | u32 length | JSON body | SHA-256(body)

The body holds everything persistent (permanent flags and data: tpmProof,
owner and operator auth, EK, SRK, NV areas, dictionary-attack counter, the
CMK restrictDelegate bits -- written only when non-zero) and,
if TPM_SaveState ran and nothing has invalidated it since, the saved
volatile state (PCRs, STCLEAR flags, loaded keys) that TPM_Startup(ST_STATE)
restores.  Authorization and transport sessions are never saved; DAA
sessions are (as by libtpms: they live in TPM_STCLEAR_DATA).  JSON with
sorted keys makes dump(load(dump(x))) == dump(x) hold byte for byte.  Fields added within a
format version load with their defaults when absent; an incompatible layout
gets a new FORMAT_VERSION (and older engines refuse it).
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import TYPE_CHECKING, Any

from . import constants as C
from .crypto import RSAKey
from .marshal import Reader, TPMDecodeError
from .structures import (TPM_NV_DATA_PUBLIC, TPM_PERMANENT_FLAGS, TPM_STCLEAR_FLAGS,
                         unmarshal_any_key)

if TYPE_CHECKING:
    from .engine import TPM, LoadedKey

MAGIC = b"PYXLTPM12\x00"
FORMAT_VERSION = 3       # 2: + the delegation family table (1 still loads: no families)
READABLE_VERSIONS = (1, 2, 3)   # 3: + the delegate table (older blobs load with none)


def _h(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def _b(s: str | None, n: int | None = None) -> bytes | None:
    if s is None:
        return None
    return _req(s, n)


def _req(s: str | None, n: int | None = None) -> bytes:
    """A field that must be there (hex of n bytes)."""
    if s is None:
        raise ValueError("a required field is null")
    b = bytes.fromhex(s)
    if n is not None and len(b) != n:
        raise ValueError("expected %d bytes" % n)
    return b


def _rsa_out(k: RSAKey | None) -> dict[str, str | int] | None:
    if k is None:
        return None
    if k.p is None:      # the TPM keeps only keys it holds the private part of
        raise ValueError("an RSA key without its private part")
    return {"n": "%x" % k.n, "e": k.e, "p": "%x" % k.p}


def _rsa_in(d: dict[str, Any] | None) -> RSAKey | None:
    if d is None:
        return None
    return RSAKey.from_modulus_prime(int(d["n"], 16), int(d["e"]), int(d["p"], 16))


def _key_out(k: LoadedKey | None) -> dict[str, Any] | None:
    if k is None:
        return None
    d: dict[str, Any] = {"blob": k.blob.to_bytes().hex(), "rsa": _rsa_out(k.rsa),
         "usage_auth": k.usage_auth.hex(), "migration_auth": k.migration_auth.hex()}
    if k.payload != C.TPM_PT_ASYM:
        d["payload"] = k.payload          # a CMK (written only then: older blobs stay alike)
    return d


def _key_in(d: dict[str, Any]) -> LoadedKey:
    from .engine import LoadedKey
    r = Reader(bytes.fromhex(d["blob"]))
    blob = unmarshal_any_key(r)
    r.expect_end("key blob")
    payload = int(d.get("payload", C.TPM_PT_ASYM))
    if payload not in (C.TPM_PT_ASYM, C.TPM_PT_MIGRATE_RESTRICTED, C.TPM_PT_MIGRATE_EXTERNAL):
        raise ValueError("bad key payload")
    rsa = _rsa_in(d["rsa"])
    if rsa is None:
        raise ValueError("a loaded key without its RSA key")
    return LoadedKey(blob, rsa, _req(d["usage_auth"], 20), _req(d["migration_auth"], 20), payload)


def state_dict(tpm: TPM) -> dict[str, Any]:
    p = tpm.perm
    body = {
        "identity_vendor": tpm.identity.vendor_id.hex(),
        "perm": {
            "flags": p.flags.to_bytes().hex(),
            "tpm_proof": p.tpm_proof.hex(),
            "context_key": p.context_key.hex(),
            "owner_auth": _h(p.owner_auth),
            "operator_auth": _h(p.operator_auth),
            "ek": _rsa_out(p.ek),
            "ek_reset": _h(p.ek_reset),
            "srk": _key_out(p.srk),
            "nv": [{"pub": a.pub.to_bytes().hex(), "auth": a.auth.hex(),
                    "data": bytes(a.data).hex()}
                   for _, a in sorted(p.nv.items())],
            "counters": [[i, c.label.hex(), c.value, c.auth.hex()]
                         for i, c in sorted(p.counters.items())],
            "counter_floor": p.counter_floor,
            "evict_keys": [[h, _key_out(k)] for h, k in sorted(p.evict_keys.items())],
            "auth_fail_count": p.auth_fail_count,
            "audited": sorted(p.audited),
            "audit_counter": p.audit_counter,
            "families": [[row, f.label, f.family_id, f.verification_count, f.flags]
                         for row, f in sorted(p.families.items())],
            "last_family_id": p.last_family_id,
            "delegates": [[row, d.pub.to_bytes().hex(), d.auth.hex()]
                          for row, d in sorted(p.delegates.items())],
            "no_owner_nv_write": p.no_owner_nv_write,
            "daa": [p.daa_seed.hex(), p.daa_proof.hex(), p.daa_blob_key.hex()],
            # written only when set, so states without CMK restrictions stay byte-identical
            **({"restrict_delegate": p.restrict_delegate} if p.restrict_delegate else {}),
        },
        "saved": tpm.saved,
    }
    return body


def dump_state(tpm: TPM) -> bytes:
    body = json.dumps(state_dict(tpm), sort_keys=True, separators=(",", ":")).encode()
    return (MAGIC + struct.pack(">HI", FORMAT_VERSION, len(body)) + body
            + hashlib.sha256(body).digest())


def load_state(tpm: TPM, blob: bytes) -> None:
    from .engine import NVArea, PermanentData, TPMStateError
    blob = bytes(blob)
    if not blob.startswith(MAGIC):
        raise TPMStateError("not a pyxl TPM state blob")
    try:
        r = Reader(blob, len(MAGIC))
        version, n = r.u16(), r.u32()
        if version not in READABLE_VERSIONS:
            raise TPMStateError("unsupported TPM state format %d" % version)
        body = r.bytes(n)
        digest = r.bytes(32)
        r.expect_end("state blob")
    except TPMDecodeError as e:
        raise TPMStateError("truncated TPM state blob: %s" % e) from None
    if hashlib.sha256(body).digest() != digest:
        raise TPMStateError("TPM state blob checksum mismatch")
    try:
        d = json.loads(body)
        pd = d["perm"]
        p = PermanentData()
        p.flags = TPM_PERMANENT_FLAGS.from_bytes(bytes.fromhex(pd["flags"]))
        p.tpm_proof = _req(pd["tpm_proof"], 20)
        p.context_key = _b(pd.get("context_key"), 16) or p.context_key
        p.owner_auth = _b(pd["owner_auth"], 20)
        p.operator_auth = _b(pd["operator_auth"], 20)
        p.ek = _rsa_in(pd["ek"])
        p.ek_reset = _b(pd["ek_reset"], 20)
        p.srk = None if pd["srk"] is None else _key_in(pd["srk"])
        p.nv = {}
        for a in pd["nv"]:
            pub = TPM_NV_DATA_PUBLIC.from_bytes(bytes.fromhex(a["pub"]))
            data = bytearray(bytes.fromhex(a["data"]))
            if len(data) != pub.dataSize:
                raise ValueError("NV area size mismatch")
            p.nv[pub.nvIndex] = NVArea(pub, _req(a["auth"], 20), data)
        from .engine import Counter
        p.counters = {}
        for i, label, value, auth in pd.get("counters", []):
            p.counters[int(i)] = Counter(_req(label, 4), int(value), _req(auth, 20))
        p.counter_floor = int(pd.get("counter_floor", 0))
        p.evict_keys = {int(h): _key_in(k) for h, k in pd.get("evict_keys", [])}
        p.auth_fail_count = int(pd["auth_fail_count"])
        if "audited" in pd:
            p.audited = {int(o) for o in pd["audited"]}
        else:
            from .commands.audit import default_audited
            p.audited = default_audited(tpm.identity)
        p.audit_counter = int(pd.get("audit_counter", 0))
        from .engine import FamilyRow
        p.families = {}
        for row, label, fid, count, flags in pd.get("families", []):
            if not 0 <= int(row) < 16 or not 0 <= int(label) <= 0xFF:
                raise ValueError("bad family table row")
            p.families[int(row)] = FamilyRow(int(label), int(fid), int(count), int(flags))
        p.last_family_id = int(pd.get("last_family_id", 0))
        from .engine import DelegateRow
        from .structures import TPM_DELEGATE_PUBLIC
        p.delegates = {}
        for row, pub, auth in pd.get("delegates", []):
            if not 0 <= int(row) < 4:
                raise ValueError("bad delegate table row")
            p.delegates[int(row)] = DelegateRow(TPM_DELEGATE_PUBLIC.from_bytes(bytes.fromhex(pub)),
                                                _req(auth, 20))
        p.no_owner_nv_write = int(pd.get("no_owner_nv_write", 0))
        if "daa" in pd:      # older blobs: the fresh secrets of PermanentData()
            p.daa_seed, p.daa_proof = _req(pd["daa"][0], 20), _req(pd["daa"][1], 20)
            p.daa_blob_key = _req(pd["daa"][2], 16)
        p.restrict_delegate = int(pd.get("restrict_delegate", 0))
        if not 0 <= p.restrict_delegate <= 0xFFFFFFFF:
            raise ValueError("bad restrictDelegate")
        saved = d["saved"]
        if saved is not None:
            check_saved(saved)
    except TPMStateError:
        raise
    except (KeyError, TypeError, ValueError, TPMDecodeError) as e:
        raise TPMStateError("corrupt TPM state: %s" % e) from None
    tpm.perm = p
    tpm.saved = saved
    tpm.reset_keys()


# ---------------------------------------------------------------- TPM_SaveState

def save_volatile(tpm: TPM) -> dict[str, Any]:
    """The snapshot TPM_SaveState keeps for TPM_Startup(ST_STATE)."""
    return {
        "pcrs": [v.hex() for v in tpm.pcrs],
        "stclear": tpm.stclear.to_bytes().hex(),
        # isVolatile keys are unloaded by TPM_Startup(ST_STATE), so not saved
        "keys": [[h, _key_out(k)] for h, k in sorted(tpm.keys.items())
                 if not k.blob.keyFlags & 0x4 and h not in tpm.perm.evict_keys],
        "context_nonce_key": tpm.context_nonce_key.hex(),
        "audit_digest": tpm.audit_digest.hex(),
        "owner_reference": tpm.owner_reference,
        "nv_stclear": [[i, a.pub.bReadSTClear, a.pub.bWriteSTClear]
                       for i, a in sorted(tpm.perm.nv.items())],
        # DAA sessions are part of TPM_STCLEAR_DATA, which libtpms saves
        "daa_sessions": [s.to_saved() for _, s in sorted(tpm.daa_sessions.items())],
    }


def check_saved(saved: dict[str, Any]) -> None:
    if len(saved["pcrs"]) != 24 or any(len(bytes.fromhex(v)) != 20 for v in saved["pcrs"]):
        raise ValueError("bad saved PCRs")
    TPM_STCLEAR_FLAGS.from_bytes(bytes.fromhex(saved["stclear"]))
    if len(bytes.fromhex(saved.get("context_nonce_key", "00" * 20))) != 20 or \
            len(bytes.fromhex(saved.get("audit_digest", "00" * 20))) != 20:
        raise ValueError("bad saved context nonce")
    for h, k in saved["keys"]:
        int(h)
        _key_in(k)
    from .commands.daa import DAASession
    for d in saved.get("daa_sessions", []):
        DAASession.from_saved(d)


def restore_volatile(tpm: TPM, saved: dict[str, Any]) -> None:
    tpm.pcrs = [bytes.fromhex(v) for v in saved["pcrs"]]
    tpm.stclear = TPM_STCLEAR_FLAGS.from_bytes(bytes.fromhex(saved["stclear"]))
    tpm.reset_keys()
    tpm.keys.update({int(h): _key_in(k) for h, k in saved["keys"]})
    tpm.context_nonce_key = bytes.fromhex(saved.get("context_nonce_key", "00" * 20))
    tpm.audit_digest = bytes.fromhex(saved.get("audit_digest", "00" * 20))
    tpm.owner_reference = int(saved.get("owner_reference", 0x40000001))   # TPM_KH_OWNER
    from .commands.daa import DAASession
    sessions = [DAASession.from_saved(d) for d in saved.get("daa_sessions", [])]
    tpm.daa_sessions = {s.handle: s for s in sessions[:tpm.identity.max_daa_sessions]}
    for i, rd, wr in saved.get("nv_stclear", []):
        a = tpm.perm.nv.get(i)
        if a is not None:
            a.pub.bReadSTClear, a.pub.bWriteSTClear = rd, wr
