"""Alertmanager vs gpuwarden on the same alert storms, in one run: one JSON line.

Both servers are real processes on 127.0.0.1: Debian's Alertmanager 0.25 with a typical route
(``group_by: [alertname, cluster]``; every timer scaled down 30x so the run takes seconds: group_wait 30 s
-> 1 s, group_interval 1 min -> 2 s) routing to a local webhook that counts notifications, and ``gpuwarden
serve`` notifying a local Slack Web API stand-in (alerting.notifiers.recorder). A second Alertmanager the
same but without resolved notifications (``send_resolved: false``, its default for Slack) is compared with
gpuwarden's default, which edits a resolved incident's message in place rather than posting; the first
(``send_resolved: true``) with gpuwarden posting resolutions too (``slack.broadcast_resolutions``). A third
with the default group_interval (5 min -> 10 s; it sends fewer updates) is reported next to them. Each storm
is replayed on its own timeline (each alert's onset, scaled 30x), posted every rule evaluation (15 s -> 0.5 s)
as Prometheus does, held 2 min (scaled) after its last onset, then resolved.

* ``notifications``: webhook POSTs Alertmanager made (its resolved notifications included:
  ``send_resolved``), and the Slack messages gpuwarden made visible in the channel: new top-level messages
  and thread replies broadcast to the channel (resolutions, escalations, reopenings). In-place
  ``chat.update`` edits and plain thread replies ping nobody and are counted apart.
* Storms (``alerting.scenarios.storm_scenarios``: rack power loss, NVSwitch failure, bad driver rollout,
  job-wide stall) are what the >=10x target is about; ``two_unrelated_faults`` is a correctness check
  (it must stay two incidents) and is reported apart. Each scenario's alerts carry a ``storm`` label so
  that a later scenario never re-fires (and reopens) an earlier one's alerts.
* ``alerts_per_second``: alerts acknowledged per second over HTTP (``POST /api/v2/alerts``, batches of
  64 like Prometheus, 4 concurrent clients, the same pre-encoded bodies for both servers). ``fresh``:
  every alert new (new fingerprints: stored, correlated, incidents opened); ``repeat``: the same bodies
  posted again, as Prometheus re-posts firing alerts at every evaluation (the steady state). Each figure
  is the best of 3 passes. ``client_cpu_share`` is the posting process's CPU time over the wall time
  (near 1.0 would mean the Python client, not the server, sets the pace); ``server_cpu_ms_per_1k``
  is the server process's CPU time per 1000 alerts. Both servers accept, then process: Alertmanager's POST
  validates and puts alerts in its in-memory store (grouping and dispatch come after), gpuwarden's POST
  validates and appends the batch to its durable accept journal (storing, correlating and incidents come
  after, in its applier). So for gpuwarden the line also gives ``applied``: alerts per second from the
  first POST until the applier has stored and correlated the last one (polling ``GET
  /api/v1/ingest/status``), and its CPU per 1k alerts includes that applying.

``--throughput-only`` skips the storms (a quick run of the ingest-rate comparison alone).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below (httpx, the alerting stage): ``--help`` and an
    unknown option answer at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    half = parser.add_mutually_exclusive_group()
    half.add_argument("--storms-only", action="store_true", help="only the notifications per storm")
    half.add_argument("--throughput-only", action="store_true", help="only the alerts per second")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import httpx  # noqa: E402 - imported after the command line is read
import yaml  # noqa: E402
from alert_feed import BATCH, CLIENTS, as_postable, post_all, throughput  # noqa: E402

from alerting import scenarios  # noqa: E402
from alerting.inventory import StaticInventory, WorkloadInfo  # noqa: E402
from alerting.inventory_file import inventory_data  # noqa: E402
from alerting.notifiers.recorder import SlackRecorder  # noqa: E402
from gpuwarden.model import Alert  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: its tests package, when
# run as `python benchmarks/X.py` without PYTHONPATH (as CI's harness tests and `make bench` run it)
# in GPUWARDEN_TEST_PORTS when set, as the tests' servers
from tests.integration.servers import free_port  # noqa: E402

TOKEN = "bench-token"
CHECK = "two_unrelated_faults"  # a correctness check (two incidents), not a storm
SCALE = 30.0  # every timer runs 30x faster than in production: Alertmanager's, gpuwarden's, the storms'
EVAL = 15.0 / SCALE  # Prometheus' rule evaluation interval (15 s), scaled
HOLD = 120.0 / SCALE  # how long a storm keeps firing after its last onset before it is repaired


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


@contextmanager
def process(
    argv: Sequence[str], ready: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(ready, proc)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class CountingReceiver:
    """A webhook endpoint that counts Alertmanager's notifications."""

    def __init__(self) -> None:
        self.count = 0
        self.alerts = 0
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    owner.count += 1
                    owner.alerts += len(body.get("alerts", []))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def storms(start: datetime) -> dict[str, list[Alert]]:
    named = {**scenarios.storm_scenarios(start), CHECK: scenarios.unrelated_faults(start)}
    return {
        name: [Alert({**a.labels, "storm": name}, starts_at=a.starts_at) for a in alerts]
        for name, alerts in named.items()
    }


THROUGHPUT_CLUSTERS = [f"bench{k}" for k in range(24)]


def in_cluster(alerts: list[Alert], cluster: str) -> list[Alert]:
    """The same storm in another cluster: its own hosts, GPUs and job (names carry the cluster)."""
    out = []
    for a in alerts:
        labels = {**a.labels, "cluster": cluster}
        for name in ("Hostname", "instance"):
            if name in labels:
                labels[name] = f"{cluster}-{labels[name]}"
        if "UUID" in labels:
            labels["UUID"] = labels["UUID"].replace("GPU-", f"GPU-{cluster}-", 1)
        if "slurm_job" in labels:
            labels["slurm_job"] = f"{labels['slurm_job']}-{cluster}"
        out.append(Alert(labels, starts_at=a.starts_at))
    return out


def bench_inventory() -> StaticInventory:
    """The scenario fleet (cluster c1, for the storms) and a copy of it per throughput cluster, as
    ``in_cluster`` names them: the applier correlates the throughput stream with a full inventory."""
    base = scenarios.fleet_inventory()
    nodes, workloads = list(base.node_list), list(base.workload_list)
    for cluster in THROUGHPUT_CLUSTERS:
        nodes += [
            replace(
                n,
                name=f"{cluster}-{n.name}",
                cluster=cluster,
                gpu_uuids=tuple(u.replace("GPU-", f"GPU-{cluster}-", 1) for u in n.gpu_uuids),
            )
            for n in base.node_list
        ]
        workloads += [
            WorkloadInfo(
                replace(w.ref, name=f"{w.ref.name}-{cluster}", cluster=cluster),
                tuple(
                    frozenset((cluster, f"{cluster}-{node}", i) for _, node, i in unit) for unit in w.units
                ),
            )
            for w in base.workload_list
        ]
    return StaticInventory(nodes, workloads, dict(base.spare))


def run_storm(
    alerts: list[Alert], targets: list[tuple[str, dict[str, str]]], settle: Callable[[], None]
) -> None:
    """Replay the storm on its own timeline, scaled down like Alertmanager's timers, as Prometheus sends it.

    Every ``EVAL`` seconds (a 15 s rule evaluation, scaled) each target gets every alert whose onset has
    passed, firing, with ``endsAt`` four evaluations ahead (Prometheus' re-post semantics); once the last
    onset is ``HOLD`` behind, every alert is posted resolved.
    """
    first = min(a.starts_at or datetime.now(UTC) for a in alerts)
    offsets = [((a.starts_at or first) - first).total_seconds() / SCALE for a in alerts]
    began = time.monotonic()
    while True:
        elapsed = time.monotonic() - began
        due = [a for a, off in zip(alerts, offsets, strict=True) if off <= elapsed]
        later = datetime.now(UTC) + timedelta(seconds=4 * EVAL * SCALE)
        for url, headers in targets:
            post_all(url, headers, [as_postable(a, later) for a in due], clients=1)
        if elapsed >= max(offsets) + HOLD:
            break
        time.sleep(max(0.0, EVAL - (time.monotonic() - began - elapsed)))
    now = datetime.now(UTC)
    for url, headers in targets:
        post_all(url, headers, [as_postable(a, now) for a in alerts], clients=1)
    settle()


def alertmanager_argv(
    binary: str, storage: Path, hook: str, group_interval: str, port: int, send_resolved: bool = True
) -> list[str]:
    """A real Alertmanager with the typical route (``group_by: [alertname, cluster]``) to ``hook``."""
    storage.mkdir(parents=True, exist_ok=True)
    config = storage / "am.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "hook",
                    "group_by": ["alertname", "cluster"],
                    "group_wait": "1s",
                    "group_interval": group_interval,
                    "repeat_interval": "4h",
                },
                "receivers": [
                    {"name": "hook", "webhook_configs": [{"url": hook, "send_resolved": send_resolved}]}
                ],
            }
        )
    )
    return [
        binary,
        f"--config.file={config}",
        f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]


def throughput_section(
    result: dict[str, Any], am_url: str, am_pid: int, gw_url: str, auth: dict[str, str], gw_pid: int
) -> None:
    """Alerts acknowledged per second by each server on the same stream (see the module docstring)."""
    base = scenarios.rack_failure(7, datetime.now(UTC))
    stream = [a for cluster in THROUGHPUT_CLUSTERS for a in in_cluster(base, cluster)]
    later = datetime.now(UTC) + timedelta(minutes=10)
    items = [as_postable(a, later) for a in stream]
    result["throughput_alerts"] = len(items)
    result["throughput_batch_size"] = BATCH
    result["throughput_clients"] = CLIENTS
    result["alerts_per_second"] = {
        "alertmanager": throughput(am_url, {}, items, am_pid),
        "gpuwarden": throughput(
            gw_url, auth, items, gw_pid, status_url=gw_url.replace("/api/v2/alerts", "/api/v1/ingest/status")
        ),
    }


def main(args: argparse.Namespace) -> None:
    storms_only, throughput_only = args.storms_only, args.throughput_only
    am_bin = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
    gw_bin = str(Path(sys.executable).with_name("gpuwarden"))
    work = Path(tempfile.mkdtemp(prefix="bench-incidents-"))
    receiver, receiver_default, receiver_firing = CountingReceiver(), CountingReceiver(), CountingReceiver()
    am_port, am_default_port, am_firing_port, gw_port = free_port(), free_port(), free_port(), free_port()
    am_argv = alertmanager_argv(am_bin, work / "am", receiver.url, "2s", am_port)
    # The same without resolved notifications (send_resolved: false, Alertmanager's default for Slack),
    # to compare with gpuwarden's default, which edits a resolved incident's message instead of posting.
    am_firing_argv = alertmanager_argv(
        am_bin, work / "am-firing", receiver_firing.url, "2s", am_firing_port, send_resolved=False
    )
    # Alertmanager's own default group_interval (5 min, scaled: 10 s), reported next to the target figure.
    am_default_argv = alertmanager_argv(
        am_bin, work / "am-default", receiver_default.url, "10s", am_default_port
    )
    recorder = SlackRecorder(port=free_port()).start()
    inventory = work / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(inventory_data(bench_inventory())))
    gw_cfg = work / "gw.yml"
    gw_cfg.write_text(
        yaml.safe_dump(
            {
                "slack": {
                    "bot_token": {"env": "SLACK_BOT_TOKEN"},
                    "base_url": recorder.base_url,
                    "charts": False,
                },
                "alerting": {
                    "quiet_period_seconds": 1,
                    "tick_interval_seconds": 0.5,
                    "announce_delay_seconds": 1,
                    "inventory_file": str(inventory),
                },
            }
        )
    )
    env = {**os.environ, "GPUWARDEN_API_TOKEN": TOKEN, "SLACK_BOT_TOKEN": recorder.token}
    gw_argv = [gw_bin, "serve", "--port", str(gw_port), "--db", str(work / "gw.db"), "--config", str(gw_cfg)]
    am_url = f"http://127.0.0.1:{am_port}/api/v2/alerts"
    gw_url = f"http://127.0.0.1:{gw_port}/api/v2/alerts"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    result: dict[str, Any] = {"benchmark": "incidents", "scenarios": {}}
    with (
        process(am_argv, f"http://127.0.0.1:{am_port}/-/ready", work / "am.log") as am_proc,
        process(am_default_argv, f"http://127.0.0.1:{am_default_port}/-/ready", work / "am-default.log"),
        process(am_firing_argv, f"http://127.0.0.1:{am_firing_port}/-/ready", work / "am-firing.log"),
        process(gw_argv, f"http://127.0.0.1:{gw_port}/healthz", work / "gw.log", env) as gw_proc,
    ):
        am_default_url = f"http://127.0.0.1:{am_default_port}/api/v2/alerts"
        am_firing_url = f"http://127.0.0.1:{am_firing_port}/api/v2/alerts"
        targets = [(am_url, {}), (am_default_url, {}), (am_firing_url, {}), (gw_url, auth)]
        seen = 0
        for name, alerts in ({} if throughput_only else storms(datetime.now(UTC))).items():
            am_before, top_before = receiver.count, len(recorder.visible_in_channel())
            am_default_before, am_firing_before = receiver_default.count, receiver_firing.count
            calls_before = len(recorder.calls)

            def settle() -> None:
                # AM: the next group_interval tick (10 s at most) delivers the resolution; gpuwarden: the
                # quiet period and the outbox drain.
                time.sleep(11)

            run_storm(alerts, targets, settle)
            incidents = httpx.get(f"http://127.0.0.1:{gw_port}/api/v1/incidents", timeout=10).json()
            am_n = receiver.count - am_before
            new = incidents[: len(incidents) - seen]
            seen = len(incidents)
            # Incidents another took in are listed too (resolved, merged_into); none was a message of its own.
            fresh = [i for i in new if not i.get("merged_into")]
            # A notification is what reaches the channel: new messages and replies broadcast to it (a
            # resolution, an escalation, a reopening), as every Alertmanager notification is a message.
            posted = recorder.visible_in_channel()[top_before:]
            gw_n = len(posted)
            # With slack.broadcast_resolutions each resolved incident also posts its resolution once.
            resolved = sum(1 for i in fresh if i["state"] == "resolved")
            result["scenarios"][name] = {
                "storm": name != CHECK,
                "alerts": len(alerts),
                "alertmanager_notifications": am_n,
                "alertmanager_notifications_without_resolved": receiver_firing.count - am_firing_before,
                "alertmanager_default_group_interval_notifications": receiver_default.count
                - am_default_before,
                "gpuwarden_notifications": gw_n,
                "gpuwarden_notifications_with_resolution_broadcasts": gw_n + resolved,
                "gpuwarden_messages": [m.text for m in posted],
                "gpuwarden_slack_calls_incl_updates_and_thread_replies": len(recorder.calls) - calls_before,
                "gpuwarden_incidents": [
                    [
                        i["priority"],
                        i["root_cause"]["kind"],
                        i["root_cause"]["target"].get("name"),
                        i["state"],
                    ]
                    for i in fresh
                ],
                "gpuwarden_incidents_merged_into_others": len(new) - len(fresh),
            }
        figures = result["scenarios"]
        for key, names in (("storms", [n for n in figures if n != CHECK]), ("all", list(figures))):

            def total(field: str, names: list[str] = names) -> int:
                return sum(int(figures[n][field]) for n in names)

            gw_n, gw_r = (
                total("gpuwarden_notifications"),
                total("gpuwarden_notifications_with_resolution_broadcasts"),
            )
            am_n, am_f = (
                total("alertmanager_notifications"),
                total("alertmanager_notifications_without_resolved"),
            )
            am_d = total("alertmanager_default_group_interval_notifications")
            result[f"notifications_{key}"] = {
                "alertmanager_without_resolved": am_f,
                "gpuwarden": gw_n,
                "alertmanager_with_resolved": am_n,
                "gpuwarden_with_resolution_broadcasts": gw_r,
            }
            # Like for like: neither posts resolutions; then both do.
            result[f"notification_reduction_{key}"] = round(am_f / gw_n, 1) if gw_n else None
            result[f"notification_reduction_{key}_with_resolutions"] = round(am_n / gw_r, 1) if gw_r else None
            result[f"notification_reduction_{key}_with_resolutions_vs_default_group_interval"] = (
                round(am_d / gw_r, 1) if gw_r else None
            )

        # Throughput: the same stream (new cluster labels => new fingerprints) to each server.
        if not storms_only:
            throughput_section(result, am_url, am_proc.pid, gw_url, auth, gw_proc.pid)
    recorder.stop()
    receiver.server.shutdown()
    receiver_default.server.shutdown()
    receiver_firing.server.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    result["targets_met"] = {}
    if not throughput_only:
        result["targets_met"]["notifications_10x_fewer_on_storms"] = (
            min(
                result["notification_reduction_storms"] or 0,
                result["notification_reduction_storms_with_resolutions"] or 0,
            )
            >= 10
        )
    if not storms_only:
        rates = result["alerts_per_second"]
        result["targets_met"]["ingest_rate_at_least_alertmanager_fresh"] = (
            rates["gpuwarden"]["fresh"] >= rates["alertmanager"]["fresh"]
        )
        result["targets_met"]["ingest_rate_at_least_alertmanager_repeat"] = (
            rates["gpuwarden"]["repeat"] >= rates["alertmanager"]["repeat"]
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS)
