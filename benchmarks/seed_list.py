"""``--seeds`` of the fuzz harnesses (``restart_fuzz.py``, ``crash_fuzz.py``): one parser for both."""

from __future__ import annotations

import argparse

SEEDS_HELP = "A-B (both included), A, or a comma-separated list of those"


def seed_list(text: str) -> list[int]:
    """The seeds ``text`` names (``0-4``, ``7``, ``3,10-12``), as an argparse ``type``: a malformed one is
    refused in one line, exit 2, before any seed runs."""
    out: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: write {SEEDS_HELP}, such as 0-9 or 3,7") from None
        if low > high:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {part} runs backwards; write {low}-{high} as {high}-{low}"
            )
        out.extend(range(low, high + 1))
    return out
