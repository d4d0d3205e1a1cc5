"""DeadlineCaller: each call returns or raises by its deadline; an abandoned call holds back the next."""

from __future__ import annotations

import threading

import pytest

from alerting.notifiers.deadline import CallAbandoned, DeadlineCaller, time_left


def test_a_call_answers_with_its_result_or_its_own_exception() -> None:
    caller = DeadlineCaller(30.0, name="test")
    assert caller.call("add", lambda: 1 + 1) == 2
    with pytest.raises(ZeroDivisionError):
        caller.call("divide", lambda: 1 / 0)


def test_the_call_sees_the_time_left_to_its_deadline_and_none_outside_one() -> None:
    left = DeadlineCaller(30.0, name="test").call("look", time_left)
    assert left is not None and 0 < left <= 30.0
    assert time_left() is None


def test_a_call_without_an_answer_is_abandoned_and_the_next_is_not_made_until_it_ends() -> None:
    caller = DeadlineCaller(0.2, name="test", setting="x.call_deadline_seconds")
    release = threading.Event()
    made: list[str] = []
    with pytest.raises(CallAbandoned, match=r"0\.2 s \(x\.call_deadline_seconds\)"):
        caller.call("held", lambda: release.wait(60))
    with pytest.raises(CallAbandoned, match="not made: the earlier held"):
        caller.call("next", lambda: made.append("next"))
    assert made == [], "a call that could overtake the abandoned one, or miss what it did, was made"
    release.set()
    assert caller.call("after", lambda: made.append("after")) is None
    assert made == ["after"]
