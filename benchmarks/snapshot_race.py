"""Consistency, not speed: a state save copied while the ticks run (``AnomalyScheduler.capture``) holds the
state of one instant between ticks. One JSON line.

Per seed, ``anomaly_restart_fuzz.py``'s fleet (faults, node outages past ``forget_after_seconds``, and with
``--hard-faults`` XID 79s and double-bit ECC errors) is ticked in one thread, the models refitted every
``--fit-every`` ticks (``fit_job``), while another captures the state again and again, the interpreter
switching threads every 10 us so that ticks land in the middle of copies. After each tick and each refit,
inside it (under the scheduler's lock), the state is copied as a reference, deep-copied: each capture must
equal, component by component and at the end of the run, a reference of the tick it read up to. A capture
that holds an array or a list of the live state (a ``state()`` without ``.copy()``) reads what the later
ticks wrote into it, as a file written after them would: compared with the reference's own ``snapshot()``
copy, which held the same live array, it was equal whatever the ticks wrote. Fields: ``captures``,
``inconsistent`` (captures that equal no reference: must be 0), ``copies`` (how many captures took 1, 2, ...
copies: more than 1, a tick began during a copy, which was dropped), ``failures`` (ticks that failed).

    PYTHONPATH=. .venv/bin/python benchmarks/snapshot_race.py --seeds 0-4 --steps 60 [--hard-faults]
        [--fit-every 10]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import threading
from collections import Counter

from seed_list import SEEDS_HELP, seed_list


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0-4", help=SEEDS_HELP)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--hard-faults", action="store_true", help="XID 79s and DBEs, as the fuzz's")
    parser.add_argument("--fit-every", type=int, default=10, help="ticks between refits (0: none)")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read
from anomaly_restart_fuzz import EVERY, FleetSource, config, draw  # noqa: E402

from anomaly.scheduler import AnomalyScheduler  # noqa: E402
from anomaly.service import AnomalyService  # noqa: E402
from anomaly.snapshot import Snapshot  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402


def _same(got: Snapshot, want: Snapshot) -> bool:
    """Whether ``got`` holds every component of ``want``, equal."""
    for name, state in want.components.items():
        other = got.components[name]
        if json.dumps(other.meta, default=str) != json.dumps(state.meta, default=str):
            return False
        if other.arrays.keys() != state.arrays.keys():
            return False
        if not all(np.array_equal(other.arrays[k], a, equal_nan=True) for k, a in state.arrays.items()):
            return False
    return (got.read_until, got.last_read, got.query_read) == (
        want.read_until,
        want.last_read,
        want.query_read,
    )


def race(seed: int, steps: int, hard: bool, fit_every: int) -> tuple[int, int, Counter[int], int]:
    """One seed's captures, those inconsistent, the copies each took, and the ticks that failed."""
    fleet, _ = draw(seed, steps, hard)
    clock = FakeClock(fleet.t0)
    service = AnomalyService(config(), [FleetSource(fleet)], clock)
    service.warm_up()
    references: dict[float, list[Snapshot]] = {}  # a refit leaves the time read as it was

    def reference() -> None:
        snapshot = copy.deepcopy(service.snapshot())
        references.setdefault(snapshot.read_until, []).append(snapshot)

    scheduler = AnomalyScheduler(service, after_infer=reference)
    reference()
    ticked = threading.Event()
    captured: list[Snapshot] = []
    copies: Counter[int] = Counter()

    def tick() -> None:
        for step in range(1, steps + 1):
            clock.advance(EVERY)
            scheduler.infer_job()
            if fit_every and step % fit_every == 0:
                scheduler.fit_job()
                with scheduler._lock:  # the refit's state, as the ticks' (``after_infer``)
                    reference()
        ticked.set()

    def save() -> None:
        while not ticked.is_set():
            captured.append(scheduler.capture())
            copies[scheduler.copies] += 1

    threads = [threading.Thread(target=tick), threading.Thread(target=save)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bad = sum(not any(_same(s, r) for r in references[s.read_until]) for s in captured)
    return len(captured), bad, copies, scheduler.failures


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    sys.setswitchinterval(1e-5)
    captures = inconsistent = failures = 0
    copies: Counter[int] = Counter()
    for seed in seed_list(args.seeds):
        n, bad, took, failed = race(seed, args.steps, args.hard_faults, args.fit_every)
        captures, inconsistent, failures = captures + n, inconsistent + bad, failures + failed
        copies.update(took)
    print(
        json.dumps(
            {
                "benchmark": "anomaly_snapshot_race",
                "seeds": args.seeds,
                "steps": args.steps,
                "hard_faults": args.hard_faults,
                "fit_every": args.fit_every,
                "captures": captures,
                "inconsistent": inconsistent,
                "copies": {str(k): v for k, v in sorted(copies.items())},
                "failures": failures,
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)
