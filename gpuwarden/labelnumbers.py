"""Whole numbers carried in alert label values (``gpu``, ``xid``, ``rank``): ASCII digits, bounded.

Alertmanager takes any UTF-8 label value, so an alert may say ``gpu="99999999999999999999"`` or
``xid="⁷⁹"``. ``str.isdigit`` calls both digits, yet ``int("⁷⁹")`` raises, a 20-digit index overflows the
store's 64-bit integers and 5,000 digits pass Python's int-from-string limit. Every reader of a numeric
label goes through ``label_number``: a value it does not take is no number, and the alert keeps its labels.
"""

from __future__ import annotations

MAX_LABEL_NUMBER = 2**31 - 1
"""The largest number a label may carry: far above any GPU index, XID code or rank, and 32-bit safe."""


def label_number(value: str | None, maximum: int = MAX_LABEL_NUMBER) -> int | None:
    """``value`` as a whole number from 0 to ``maximum`` when it is 1 to 10 ASCII digits; else None.

    String methods, not a regular expression: the applier reads a few of these per alert, and ASCII digits
    are exactly what ``isascii`` and ``isdigit`` both accept (an empty string is no digit)."""
    if value is None or len(value) > 10 or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= maximum else None
