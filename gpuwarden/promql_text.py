"""PromQL read as text: its ``#`` comments told from its strings, for the core's range guard and the
anomaly stage's query rules alike; and what a load can tell of a query without Prometheus (an unbalanced
bracket or quote, a regex Prometheus refuses), for ``anomaly.queries``' checks."""

from __future__ import annotations

import re
import warnings

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


_CLOSES = {")": "(", "]": "[", "}": "{"}


def promql_bracket_problem(expr: str) -> str | None:
    """What is unbalanced in ``expr``'s (), [], {} and quotes, or None: a cheap offline check only, which
    catches a typo at load; Prometheus checks the full syntax when the query runs."""
    opened: list[tuple[str, int]] = []
    quote: tuple[str, int] | None = None
    i = 0
    while i < len(expr):
        c = expr[i]
        if quote is not None:
            if c == "\\" and quote[0] != "`":
                i += 1  # an escaped character, the quote included
            elif c == quote[0]:
                quote = None
        elif c in "\"'`":
            quote = (c, i)
        elif c == "#":  # a comment, to the end of the line
            end = expr.find("\n", i)
            i = len(expr) if end < 0 else end
        elif c in "([{":
            opened.append((c, i))
        elif c in _CLOSES:
            if not opened or opened[-1][0] != _CLOSES[c]:
                after = f" (the {opened[-1][0]!r} at character {opened[-1][1] + 1} is open)" if opened else ""
                return f"{c!r} at character {i + 1} closes nothing{after}"
            opened.pop()
        i += 1
    if quote is not None:
        return f"the quote {quote[0]} at character {quote[1] + 1} is not closed"
    if opened:
        return f"{opened[-1][0]!r} at character {opened[-1][1] + 1} is not closed"
    return None


# A label matcher's regex (``=~`` / ``!~``) and its PromQL string (``QUOTED``).
_REGEX_MATCHER = re.compile(rf"([=!]~)\s*({QUOTED.pattern})")
_STRING_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}
# What Python's ``re`` and Prometheus's RE2 (Go ``regexp``) both refuse: a broken set, group or repeat.
# Where the two dialects differ (\p{L}, \z, (?<name>...), (?U)) nothing is said: Prometheus decides.
_BROKEN_IN_BOTH = (
    "unterminated character set",
    "missing ), unterminated subpattern",
    "unbalanced parenthesis",
    "nothing to repeat",
    "multiple repeat",
    "bad character range",
    "min repeat greater than max repeat",
)


def _promql_string(quoted: str) -> str:
    """The value of a PromQL string literal (an unknown escape kept as written: Prometheus refuses it)."""
    body = quoted[1:-1]
    if quoted[0] == "`":
        return body
    return re.sub(r"\\(.)", lambda m: _STRING_ESCAPES.get(m.group(1), m.group(0)), body)


def promql_regex_problem(expr: str) -> str | None:
    """The first label matcher in ``expr`` whose regex Prometheus would refuse, said with its position and
    what is wrong, or None: each tick's query would come back 400 and the query would never be scored."""
    for match in _REGEX_MATCHER.finditer(expr):
        pattern = _promql_string(match.group(2))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "possible nested set" on POSIX classes RE2 accepts
                re.compile(pattern)
        except re.error as err:
            if err.msg in _BROKEN_IN_BOTH:
                return (
                    f"the regex {pattern!r} of {match.group(1)} at character {match.start() + 1} is broken"
                    f" ({err.msg}); Prometheus answers 400 to every read of it"
                )
    return None
