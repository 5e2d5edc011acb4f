"""String, primitive and PreviewAny nodes (no torch needed)."""
from __future__ import annotations

import re

import pytest

from tests.nodes.conftest import run_node

TEXT = "Hello World\nhello again, WORLD 42 and 7"


@pytest.mark.parametrize("class_type,value", [("PrimitiveString", "a b"), ("PrimitiveStringMultiline", "a\nb"),
                                              ("PrimitiveInt", -(2 ** 62)), ("PrimitiveFloat", 2.5),
                                              ("PrimitiveBoolean", True)])
def test_primitives_pass_values_through(node_ctx, class_type, value):
    assert run_node(node_ctx, class_type, value=value) == (value,)


def test_string_basics(node_ctx):
    assert run_node(node_ctx, "StringConcatenate", string_a="ab", string_b="cd", delimiter=", ") == ("ab, cd",)
    assert run_node(node_ctx, "StringConcatenate", string_a="ab", string_b="cd", delimiter="") == ("abcd",)
    assert run_node(node_ctx, "StringSubstring", string="abcdef", start=1, end=-1) == ("bcde",)
    assert run_node(node_ctx, "StringSubstring", string="abcdef", start=4, end=99) == ("ef",)
    assert run_node(node_ctx, "StringLength", string="héllo\n") == (6,)
    assert run_node(node_ctx, "StringReplace", string="a-b-c", find="-", replace="+") == ("a+b+c",)


@pytest.mark.parametrize("mode,expected", [("UPPERCASE", "HELLO WORLD"), ("lowercase", "hello world"),
                                           ("Capitalize", "Hello world"), ("Title Case", "Hello World")])
def test_case_converter(node_ctx, mode, expected):
    assert run_node(node_ctx, "CaseConverter", string="hELLO wORLD", mode=mode) == (expected,)


@pytest.mark.parametrize("mode,expected", [("Both", "x y"), ("Left", "x y \n"), ("Right", "\t x y")])
def test_string_trim(node_ctx, mode, expected):
    assert run_node(node_ctx, "StringTrim", string="\t x y \n", mode=mode) == (expected,)


def test_contains_and_compare(node_ctx):
    assert run_node(node_ctx, "StringContains", string=TEXT, substring="world", case_sensitive=True) == (False,)
    assert run_node(node_ctx, "StringContains", string=TEXT, substring="world", case_sensitive=False) == (True,)
    for mode, b, sensitive, expected in [("Starts With", "hello", True, False), ("Starts With", "hello", False, True),
                                         ("Ends With", " 7", True, True), ("Equal", TEXT.upper(), False, True),
                                         ("Equal", TEXT.upper(), True, False)]:
        assert run_node(node_ctx, "StringCompare", string_a=TEXT, string_b=b, mode=mode,
                        case_sensitive=sensitive) == (expected,), (mode, b, sensitive)


def test_regex_match(node_ctx):
    def match(pattern, ci=True, ml=False, da=False):
        return run_node(node_ctx, "RegexMatch", string=TEXT, regex_pattern=pattern, case_insensitive=ci,
                        multiline=ml, dotall=da)[0]

    assert match("world") and not match("world", ci=False)
    assert match("^hello again", ml=True) and not match("^hello again")
    assert match("World.hello", da=True) and not match("World.hello")
    assert match("[") is False  # an invalid pattern matches nothing


@pytest.mark.parametrize("mode,pattern,group,expected", [
    ("First Match", r"\d+", 1, "42"),
    ("All Matches", r"\d+", 1, "42\n7"),
    ("All Matches", r"(\w)o(\w)", 1, "W\nW"),  # with groups: each match's first group
    ("First Group", r"(\w+) (\d+)", 2, "42"),
    ("First Group", r"(\w+) (\d+)", 0, "WORLD 42"),
    ("First Group", r"(\w+) (\d+)", 3, ""),
    ("All Groups", r"(\w+) (\d+)", 1, "WORLD\nand"),
    ("All Groups", r"\d+", 1, ""),  # no groups, nothing to give
    ("First Match", r"zzz", 1, ""),
    ("First Match", r"(", 1, ""),
])
def test_regex_extract(node_ctx, mode, pattern, group, expected):
    (out,) = run_node(node_ctx, "RegexExtract", string=TEXT, regex_pattern=pattern, mode=mode, case_insensitive=True,
                      multiline=False, dotall=False, group_index=group)
    assert out == expected


def test_regex_replace(node_ctx):
    def replace(pattern, repl, **options):
        return run_node(node_ctx, "RegexReplace", string=TEXT, regex_pattern=pattern, replace=repl, **options)[0]

    assert replace(r"(\d+)", r"<\1>") == "Hello World\nhello again, WORLD <42> and <7>"
    assert replace("world", "X") == "Hello X\nhello again, X 42 and 7"  # optional inputs default on
    assert replace("world", "X", case_insensitive=False) == TEXT
    assert replace("o", "0", count=2) == "Hell0 W0rld\nhello again, WORLD 42 and 7"
    assert replace("^hello", "bye", multiline=True) == "bye World\nbye again, WORLD 42 and 7"
    assert replace("World.hello", "-", dotall=True) == "Hello - again, WORLD 42 and 7"
    import regex
    with pytest.raises(regex.error):  # an invalid pattern fails the node, as in ComfyUI
        replace("(", "x")


@pytest.mark.parametrize("value,text", [("plain", "plain"), (3, "3"), (2.5, "2.5"), (True, "True"), (None, "None"),
                                        ({"a": [1, 2]}, '{"a": [1, 2]}'), ([1, "x"], '[1, "x"]')])
def test_preview_any(node_ctx, value, text):
    assert run_node(node_ctx, "PreviewAny", source=value) == {"ui": {"text": (text,)}}


def test_preview_any_unserialisable(node_ctx):
    class Thing:
        def __str__(self):
            return "a thing"

    class Broken:
        def __str__(self):
            raise RuntimeError("no")

    assert run_node(node_ctx, "PreviewAny", source=Thing()) == {"ui": {"text": ("a thing",)}}
    (text,) = run_node(node_ctx, "PreviewAny", source=Broken())["ui"]["text"]
    assert "could not be serialized" in text
