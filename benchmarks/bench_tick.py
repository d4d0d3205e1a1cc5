"""The engine's tick with many open incidents, in process: one JSON line.

``serve`` ticks the engine every 5 s: it resolves alerts whose endsAt passed and incidents quiet for the
quiet period, and settles flapping alerts. ``NodeDown`` on N distinct nodes of one cluster (no inventory)
opens N incidents on a fresh SQLite store; then ``--quiet`` of those alerts resolve, so that many incidents
wait out their quiet period (which does not end during the run). Figures in milliseconds, median and best
and worst of ``--ticks`` ticks: a tick with N open incidents, all of them firing but the quiet ones.
``--flapping`` makes every one of those alerts flap first (resolved and fired again until it is flapping,
``flap_start_transitions`` changes, firing at the end): a stream where every alert flaps, none settling
during the run (the flap window is 10 minutes). ``--muted`` sets a silence on every alert (12 h) and ticks
from 4 h after the openings: every incident is past its reminder time (``alerting.remind_after_seconds``)
but muted, so none is reminded of (the first tick, which finds them past it, is not counted).
``--silence-changes`` (with ``--muted``) sets a silence of another alert before each tick (not timed): the
tick after a silence change, which woke every parked incident before fix/remind4 and wakes none now.
``--restart`` measures a restart instead: the N incidents opened with an outbox listening (the 10 s announce
delay, then a tick announcing them all), a new engine and outbox on the store, and its first tick: how long
the rebuild and that tick took, and how many openings the outbox was offered again (it drops them by key).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    """The command line's parser; ``main`` reads it again (tests pass ``argv``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--quiet", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=9)
    parser.add_argument("--flapping", action="store_true", help="every alert flaps first")
    parser.add_argument(
        "--muted", action="store_true", help="a silence mutes every alert, past reminder time"
    )
    parser.add_argument(
        "--silence-changes", action="store_true", help="a silence of another alert set before each tick"
    )
    parser.add_argument(
        "--restart", action="store_true", help="time a restart's rebuild and first tick instead"
    )
    return parser


if __name__ == "__main__":  # before the heavy imports below: --help and an unknown option answer at once
    _parser().parse_args()

from sqlalchemy import func, select  # noqa: E402 - imported after the command line is read

from alerting.db import make_engine  # noqa: E402
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.matchers import parse_matcher  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from alerting.notifiers.base import Notification, ThreadSaver, ThreadState  # noqa: E402
from alerting.outbox import Outbox  # noqa: E402
from alerting.reminders import REMINDER  # noqa: E402
from alerting.store_models import TimelineRow  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert, AlertStatus  # noqa: E402

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
BATCH = 500


def _engine(count: int, quiet: int, flapping: bool = False) -> IncidentEngine:
    """An engine on a fresh store with ``count`` open incidents, ``quiet`` of them with their alert ended;
    with ``flapping``, every alert flapping first."""
    path = str(Path(tempfile.mkdtemp(prefix="bench-tick-")) / "gw.db")
    upgrade(make_engine(path))
    clock = FakeClock(START.timestamp())
    engine = IncidentEngine(make_engine(path), clock, AlertingConfig(announce_delay_seconds=0))
    labels = [{"alertname": "NodeDown", "cluster": "bench", "node": f"n{i:05d}"} for i in range(count)]
    for at in range(0, count, BATCH):
        engine.ingest([Alert(one, starts_at=START) for one in labels[at : at + BATCH]])
    for change in range(engine.config.flap_start_transitions if flapping else 0):
        clock.advance(5)
        status = AlertStatus.RESOLVED if change % 2 == 0 else AlertStatus.FIRING
        for at in range(0, count, BATCH):
            engine.ingest([Alert(one, status=status, starts_at=START) for one in labels[at : at + BATCH]])
    if flapping and engine.config.flap_start_transitions % 2:
        for at in range(0, count, BATCH):  # firing at the end, as without flapping
            engine.ingest([Alert(one, starts_at=START) for one in labels[at : at + BATCH]])
    clock.advance(30)
    engine.ingest([Alert(one, status=AlertStatus.RESOLVED) for one in labels[:quiet]])
    engine.tick()  # the quiet period of those starts
    return engine


class _Unsent:
    """A notifier the outbox keeps rows for and never delivers to here."""

    name = "unsent"

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> None:
        raise AssertionError("not dispatched in this benchmark")


def _restart(count: int) -> dict[str, object]:
    """``count`` incidents opened and announced to an outbox, then a restart and its first tick, timed."""
    path = str(Path(tempfile.mkdtemp(prefix="bench-restart-")) / "gw.db")
    upgrade(make_engine(path))
    clock = FakeClock(START.timestamp())
    engine = IncidentEngine(make_engine(path), clock, AlertingConfig())
    engine.subscribe(Outbox(make_engine(path), [_Unsent()], clock))
    labels = [{"alertname": "NodeDown", "cluster": "bench", "node": f"n{i:05d}"} for i in range(count)]
    for at in range(0, count, BATCH):
        engine.ingest([Alert(one, starts_at=START) for one in labels[at : at + BATCH]])
    clock.advance(engine.config.announce_delay_seconds)
    engine.tick()  # announces them all
    clock.advance(60)
    gc.collect()
    began = time.perf_counter()
    restarted = IncidentEngine(make_engine(path), clock, AlertingConfig())
    outbox = Outbox(make_engine(path), [_Unsent()], clock)
    restarted.subscribe(outbox)
    rebuilt = time.perf_counter()
    restarted.tick()
    ticked = time.perf_counter()
    return {
        "bench": "restart",
        "open_incidents": len(restarted._open),
        "offered_again": outbox.stats.duplicates,
        "rebuild_ms": round((rebuilt - began) * 1000, 1),
        "first_tick_ms": round((ticked - rebuilt) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.restart:
        print(json.dumps(_restart(args.incidents)))
        return
    engine = _engine(args.incidents, args.quiet, args.flapping)
    if args.muted:
        now = engine.clock.now()
        engine.add_silence([parse_matcher('alertname="NodeDown"')], now, now + timedelta(hours=12), "bench")
        engine.clock.advance(engine.config.remind_after_seconds + 60)  # type: ignore[attr-defined]
        engine.tick()  # finds every incident past its reminder time, muted
    opened = len(engine._open)
    flapping = sum(any(m.flapping for m in inc.members.values()) for inc in engine._open.values())
    gc.collect()
    took = []
    for k in range(args.ticks):
        engine.clock.advance(5)  # type: ignore[attr-defined]
        if args.silence_changes:
            now = engine.clock.now()
            other = [parse_matcher(f'alertname="Other{k}"')]
            engine.add_silence(other, now, now + timedelta(hours=1), "bench")
        began = time.perf_counter()
        engine.tick()
        took.append((time.perf_counter() - began) * 1000)
    with engine._sessions() as session:
        reminders = session.scalar(select(func.count()).where(TimelineRow.kind == REMINDER))
    print(
        json.dumps(
            {
                "bench": "tick",
                "open_incidents": opened,
                "quiet_incidents": args.quiet,
                "flapping_incidents": flapping,
                "muted": args.muted,
                "silence_changes": args.silence_changes,
                "reminders": reminders,
                "ticks": args.ticks,
                "tick_ms": {
                    "median": round(statistics.median(took), 1),
                    "best": round(min(took), 1),
                    "worst": round(max(took), 1),
                },
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
