"""Text from alerts (label values, annotations, names) made safe to print or to put in a document.

Label values are whatever a sender posted: an ESC sequence in one cleared the operator's terminal or set its
title, and a newline forged a row of ``incidents list``. Control characters (C0, DEL and C1) are written as
Python writes them in a string (``\\x1b``, ``\\n``), so they are seen, not obeyed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


# C0 controls, DEL and C1 controls: what a terminal may act on rather than show.
_CONTROLS = {code: _escaped(chr(code)) for code in (*range(0x20), *range(0x7F, 0xA0))}


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with every control character but those in ``keep`` written as an escape (``\\x1b``)."""
    table = {code: shown for code, shown in _CONTROLS.items() if chr(code) not in keep}
    return text.translate(table)


def escape_controls_in(value: Any) -> Any:
    """``value`` (decoded JSON) with ``escape_controls`` applied to every string in it, keys too."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, Mapping):
        return {escape_controls_in(k): escape_controls_in(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_controls_in(v) for v in value]
    return value
