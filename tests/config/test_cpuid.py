"""cpuid="host,NAME=VALUE,..." (libxl_cpuid_parse_config of Xen 4.17.7):
the name table, value syntax, leaf merging, MSR filters and xl's messages --
unit tests, plus every table name and many edge cases checked against the
live xl oracle (JSON, stderr and exit status)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from domcfg import Answer, differences, run_pyxl
from pyxl.config import cpuid_names as N
from pyxl.config.cpuid import parse_config
from pyxl.config.model import CpuidPolicy


def _parse(*items):
    pol = CpuidPolicy()
    codes = [parse_config(pol, s) for s in items]
    return pol, codes


def _leaf(pol, leaf, subleaf=None):
    [e] = [e for e in pol.cpuid if e["leaf"] == leaf and e["subleaf"] == subleaf]
    return e


def test_single_bit_flag_sets_its_column():
    pol, codes = _parse("sse3=0", "fpu=1")           # 1.ecx bit 0, 1.edx bit 0
    assert codes == [0, 0]
    e = _leaf(pol, 1)
    assert e["ecx"] == "x" * 31 + "0"
    assert e["edx"] == "x" * 31 + "1"
    assert "eax" not in e and "ebx" not in e


def test_flags_of_one_leaf_merge_and_later_ones_win():
    pol, _ = _parse("avx2=0", "smep=k", "avx2=s")    # 7:0.ebx bits 5 and 7
    assert len(pol.cpuid) == 1
    assert _leaf(pol, 7, 0)["ebx"] == "x" * 24 + "kxsxxxxx"


def test_multi_bit_fields_take_numbers():
    pol, codes = _parse("maxleaf=0x0d", "nc=3", "apicidsize=0xf")
    assert codes == [0, 0, 0]
    assert _leaf(pol, 0)["eax"] == "0" * 28 + "1101"
    assert _leaf(pol, 0x80000008)["ecx"] == "x" * 16 + "1111" + "xxxx" + "00000011"


def test_family_and_model_are_split_like_libxl():
    pol, _ = _parse("family=0x17", "model=0x31")
    eax = _leaf(pol, 1)["eax"]
    # family 0x17 = 0xf + 8: base 1111, extended 0x08; model: ext 3, base 1
    assert eax[4:12] == "00001000" and eax[20:24] == "1111"
    assert eax[12:16] == "0011" and eax[24:28] == "0001"
    pol, _ = _parse("family=6")
    assert _leaf(pol, 1)["eax"][4:12] == "0" * 8


def test_msr_features_fill_a_64_char_filter():
    pol, codes = _parse("rdcl-no=0", "its-no=s")     # MSR_ARCH_CAPS eax bit 0, edx bit 30
    assert codes == [0, 0]
    [m] = pol.msr
    assert m["index"] == 0x10a and len(m["policy"]) == 64
    assert m["policy"][63 - 0] == "0"
    assert m["policy"][63 - 62] == "k"            # 's' is stored as 'k'
    assert m["policy"].count("x") == 62


def test_errors_and_their_leftovers():
    pol, codes = _parse("sse3", "nosuchflag=1", "sse3=q", "rdcl-no=10")
    assert codes == [1, 2, 3, 3]
    # like libxl, a bad value still created the (unfilled) entry
    assert pol.cpuid == [{"leaf": 1, "subleaf": None}]
    assert pol.msr == [{"index": 0x10a, "policy": "x" * 64}]


def test_legacy_table_is_searched_before_featureset_names():
    assert "clflush" in N.LEGACY and "clflush" in N.FEATURES
    pol, _ = _parse("clflush=1")                     # 8-bit line size field
    assert _leaf(pol, 1)["ebx"] == "x" * 16 + "00000001" + "x" * 8


# ---------------------------------------------------------------- live xl

def _all_names_strings():
    names = list(N.LEGACY) + [n for n in N.FEATURES if n not in N.LEGACY]
    vals = ["0", "1", "x", "k", "s"]
    out, chunk = [], []
    for i, n in enumerate(names):
        chunk.append("%s=%s" % (n, vals[i % len(vals)]))
        if len(chunk) == 25:
            out.append(chunk)
            chunk = []
    out.append(chunk)
    return ["host," + ",".join(c) for c in out]


EDGE = [
    "host", "host,", "nothost,sse3=1", ",host,fpu=0", "host,,fpu=0,,",
    "host,sse3", "host,nosuch=1,fpu=1", "host,sse3=q", "host,sse3=", "host,=1",
    "host,sse3=1=2", "host,sse3=10", "host,sse3=0x3", "host,sse3=-1", "host,fpu=1junk",
    "host,maxleaf=0xffffffff", "host,maxleaf=-1", "host,maxleaf=99999999999999999999999",
    "host,maxleaf=k", "host,nc=255", "host,nc=256", "host,apicidsize=017",
    "host,procpkg=63", "host,maxhvleaf=0x40000005", "host,stepping=9,model=0xab,family=0x1f",
    "host,family=15", "host,family=16", "host,family=0x10e", "host,family=x", "host,model=s",
    "host,localapicid=7,proccount=4,brandid=0x11,clflush=8",
    "host,rdcl-no=0,ibrs-all=1,rsba=x,skip-l1dfl=k,ssb-no=s,pbrsb-no=1,its-no=0",
    "host,rdcl-no=10", "host,rdcl-no=", "host,rdcl-no=q,eager-fpu=1",
    "host,sse4.1=0,sse4_1=1,sse4-1=0", "host,SSE3=1", "host,sse3 =1", "host, sse3=1",
    "host,lfence+=1,avx512-fp16=0,clflush=1", "host,tsc_adjust=0,tsc-adjust=1",
    "host,fpu=0,avx2=0,svm=1,fpu=1,maxleaf=7,ibrsb=0,xsaveopt=0,lm=k",
]


def _text(cpuid: str) -> str:
    return 'name = "c"\nmemory = 128\nkernel = "/boot/vmlinuz"\ncpuid = "%s"\n' % cpuid


@pytest.mark.peer("xl")
def test_cpuid_strings_agree_with_xl():
    from oracle.xl import run_many
    strings = _all_names_strings() + EDGE
    texts = [_text(s) for s in strings]
    expected = run_many(texts, jobs=4)
    bad = []
    with tempfile.TemporaryDirectory(prefix="pyxl-cpuid-") as d:
        for s, text, r in zip(strings, texts, expected):
            Path(d, "t.cfg").write_text(text)
            diffs = differences(Answer(r.rc, r.stdout, r.stderr), run_pyxl("t.cfg", cwd=d))
            if diffs:
                bad.append((s, diffs))
    assert bad == []


@pytest.mark.peer("xl")
def test_cpuid_list_form_and_names_together_agree_with_xl():
    from oracle.xl import run_many
    texts = ['cpuid = ["1:ecx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0"]\nkernel="/k"\nmemory=64\n',
             'cpuid = "host,fpu=0"\ncpuid = "host,vmx=0"\nkernel="/k"\nmemory=64\n',
             'cpuid = "host,fpu=0"\nkernel="/k"\nmemory=64\n']
    exp = run_many(texts, jobs=3)
    with tempfile.TemporaryDirectory(prefix="pyxl-cpuid-") as d:
        for text, r in zip(texts, exp):
            Path(d, "t.cfg").write_text(text)
            assert differences(Answer(r.rc, r.stdout, r.stderr), run_pyxl("t.cfg", cwd=d)) == []


_NAMES = sorted(set(N.LEGACY) | set(N.FEATURES))
_item = st.one_of(
    st.tuples(st.sampled_from(_NAMES + ["bogus", "SSE3", ""]),
              st.one_of(st.sampled_from(["0", "1", "x", "k", "s", "", "q", "01", "x1", "-1"]),
                        st.integers(0, 2**40).map(hex),
                        st.integers(0, 300).map(str))).map("=".join),
    st.sampled_from(_NAMES))                        # no "=" at all


@pytest.mark.peer("xl")
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(_item, min_size=1, max_size=8))
def test_random_cpuid_strings_agree_with_xl(items):
    from oracle.xl import run_xl_text
    text = _text("host," + ",".join(items))
    r = run_xl_text(text)
    with tempfile.TemporaryDirectory(prefix="pyxl-cpuid-") as d:
        Path(d, "t.cfg").write_text(text)
        assert differences(Answer(r.rc, r.stdout, r.stderr), run_pyxl("t.cfg", cwd=d)) == [], text
