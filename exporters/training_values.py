"""What a training loop may pass as a number: each value as a float or int, or the reason it is dropped.

The loop boundary of ``TrainingMetrics``: reading a value never raises here. A torch tensor's ``float()``
raises after a CUDA error; that ended the training loop that only wanted its metrics reported.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

from exporters.training_ranks import UNREADABLE

# Why a value is dropped, or None; ``unreadable: <the error>`` when reading it raised (a CUDA error surfaces
# in a tensor's ``float()``: a training loop must not die of its metrics), the error for the log alone.
Reason = str | None


def whole_count(value: object) -> tuple[int | None, str]:
    """``value`` as an int (numpy's and torch's integers too), or None and why (with the error of a read that
    raised): a bool, float or string is no count of steps."""
    if isinstance(value, bool):
        return None, "bad_steps"
    try:
        return operator.index(value), "bad_steps"  # type: ignore[arg-type]
    except TypeError:
        return None, "bad_steps"
    except Exception as exc:  # noqa: BLE001 - the loop boundary: the caller counts and logs it
        return None, f"{UNREADABLE}: {error_text(exc)}"


def float_value(value: object) -> tuple[float, Reason]:
    """``value`` as a float, or why it is not one (``unreadable: <the error>`` when reading it raised)."""
    if isinstance(value, bool | str | bytes):  # float("64") and float(True) work; neither is a count
        return 0.0, "not_a_number"
    try:
        return float(value), None  # type: ignore[arg-type]  # ints, floats, numpy and torch scalars
    except (TypeError, ValueError, OverflowError):
        return 0.0, "not_a_number"
    except Exception as exc:  # noqa: BLE001 - the loop boundary: the caller counts and logs it
        return 0.0, f"{UNREADABLE}: {error_text(exc)}"


def error_text(exc: BaseException) -> str:
    """The exception as a log line shows it: its type and message."""
    return f"{type(exc).__name__}: {shown_value(exc, str)}"


def shown_value(value: object, show: Callable[[object], str] = repr) -> str:
    """``repr(value)`` for a log line, or its type where that raises (a tensor after a CUDA error)."""
    try:
        return show(value)
    except Exception:  # noqa: BLE001 - a log line must not raise: the type says enough
        return f"<{type(value).__name__}>"


def number_value(value: object, *, allow_inf: bool = False) -> tuple[float, Reason]:
    """``value`` as a float >= 0, or the reason it is not one."""
    number, reason = float_value(value)
    if reason is not None:
        return 0.0, reason
    if math.isnan(number) or (math.isinf(number) and not (allow_inf and number > 0)):
        return 0.0, "not_finite"
    if number < 0:
        return 0.0, "negative"
    return number, None
