"""Text from alerts (label values, annotations, names) made safe to print or to put in a document.

Label values are whatever a sender posted: an ESC sequence in one cleared the operator's terminal or set its
title, a newline forged a row of ``incidents list``, and a bidi override (U+202E) or a zero-width character
made a row show text other than what is stored (``incidents list`` showed ``node-10`` for a stored
``node-\\u202e01``). Control characters (C0, DEL and C1), format characters (Unicode category Cf: the bidi
embeddings, overrides, isolates and marks, zero-width spaces and joiners, the BOM), line and paragraph
separators (U+2028, U+2029) and lone surrogates (which no terminal encoding can print) are written as Python
writes them in a string (``\\x1b``, ``\\n``, ``\\u202e``, ``\\U000e0001``), so they are seen, not obeyed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Controls, format characters, line/paragraph separators, surrogates: what a terminal or a bidi algorithm
# acts on rather than shows.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Only characters outside printable ASCII are looked up: a document of plain text goes through untouched.
_SUSPECT = re.compile(r"[^\x20-\x7e]")


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with every control or format character but those in ``keep`` written as an escape
    (``\\x1b``, ``\\u202e``)."""
    if text.isprintable():  # no control, format, separator or surrogate character: the common case
        return text

    def shown(match: re.Match[str]) -> str:
        char = match.group()
        return _escaped(char) if char not in keep and unicodedata.category(char) in _HIDDEN else char

    return _SUSPECT.sub(shown, text)


def escape_controls_in(value: Any) -> Any:
    """``value`` (decoded JSON) with ``escape_controls`` applied to every string in it, keys too."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, Mapping):
        return {escape_controls_in(k): escape_controls_in(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_controls_in(v) for v in value]
    return value


SAID_CHARS = 200  # what another server said, as an error line or a report shows it: a one-line message fits


def clipped(text: str, limit: int = SAID_CHARS, more: bool = False) -> str:
    """``text`` escaped (``escape_controls``) in at most ``limit`` characters, cut between characters, never
    inside an escape, and ended with "..." where some was left out or ``more`` says that more followed."""
    shown = escape_controls(text)
    if len(shown) <= limit and not more:
        return shown
    room = limit - 3
    if len(shown) <= room:
        return shown + "..."
    if len(shown) == len(text):  # nothing was escaped: a character is one character shown
        return shown[:room] + "..."
    kept: list[str] = []
    for char in text[:room]:  # each character shows as one or more, so no more than room of them fit
        piece = escape_controls(char)
        room -= len(piece)
        if room < 0:
            break
        kept.append(piece)
    return "".join(kept) + "..."
