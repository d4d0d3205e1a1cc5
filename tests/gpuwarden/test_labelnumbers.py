from __future__ import annotations

import pytest

from gpuwarden.labelnumbers import MAX_LABEL_NUMBER, label_number


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("0", 0),
        ("7", 7),
        ("079", 79),
        (str(MAX_LABEL_NUMBER), MAX_LABEL_NUMBER),
        (str(MAX_LABEL_NUMBER + 1), None),
        ("9" * 20, None),  # past a 64-bit integer (SQLite refused the incident's target)
        ("9" * 5000, None),  # past Python's int-from-string digit limit
        ("\u2077\u2079", None),  # superscript digits: str.isdigit accepts them, int() does not
        ("\u0663", None),  # an Arabic-Indic digit: int() accepts it, no exporter writes it
        ("", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1\n", None),
        ("1.0", None),
        (None, None),
    ],
    ids=[
        "zero",
        "digit",
        "leading-zero",
        "maximum",
        "past-maximum",
        "20-digits",
        "5000-digits",
        "superscript",
        "arabic-indic",
        "empty",
        "negative",
        "plus",
        "space",
        "newline",
        "decimal",
        "absent",
    ],
)
def test_a_label_number_is_ascii_digits_within_bounds_and_anything_else_is_none(
    value: str | None, number: int | None
) -> None:
    assert label_number(value) == number


def test_a_label_number_above_the_callers_maximum_is_none() -> None:
    assert label_number("8", maximum=7) is None and label_number("7", maximum=7) == 7
