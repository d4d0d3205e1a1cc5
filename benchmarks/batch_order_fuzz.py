"""Random alert storms posted one alert per POST and all in one POST: how many group apart. One JSON line.

The README promises that the incidents ``serve`` makes do not depend on how alerts are batched. Each seed
draws ``--alerts`` alerts over two minutes on a small fleet (two racks of four 8-GPU nodes, an inference
service, three training jobs; no spare GPUs): node and GPU outages, XIDs, heat, NVLink errors, stale
exporters, power brakes, a service's latency and jobs' stalls, 70 % of them on rack r1. The storm is fed
to an ``IncidentEngine`` (announce delay 0) once one alert per ``ingest`` (one per POST: what serve's
applier makes of each) and once in a single ``ingest``; a seed disagrees when the open incidents differ in
root kind, root target, priority, title or alerts. ``--shuffle SECONDS`` compares onset order one per POST
with the order the alerts arrive in when each is posted a random delay of up to SECONDS after its onset (as
several Alertmanagers, their retries or several anomaly services post them), one per POST; ``reordered``
counts the storms that order changes (the others are not fed twice). ``--verbose`` prints each
disagreement on stderr. ``--one-post-shuffled`` (without ``--shuffle``) posts each storm in one POST in a
random order, as an Alertmanager lists a group's alerts by their labels, and compares with onset order one per
POST (session 79: 99 of 250 seeds, 150-399, disagreed on main at 0b913c8b, none at fix/batch3).
Written in session 69 from a reviewer's harness; on main that day 55 of the 250 seeds 150-399 (8 alerts)
disagreed at its start and 6 at its end; ``--shuffle`` came in session 78 (22 of 250 at 30 s on main).
Compare with other code by running it with ``PYTHONPATH`` set to a worktree of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from seed_list import seed_list


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="150-399", help="seeds, e.g. 150-399 or 3,7,9")
    parser.add_argument("--alerts", type=int, default=8, help="alerts drawn per storm (duplicates dropped)")
    parser.add_argument(
        "--shuffle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="post each alert one per POST after a random delay of up to SECONDS past its onset (out of onset"
        " order, as several Alertmanagers or their retries post) and compare with onset order, one per POST",
    )
    parser.add_argument(
        "--one-post-shuffled",
        action="store_true",
        help="post each storm in one POST in a random order (Alertmanager lists a group's alerts by their"
        " labels, Prometheus a rule group's in no set order) and compare with onset order, one per POST",
    )
    parser.add_argument(
        "--pages",
        type=float,
        default=None,
        metavar="DELAY",
        help="count pages instead: each alert posted at its arrival (its onset, and as --shuffle draws it),"
        " the clock following, a tick every 5 s, alerting.announce_delay_seconds DELAY; incidents announced"
        " (paged) and those of them merged into another by the end, in onset order and as they arrive",
    )
    parser.add_argument("--verbose", action="store_true", help="print each disagreement on stderr")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.db import make_engine  # noqa: E402 - imported after the command line is read
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.inventory_file import load_inventory  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from alerting.subscriptions import ChangeKind  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert  # noqa: E402

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
NODES = [f"r{r}-n{n}" for r in (1, 2) for n in range(1, 5)]


def _units(node: str, gpus: range) -> str:
    return "[" + ",".join(f'"{node}:{g}"' for g in gpus) + "]"


def _inventory_text() -> str:
    """The fleet, as an inventory file: llama's 4 replicas of 2 GPUs (r1-n1 0-1 and 2-3, r1-n2 0-1, r2-n1
    0-1); job 100 on r1-n3 and r1-n4, job 200 on r2-n2 and r2-n3, job 300 on r1-n2 4-7 and r2-n4 0-3."""
    nodes = [
        f"  - {{name: {n}, cluster: c1, rack: {n[:2]}, gpus: 8,"
        f" gpu_uuids: [{', '.join(f'GPU-{n[1]}{n[-1]}0{g}' for g in range(8))}]}}"
        for n in NODES
    ]
    llama = ",".join(
        _units(n, range(a, a + 2)) for n, a in (("r1-n1", 0), ("r1-n1", 2), ("r1-n2", 0), ("r2-n1", 0))
    )
    jobs = {
        "100": (_units("r1-n3", range(8)), _units("r1-n4", range(8))),
        "200": (_units("r2-n2", range(8)), _units("r2-n3", range(8))),
        "300": (_units("r1-n2", range(4, 8)), _units("r2-n4", range(4))),
    }
    workloads = [
        f"  - {{kind: inference_service, namespace: prod, name: llama, cluster: c1, units: [{llama}]}}",
        *(
            f'  - {{kind: training_job, name: "{name}", cluster: c1, units: [{a},{b}]}}'
            for name, (a, b) in jobs.items()
        ),
    ]
    return "\n".join(["spare_gpus: {c1: 0}", "nodes:", *nodes, "workloads:", *workloads, ""])


def storm(rng: random.Random, count: int) -> list[Alert]:
    """``count`` alerts drawn over two minutes (those with the same labels kept once, the earliest)."""
    drawn = []
    for _ in range(count):
        at = rng.randint(0, 120)
        node = rng.choice(NODES[:4] if rng.random() < 0.7 else NODES)
        gpu = str(rng.randint(0, 7))
        pick = rng.random()
        if pick < 0.15:
            labels = {"alertname": "NodeDown", "node": node}
        elif pick < 0.35:
            labels = {"alertname": "GPULost", "node": node, "gpu": gpu}
        elif pick < 0.5:
            xid = rng.choice(["13", "31", "79", "48", "119", "74"])
            labels = {"alertname": "XidError", "node": node, "gpu": gpu, "xid": xid}
        elif pick < 0.6:
            labels = {"alertname": "GpuTemperatureHigh", "node": node, "gpu": gpu}
        elif pick < 0.68:
            labels = {"alertname": "NVLinkErrors", "node": node, "gpu": gpu}
        elif pick < 0.75:
            labels = {"alertname": "DCGMExporterStale", "Hostname": node}
        elif pick < 0.85:
            labels = {"alertname": "LlamaLatencyHigh", "service": "llama", "namespace": "prod"}
        elif pick < 0.92:
            job = rng.choice(["100", "200", "300"])
            labels = {"alertname": "TrainingJobStalled", "slurm_job": job, "rank": str(rng.randint(0, 1))}
        else:
            labels = {"alertname": "GpuPowerBrake", "node": node, "gpu": gpu}
        drawn.append(Alert({**labels, "cluster": "c1"}, starts_at=START + timedelta(seconds=at)))
    kept: dict[frozenset[tuple[str, str]], Alert] = {}
    for alert in sorted(drawn, key=lambda a: a.starts_at or START):
        kept.setdefault(frozenset(alert.labels.items()), alert)
    return list(kept.values())


Outcome = frozenset[tuple[str, str, str, str, frozenset[str]]]


def outcome(posts: list[list[Alert]], inventory_path: Path, folder: Path, name: str) -> Outcome:
    """The open incidents the engine makes of ``posts``, each ``ingest`` one POST, on a copy of the migrated
    empty store ``folder`` holds (migrating each anew took two thirds of the time)."""
    path = folder / f"{name}.db"
    shutil.copyfile(folder / "empty.db", path)
    store = make_engine(str(path))
    at = START + timedelta(seconds=130)
    engine = IncidentEngine(
        store,
        FakeClock(at.timestamp()),
        AlertingConfig(announce_delay_seconds=0),
        load_inventory(inventory_path),
    )
    for post in posts:
        engine.ingest(post)
    found = set()
    for row, _ in engine.store.list_rows():
        if row.merged_into:
            continue
        incident = engine.store.get(row.id)
        target = str(sorted(row.root_target.items()))
        found.add(
            (row.root_kind, target, row.priority, incident.title, frozenset(incident.alert_fingerprints))
        )
    store.dispose()
    return frozenset(found)


def arrival(rng: random.Random, alerts: list[Alert], delay: float) -> list[Alert]:
    """``alerts`` in the order they arrive when each is posted a random delay of up to ``delay`` seconds after
    its onset (ties in onset order)."""
    late = [(a.starts_at or START) + timedelta(seconds=rng.uniform(0, delay)) for a in alerts]
    return [alerts[i] for i in sorted(range(len(alerts)), key=lambda i: (late[i], i))]


def paged(
    arrivals: list[tuple[datetime, Alert]], delay: float, inventory_path: Path, folder: Path, name: str
) -> tuple[int, int, int]:
    """Alerts posted one per POST at their arrival times, the clock following and the engine ticking every
    5 s until three minutes past the start: (incidents announced, of them merged into another by the end,
    open incidents not merged at the end). ``delay`` is ``alerting.announce_delay_seconds``."""
    path = folder / f"{name}.db"
    shutil.copyfile(folder / "empty.db", path)
    store = make_engine(str(path))
    clock = FakeClock(START.timestamp())
    engine = IncidentEngine(
        store, clock, AlertingConfig(announce_delay_seconds=delay), load_inventory(inventory_path)
    )
    opened: set[str] = set()
    engine.subscribe(
        lambda change: opened.add(change.incident.id) if change.kind is ChangeKind.OPENED else None
    )
    steps = [(at, 1, alert) for at, alert in arrivals]
    steps += [(START + timedelta(seconds=t), 0, None) for t in range(0, 181, 5)]
    for at, _, alert in sorted(steps, key=lambda step: (step[0], step[1])):
        clock.advance((at - clock.now()).total_seconds())
        if alert is None:
            engine.tick()
        else:
            engine.ingest([alert])
    rows = [row for row, _ in engine.store.list_rows(include_merged=True)]
    merged = {row.id for row in rows if row.merged_into}
    left = sum(1 for row in rows if not row.merged_into and not row.resolved_at)
    store.dispose()
    return len(opened), len(opened & merged), left


def _pages(options: argparse.Namespace, seeds: list[int], folder: Path, inventory: Path) -> dict[str, object]:
    """``--pages``: per order, the incidents announced, those merged away, those left, summed over seeds."""
    totals = {"onset": [0, 0, 0], "arrival": [0, 0, 0]}
    worst: list[tuple[int, int, int]] = []  # (pages as they arrive, incidents left, seed)
    for seed in seeds:
        rng = random.Random(seed)
        alerts = storm(rng, options.alerts)
        delay = options.shuffle or 0.0
        late = [(a.starts_at or START) + timedelta(seconds=rng.uniform(0, delay)) for a in alerts]
        orders = {
            "onset": [(a.starts_at or START, a) for a in alerts],
            "arrival": sorted(zip(late, alerts, strict=True), key=lambda pair: pair[0]),
        }
        for order, arrivals in orders.items():
            got = paged(arrivals, options.pages, inventory, folder, f"{seed}-{order}")
            totals[order] = [t + g for t, g in zip(totals[order], got, strict=True)]
            if order == "arrival":
                worst.append((got[0], got[2], seed))
    said = {
        order: {"pages": t[0], "pages_of_incidents_merged_away": t[1], "incidents_left": t[2]}
        for order, t in totals.items()
    }
    return {
        "announce_delay_seconds": options.pages,
        "shuffle_seconds": options.shuffle,
        **said,
        "most_pages_as_they_arrive": [
            {"seed": seed, "pages": pages, "incidents_left": left}
            for pages, left, seed in sorted(worst, reverse=True)[:5]
        ],
    }


def _said(incidents: Outcome, names: dict[str, str]) -> list[str]:
    return [
        f"  {p} {kind} {title[:100]} {sorted(names[f] for f in fps)}" for kind, _, p, title, fps in incidents
    ]


def main(options: argparse.Namespace) -> None:
    logging.disable(logging.WARNING)  # the fleet's unknown-label notices: one JSON line
    seeds = seed_list(options.seeds)
    began = time.perf_counter()
    disagree = []
    reordered = 0  # storms whose alerts arrive out of onset order (``--shuffle``)
    with tempfile.TemporaryDirectory(prefix="batch-order-") as tmp:
        folder = Path(tmp)
        inventory = folder / "inventory.yaml"
        inventory.write_text(_inventory_text())
        empty = make_engine(str(folder / "empty.db"))
        upgrade(empty)
        empty.dispose()
        if options.pages is not None:
            result = {
                "benchmark": "batch_order_fuzz",
                "storms": len(seeds),
                **_pages(options, seeds, folder, inventory),
            }
            print(json.dumps({**result, "seconds": round(time.perf_counter() - began, 1)}))
            return
        for seed in seeds:
            rng = random.Random(seed)
            alerts = storm(rng, options.alerts)
            late: list[Alert] | None = None
            one_by_one = outcome([[a] for a in alerts], inventory, folder, f"{seed}-each")
            if options.shuffle is None and not options.one_post_shuffled:
                together = outcome([alerts], inventory, folder, f"{seed}-all")
                said = ("one per POST", "one POST")
            else:
                if options.shuffle is None:
                    late = rng.sample(alerts, len(alerts))
                    said = ("one per POST in onset order", "one POST in this order")
                else:
                    late = arrival(rng, alerts, options.shuffle)
                    said = ("one per POST in onset order", "one per POST as they arrive")
                if late == alerts:
                    continue
                reordered += 1
                posts = [late] if options.shuffle is None else [[a] for a in late]
                together = outcome(posts, inventory, folder, f"{seed}-late")
            if one_by_one == together:
                continue
            disagree.append(seed)
            if options.verbose:
                names = {a.fingerprint: f"{a.labels['alertname']}@{a.starts_at:%M:%S}" for a in alerts}
                if late is not None:
                    said = (said[0], f"{said[1]}: {' '.join(names[a.fingerprint] for a in late)}")
                lines = [f"seed {seed}: {said[0]}", *_said(one_by_one - together, names), said[1]]
                print("\n".join([*lines, *_said(together - one_by_one, names)]), file=sys.stderr)
    result = {
        "benchmark": "batch_order_fuzz",
        "storms": len(seeds),
        "alerts_per_storm": options.alerts,
        **({} if options.shuffle is None else {"shuffle_seconds": options.shuffle}),
        **({"one_post_shuffled": True} if options.one_post_shuffled else {}),
        **({"reordered": reordered} if options.shuffle is not None or options.one_post_shuffled else {}),
        "disagree": len(disagree),
        "disagree_seeds": disagree,
        "seconds": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS)
