"""Query parameters of the HTTP APIs: one value, a choice among values, a positive whole number (400 naming
them)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.datastructures import QueryParams

from gpuwarden.errors import InputError

MAX_LIMIT = 1_000_000_000
"""The largest ``?limit=`` (the stores take 64-bit limits: a larger number overflowed into a 503)."""


def single(params: QueryParams, name: str, default: str | None = None) -> str | None:
    """The value of a parameter that takes one (``default`` when absent). Given twice, it is refused:
    ``?limit=1&limit=2`` took one of them silently, and which one the caller meant is not clear."""
    values = params.getlist(name)
    if len(values) > 1:
        raise InputError(f"given {len(values)} times; give it once", field=name)
    return values[0] if values else default


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
