"""vtpmmgr-stubdom in-process against the TIS TPM model: first-boot
creation, the manager protocol's answers and errors, the seed disk format
checked independently, reload, and relocation as the uuid table grows."""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import uuid as _uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tpm"))
from engine_helpers import key_pool  # noqa: E402
from test_stubdom_tis import DirectXen  # noqa: E402

from pyxl.domain.drivers.tpm_tis import TpmTis  # noqa: E402
from pyxl.domain.vtpmmgr import protocol as P  # noqa: E402
from pyxl.domain.vtpmmgr.hwtpm import HwTpm  # noqa: E402
from pyxl.domain.vtpmmgr import main  # noqa: E402
from pyxl.domain.vtpmmgr.main import Manager  # noqa: E402
from pyxl.domain.vtpmmgr.storage import MgrStorage, StorageFailure  # noqa: E402
from pyxl.hypervisor import tis as T  # noqa: E402
from pyxl.hypervisor.iomem import IoMem  # noqa: E402
from pyxl.tpm.marshal import Reader  # noqa: E402
from pyxl.tpm.structures import TPM_KEY  # noqa: E402

U1 = _uuid.UUID("ac0a5b9e-cbe2-4c07-b43b-1d69e46fb839").bytes


class Dom:
    domid = 1


def make_manager(tmp_path, dev=None, lines=None):
    dev = dev or T.TisDevice(str(tmp_path / "hw"), key_source=key_pool())
    io = IoMem()
    io.add_device(T.TIS_BASE, T.TIS_LEN, dev)
    io.permit(1, 0xFED40, 1)
    lines = [] if lines is None else lines
    m = Manager(Dom(), lines.append)
    m.hw = HwTpm(TpmTis(DirectXen(io, 1), lines.append).transmit, m.log)
    m.rng = m.hw.rng = os.urandom
    img = tmp_path / "mgr.img"
    if not img.exists():
        img.write_bytes(bytes(1 << 20))
    m.storage = MgrStorage(os.open(img, os.O_RDWR), m)
    m.oiap = m.hw.oiap()
    return m, dev, lines


def hdr(tag, ordinal, body=b""):
    return struct.pack(">HII", tag, 10 + len(body), ordinal) + body


@pytest.fixture(scope="module")
def created(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mgr")
    m, dev, lines = make_manager(tmp)
    with pytest.raises(StorageFailure):
        m.storage.load_header()
    m.create()
    return tmp, m, dev, lines


def test_first_boot_messages(created):
    _, m, dev, lines = created
    text = "".join(lines)
    for line in ("INFO[VTPM]: Loading disk image header\n",
                 "ERROR[VTPM]: Invalid ID string in disk image!\n",
                 "ERROR[VTPM]: Failed to load manager data!\n",
                 "INFO[TPM]: TPM_ReadPubek\nINFO[TPM]: TPM_TakeOwnership\n"
                 "INFO[TPM]: TPM_DisablePubekRead\nINFO[TPM]: TPM_OSAP\n",
                 "INFO[VTPM]: Creating new disk image header\nINFO[VTPM]: Saving root storage key..\n"
                 "INFO[VTPM]: Binding uuid table symmetric key..\nINFO[TPM]: TPM_Bind\n"
                 "INFO[VTPM]: Saved new manager disk header.\n"
                 "INFO[VTPM]: Finished initialized new VTPM manager\n"):
        assert line in text
    assert "TPM_EvictKey" not in text          # EvictKey(0) returns before logging
    assert dev.tpm.owned and dev.tpm.perm.owner_auth == b"\xff" * 20   # seed default owner auth


def test_protocol_and_disk_format(created):
    tmp, m, dev, lines = created
    # errors first
    assert m.handle_cmd(U1, hdr(P.VTPM_TAG_REQ, P.VTPM_ORD_LOADHASHKEY)) == hdr(0x01C4, 3)
    assert m.handle_cmd(U1, hdr(P.VTPM_TAG_REQ, P.VTPM_ORD_SAVEHASHKEY, bytes(51))) == hdr(0x01C4, 3)
    assert m.handle_cmd(U1, hdr(P.VTPM_TAG_REQ, 7)) == struct.pack(">HII", 0x01C4, 10, 10)
    assert m.handle_cmd(U1, hdr(0xC2, 0x14, bytes(24))) == struct.pack(">HII", 0xC5, 10, 8)
    assert m.handle_cmd(U1, hdr(0x1234, 1)) == struct.pack(">HII", 0x1237, 10, 30)
    rnd = m.handle_cmd(U1, hdr(0xC1, 0x46, struct.pack(">I", 8)))
    assert rnd[:10] == struct.pack(">HII", 0xC4, 22, 0)
    text = "".join(lines)
    assert "ERROR[VTPM]: VTPM_ORD_SAVEHASHKEY hashkey too short!\n" in text
    assert "ERROR[VTPM]: Invalid vTPM Ordinal 7\n" in text
    assert "ERROR[VTPM]: TPM Disallowed Passthrough ord=20\n" in text
    assert "ERROR[VTPM]: Invalid tag=4660\n" in text
    assert "INFO[VTPM]: Passthrough: TPM_GetRandom\n" in text
    # save then load
    hk = hashlib.sha1(b"blob").digest() + bytes(range(32))
    assert m.handle_cmd(U1, hdr(P.VTPM_TAG_REQ, P.VTPM_ORD_SAVEHASHKEY, hk)) == hdr(0x01C4, 0)
    assert m.handle_cmd(U1, hdr(P.VTPM_TAG_REQ, P.VTPM_ORD_LOADHASHKEY)) == \
        struct.pack(">HII", 0x01C4, 62, 0) + hk

    # the image, read independently of MgrStorage
    img = (tmp / "mgr.img").read_bytes()
    assert img[:10] == b"VTPMMGRDOM" and struct.unpack_from(">I", img, 10)[0] == 1
    klen = struct.unpack_from(">I", img, 14)[0]
    key = TPM_KEY.unmarshal(Reader(img[18:18 + klen]))
    assert key.keyUsage == 0x0014 and len(key.pubKey.key) == 256
    unbind = lambda block: m.hw.unbind(m.storage_key_handle, block, bytes(20), m.oiap)  # noqa
    tkey = unbind(img[18 + klen:18 + klen + 256])
    aes, cipher_sz = tkey[:32], struct.unpack_from(">I", tkey, 32)[0]
    assert cipher_sz == 48                                   # IV + one 20-byte entry, padded
    table = img[18 + klen + 256:18 + klen + 256 + cipher_sz]
    dec = Cipher(algorithms.AES(aes), modes.CBC(table[:16])).decryptor()
    plain = dec.update(table[16:]) + dec.finalize()
    assert plain[:16] == U1
    off = struct.unpack_from(">I", plain, 16)[0]
    assert off % 256 == 0 and off >= 18 + klen + 256 + cipher_sz
    assert unbind(img[off:off + 256])[:52] == hk


def test_reload_and_relocation(created):
    tmp, m, dev, _ = created
    lines = []
    m2, _, _ = make_manager(tmp, dev, lines)
    m2.storage.load_header()
    assert "INFO[VTPM]: Loaded 1 vtpms!\n" in lines
    hk = hashlib.sha1(b"x").digest() + bytes(32)
    others = [_uuid.UUID(int=i).bytes for i in range(1, 14)]   # sort before U1
    for u in others:
        m2.storage.save_hashkey(u, hk)
    assert "INFO[VTPM]: Relocating vtpm data\n" in lines
    assert m2.storage.load_hashkey(U1)[:20] == hashlib.sha1(b"blob").digest()
    lines.clear()
    m3, _, _ = make_manager(tmp, dev, lines)
    m3.storage.load_header()
    assert "INFO[VTPM]: Loaded 14 vtpms!\n" in lines
    for u in others:
        assert m3.storage.load_hashkey(u) == hk


def test_seed_option_bugs(tmp_path):
    lines = []
    m = Manager(Dom(), lines.append)
    with pytest.raises(ValueError):
        m.parse_cmdline(["main", "owner_auth=well-known"])
    assert lines == ["ERROR[VTPM]: Invalid auth string =well-known\n",
                     "ERROR[VTPM]: Invalid Option owner_auth=well-known\n"]
    lines.clear()
    with pytest.raises(ValueError):
        m.parse_cmdline(["main", "tpmlocality=5"])
    assert m.parse_cmdline(["main", "tpmiomem=0xFED42000", "tpmlocality=2", "junk"]) == \
        {"tpmdriver": "tpm_tis", "tpmiomem": 0xFED42000, "tpmirq": 0, "tpmlocality": 2}
    assert lines[-1] == "INFO[VTPM]: Option: Using tpm_tis driver\n"


def test_load_hashkey_whose_chip_does_not_come_back_is_answered_tpm_ioerror(tmp_path,
                                                                             monkeypatch):
    """A daemon restart under the TPM_UnBind of a VTPM_LoadHashKey (its
    register accesses bound to a connection since replaced), and the chip
    not brought up again within the manager's wait: the vTPM is answered
    TPM_IOERROR (as Xen 4.17 tpm.c TPM_TransmitData answers a failed write
    or read of the TPM), and the manager serves on: once the chip is up
    again, the same request loads the key."""
    m, dev, lines = make_manager(tmp_path)
    with pytest.raises(StorageFailure):
        m.storage.load_header()
    m.create()
    hk = hashlib.sha1(b"blob").digest() + bytes(range(32))
    assert m.handle_cmd(U1, hdr(P.VTPM_TAG_REQ, P.VTPM_ORD_SAVEHASHKEY, hk)) == hdr(0x01C4, 0)
    monkeypatch.setattr(main, "HW_RESUME_TIMEOUT", 0.05)
    tis = m.hw.transmit.__self__
    tis.xen.generation += 1                          # the break; no resume_hw
    load = hdr(P.VTPM_TAG_REQ, P.VTPM_ORD_LOADHASHKEY)
    assert m.handle_cmd(U1, load) == hdr(0x01C4, 31)                 # TPM_IOERROR
    assert "ERROR in vtpmmgr_LoadHashKey at vtpm_cmd_handler.c:78 code: TPM_IOERROR.\n" \
        in "".join(lines)
    assert tis.resume(0) == 0                        # resume_hw's steps, by hand
    m.oiap = m.hw.oiap()
    m.load_storage_key()
    assert m.handle_cmd(U1, load) == struct.pack(">HII", 0x01C4, 62, 0) + hk


class _Killed(BaseException):
    """The manager's domain dies here: nothing after it is written."""


def test_killed_between_the_table_and_its_key_block_keeps_every_vtpm_registered_before(
        tmp_path):
    """Each registration of a new vTPM (the table growing, and relocating
    vTPM blocks, as in test_reload_and_relocation) cut short between its
    two writes, the uuid table's and the table key block's: the next
    manager loads every vTPM registered before with its record, not the
    new one, which its next save then registers.  (The seed's order, a new
    key block first, left a table no manager could decrypt.)"""
    log: list[str] = []
    m, dev, _ = make_manager(tmp_path, lines=log)
    m.create()
    records = {}
    for i in [14, 1, 13, 2, 12, 3, 11, 4, 10, 5, 9, 6]:        # before and after each other
        u = _uuid.UUID(int=i << 64).bytes
        hk = hashlib.sha1(b"state %d" % i).digest() + bytes([i]) * 32
        real_write, done = m.storage._write, []

        def write(off, data, msg, real_write=real_write, done=done):
            if msg in ("vtpm aes key", "vtpm uuid table"):
                if done:
                    raise _Killed()                       # the second of the two
                done.append(msg)
            real_write(off, data, msg)
        m.storage._write = write
        with pytest.raises(_Killed):
            m.storage.save_hashkey(u, hk)
        since = len(log)
        m, _, _ = make_manager(tmp_path, dev, log)            # the next manager
        m.storage.load_header()
        if records:
            assert "INFO[VTPM]: Loaded %d vtpms!\n" % len(records) in log[since:], log[since:]
        for known, record in records.items():
            assert m.storage.load_hashkey(known) == record
        with pytest.raises(StorageFailure):
            m.storage.load_hashkey(u)                         # not registered
        m.storage.save_hashkey(u, hk)                         # its next save
        records[u] = hk
    assert "INFO[VTPM]: Relocating vtpm data\n" in log
