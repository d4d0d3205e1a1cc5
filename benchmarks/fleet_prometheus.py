"""The restart fuzz's fleet as Prometheus would serve it over HTTP, for ``anomaly_restart_fuzz.py --promql``.

The fuzz needs a controlled clock, which a real Prometheus has not; so the fleet's history is served by the
tests' ``FakePrometheus`` (``/api/v1/query_range`` over real HTTP), answered here with the semantics a
Prometheus 2.x gives the configured queries:

- each node's exporter is scraped every ``SCRAPE`` seconds at a phase of its own (drawn per seed), so a
  step's sample is one taken up to a minute before it, each node's at another time;
- an instant selector at a step reads the latest sample within the 5-minute lookback, none where that is a
  staleness marker: a failed scrape (a node down) writes one, so a down node's series end at its first
  failed scrape, not 5 minutes after it;
- ``min_over_time(gpuwarden_gpu_up[5m])`` reads the samples in ``[t - 5m, t]`` (closed, as 2.x; staleness
  markers are no samples), its result without ``__name__``; sent guarded (``... and gpuwarden_gpu_up``,
  ``gpuwarden.range_guard``), it answers only where the selector does at that step.

Failed reads are HTTP 503 answers of one query (``fail``), as a Prometheus that timed a query out gives.

``PromFaults`` (``anomaly_restart_fuzz.py --prom-faults``, drawn per seed by ``draw_faults``) adds what a
Prometheus under load or in maintenance does besides:

- reads too big: a ``query_range`` of more than ``max_points`` steps is refused as Prometheus refuses one
  too slow or too big: HTTP 503 ``errorType: timeout`` (its ``--query.timeout``) or HTTP 422
  ``errorType: execution`` (its ``--query.max-samples``). Its 11,000-point limit is HTTP 400 ``bad_data``
  (``FakePrometheus``), which no read of ``PromQLSource`` reaches: it reads in parts;
- Prometheus down for ticks on end: its port closed, connections refused (no HTTP answer at all), in half
  the seeds across a restart and its warm-up (``_outage`` says which outages a restart can be held to);
- a query answered on a coarser step than asked: only every ``k``-th step of the grid, as a recording
  rule evaluated less often or Thanos' downsampled blocks answer. Prometheus and Thanos evaluate a range
  at ``start + n * step`` whatever the data's resolution, and VictoriaMetrics rounds ``start`` down to a
  multiple of ``step``: on the grid ``PromQLSource`` asks (whole multiples of the step) both answer on it,
  so answers off the grid are not modelled.
"""

from __future__ import annotations

import math
import random
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from anomaly.needs import GPU_UP
from anomaly.promql import PromQLSource, PromQuery
from anomaly.sources import Frame
from gpuwarden.clock import Clock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: its tests package, when
# run as `python benchmarks/X.py` without PYTHONPATH (as CI's harness tests and `make bench` run it)
from tests.anomaly.fakes import FakePrometheus, Sample

SCRAPE = 60.0  # seconds between two scrapes of a node
LOOKBACK = 300.0  # Prometheus' default lookback delta
RANGE_QUERY = PromQuery("gpu_up_min_5m", f"min_over_time({GPU_UP}[5m])", 300.0)
"""The range query some seeds read: Prometheus computes it from the samples in its window (``rangeedges``)."""

Samples = Callable[[np.ndarray], list[Frame]]
"""Every query's samples at some times (the fuzz's ``FleetSource.frames_at``)."""


def scrape_phases(seed: int, nodes: int) -> list[float]:
    """Each node's scrape phase (seconds past each ``SCRAPE``), drawn apart from the fuzz's stream."""
    rng = random.Random(f"promql-phases-{seed}")
    return [float(rng.randrange(int(SCRAPE))) for _ in range(nodes)]


# Prometheus' answers to a read too big or too slow for it: (HTTP status, errorType, error).
TOO_BIG = (
    (503, "timeout", "query timed out in expression evaluation"),
    (422, "execution", "query processing would load too many samples into memory in query execution"),
)


@dataclass(frozen=True)
class PromFaults:
    """What one seed's Prometheus does besides answering (``draw_faults``)."""

    max_points: int | None = None  # a read of more steps than this answers ``too_big``
    too_big: tuple[int, str, str] = TOO_BIG[0]
    down: tuple[float, float] | None = None  # clock times (lo, hi]: connections refused
    coarse: Mapping[str, int] = field(default_factory=dict)  # query -> answered every k-th step only
    down_until: float | None = None  # clock time: connections refused up to it (``--down-at-start``)

    def down_at(self, t: float) -> bool:
        """Whether Prometheus' port is closed when the service's clock reads ``t``."""
        if self.down_until is not None and t <= self.down_until:
            return True
        return self.down is not None and self.down[0] < t <= self.down[1]


def draw_faults(
    seed: int,
    t0: float,
    every: float,
    steps: int,
    restarts: Mapping[int, tuple[int, int]],
    names: Sequence[str],
) -> PromFaults:
    """One seed's ``PromFaults`` for a run of ``steps`` ticks of ``every`` seconds from ``t0`` (tick ``n``
    reads at ``t0 + (n + 1) * every``, a restart before it warms up at ``t0 + n * every``), drawn apart
    from the fuzz's stream: in half the seeds reads of more than 2-16 steps too big (an hour's warm-up is
    12); in 3 of 4 Prometheus down (``_outage``); in a third one of the queries ``names`` answered every
    2nd or 3rd step."""
    rng = random.Random(f"promql-faults-{seed}")
    max_points = rng.randint(2, 16) if rng.random() < 0.5 else None
    too_big = rng.choice(TOO_BIG)
    down = _outage(rng, steps, restarts) if rng.random() < 0.75 else None
    span = None if down is None else (t0 + down[0] * every, t0 + down[1] * every)
    coarse = {rng.choice(list(names)): rng.choice((2, 3))} if rng.random() < 1 / 3 else {}
    return PromFaults(max_points, too_big, span, coarse)


def only(faults: PromFaults, kind: str | None) -> PromFaults:
    """``faults`` with only one ``kind`` of them (``size``, ``down``, ``coarse``; None: all), to tell which
    kind a divergence comes from: each seed draws the same."""
    if kind is None:
        return faults
    return PromFaults(
        faults.max_points if kind == "size" else None,
        faults.too_big,
        faults.down if kind == "down" else None,
        faults.coarse if kind == "coarse" else {},
    )


def down_at_start(seed: int, most: int) -> int:
    """The ticks ``--down-at-start`` has the seed's Prometheus down from before the first start: 1 to
    ``most``, drawn apart from the fuzz's stream."""
    return random.Random(f"promql-down-at-start-{seed}").randint(1, most)


def _outage(
    rng: random.Random, steps: int, restarts: Mapping[int, tuple[int, int]]
) -> tuple[int, int] | None:
    """Ticks ``[a, b)`` whose reads find Prometheus down; the read at tick ``b`` catches them up.

    In half the seeds across a restart before tick ``s`` (down ``d`` ticks, a crash losing ``l``): from
    tick ``s - 1 - l`` or one before, so the save it restarts from was made while Prometheus was down and
    reads on from where the uninterrupted run does, to ``s + d`` or up to two ticks later, so its warm-up
    finds Prometheus down too. Elsewhere 2-6 ticks, kept a tick clear of every restart's lost and down
    ticks: a restart after the catch-up tick whose save is older (or whose warm-up finds Prometheus back)
    replays those ticks from the history one by one, which the uninterrupted run read in one catch-up; the
    restart reads them better, no defect to find (as ``--failed-reads`` draws no failure a crash loses). So
    an outage across one restart is drawn only where no other restart's lost and down ticks come within a
    tick of it, through its catch-up: seed 228's (30 steps) across the restart before tick 11 (ticks 5-14)
    took in the one before tick 15, whose save (tick 13) was older than the catch-up and whose warm-up found
    Prometheus back; elsewhere the draw goes on as if there were no crossing restart."""
    # Per restart, its lost and down ticks and a tick either side.
    near = {s: set(range(s - 2 - lost, s + down + 2)) for s, (down, lost) in restarts.items()}
    busy = set().union(*near.values())
    crossing = [s for s, (_, lost) in restarts.items() if s - 1 - lost >= 1]
    if crossing and rng.random() < 0.5:
        s = rng.choice(sorted(crossing))
        down, lost = restarts[s]
        first, end = max(1, s - 1 - lost - rng.randint(0, 1)), min(steps, s + down + rng.randint(0, 2))
        if set().union(*(ticks for r, ticks in near.items() if r != s)).isdisjoint(range(first, end + 1)):
            return first, end
    for _ in range(20):
        length = rng.randint(2, 6)
        first = rng.randrange(1, max(2, steps - length))
        if busy.isdisjoint(range(first, first + length + 1)):
            return first, first + length
    return None


def with_range_query(seed: int) -> bool:
    """Whether the seed reads ``RANGE_QUERY`` too: half the seeds, drawn apart from the fuzz's stream."""
    return random.Random(f"promql-range-{seed}").random() < 0.5


class FleetPrometheus:
    """``FakePrometheus`` answering ``queries`` from one seed's fleet (``serve``); ``fail`` makes queries
    answer HTTP 503."""

    def __init__(self) -> None:
        self.fake = FakePrometheus()
        self._cache: dict[float, list[Frame]] = {}
        self._samples: Samples = lambda ts: []
        self._phases: list[float] = []
        self._queries: dict[str, PromQuery] = {}
        self.faults = PromFaults()
        self._lock = threading.Lock()  # the port opened and closed by the source's worker threads

    @property
    def queries(self) -> list[PromQuery]:
        """The queries served now."""
        return list(self._queries.values())

    def serve(
        self,
        queries: Sequence[PromQuery],
        samples: Samples,
        phases: Sequence[float],
        faults: PromFaults | None = None,
    ) -> None:
        """Answer ``queries`` (by the expression each sends) from ``samples``, node ``n`` scraped at phase
        ``phases[n]``, with ``faults``; a query named otherwise than a query of ``samples`` is
        ``RANGE_QUERY``."""
        self._cache.clear()
        self._samples, self._phases = samples, list(phases)
        self._queries = {q.name: q for q in queries}
        self.faults = faults or PromFaults()
        self.fake.answers = {q.sent[0]: self._answerer(q) for q in queries}
        self.fake.errors = {}
        self.fake.refusal = self._too_big
        self.fake.serve_again()

    def fail(self, names: Sequence[str]) -> None:
        """The queries ``names`` answer HTTP 503 (Prometheus' query timeout) until the next call."""
        message = "query timed out in expression evaluation"
        self.fake.errors = {self._queries[n].sent[0]: (503, message) for n in names}

    def source(self, clock: Clock) -> PromQLSource:
        """A new process' source: a ``PromQLSource`` reading the configured queries from here; each request
        first opens or closes the port as ``PromFaults.down`` has it at the clock's time."""

        def port(request: httpx.Request) -> None:
            with self._lock:
                if self.faults.down_at(clock.time()):
                    self.fake.refuse()
                else:
                    self.fake.serve_again()

        client = httpx.Client(base_url=self.fake.url, timeout=60.0, event_hooks={"request": [port]})
        return PromQLSource(
            self.fake.url, list(self._queries.values()), clock, timeout_seconds=60.0, client=client
        )

    def close(self) -> None:
        self.fake.close()

    def _too_big(self, params: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        """Prometheus' answer to a read of more than ``PromFaults.max_points`` steps; None to others."""
        limit = self.faults.max_points
        points = round((float(params["end"]) - float(params["start"])) / float(params["step"])) + 1
        if limit is None or points <= limit:
            return None
        status, kind, error = self.faults.too_big
        return status, {"status": "error", "errorType": kind, "error": error}

    def _answerer(self, query: PromQuery) -> Callable[[float], list[Sample]]:
        answer = self._plain(query)
        every = self.faults.coarse.get(query.name)
        if every is None:
            return answer
        # Answered on a coarser step: only where the grid meets every ``every``-th step from the epoch, as a
        # rule evaluated less often answers whatever window is asked.
        coarse = round(query.step_seconds * 1000) * every
        return lambda t: answer(t) if round(t * 1000) % coarse == 0 else []

    def _plain(self, query: PromQuery) -> Callable[[float], list[Sample]]:
        if query.name != RANGE_QUERY.name:
            return lambda t: self._instant(query.name, t)
        guarded = query.sent[1]
        return lambda t: self._min_up(t, guarded)

    def _instant(self, name: str, t: float) -> list[Sample]:
        """``name``'s series at step ``t``: each node's latest scrape's sample (within the lookback, a scrape
        being a minute apart), none after a failed one (its staleness marker)."""
        out: list[Sample] = []
        for node, phase in enumerate(self._phases):
            out.extend(self._node_samples(name, node, self._last_scrape(t, phase), True))
        return out

    def _min_up(self, t: float, guarded: bool) -> list[Sample]:
        """``min_over_time(gpuwarden_gpu_up[5m])`` at ``t``: 1 for each GPU scraped within ``[t - 5m, t]``;
        guarded, only those whose instant ``gpuwarden_gpu_up`` answers at ``t``."""
        out: list[Sample] = []
        for node, phase in enumerate(self._phases):
            last = self._last_scrape(t, phase)
            seen: dict[str, dict[str, str]] = {}
            for k in range(int(LOOKBACK // SCRAPE) + 1):
                at = last - k * SCRAPE
                if at < t - LOOKBACK:
                    break
                for labels, _ in self._node_samples(None, node, at, False):
                    seen.setdefault(labels["UUID"], labels)
            if guarded:
                now = {labels["UUID"] for labels, _ in self._node_samples(None, node, last, False)}
                seen = {uuid: labels for uuid, labels in seen.items() if uuid in now}
            out.extend((labels, 1.0) for labels in seen.values())
        return out

    def _node_samples(self, name: str | None, node: int, at: float, name_label: bool) -> list[Sample]:
        """Node ``node``'s samples of query ``name`` scraped at ``at`` (None: ``gpu_up``, 1 per GPU up)."""
        frames = self._cache.get(at)
        if frames is None:
            frames = self._cache[at] = self._samples(np.array([at]))
        host = f"n{node}"
        out: list[Sample] = []
        for frame in frames:
            if frame.query != (name or frames[0].query):
                continue
            present = frame.samples[:, 0]
            for row, labels in enumerate(frame.labels):
                if labels["Hostname"] == host and present[row]:
                    value = 1.0 if name is None else float(frame.values[row, 0])
                    extra = {"__name__": frame.query} if name_label else {}
                    out.append(({**extra, **labels}, value))
        return out

    @staticmethod
    def _last_scrape(t: float, phase: float) -> float:
        """The last scrape at or before ``t`` of a node scraped at ``phase``."""
        return phase + SCRAPE * math.floor((t - phase) / SCRAPE)
