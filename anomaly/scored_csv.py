"""Write a scored series as CSV (``timestamp,value,anomaly_score,label``), the bytes pandas' ``to_csv`` wrote.

pandas spent about 9 s per million rows here, a quarter of an ``anomaly score`` run: each float went through
numpy's ``astype(str)`` and each row through the ``csv`` module. Rows are now built as byte matrices, a block
of rows at a time: a float's shortest decimal form is found with float arithmetic (the fewest decimals whose
integer, divided back, gives the same float, and no neighbouring integer that also does), its digits laid out
column by column, and the rows joined by one boolean mask. What that cannot prove is formatted as pandas does
(``astype(str)``), and a block whose timestamps need CSV quoting or are not ASCII is written by pandas itself,
so the file is the same, byte for byte, as before (``tests/anomaly/test_scored_csv.py`` compares them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anomaly.univariate import ScoredSeries

HEADER = b"timestamp,value,anomaly_score,label\n"
BLOCK_ROWS = 1 << 17  # rows formatted at a time: a few tens of MB of matrices, not the whole file's
MAX_DECIMALS = 17
_POW10 = 10.0 ** np.arange(MAX_DECIMALS + 1)
_SPECIAL = (",", '"', "\r", "\n", "\x00")  # a timestamp holding one is quoted by pandas' csv writer


def write_scored_rows(scored: ScoredSeries, handle: BinaryIO) -> None:
    """Write the header and every row of ``scored`` to a binary ``handle``."""
    s = scored.series
    stamps = (
        list(s.stamps)
        if s.stamps is not None
        else pd.to_datetime(s.timestamps, unit="s", utc=True).strftime("%Y-%m-%d %H:%M:%S").tolist()
    )
    values = np.asarray(s.values, dtype=np.float64)
    scores = _rounded(scored.score)
    labels = np.asarray(scored.raised).astype(np.int8)
    handle.write(HEADER)
    for start in range(0, len(values), BLOCK_ROWS):
        end = start + BLOCK_ROWS
        block = (stamps[start:end], values[start:end], scores[start:end], labels[start:end])
        handle.write(_fast_block(*block) or _pandas_block(*block))


# np.round(x, 6) multiplies by 1e6: above this a finite score (1.6e307 for a value of 1e308) became "inf" in
# the file. A float this large has no decimals to round, so it is written as it is.
_ROUNDED_BELOW = float(np.finfo(np.float64).max) / 1e6


def _rounded(score: np.ndarray) -> np.ndarray:
    """The scores rounded to 6 decimals, as written; one too large to round stays as it is, finite."""
    rounded = np.array(score, dtype=np.float64)
    small = ~(np.abs(rounded) >= _ROUNDED_BELOW)  # NaN rounds (to NaN) as before
    rounded[small] = np.round(rounded[small], 6)
    return rounded


def _pandas_block(stamps: list[str], values: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> bytes:
    """Rows as pandas writes them: the reference, and the way for what the fast path does not cover."""
    frame = pd.DataFrame({"timestamp": stamps, "value": values, "anomaly_score": scores, "label": labels})
    return str(frame.to_csv(index=False, header=False, lineterminator="\n")).encode()


def _fast_block(
    stamps: list[str], values: np.ndarray, scores: np.ndarray, labels: np.ndarray
) -> bytes | None:
    """The block's rows as bytes, or ``None`` where pandas must write them (a timestamp CSV would quote, or
    that is not ASCII or not a string; a label other than 0 and 1)."""
    try:
        joined = "".join(stamps)
    except TypeError:  # strftime gives NaN for a time it cannot write: pandas writes it as empty
        return None
    if not joined.isascii() or any(c in joined for c in _SPECIAL) or ((labels != 0) & (labels != 1)).any():
        return None
    rows = len(stamps)
    stamp_text = np.array(stamps, dtype="U") if rows else np.zeros(0, dtype="U1")
    stamp_cells = stamp_text.view(np.uint32).reshape(rows, -1).astype(np.uint8)
    stamp_lengths = np.fromiter(map(len, stamps), dtype=np.int64, count=rows)  # np.strings needs numpy 2
    value_cells, value_lengths = float_cells(values)
    score_cells, score_lengths = float_cells(scores)
    comma = np.full((rows, 1), ord(","), dtype=np.uint8)
    label_cells = (labels.astype(np.uint8) + ord("0")).reshape(rows, 1)
    newline = np.full((rows, 1), ord("\n"), dtype=np.uint8)
    cells = np.hstack([stamp_cells, comma, value_cells, comma, score_cells, comma, label_cells, newline])
    ones = np.ones(rows, dtype=np.int64)
    keep = np.hstack(
        [
            _left_aligned(stamp_lengths, stamp_cells.shape[1]),
            _right_aligned(ones, 1),
            _right_aligned(value_lengths, value_cells.shape[1]),
            _right_aligned(ones, 1),
            _right_aligned(score_lengths, score_cells.shape[1]),
            _right_aligned(ones, 1),
            _right_aligned(ones, 1),
            _right_aligned(ones, 1),
        ]
    )
    return bytes(cells[keep].tobytes())


def _left_aligned(lengths: np.ndarray, width: int) -> np.ndarray:
    return np.arange(width) < lengths[:, None]


def _right_aligned(lengths: np.ndarray, width: int) -> np.ndarray:
    return np.arange(width) >= (width - lengths)[:, None]


def float_cells(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each float as numpy's ``astype(str)`` writes it (NaN as nothing), right-aligned in a row of bytes,
    with its length."""
    decimals, scaled = _shortest_decimals(numbers)
    exact = decimals > 0
    fallback = np.flatnonzero(~exact & ~np.isnan(numbers))
    texts = numbers[fallback].astype(str).tolist()  # pandas' own formatting, for what was not proved
    digits = np.maximum(_digit_counts(scaled), decimals + 1)
    negative = np.signbit(numbers) & exact
    lengths = np.where(exact, negative + digits + 1, 0)
    if texts:
        lengths[fallback] = [len(t) for t in texts]
    width = max(int(lengths.max(initial=0)), 1)
    cells = np.zeros((len(numbers), width), dtype=np.uint8)
    _lay_digits(cells, scaled, decimals, digits, negative)
    for row, text in zip(fallback.tolist(), texts, strict=True):
        cells[row, width - len(text) :] = np.frombuffer(text.encode(), dtype=np.uint8)
    return cells, lengths


def _shortest_decimals(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each float, the fewest decimals (1 to 17) that write it exactly in positional form, and its digits
    as an integer (``12.5`` -> 1, 125); 0 decimals where this is not proved (printed as numpy prints it).

    ``m / 10**d`` is correctly rounded, so when it equals the float, the text ``m`` with ``d`` decimals reads
    back as that float; ``m - 1`` and ``m + 1`` not doing so makes it the one such text with ``d`` decimals,
    and every smaller ``d`` having none makes it the shortest, which is what numpy prints between 1e-3
    and 1e15 (outside that range numpy may use an exponent: left to numpy).
    """
    magnitude = np.abs(numbers)
    positional = np.isfinite(numbers) & (((magnitude >= 1e-3) & (magnitude < 1e15)) | (magnitude == 0))
    decimals = np.zeros(len(numbers), dtype=np.int64)
    scaled = np.zeros(len(numbers), dtype=np.int64)
    open_ = np.flatnonzero(positional)
    for d in range(1, MAX_DECIMALS + 1):
        if not len(open_):
            break
        part = magnitude[open_]
        power = _POW10[d]
        product = part * power
        fits = product < 2.0**52  # the digits are an exact integer in a float
        middle = np.rint(product)
        matches = [(middle + k) / power == part for k in (-1, 0, 1)]
        one = matches[1] & ~matches[0] & ~matches[2] & fits
        found = open_[one]
        decimals[found] = d
        scaled[found] = middle[one].astype(np.int64)
        # Two texts of d decimals (or none proved) and not found: not proved, left to numpy.
        unsure = (matches[0] | matches[2]) & ~one | ~fits
        open_ = open_[~one & ~unsure]
    return decimals, scaled


def _digit_counts(scaled: np.ndarray) -> np.ndarray:
    """How many digits each integer has."""
    counts = np.ones(len(scaled), dtype=np.int64)
    for k in range(1, MAX_DECIMALS + 1):
        counts += scaled >= 10**k
    return counts


def _lay_digits(
    cells: np.ndarray, scaled: np.ndarray, decimals: np.ndarray, digits: np.ndarray, negative: np.ndarray
) -> None:
    """Write ``-``, the digits and the point of each float into its row, right-aligned (rows not proved are
    written over, or not shown, by the caller)."""
    width = cells.shape[1]
    place = np.arange(width)[None, :]  # counted from the right: 0 is the last column
    point = decimals[:, None]
    source = np.minimum(np.maximum(np.where(place < point, place, place - 1), 0), width - 1)
    digit_at = np.zeros((len(scaled), width), dtype=np.uint8)  # digit k of each integer, from the right
    rest = scaled.copy()
    for k in range(min(width, int(digits.max(initial=0)))):
        rest, digit_at[:, k] = np.divmod(rest, 10)
    text = np.take_along_axis(digit_at, source, axis=1) + np.uint8(ord("0"))
    text[place == point] = ord(".")  # broadcast: one point per row
    text[negative[:, None] & (place == (digits + 1)[:, None])] = ord("-")
    cells[:] = text[:, ::-1]
