"""How a number is written where gpuwarden reads one from text: a command-line option (``--interval``), a
quoted value of the configuration file or a ``GPUWARDEN_`` variable.

As Go's strconv reads it (Prometheus' and kubectl's flags): decimal digits and a sign, and for a number
with a fraction a fraction and an exponent (``1e3``, ``.5``). Not Python's extras, which ``int()``,
``float()`` and pydantic take: ``9_400``, `` 5`` (blanks), ``inf``, ``nan``, ``0x10``. A sign is taken
everywhere: ``-1`` is then refused by the bounds, saying what to give.
"""

from __future__ import annotations

import re

WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
TOO_LARGE = "more than a number can hold"
"""What a refusal says of a number past a float's range (``1e999``, which ``float()`` reads as inf; Go's
strconv: "value out of range")."""


def written_as_digits(text: str, whole: bool) -> str | None:
    """``text`` as the syntax above writes the same number, when Python reads it as one but it is not so
    written (``' 5'`` -> ``5``, ``'1_000'`` -> ``1000``); None otherwise."""
    plain = "".join(text.split()).replace("_", "")
    if plain == text or not (WHOLE_NUMBER if whole else NUMBER).fullmatch(plain):
        return None
    return plain
