"""Cost of the anomaly service's state snapshot (``anomaly.snapshot``) on a 10,000-GPU fleet: one JSON line.

``bench_warmup.py``'s hour of history of ``bench_anomaly.py``'s fleet (10,000 GPUs x 25 series, 250,000
series) is replayed by a service (every query adaptive, the fleet detector on five of them, the multivariate
model fitted), then its state is saved and taken up by a fresh service, as ``anomaly run`` does at a
restart. Fields: ``series``; ``capture_seconds``, how long the save held the ticks back (the scheduler's lock,
``AnomalyScheduler.capture``: the state is copied while the ticks run, the lock taken only to see whether a
tick began meanwhile); ``copy_seconds``, the whole copy (``AnomalyService.snapshot``); ``write_seconds``
(npz, fsync, rename) and ``file_bytes``; ``read_seconds`` (the file read and checked, ``load_snapshot``);
``restore_seconds`` (every component taken up, the multivariate forest fitted again on its rows);
``warm_up_seconds``, a fresh service's whole ``warm_up`` from the snapshot (read, restore, no history after
it to replay); and, for scale, ``warm_up_seconds_history``: the first service's warm-up from the hour of
history alone. Wall seconds, one run each.

    .venv/bin/python benchmarks/bench_snapshot.py [--dir DIR]
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TypeVar  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write the snapshot (default: a temp dir)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from bench_anomaly import GPUS, FleetCollector  # noqa: E402
from bench_warmup import STEP, HistorySource  # noqa: E402

from anomaly.scheduler import AnomalyScheduler  # noqa: E402
from anomaly.service import AnomalyService  # noqa: E402
from anomaly.snapshot import State, load_snapshot, write_snapshot  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config_anomaly import AnomalyConfig  # noqa: E402

T = TypeVar("T")


def _timed(work: Callable[[], T]) -> tuple[T, float]:
    """``work()`` and the wall seconds it took."""
    start = time.perf_counter()
    got = work()
    return got, time.perf_counter() - start


def measure(directory: Path) -> dict[str, object]:
    """Warm a service up on the fleet's hour, save its state, and take it up in a fresh service."""
    clock = FakeClock()
    cfg = AnomalyConfig(
        adaptive_metrics=["*"], fleet_queries=FleetCollector().names[:5], infer_every_seconds=STEP
    )
    # Two steps past the hour, for the two ticks after it (``_tick_beside_copy``).
    source = HistorySource(clock.time() - cfg.latency_offset_seconds + 2 * STEP, steps=122)
    service = AnomalyService(cfg, [source], clock)
    _, warm_history = _timed(service.warm_up)
    path = directory / "anomaly.state.npz"
    scheduler = AnomalyScheduler(service)
    snapshot, copy = _timed(scheduler.capture)
    held = scheduler.held_seconds
    size, write = _timed(partial(write_snapshot, path, snapshot))
    del snapshot
    read_back, read = _timed(partial(load_snapshot, path, cfg))
    fresh = AnomalyService(cfg, [source], clock)
    assert read_back is not None, "the snapshot just written was refused"
    _, restore = _timed(partial(fresh.restore, read_back))
    del read_back, fresh
    again = AnomalyService(cfg, [source], clock)
    _, warm = _timed(lambda: again.warm_up(snapshot=load_snapshot(path, cfg)))
    assert len(again.index) == len(service.index), "the snapshot was not taken up"
    ticks = _tick_beside_copy(service, scheduler, clock)
    return {
        "benchmark": "anomaly_snapshot",
        "gpus": GPUS,
        "series": len(service.index),
        "capture_seconds": round(held, 4),
        "copy_seconds": round(copy, 3),
        **ticks,
        "write_seconds": round(write, 2),
        "file_bytes": size,
        "read_seconds": round(read, 2),
        "restore_seconds": round(restore, 2),
        "warm_up_seconds": round(warm, 2),
        "warm_up_seconds_history": round(warm_history, 2),
    }


def _tick_beside_copy(
    service: AnomalyService, scheduler: AnomalyScheduler, clock: FakeClock
) -> dict[str, float]:
    """A tick alone, then one begun while a save copies the state (from the series index's copy on): how
    long each took (the copy's threads share the interpreter), how many copies that save made (the one the
    tick began during is dropped) and how long it held the ticks back."""
    clock.advance(STEP)
    _, alone = _timed(scheduler.infer_job)
    copying, index_state = threading.Event(), service.index.state

    def state() -> State:
        copying.set()
        return index_state()

    service.index.state = state  # type: ignore[method-assign]
    clock.advance(STEP)
    copier = threading.Thread(target=scheduler.capture)
    copier.start()
    copying.wait()
    _, beside = _timed(scheduler.infer_job)
    copier.join()
    return {
        "tick_seconds": round(alone, 3),
        "tick_beside_copy_seconds": round(beside, 3),
        "copies_then": scheduler.copies,
        "capture_seconds_then": round(scheduler.held_seconds, 4),
    }


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)  # the fleet detector's missing-label warnings: one JSON line
    if args.dir is not None:
        print(json.dumps(measure(args.dir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp))))


if __name__ == "__main__":
    main(OPTIONS)
