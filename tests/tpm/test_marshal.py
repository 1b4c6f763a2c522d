"""The bounds-checked reader/writer and every structure's marshal/unmarshal
round trip (hypothesis), plus typed decode errors on every truncation."""

from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxl.tpm import structures as S
from pyxl.tpm.marshal import Reader, TPMDecodeError, Writer

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
digest = st.binary(min_size=20, max_size=20)
blob = st.binary(max_size=300)
flag = st.booleans()
key_flags = st.integers(0, 0x1F)      # TPM_KeyFlags_Load: no undefined bit

ver = st.builds(S.TPM_STRUCT_VER, u8, u8, u8, u8)
ver11 = st.builds(S.TPM_STRUCT_VER, st.just(1), st.just(1), u8, u8)
version = st.builds(S.TPM_VERSION, u8, u8, u8, u8)
selection = st.builds(S.TPM_PCR_SELECTION, st.binary(max_size=3))
rsa_parms = st.builds(S.TPM_RSA_KEY_PARMS, u32, u32, blob)
# libtpms's TPM_KeyParms_Load takes RSA parms (parsed at once) or algorithm 0
key_parms = st.one_of(
    st.builds(S.TPM_KEY_PARMS, st.just(1), u16, u16, rsa_parms.map(lambda p: p.to_bytes())),
    st.builds(S.TPM_KEY_PARMS, st.just(0), u16, u16, blob))
store_pubkey = st.builds(S.TPM_STORE_PUBKEY, blob)
pcr_info = st.builds(S.TPM_PCR_INFO, selection, digest, digest)
locality = st.integers(1, 0x1F)     # TPM_LocalitySelection_CheckLegal: not 0, no bit above 4
pcr_info_long = st.builds(S.TPM_PCR_INFO_LONG, locality, locality, selection, selection, digest,
                          digest)
pcr_info_short = st.builds(S.TPM_PCR_INFO_SHORT, selection, locality, digest)
nv_attributes = st.builds(S.TPM_NV_ATTRIBUTES, u32)
sym_key = st.builds(S.TPM_SYMMETRIC_KEY, u32, u16, st.binary(max_size=40))
pubkey = st.builds(S.TPM_PUBKEY, key_parms, store_pubkey)
ek_activate = st.builds(S.TPM_EK_BLOB_ACTIVATE, sym_key, digest, pcr_info_short)
counter_value = st.builds(S.TPM_COUNTER_VALUE, st.binary(min_size=4, max_size=4), u32)
da_action = st.builds(S.TPM_DA_ACTION_TYPE, u32)

STRATEGIES = {
    S.TPM_STRUCT_VER: ver,
    S.TPM_VERSION: version,
    S.TPM_CAP_VERSION_INFO: st.builds(S.TPM_CAP_VERSION_INFO, version, u16, u8,
                                      st.binary(min_size=4, max_size=4), blob),
    S.TPM_RSA_KEY_PARMS: rsa_parms,
    S.TPM_KEY_PARMS: key_parms,
    S.TPM_STORE_PUBKEY: store_pubkey,
    S.TPM_PUBKEY: pubkey,
    # a TPM_KEY is version 1.1, its PCRInfo empty or a TPM_PCR_INFO (TPM_Key_Load)
    S.TPM_KEY: st.builds(S.TPM_KEY, ver11,
                         u16, key_flags, u8, key_parms,
                         st.one_of(st.just(b""), pcr_info.map(lambda p: p.to_bytes())),
                         store_pubkey, blob),
    S.TPM_KEY12: st.builds(S.TPM_KEY12, keyUsage=u16, keyFlags=key_flags, authDataUsage=u8,
                           algorithmParms=key_parms,
                           PCRInfo=st.one_of(st.just(b""), pcr_info_long.map(lambda p: p.to_bytes())),
                           pubKey=store_pubkey, encData=blob, fill=st.just(0)),
    S.TPM_STORE_ASYMKEY: st.builds(S.TPM_STORE_ASYMKEY, u8, digest, digest, digest, blob),
    S.TPM_MIGRATE_ASYMKEY: st.builds(S.TPM_MIGRATE_ASYMKEY, u8, digest, digest, blob),
    S.TPM_MIGRATIONKEYAUTH: st.builds(S.TPM_MIGRATIONKEYAUTH, pubkey, u16, digest),
    S.TPM_MSA_COMPOSITE: st.builds(S.TPM_MSA_COMPOSITE, st.lists(digest, min_size=1, max_size=4)),
    S.TPM_CMK_AUTH: st.builds(S.TPM_CMK_AUTH, digest, digest, digest),
    S.TPM_CMK_MIGAUTH: st.builds(S.TPM_CMK_MIGAUTH, digest, digest),
    S.TPM_CMK_SIGTICKET: st.builds(S.TPM_CMK_SIGTICKET, digest, digest),
    S.TPM_CMK_MA_APPROVAL: st.builds(S.TPM_CMK_MA_APPROVAL, digest),
    S.TPM_PCR_SELECTION: selection,
    S.TPM_PCR_COMPOSITE: st.builds(S.TPM_PCR_COMPOSITE, selection, blob),
    S.TPM_PCR_INFO: pcr_info,
    S.TPM_PCR_INFO_LONG: pcr_info_long,
    S.TPM_PCR_INFO_SHORT: pcr_info_short,
    # TPM_StoredData_Load: version 1.1, sealInfo empty or the PCR info of the blob's kind
    S.TPM_STORED_DATA: st.builds(S.TPM_STORED_DATA, ver11,
                                 st.one_of(st.just(b""), pcr_info.map(lambda p: p.to_bytes())),
                                 blob),
    S.TPM_STORED_DATA12: st.builds(S.TPM_STORED_DATA12, sealInfo=st.one_of(
        st.just(b""), pcr_info_long.map(lambda p: p.to_bytes())), encData=blob, et=u16),
    S.TPM_SEALED_DATA: st.builds(S.TPM_SEALED_DATA, u8, digest, digest, digest, blob),
    S.TPM_BOUND_DATA: st.builds(S.TPM_BOUND_DATA, ver, u8, blob),
    S.TPM_QUOTE_INFO: st.builds(S.TPM_QUOTE_INFO, ver, digest, digest),
    S.TPM_CHANGEAUTH_VALIDATE: st.builds(S.TPM_CHANGEAUTH_VALIDATE, digest, digest),
    S.TPM_NV_ATTRIBUTES: nv_attributes,
    S.TPM_NV_DATA_PUBLIC: st.builds(S.TPM_NV_DATA_PUBLIC, u32, pcr_info_short, pcr_info_short,
                                    nv_attributes, *[st.integers(0, 1)] * 3, u32),
    S.TPM_PERMANENT_FLAGS: st.builds(S.TPM_PERMANENT_FLAGS, *[flag] * 20),
    S.TPM_STCLEAR_FLAGS: st.builds(S.TPM_STCLEAR_FLAGS, *[flag] * 5),
    S.TPM_CURRENT_TICKS: st.builds(S.TPM_CURRENT_TICKS, st.integers(0, 2**64 - 1), u16, digest),
    S.TPM_SYMMETRIC_KEY: sym_key,
    S.TPM_TRANSPORT_PUBLIC: st.builds(S.TPM_TRANSPORT_PUBLIC, u32, u32, u16),
    S.TPM_TRANSPORT_LOG_IN: st.builds(S.TPM_TRANSPORT_LOG_IN, digest, digest),
    S.TPM_TRANSPORT_LOG_OUT: st.builds(S.TPM_TRANSPORT_LOG_OUT, st.builds(
        S.TPM_CURRENT_TICKS, st.integers(0, 2**64 - 1), u16, digest), digest, u32),
    S.TPM_TRANSPORT_AUTH: st.builds(S.TPM_TRANSPORT_AUTH, digest),
    S.TPM_IDENTITY_CONTENTS: st.builds(S.TPM_IDENTITY_CONTENTS, ver, u32, digest, pubkey),
    S.TPM_ASYM_CA_CONTENTS: st.builds(S.TPM_ASYM_CA_CONTENTS, sym_key, digest),
    S.TPM_EK_BLOB_ACTIVATE: ek_activate,
    # ActivateIdentity takes TPM_EK_TYPE_ACTIVATE blobs only (libtpms step 8a)
    S.TPM_EK_BLOB: st.builds(S.TPM_EK_BLOB, st.just(S.TPM_EK_TYPE_ACTIVATE),
                             ek_activate.map(lambda a: a.to_bytes())),
    S.TPM_COUNTER_VALUE: counter_value,
    S.TPM_AUDIT_EVENT_IN: st.builds(S.TPM_AUDIT_EVENT_IN, digest, counter_value),
    S.TPM_AUDIT_EVENT_OUT: st.builds(S.TPM_AUDIT_EVENT_OUT, digest, counter_value),
    S.TPM_DA_ACTION_TYPE: da_action,
    S.TPM_DA_INFO: st.builds(S.TPM_DA_INFO, u8, u16, u16, da_action, u32, blob),
    S.TPM_DA_INFO_LIMITED: st.builds(S.TPM_DA_INFO_LIMITED, u8, da_action, blob),
    S.TPM_FAMILY_TABLE_ENTRY: st.builds(S.TPM_FAMILY_TABLE_ENTRY, u8, u32, u32, u32),
    S.TPM_SELECT_SIZE: st.builds(S.TPM_SELECT_SIZE, st.just(1), st.sampled_from([1, 2]), u16),
    S.TPM_KEY_HANDLE_LIST: st.builds(S.TPM_KEY_HANDLE_LIST, st.lists(u32, max_size=5)),
    S.TPM_QUOTE_INFO2: st.builds(S.TPM_QUOTE_INFO2, digest, pcr_info_short),
    S.TPM_SIGN_INFO: st.builds(S.TPM_SIGN_INFO, st.binary(min_size=4, max_size=4), digest, blob),
    S.TPM_CONTEXT_SENSITIVE: st.builds(S.TPM_CONTEXT_SENSITIVE, digest, blob),
    S.TPM_CONTEXT_BLOB: st.builds(S.TPM_CONTEXT_BLOB, u32, u32, st.binary(min_size=16, max_size=16),
                                  u32, digest, blob, blob),
    S.TPM_DAA_ISSUER: st.builds(S.TPM_DAA_ISSUER, *[digest] * 6,
                                st.binary(min_size=26, max_size=26)),
    S.TPM_DAA_TPM: st.builds(S.TPM_DAA_TPM, digest, digest, digest, digest, u32),
    S.TPM_DAA_CONTEXT: st.builds(S.TPM_DAA_CONTEXT, digest, digest, digest,
                                 st.binary(min_size=256, max_size=256), u8),
    S.TPM_DAA_JOINDATA: st.builds(S.TPM_DAA_JOINDATA, st.binary(min_size=128, max_size=128),
                                  st.binary(min_size=138, max_size=138), digest),
    S.TPM_DAA_BLOB: st.builds(S.TPM_DAA_BLOB, u32, st.binary(min_size=16, max_size=16), digest,
                              blob, blob),
    S.TPM_DAA_SENSITIVE: st.builds(S.TPM_DAA_SENSITIVE, blob),
    S.TPM_CERTIFY_INFO: st.builds(S.TPM_CERTIFY_INFO, ver, u16, u32, u8, key_parms, digest, digest,
                                  u8, blob),
    S.TPM_CERTIFY_INFO2: st.builds(S.TPM_CERTIFY_INFO2, u8, u16, u32, u8, key_parms, digest,
                                   digest, u8, blob, blob),
}


def test_every_structure_has_a_strategy():
    assert set(STRATEGIES) == set(S.ALL_STRUCTURES)


@pytest.mark.parametrize("cls", S.ALL_STRUCTURES, ids=lambda c: c.__name__)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_round_trip(cls, data):
    value = data.draw(STRATEGIES[cls])
    wire = value.to_bytes()
    back = cls.from_bytes(wire)
    assert back == value
    assert back.to_bytes() == wire
    if cls._layout.open_ended:
        return
    # every proper prefix is a typed decode error, never another exception
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(TPMDecodeError) as e:
        cls.from_bytes(wire[:cut])
    assert e.value.have >= 0
    # trailing bytes are refused by from_bytes
    with pytest.raises(TPMDecodeError):
        cls.from_bytes(wire + b"\0")


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_but_decode_errors(data):
    for cls in S.ALL_STRUCTURES:
        try:
            cls.from_bytes(data)
        except TPMDecodeError:
            pass


def test_known_encodings():
    # TPM_CAP_VERSION_INFO of the Xen vTPM, as tpm_version decodes it
    cvi = S.TPM_CAP_VERSION_INFO(S.TPM_VERSION(1, 2, 0, 7), 2, 1, b"ETHZ")
    assert cvi.to_bytes().hex() == "0030010200070002014554485a0000"
    assert S.TPM_PCR_SELECTION.of([0, 7, 10, 23]).to_bytes().hex() == "0003810480"
    assert S.TPM_PCR_SELECTION(bytes.fromhex("810480")).indices() == [0, 7, 10, 23]
    pf = S.TPM_PERMANENT_FLAGS()
    assert pf.to_bytes()[:2] == b"\x00\x1f" and len(pf.to_bytes()) == 22
    pf.set_bit(17, False)                                   # TPM_PF_READSRKPUB
    assert not pf.readSRKPub and pf.get_bit(4)              # TPM_PF_READPUBEK
    assert S.TPM_STCLEAR_FLAGS(deactivated=True).as_word() == 1


def test_flag_word_follows_every_change():
    # as_word() is kept between calls: any change of a flag must show in the
    # next one (Part 2 7.2 numbering: TPM_SF_DEACTIVATED 1, TPM_SF_PHYSICALPRESENCE 3)
    sf = S.TPM_STCLEAR_FLAGS()
    assert sf.as_word() == 0
    sf.physicalPresence = True
    assert sf.as_word() == 0b100
    sf.set_bit(1, True)
    assert sf.as_word() == 0b101
    setattr(sf, "physicalPresence", False)
    assert sf.as_word() == 0b001
    assert sf.copy().as_word() == 0b001 and S.TPM_STCLEAR_FLAGS.from_bytes(sf.to_bytes()) == sf
    pf = S.TPM_PERMANENT_FLAGS()
    before = pf.as_word()
    pf.disable = not pf.disable                             # TPM_PF_DISABLE, bit 0
    assert pf.as_word() == before ^ 1


def test_reader_errors_are_typed():
    r = Reader(b"\x00\x01\x02")
    assert r.u16() == 1
    with pytest.raises(TPMDecodeError) as e:
        r.u32()
    assert (e.value.offset, e.value.need, e.value.have) == (2, 4, 1)
    r = Reader(b"\x00\x00\x00\x09abc")
    with pytest.raises(TPMDecodeError) as e:
        r.sized32()
    assert (e.value.offset, e.value.need, e.value.have) == (4, 9, 3)
    w = Writer().u8(1).u16(2).u32(3).u64(4).sized32(b"yz")
    assert w.getvalue().hex() == "01" "0002" "00000003" "0000000000000004" "00000002797a"


def test_tag_mismatch_is_a_struct_error():
    with pytest.raises(S.TPMStructError):
        S.TPM_KEY12.from_bytes(S.TPM_KEY().to_bytes())
    with pytest.raises(S.TPMStructError):
        S.TPM_QUOTE_INFO.from_bytes(bytes(4) + b"QUOX" + bytes(40))


def test_a_tag_libtpms_checks_late_is_checked_late():
    # libtpms TPM_StoredData_Load (tpm_store.c) loads a 1.2 blob's tag and
    # then et before TPM_StoredData_CheckTag; TPM_Key_Load reads a
    # TPM_KEY12's tag and fill before TPM_Key_CheckTag: a wrong tag in a
    # buffer that ends before the second field is a short buffer
    from pyxl.tpm import constants as C
    for cls, rc in ((S.TPM_STORED_DATA12, C.TPM_BAD_VERSION), (S.TPM_KEY12, C.TPM_BAD_KEY_PROPERTY)):
        with pytest.raises(TPMDecodeError) as e:
            cls.from_bytes(b"\x00\x99\x00")
        assert e.value.rc == C.TPM_BAD_PARAM_SIZE
        with pytest.raises(S.TPMBadValue) as e:
            cls.from_bytes(b"\x00\x99\x00\x00")
        assert e.value.rc == rc


@pytest.mark.parametrize("cls", S.ALL_STRUCTURES, ids=lambda c: c.__name__)
def test_a_structure_holds_its_wire_fields_only(cls):
    """A structure's fields are its wire fields, in wire order: TPM_KEY12 and
    TPM_STORED_DATA12 have no 1.1 `ver` (their tag and fill / et are where
    the 1.1 forms have it), and construct positionally in wire order."""
    assert [f.name for f in fields(cls)] == cls._layout.names


@pytest.mark.parametrize("cls", S.ALL_STRUCTURES, ids=lambda c: c.__name__)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_eq_and_repr_are_a_dataclass_s(cls, data):
    """TPMStruct's one == and repr() (the structures are dataclasses with
    eq=False, repr=False) give what dataclasses generates: the reference is
    a dataclass made by dataclasses.make_dataclass with the same fields."""
    import dataclasses

    value = data.draw(STRATEGIES[cls])
    names = [f.name for f in fields(cls)]
    ref = dataclasses.make_dataclass(cls.__qualname__, names)
    assert repr(value) == repr(ref(*(getattr(value, n) for n in names)))
    same = cls.from_bytes(value.to_bytes())
    assert same == value and not same != value
    assert value != ref(*(getattr(value, n) for n in names))       # another class
    other = data.draw(STRATEGIES[cls])
    want = ref(*(getattr(value, n) for n in names)) == ref(*(getattr(other, n) for n in names))
    assert (value == other) is want
    with pytest.raises(TypeError):
        hash(value)


@pytest.mark.parametrize("cls", S.ALL_STRUCTURES, ids=lambda c: c.__name__)
def test_init_is_a_dataclass_s(cls):
    """A structure's __init__, compiled when the class is first constructed,
    is the one dataclasses generates: the reference is a dataclass made by
    dataclasses.make_dataclass with the same fields and defaults."""
    import dataclasses
    import inspect

    spec = [(f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory))
            for f in fields(cls)]
    ref = dataclasses.make_dataclass(cls.__qualname__, spec)
    a, b, want = cls(), cls(), ref()
    assert str(inspect.signature(cls.__init__)) == str(inspect.signature(ref.__init__))
    names = [f.name for f in fields(cls)]
    for n in names:
        assert getattr(a, n) == getattr(want, n), n
        if isinstance(getattr(a, n), S.TPMStruct):      # a default_factory: one object each
            assert getattr(a, n) is not getattr(b, n), n
    values = [getattr(a, n) for n in names]
    assert cls(*values) == a == cls(**dict(zip(names, values)))
    if names:
        with pytest.raises(TypeError):
            cls(*values, None)
        with pytest.raises(TypeError):
            cls(no_such_field=1)


def test_structures_are_declared_without_compiling_their_init():
    """Importing the structures compiles no __init__ (dataclasses compiles
    one per class at import): the first construction of a class does."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "from pyxl.tpm import structures as S\n"
         "print(sum('<locals>' in c.__init__.__qualname__ for c in S.ALL_STRUCTURES), "
         "len(S.ALL_STRUCTURES))\n"
         "S.TPM_KEY()\n"
         "print(S.TPM_KEY.__init__.__qualname__, S.TPM_KEY12.__init__.__qualname__ != 'TPM_KEY12.__init__')"],
        check=True, capture_output=True, text=True).stdout.split("\n")
    lazy, total = out[0].split()
    assert lazy == total and int(total) > 60
    assert out[1] == "TPM_KEY.__init__ True"


def test_a_structure_with_a_post_init_or_an_init_false_field_is_refused():
    """The lazily compiled __init__ runs neither __post_init__ nor leaves
    out init=False fields, as dataclasses' would: such a class is refused
    when declared rather than built wrong."""
    import dataclasses

    from pyxl.tpm.layout import dataclass_structure

    with pytest.raises(TypeError, match="__post_init__"):
        @dataclass_structure
        class Checked(S.TPMStruct):
            a: int = 0

            def __post_init__(self) -> None:
                pass
    with pytest.raises(TypeError, match="init=False"):
        @dataclass_structure
        class Derived(S.TPMStruct):
            a: int = dataclasses.field(default=0, init=False)
