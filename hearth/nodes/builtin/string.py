"""String nodes: concatenate, substring, length, case, trim, replace, contains, compare, and regular
expression match / extract / replace (Python ``re`` syntax).

Patterns come from the prompt, so they run on the ``regex`` engine (re's syntax, already installed
with transformers) with a time limit and without holding the GIL: a catastrophically backtracking
pattern fails its node instead of freezing the server."""
from __future__ import annotations

import regex as re

# Seconds a prompt-supplied pattern may run before the node fails.
REGEX_TIMEOUT = 5.0

PYTHON_MODULE = "comfy_extras.nodes_string"


def _text(**options):
    return ("STRING", {"multiline": True, **options})


def _flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    flags = 0
    if case_insensitive:
        flags |= re.IGNORECASE
    if multiline:
        flags |= re.MULTILINE
    if dotall:
        flags |= re.DOTALL
    return flags


class _StringNode:
    CATEGORY = "utils/string"
    RETURN_TYPES = ("STRING",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "execute"


class StringConcatenate(_StringNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string_a": _text(), "string_b": _text(),
                             "delimiter": ("STRING", {"default": "", "multiline": False})}}

    def execute(self, string_a, string_b, delimiter):
        return (f"{string_a}{delimiter}{string_b}",)


class StringSubstring(_StringNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "start": ("INT", {}), "end": ("INT", {})}}

    def execute(self, string, start, end):
        return (string[start:end],)


class StringLength(_StringNode):
    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("length",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text()}}

    def execute(self, string):
        return (len(string),)


class CaseConverter(_StringNode):
    MODES = {"UPPERCASE": str.upper, "lowercase": str.lower, "Capitalize": str.capitalize, "Title Case": str.title}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(),
                             "mode": ("COMBO", {"multiselect": False, "options": list(cls.MODES)})}}

    def execute(self, string, mode):
        convert = self.MODES.get(mode)
        return (convert(string) if convert else string,)


class StringTrim(_StringNode):
    MODES = {"Both": str.strip, "Left": str.lstrip, "Right": str.rstrip}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(),
                             "mode": ("COMBO", {"multiselect": False, "options": list(cls.MODES)})}}

    def execute(self, string, mode):
        trim = self.MODES.get(mode)
        return (trim(string) if trim else string,)


class StringReplace(_StringNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "find": _text(), "replace": _text()}}

    def execute(self, string, find, replace):
        return (string.replace(find, replace),)


class StringContains(_StringNode):
    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("contains",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "substring": _text(),
                             "case_sensitive": ("BOOLEAN", {"default": True})}}

    def execute(self, string, substring, case_sensitive):
        if not case_sensitive:
            string, substring = string.lower(), substring.lower()
        return (substring in string,)


class StringCompare(_StringNode):
    RETURN_TYPES = ("BOOLEAN",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string_a": _text(), "string_b": _text(),
                             "mode": ("COMBO", {"multiselect": False,
                                                "options": ["Starts With", "Ends With", "Equal"]}),
                             "case_sensitive": ("BOOLEAN", {"default": True})}}

    def execute(self, string_a, string_b, mode, case_sensitive):
        if not case_sensitive:
            string_a, string_b = string_a.lower(), string_b.lower()
        if mode == "Starts With":
            return (string_a.startswith(string_b),)
        if mode == "Ends With":
            return (string_a.endswith(string_b),)
        if mode == "Equal":
            return (string_a == string_b,)
        raise ValueError(f"unknown comparison {mode!r}")


class RegexMatch(_StringNode):
    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("matches",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "regex_pattern": _text(),
                             "case_insensitive": ("BOOLEAN", {"default": True}),
                             "multiline": ("BOOLEAN", {"default": False}),
                             "dotall": ("BOOLEAN", {"default": False})}}

    def execute(self, string, regex_pattern, case_insensitive, multiline, dotall):
        try:
            return (re.search(regex_pattern, string, _flags(case_insensitive, multiline, dotall),
                              timeout=REGEX_TIMEOUT, concurrent=True) is not None,)
        except re.error:  # an invalid pattern matches nothing
            return (False,)


class RegexExtract(_StringNode):
    MODES = ["First Match", "All Matches", "First Group", "All Groups"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "regex_pattern": _text(),
                             "mode": ("COMBO", {"multiselect": False, "options": list(cls.MODES)}),
                             "case_insensitive": ("BOOLEAN", {"default": True}),
                             "multiline": ("BOOLEAN", {"default": False}),
                             "dotall": ("BOOLEAN", {"default": False}),
                             "group_index": ("INT", {"default": 1, "min": 0, "max": 100})}}

    def execute(self, string, regex_pattern, mode, case_insensitive, multiline, dotall, group_index):
        try:
            pattern = re.compile(regex_pattern, _flags(case_insensitive, multiline, dotall))
        except re.error:  # an invalid pattern extracts nothing
            return ("",)
        if mode == "First Match":
            match = pattern.search(string, timeout=REGEX_TIMEOUT, concurrent=True)
            return (match.group(0) if match else "",)
        if mode == "All Matches":
            # Whole matches; with groups in the pattern, each match's first group (as re.findall gives).
            found = pattern.findall(string, timeout=REGEX_TIMEOUT, concurrent=True)
            return ("\n".join(m[0] if isinstance(m, tuple) else m for m in found),)
        if mode == "First Group":
            match = pattern.search(string, timeout=REGEX_TIMEOUT, concurrent=True)
            if match and len(match.groups()) >= group_index:
                return (match.group(group_index) or "",)
            return ("",)
        if mode == "All Groups":
            groups = [m.group(group_index) or "" for m in pattern.finditer(string, timeout=REGEX_TIMEOUT, concurrent=True)
                      if m.groups() and len(m.groups()) >= group_index]
            return ("\n".join(groups),)
        return ("",)


class RegexReplace(_StringNode):
    DESCRIPTION = "Replaces the matches of a regular expression; the replacement may refer to groups (\\1)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "regex_pattern": _text(), "replace": _text()},
                "optional": {"case_insensitive": ("BOOLEAN", {"default": True}),
                             "multiline": ("BOOLEAN", {"default": False}),
                             "dotall": ("BOOLEAN", {"default": False, "tooltip":
                                        "Let '.' match newlines as well."}),
                             "count": ("INT", {"default": 0, "min": 0, "max": 100, "tooltip":
                                       "Replace at most this many matches; 0 replaces them all."})}}

    def execute(self, string, regex_pattern, replace, case_insensitive=True, multiline=False, dotall=False,
                count=0):
        flags = _flags(case_insensitive, multiline, dotall)
        return (re.sub(regex_pattern, replace, string, count=count, flags=flags, timeout=REGEX_TIMEOUT,
                       concurrent=True),)


NODE_CLASS_MAPPINGS = {
    "StringConcatenate": StringConcatenate,
    "StringSubstring": StringSubstring,
    "StringLength": StringLength,
    "CaseConverter": CaseConverter,
    "StringTrim": StringTrim,
    "StringReplace": StringReplace,
    "StringContains": StringContains,
    "StringCompare": StringCompare,
    "RegexMatch": RegexMatch,
    "RegexExtract": RegexExtract,
    "RegexReplace": RegexReplace,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "StringConcatenate": "Concatenate",
    "StringSubstring": "Substring",
    "StringLength": "Length",
    "CaseConverter": "Case Converter",
    "StringTrim": "Trim",
    "StringReplace": "Replace",
    "StringContains": "Contains",
    "StringCompare": "Compare",
    "RegexMatch": "Regex Match",
    "RegexExtract": "Regex Extract",
    "RegexReplace": "Regex Replace",
}
