"""What a PromQL read found about the size of its requests, said in one line per read (a warm-up under
VictoriaMetrics' point limit said one line per query), and the short lists those lines name."""

from __future__ import annotations

import logging

# The read's logger: these lines are the PromQL client's (``anomaly.promhttp``).
logger = logging.getLogger("anomaly.promhttp")


def listed(items: list[str], shown: int = 5) -> str:
    """The first ``shown`` of ``items``, and how many more."""
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {more} more" if more > 0 else "")


def say_parts(source: str, found: list[tuple[str, int, str, int]], grown: list[tuple[str, int]]) -> None:
    """Say the part sizes a read found (``found``: query, steps refused, why, part size) or grew (``grown``:
    query, part size now answered): one line per query where one, else one line for all of them (the first
    few named, with their sizes)."""
    if len(found) == 1:
        query, asked, why, size = found[0]
        logger.warning(
            "promql: query %s: a read of %s was refused (%s); it is read in parts of at most %s",
            query,
            _steps(asked),
            why,
            _steps(size),
            extra={"source": source, "query": query},
        )
    elif found:
        logger.warning(
            "promql: %d queries: a read was refused (%s); each is read in parts: %s",
            len(found),
            found[0][2],
            listed(
                [f"{q} ({_steps(asked)} refused, parts of at most {size})" for q, asked, _, size in found]
            ),
            extra={"source": source},
        )
    if len(grown) == 1:
        query, tried = grown[0]
        logger.info(
            "promql: query %s: parts of %s were answered; it is read in parts that long from now on",
            query,
            _steps(tried),
            extra={"source": source, "query": query},
        )
    elif grown:
        logger.info(
            "promql: %d queries: longer parts were answered; each is read in parts that long from now on: %s",
            len(grown),
            listed([f"{q} ({_steps(tried)})" for q, tried in grown]),
            extra={"source": source},
        )


def _steps(count: int) -> str:
    return "1 step" if count == 1 else f"{count} steps"
