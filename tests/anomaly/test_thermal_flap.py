"""A node's exporter that flaps (reads in bursts, gaps longer than the slowest lag between them) is no outage:
its GPUs stay powered, so a gap that recurs within ``thermal_settle_seconds`` of reads must not restart the
wait for their temperature to settle (``ThermalDetector._seen``), while a lone gap (a reboot, an outage) and
one of ``thermal_settle_seconds`` or more still do."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from tests.anomaly.thermal_gpus import BUSY, STALL, _scores

PATTERNS = [(3, 5), (2, 6), (4, 8), (6, 6)]  # (burst, gap): ticks read, then ticks not read, over and over
GRID = [(b, g, phase, fails) for b, g in PATTERNS for phase in range(0, 10, 2) for fails in (3, 7)]


def _read(burst: int, gap: int, phase: int) -> Callable[[int], bool]:
    """Whether a tick is read: each before ``phase``, then ``burst`` ticks read in every ``burst + gap``."""
    return lambda tick: tick < phase or (tick - phase) % (burst + gap) < burst


@pytest.mark.parametrize(
    ("burst", "gap", "phase", "fails"),
    GRID,
    ids=[f"{b}-in-{b + g}-from-{ph}-fails-{f * 30}s-in" for b, g, ph, f in GRID],
)
def test_a_cooler_failing_as_a_job_stalls_while_its_nodes_exporter_flaps_is_flagged(
    burst: int, gap: int, phase: int, fails: int
):
    """GPUs lagging 90 s, their node's exporter read in bursts from ``phase`` on: a gap as the job stalled
    showed the GPU cooler (its power had fallen) and was taken for an outage each time, so the failing GPU's
    climb was measured from each reading and its heat then learnt at idle: 10 of these 40 runs read 0 through
    the whole 40-minute stall (alerted, at last, as the job resumed), and 12 failed here. Now each is alerted
    within 12 minutes (3 reads in a row over 1: read 2 ticks in 8, those span two bursts) and held. Undoing
    the restart alone left 3 reading 0, their cooler failing in the reads between the first two gaps: the
    lowest the GPU cooled to is kept through them (``_rewarming``)."""
    rows = _scores(90.0, _read(burst, gap, phase), fails=fails)
    stall = rows[(rows[:, 0] >= BUSY + fails) & (rows[:, 0] < BUSY + STALL)]
    hot = stall[:, 1 + 2] > 1.0
    alert = next((i for i in range(2, hot.size) if hot[i - 2 : i + 1].all()), None)
    assert alert is not None and stall[alert, 0] - BUSY - fails <= 24
    assert hot[alert:].all()
    assert np.delete(rows[:, 1:], 2, axis=1).max() <= 1.0


@pytest.mark.parametrize(("burst", "gap"), PATTERNS, ids=[f"{b}-in-{b + g}" for b, g in PATTERNS])
@pytest.mark.parametrize("tau", [20.0, 90.0, 120.0], ids=["lag-20s", "lag-90s", "lag-120s"])
def test_healthy_gpus_whose_nodes_exporter_flaps_through_a_stall_raise_nothing(
    tau: float, burst: int, gap: int
):
    """The other side: healthy GPUs cooling as their job stalls and warming as it resumes, read in bursts,
    are read hot at no burst (their climb is measured from the lowest they read, across the gaps)."""
    for phase in (0, 3, 6):
        assert _scores(tau, _read(burst, gap, phase))[:, 1:].max() <= 1.0


@pytest.mark.parametrize("minutes", [2, 4, 6, 9], ids=lambda m: f"off-{m}min")
@pytest.mark.parametrize("tau", [90.0, 120.0], ids=["lag-90s", "lag-120s"])
def test_healthy_gpus_powered_off_a_few_minutes_in_a_stall_read_as_back_from_an_outage(
    tau: float, minutes: int
):
    """A node rebooted in a stall: one gap, far more common than a flapping exporter. Its GPUs, off 2-9
    minutes five minutes into the stall, are back colder than they had cooled to and warm to their idle from
    there: a lone gap restarts the settle wait, and they read at most 0.01 through the rest of the stall.
    With every gap shorter than ``thermal_settle_seconds`` only stopping that wait (fix/flap), they read
    0.67-1.33 (their warming from the room measured as a climb from before the reboot), alerted."""
    down = range(BUSY + 10, BUSY + 10 + 2 * minutes)
    rows = _scores(tau, lambda tick: True, off=lambda tick: tick in down, ticks=BUSY + STALL)
    assert rows[:, 1:].max() <= 0.2


@pytest.mark.parametrize("lost", [5, 8], ids=lambda n: f"lost-{n * 30}s")
@pytest.mark.parametrize("minutes", [4, 6, 9], ids=lambda m: f"off-{m}min")
@pytest.mark.parametrize("tau", [90.0, 120.0], ids=["lag-90s", "lag-120s"])
def test_healthy_gpus_rebooted_in_a_stall_then_losing_scrapes_read_as_back_from_an_outage(
    tau: float, minutes: int, lost: int
):
    """The reboot above, then its exporter's scrapes lost 2.5-4 minutes (GPUs powered) two minutes after
    the node is back: that second gap, begun within ``thermal_settle_seconds`` of reads after the reboot,
    is read as flapping. It undid the reboot's restart too, and the GPUs' warming from the room (29 C back,
    their idle 33 C) was measured from the lowest cold read: 1.0-1.33, every GPU of the node alerted
    (off 6-9 minutes) for the rest of the stall. Back over half a band colder than they had cooled to, their
    power settled, no powered GPU cools so: that restart is not undone, and they read 0."""
    down = range(BUSY + 10, BUSY + 10 + 2 * minutes)
    unread = range(down.stop + 4, down.stop + 4 + lost)
    rows = _scores(tau, lambda tick: tick not in unread, off=lambda tick: tick in down, ticks=BUSY + STALL)
    assert rows[:, 1:].max() <= 0.2


@pytest.mark.parametrize("after", [2, 4], ids=lambda n: f"lost-{n * 30}s-after")
@pytest.mark.parametrize("idle", [85.0, 100.0], ids=lambda w: f"idle-{w:.0f}W")
def test_healthy_gpus_rebooted_as_their_job_stalls_then_losing_scrapes_read_as_back_from_an_outage(
    idle: float, after: int
):
    """The reboot above a minute into the stall, the GPUs (lagging 120 s: the slowest a
    ``thermal_settle_seconds`` of 600 allows for) off 6 minutes and idling at 85-100 W, their exporter's
    scrapes then lost 3 minutes. Back while their power still fell at the slowest lag, they were not read as
    off: the lost scrapes undid the reboot's restart, and their warming from the room (back at 29-30 C, idling
    at 33.5-34.5 C) read 1.33 for 23-29 minutes, every GPU of the node alerted. Over half a band colder than
    the most a powered GPU could have cooled (its resistance from its cooling since the job stalled, times its
    power's fall since), they were off, and read at most 1.0."""
    down = range(BUSY + 2, BUSY + 2 + 12)
    unread = range(down.stop + after, down.stop + after + 6)
    rows = _scores(
        120.0,
        lambda tick: tick not in unread,
        off=lambda tick: tick in down,
        ticks=BUSY + STALL,
        stall_watts=idle,
    )
    assert rows[:, 1:].max() <= 1.0


@pytest.mark.parametrize("tau", [90.0, 120.0], ids=["lag-90s", "lag-120s"])
def test_healthy_gpus_back_cold_from_a_long_outage_after_their_exporter_flapped_raise_nothing(tau: float):
    """A gap of ``thermal_settle_seconds`` or more is an outage, whatever came before: the node's exporter
    flaps (3 reads in every 8) through the stall's first 12 minutes, then the node is off 11.5 minutes
    (cooling towards the room) and back, still stalled, read every tick. Taken for one more flapping gap, the
    outage only stopped the settle wait and the GPUs' warming from the room read as a climb (1.33 lagging
    90 s)."""
    flaps, down = _read(3, 5, BUSY), range(BUSY + 24, BUSY + 24 + 23)
    rows = _scores(
        tau,
        lambda tick: tick >= down.stop or flaps(tick),
        off=lambda tick: tick in down,
        ticks=BUSY + STALL,
    )
    assert rows[:, 1:].max() <= 1.0


@pytest.mark.parametrize("minutes", [4, 6, 9], ids=lambda m: f"off-{m}min")
@pytest.mark.parametrize("tau", [90.0, 120.0], ids=["lag-90s", "lag-120s"])
def test_healthy_gpus_rebooted_while_their_nodes_exporter_flaps_read_as_back_from_an_outage(
    tau: float, minutes: int
):
    """The exporter flaps (3 reads in every 8) through the stall's first 12 minutes, then the node is off
    4-9 minutes (under ``thermal_settle_seconds``) and back, read every tick. Begun within that of reads
    after a flapping gap, the reboot was read as one more: the settle wait only stopped over it, and the
    GPUs' warming from the room read as a climb (1.0-1.33, fix/flap2's stated cost). Back over half a band
    colder than they had cooled to, their power settled, they were off: an outage, and they read at most
    0.1."""
    flaps, down = _read(3, 5, BUSY), range(BUSY + 24, BUSY + 24 + 2 * minutes)
    rows = _scores(
        tau,
        lambda tick: tick >= down.stop or flaps(tick),
        off=lambda tick: tick in down,
        ticks=BUSY + STALL,
    )
    assert rows[:, 1:].max() <= 0.1
