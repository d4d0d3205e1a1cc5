"""The data rows of a series CSV file (``anomaly.univariate.read_series_csv``), found with the csv module
before pandas reads the values: the header checked, every row's fields counted, the line of each row kept
for the refusals that name it."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gpuwarden.errors import InputError
from gpuwarden.yamlfile import not_utf8


def unreadable(path: Path, reason: object, give: str = "") -> InputError:
    """``in.csv: cannot read it: REASON``, the file first as a bad option's value is said (``--input
    'in.csv': cannot read it: ...``); an OSError said by its reason alone (``No such file or directory``),
    then ``give`` (what the option takes) where there is one, a file not in UTF-8 with what to do."""
    if isinstance(reason, OSError) and reason.strerror:
        reason = f"{reason.strerror}; {give}" if give else reason.strerror
    elif isinstance(reason, UnicodeDecodeError):  # said as a configuration file's is
        reason = not_utf8(reason)
    return InputError(f"{path}: cannot read it: {reason}", field="input")


@dataclass(frozen=True, slots=True)
class Rows:
    """The data rows of a CSV file: record index (blank lines included), line number, timestamp text."""

    records: list[int]
    lines: list[int]
    stamps: list[str]


def scan_rows(path: Path, give: str = "") -> Rows:
    """Find the data rows, refusing one whose field count is not the header's; blank lines are skipped.

    pandas reads a row with one field too many as if the first column were an index (the value becoming
    the time, the extra field the value) and fills a short row with gaps, so fields are counted here.
    """
    rows = Rows(records=[], lines=[], stamps=[])
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = _header(path, reader)
            column = header.index("timestamp")
            line = reader.line_num + 1
            for record, fields in enumerate(reader):
                if fields and not (len(fields) == 1 and not fields[0].strip()):
                    if len(fields) != len(header):
                        raise InputError(_ragged(path, line, len(fields), header), field="input")
                    rows.records.append(record)
                    rows.lines.append(line)
                    rows.stamps.append(fields[column])
                line = reader.line_num + 1
    except (OSError, ValueError, csv.Error) as exc:
        raise unreadable(path, exc, give) from exc
    if not rows.records:
        raise InputError(
            f"{path} has the header but no rows; nothing to score: add one row per sample (TIME,VALUE)",
            field="input",
        )
    return rows


def _header(path: Path, reader: Iterator[list[str]]) -> list[str]:
    """The first line's column names; an empty file, or a first line that lacks a column, is refused."""
    header = next(reader, None)
    if header is None:
        raise InputError(
            f"{path} is empty; write the header timestamp,value, then one row per sample", field="input"
        )
    if not header:
        raise InputError(
            f"{path} line 1 is blank; the first line must be the header timestamp,value", field="input"
        )
    missing = sorted({"timestamp", "value"} - set(header))
    if missing:
        raise InputError(
            f"{path} line 1: {','.join(header)!r} lacks the column(s) {', '.join(missing)}; the first line"
            " must be the header timestamp,value (add it above the first row if the file starts with data)",
            field="input",
        )
    twice = [name for name in ("timestamp", "value") if header.count(name) > 1]
    if twice:  # pandas would read the first and rename the other: which one was meant is not known
        raise InputError(
            f"{path} line 1: {','.join(header)!r} has the column {twice[0]} more than once; keep one (rename"
            " the others)",
            field="input",
        )
    return header


def _ragged(path: Path, line: int, fields: int, header: list[str]) -> str:
    shape = f"{path} line {line}: {fields} field{'s' if fields != 1 else ''} under a header of {len(header)}"
    if fields > len(header):
        return f"{shape} ({','.join(header)}); remove the extra field, or quote a field that holds a comma"
    return f"{shape} ({','.join(header)}); write every field (an empty value is a gap: TIME,)"


def unclosed_quote(path: Path, rows: Rows, error: Exception) -> InputError | None:
    """pandas' ``EOF inside string starting at row N`` said with the line and what to do, or None for
    another error: the csv module took the rest of the file for a field of the last row, which holds the
    quote that is never closed."""
    if "EOF inside string" not in str(error):
        return None
    return InputError(
        f'{path} line {rows.lines[-1]}: a quote (") opens a field that is never closed, so the rest of the'
        " file reads as one value; close the quote, or remove it",
        field="input",
    )
