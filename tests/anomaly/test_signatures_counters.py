"""The signatures detector's error counters: ECC errors, resets, garbage, negative and falling readings, jumps
too large to believe, reads of several steps, and single-bit ECC storms."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.ledger import ZERO_MEMORY_READS
from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.signatures import SignatureDetector
from anomaly.sources import Frame
from gpuwarden.model import RecommendedAction
from tests.anomaly.signature_feeds import GPU, SBE, Feed, fired


def test_a_double_bit_ecc_increase_fires_and_a_counter_reset_does_not():
    feed = Feed()
    q = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    feed.tick((q, [GPU], [3], "counter"))
    assert fired(feed.tick((q, [GPU], [3], "counter"))) == []
    assert len(fired(feed.tick((q, [GPU], [4], "counter")))) == 1
    assert fired(feed.tick((q, [GPU], [0], "counter"))) == []


@pytest.mark.parametrize(
    "query",
    [
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "gpuwarden_xid_errors_total",
    ],
    ids=["dbe", "nvlink-recovery", "xid"],
)
def test_a_gpu_reset_zeroing_a_counter_raises_nothing_and_the_next_error_after_it_raises(query):
    feed = Feed()
    labels = [{**GPU, "xid": "79"}]
    feed.tick((query, labels, [3], "counter"))
    assert fired(feed.tick((query, labels, [3], "counter"))) == []
    assert fired(feed.tick((query, labels, [0], "counter"))) == []  # the reset
    assert fired(feed.tick((query, labels, [0], "counter"))) == []
    assert len(fired(feed.tick((query, labels, [1], "counter")))) == 1


# The error counters the signature rules read (their counts' jumps and falls are held alike).
EACH_ERROR_COUNTER = pytest.mark.parametrize(
    "query",
    [
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "gpuwarden_xid_errors_total",
    ],
    ids=["dbe", "nvlink-recovery", "sbe", "xid"],
)


@EACH_ERROR_COUNTER
@pytest.mark.parametrize("before", [0.0, 2.0])
def test_one_garbage_reading_of_an_error_counter_raises_nothing_and_its_fall_back_is_no_reset(query, before):
    # dcgm-exporter has served 808334905 for a field: read at face value it was a double-bit ECC error on a
    # healthy GPU (drain and reset), and its fall back to 2 a reset counting 2 errors more.
    feed = Feed()
    labels = [{**GPU, "xid": "79"}]
    feed.tick((query, labels, [before], "counter"))
    assert fired(feed.tick((query, labels, [before], "counter"))) == []
    assert fired(feed.tick((query, labels, [808334905.0], "counter"))) == []
    assert fired(feed.tick((query, labels, [before], "counter"))) == []
    assert fired(feed.tick((query, labels, [before], "counter"))) == []
    # The counter still counts: the next real error (a storm, for single-bit ones) raises at once.
    more = 1000.0 if query == "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" else 1.0
    assert len(fired(feed.tick((query, labels, [before + more], "counter")))) == 1


def test_a_real_jump_too_large_to_believe_at_once_raises_at_the_next_read_while_a_small_one_raises_now():
    feed = Feed()
    q = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    feed.tick((q, [GPU], [3], "counter"))
    assert fired(feed.tick((q, [GPU], [3], "counter"))) == []
    assert fired(feed.tick((q, [GPU], [3e6], "counter"))) == []  # held: a counter keeps what it counted
    assert len(fired(feed.tick((q, [GPU], [3e6], "counter")))) == 1
    assert fired(feed.tick((q, [GPU], [3e6], "counter"))) == []
    assert len(fired(feed.tick((q, [GPU], [3e6 + 1], "counter")))) == 1


@EACH_ERROR_COUNTER
@pytest.mark.parametrize("zeros", [1, 2, ZERO_MEMORY_READS], ids=["once", "twice", "longest-glitch"])
def test_an_error_counter_reading_0_then_its_count_again_raises_nothing(query, zeros):
    # DBE 5, 5, 0, 5 (and, left by the first fix, 5, 5, 0, 0, 5) read as a reset and 5 new double-bit
    # errors: drain and reset for a healthy GPU.
    feed = Feed()
    labels = [{**GPU, "xid": "79"}]
    for value in (5000.0, 5000.0, *[0.0] * zeros, 5000.0, 5000.0):
        assert fired(feed.tick((query, labels, [value], "counter"))) == []
    more = 5000.0 if query == "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" else 1.0
    assert len(fired(feed.tick((query, labels, [5000.0 + more], "counter")))) == 1


@EACH_ERROR_COUNTER
def test_an_error_counter_falling_a_little_for_one_read_raises_nothing(query):
    # Thanos switching from one Prometheus replica to the other (its counter-aware dedup is for rate() and
    # increase() only) serves a bare counter from a replica a scrape behind: 5000, 4990, 5000 read as a reset
    # counting 4990 errors and then 10 more (a single-bit storm, a DBE's drain and reset, an XID again).
    feed = Feed()
    labels = [{**GPU, "xid": "79"}]
    for value in (5000.0, 5000.0, 4990.0, 5000.0, 5000.0, 4990.0, 808334905.0, 5000.0, 5000.0):
        assert fired(feed.tick((query, labels, [value], "counter"))) == []
    more = 5000.0 if query == "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" else 1.0
    assert len(fired(feed.tick((query, labels, [5000.0 + more], "counter")))) == 1


@EACH_ERROR_COUNTER
@pytest.mark.parametrize("count", [0.0, 5000.0])
def test_negative_readings_of_an_error_counter_are_no_readings(query, count):
    # A counter cannot go below 0: an exporter's signed -1 ("not available") read twice was a reset, and the
    # count's return a new error (0, -1, -1, 0 raised a double-bit error on a healthy GPU).
    feed = Feed()
    labels = [{**GPU, "xid": "79"}]
    for value in (count, count, -1.0, -1.0, -1.0, count, count):
        assert fired(feed.tick((query, labels, [value], "counter"))) == []
    more = 5000.0 if query == "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" else 1.0
    assert len(fired(feed.tick((query, labels, [count + more], "counter")))) == 1


@pytest.mark.parametrize(
    ("after", "raises"),
    [([2, 2], [0, 1]), ([2, 3], [0, 1]), ([2, 7], [0, 1]), ([2, 5, 6], [0, 0, 1])],
    ids=["reset-then-errors", "reset-then-more-errors", "glitch-then-errors", "glitch-then-error-later"],
)
def test_a_fall_below_an_error_count_is_a_reset_with_its_errors_when_the_next_read_is_still_below(
    after, raises
):
    # Held one read like a fall to 0: a reset's errors are told one read late; back at the count or above,
    # the fall was a lagging replica or a glitch, and only what is above the count is new.
    feed = Feed()
    q = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    feed.tick((q, [GPU], [5], "counter"))
    feed.tick((q, [GPU], [5], "counter"))
    assert [len(fired(feed.tick((q, [GPU], [v], "counter")))) for v in after] == raises


@pytest.mark.parametrize(
    ("after", "raises"),
    [
        ([0, 0, 1], [0, 0, 1]),
        ([2], [1]),
        ([6], [1]),
        ([0, 2], [0, 1]),
        ([0, 0, 6], [0, 0, 1]),
        ([0] * ZERO_MEMORY_READS + [5], [0] * ZERO_MEMORY_READS + [1]),
        ([0] * ZERO_MEMORY_READS + [1], [0] * ZERO_MEMORY_READS + [1]),
    ],
    ids=[
        "reset-confirmed-then-error",
        "reset-then-errors",
        "glitch-then-error",
        "reset-confirmed-then-errors",
        "long-glitch-then-error",
        "reset-past-memory-then-same-count",
        "reset-past-memory-then-error",
    ],
)
def test_a_real_reset_after_a_0_still_raises_the_errors_that_follow_it(after, raises):
    # A 0 held for one read costs nothing (a reset counts nothing either); the read after it tells: below the
    # count from before, a reset and its new errors; 0 again, a reset; above, a glitch and new errors. The
    # count from before the 0 is remembered while the counter reads 0, for ZERO_MEMORY_READS reads: a return
    # to it is a glitch ending; after that the reset is old and every error after it counts.
    feed = Feed()
    q = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    feed.tick((q, [GPU], [5], "counter"))
    feed.tick((q, [GPU], [5], "counter"))
    assert fired(feed.tick((q, [GPU], [0], "counter"))) == []
    assert [len(fired(feed.tick((q, [GPU], [v], "counter")))) for v in after] == raises


def test_an_error_inside_a_read_of_several_steps_raises_even_when_the_last_step_shows_no_change():
    # A query with a step shorter than the tick, or the catch-up read after a Prometheus outage: the reset
    # and the error after it sit in the middle of the read, and the newest step adds nothing.
    q = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    index, rates, det = SeriesIndex(), CounterRates(), SignatureDetector()
    first = Frame(q, [GPU], np.array([0.0]), np.array([[3.0]]), kind="counter")
    det.detect(build_view([first], index, rates, 0.0))
    read = Frame(
        q, [GPU], np.array([10.0, 20.0, 30.0, 40.0]), np.array([[0.0, 1.0, 1.0, 1.0]]), kind="counter"
    )
    hits = fired(det.detect(build_view([read], index, rates, 40.0)))
    assert [f.alert_labels["alertname"] for f, _ in hits] == ["GpuDoubleBitEcc"]
    calm = Frame(q, [GPU], np.array([50.0, 60.0]), np.array([[1.0, 0.0]]), kind="counter")
    assert fired(det.detect(build_view([calm], index, rates, 60.0))) == []


def test_a_single_bit_ecc_storm_fires_but_a_trickle_a_reset_and_the_first_read_do_not():
    feed = Feed()  # 30 s ticks; the storm is over one corrected error a second
    assert fired(feed.tick((SBE, [GPU], [5000], "counter"))) == []  # history
    assert fired(feed.tick((SBE, [GPU], [5020], "counter"))) == []  # 0.7/s
    hits = fired(feed.tick((SBE, [GPU], [5620], "counter")))  # 20/s
    assert [(f.alert_labels["alertname"], f.action_at(i)) for f, i in hits] == [
        ("GpuSingleBitEccStorm", RecommendedAction.INVESTIGATE)
    ]
    assert "20 corrected errors/s" in hits[0][0].summary_at(hits[0][1])
    assert fired(feed.tick((SBE, [GPU], [3], "counter"))) == []  # a GPU reset zeroed it


def test_a_single_bit_ecc_rate_is_over_the_time_since_the_gpus_last_read_not_one_tick():
    feed = Feed()
    feed.tick((SBE, [GPU], [0], "counter"))
    for _ in range(9):
        feed.tick()  # the counter unread for 4.5 minutes (a scrape gap)
    assert fired(feed.tick((SBE, [GPU], [300], "counter"))) == []  # 300 in 5 minutes: 1/s, not 10/s
