"""cfgfile: settings and libxlu's getters (xlu_cfg_get_*), read_config."""

import os

import pytest

from pyxl.config.cfgfile import (ConfigParseError, ConfigReadError, XluList,
                                 parse, parse_tree, read_config,
                                 read_config_data)


def cfg(text, path="t.cfg"):
    warnings = []
    c = parse(text.encode() if isinstance(text, str) else text, path, warn=warnings.append)
    return c, warnings


def test_last_assignment_wins_and_numbers_are_text():
    c, _ = cfg('name=5\nname="b"\nkernel=0x10\n')
    assert c.get_string("name") == "b"
    assert c.get_string("kernel") == "0x10"
    assert c.line_of("name") == 2


def test_get_long_strtol_base0_and_warnings():
    c, w = cfg('a="512"\nb=0777\nc=0x10\nd=" 12"\ne="-5"\nf="abc"\ng="1e5"\n'
               'h="99999999999999999999"\ni=[1]\n')
    assert [c.get_long(k) for k in "abcde"] == [512, 511, 16, 12, -5]
    assert c.get_long("f") is None and c.get_long("g") is None
    assert c.get_long("h") is None and c.get_long("i") is None
    assert c.get_long("missing") is None
    assert w == [
        "t.cfg:6: warning: parameter `f' is not a valid number",
        "t.cfg:7: warning: parameter `g' is not a valid number",
        "t.cfg:8: warning: parameter `h' could not be parsed as a number: "
        "Numerical result out of range",
        "t.cfg:9: warning: parameter `i' is a list but should be a single value",
    ]


def test_dont_warn_silences():
    c, w = cfg('f="abc"\ni=[1]\ns="x"\n')
    assert c.get_long("f", dont_warn=True) is None
    assert c.get_string("i", dont_warn=True) is None
    assert c.get_list("s", dont_warn=True) is None
    assert w == []


def test_bounded_long_messages():
    c, w = cfg("v=5\n")
    assert c.get_bounded_long("v", 0, 3) is None
    assert c.get_bounded_long("v", 6, 9) is None
    assert c.get_bounded_long("v", 0, 9) == 5
    assert w == ["t.cfg:1: warning: value `5' is greater than maximum bound '3'",
                 "t.cfg:1: warning: value `5' is smaller than minimum bound '6'"]


def test_defbool():
    c, _ = cfg('a=1\nb=0\nc="0x0"\n')
    assert (c.get_defbool("a"), c.get_defbool("b"), c.get_defbool("c")) == (True, False, False)
    assert c.get_defbool("zz") is None


def test_plus_equals_strings_and_lists():
    c, w = cfg('s="a"\ns+="b"\nl=["x"]\nl+=["y",\n"z"]\nn+="new"\nm=1\nm+=2\n')
    assert c.get_string("s") == "ab"
    assert c.get_list_as_string_list("l") == ["x", "y", "z"]
    assert c.get_string("n") == "new"         # += with nothing before acts like =
    assert c.get_long("m") is None            # "12" but made with +=
    assert w == ["t.cfg:8: warning: can't use += with numbers for parameter `m'"]


def test_plus_equals_kind_mismatch_is_a_parse_error():
    with pytest.raises(ConfigParseError) as e:
        parse(b'x = 1\nx += [1]\n', "t.cfg")
    assert e.value.lines == [
        "t.cfg:2: config parsing error near `]': can't add [list] to \"string\" or vice versa"]


def test_lists_items_and_nesting():
    c, w = cfg('disk=["a",["b"],"c"]\nempty=[]\nname="x"\nv=[[1],[2,[3]]]\n')
    d = c.get_list("disk")
    assert isinstance(d, XluList) and d.count == 3
    assert [d.get_item(i) for i in range(4)] == ["a", None, "c", None]
    assert isinstance(d.get_value(1), XluList)
    assert c.get_list("empty").count == 0
    assert c.get_list("name") is None
    assert w == ["t.cfg:3: warning: parameter `name' is a single value but should be a list"]
    v = c.get_list("v")
    assert v.get_value(1).get_value(1).get_item(0) == "3"
    assert c.line_of("disk") == 1


def test_list_line_is_where_the_bracket_is():
    c, w = cfg('y=1\nx = [\n"a",\n1]\n')
    c.get_string("x")
    assert w == ["t.cfg:2: warning: parameter `x' is a list but should be a single value"]


def test_statement_forms():
    c, _ = cfg('a=1;b=2;;\n\n# comment\nc = [ # inside\n "x", # more\n\n ]\nd="last"')
    assert c.keys() == ["a", "b", "c", "d"]
    assert c.get_list_as_string_list("c") == ["x"]
    assert c.get_string("d") == "last"


def test_raw_bytes_survive():
    c, _ = cfg(b'name="\xff\xe9t\xc3\xa9"\n')
    assert c.get_string("name").encode("utf-8", "surrogateescape") == b"\xff\xe9t\xc3\xa9"


def test_parse_tree_stage():
    tree = parse_tree(b'a=1\nb+=["x"]\n')
    assert tree.data == "file"
    assert [t.data for t in tree.children] == ["assignment", "assignment"]
    ident, op, value = tree.children[1].children
    assert (ident.value, op.type, value.get_item(0)) == ("b", "PLUS_EQUALS", "x")


def test_read_config_appends_extras_like_xl(tmp_path):
    p = tmp_path / "d.cfg"
    p.write_bytes(b'name="a"\nkernel="/k"')
    assert read_config_data(str(p), ["memory=64", "x=1"]) == \
        b'name="a"\nkernel="/k"\nmemory=64\nx=1\n\n'
    assert read_config_data(str(p)) == b'name="a"\nkernel="/k"'
    c = read_config(str(p), ["memory=64", "name=\"b\""])
    assert c.get_long("memory") == 64 and c.get_string("name") == "b"
    with pytest.raises(ConfigParseError) as e:
        read_config(str(p), ["memory=64", "x=", "y = ]"])
    assert [l.split(":")[1] for l in e.value.lines] == ["3", "5"]


def test_dev_null_is_an_empty_config_like_xl():
    assert read_config_data("/dev/null", ['name="a"']) == b'\nname="a"\n\n'
    with pytest.raises(ConfigReadError) as e:
        read_config_data("/dev/zero")
    assert e.value.lines[0].endswith("/dev/zero is not a plain file: "
                                     "Inappropriate ioctl for device")


def test_read_errors(tmp_path):
    with pytest.raises(ConfigReadError) as e:
        read_config(str(tmp_path / "nope.cfg"))
    assert e.value.lines == [f"Failed to read config file: {tmp_path}/nope.cfg: "
                             "No such file or directory"]
    assert e.value.exit_code == 3
    with pytest.raises(ConfigReadError) as e:
        read_config(str(tmp_path))
    assert e.value.lines[-1] == (f"Failed to read config file: {tmp_path}: "
                                 "Inappropriate ioctl for device")


def test_tables_cache_is_in_user_cache_dir(tmp_path, monkeypatch):
    from pyxl.config import cfgfile
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cfgfile, "_TABLES", None)
    first = cfgfile.parse_tables()
    files = os.listdir(tmp_path / "pyxl")
    assert len(files) == 1 and files[0].endswith(".marshal")
    monkeypatch.setattr(cfgfile, "_TABLES", None)
    assert sorted(cfgfile.parse_tables()["expected"]) == sorted(first["expected"])
    # a corrupt or malformed cache is rebuilt, never trusted
    import marshal
    for junk in (b"garbage", marshal.dumps({"version": 1}), marshal.dumps([1, 2])):
        (tmp_path / "pyxl" / files[0]).write_bytes(junk)
        monkeypatch.setattr(cfgfile, "_TABLES", None)
        assert sorted(cfgfile.parse_tables()["expected"]) == sorted(first["expected"])
    with pytest.raises(ConfigParseError) as e:
        parse(b"x = ]\n", "t.cfg")
    assert e.value.lines[0].endswith("expecting STRING or NUMBER or '['")


def test_stages_compose():
    from pyxl.config.cfgfile import config_from_tree, scan
    data = b'a=1\nb=["x"]\nb+=["y"]\nc="s";c+="t"\n'
    assert scan(data)[0].type == "IDENT"
    direct, staged = parse(data, "t.cfg"), config_from_tree(parse_tree(data), "t.cfg")
    for key in "abc":
        assert staged.line_of(key) == direct.line_of(key)
        assert staged.get_string(key, True) == direct.get_string(key, True)
    assert staged.get_list_as_string_list("b") == ["x", "y"]
    assert staged.get_long("c", dont_warn=True) is None   # made with +=
