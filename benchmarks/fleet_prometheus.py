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
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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

    @property
    def queries(self) -> list[PromQuery]:
        """The queries served now."""
        return list(self._queries.values())

    def serve(self, queries: Sequence[PromQuery], samples: Samples, phases: Sequence[float]) -> None:
        """Answer ``queries`` (by the expression each sends) from ``samples``, node ``n`` scraped at phase
        ``phases[n]``; a query named otherwise than a query of ``samples`` is ``RANGE_QUERY``."""
        self._cache.clear()
        self._samples, self._phases = samples, list(phases)
        self._queries = {q.name: q for q in queries}
        self.fake.answers = {q.sent[0]: self._answerer(q) for q in queries}
        self.fake.errors = {}

    def fail(self, names: Sequence[str]) -> None:
        """The queries ``names`` answer HTTP 503 (Prometheus' query timeout) until the next call."""
        message = "query timed out in expression evaluation"
        self.fake.errors = {self._queries[n].sent[0]: (503, message) for n in names}

    def source(self, clock: Clock) -> PromQLSource:
        """A new process' source: a ``PromQLSource`` reading the configured queries from here."""
        return PromQLSource(self.fake.url, list(self._queries.values()), clock, timeout_seconds=60.0)

    def close(self) -> None:
        self.fake.close()

    def _answerer(self, query: PromQuery) -> Callable[[float], list[Sample]]:
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
