"""A restart from a snapshot reads a query answered on a coarser step than asked as the process before it did:
what ``CoarseSteps`` learnt is kept (``anomaly.coarsestate``), not learnt again over 20 asked steps."""

from __future__ import annotations

import math

import httpx
import numpy as np
import pytest

from anomaly import snapshot as snapshot_module
from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from anomaly.snapshot import Snapshot, load_snapshot, save_snapshot
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig

EVERY = 300.0
TEMP, POWER = "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"
COARSE = 2 * EVERY  # POWER answers every other step asked: a rule evaluated every 10 minutes
GPUS = [{"Hostname": f"n{i // 2}", "gpu": str(i % 2), "UUID": f"GPU-{i}"} for i in range(4)]


def _value(query: str, gpu: int, t: float) -> float:
    """A daily cycle and noise drawn from the time: every read of a step reads the same value."""
    rng = np.random.default_rng([int(t), gpu, len(query)])
    return 50.0 + 10.0 * math.sin(2 * math.pi * t / 86_400.0) + float(rng.normal(0.0, 1.0))


def _answer(request: httpx.Request) -> httpx.Response:
    """Prometheus' matrix for the asked grid; POWER's points only where its coarser grid meets it."""
    query = request.url.params["query"]
    start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
    stamps = [start + i * step for i in range(math.floor((end - start) / step + 1e-9) + 1)]
    if query == POWER:
        stamps = [t for t in stamps if t % COARSE == 0]
    result = [
        {"metric": {"__name__": query, **labels}, "values": [[t, str(_value(query, g, t))] for t in stamps]}
        for g, labels in enumerate(GPUS)
    ]
    return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": result}})


def _config() -> AnomalyConfig:
    return AnomalyConfig(
        queries=[AnomalyQueryConfig(name=q, expr=q, step_seconds=EVERY) for q in (TEMP, POWER)],
        infer_every_seconds=EVERY,
        adaptive_metrics=["*"],
        presence_queries=[TEMP],
    )


def _service(clock: FakeClock) -> tuple[PromQLSource, AnomalyService]:
    """A new process: its own source and service."""
    client = httpx.Client(base_url="http://prom:9090", transport=httpx.MockTransport(_answer))
    queries = [PromQuery(q, q, EVERY) for q in (TEMP, POWER)]
    source = PromQLSource("http://prom:9090", queries, clock, client=client)
    return source, AnomalyService(_config(), [source], clock)


def _snapshot_after_30_ticks(clock: FakeClock) -> Snapshot:
    """A service warmed up and run 30 ticks, long enough to learn POWER's coarser answer step."""
    _, straight = _service(clock)
    straight.warm_up()
    for _ in range(30):
        clock.advance(EVERY)
        straight.infer()
    return straight.snapshot()


def _scores(service: AnomalyService) -> list[tuple[str, str, list[str], list[float]]]:
    found = service.infer().findings
    return [
        (f.detector, f.query, [lab["UUID"] for lab in f.labels], np.round(f.score, 12).tolist())
        for f in found
        if f.detector != "source"
    ]


@pytest.mark.parametrize("before", [4, 30], ids=["saved-while-its-spacings-are-counted", "saved-once-seen"])
def test_a_restart_reads_a_query_answered_on_a_coarser_step_as_the_process_before_it(tmp_path, before):
    """The warm-up's hour holds 12 steps of 300 s, 6 answers of POWER: 10 asked steps, where a coarser step
    is believed once its spacings cover 20. A new process read every other step of POWER as a gap for 20
    steps (or, saved before the step was seen, counted its spacings again from the hour), and scored
    otherwise than the uninterrupted one (restart fuzz, coarse answers alone: seeds 25; 3, 12, 23 in firing
    alerts)."""
    clock = FakeClock(1_767_225_600.0)
    source, straight = _service(clock)
    straight.warm_up()
    for _ in range(before):
        clock.advance(EVERY)
        straight.infer()
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    restarted_source, restarted = _service(clock)
    restarted.warm_up(snapshot=load_snapshot(path, restarted.cfg))
    for _ in range(24):
        clock.advance(EVERY)
        assert _scores(restarted) == _scores(straight)
    assert source.coarse.seen == {POWER: COARSE}
    assert restarted_source.coarse.seen == {POWER: COARSE}


def test_another_fleets_snapshot_leaves_no_answer_step_learnt(tmp_path):
    """The answer steps are taken up before the warm-up's read, which tells whether the snapshot is this
    fleet's: one refused so lets go of them, and the source learns from its own reads, as without it."""
    clock = FakeClock(1_767_225_600.0)
    snapshot = _snapshot_after_30_ticks(clock)
    index = snapshot.components["index"].meta
    index["label_sets"] = [[[k, f"other-{v}"] for k, v in labels] for labels in index["label_sets"]]
    path = tmp_path / "state.npz"
    assert save_snapshot(path, snapshot)
    source, restarted = _service(clock)
    restarted.warm_up(snapshot=load_snapshot(path, restarted.cfg))
    assert source.coarse.seen == {}


def test_answer_steps_that_do_not_fit_are_said_and_the_rest_of_the_snapshot_is_taken_up(tmp_path, caplog):
    """A ``sources`` component cut short (a series' arrays one row short of its labels): the source starts
    from nothing, said in a warning naming it, and the detectors, index and alerts are taken up as without
    it (a torn part of what a source learnt costs 20 asked steps, not the snapshot)."""
    clock = FakeClock(1_767_225_600.0)
    snapshot = _snapshot_after_30_ticks(clock)
    arrays = snapshot.components["sources"].arrays
    assert arrays["s0_last"].size  # POWER's series are kept: each answers every other step
    arrays["s0_last"] = arrays["s0_last"][:-1]
    path = tmp_path / "state.npz"
    assert save_snapshot(path, snapshot)
    source, restarted = _service(clock)
    with caplog.at_level("INFO"):
        restarted.warm_up(snapshot=load_snapshot(path, restarted.cfg))
    assert (
        "what source prometheus learnt of its answer steps and range edges not used (ValueError"
        in caplog.text
    )
    assert f"anomaly state restored from {path}" in caplog.text
    assert source.coarse.seen == {}


@pytest.mark.parametrize("refusal", ["another-fleet", "detectors-misfit", "old-version", "torn-file"])
def test_a_refused_snapshot_keeps_what_the_warm_ups_read_learnt_of_answer_steps(
    tmp_path, monkeypatch, refusal
):
    """A snapshot refused after its answer steps were taken up for the warm-up's read (another fleet's, or
    one that does not fit the detectors) let go of everything the source had learnt, the hour's spacings of
    POWER too: it counted them again from nothing, seeing the coarser step 20 asked steps after the warm-up
    where a process without the snapshot sees it 10 after. One refused as it is read (its version, a torn
    file) is never taken up. Either way the source holds what the hour alone teaches."""
    clock = FakeClock(1_767_225_600.0)
    snapshot = _snapshot_after_30_ticks(clock)
    path = tmp_path / "state.npz"
    if refusal == "another-fleet":
        index = snapshot.components["index"].meta
        index["label_sets"] = [[[k, f"other-{v}"] for k, v in labels] for labels in index["label_sets"]]
    if refusal == "detectors-misfit":
        del snapshot.components["counters"]
    if refusal == "old-version":
        monkeypatch.setattr(snapshot_module, "VERSION", snapshot_module.VERSION - 1)
    assert save_snapshot(path, snapshot)
    monkeypatch.undo()
    if refusal == "torn-file":
        path.write_bytes(path.read_bytes()[:100])
    fresh_source, fresh = _service(clock)
    fresh.warm_up()
    source, restarted = _service(clock)
    restarted.warm_up(snapshot=load_snapshot(path, restarted.cfg))
    learnt = fresh_source.coarse.learnt_queries()
    assert [row[:4] for row in learnt if row[0] == POWER] == [(POWER, clock.time(), COARSE, 5)]  # the hour's
    assert source.coarse.learnt_queries() == learnt
    for _ in range(10):  # 5 more spacings of POWER: 20 asked steps with the hour's
        clock.advance(EVERY)
        assert _scores(restarted) == _scores(fresh)
    assert fresh_source.coarse.seen == {POWER: COARSE}
    assert source.coarse.seen == fresh_source.coarse.seen
