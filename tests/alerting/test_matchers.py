from __future__ import annotations

import pytest

from alerting.matchers import (
    Matcher,
    MatchOp,
    matcher_from_dict,
    mutes_everything,
    parse_matcher,
    stored_matcher,
)
from gpuwarden.errors import UNPROCESSABLE, InputError


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="NodeDown"', {"alertname": "NodeDown"}, True),
        ('alertname="NodeDown"', {"alertname": "NodeDownX"}, False),
        ('node!="a"', {"node": "b"}, True),
        ('node!="a"', {}, True),
        ('severity=~"warning|critical"', {"severity": "critical"}, True),
        ('severity=~"crit"', {"severity": "critical"}, False),
        ('severity!~"warn.*"', {"severity": "warning"}, False),
        ('severity!~"warn.*"', {"severity": "info"}, True),
        ('rack=""', {}, True),
        ('rack=~".+"', {}, False),
        ("job=node", {"job": "node"}, True),
    ],
    ids=[
        "eq",
        "eq-not-prefix",
        "ne",
        "ne-missing-label",
        "regex-alternation",
        "regex-is-anchored",
        "nre-match",
        "nre-no-match",
        "missing-equals-empty",
        "missing-fails-nonempty-regex",
        "unquoted",
    ],
)
def test_matchers_follow_alertmanager_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_api_shape_round_trips_all_four_operators() -> None:
    for op in MatchOp:
        m = Matcher("a", op, "x.*")
        assert matcher_from_dict(m.to_dict()) == m


def test_bad_regex_is_an_input_error_naming_the_label() -> None:
    with pytest.raises(InputError, match="node"):
        parse_matcher('node=~"("')


@pytest.mark.parametrize("op", ["=~", "!~"])
def test_a_single_byte_escape_alertmanager_refuses_is_refused_and_an_escaped_backslash_c_is_not(
    op: str,
) -> None:
    """C++ RE2 takes ``\\C`` (any byte); Alertmanager's Go regexp refuses it, and so did nothing here."""
    with pytest.raises(InputError, match="invalid escape sequence"):
        parse_matcher(f'node{op}"a\\\\Cb"')
    with pytest.raises(InputError) as info:
        matcher_from_dict({"name": "node", "value": "x\\C", "isRegex": True, "isEqual": op == "=~"}, "m[0]")
    assert info.value.field == "m[0].value"
    assert parse_matcher(f'node{op}"a\\\\\\\\Cb"').matches({"node": "a\\Cb"}) is (op == "=~")
    # One stored before this (a silence set then) still loads and mutes as RE2 reads it.
    assert stored_matcher({"name": "node", "value": "x\\C", "isRegex": True}).matches({"node": "xy"})


def test_garbage_matcher_is_refused() -> None:
    with pytest.raises(InputError):
        parse_matcher("no operator here")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "", "value": "x", "isRegex": False}, "matchers[1].name"),
        ({"name": 5, "value": "x", "isRegex": False}, "matchers[1].name"),
        ({"name": "node", "value": 5, "isRegex": False}, "matchers[1].value"),
        ({"name": "node", "value": "x", "isRegex": "false"}, "matchers[1].isRegex"),
        ({"name": "node", "value": "x", "isRegex": False, "isEqual": 0}, "matchers[1].isEqual"),
        ({"name": "node", "value": "[a-", "isRegex": True}, "matchers[1].value"),
    ],
    ids=["empty-name", "number-name", "number-value", "string-flag", "int-flag", "bad-regex"],
)
def test_api_matchers_are_refused_naming_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as info:
        matcher_from_dict(data, "matchers[1]")
    assert (info.value.field, info.value.status) == (field, 400)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"value": "x", "isRegex": False}, "matchers[1].name"),
        ({"name": "node", "value": None, "isRegex": False}, "matchers[1].value"),
        ({"name": "node", "value": "x"}, "matchers[1].isRegex"),
        ({"name": "node", "value": "x", "isRegex": None}, "matchers[1].isRegex"),
    ],
    ids=["no-name", "null-value", "no-isRegex", "null-isRegex"],
)
def test_api_matchers_without_a_required_field_are_unprocessable_as_in_alertmanager(
    data: dict[str, object], field: str
) -> None:
    """Alertmanager's schema requires name, value and isRegex (absent or null: 422); taking a missing
    isRegex as false silenced by name what the sender may have meant as a regex."""
    with pytest.raises(InputError) as info:
        matcher_from_dict(data, "matchers[1]")
    assert (info.value.field, info.value.status) == (field, UNPROCESSABLE)


def test_an_api_matcher_without_is_equal_or_with_it_null_is_an_equality() -> None:
    for data in (
        {"name": "a", "value": "x", "isRegex": False},
        {"name": "a", "value": "x", "isRegex": False, "isEqual": None},
    ):
        assert str(matcher_from_dict(data)) == 'a="x"'


def test_a_bad_regex_error_points_into_the_value_as_written() -> None:
    with pytest.raises(InputError, match=r"'ab\[': missing \]: \[$"):  # RE2's words, not the anchored copy's
        matcher_from_dict({"name": "node", "value": "ab[", "isRegex": True})


@pytest.mark.parametrize(
    "pattern", [r"(a)\1", "(?=a)a", "(?<!b)a"], ids=["backreference", "lookahead", "lookbehind"]
)
def test_regexes_have_alertmanagers_syntax_and_none_of_pythons_extras(pattern: str) -> None:
    with pytest.raises(InputError, match="invalid regular expression"):
        matcher_from_dict({"name": "node", "value": pattern, "isRegex": True})


def test_a_pattern_that_backtracks_for_ages_in_python_is_answered_at_once() -> None:
    # Python's engine needs about 2**40 steps here (minutes; the test would hit its timeout); RE2 is linear.
    matcher = parse_matcher('v=~"(a+)+b"')
    assert not matcher.matches({"v": "a" * 40 + "!"})
    assert matcher.matches({"v": "a" * 40 + "b"})


def test_which_matchers_also_match_a_missing_label() -> None:
    assert [parse_matcher(t).matches_empty for t in ('a=""', 'a=~".*"', 'a!="x"', 'a="x"', 'a=~".+"')] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_a_stored_python_only_regex_still_loads_and_matches_as_it_did() -> None:
    # Stored by a version before RE2: a lookahead, which RE2 (and Alertmanager) refuse.
    matcher = stored_matcher({"name": "job", "value": "(?!canary).*", "isRegex": True, "isEqual": True})
    assert matcher.matches({"job": "train"}) and not matcher.matches({"job": "canary"})
    assert matcher.to_dict()["isRegex"] is True


def test_an_escape_that_makes_no_unicode_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not valid Unicode"):
        Matcher("v", MatchOp.RE, "\ud800")
    with pytest.raises(InputError, match="invalid regular expression"):
        parse_matcher('v=~"\\ud800"')  # not an escape of Alertmanager's matchers: RE2 refuses \u


def test_a_silence_only_of_negative_matchers_is_not_one_that_mutes_everything() -> None:
    def everything(*texts: str) -> bool:
        return mutes_everything([parse_matcher(t) for t in texts])

    assert everything('a=""') and everything('a=~".*"', 'b=""')
    assert not everything('alertname!="Watchdog"')  # Alertmanager takes it: "all but the watchdog"
    assert not everything('a=""', 'b!~"x"') and not everything('a="x"')


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        ('node="gpü-01"', "node", "gpü-01"),  # not read as Latin-1 bytes
        ('"foo-bar"="x"', "foo-bar", "x"),  # a name an alert may carry, quoted as Alertmanager writes it
        ('a="x\\"y\\\\z\\nw"', "a", 'x"y\\z\nw'),
        ('a=~"r0\\d"', "a", "r0\\d"),  # any other backslash stays: a regex
    ],
)
def test_quoted_names_and_values_read_as_alertmanager_reads_them(text: str, name: str, value: str) -> None:
    matcher = parse_matcher(text)
    assert (matcher.name, matcher.value) == (name, value)
    assert parse_matcher(str(matcher)) == matcher


def test_a_label_name_an_alert_may_carry_can_be_silenced() -> None:
    matcher = matcher_from_dict({"name": "foo-bar", "value": "x", "isRegex": False})
    assert matcher.matches({"foo-bar": "x"})
    with pytest.raises(InputError, match="non-empty"):
        matcher_from_dict({"name": "", "value": "x", "isRegex": False})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "a\u0000", "value": "x", "isRegex": False}, "m.name"),
        ({"name": "a", "value": "x\u0000", "isRegex": False}, "m.value"),
    ],
)
def test_a_nul_in_a_matcher_is_refused_as_postgresql_would_refuse_it(
    data: dict[str, str], field: str
) -> None:
    with pytest.raises(InputError) as refused:
        matcher_from_dict(data, "m")
    assert refused.value.field == field


@pytest.mark.parametrize("text", ["a==b", "a=!b", "a!=~b", "a=~x~y"])
def test_an_operator_character_in_an_unquoted_value_is_refused_not_read_as_part_of_it(text: str) -> None:
    with pytest.raises(InputError, match="quote the value"):  # `a==b` was read as a="=b"
        parse_matcher(text)
    assert parse_matcher('a="=b"').value == "=b"
