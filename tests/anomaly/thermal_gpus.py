"""Six simulated GPUs under a first-order thermal model, their warm-up from a job, a tick fed to the detector
and its scores over a stalled job: what the thermal detector's tests (``test_thermal*.py``) feed it."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from anomaly.needs import POWER, TEMP
from anomaly.series import CounterRates, SeriesIndex, View, build_view
from anomaly.sources import Frame
from anomaly.thermal import ThermalDetector

GPUS = [{"UUID": f"GPU-{i}", "gpu": str(i), "Hostname": "n1"} for i in range(6)]
TAU = 20.0  # the simulated thermal lag
MODEL = [{**gpu, "modelName": "NVIDIA H100 80GB HBM3"} for gpu in GPUS]


def throttled(power: np.ndarray, temp: np.ndarray) -> np.ndarray:
    """The simulator's clocks slow to 0.8 at 87 C and 0.5 at 92 C, and power above idle follows clock**1.5."""
    clock = np.where(temp >= 92.0, 0.5, np.where(temp >= 87.0, 0.8, 1.0))
    return 70.0 + (power - 70.0) * clock**1.5


class Gpus:
    """First-order thermal model: temperature follows 28 C + R * power, lagged; R grows if a cooler fails."""

    def __init__(self, tau: float = TAU, labels: list[dict[str, str]] = GPUS) -> None:
        self.tau, self.labels = tau, labels
        self.temp = np.full(len(GPUS), 32.0)
        self.resistance = np.full(len(GPUS), 0.065)
        self.room = np.full(len(GPUS), 28.0)  # the air it takes in
        self.index, self.rates = SeriesIndex(), CounterRates()
        self.t = 1_767_225_600.0

    def step(
        self,
        power: np.ndarray,
        rng: np.random.Generator,
        reported: np.ndarray | None = None,
        shown: np.ndarray | None = None,
    ):
        """Thirty seconds at ``power``; the power read is ``reported`` where given (a glitch; 0 W exactly, a
        lost reading); only the ``shown`` GPUs are read where given (the others' node down)."""
        # One second at a time, like the simulator: each GPU's 30 steps in Python floats, the same IEEE
        # operations as numpy's on six-element arrays (bit for bit) at a sixth of the CPU.
        temps, targets = self.temp.tolist(), (self.room + self.resistance * power).tolist()
        taus = np.broadcast_to(self.tau, self.temp.shape).tolist()  # one lag, or each GPU's
        for i, (target, tau) in enumerate(zip(targets, taus, strict=True)):
            temp = temps[i]
            for _ in range(30):
                temp += (target - temp) / tau
            temps[i] = temp
        self.temp[:] = temps
        self.t += 30.0
        read = power if reported is None else reported
        read = np.where(read > 0.0, read + rng.normal(0, 4, len(GPUS)), read)
        rows = np.arange(len(GPUS)) if shown is None else np.flatnonzero(shown)
        labels = [self.labels[i] for i in rows.tolist()]
        frames = [
            Frame(TEMP, labels, np.array([self.t]), np.round(self.temp)[rows, None]),
            Frame(POWER, labels, np.array([self.t]), read[rows, None]),
        ]
        return build_view(frames, self.index, self.rates, self.t)


_WARMED: dict[tuple[float, int], tuple[list[dict[str, str]], Gpus, ThermalDetector, np.random.Generator]] = {}


def warmed_from_job(
    tau: float, labels: list[dict[str, str]] = GPUS
) -> tuple[Gpus, ThermalDetector, np.random.Generator]:
    """Six GPUs (``labels``) lagging ``tau`` seconds, warm from their job as the simulator's after an hour and
    read at its 620 W for 150 ticks by a new detector, their noise seeded 17: where many tests start. Run once
    per lag and labels (a module's list, kept beside it); each call gets a copy: no test sees another's."""
    key = (tau, id(labels))
    if key not in _WARMED:
        rng = np.random.default_rng(17)
        gpus, det = Gpus(tau=tau, labels=labels), ThermalDetector()
        gpus.temp[:] = gpus.room + gpus.resistance * 620.0
        for _ in range(150):
            det.detect(gpus.step(np.full(len(GPUS), 620.0), rng))
        _WARMED[key] = labels, gpus, det, rng
    return copy.deepcopy(_WARMED[key][1:])


def _fed(
    gpus: Gpus, det: ThermalDetector, rng: np.random.Generator, watts: float, shown: np.ndarray
) -> float:
    """One tick of every GPU at ``watts`` (throttled by its heat), only the ``shown`` ones read: GPU 2's score
    (0 while it is not read)."""
    view = gpus.step(throttled(np.full(len(GPUS), watts), gpus.temp), rng, shown=shown)
    [found] = det.detect(view)
    rows = [i for i, lab in enumerate(found.labels) if lab["gpu"] == "2"]
    return float(found.score[rows[0]]) if rows else 0.0


BUSY = 10  # ticks in the job (620 W) after the warm-up before it stalls at 70 W
STALL = 80  # ticks the stall lasts (40 minutes)


def _scores(
    tau: float,
    read: Callable[[int], bool],
    *,
    fails: int | None = None,
    off: Callable[[int], bool] = lambda tick: False,
    ticks: int = BUSY + STALL + 40,
    stall_watts: float = 70.0,
) -> np.ndarray:
    """Scores (reads x GPUs, each row's first column the tick it was read at) of six lone GPUs seen only in
    their job (620 W) for 75 minutes, their thermal lag ``tau``: ``BUSY`` ticks (30 s) on, the job stalls at
    ``stall_watts`` (their idle) for ``STALL`` ticks, then resumes; only the ticks ``read`` are scored, and
    the GPUs are powered off (cooling towards the room's 28 C, unread) at the ticks ``off``. GPU 2's cooler
    fails (x4 over 5 minutes) ``fails`` ticks into the stall."""
    off_at = tuple(off(tick) for tick in range(ticks))
    views = _simulated(tau, fails, off_at, stall_watts)
    _, det, _ = warmed_from_job(tau)
    rows = [
        [tick, *det.detect(view)[0].score.tolist()]
        for tick, view in enumerate(views)
        if read(tick) and not off_at[tick]
    ]
    return np.array(rows)


_SIMULATED: dict[tuple[float, int | None, tuple[bool, ...], float], list[View]] = {}


def _simulated(tau: float, fails: int | None, off_at: tuple[bool, ...], stall_watts: float) -> list[View]:
    """Each tick's view of ``_scores``' GPUs (``off_at``: whether they are off at each tick): the simulation
    does not depend on which ticks are scored, so it is run once per lag, fault, outage and idle power, and
    the tests that only score other ticks of it (a flapping exporter's reads) read the same views. The
    detector only reads a view."""
    key = (tau, fails, off_at, stall_watts)
    if key not in _SIMULATED:
        gpus, _, rng = warmed_from_job(tau)
        views = []
        for tick, off in enumerate(off_at):
            if fails is not None and tick >= BUSY + fails:
                gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick - BUSY - fails + 1)))
            watts = 0.0 if off else stall_watts if BUSY <= tick < BUSY + STALL else 620.0
            views.append(gpus.step(throttled(np.full(len(GPUS), watts), gpus.temp), rng))
        _SIMULATED[key] = views
    return _SIMULATED[key]
