"""Training metrics: step timer, report, what the loop may pass and what setup refuses."""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np
import pytest

from exporters.training import REJECT_REASONS, TrainingMetrics
from gpuwarden.clock import FakeClock


def value(m: TrainingMetrics, rank: int, name: str) -> float | None:
    return m.rank(rank).registry.get_sample_value(f"gpuwarden_training_{name}", {"rank": str(rank)})


def rejected(m: TrainingMetrics, rank: int, reason: str) -> float | None:
    return m.rank(rank).registry.get_sample_value(
        "gpuwarden_training_rejected_values_total", {"rank": str(rank), "reason": reason}
    )


def test_step_timer_records_duration_progress_and_throughput_of_the_step() -> None:
    clock = FakeClock(1000.0)
    m = TrainingMetrics("pretrain", clock=clock)
    with m.step_timer(rank=3) as step:
        assert value(m, 3, "step_started_timestamp_seconds") == 1000.0
        clock.advance(1.5)
        step.compute_done()
        clock.advance(0.5)
        m.report(samples=64, tokens=64 * 2048, loss=2.5)
    assert value(m, 3, "last_step_duration_seconds") == 2.0
    assert value(m, 3, "compute_seconds") == 1.5
    assert value(m, 3, "steps_total") == 1
    assert value(m, 3, "samples_total") == 64
    assert value(m, 3, "samples_per_second") == 32.0
    assert value(m, 3, "tokens_per_second") == 32.0 * 2048
    assert value(m, 3, "loss") == 2.5
    assert value(m, 3, "last_progress_timestamp_seconds") == 1002.0
    assert value(m, 3, "step_duration_seconds_count") == 1


def test_the_job_rank_given_at_setup_is_the_default_of_every_loop_call() -> None:
    clock = FakeClock(0.0)
    m = TrainingMetrics("pretrain", rank=2, clock=clock)
    with m.step_timer():
        clock.advance(1.0)
    m.report(samples=4)
    assert m.ranks() == [2]
    assert value(m, 2, "steps_total") == 1
    assert value(m, 2, "samples_total") == 4


def test_a_process_with_a_thread_per_rank_reports_each_ranks_samples_in_its_own_step() -> None:
    # report() without rank= went to the rank whose step any thread began last: with two ranks' steps open
    # at once, as in a collective, rank 1's samples were counted on rank 0 and the other way round.
    m = TrainingMetrics("pretrain")
    both_in_step = threading.Barrier(2, timeout=10)

    def loop(rank: int, samples: int) -> None:
        for _ in range(20):
            with m.step_timer(rank=rank):
                both_in_step.wait()
                m.report(samples=samples)
                both_in_step.wait()
            m.report(tokens=samples)  # after its step: that step's, this thread's

    threads = [threading.Thread(target=loop, args=(r, n)) for r, n in ((0, 1), (1, 1000))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [value(m, r, "samples_total") for r in (0, 1)] == [20, 20_000]
    assert [value(m, r, "tokens_total") for r in (0, 1)] == [20, 20_000]


def test_report_after_the_step_applies_to_that_step() -> None:
    clock = FakeClock(0.0)
    m = TrainingMetrics("pretrain", clock=clock)
    with m.step_timer(rank=0):
        clock.advance(4.0)
    m.report(samples=8)
    assert value(m, 0, "samples_per_second") == 2.0


def test_report_before_any_step_without_a_rank_is_dropped_and_counted_not_raised() -> None:
    m = TrainingMetrics("pretrain")
    m.report(samples=1)
    assert m.rejected["no_rank"] == 1
    assert m.ranks() == []


def test_a_step_that_raises_is_not_progress_and_no_progress_time_reads_as_zero() -> None:
    clock = FakeClock(0.0)
    m = TrainingMetrics("pretrain", clock=clock)
    with pytest.raises(RuntimeError), m.step_timer(rank=0):
        clock.advance(1.0)
        raise RuntimeError("nccl timeout")
    assert value(m, 0, "steps_total") == 0
    assert value(m, 0, "last_progress_timestamp_seconds") is None  # unknown, not 1970


def test_nothing_unknown_is_exported_as_zero_before_the_first_step() -> None:
    m = TrainingMetrics("pretrain", rank=0)
    for gauge in (
        "step_started_timestamp_seconds",
        "last_progress_timestamp_seconds",
        "last_step_duration_seconds",
        "compute_seconds",
        "samples_per_second",
        "loss",
    ):
        assert value(m, 0, gauge) is None, gauge
    assert value(m, 0, "steps_total") == 0  # a counter at 0 is a true 0
    assert all(rejected(m, 0, reason) == 0 for reason in REJECT_REASONS)


def test_record_step_sets_when_the_current_step_started() -> None:
    # A loop driven through record_step (the simulator) had step_started 0 on every rank, so a hung-step
    # rule `time() - step_started > X` fired everywhere.
    m = TrainingMetrics("pretrain", clock=FakeClock(5000.0))
    m.record_step(rank=1, seconds=2.0, end_time=4990.0)
    assert value(m, 1, "step_started_timestamp_seconds") == 4990.0
    assert value(m, 1, "last_progress_timestamp_seconds") == 4990.0


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        ({"samples": -5}, "negative"),
        ({"samples": math.nan}, "not_finite"),
        ({"tokens": math.inf}, "not_finite"),
        ({"tokens": -math.inf}, "not_finite"),
        ({"samples": "64"}, "not_a_number"),
        ({"tokens": None}, "not_a_number"),
        ({"samples": True}, "not_a_number"),
        ({"loss": "low"}, "not_a_number"),
    ],
    ids=["negative", "nan", "inf", "minus-inf", "string", "none", "bool", "loss-string"],
)
def test_bad_report_values_are_dropped_and_counted_without_raising(
    report: dict[str, object], reason: str
) -> None:
    clock = FakeClock(0.0)
    m = TrainingMetrics("pretrain", rank=0, clock=clock)
    with m.step_timer():
        clock.advance(1.0)
        m.report(**report)  # type: ignore[arg-type]
    with m.step_timer():
        clock.advance(1.0)
        m.report(samples=8, tokens=16, loss=1.0)
    assert rejected(m, 0, reason) == 1
    assert m.rejected[reason] == 1
    assert value(m, 0, "samples_total") == 8  # the counters stay usable: no NaN, no inf, no decrease
    assert value(m, 0, "tokens_total") == 16
    assert value(m, 0, "steps_total") == 2


def test_a_nan_loss_is_kept_because_a_diverging_run_is_worth_seeing() -> None:
    m = TrainingMetrics("pretrain", rank=0, clock=FakeClock(0.0))
    with m.step_timer():
        m.report(loss=math.nan)
    loss = value(m, 0, "loss")
    assert loss is not None and math.isnan(loss)
    assert sum(m.rejected.values()) == 0


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"seconds": math.nan}, "not_finite"),
        ({"seconds": math.inf}, "not_finite"),
        ({"seconds": -1.0}, "negative"),
        ({"end_time": math.nan}, "not_finite"),
        ({"compute_seconds": math.nan}, "not_finite"),
        ({"compute_seconds": -0.5}, "negative"),
        ({"steps": 0}, "bad_steps"),
        ({"steps": -2}, "bad_steps"),
        ({"steps": 1.5}, "bad_steps"),
    ],
    ids=[
        "nan",
        "inf",
        "negative",
        "nan-end",
        "nan-compute",
        "negative-compute",
        "0-steps",
        "-2-steps",
        "1.5",
    ],
)
def test_bad_step_records_are_dropped_whole_and_counted(record: dict[str, object], reason: str) -> None:
    m = TrainingMetrics("pretrain", rank=0, clock=FakeClock(0.0))
    args: dict[str, object] = {"seconds": 2.0, "end_time": 100.0, **record}
    assert m.record_step(**args) is False  # type: ignore[arg-type]
    assert m.record_step(seconds=3.0, end_time=103.0)
    assert value(m, 0, "step_duration_seconds_sum") == 3.0  # not poisoned by a NaN
    assert value(m, 0, "steps_total") == 1
    assert rejected(m, 0, reason) == 1


def test_a_catch_up_of_steps_counted_by_numpy_is_recorded_as_an_int_would_be() -> None:
    # A loop's step counts are often numpy (or torch) integers: record_step(steps=np.int64(3)) was dropped
    # whole as bad_steps, its progress and step times lost, where a rank of the same type is taken.
    m = TrainingMetrics("pretrain", rank=0, clock=FakeClock(0.0))
    assert m.record_step(seconds=2.0, end_time=100.0, steps=np.int64(3))
    assert value(m, 0, "steps_total") == 3
    assert value(m, 0, "step_duration_seconds_count") == 3
    assert value(m, 0, "last_progress_timestamp_seconds") == 100.0
    assert sum(m.rejected.values()) == 0
    assert m.record_step(seconds=2.0, end_time=102.0, steps=True) is False  # a bool is no count
    assert rejected(m, 0, "bad_steps") == 1


def test_a_record_of_millions_of_steps_returns_at_once_with_every_step_in_the_histogram() -> None:
    # The histogram observed one step at a time: record_step(steps=global_step), a count of ten million, held
    # the loop about 40 s (a loop call must never hold a step), and a billion for hours.
    m = TrainingMetrics("pretrain", rank=0, clock=FakeClock(0.0))
    started = time.monotonic()
    assert m.record_step(seconds=0.7, end_time=100.0, steps=10_000_000)
    assert time.monotonic() - started < 1.0
    assert value(m, 0, "step_duration_seconds_count") == 10_000_000
    assert value(m, 0, "steps_total") == 10_000_000
    bucket = "gpuwarden_training_step_duration_seconds_bucket"
    assert m.rank(0).registry.get_sample_value(bucket, {"rank": "0", "le": "0.5"}) == 0
    assert m.rank(0).registry.get_sample_value(bucket, {"rank": "0", "le": "1.0"}) == 10_000_000
    total = value(m, 0, "step_duration_seconds_sum")
    assert total == pytest.approx(7_000_000.0)


def test_a_hung_rank_may_report_infinite_compute() -> None:
    m = TrainingMetrics("pretrain", rank=0, clock=FakeClock(0.0))
    assert m.record_step(seconds=2.0, end_time=10.0, compute_seconds=math.inf)
    assert value(m, 0, "compute_seconds") == math.inf


@pytest.mark.parametrize(
    ("rank", "error"),
    [(1.5, TypeError), (True, TypeError), ("3", TypeError), (-1, ValueError)],
    ids=["float", "bool", "string", "negative"],
)
def test_setup_refuses_a_rank_that_is_not_an_int_at_least_0(rank: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="rank"):
        TrainingMetrics("pretrain", rank=rank)  # type: ignore[arg-type]
    m = TrainingMetrics("pretrain")
    with pytest.raises(error, match="rank"):
        m.rank(rank)  # type: ignore[arg-type]
    with pytest.raises(error, match="rank"):
        m.serve(rank, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("rank", [1.5, True, "3", -1], ids=["float", "bool", "string", "negative"])
def test_the_loop_drops_and_counts_an_invalid_rank_but_runs_the_step(rank: object) -> None:
    m = TrainingMetrics("pretrain", clock=FakeClock(0.0))
    ran = False
    with m.step_timer(rank=rank) as step:  # type: ignore[arg-type]
        ran = True
        m.report(samples=1, rank=rank)  # type: ignore[arg-type]
    m.record_step(rank=rank, seconds=1.0, end_time=1.0)  # type: ignore[arg-type]
    assert ran and step.refused
    assert m.rejected["invalid_rank"] == 3
    assert m.ranks() == []  # no rank "1" for 1.5 or True


def test_steps_dropped_for_naming_no_valid_rank_are_counted_in_the_group_the_process_serves() -> None:
    """The served group read 0 steps and 0 drops while every step of the loop was dropped."""
    m = TrainingMetrics("pretrain", clock=FakeClock(0.0))
    m.rank(4)  # declared, as serve(4, port) does, but not the default of loop calls
    m.rank(7)
    for _ in range(3):
        with m.step_timer():  # forgot rank=
            m.report(samples=8)
    with m.step_timer(rank=-1):
        pass
    assert value(m, 4, "steps_total") == 0
    assert rejected(m, 4, "no_rank") == 6  # three steps and three reports, on the lowest rank: once each
    assert rejected(m, 4, "invalid_rank") == 1
    assert rejected(m, 7, "no_rank") == 0
    fixed = TrainingMetrics("pretrain", rank=2, clock=FakeClock(0.0))
    fixed.report(samples=1, rank=True)  # type: ignore[arg-type]
    assert rejected(fixed, 2, "invalid_rank") == 1  # on the process's own rank


def test_a_numpy_style_integer_rank_is_accepted() -> None:
    class Index:  # what numpy.int64 offers
        def __index__(self) -> int:
            return 4

    assert TrainingMetrics("pretrain", rank=Index()).ranks() == [4]  # type: ignore[arg-type]


def test_a_nested_step_timer_on_the_same_rank_is_refused_and_the_step_counts_once() -> None:
    clock = FakeClock(0.0)
    m = TrainingMetrics("pretrain", rank=0, clock=clock)
    with m.step_timer() as outer:
        with m.step_timer() as inner:
            clock.advance(1.0)
            m.report(samples=8)
        clock.advance(1.0)
    assert inner.refused and not outer.refused
    assert value(m, 0, "steps_total") == 1
    assert value(m, 0, "step_duration_seconds_count") == 1
    assert value(m, 0, "last_step_duration_seconds") == 2.0
    assert value(m, 0, "samples_total") == 8  # the inner block's report belongs to the outer step
    assert rejected(m, 0, "nested_step") == 1


def test_step_timers_of_different_ranks_may_overlap() -> None:
    clock = FakeClock(0.0)
    m = TrainingMetrics("pretrain", clock=clock)
    with m.step_timer(rank=0), m.step_timer(rank=1):
        clock.advance(1.0)
    assert value(m, 0, "steps_total") == 1
    assert value(m, 1, "steps_total") == 1
    assert m.rejected["nested_step"] == 0


def test_close_marks_every_rank_finished_and_an_exception_leaving_the_with_block_does_not() -> None:
    clock = FakeClock(50.0)
    with TrainingMetrics("pretrain", clock=clock) as done:
        for rank in (0, 1):
            with done.step_timer(rank=rank):
                clock.advance(1.0)
        assert value(done, 0, "finished_timestamp_seconds") is None  # running: no sample, never a 0
    assert [value(done, r, "finished_timestamp_seconds") for r in (0, 1)] == [52.0, 52.0]
    with pytest.raises(RuntimeError), TrainingMetrics("pretrain", rank=0, clock=clock) as crashed:
        with crashed.step_timer():
            clock.advance(1.0)
        raise RuntimeError("NCCL error")
    assert value(crashed, 0, "finished_timestamp_seconds") is None  # a crashed run still reads as stalled
    stopped = TrainingMetrics("pretrain", rank=0, clock=clock)
    stopped.close(finished=False)
    assert value(stopped, 0, "finished_timestamp_seconds") is None


class _FailedTensor:
    """A torch scalar after a CUDA error: reading it (``float()``, ``int()``, ``repr()``) raises."""

    def _fail(self, *args: object) -> object:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    __float__ = __index__ = __int__ = __repr__ = _fail


@pytest.mark.parametrize(
    "call",
    [
        lambda m, bad: m.report(samples=bad),
        lambda m, bad: m.report(tokens=bad),
        lambda m, bad: m.report(loss=bad),
        lambda m, bad: m.record_step(seconds=bad, end_time=1.0),
        lambda m, bad: m.record_step(seconds=1.0, end_time=bad),
        lambda m, bad: m.record_step(seconds=1.0, end_time=1.0, compute_seconds=bad),
        lambda m, bad: m.record_step(seconds=1.0, end_time=1.0, steps=bad),
    ],
    ids=["samples", "tokens", "loss", "seconds", "end_time", "compute_seconds", "steps"],
)
def test_a_value_whose_read_raises_is_dropped_counted_and_logged_once_never_killing_the_loop(
    call: object, caplog: pytest.LogCaptureFixture
) -> None:
    # float() of a torch tensor raises RuntimeError after a CUDA error: it escaped and ended the training run.
    m = TrainingMetrics("pretrain", rank=0, clock=FakeClock(0.0))
    caplog.set_level(logging.DEBUG, logger="exporters.training")
    for _ in range(2):
        with m.step_timer():
            call(m, _FailedTensor())  # type: ignore[operator]
    assert rejected(m, 0, "unreadable") == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "RuntimeError: CUDA error: an illegal memory access" in warned[0]
    assert value(m, 0, "steps_total") == 2  # the steps around the bad value still count


def test_a_rank_whose_read_raises_is_dropped_and_counted_as_an_invalid_rank() -> None:
    m = TrainingMetrics("pretrain", clock=FakeClock(0.0))
    with m.step_timer(rank=_FailedTensor()) as step:  # type: ignore[arg-type]
        m.report(samples=1, rank=_FailedTensor())  # type: ignore[arg-type]
    assert step.refused
    assert m.rejected["invalid_rank"] == 2


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"job": " "}, "job"),
        ({"job": ""}, "job"),
        ({"push_timeout": True}, "push_timeout"),
        ({"push_timeout": 0}, "push_timeout"),
    ],
    ids=["blank-job", "empty-job", "bool-timeout", "0-timeout"],
)
def test_setup_refuses_a_blank_job_or_a_bool_push_timeout_naming_the_argument(
    args: dict[str, object], named: str
) -> None:
    # push_timeout=True was taken as 1 s, and job=" " pushed to a group no query would think to name.
    given: dict[str, object] = {"job": "pretrain", "pushgateway": "http://127.0.0.1:9", **args}
    job = given.pop("job")
    with pytest.raises(ValueError, match=f"^{named} must"):
        TrainingMetrics(job, **given)  # type: ignore[arg-type]
