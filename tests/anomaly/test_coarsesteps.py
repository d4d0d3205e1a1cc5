"""Answers on a coarser step than asked: the empty steps between two answered ones are not read."""

from __future__ import annotations

import logging

import httpx
import numpy as np
import pytest

from anomaly import seriessteps
from anomaly.coarsesteps import LONGEST, MIN_STEPS, CoarseSteps
from anomaly.promql import PromQLSource, PromQuery
from anomaly.sources import Frame
from gpuwarden.clock import FakeClock
from tests.anomaly.fakes import FakePrometheus

Q = "DCGM_FI_DEV_GPU_TEMP"
LABELS = [{"UUID": "GPU-0"}, {"UUID": "GPU-1"}]


def frame(times: list[float], answered: set[float]) -> Frame:
    """A two-series frame on ``times`` with a point only at the ``answered`` times."""
    ts = np.array(times)
    values = np.where(np.isin(ts, list(answered)), 60.0, np.nan)
    return Frame(Q, LABELS, ts, np.vstack([values, values]))


def reads(coarse: CoarseSteps, start: float, stop: float, answered: set[float]) -> list[list[float]]:
    """One read per 30 s step from ``start`` to ``stop``: the steps each read kept."""
    return [coarse.keep(frame([t], answered), 30.0).timestamps.tolist() for t in np.arange(start, stop, 30.0)]


def test_answers_on_every_step_are_left_as_they_are():
    coarse = CoarseSteps("prometheus")
    times = [30.0 * i for i in range(10)]
    kept = coarse.keep(frame(times, set(times) - {120.0}), 30.0)
    assert kept.timestamps.tolist() == times  # one missed step is a gap, as before
    assert coarse.seen == {}


def test_the_steps_between_answers_every_minute_are_dropped_once_ten_spacings_agree(caplog):
    coarse = CoarseSteps("prometheus")
    minutes = {60.0 * i for i in range(100)}
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        before = reads(coarse, 0, 660, minutes)
        after = reads(coarse, 660, 900, minutes)
    # Answers at 0, 60, ... 600 s: the tenth spacing of 60 s (twenty asked steps) is seen at 600 s; 630 s is
    # not read.
    assert before == [[t] if t != 630 else [] for t in np.arange(0, 660, 30.0).tolist()]
    assert after == [[660.0], [], [720.0], [], [780.0], [], [840.0], []]
    assert coarse.seen == {Q: 60.0}
    assert len([r for r in caplog.records if "answers on a 60s step, not the 30s asked" in r.message]) == 1


@pytest.mark.parametrize(
    ("every", "spacings"), [(2, 10), (4, 5), (5, 4), (10, 3)], ids=["60s", "120s", "150s", "300s"]
)
def test_a_coarser_step_is_seen_once_its_spacings_cover_twenty_asked_steps(every, spacings):
    coarse = CoarseSteps("prometheus")
    spacing = 30.0 * every
    for k in range(spacings):  # one read per answer: the spacings follow across reads
        coarse.keep(frame([spacing * k], {spacing * k}), 30.0)
        assert coarse.seen == {}
    coarse.keep(frame([spacing * spacings], {spacing * spacings}), 30.0)
    assert coarse.seen == {Q: spacing}


def test_a_filter_answering_every_other_step_three_times_is_read_at_every_step():
    # `x > 0` answered at 0, 60, 120 and 180 s and not since: its steps between are empty because nothing
    # passed the filter. Before, three equal spacings made it coarse and 210 s was not read, so its alerts
    # resolved a step late (five steps late for a filter answering every sixth step).
    coarse = CoarseSteps("prometheus")
    answered = {0.0, 60.0, 120.0, 180.0}
    assert reads(coarse, 0, 300, answered) == [[t] for t in np.arange(0, 300, 30.0).tolist()]
    assert coarse.seen == {}


def test_an_answer_off_the_coarser_grid_ends_it(caplog):
    coarse = CoarseSteps("prometheus")
    window = [30.0 * i for i in range(40)]
    coarse.keep(frame(window, {t for t in window if t % 60 == 0}), 30.0)
    assert coarse.seen == {Q: 60.0}
    # The last answer at 1140 s, the next 90 s later: off a 60 s grid, which a filter answers and downsampled
    # data does not. Before, the query stayed coarse and the step after each of its answers went unread
    # (1260 s here); 1170 s, between two steps of the grid seen until then, is not read either way.
    with caplog.at_level(logging.INFO, logger="anomaly"):
        assert reads(coarse, 1170, 1320, {1230.0}) == [[], [1200.0], [1230.0], [1260.0], [1290.0]]
    assert coarse.seen == {}
    assert [r.message for r in caplog.records if "off the 60s step seen" in r.message] == [
        "promql: query DCGM_FI_DEV_GPU_TEMP answers off the 60s step seen, 90s after its last answer: read"
        " on its 30s step again"
    ]


def test_series_that_end_read_as_gone_at_the_next_expected_step():
    coarse = CoarseSteps("prometheus")
    window = [30.0 * i for i in range(40)]
    coarse.keep(frame(window, {t for t in window if t % 60 == 0}), 30.0)
    # The last answer at 1140 s; nothing after: 1170 s is an in-between step, 1200 s and on are gaps.
    assert reads(coarse, 1200 - 30, 1290, set()) == [[], [1200.0], [1230.0], [1260.0]]


@pytest.mark.parametrize("phase", [0.0, 30.0], ids=["on-the-minute", "half-past"])
def test_the_answers_phase_is_taken_as_it_comes(phase):
    coarse = CoarseSteps("prometheus")
    window = [30.0 * i for i in range(40)]
    answered = {t for t in window if (t - phase) % 60 == 0}
    kept = coarse.keep(frame(window, answered), 30.0)
    assert kept.timestamps.tolist() == sorted(answered)


def test_answers_on_the_asked_step_again_end_it():
    coarse = CoarseSteps("prometheus")
    window = [30.0 * i for i in range(40)]
    coarse.keep(frame(window, {t for t in window if t % 60 == 0}), 30.0)
    assert coarse.seen == {Q: 60.0}
    later = [1200.0 + 30.0 * i for i in range(4)]
    assert coarse.keep(frame(later, set(later)), 30.0).timestamps.tolist() == later
    assert coarse.seen == {}


def test_a_range_query_answered_every_minute_is_not_blanked_as_a_new_run_at_each_point():
    # A rate over 2 m asked on 30 s and answered on 60 s: each point came 2 steps after the last, and the
    # range-edge mask took every one for a series back after a gap and blanked it. Read as PromQLSource does.
    fake = FakePrometheus()
    query = PromQuery("xid_rate", "rate(gpuwarden_xid_errors_total[2m])", 30.0)
    fake.answers[query.sent[0]] = lambda t: [(lab, 0.0) for lab in LABELS] if t % 60 == 0 else []
    clock = FakeClock()
    source = PromQLSource(fake.url, [query], clock)
    try:
        now = clock.time()
        (history,) = source.read(now - 1800, now)
    finally:
        source.close()
        fake.close()
    assert source.coarse.seen == {"xid_rate": 60.0}
    assert np.isfinite(history.values[:, history.timestamps > now - 1500]).all()


def phased(times: list[float], answered: dict[int, set[float]]) -> Frame:
    """The series of ``LABELS`` answered at least once in ``times``, each with a point at its ``answered``
    times: what Prometheus sends (a series with no point in the window is not in the answer)."""
    ts = np.array(times)
    rows = [i for i in range(len(LABELS)) if answered[i] & set(times)]
    values = [np.where(np.isin(ts, list(answered[i])), 60.0 + i, np.nan) for i in rows]
    return Frame(Q, [LABELS[i] for i in rows], ts, np.array(values).reshape(len(rows), ts.size))


def test_series_answering_every_minute_at_different_phases_read_their_last_answer_between():
    # Two targets scraped every 60 s, 30 s apart, read at step 30 with a 30 s lookback: GPU-0 answers on the
    # minute, GPU-1 on the half minute. Every step answers a series, so the query's steps showed nothing
    # coarse, and each series was absent from every other read (GpuLost resolved and fired again each
    # minute). Each series' own spacing is followed: its last answer is read again until its next is due.
    coarse = CoarseSteps("prometheus")
    answered = {0: {60.0 * k for k in range(100)}, 1: {60.0 * k + 30 for k in range(100)}}
    history = [30.0 * i for i in range(40)]
    kept = coarse.keep(phased(history, answered), 30.0)
    # Each series' tenth spacing of 60 s (600 s and 630 s) makes its step seen; from then none is empty.
    assert np.isfinite(kept.values[:, kept.timestamps > 630]).all()
    for t in np.arange(1200.0, 1500.0, 30.0).tolist():
        tick = coarse.keep(phased([t], answered), 30.0)
        read = zip(tick.labels, tick.values[:, 0].tolist(), strict=True)
        assert sorted((lab["UUID"], v) for lab, v in read) == [
            ("GPU-0", 60.0),
            ("GPU-1", 61.0),
        ]
    assert coarse.seen == {}
    assert coarse.series_seen == {Q: 60.0}


def test_a_series_answering_on_a_coarser_step_that_ends_is_gone_at_its_next_expected_answer():
    coarse = CoarseSteps("prometheus")
    answered = {0: {60.0 * k for k in range(100)}, 1: {60.0 * k + 30 for k in range(21)}}  # GPU-1 to 1230 s
    coarse.keep(phased([30.0 * i for i in range(40)], answered), 30.0)
    ticks = [coarse.keep(phased([t], answered), 30.0) for t in np.arange(1200.0, 1350.0, 30.0).tolist()]
    # 1230 s its last answer, 1260 s read as it (its next is due at 1290 s), from 1290 s it is gone.
    assert [sorted(lab["UUID"] for lab in tick.labels) for tick in ticks] == [
        ["GPU-0", "GPU-1"],
        ["GPU-0", "GPU-1"],
        ["GPU-0", "GPU-1"],
        ["GPU-0"],
        ["GPU-0"],
    ]


def test_a_series_passing_a_filter_every_other_step_three_times_is_not_read_between():
    # The README's rule for a filter holds per series: 3+ equal spacings covering 20+ asked steps. GPU-1
    # passes `x > 0` at 30, 90, 150 and 210 s while GPU-0 answers every step: its answers are not carried.
    coarse = CoarseSteps("prometheus")
    answered = {0: {30.0 * i for i in range(40)}, 1: {30.0, 90.0, 150.0, 210.0}}
    ticks = [coarse.keep(phased([t], answered), 30.0) for t in np.arange(0.0, 300.0, 30.0).tolist()]
    assert coarse.series_seen == {}
    assert [len(tick.labels) for tick in ticks] == [1, 2, 1, 2, 1, 2, 1, 2, 1, 1]


def test_one_series_on_a_coarser_step_among_series_answering_every_step_is_read_between_its_answers():
    # A read whose series all answered one step after their last is taken as "every series answers every
    # step", and nothing is kept per series: GPU-1, absent then, must not be forgotten there, or its spacings
    # were never counted.
    coarse = CoarseSteps("prometheus")
    answered = {0: {30.0 * i for i in range(100)}, 1: {60.0 * k for k in range(50)}}
    ticks = [coarse.keep(phased([t], answered), 30.0) for t in np.arange(0.0, 1500.0, 30.0).tolist()]
    assert [len(tick.labels) for tick in ticks[-4:]] == [2, 2, 2, 2]
    assert coarse.series_seen == {Q: 60.0}


def test_a_series_is_the_same_series_whatever_the_order_of_its_labels():
    # A label set is one series however its keys are ordered (promql's join and rangeedges sort them): a
    # source that sent GPU-0's labels in another order at a later read had it taken for a new series with no
    # last answer, so it was absent from the steps between its answers (GpuLost fired) until seen again.
    coarse = CoarseSteps("prometheus")
    answered = {0: {60.0 * k for k in range(100)}, 1: {60.0 * k + 30 for k in range(100)}}
    labelled = [{"UUID": f"GPU-{i}", "Hostname": "n1"} for i in range(2)]
    reordered = [{"Hostname": "n1", "UUID": f"GPU-{i}"} for i in range(2)]

    def read(times: list[float], labels: list[dict[str, str]]) -> Frame:
        plain = phased(times, answered)
        return Frame(
            Q, [labels[int(lab["UUID"][-1])] for lab in plain.labels], plain.timestamps, plain.values
        )

    coarse.keep(read([30.0 * i for i in range(40)], labelled), 30.0)
    ticks = [coarse.keep(read([t], reordered), 30.0) for t in np.arange(1200.0, 1350.0, 30.0).tolist()]
    assert [len(tick.labels) for tick in ticks] == [2, 2, 2, 2, 2]


@pytest.mark.parametrize("every", [40, 120], ids=["20min", "1h"])
def test_a_series_answering_less_often_than_every_ten_minutes_is_read_between_its_answers(every):
    # A rule evaluated every 20 minutes (or Thanos' hourly downsampled data) read at step 30 with a 30 s
    # lookback, GPU-0 on the hour and GPU-1 five minutes later: the query's answers are no regular grid, so
    # only each series' own spacing shows its step. Each series was forgotten 20 steps after its answer,
    # before the next came, and was absent from every read but its own answer's, for good.
    coarse = CoarseSteps("prometheus")
    spacing = 30.0 * every
    answered = {0: {spacing * k for k in range(20)}, 1: {spacing * k + 300 for k in range(20)}}
    coarse.keep(phased([30.0 * i for i in range(120)], answered), 30.0)  # the warm-up's hour
    ticks = [coarse.keep(phased([t], answered), 30.0) for t in np.arange(3600.0, 5 * spacing, 30.0).tolist()]
    assert coarse.seen == {}
    assert coarse.series_seen == {Q: spacing}
    # From each series' fourth answer (three spacings) it is read at its last answer until its next is due.
    assert [len(tick.labels) for tick in ticks if tick.timestamps[0] >= 3 * spacing + 300] == [2] * int(
        (5 * spacing - 3 * spacing - 300) / 30
    )


def test_a_series_answering_every_twenty_minutes_among_series_answering_every_step_is_read_between():
    # GPU-0 answers every step, GPU-1 every 20 minutes: 20 steps after GPU-1's answer, every series read
    # answers every step and nothing per series is kept (the cheap path), but GPU-1's last answer is, for
    # its next one: else its spacings were never counted.
    coarse = CoarseSteps("prometheus")
    answered = {0: {30.0 * i for i in range(400)}, 1: {1200.0 * k for k in range(10)}}
    ticks = [coarse.keep(phased([t], answered), 30.0) for t in np.arange(0.0, 6000.0, 30.0).tolist()]
    assert coarse.series_seen == {Q: 1200.0}
    assert [len(tick.labels) for tick in ticks[120:]] == [2] * 80  # from GPU-1's fourth answer, at 3600 s


def test_a_series_back_at_the_step_another_leaves_has_that_answer_counted():
    # GPU-1 answers every 20 minutes beside GPU-0 answering every step; GPU-2 answers every step until
    # 2370 s, the step before GPU-1's third answer. At 2400 s the read holds as many series as the one
    # before, each one step on, so it was taken as the same series answering on: GPU-1's answer there was
    # not counted and its run of spacings started again, seen at 7200 s, not 3600 s.
    coarse = CoarseSteps("prometheus")
    answered = {0: {30.0 * i for i in range(400)}, 1: {1200.0 * k for k in range(10)}}
    answered[2] = {30.0 * i for i in range(80)}
    labels = [*LABELS, {"UUID": "GPU-2"}]

    def read(t: float) -> Frame:
        rows = [i for i in range(3) if t in answered[i]]
        values = np.array([[60.0 + i] for i in rows])
        return Frame(Q, [labels[i] for i in rows], np.array([t]), values)

    ticks = [coarse.keep(read(t), 30.0) for t in np.arange(0.0, 4800.0, 30.0).tolist()]
    assert coarse.series_seen == {Q: 1200.0}
    assert [len(tick.labels) for tick in ticks[120:]] == [2] * 40  # from GPU-1's fourth answer, at 3600 s


def test_series_answering_once_are_let_go_of_after_twenty_steps_where_labels_churn():
    # Pods that live one scrape: every read brings 50 label sets never seen again. Each was kept two hours
    # for a next answer: 12 times what 20 steps held (243,300 label sets, 240 MiB, at 1,000 a read).
    coarse = CoarseSteps("prometheus")
    for k in range(80):
        labels = [LABELS[0], *({"UUID": f"pod-{k}-{i}"} for i in range(50))]
        coarse.keep(Frame(Q, labels, np.array([30.0 * k]), np.full((51, 1), 1.0)), 30.0)
    assert coarse._series[Q].remembered <= 1 + 50 * (MIN_STEPS + 1)


def test_a_series_answering_ever_more_rarely_is_kept_two_hours_at_most():
    # Spacings of 20, 40 and 80 minutes: kept twice its last spacing, it was kept 160 minutes after its last
    # answer, and ever longer as they grew. LONGEST bounds it. GPU-0 answers every minute throughout.
    coarse = CoarseSteps("prometheus")
    answered = {0: {60.0 * k for k in range(300)}, 1: {0.0, 1200.0, 3600.0, 8400.0}}
    held = {}  # the series remembered after each read
    for t in np.arange(0.0, 8400.0 + LONGEST + 90, 30.0).tolist():
        coarse.keep(phased([t], answered), 30.0)
        held[t] = coarse._series[Q].remembered
    # GPU-1 kept through 8400 s + LONGEST; let go of at the next read (the query answers every minute).
    assert (held[8400.0 + LONGEST], held[8400.0 + LONGEST + 60]) == (2, 1)


def test_a_filter_passing_every_quarter_hour_in_one_read_is_not_carried_after_it():
    # `x > 0` passing for GPU-1 one step every 15 minutes (30 asked steps), GPU-0 every step. Read step by
    # step, GPU-1 is forgotten 20 steps after each answer; but the warm-up's hour (or a catch-up read) holds
    # four of its answers at once: three spacings of 30 steps made its step seen on 900 s, and its answer at
    # the read's end was carried over the next 20 reads, while Prometheus answered nothing for it.
    coarse = CoarseSteps("prometheus", filters={Q})
    answered = {0: {30.0 * k for k in range(1, 200)}, 1: {900.0 * k for k in range(1, 7)}}
    coarse.keep(phased([30.0 * k for k in range(1, 121)], answered), 30.0)  # to 3600 s: four of GPU-1's
    assert coarse.series_seen == {}
    read = [coarse.keep(phased([t], answered), 30.0) for t in np.arange(3630.0, 5400.0, 30.0).tolist()]
    present = [f.timestamps[0] for f in read if LABELS[1] in f.labels and np.isfinite(f.values[-1]).all()]
    assert present == [4500.0]


def rule_every_twenty_minutes(times: list[float]) -> Frame:
    """`job:x:20m > 0` read with a 5-minute lookback: each evaluation (every 1200 s) answers 10 steps."""
    ts = np.array(times)
    values = np.where(np.fmod(ts, 1200.0) < 300.0, 1.0, np.nan)
    return Frame(Q, LABELS, ts, np.vstack([values, values]))


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.mark.parametrize("first", ["step-by-step", "warm-up-hour"])
def test_a_filter_whose_series_come_back_on_a_period_is_told_once(caplog, first):
    # A filter over a 20-minute recording rule read with a 5-minute lookback fired and resolved every 20
    # minutes with no word in the log. Told once, naming the query, its period and what to change.
    coarse = CoarseSteps("prometheus", filters={Q})
    start = 0.0
    if first == "warm-up-hour":  # the warm-up's read holds three returns at once
        coarse.keep(rule_every_twenty_minutes([30.0 * k for k in range(1, 121)]), 30.0)
        start = 3630.0
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        for t in np.arange(start, 12000.0, 30.0).tolist():
            coarse.keep(rule_every_twenty_minutes([t]), 30.0)
    told = messages(caplog, "come back every 1200s")
    assert len(told) == 1, told
    assert f"query {Q} is a filter" in told[0] and "`bool`" in told[0] and "[1200s]" in told[0]


def test_a_filter_back_at_uneven_times_or_a_query_that_is_no_filter_is_not_told_of_a_period(caplog):
    uneven = CoarseSteps("prometheus", filters={Q})
    back = {0.0, 600.0, 2100.0, 2700.0, 4800.0, 5100.0, 7200.0, 9900.0}  # a target down now and then
    plain = CoarseSteps("prometheus")
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        for t in np.arange(0.0, 12000.0, 30.0).tolist():
            uneven.keep(frame([t], back), 30.0)
            plain.keep(rule_every_twenty_minutes([t]), 30.0)
    assert messages(caplog, "come back every") == []


def test_hashes_of_series_answered_once_are_capped_oldest_first(monkeypatch):
    # Kept two hours whatever the step, they grew as one over it: 1.4 million at step 5 s with 1,000 pods
    # living one scrape at every read. Capped (here at 1,000), oldest first: GPU-1, answering every 35 steps
    # among 50 fresh label sets a read, has its first spacing counted still, and is seen from its 4th answer.
    monkeypatch.setattr(seriessteps, "ONCE_MOST", 1000)
    coarse = CoarseSteps("prometheus")
    held = []
    for k in range(150):
        labels = [LABELS[0], *({"UUID": f"pod-{k}-{i}"} for i in range(50))]
        labels += [LABELS[1]] if k % 35 == 5 else []
        coarse.keep(Frame(Q, labels, np.array([30.0 * k]), np.ones((len(labels), 1))), 30.0)
        held.append(len(coarse._series[Q]._once))
    assert max(held) == 1000
    assert coarse.series_seen == {Q: 1050.0}


def test_a_series_relabelled_among_series_at_different_phases_is_read_between_its_first_answers():
    # GPU-1's job ends at 1800 s and its series loses its pod label: a new series, whose own spacing takes
    # ten answers (ten minutes) to be seen. It was absent from every other read until then, while the
    # series it replaced and GPU-0 were read between their answers: GpuLost fired for a GPU answering every
    # scrape. Read on the step its query's series are seen on, it is there at every read.
    coarse = CoarseSteps("prometheus")
    relabelled = {"UUID": "GPU-1"}
    old = {"UUID": "GPU-1", "pod": "train"}

    def answer(t: float) -> Frame:
        if round(t) // 30 % 2 == 0:
            return Frame(Q, [LABELS[0]], np.array([t]), np.array([[60.0]]))
        return Frame(Q, [relabelled if t >= 1800 else old], np.array([t]), np.array([[61.0]]))

    read = {t: coarse.keep(answer(t), 30.0) for t in np.arange(30.0, 2400.0, 30.0).tolist()}
    for t in np.arange(1830.0, 2400.0, 30.0).tolist():
        got = sorted((lab.get("pod", ""), lab["UUID"]) for lab in read[t].labels)
        assert got == [("", "GPU-0"), ("", "GPU-1")], t


def test_a_query_that_failed_reads_well_again_at_a_window_between_two_of_its_coarser_answers():
    """A query answered every 15 minutes at step 300 failed once; the next read, its catch-up, fell between
    two answers and Prometheus answered it whole: the query stayed failing until its next answer, 10
    minutes on (``GpuwardenSourceStale`` and its alerts held meanwhile), where a process started after the
    failure read it well (restart fuzz, coarse answers alone: firing alerts of seeds 3 and 23)."""
    clock = FakeClock(1_767_225_600.0)  # on the 900 s grid
    asked: list[float] = []
    failing = [False]

    def answer(request: httpx.Request) -> httpx.Response:
        start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
        asked.append(start)
        if failing[0]:
            return httpx.Response(503, json={"status": "error", "errorType": "timeout", "error": "timed out"})
        stamps = [start + i * step for i in range(round((end - start) / step) + 1)]
        values = [[t, "60"] for t in stamps if t % 900.0 == 0]
        result = [{"metric": {"UUID": "GPU-0"}, "values": values}] if values else []
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "matrix", "result": result}}
        )

    client = httpx.Client(base_url="http://prom:9090", transport=httpx.MockTransport(answer))
    queries = [PromQuery(Q, Q, 300.0)]
    prom = PromQLSource("http://prom:9090", queries, clock, client=client, max_lookback_seconds=10_800.0)
    now = clock.time()
    prom.read(now - 9000.0, now)  # 30 steps, 10 answers: the 900 s step is seen
    assert prom.coarse.seen == {Q: 900.0}
    failing[0] = True
    clock.advance(300.0)
    prom.read(now, clock.time())
    assert not prom.health().queries[Q].up
    failing[0] = False
    clock.advance(300.0)
    assert prom.read(now + 300.0, clock.time()) == []  # its catch-up: two steps, both between answers
    assert prom.health().queries[Q].up
    clock.advance(300.0)
    frames = prom.read(now + 600.0, clock.time())
    assert asked[-1] == now + 900.0  # its one step: read on from there, not caught up again
    assert [f.timestamps.tolist() for f in frames] == [[now + 900.0]]


@pytest.mark.parametrize("phase", [0.0, 30.0], ids=["on-the-minute", "half-past"])
def test_a_read_of_many_steps_drops_only_the_empty_steps_after_the_answer_that_showed_the_step(phase):
    """After a first read, a read of many steps (a restart's warm-up over a snapshot, a catch-up) in which
    the coarser step comes to be believed keeps the empty steps before the answer that showed it, as gaps:
    read a step at a time, each of them was read before the step was believed. Dropped as well, the restart
    replayed ticks without the gaps the process before it had read, and the fleet detector judged power with
    no load where that process had (restart fuzz, coarse answers: seeds 744, 778)."""
    window = [30.0 * i for i in range(40)]
    answered = {t for t in window if (t - phase) % 60 == 0}
    one_by_one, at_once = CoarseSteps("prometheus"), CoarseSteps("prometheus")
    for c in (one_by_one, at_once):
        c.keep(frame(window[:4], answered), 30.0)  # a first read: the phase, a spacing or two
    kept = [t for k in reads(one_by_one, 120.0, 1200.0, answered) for t in k]
    assert at_once.keep(frame(window[4:], answered), 30.0).timestamps.tolist() == kept
    assert one_by_one.seen == at_once.seen == {Q: 60.0}
    gaps = [t for t in kept if t not in answered]
    assert gaps and max(gaps) < 30.0 * MIN_STEPS + 120.0  # the in-betweens before the step was believed
