from __future__ import annotations

import pytest

from alerting.matchers import Matcher, MatchOp, matcher_from_dict, parse_matcher
from gpuwarden.errors import InputError


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


def test_garbage_matcher_is_refused() -> None:
    with pytest.raises(InputError):
        parse_matcher("no operator here")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "", "value": "x"}, "matchers[1].name"),
        ({"name": "1node", "value": "x"}, "matchers[1].name"),
        ({"name": 5, "value": "x"}, "matchers[1].name"),
        ({"value": "x"}, "matchers[1].name"),
        ({"name": "node", "value": None}, "matchers[1].value"),
        ({"name": "node", "value": "x", "isRegex": "false"}, "matchers[1].isRegex"),
        ({"name": "node", "value": "x", "isEqual": 0}, "matchers[1].isEqual"),
        ({"name": "node", "value": "[a-", "isRegex": True}, "matchers[1].value"),
    ],
    ids=[
        "empty-name",
        "bad-name",
        "number-name",
        "no-name",
        "null-value",
        "string-flag",
        "int-flag",
        "bad-regex",
    ],
)
def test_api_matchers_are_refused_naming_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as info:
        matcher_from_dict(data, "matchers[1]")
    assert info.value.field == field


def test_a_bad_regex_error_points_into_the_value_as_written() -> None:
    with pytest.raises(InputError, match="position 2"):
        matcher_from_dict({"name": "node", "value": "ab[", "isRegex": True})
