"""Crash fuzz of ``gpuwarden serve`` with real processes: one JSON line.

"Nothing lost when something crashes; never repeats a page." For each seed this draws a storm of alert
batches (XIDs, NodeDown, GPULost, thermal, on several GPUs of several nodes; firing, resolving, firing
again; firing alerts repeated with another ``recommended_action``, a ``reassessed`` update that the webhook
holds ``--edit-interval`` seconds, 5 here, 300 by default in serve), of matcher silences set and expired
through the API, and of incident silences (``POST /api/v1/incidents/{id}/silence``) set right after some of
those repeats, maybe with the alerts firing on the node resolved under them (a change told under a silence
cannot take the held update's place: the update goes early), and expired later; and runs it twice
against real ``serve`` processes (a SQLite store; ``--postgres``: a database each on a throwaway PostgreSQL
15), each with the Slack stand-in (``alerting.notifiers.recorder``) as its Slack Web API and a webhook
receiver (the stand-in's ``/hooks/crash``):

- straight: one serve, never killed;
- crashed: serve SIGKILLed ``--kills`` times, before steps drawn apart from the storm, each kill one of
  ``batch`` (while a POST of alerts is in flight), ``tick`` (a random moment within 0.4 s after a step:
  the engine ticks every 0.1 s), ``send`` (while serve waits for Slack's or the webhook's answer to a post
  it made), ``start`` (right after serve answered a step, and the next serve again while it starts,
  maybe replaying that step), ``hold`` (after the first step from its own on that leaves the webhook
  holding an update: while it is held, ``hold``; around its release, ``hold-release``; as its POST reaches
  the receiver, ``hold-send``; ``hold-unsent`` when none came; ``kills_unlanded`` counts those that found no
  held update), ``early`` (armed at the next incident silence, landing as the next held update's POST
  reaches the receiver while the steps go on: ``hold-early``, most often an update sent early), and
  restarted on the same store, the steps continuing where they were. A
  POST that got no answer is sent again, as Alertmanager does; a silence POST that got none is first
  looked up by its comment, as a careful client does, so that no silence is set twice. After each step
  both runs wait until serve applied it and then for ticks begun after that (``TICKS``, counted by serve's
  ``GET /api/v1/ingest/status``), so that time decides alike in both. The two runs of a seed run at once.

The storm and the kill plan are drawn by ``crash_storm.py``; one serve, the steps done against it and the
waits on it are ``crash_serve.py``'s; this script kills and runs the seeds.

Once both runs are quiet (journal applied, every outbox message sent, or discarded as superseded) and stopped,
it compares what users see (``crash_view.py``), incidents keyed by their root and members (ids are random per
run): every incident with the same state and priority (``divergent``); per incident, its Slack message as
posted and as each edit changed it, its thread's replies (text, broadcast or not) and its webhook changes
(each idempotency key's first delivery: opening, updates, resolution), each in order, against the straight
run's: an item more often is a ``duplicate`` (a change told twice), less often ``lost``, another order
``divergent``, as is, within one run, a webhook change first delivered after a later change of its incident
(a resolution before the update held ahead of it) (what a crash may legitimately change, and what differs
with no crash at all, is left out:
``crash_view``'s docstring says what and why); every Slack message and webhook change at most once by key
(``duplicates``), every outbox message the outbox took as sent delivered, and every webhook update it set
aside followed by a later message of its incident that it sent (``lost``), and nothing half
written: the journal fully applied and opened cleanly, no outbox message left pending or failed
(``half_written``); a webhook change, ``reassessed`` updates aside, POSTed more than ``LATE_SECONDS``
after it was stored or after the serve that sent it was ready (``late``: it waited behind something; seen
with ``--edit-interval 40``, a hold well above it and a start-up); and a serve that exited or dropped a
request when nobody killed it (``exits``). A silenced incident's change the webhook holds back (marked
sent, never POSTed) is no ``lost`` one: ``seen``'s ``webhook_held`` counts them. Each
lists the seeds that found it; ``first`` shows what each of those found, and where its runs were kept.
``kills_by`` counts the kills that landed by kind (``batch-answered``: serve had answered the POST before it
died); ``webhook_redelivered`` counts the webhook POSTs a crash made again with the key and body already
delivered, which the receiver drops, and ``slack_edits_repeated`` the ``chat.update`` calls that sent the very
call before them again, byte for byte (a retry after a crash does, idempotent; some come with no crash too:
``slack_edits_repeated_straight``, the straight runs' count); ``held_updates_sent`` the crashed runs' webhook
``reassessed`` updates delivered (each held first); ``webhook_held`` the crashed runs' webhook changes held
back under a silence (marked sent, not POSTed).

A start waits for serve's ``/-/ready`` up to ``crash_serve.start_bound`` (60 s per unit of the load average
per core, at least 120 s), and the waits for ticks do not count a start against their own bound: a fixed
60 s stopped the fuzz at load 10-20 on 2 cores, few kills landing. A start that took past a minute is
counted (``slow_starts``, ``slowest_start``), no finding; one still not ready at its bound stops its seed,
listed under ``unfinished`` with its runs kept (a serve that never gets ready may be a defect), and the next
seed runs.

    PYTHONPATH=. .venv/bin/python benchmarks/crash_fuzz.py --seeds 0-9 --steps 20 --kills 3

``--show SEED`` prints that seed's steps, kills and differences to stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from crash_serve import CHANNEL, EDIT_INTERVAL, Serve, StartTimeout, do, do_once, settle, ticked
from crash_storm import Step, kill_plan, stream
from crash_view import HOOK, Seen, compare, observe
from seed_list import SEEDS_HELP, seed_list

from alerting.notifiers.recorder import RecordedCall, SlackRecorder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: its tests package
from tests.integration.gpuwarden_server import AUTH
from tests.integration.postgres import Postgres, throwaway_postgres
from tests.integration.servers import free_port

SENDS = ("chat.postMessage", "chat.update", f"hook:{HOOK}")
"""The calls a ``send`` kill lands in (the first of them after its step starts)."""
LATE_SECONDS = 8.0
"""A webhook change that is no ``reassessed`` update goes at once (none is held); one POSTed more than this
after it was stored, or after the serve that sent it was ready (a kill between; a start-up takes 10-15 s on
a loaded machine), is ``late``: held back behind an update. Seen only with ``--edit-interval`` well above
it and a start-up (40)."""


# --- the kills, against one serve ---------------------------------------------------------------------


def _kill_mid_batch(serve: Serve, step: Step, ids: dict[str, str], rng: random.Random) -> None:
    """Post the step in a thread and kill serve while it may be in flight; then post it again unless serve
    answered it before it died (as Alertmanager sends again what got no answer). A kill after the answer
    is told apart (``batch-answered``)."""
    serve.ensure()
    answered = threading.Event()
    worker = threading.Thread(target=_quietly, args=(serve, step, ids, answered))
    worker.start()
    time.sleep(rng.uniform(0.0, 0.06))
    serve.kill("batch")
    worker.join()
    if answered.is_set():
        serve.kills[-1:] = ["batch-answered"]
    else:
        do(serve, step, ids)


def _quietly(serve: Serve, step: Step, ids: dict[str, str], answered: threading.Event) -> None:
    with suppress(httpx.HTTPError, RuntimeError):  # serve was killed under it: the step is done again
        do_once(serve, step, ids)
        answered.set()


def _a_send(call: RecordedCall) -> bool:
    return call.method in SENDS


def _held_post(call: RecordedCall) -> bool:
    """Whether ``call`` is the webhook's POST of a ``reassessed`` update (one it held)."""
    return call.method == f"hook:{HOOK}" and call.params.get("event", {}).get("kind") == "reassessed"


def _arm(serve: Serve, wanted: Callable[[RecordedCall], bool], how: str) -> threading.Event:
    """Kill serve at the next Slack post or webhook POST it makes that is ``wanted``, before it hears the
    answer; set when it did. Armed until another arming or ``_disarm``."""
    fired = threading.Event()
    once = threading.Lock()

    def on_call(call: RecordedCall) -> None:
        with once:
            if not fired.is_set() and wanted(call):
                # Killed first, then told: a waiter on ``fired`` goes on at once (the last step's settle,
                # the next step's start); told first, it found serve still running and was reset by the kill
                # landing under it (seed 93: ``settle`` raised ``ConnectionResetError``, the seed unrun).
                serve.kill(how)
                fired.set()

    serve.recorder.on_call = on_call
    return fired


def _disarm(serve: Serve) -> None:
    serve.recorder.on_call = None


@contextmanager
def _armed_for_send(
    serve: Serve, wanted: Callable[[RecordedCall], bool] = _a_send, how: str = "send"
) -> Iterator[threading.Event]:
    """``_arm`` for the block."""
    try:
        yield _arm(serve, wanted, how)
    finally:
        _disarm(serve)


def _kill_at_start(serve: Serve, step: Step, ids: dict[str, str], rng: random.Random) -> None:
    """Do the step and kill serve at once (what it acknowledged maybe not applied yet); then kill the next
    serve while it starts, maybe while it replays that backlog (``start-up``)."""
    do(serve, step, ids)
    serve.kill("start")
    serve.launch()
    time.sleep(rng.uniform(0.1, 1.5))
    serve.kill("start-up")


def _held_until(serve: Serve) -> float | None:
    """When (wall clock) the first update the webhook holds goes; None when it holds none."""
    try:
        listed = serve.http.get(
            f"{serve.url}/api/v1/outbox",
            params={"status": "pending", "limit": 1000},
            headers=AUTH,
            timeout=10,
        ).json()["messages"]
    except httpx.HTTPError:  # an early kill landed: the next step starts serve again
        return None
    now = time.time()
    due = [
        datetime.fromisoformat(m["next_attempt_at"]).timestamp()
        for m in listed
        if m["notifier"] == f"webhook:{HOOK}" and m["event"] == "reassessed" and m["attempts"] == 0
    ]
    return min((at for at in due if at > now), default=None)


def _kill_around_hold(serve: Serve, due: float, rng: random.Random) -> None:
    """Kill serve while the webhook holds an update (``hold``), around its release (``hold-release``: the
    dispatcher polls each second), or as its POST reaches the receiver (``hold-send``; ``hold-unsent`` when
    no POST of it came: a later change replaced it)."""
    left = max(0.0, due - time.time())
    moment = rng.choice(("hold", "hold-release", "hold-send"))
    if moment == "hold":
        time.sleep(rng.uniform(0.0, left))
    elif moment == "hold-release":
        time.sleep(left + rng.uniform(-0.3, 1.2))
    else:
        with _armed_for_send(serve, _held_post, "hold-send") as fired:
            if fired.wait(left + 3.0):
                return
        moment = "hold-unsent"
    serve.kill(moment)


def run_steps(serve: Serve, steps: list[Step], kills: dict[int, str], seed: int) -> None:
    """Every step in order against ``serve``, killing it before the steps of ``kills``; a ``hold`` kill
    lands after the first step from its own on that leaves the webhook holding an update
    (``_kill_around_hold``), or, when none does, not at all (``hold-none``, no kill); an ``early`` kill is
    armed at the first incident silence from its own step on and lands as the next POST of a held update
    reaches the receiver, the steps going on meanwhile (likely one sent before its hold ended, a change
    told under the silence waiting behind it: ``hold-early``), or not at all (``early-none``: none came,
    or a ``send`` kill took its place)."""
    rng = random.Random(f"moments-{seed}")
    ids: dict[str, str] = {}
    holding = 0  # hold kills waiting for a held update
    early = 0  # early kills waiting for an incident silence
    armed: list[threading.Event] = []  # and those armed then
    serve.start()
    for k, step in enumerate(steps):
        how = kills.get(k)
        if how in ("hold", "early"):
            holding, early = holding + (how == "hold"), early + (how == "early")
            how = None
        if step[0] == "isilence" and early:
            early -= 1
            armed.append(_arm(serve, _held_post, "hold-early"))
        if how == "batch" and step[0] == "post":
            _kill_mid_batch(serve, step, ids, rng)
        elif how == "send":
            serve.ensure()
            with _armed_for_send(serve) as fired:
                do(serve, step, ids)
                settle(serve, killed=fired)  # the kill, or nothing left to send: this step sent nothing
        elif how == "start":
            _kill_at_start(serve, step, ids, rng)
        else:
            do(serve, step, ids)
            if how is not None:  # a tick, or a batch kill drawn for a step that posts nothing
                serve.ensure()
                time.sleep(rng.uniform(0.0, 0.4))
                serve.kill("tick")
        ticked(serve)
        due = _held_until(serve) if holding else None
        if due is not None:
            holding -= 1
            _kill_around_hold(serve, due, rng)
    serve.unlanded += ["hold-none"] * holding
    _disarm(serve)
    serve.unlanded += ["early-none"] * (early + sum(not fired.is_set() for fired in armed))
    serve.ensure()
    settle(serve)
    serve.stop()


# --- seeds -------------------------------------------------------------------------------------------


def run_once(
    folder: Path,
    db: str | None,
    steps: list[Step],
    kills: dict[int, str],
    seed: int,
    channel: str,
    edit_interval: float = EDIT_INTERVAL,
) -> tuple[Seen, Serve]:
    """One run in ``folder``, on the store ``db`` (a PostgreSQL URL; None: a SQLite file in ``folder``)."""
    folder.mkdir()
    with SlackRecorder(channels=[CHANNEL]) as recorder:
        serve = Serve(folder, recorder, db or str(folder / "gw.db"), channel, edit_interval)
        try:
            run_steps(serve, steps, kills, seed)
        finally:
            serve.close()
        return observe(recorder, serve.db, serve.folder / "journal"), serve


Compare = Callable[[Seen, Seen], dict[str, list[str]]]
REPEATED = ("webhook_redelivered", "slack_edits_repeated", "slack_edits_repeated_straight")
"""Counts of repeats a receiver or Slack takes as one (the crashed run's, and the straight one's edits)."""
FOUND = ("divergent", "duplicates", "lost", "half_written", "late", "exits")
"""What a seed can find, each a list in its outcome; ``exits``: a serve that exited or dropped a request
when nobody killed it."""


def late(seen: Seen, launches: list[float], ready: list[float | None]) -> list[str]:
    """The run's webhook changes, ``reassessed`` updates aside, POSTed more than ``LATE_SECONDS`` after they
    were stored, or after the serve that sent them was ready (``launches``: when each started, ``ready``:
    when it was; one that sent before it was ready, or never was, is taken as ready when it sent)."""
    found = []
    for key, (stored, sent) in sorted(seen.times.items()):
        last = max((k for k, at in enumerate(launches) if at <= sent), default=None)
        up = ready[last] if last is not None else None
        waited = sent - max(stored, sent if up is None else min(up, sent))
        if waited > LATE_SECONDS:
            found.append(f"webhook message {key} sent {waited:.1f} s after it was stored or serve was ready")
    return found


def fuzz_seed(
    seed: int,
    steps: int,
    kills: int,
    comparison: Compare,
    postgres: Postgres | None = None,
    channel: str = CHANNEL,
    edit_interval: float = EDIT_INTERVAL,
) -> dict[str, Any]:
    """Both runs of one seed at once (nothing is shared: each waits for its own serve's ticks) and what
    differs, each on a SQLite file or a new database of ``postgres``; the runs' folders (SQLite stores,
    journals, logs) are kept when it found something."""
    drawn = stream(seed, steps)
    plan = kill_plan(seed, len(drawn), kills)
    tmp = Path(tempfile.mkdtemp(prefix=f"crash-fuzz-{seed}-"))
    databases = [_database(postgres, f"s{seed}_{run}") for run in ("straight", "crashed")]
    try:
        with ThreadPoolExecutor(max_workers=1) as aside:
            alike = (seed, channel, edit_interval)
            straight_run = aside.submit(run_once, tmp / "straight", databases[0], drawn, {}, *alike)
            crashed, second = run_once(tmp / "crashed", databases[1], drawn, plan, *alike)
            straight, first = straight_run.result()
    except StartTimeout as exc:  # nothing to compare; kept, as a serve that never got ready may be a defect
        return {"seed": seed, "plan": plan, "unfinished": str(exc), "kept": str(tmp)}
    outcome = {
        "seed": seed,
        "plan": plan,
        "kills": second.kills,
        "unlanded": second.unlanded,
        "seen": straight.counts(),
        "held_updates_sent": crashed.counts()["webhook_updates"],
        "webhook_held": crashed.held,
        "repeated": {
            "webhook_redelivered": crashed.redelivered,
            "slack_edits_repeated": crashed.edits_repeated,
            "slack_edits_repeated_straight": straight.edits_repeated,
        },
        **comparison(straight, crashed),
        "late": late(crashed, second.launches, second.ready) + late(straight, first.launches, first.ready),
        "exits": first.exits + second.exits,
        "slow_starts": first.slow + second.slow,
    }
    if any(outcome[kind] for kind in FOUND):
        outcome["kept"] = str(tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return outcome


def _database(postgres: Postgres | None, name: str) -> str | None:
    """The URL of a new database ``name`` on ``postgres``; None without one."""
    return None if postgres is None else postgres.new_database(name)


@contextmanager
def _store_server(postgres: bool) -> Iterator[Postgres | None]:
    """A throwaway PostgreSQL 15 for ``--postgres`` (``tests/integration/postgres.py``: run as root)."""
    if not postgres:
        yield None
        return
    with throwaway_postgres(free_port()) as server:
        yield server


def _tally(outcome: dict[str, Any], found: dict[str, list[int]], first: dict[str, dict[str, Any]]) -> None:
    """Note the seed under each kind it found, and the first few of each kind for its first finding."""
    seed = outcome["seed"]
    for kind, seeds in found.items():
        if outcome[kind]:
            seeds.append(seed)
            shown = {k: outcome[k][:5] for k in FOUND} | {k: outcome.get(k) for k in ("kills", "kept")}
            first.setdefault(str(seed), shown)
    print(f"seed {seed}: {json.dumps({k: len(outcome[k]) for k in FOUND})}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_list, default="0-4", help=f"{SEEDS_HELP} (default %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="steps per seed (default %(default)s)")
    parser.add_argument("--kills", type=int, default=3, help="kills per seed (default %(default)s)")
    parser.add_argument(
        "--postgres", action="store_true", help="each run on a database of a throwaway PostgreSQL"
    )
    parser.add_argument(
        "--slack-channel",
        default=CHANNEL,
        help="slack.channel (default %(default)s; a #name has no exact lookup after a crash: a stress)",
    )
    parser.add_argument(
        "--edit-interval",
        type=float,
        default=EDIT_INTERVAL,
        help="webhooks[0].edit_interval_seconds (default %(default)s; 0: no update held, as before)",
    )
    parser.add_argument(
        "--minutes", type=float, help="start no seed after this many minutes (the line counts seeds run)"
    )
    parser.add_argument("--show", type=int, help="print this seed's steps, kills and differences to stderr")
    return parser


def main(argv: list[str] | None = None, comparison: Compare = compare) -> dict[str, Any]:
    """Run the seeds and print the one JSON line; ``comparison`` tells what differs (tests break it)."""
    args = _parser().parse_args(argv)
    started = time.monotonic()
    found: dict[str, list[int]] = {kind: [] for kind in FOUND}
    first: dict[str, dict[str, Any]] = {}
    kills: Counter[str] = Counter()
    unlanded: Counter[str] = Counter()
    held_sent = held_back = 0
    repeated: Counter[str] = Counter()
    unfinished: dict[str, dict[str, Any]] = {}  # seeds a start past its bound stopped (StartTimeout)
    slow_starts: list[float] = []
    done = 0
    with _store_server(args.postgres) as postgres:
        for seed in args.seeds:
            if args.minutes is not None and time.monotonic() - started > args.minutes * 60:
                break
            done += 1
            outcome = fuzz_seed(
                seed, args.steps, args.kills, comparison, postgres, args.slack_channel, args.edit_interval
            )
            if "unfinished" in outcome:
                unfinished[str(seed)] = outcome
                print(f"seed {seed}: unfinished: {outcome['unfinished']}", file=sys.stderr)
                continue
            slow_starts += outcome["slow_starts"]
            kills.update(outcome["kills"])
            unlanded.update(outcome["unlanded"])
            held_sent += outcome["held_updates_sent"]
            held_back += outcome["webhook_held"]
            repeated.update(outcome["repeated"])
            _tally(outcome, found, first)
            if args.show == seed:
                print(json.dumps({**outcome, "steps": stream(seed, args.steps)}, indent=1), file=sys.stderr)
    result = {
        "seeds": done,
        "steps": args.steps,
        "store": "postgresql" if args.postgres else "sqlite",
        "kills": sum(kills.values()),
        "kills_by": dict(kills),
        "kills_unlanded": dict(unlanded),
        "held_updates_sent": held_sent,
        "webhook_held": held_back,
        **found,
        **{what: repeated[what] for what in REPEATED},
        "first": first,
        "unfinished": unfinished,
        "slow_starts": len(slow_starts),
        "slowest_start": max(slow_starts, default=None),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    # A SIGTERM (timeout, Ctrl-C's cousin) unwinds like an exception, so the serve it runs is stopped too.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    main()
