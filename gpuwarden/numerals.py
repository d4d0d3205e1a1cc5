"""How a number is written where gpuwarden reads one from text: a command-line option (``--interval``), a
quoted value of the configuration file or a ``GPUWARDEN_`` variable.

As Go's strconv reads it (Prometheus' and kubectl's flags): decimal digits and a sign, and for a number
with a fraction a fraction and an exponent (``1e3``, ``.5``). Not Python's extras, which ``int()``,
``float()`` and pydantic take: ``9_400``, `` 5`` (blanks), ``inf``, ``nan``, ``0x10``. A sign is taken
everywhere: ``-1`` is then refused by the bounds, saying what to give.
"""

from __future__ import annotations

import math
import re

WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
AS_WRITTEN = "as the command line takes one (digits, no blanks or _)"
"""What a refusal of ``' 5'`` or ``'1_000'`` says they are not written as, before ``written_as_digits``'s fix
(``not a number as the command line takes one (digits, no blanks or _); write 1000``)."""
TOO_LARGE = "more than a number can hold"
"""What a refusal says of a number past a float's range (``1e999``, which ``float()`` reads as inf) or a
whole number past 64 bits (Go's strconv: "value out of range")."""
MAX_WHOLE_NUMBER = 2**63 - 1
"""The largest whole number an option takes, as Go's ``strconv.ParseInt(s, 10, 64)``: a larger one met
``float()`` further on and failed there (``demo --warmup-minutes``: ``OverflowError``)."""


def past_range(value: float) -> bool:
    """Whether an option's ``value`` is more than a number can hold (``TOO_LARGE``): a whole number past
    ``MAX_WHOLE_NUMBER``, a number past a float's range (``1e999``, read as inf)."""
    if isinstance(value, int):
        return not -MAX_WHOLE_NUMBER - 1 <= value <= MAX_WHOLE_NUMBER
    return not math.isfinite(value)


def is_finite(value: float) -> bool:
    """Whether ``value`` is a finite number: an int always is (``math.isfinite`` converts one to a float, and
    raises ``OverflowError`` for one of hundreds of digits)."""
    return isinstance(value, int) or math.isfinite(value)


def written_as_digits(text: str, whole: bool) -> str | None:
    """``text`` as the syntax above writes the same number, when Python reads it as one but it is not so
    written (``' 5'`` -> ``5``, ``'1_000'`` -> ``1000``); None otherwise."""
    plain = "".join(text.split()).replace("_", "")
    if plain == text or not (WHOLE_NUMBER if whole else NUMBER).fullmatch(plain):
        return None
    return plain
