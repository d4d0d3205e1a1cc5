"""Alertmanager label matchers: ``=``, ``!=``, ``=~``, ``!~`` with fully anchored regular expressions.

Regular expressions run on RE2, as Alertmanager's (Go's regexp) do: time linear in the input, and the same
syntax (no backreferences or lookarounds). Python's backtracking engine let one filter or silence such as
``(a+)+b`` hold the server for seconds per alert, doubling with each character of a label value.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

from gpuwarden.errors import REQUIRED, UNPROCESSABLE, InputError

logger = logging.getLogger(__name__)
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the caller's 400, not a line on stderr

# A name is bare (Prometheus' classic label names) or quoted, as Alertmanager's UTF-8 matchers write
# any other name the alerts carry (`"foo-bar"="x"`).
_MATCHER_RE = re.compile(
    r'^\s*(?:([A-Za-z_][A-Za-z0-9_]*)|"((?:[^"\\]|\\.)+)")\s*(=~|!~|!=|=)\s*'
    r'(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))\s*$'
)


class MatchOp(enum.StrEnum):
    """The four matcher operators."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """One matcher; a missing label matches as the empty string, as in Alertmanager."""

    name: str
    op: MatchOp
    value: str
    _regex: Any = field(default=None, compare=False, repr=False)  # an RE2 pattern

    def __post_init__(self) -> None:
        if self.op in (MatchOp.RE, MatchOp.NRE):
            try:
                re2.compile(self.value, _RE2_OPTIONS)  # errors point into the value as written
                # Alertmanager anchors every regex: ^(?:value)$.
                compiled = re2.compile(f"^(?:{self.value})$", _RE2_OPTIONS)
            except UnicodeError as exc:  # a lone surrogate from an escape in a ?filter= value
                raise InputError(
                    f"invalid regular expression {self.value!r}: not valid Unicode",
                    field=self.name or "value",
                ) from exc
            except re2.error as exc:
                reason = (
                    exc.args[0].decode(errors="replace")
                    if exc.args and isinstance(exc.args[0], bytes)
                    else exc
                )
                raise InputError(
                    f"invalid regular expression {self.value!r}: {reason}", field=self.name or "value"
                ) from exc
            object.__setattr__(self, "_regex", compiled)

    @property
    def matches_empty(self) -> bool:
        """Whether a label set without this label (or with it empty) matches."""
        return self.matches({})

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this matcher."""
        actual = labels.get(self.name, "")
        if self.op is MatchOp.EQ:
            return actual == self.value
        if self.op is MatchOp.NE:
            return actual != self.value
        assert self._regex is not None
        found = self._regex.match(actual) is not None
        return found if self.op is MatchOp.RE else not found

    def to_dict(self) -> dict[str, Any]:
        """Alertmanager's API shape: name, value, isRegex, isEqual."""
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.op in (MatchOp.RE, MatchOp.NRE),
            "isEqual": self.op in (MatchOp.EQ, MatchOp.RE),
        }

    def __str__(self) -> str:
        name = self.name if _BARE_NAME.match(self.name) else f'"{_escape(self.name)}"'
        return f'{name}{self.op.value}"{_escape(self.value)}"'


def parse_matcher(text: str) -> Matcher:
    """Parse ``name="value"`` (or ``!=``, ``=~``, ``!~``); quotes optional for simple values."""
    m = _MATCHER_RE.match(text)
    if m is None:
        raise InputError(f'cannot parse matcher {text!r}; expected name="value"', field="matchers")
    name = m.group(1) if m.group(1) is not None else _unescape(m.group(2))
    quoted, bare = m.group(4), m.group(5)
    if bare and any(c in bare for c in "=!~"):  # `a==b`: a typo, not the value "=b" (Alertmanager refuses it)
        raise InputError(
            f"cannot parse matcher {text!r}: an operator character in an unquoted value; quote the value"
            f' ({m.group(1) or m.group(2)}{m.group(3)}"{_escape(bare)}") if it is meant',
            field="matchers",
        )
    value = _unescape(quoted) if quoted is not None else (bare or "")
    return go_checked(Matcher(name, MatchOp(m.group(3)), value))


def go_checked(matcher: Matcher) -> Matcher:
    """``matcher``, refused where Alertmanager's Go regexp refuses its regex and C++ RE2 takes it: ``\\C``,
    any single byte, which can split a character. Asked of what a request or a filter gives, not of a
    stored matcher, which mutes as it did."""
    if matcher.op in (MatchOp.RE, MatchOp.NRE) and _single_byte(matcher.value):
        raise InputError(
            f"invalid regular expression {matcher.value!r}: invalid escape sequence \\C (any single byte,"
            " which Alertmanager's Go regexp refuses); write . for any character",
            field=matcher.name or "value",
        )
    return matcher


def _single_byte(pattern: str) -> bool:
    """Whether ``pattern`` holds RE2's ``\\C`` (an escaped backslash before a C is no such escape)."""
    i = 0
    while i < len(pattern) - 1:
        if pattern[i] == "\\":
            if pattern[i + 1] == "C":
                return True
            i += 2
        else:
            i += 1
    return False


_BARE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPED = {"n": "\n", '"': '"', "\\": "\\"}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(text: str) -> str:
    """Alertmanager's unescaping of a quoted matcher value: ``\\n``, ``\\"`` and ``\\\\``; any other
    backslash stays (``r0\\d`` is a regex). Text outside the ASCII range is kept as written."""
    return _ESCAPE.sub(lambda m: _ESCAPED.get(m.group(1), m.group(0)), text)


def matcher_from_dict(data: Mapping[str, Any], where: str = "matchers") -> Matcher:
    """Build a matcher from Alertmanager's API shape: ``name``, ``value`` and ``isRegex`` required (absent or
    null: 422, as Alertmanager answers), ``isEqual`` true when absent.

    Errors name the field under ``where`` (``matchers[2].isRegex``): a non-empty label name (any name an
    alert may carry, as Alertmanager's UTF-8 names; ``foo-bar`` too),
    a string value, booleans for the flags (the string "false" is not false), a regex that compiles.
    """
    for required in ("name", "value", "isRegex"):  # null is absent to Alertmanager: 422 for either
        if data.get(required) is None:
            raise InputError("is required", field=f"{where}.{required}", status=UNPROCESSABLE, code=REQUIRED)
    name, value = data.get("name"), data.get("value")
    if not isinstance(name, str) or not name:
        raise InputError("must be a non-empty label name", field=f"{where}.name")
    if not isinstance(value, str):
        raise InputError("must be a string", field=f"{where}.value")
    for text, part in ((name, "name"), (value, "value")):
        if "\x00" in text:  # PostgreSQL cannot store it: refused on every store alike
            raise InputError("must not contain a NUL character (\\u0000)", field=f"{where}.{part}")
    flags = []
    for flag, default in (("isRegex", False), ("isEqual", True)):
        raw = data.get(flag)
        if raw is None:  # only isEqual gets here: absent or null, true (Alertmanager too)
            raw = default
        if not isinstance(raw, bool):
            raise InputError("must be true or false", field=f"{where}.{flag}")
        flags.append(raw)
    try:
        return go_checked(Matcher(name, _op(flags[0], flags[1]), value))
    except InputError as exc:
        raise InputError(exc.message, field=f"{where}.value") from exc


def stored_matcher(data: Mapping[str, Any]) -> Matcher:
    """A matcher as the store keeps it (written by ``to_dict``; not validated again: older rows load).

    Versions before RE2 stored Python regexes, some of which RE2 refuses (lookarounds, backreferences):
    such a silence keeps Python's engine, so it mutes what it muted and serve still starts, with a warning
    to replace it."""
    name, op, value = (
        str(data["name"]),
        _op(bool(data.get("isRegex", False)), bool(data.get("isEqual", True))),
        str(data["value"]),
    )
    try:
        return Matcher(name, op, value)
    except InputError:
        logger.warning(
            "stored matcher %s%s%r is not an RE2 (Alertmanager) regular expression; kept with Python's"
            " engine, replace the silence",
            name,
            op.value,
            value,
        )
    matcher = Matcher(name, MatchOp.EQ, value)
    object.__setattr__(matcher, "op", op)
    try:
        object.__setattr__(matcher, "_regex", re.compile(f"^(?:{value})$"))
    except re.error:  # no version stored one Python refused; match nothing rather than stop serve
        object.__setattr__(matcher, "_regex", re.compile(r"(?!)"))
    return matcher


def _op(is_regex: bool, is_equal: bool) -> MatchOp:
    if is_regex:
        return MatchOp.RE if is_equal else MatchOp.NRE
    return MatchOp.EQ if is_equal else MatchOp.NE


def mutes_everything(matchers: Sequence[Matcher]) -> bool:
    """Whether a silence of these matchers would mute alerts whatever their labels, which Alertmanager
    refuses: every matcher is ``=`` or ``=~`` and matches the empty string. A ``!=`` or ``!~`` matcher never
    counts as matching it (``alertname!="Watchdog"`` is a silence Alertmanager takes)."""
    return all(m.op in (MatchOp.EQ, MatchOp.RE) and m.matches_empty for m in matchers)


def all_match(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)
