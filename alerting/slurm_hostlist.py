"""Slurm's hostlist expressions (``node-[01-03,07]``) and index ranges (``0-3,7``), as Slurm writes them."""

from __future__ import annotations

import re


def expand_hostlist(text: str) -> list[str]:
    """Slurm's hostlist expression to names: ``node-[01-03,07],gpu9`` -> node-01, node-02, node-03, ..."""
    names: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text + ","):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            if text[start:i]:
                names.extend(_expand_one(text[start:i]))
            start = i + 1
    return names


def _expand_one(pattern: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out: list[str] = []
    for value in numbers(match.group(1)):
        out.extend(head + value + rest for rest in _expand_one(tail))
    return out


def numbers(ranges: str) -> list[str]:
    """``01-03,7`` -> 01, 02, 03, 7 (zero padding kept)."""
    out: list[str] = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        if not high:
            out.append(low)
            continue
        width = len(low) if low.startswith("0") else 0
        out.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
    return out
