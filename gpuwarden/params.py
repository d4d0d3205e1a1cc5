"""Query parameters of the HTTP APIs: a choice among values, a positive whole number (400 naming them)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from gpuwarden.errors import InputError

MAX_LIMIT = 1_000_000_000
"""The largest ``?limit=`` (the stores take 64-bit limits: a larger number overflowed into a 503)."""


def choice(value: str | None, name: str, allowed: Sequence[str]) -> str | None:
    """``value`` if it is one of ``allowed`` (or absent)."""
    if value is None or value in allowed:
        return value
    raise InputError(f"{value!r} is not one of {', '.join(allowed)}", field=name)


def positive(value: str | None, name: str, maximum: int = MAX_LIMIT) -> int | None:
    """``value`` as a whole number from 1 to ``maximum`` (or absent); ASCII digits only ("²" is a digit
    to ``str.isdigit``, not to ``int``)."""
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,10}", value) or not 1 <= int(value) <= maximum:
        raise InputError(f"{value!r} is not a whole number from 1 to {maximum}", field=name)
    return int(value)
