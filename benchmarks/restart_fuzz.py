"""Restart equivalence fuzz of the incident engine: one JSON line.

A restart of ``serve`` must change nothing users see. For each seed this draws a random stream of alerts
(XIDs 13/31/43/48/79/119, node and rack down, NVLink, thermal, double-bit ECC, exporter stale, a service's
error rate, stalled ranks of the training job; re-fires, flapping, slow cycles under the flap threshold and
the quiet period (whose repeats are told folded) or resolved longer than the quiet period (whose reopenings
after the first are held as cycling, and remind once the last page is ``remind_after_seconds`` old: 0, 100
or 300 s, drawn per seed), expiry by ``endsAt``) and of what people and time do
(acknowledge, note, silence an incident, extend its silence by an hour, resolve, mitigate, matcher
silences, inventory refreshes, time passing past the quiet, announce and reopen windows, and time brought to
a second either side of a silence's end or of the start of its last half hour, ticked there or not, with a
restart before the next step in half of those), and runs it on
``alerting.scenarios.fleet_inventory()`` twice, each on its own SQLite store: straight through, and with 1-3
restarts (a new engine and outbox on the same file, as ``serve`` starts them) before random steps. In about
one step in ten (drawn apart from the stream) the outbox is unreachable in both runs: that step's changes
stay stored untold, with what their transactions decided they are told with (``alerting.handoff.Telling``),
and are told at a later step, after a restart maybe, in a round with other changes. After every step it
compares everything users see: every incident column, timelines, alert rows, silences, changes not told
yet (all their stored columns, ``merging``, ``also`` and ``folded`` included), outbox messages (what each
says, pages and is told with, for a notifier that holds ``reassessed`` updates as a webhook does also when
each held one goes), and what the engine answers (open incidents, muted alerts, silenced
incidents). The first divergence of each seed is reported with its step and a diff.

Some fires are posted without ``endsAt`` (they end by the resolve timeout), some of those applied in a
journal batch with a later record, and some later re-fires of them carry an ``endsAt`` of their own, earlier
or later, with a restart before half of those (``_timeout_posts``, drawn apart from the stream too).

Some fires that follow a step which sets, extends or expires a silence, or brings time to a silence's end,
are accepted by the journal before that step acts (a second or three before a silence is set, extended or
expired; within the last tick before the end) and applied at their own step, alone or in a batch with a later
record, a restart in between in half of them (``_accepted_before``, drawn apart from the stream too): an
incident silence starts or ends between a record's accept and its apply. Half of those records carry, in
place of the fire's own alerts, an XID 79 on another GPU of the node of the incident the step names: a fault
beside the one its silence was set for. And some fires of several alerts find some of them stored already,
resolved (posted resolved just before, ``_stored_first``): they join their incident in another order than
the store holds them in, which is the order a restart reads members in.

Incident and silence ids are drawn from a random generator per run seeded alike, so both runs name them
alike while they do the same. The streams are drawn by ``restart_stream.py``, a run and its steps' actions
are ``restart_run.py``'s; this script compares what users see and runs the seeds.
``--show SEED`` prints that seed's steps and full diff to stderr.
``--reversed-members`` is a stress, not a restart as ``serve`` does one: each restart reverses the order
of every open incident's members after the engine read them (in stored order, not the order they joined
in), so any divergence is something that depends on member order.

    PYTHONPATH=. .venv/bin/python benchmarks/restart_fuzz.py --seeds 0-299 --steps 60
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from seed_list import SEEDS_HELP, seed_list


def _parser() -> argparse.ArgumentParser:
    """The command line's parser; ``main`` reads it again (tests pass ``argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_list, default="0-9", help=f"{SEEDS_HELP} (default %(default)s)")
    parser.add_argument("--steps", type=int, default=60, help="steps per stream (default 60)")
    parser.add_argument("--show", type=int, help="print this seed's steps and full diff to stderr")
    parser.add_argument(
        "--reversed-members",
        action="store_true",
        help="a stress: each restart reverses every open incident's members (what depends on their order)",
    )
    return parser


if __name__ == "__main__":  # before the heavy imports below: --help and an unknown option answer at once
    _parser().parse_args()

from restart_run import Run, drawn_ids  # noqa: E402 - imported after the command line is read
from restart_stream import Step, stream  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from alerting.outbox_tables import OutboxMessage  # noqa: E402
from alerting.store_models import AlertRow, IncidentRow, SilenceRow, TimelineRow, UntoldChangeRow  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402

# --- what users see -----------------------------------------------------------------------------------


def _columns(row: object, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    table = row.__table__  # type: ignore[attr-defined]
    return {c.name: _plain(getattr(row, c.key)) for c in table.columns if c.name not in skip}


def _plain(value: object) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


_UNSEEN = ("reassessment",)
"""Incident columns users never see, compared through what they decide: what refreshes left pending (the
first refresh after a start assesses anew what live assessed before, so it may note a stopped job sooner,
which changes nothing until that job leaves the inventory, and then the priority shows it)."""


def seen(run: Run) -> dict[str, Any]:
    """Everything users see of a run, as plain values (timeline rows by their place, not their seq)."""
    assert run.sql is not None
    with Session(run.sql) as session:
        events = session.scalars(select(TimelineRow).order_by(TimelineRow.seq)).all()
        place = {}
        timelines: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            line = timelines.setdefault(e.incident_id, [])
            place[e.seq] = (e.incident_id, len(line))
            line.append(_columns(e, ("seq", "incident_id")))
        untold = [
            {**_columns(u, ("id", "event_seq")), "event": place.get(u.event_seq or -1)}
            for u in session.scalars(select(UntoldChangeRow).order_by(UntoldChangeRow.id))
        ]
        outbox = [
            {**_columns(m, ("id", "payload")), "payload": json.loads(m.payload)}
            for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        ]
        seen = {
            "incidents": [
                _columns(r, _UNSEEN) for r in session.scalars(select(IncidentRow).order_by(IncidentRow.id))
            ],
            "timelines": timelines,
            "alerts": [_columns(r) for r in session.scalars(select(AlertRow).order_by(AlertRow.fingerprint))],
            "silences": [_columns(r) for r in session.scalars(select(SilenceRow).order_by(SilenceRow.id))],
            "untold": untold,
            "outbox": outbox,
        }
    engine = run.engine
    seen["engine"] = {
        "open": sorted(engine.open_incident_ids()),
        "muted": engine.muted_count(),
        "silenced_until": {k: v.isoformat() for k, v in sorted(engine.silenced_until().items())},
        "silences": sorted(s.id for s in engine.silences()),
        "refused": run.errors,
    }
    return seen


def diff(a: dict[str, Any], b: dict[str, Any], lines: int = 60) -> list[str]:
    """The unified diff of two views (straight, restarted), cut to ``lines``."""
    left = json.dumps(a, indent=1, sort_keys=True, default=str).splitlines()
    right = json.dumps(b, indent=1, sort_keys=True, default=str).splitlines()
    out = list(difflib.unified_diff(left, right, "straight", "restarted", n=4, lineterm=""))
    return out[:lines] + ([f"... {len(out) - lines} more lines"] if len(out) > lines else [])


# --- a seed -------------------------------------------------------------------------------------------


@dataclass
class Divergence:
    """The first step after which the restarted run showed something else."""

    seed: int
    step: int
    action: Step
    restarts: list[int]
    diff: list[str]


def run_seed(
    seed: int, steps: int, work: Path, *, show: bool = False, reversed_members: bool = False
) -> Divergence | None:
    """Both runs of one seed, compared after every step; the first divergence, if any."""
    config, actions, restarts = stream(seed, steps)
    down = random.Random(f"outbox-down-{seed}")  # apart from the stream: the same steps as without it
    outages = {k for k in range(steps) if down.random() < 0.1}
    alerting_config = AlertingConfig(**config)
    straight = Run(work / f"{seed}-straight.db", alerting_config)
    restarted = Run(work / f"{seed}-restarted.db", alerting_config, reversed_members=reversed_members)
    if show:
        print(
            json.dumps(
                {"seed": seed, "config": config, "restarts": restarts, "outbox_down": sorted(outages)}
            ),
            file=sys.stderr,
        )
    try:
        for k, action in enumerate(actions):
            if show:
                print(f"{k:3d} {json.dumps(action)}", file=sys.stderr)
            if k in restarts:
                restarted.restart()
            straight.do(action, outbox_down=k in outages)
            restarted.do(action, outbox_down=k in outages)
            a, b = seen(straight), seen(restarted)
            if a != b:
                found = Divergence(seed, k, action, restarts, diff(a, b, 400 if show else 60))
                if show:
                    print("\n".join(found.diff), file=sys.stderr)
                return found
        return None
    finally:
        for run in (straight, restarted):
            if run.sql is not None:
                run.sql.dispose()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    chosen = [args.show] if args.show is not None else args.seeds
    found: list[Divergence] = []
    # The outages' "telling listeners ... failed" are expected here. Given back after: a test runs this in
    # its worker, whose later tests read their logs (they found none while it stayed disabled).
    before = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as work, drawn_ids():
            for seed in chosen:
                divergence = run_seed(
                    seed,
                    args.steps,
                    Path(work),
                    show=args.show is not None,
                    reversed_members=args.reversed_members,
                )
                if divergence is not None:
                    found.append(divergence)
    finally:
        logging.disable(before)
    result = {
        "seeds": len(chosen),
        "steps": args.steps,
        **({"reversed_members": True} if args.reversed_members else {}),
        "divergent": [d.seed for d in found],
        "first": {
            str(d.seed): {"step": d.step, "action": d.action, "restarts": d.restarts, "diff": d.diff}
            for d in found
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
