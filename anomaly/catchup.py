"""How far back a query's next read reaches: the steps it missed, within what its server can answer.

A query that failed reads again from its last good read (up to ``max_lookback_seconds``), so an outage leaves
no hole. But that catch-up asks for every missed step at once: after a 90 s outage a fleet whose one-step
reads took 1.4 s asked 20 steps of 24,000 series, which no read finished within its deadline, so it failed
again and asked more at the next tick, up to the whole lookback, and the query was never read again (the
source stayed down, ``GpuwardenSourceStale`` firing, every alert held, until a restart). A catch-up that fails
for its size (no answer in time, Prometheus' query timeout or sample limit) is halved at each attempt, down to
one step; the oldest missed steps are left unread (a gap, as an outage longer than ``max_lookback_seconds``
leaves). The service's own window is no floor: while the source is down it is the whole outage too.

A server that answers not even a tick's own window in time (a Prometheus hung, SIGSTOP or a stalled disk)
fails every read whatever its size: its failures say nothing of the catch-up's. Read as too long, the
first tick of the hang halved the catch-up and the next ones cut it to one step, so the whole hang stayed
unread once the server was back (``read the last 1s; the 29s before ... stay unread``). Such a failure
leaves the catch-up whole (``max_lookback_seconds``) and, until the server answers again, no failed
catch-up is shortened.
"""

from __future__ import annotations

import logging
import math

from anomaly.read_said import listed

logger = logging.getLogger(__name__)

# Failed catch-ups of a query found stalled (its tick's own window unanswered) not shortened, before they are
# again: a server back from its hang with every catch-up too long for it answers nothing either, and left
# whole for good they failed at every tick, the source down until a restart. A hang longer than this many
# ticks may leave part of it unread, as every hang did before.
STALL_EXCUSED = 10


class CatchUp:
    """Per query: the longest catch-up its next read may ask for, once one failed for its size."""

    def __init__(self, source: str, max_lookback_seconds: float) -> None:
        self.source = source
        self.max_lookback_seconds = max_lookback_seconds
        self._longest: dict[str, float] = {}  # query -> seconds its next catch-up may span (halved)
        self._cut: dict[str, tuple[float, float]] = {}  # query -> (seconds read, seconds left out) by it
        self._asked_to: dict[str, float] = {}  # query -> the end of the read asked before this one
        self._asked_end: dict[str, float] = {}  # query -> the end of the read asked last
        # Queries whose tick's own window (no catch-up) got no answer in time, until the server answers one
        # of this source's requests: a hung server, whose failed catch-ups are no sign of their size.
        self._stalled: dict[str, int] = {}  # query -> its failed catch-ups let pass since (``STALL_EXCUSED``)
        # What this read shortened and left out, said in one line each by ``flush`` at its end: a Prometheus
        # hung (SIGSTOP, past the read's deadline) had a line per query at every tick, and 24 at its return.
        self._shortened: list[tuple[str, float, str, float]] = []  # (query, seconds asked, why, next span)
        self._gaps: list[tuple[str, float, float]] = []  # (query, seconds read, seconds left out)

    def since(self, query: str, start: float, end: float, done: float | None, step: float) -> float:
        """Where the query's read over ``(start, end]`` starts: at ``done``, its last good read, when earlier
        (a catch-up), within ``max_lookback_seconds`` and the span a failed catch-up left it (one ``step``
        at least)."""
        since = max(min(start, start if done is None else done), end - self.max_lookback_seconds)
        if query in self._asked_end:
            self._asked_to[query] = self._asked_end[query]
        self._asked_end[query] = end
        longest = self._longest.get(query)
        self._cut.pop(query, None)
        if longest is None:
            return since
        shortened = max(since, end - max(longest, step))
        if math.floor(shortened / step) > math.floor(since / step):  # a step of the grid left out
            self._cut[query] = (end - shortened, shortened - since)
        return shortened

    def failed(
        self, query: str, since: float, end: float, step: float, why: str, *, read_before: bool = True
    ) -> None:
        """A read of ``(since, end]`` was too slow or too big (``why``): the next asks half as far back, one
        ``step`` at least.

        A query not ``read_before`` by this process is shortened only where the read asked from before the
        end of the one asked before it (a catch-up): its warm-up's hour and each tick's own window, after
        the last, miss nothing, and a typo VictoriaMetrics refuses with HTTP 422 was said to be too long for
        them (at every tick of several steps). But a process restarted from a snapshot asks from the
        snapshot's last read at its first tick: a catch-up too big for the server failed, asked more at
        every tick, and the restarted service never read again (source down, every alert held), where the
        process before it would have read on from a shortened catch-up."""
        own_window = since >= self._asked_to.get(query, -math.inf)  # nothing it missed before was asked
        if own_window and query in self._asked_to:
            # Not even the tick's own steps answered in time: the server is hung, not the catch-up too long.
            self._longest.pop(query, None)
            self._cut.pop(query, None)
            self._stalled.setdefault(query, 0)
            return
        excused = self._stalled.get(query)
        if excused is not None and excused < STALL_EXCUSED:
            self._stalled[query] = excused + 1
            return  # the server answers nothing yet: its size is not why this catch-up failed
        self._stalled.pop(query, None)
        if end - since < 1.5 * step:
            return  # one step (and the scheduler's jitter): nothing to leave out
        if not read_before and own_window:
            return
        half = (end - since) / 2
        self._longest[query] = half
        self._shortened.append((query, end - since, why, max(half, step)))

    def answered(self) -> None:
        """The server answered a request of this read (a query read, in part or whole, or refused): it is not
        hung, and a catch-up failing from now on may be too long for it."""
        self._stalled.clear()

    def succeeded(self, query: str) -> None:
        """A good read: the query's next catch-up may reach back the whole lookback again. One it shortened
        says what it left out: the shortening holds until a good read, so an outage after the warning (a
        Prometheus down again for half an hour) was left unread without a word."""
        self._longest.pop(query, None)
        self._stalled.pop(query, None)
        cut = self._cut.pop(query, None)
        if cut is not None:
            self._gaps.append((query, *cut))

    def flush(self) -> None:
        """Say what the read just ended shortened and left out: one line per query where one, else one line
        for all of them (the first few named, with their spans)."""
        shortened, gaps, self._shortened, self._gaps = self._shortened, self._gaps, [], []
        if len(shortened) == 1:
            query, asked, why, span = shortened[0]
            logger.warning(
                "promql: query %s: reading the %.0fs it missed failed (%s); the next read asks only the last"
                " %.0fs, the older steps stay unread (a gap)",
                query,
                asked,
                why,
                span,
                extra={"source": self.source, "query": query},
            )
        elif shortened:
            logger.warning(
                "promql: %d queries: for each, reading what it missed failed (%s): %s; their next reads ask"
                " half as far back, the older steps stay unread (a gap)",
                len(shortened),
                shortened[0][2],
                listed([f"{q} ({asked:.0f}s, next {span:.0f}s)" for q, asked, _, span in shortened]),
                extra={"source": self.source},
            )
        if len(gaps) == 1:
            query, read, left = gaps[0]
            logger.warning(
                "promql: query %s: read the last %.0fs; the %.0fs before, since its last good read, stay"
                " unread (a gap)",
                query,
                read,
                left,
                extra={"source": self.source, "query": query},
            )
        elif gaps:
            logger.warning(
                "promql: %d queries read only their last steps; the steps before, since their last good read,"
                " stay unread (a gap): %s",
                len(gaps),
                listed([f"{q} ({left:.0f}s unread)" for q, _, left in gaps]),
                extra={"source": self.source},
            )
