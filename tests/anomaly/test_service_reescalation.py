"""A fault that begins while an earlier fault's alert is still open on its GPU re-raises that alert."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from alerting.engine import IncidentEngine
from alerting.ingest import parse_postable_alerts
from anomaly.detectors import Findings
from anomaly.forwarder import AlertForwarder
from anomaly.series import View
from anomaly.service import AnomalyService, TickResult
from anomaly.sources import CollectorSource
from exporters.simulated import sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import Alert, AlertStatus
from gpuwarden.sim import FaultSpec, build_fleet
from tests.anomaly.fakes import TableCollector
from tests.anomaly.forwarder_serve import Listing, Serve, deliver, forwarding
from tests.anomaly.service_ticks import GPUS, TEMP, HistorySource, setup, tick
from tests.migrated_store import migrated_sqlite


def _on_gpu3(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.labels.get("gpu") == "3" and a.labels.get("model") == "adaptive"]


def test_a_fault_beginning_while_the_last_ones_alert_decays_raises_that_alert_again():
    # Seed 905's straggler: 472 s after a power brake's repair, its SM-clock alert still open at 1.64 and
    # decaying, the new fault scored 5.2 and raised nothing. Here: 10 minutes hot, 8 minutes back, hot again.
    rng = np.random.default_rng(4)
    clock, col, service = setup(reescalate_alerts=True)
    changes: list[list[Alert]] = []
    for hot, ticks in ((None, 60), (95.0, 20), (None, 16), (85.0, 6)):
        for _ in range(ticks):
            vals = 60 + rng.normal(0, 0.5, len(GPUS))
            if hot is not None:
                vals[3] = hot
            col.set(TEMP, list(zip(GPUS, vals.tolist(), strict=True)))
            changes.append(_on_gpu3(tick(clock, service).changes()))
    first, *_ = [a for tick_changes in changes[60:96] for a in tick_changes]
    assert first.status is AlertStatus.FIRING
    again = [c for c in changes[96:] if c]
    assert len(again) == 1, "the second fault must re-raise the open alert once"
    resolved, raised = again[0]  # in the order serve and Alertmanager must apply them
    assert resolved.status is AlertStatus.RESOLVED and resolved.starts_at == first.starts_at
    assert raised.status is AlertStatus.FIRING and raised.fingerprint == first.fingerprint
    assert raised.starts_at is not None and first.starts_at is not None and raised.starts_at > first.starts_at
    assert resolved.ends_at == raised.starts_at
    assert "reescalated" in raised.annotations
    assert [s.alert for s in service.firing.values() if s.alert.fingerprint == first.fingerprint] == [raised]


class Scripted:
    """One GPU's score, tick by tick, from a list."""

    name = "scripted"

    def __init__(self, scores: list[float]) -> None:
        self.scores = scores

    def fit(self, view: View) -> None:
        """Nothing to fit."""

    def forget(self, ids: np.ndarray) -> None:
        """Nothing to forget."""

    def detect(self, view: View) -> list[Findings]:
        """The next score of the list."""
        score = self.scores.pop(0)
        labels = [GPUS[3]]
        return [Findings(self.name, "q", labels, score=np.array([score]), value=np.array([score]))]


def _raised(scores: list[float]) -> list[Alert]:
    clock = FakeClock()
    cfg = AnomalyConfig(reescalate_alerts=True)
    source = CollectorSource([TableCollector()], clock)
    service = AnomalyService(cfg, [source], clock, detectors=[Scripted(list(scores))])
    raised = []
    for _ in scores:
        raised += tick(clock, service).raised
    return raised


def test_an_alert_whose_score_wobbles_at_one_level_or_hovers_at_its_band_edge_is_raised_once():
    wobbles = [9.0] * 5 + [3.0, 5.0] * 40
    hovers = [4.0] * 5 + [0.9, 1.2, 1.6, 0.8] * 20
    assert len(_raised(wobbles)) == 1
    assert len(_raised(hovers)) == 1


def test_a_re_escalation_sooner_than_the_alerts_resolve_ticks_after_its_raise_is_the_same_alert():
    # Raised, decayed to 1.5 for 10 reads, back at 8: within resolve_after (24) reads of the raise, as a
    # flapping alert that had resolved could not have been raised again either.
    soon = [8.0] * 5 + [1.5] * 10 + [8.0] * 5
    late = [8.0] * 5 + [1.5] * 30 + [8.0] * 5
    assert len(_raised(soon)) == 1
    assert len(_raised(late)) == 2


class TwoSeries:
    """One GPU's two series (``temp`` and ``clock``), each scored tick by tick from its own list."""

    name = "scripted"

    def __init__(self, temp: list[float], clock: list[float]) -> None:
        self.scores = {"temp": temp, "clock": clock}

    def fit(self, view: View) -> None:
        """Nothing to fit."""

    def forget(self, ids: np.ndarray) -> None:
        """Nothing to forget."""

    def detect(self, view: View) -> list[Findings]:
        """The next score of each list."""
        out = []
        for query, scores in self.scores.items():
            score = np.array([scores.pop(0)])
            out.append(Findings(self.name, query, [GPUS[3]], score=score, value=score))
        return out


def test_a_gpus_alert_raised_as_its_other_alert_resolves_joins_that_incident_in_the_demo_as_at_serve(
    tmp_path: Path,
) -> None:
    # The SM clock's alert raised in the very tick the temperature's resolves: one fault, one incident, as
    # `gpuwarden serve` makes of what `anomaly run` posts (the new alert, then the other's resolution).
    # The demo's engine took the resolution first and opened a second incident, which paged.
    cfg = AnomalyConfig()
    quiet = cfg.thresholds.resolve_after - cfg.pending_ticks
    temp = [8.0] * 5 + [0.5] * (cfg.thresholds.resolve_after + 5)
    clock_scores = [0.5] * (5 + quiet) + [8.0] * (cfg.pending_ticks + 5)
    clock = FakeClock()
    source = CollectorSource([TableCollector()], clock)
    service = AnomalyService(cfg, [source], clock, detectors=[TwoSeries(list(temp), clock_scores)])
    serve = Serve()
    forwarder = forwarding(service, serve.handle, clock)
    demo = IncidentEngine(migrated_sqlite(tmp_path / "demo.db"), clock)
    at_serve = IncidentEngine(migrated_sqlite(tmp_path / "serve.db"), clock)
    both = False
    for _ in temp:
        result = tick(clock, service)
        both = both or bool(result.resolved and result.raised)
        if result.changes():
            demo.ingest(result.changes())
        posted = len(serve.bodies)
        assert forwarder.flush()
        for body in serve.bodies[posted:]:
            at_serve.ingest(parse_postable_alerts(body))
    assert both, "the clock's alert must be raised in the tick the temperature's resolves"
    assert len(at_serve.store.list_rows()) == 1
    assert len(demo.store.list_rows()) == 1


def _runaway_alerts(gpu: int, ticks_after: int) -> list[Alert]:
    """The alerts raised on node-01 GPU ``gpu`` of a simulated 16-GPU fleet (seed 3, 10 s ticks, re-raising
    on) whose cooler fails after 40 minutes of normal load, in the ``ticks_after`` ticks that follow."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    nvml = sim_collectors(fleet, clock)
    cfg = AnomalyConfig(infer_every_seconds=10.0, reescalate_alerts=True)
    service = AnomalyService(cfg, [CollectorSource(nvml.collectors, clock)], clock)
    raised: list[Alert] = []
    for n in range(240 + ticks_after):
        if n == 240:
            fleet.inject(FaultSpec("thermal_runaway", "node-01", gpu=gpu))
        raised += tick(clock, service, 10.0).raised
    return [a for a in raised if a.labels.get("Hostname") == "node-01" and a.labels.get("gpu") == str(gpu)]


def test_a_thermal_runaway_throttling_its_clock_in_waves_stays_one_alert():
    # At 100 C the GPU halves its clock, cools, and clocks up again: its SM-clock score read 6.5 with dips to
    # 2.6 for single reads. Counted from the lowest dip, the climb back to 6.5 re-raised the alert mid-fault
    # (`gpuwarden demo`'s runaway on node-03 GPU 5 likewise, which serve told as the alert cycling).
    raised = _runaway_alerts(2, 60)
    clock_alerts = [a for a in raised if a.labels.get("for") == "DCGM_FI_DEV_SM_CLOCK"]
    assert {a.labels["model"] for a in clock_alerts} == {"adaptive", "fleet"}
    assert [a.labels for a in raised if "reescalated" in a.annotations] == []
    assert len(clock_alerts) == 2


def test_a_score_dipping_for_single_reads_between_waves_is_raised_once_but_a_held_recovery_re_raises():
    # One fault in waves: 6.5 with one-read dips to 2.6, for longer than resolve_after (24) reads.
    waves = [6.6] * 3 + [2.6, 6.5, 6.5, 6.5] * 12
    # Seed 905's straggler: a power brake's score 8.6 decays after its repair to 1.64 over 10 reads, and a
    # straggler takes it to 5.2.
    decay = [8.6 * 0.9**k for k in range(18)]
    straggler = [8.6] * 18 + decay + [5.2] * 4
    assert len(_raised(waves)) == 1
    assert len(_raised(straggler)) == 2


class ScoredAt:
    """One GPU's score as a function of the read's time (30 s reads from ``start``): the same in the history
    a restarted service replays as it was live."""

    name = "scripted"

    def __init__(self, start: float, scores: list[float]) -> None:
        self.start = start
        self.scores = scores

    def fit(self, view: View) -> None:
        """Nothing to fit."""

    def forget(self, ids: np.ndarray) -> None:
        """Nothing to forget."""

    def detect(self, view: View) -> list[Findings]:
        """The score of the read at the view's time."""
        n = round((view.time - self.start) / 30.0)
        score = np.array([self.scores[n] if 0 <= n < len(self.scores) else 0.0])
        return [Findings(self.name, "q", [GPUS[3]], score=score, value=score)]


def _straggler_service(
    clock: FakeClock, scores: list[float], start: float, reescalate: bool = True
) -> AnomalyService:
    source = HistorySource({TEMP: lambda t: [60.0] * len(GPUS)})
    cfg = AnomalyConfig(reescalate_alerts=reescalate)
    return AnomalyService(cfg, [source], clock, detectors=[ScoredAt(start, scores)])


def _after_restart(scores: list[float], restart_at: int, reescalate: bool = True) -> list[TickResult]:
    """The ticks of a service restarted (its warm-up replaying the history) before read ``restart_at``."""
    clock = FakeClock()
    start = clock.time()
    before = _straggler_service(clock, scores, start, reescalate)
    for _ in range(restart_at - 1):
        tick(clock, before)
    after = _straggler_service(clock, scores, start, reescalate)
    assert after.warm_up() > 0
    return [tick(clock, after) for _ in range(len(scores) - restart_at)]


def _reescalated_without_restart(scores: list[float]) -> list[datetime | None]:
    """When a service never restarted re-raised the alert."""
    clock = FakeClock()
    straight = _straggler_service(clock, scores, clock.time())
    ticks = [tick(clock, straight) for _ in range(len(scores) - 1)]
    return [a.starts_at for t in ticks for a in t.raised if a.annotations.get("reescalated")]


def test_a_restart_during_the_recovery_keeps_the_next_fault_re_raised():
    # Seed 905's straggler again, with `anomaly run` restarted while the power brake's score decays: the
    # restarted service raised the alert anew at 1.4 and took the straggler's 5.2 for its peak, so the
    # straggler re-raised nothing and serve, still holding the alert firing, heard of no new fault.
    decay = [8.6 * 0.9**k for k in range(18)]
    scores = [0.0] * 6 + [8.6] * 18 + decay + [1.4] * 4 + [5.2] * 6
    raised = [a for t in _after_restart(scores, 6 + 18 + 18) for a in t.raised]
    assert len(raised) == 2, "raised again after the restart, then re-raised by the straggler"
    assert "reescalated" not in raised[0].annotations and "reescalated" in raised[1].annotations
    assert _reescalated_without_restart(scores) == [raised[1].starts_at], "as it was without the restart"


def test_a_restart_while_the_value_is_back_in_its_band_keeps_the_next_fault_re_raised():
    # The recovery a re-raise needs is the value back in its band: quiet reads (the brake's clock read back
    # inside its band for 10 reads before seed 905's straggler). Restarted during them, the service dropped
    # what its warm-up recalled at its first quiet read, raised the straggler's alert as a first one, and
    # serve, still holding the alert firing (posted with its endsAt 4 minutes ahead), heard of no new fault.
    scores = [0.0] * 6 + [8.6] * 18 + [0.5] * 10 + [5.2] * 6
    # The straggler's alert raised 5 reads (150 s) after the old service's last post.
    changes = [a for t in _after_restart(scores, 6 + 18 + 8) for a in t.changes()]
    again = [a for a in changes if a.annotations.get("reescalated")]
    assert len(again) == 1, "the straggler must re-raise the alert serve still holds"
    ended = [a for a in changes if a.status is AlertStatus.RESOLVED]
    assert [a.ends_at for a in ended] == [again[0].starts_at], "its activity ended as it is raised anew"
    assert _reescalated_without_restart(scores) == [again[0].starts_at], "as it was without the restart"


def test_without_re_escalation_a_recalled_alert_is_raised_again_as_it_was_never_re_raised():
    # Re-escalation off lets the open alert hide the new fault (README). The warm-up recalls what its
    # history left firing with it off too (the side an alert was raised on: ``test_forwarder_sides.py``);
    # the recall must not re-raise it at the straggler where the uninterrupted service would not. Here the
    # recall has recovered (30 quiet reads since its raise, a blip keeping it from resolving) when the
    # straggler comes at the restart: its first 3 reads would re-raise it, with the option on.
    scores = [0.0] * 6 + [8.6] * 18 + [0.5] * 20 + [5.2] + [0.5] * 10 + [5.2] * 6
    assert len(_reescalated_without_restart(scores)) == 1, "with it on, the straggler re-raises the alert"
    ticks = _after_restart(scores, 6 + 18 + 20 + 1 + 10, reescalate=False)
    changes = [a for t in ticks for a in t.changes()]
    assert [(a.status, "reescalated" in a.annotations) for a in changes] == [(AlertStatus.FIRING, False)]


def test_a_recalled_alert_that_would_have_resolved_before_the_next_fault_is_raised_as_a_first_one():
    # The same restart, but the value stays back in its band for 30 reads: past resolve_after (24) quiet
    # reads, when the alert would have resolved without the restart and serve's endsAt has passed.
    scores = [0.0] * 6 + [8.6] * 18 + [0.5] * 30 + [5.2] * 6
    changes = [a for t in _after_restart(scores, 6 + 18 + 8) for a in t.changes()]
    assert [(a.status, "reescalated" in a.annotations) for a in changes] == [(AlertStatus.FIRING, False)]


def _timeline_at_serve(
    tmp_path: Path, scores: list[float], restart_at: int | None, down: int = 0
) -> list[tuple[str, str]]:
    """The kinds and times of the incident timeline serve builds from what `anomaly run` posts through its
    forwarder (an expired endsAt resolved at serve's ticks), `anomaly run` restarted before ``restart_at``,
    down for the ``down`` reads before it."""
    clock = FakeClock()
    start = clock.time()
    engine = IncidentEngine(migrated_sqlite(tmp_path / f"serve{restart_at}-{down}.db"), clock)
    serve = Listing(engine)

    def started() -> tuple[AnomalyService, AlertForwarder]:
        service = _straggler_service(clock, scores, start)
        forwarder = forwarding(service, serve.handle, clock)
        return service, forwarder

    service, forwarder = started()
    for n in range(1, len(scores)):
        if n == restart_at:
            service, forwarder = started()
            service.warm_up(forwarder.held())  # as `anomaly run` starts: what serve holds is recalled
        if restart_at is not None and restart_at - down <= n < restart_at:
            clock.advance(30.0)  # `anomaly run` is down: serve ticks on alone
            engine.tick()
            continue
        tick(clock, service)
        deliver(serve, forwarder, engine)
    ((row, _),) = engine.store.list_rows()
    return [(e.kind, e.at.isoformat()) for e in engine.store.get(row.id).timeline]


def test_serve_hears_of_the_straggler_after_a_restart_in_the_recovery_as_without_the_restart(tmp_path):
    # The whole path: main's restarted service raised the straggler's alert as a first one, the forwarder
    # posted it firing, and serve's incident, holding the alert firing, recorded nothing of the new fault.
    scores = [0.0] * 6 + [8.6] * 18 + [0.5] * 10 + [5.2] * 6
    straight = _timeline_at_serve(tmp_path, scores, None)
    assert [k for k, _ in straight].count("alert_firing") == 1, "the straggler refires the alert at serve"
    assert _timeline_at_serve(tmp_path, scores, 6 + 18 + 8) == straight


def test_a_restart_whose_alert_serve_let_end_raises_the_next_fault_as_a_first_alert_at_serve(tmp_path):
    # Restarted 2 reads into the recovery: serve ends the alert at the endsAt of the old service's last post
    # (4 minutes on), and the straggler comes 7 minutes later. Re-raised from the recall, its post led with
    # the old alert firing then resolved, and serve's incident ended with the alert resolved, the fault on.
    scores = [0.0] * 6 + [8.6] * 18 + [0.5] * 16 + [5.2] * 6
    timeline = _timeline_at_serve(tmp_path, scores, 6 + 18 + 2)
    assert timeline[-1] == ("alert_firing", "2026-01-01T00:21:00+00:00")
    assert [k for k, _ in timeline].count("alert_firing") == 1


class Vanishing:
    """Two GPUs' scores tick by tick: GPU 3's from a list (``None``: its series is not read, its node down),
    GPU 2's quiet."""

    name = "scripted"

    def __init__(self, scores: list[float | None]) -> None:
        self.scores = scores

    def fit(self, view: View) -> None:
        """Nothing to fit."""

    def forget(self, ids: np.ndarray) -> None:
        """Nothing to forget."""

    def detect(self, view: View) -> list[Findings]:
        """GPU 2's quiet score, and GPU 3's next one where it has one, with their series' ids."""
        score = self.scores.pop(0)
        step = view.latest[TEMP]
        sid = {lab["gpu"]: int(i) for lab, i in zip(step.labels, step.ids.tolist(), strict=True)}
        rows = [(GPUS[2], sid["2"], 0.0)] + ([] if score is None else [(GPUS[3], sid["3"], score)])
        labels, ids, scores = zip(*rows, strict=True)
        value = np.array(scores)
        return [Findings(self.name, "q", list(labels), ids=np.array(ids), score=value, value=value)]


def _changes(scores: list[float | None]) -> list[list[Alert]]:
    """Each tick's changes (resolved, then raised) with re-raising on, GPU 3 scored from ``scores``."""
    clock = FakeClock()
    col = TableCollector()
    col.set(TEMP, [(GPUS[2], 60.0), (GPUS[3], 60.0)])  # the series the scores are of
    cfg = AnomalyConfig(reescalate_alerts=True)
    service = AnomalyService(cfg, [CollectorSource([col], clock)], clock, detectors=[Vanishing(list(scores))])
    return [tick(clock, service).changes() for _ in scores]


def test_an_alert_whose_gpu_is_not_read_for_a_while_is_not_re_raised_when_it_is_read_as_bad_again():
    # Seed 903: a thermal runaway's alert (8.5-10.1) on node-07 GPU 6, its node down for 10 minutes
    # mid-fault. Its 21 reads without the GPU counted as quiet reads, a recovery, and the runaway read back
    # at 9.4 re-raised the alert mid-fault. A read without the series is no value back in its band.
    unread = _changes([9.0] * 42 + [None] * 21 + [9.4] * 10)
    assert [len(c) for c in unread if c] == [1], "raised once, never resolved or re-raised"
    # Read at most 1 instead, it has recovered: the same alert is re-raised (resolved, raised).
    quiet = _changes([9.0] * 42 + [0.5] * 21 + [9.4] * 10)
    assert [len(c) for c in quiet if c] == [1, 2]


def test_a_thermal_runaway_whose_node_is_down_for_10_minutes_mid_fault_stays_one_alert():
    # Seed 903's node-07 GPU 6: the runaway's thermal alert, the node down for 20 reads mid-fault (its GPUs
    # not read), then the runaway read back as hot as before: re-raised mid-fault.
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    nvml = sim_collectors(fleet, clock)
    service = AnomalyService(
        AnomalyConfig(reescalate_alerts=True), [CollectorSource(nvml.collectors, clock)], clock
    )
    changes: list[Alert] = []
    down = ""
    for n in range(240):
        if n == 120:
            fleet.inject(FaultSpec("thermal_runaway", "node-01", gpu=2))
        if n == 170:
            down = fleet.inject(FaultSpec("node_down", "node-01"))
        if n == 190:
            fleet.clear_fault(down)
        changes += tick(clock, service).changes()
    thermal = [a for a in changes if a.labels.get("model") == "thermal" and a.labels.get("gpu") == "2"]
    assert [a.status for a in thermal] == [AlertStatus.FIRING]


@pytest.mark.parametrize("down", [6, 12], ids=["ended_after_the_restart", "ended_before_it"])
def test_a_restart_after_a_downtime_whose_alert_serve_let_end_raises_the_next_fault_as_a_first_alert(
    tmp_path, down
):
    # `anomaly run` down 3 minutes (6 reads) before its restart 8 reads into the recovery: serve ends the
    # alert at the endsAt of the last post before the downtime, and the straggler climbs 2 minutes after
    # that. The recall, kept until 4 minutes after the restart, re-raised it, its post led with the old alert
    # firing then resolved, and serve's incident ended with the alert resolved, the fault on. Down 6
    # minutes, serve had ended it before the restart.
    scores = [0.0] * 6 + [8.6] * 18 + [0.5] * 10 + [5.2] * 6
    timeline = _timeline_at_serve(tmp_path, scores, 6 + 18 + 8, down=down)
    assert timeline[-1] == ("alert_firing", "2026-01-01T00:18:00+00:00")
    assert [k for k, _ in timeline].count("alert_firing") == 1
