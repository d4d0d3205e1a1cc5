"""Numeric command-line options with bounds, refused as every other bad option is: one line naming the
option, the value and what to give, exit 2 (``error: --warmup-minutes -1: use a whole number of at least
0``). typer's own ``min``/``max`` printed click's boxed "Invalid value ... Input should be greater than or
equal to 0" instead."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape

from gpuwarden.cli.consoles import refuse_option
from gpuwarden.numerals import NUMBER, TOO_LARGE, WHOLE_NUMBER  # what a number option takes (Go's strconv)


def whole_number(option: str, low: int | None, high: int | None = None, **kwargs: Any) -> Any:
    """A ``typer.Option`` named ``option`` that takes a whole number from ``low`` to ``high`` (no bound:
    None, as a seed has none); ``kwargs`` as ``typer.Option`` takes them (``help``, ``envvar``)."""
    return _bounded(option, int, low, high, kwargs)


def whole_number_argument(name: str, low: int | None, high: int | None = None, **kwargs: Any) -> Any:
    """``whole_number`` for a ``typer.Argument``, said by its ``name`` in capitals (``CODE``), as a bad
    argument is (``KIND 'bogus': use one of ...``)."""
    return _bounded(name.upper(), int, low, high, kwargs, argument=True)


def number(option: str, low: float, high: float | None = None, *, above: bool = False, **kwargs: Any) -> Any:
    """``whole_number`` for a number that may have a fraction (seconds, a speed-up); ``above``: ``low``
    itself is refused (a period or a duration of 0)."""
    return _bounded(option, float, low, high, kwargs, above=above)


def _bounded(
    option: str,
    convert: Callable[[str], float],
    low: float | None,
    high: float | None,
    kwargs: Any,
    *,
    above: bool = False,
    argument: bool = False,
) -> Any:
    """The option, its bounds in ``--help`` as typer shows them (``<int> [0<=x<=65535]``, ``[0<x<=3600]``)."""
    shown, wanted = _bounds_said("whole number" if convert is int else "number", low, high, above=above)

    written = WHOLE_NUMBER if convert is int else NUMBER

    def parse(value: Any) -> Any:
        try:  # a default is given as a number already; a typed value is text, in the syntax above
            if isinstance(value, str) and not written.fullmatch(value):
                raise ValueError(value)
            parsed = convert(value)
        except (TypeError, ValueError):
            refuse_option(f"{_source(option, value, kwargs)} {escape(repr(value))}: {wanted}")
        below = low is not None and (parsed <= low if above else parsed < low)
        if not math.isfinite(parsed):  # 1e999: Go's strconv says "value out of range"
            refuse_option(f"{_source(option, value, kwargs)} {escape(str(value))}: {TOO_LARGE}; {wanted}")
        if below or (high is not None and parsed > high):
            refuse_option(f"{_source(option, value, kwargs)} {escape(str(value))}: {wanted}")
        return parsed

    metavar = " ".join(filter(None, (f"<{'int' if convert is int else 'float'}>", shown)))
    if argument:  # its metavar is its name in --help: the bounds go after the help
        help_text = " ".join(filter(None, (kwargs.pop("help", ""), escape(shown))))
        return typer.Argument(parser=parse, metavar=option, help=help_text, **kwargs)
    return typer.Option(option, parser=parse, metavar=metavar, **kwargs)


def _bounds_said(kind: str, low: float | None, high: float | None, *, above: bool) -> tuple[str, str]:
    """The bounds as ``--help`` shows them and what a refusal says to give (``use a number above 0``)."""
    least, most = _written(low), _written(high)
    if low is None:
        return (
            (f"[x<={most}]", f"use a {kind} of at most {most}") if high is not None else ("", f"use a {kind}")
        )
    if high is None:
        if above:
            return f"[x>{least}]", f"use a {kind} above {least}"
        return f"[x>={least}]", f"use a {kind} of at least {least}"
    if above:
        return f"[{least}<x<={most}]", f"use a {kind} above {least} and at most {most}"
    return f"[{least}<=x<={most}]", f"use a {kind} from {least} to {most}"


def _written(bound: float | None) -> str:
    """A bound as it is typed: ``86400``, ``0.1``, ``1000000000`` (not ``1e+09``)."""
    return str(int(bound)) if bound is not None and float(bound).is_integer() else str(bound)


def _source(option: str, value: Any, kwargs: Any) -> str:
    """What set ``value``: ``option``, or its variable as well when that holds it (``--request-timeout
    (GPUWARDEN_REQUEST_TIMEOUT)``): click's parser does not say where a value came from."""
    envvar = kwargs.get("envvar")
    if isinstance(envvar, str) and os.environ.get(envvar) == str(value):
        return f"{option} ({envvar})"
    return option
