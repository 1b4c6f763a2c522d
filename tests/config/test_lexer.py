"""The scanner: flex's rules of libxlu_cfg_l.l, token by token."""

import pytest

from pyxl.config.cfgfile import _dequote_bytes, _Abort, scan, strtol


def kinds(data):
    return [(t.type, t.text) for t in scan(data)]


def test_identifiers_numbers_and_punctuation():
    assert kinds(b"on.0_x=0x1f;a+=[1,2]\n") == [
        ("IDENT", b"on.0_x"), ("EQUALS", b"="), ("NUMBER", b"0x1f"),
        ("SEMICOLON", b";"), ("IDENT", b"a"), ("PLUS_EQUALS", b"+="),
        ("LSQB", b"["), ("NUMBER", b"1"), ("COMMA", b","), ("NUMBER", b"2"),
        ("RSQB", b"]"), ("NEWLINE", b"\n"), ("$END", b"\0")]


@pytest.mark.parametrize("text,tokens", [
    (b"12abc", [("NUMBER", b"12abc")]),        # one token, "not a valid number" later
    (b"1e5", [("NUMBER", b"1e5")]),
    (b"1g", [("NUMBER", b"1"), ("IDENT", b"g")]),
    (b"0xx1", [("NUMBER", b"0xx1")]),
])
def test_number_token_shapes(text, tokens):
    assert kinds(text)[:-1] == tokens


def test_comment_is_a_newline_token_including_its_newline():
    toks = scan(b"# hello \nx=1 # c\n")
    assert (toks[0].type, toks[0].text, toks[0].line) == ("NEWLINE", b"# hello \n", 1)
    assert toks[-2].text == b"# c\n" and toks[-2].line == 2


def test_comment_without_final_newline_is_an_error_run():
    assert [t.type for t in scan(b"#c")] == ["$END"]


def test_bad_character_swallows_its_non_blank_run():
    # 'B' starts the error state, which swallows "ar=2" (no token); the
    # newline after the run is an ordinary NEWLINE on line 1
    toks = scan(b"x = Bar=2\ny=1\n")
    assert [t.type for t in toks] == ["IDENT", "EQUALS", "NEWLINE", "IDENT",
                                      "EQUALS", "NUMBER", "NEWLINE", "$END"]
    assert toks[2].text == b"\n" and toks[2].line == 1


def test_bad_character_right_before_newline_takes_the_newline():
    # <lexerr>\n: yytext is "(\n" and GOT() puts the token after the newline
    toks = scan(b"x = (\ny=1\n")
    assert toks[2].text == b"(\n" and toks[2].line == 2


def test_crlf_carriage_return_is_a_bad_character():
    toks = scan(b"x=1\r\n")
    assert toks[3].text == b"\r\n" and toks[3].type == "NEWLINE"


def test_unterminated_and_multiline_strings_are_not_strings():
    assert "STRING" not in [t.type for t in scan(b'x = "abc\n')]
    assert "STRING" not in [t.type for t in scan(b'x = "a\\\nb"\n')[:3]]


def test_string_values_are_dequoted():
    toks = scan(b"""x = "a\\"b\\'c\\\\d\\n\\t" 'q\\'"'\n""")
    assert toks[2].value == "a\"b'c\\d\n\t"
    assert toks[3].value == "q'\""


@pytest.mark.parametrize("raw,value,error", [
    (b'"a\\101b"', b"ab", None),               # octal-ish escape silently dropped
    (b'"\\1 1x"', b"x", None),                 # strtoul skips blanks
    (b'"\\1x"', b"", "octal"),
    (b'"\\12"', b"", "octal"),
    (b'"\\x41"', b"", "hex"),                  # \x always rejected in 4.17
    (b'"z\\q"', b"z", "backlash"),
    (b'"\\8"', b"", "backlash"),
    (b'"\\a\\b\\f\\r\\v"', b"\a\b\f\r\v", None),
])
def test_dequote_escapes(raw, value, error):
    got, msg = _dequote_bytes(raw)
    assert got == value
    if error is None:
        assert msg is None
    else:
        assert error in msg


def test_exact_escape_messages_keep_xls_typos():
    assert _dequote_bytes(b'"\\x"')[1] == ("invalid digit after backslash "
                                           "hexnumerical character escape in quoted string")
    assert _dequote_bytes(b'"\\q"')[1] == "invalid character after backlash in quoted string"


def test_nul_in_string_is_xls_assertion():
    with pytest.raises(_Abort, match="len>=2"):
        _dequote_bytes(b'"a')
    with pytest.raises(_Abort, match="p < src"):
        _dequote_bytes(b'"\\"')


@pytest.mark.parametrize("text,result", [
    ("12", (12, 2, "")), (" 12", (12, 3, "")), ("+12", (12, 3, "")),
    ("-5", (-5, 2, "")), ("0777", (511, 4, "")), ("0x1F", (31, 4, "")),
    ("08", (0, 1, "")), ("0x", (0, 1, "")), ("abc", (None, 0, "")),
    ("", (None, 0, "")), ("12abc", (12, 2, "")),
    ("9223372036854775807", (2**63 - 1, 19, "")),
    ("9223372036854775808", (2**63 - 1, 19, "ERANGE")),
    ("-9223372036854775809", (-2**63, 20, "ERANGE")),
])
def test_strtol_base0(text, result):
    assert strtol(text) == result
