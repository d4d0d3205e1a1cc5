"""PromQL read as text: its ``#`` comments told from its strings, for the core's range guard and the
anomaly stage's query rules alike."""

from __future__ import annotations

import re

QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
"""A PromQL string literal: double- or single-quoted with backslash escapes, or a raw backtick string."""
COMMENT = re.compile(r"#[^\n]*")
"""A PromQL comment: from ``#`` to the end of its line."""
# A string or a comment, whichever starts first: a # in a string starts no comment, a quote in one no string.
_QUOTED_OR_COMMENT = re.compile(rf"{QUOTED.pattern}|{COMMENT.pattern}")


def uncommented(expr: str, *, blank_strings: bool = False) -> str:
    """``expr`` without its ``#`` comments (each runs to the end of its line), its strings kept or, with
    ``blank_strings``, emptied (``""``): what is left is what PromQL reads as operators and names."""

    def keep(match: re.Match[str]) -> str:
        text = match.group(0)
        return "" if text.startswith("#") else '""' if blank_strings else text

    return _QUOTED_OR_COMMENT.sub(keep, expr)
