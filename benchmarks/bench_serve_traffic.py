"""Does ``gpuwarden serve`` grow under an operator's whole mix of HTTP traffic? One JSON line.

``bench_serve_rss.py`` POSTs alerts only. Here one ``serve`` (fresh SQLite store, the Slack stand-in and a
webhook receiver as its notifiers, in this process) is driven for ``--minutes`` with what a day brings, at a
rate that passes hours of it in minutes: Alertmanager-style ``POST /api/v2/alerts`` batches (``--alerts``
a second) flipping a fixed pool of label sets between firing and resolved, plus ``--fresh`` share of
never-seen label sets (a new ``job_id``) that fire once and resolve a few batches later; and between the
batches, by turns, incident lists and shows, postmortems, notes, acks, incident silences (``1m``) and
Alertmanager silences set then expired, ``GET /api/v2/alerts`` / groups / silences / status, the outbox
list, Alertmanager's webhook, ``/metrics`` scrapes and ``/-/ready`` probes on new connections. serve ticks
every ``--tick-seconds`` (0.5 s: ten times its default) with a ``--quiet-seconds`` quiet period, so incidents
open, announce, resolve and reopen all the time.

Its resident set is sampled every ``--sample-seconds``. ``--probe DIR`` runs serve with a hook that, at each
sample, collects garbage and appends to ``DIR/stats.jsonl`` SQLite's heap (``sqlite3_memory_used``), glibc's
``mallinfo2`` (arena, mmapped, in use, free), threads and live objects; with ``--tracemalloc`` it also starts
tracemalloc (10 frames) at the first sample and dumps a snapshot (``snap-NNN.pickle``) and live objects by
type (``types-NNN.json``) at each: compare two with ``tracemalloc.Snapshot.load(...).compare_to(...)``.
Ports come from ``GPUWARDEN_TEST_PORTS=LOW-HIGH``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--alerts", type=int, default=100, help="alerts POSTed a second")
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--fresh", type=float, default=0.1, help="share of alerts never seen before")
    parser.add_argument("--ops", type=int, default=20, help="other requests a second")
    parser.add_argument("--tick-seconds", type=float, default=0.5)
    parser.add_argument("--quiet-seconds", type=float, default=20)
    parser.add_argument("--sample-seconds", type=float, default=30)
    parser.add_argument("--probe", type=Path, default=None, metavar="DIR")
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    if args.tracemalloc and args.probe is None:
        parser.error("--tracemalloc: give --probe DIR, where its snapshots go")
    return args


if __name__ == "__main__":
    OPTIONS = _options()

import httpx  # noqa: E402 - imported after the command line is read

sys.path.insert(0, str(Path(__file__).parent))

from bench_handover import AUTH, GPUWARDEN, TOKEN, free_port, ready, wait_until  # noqa: E402
from bench_serve_rss import _pool, _rss_mib  # noqa: E402

from alerting.notifiers.recorder import SlackRecorder  # noqa: E402

HOOK = "soak"
SLACK_TOKEN_ENV = "BENCH_SLACK_TOKEN"
PROBE_HOOK = """
import ctypes, ctypes.util, gc, json, os, signal, sys, threading, tracemalloc
from collections import Counter
folder, trace = sys.argv.pop(1), sys.argv.pop(1) == "trace"
dumps = [0]
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
import sqlite3
sqlite = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
sqlite.sqlite3_memory_used.restype = ctypes.c_int64
def dump(signum, frame):
    gc.collect()
    dumps[0] += 1
    m = libc.mallinfo2()
    stats = {"sqlite_heap": sqlite.sqlite3_memory_used(), "malloc_arena": m.arena, "malloc_mmap": m.hblkhd,
             "malloc_in_use": m.uordblks, "malloc_free": m.fordblks, "threads": threading.active_count(),
             "gc_objects": len(gc.get_objects())}
    if trace:
        if not tracemalloc.is_tracing():
            tracemalloc.start(10)
        stats["traced"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.take_snapshot().dump(os.path.join(folder, "snap-%03d.pickle" % dumps[0]))
        kinds = Counter(type(o).__name__ for o in gc.get_objects())
        with open(os.path.join(folder, "types-%03d.json" % dumps[0]), "w") as f:
            json.dump(dict(kinds.most_common(400)), f)
    with open(os.path.join(folder, "stats.jsonl"), "a") as f:
        f.write(json.dumps(stats) + "\\n")
signal.signal(signal.SIGUSR1, dump)
from gpuwarden.cli import main
sys.argv[0] = "gpuwarden"
main()
"""


def _config(folder: Path, recorder: SlackRecorder, args: argparse.Namespace) -> Path:
    config = folder / "gpuwarden.yaml"
    config.write_text(
        f"alerting:\n  journal_dir: {folder / 'journal'}\n  tick_interval_seconds: {args.tick_seconds}\n"
        f"  quiet_period_seconds: {args.quiet_seconds}\n  announce_delay_seconds: 0\n"
        "  priority_settle_seconds: 0\n"
        f"slack:\n  bot_token: {{env: {SLACK_TOKEN_ENV}}}\n  channel: C0SOAK\n"
        f"  base_url: {recorder.base_url}\n  charts: false\n"
        f"webhooks:\n  - name: {HOOK}\n    url: {recorder.root_url}/hooks/{HOOK}\n"
        "    edit_interval_seconds: 5\n"
    )
    return config


class Traffic:
    """The requests of the mix, against serve at ``url``; what each answered, by route and status."""

    def __init__(self, url: str, args: argparse.Namespace) -> None:
        self.url = url
        self.args = args
        self.rng = random.Random(11)
        self.pool = _pool(args.pool)
        self.firing = [False] * len(self.pool)
        self.fresh: list[dict[str, str]] = []  # fresh alerts firing, resolved a few batches later
        self.fresh_count = 0
        self.incidents: list[str] = []
        self.silences: list[str] = []
        self.answers: Counter[str] = Counter()
        self.client = httpx.Client(base_url=url, headers=AUTH, timeout=120)
        self.sent = 0

    def call(self, name: str, method: str, path: str, *, fresh: bool = False, **kw: Any) -> httpx.Response:
        try:
            if fresh:  # a probe on a new connection, as a kubelet's
                with httpx.Client(base_url=self.url, headers=AUTH, timeout=120) as one:
                    response = one.request(method, path, **kw)
            else:
                response = self.client.request(method, path, **kw)
        except httpx.TransportError as exc:  # a timeout under load, a kept connection serve closed
            self.answers[f"{name} {type(exc).__name__}"] += 1
            return httpx.Response(599)
        self.answers[f"{name} {response.status_code}"] += 1
        return response

    def post_alerts(self, count: int) -> None:
        now = datetime.now(UTC)
        ended = (now - timedelta(seconds=1)).isoformat()
        batch: list[dict[str, Any]] = []
        for _ in range(count):
            if self.rng.random() < self.args.fresh:
                base = self.pool[self.rng.randrange(len(self.pool))]
                self.fresh_count += 1
                labels = {**base, "alertname": "GPUXid", "xid": "48", "job_id": str(self.fresh_count)}
                self.fresh.append(labels)
                batch.append({"labels": labels})
                continue
            k = self.rng.randrange(len(self.pool))
            self.firing[k] = not self.firing[k]
            alert: dict[str, Any] = {"labels": self.pool[k]}
            if not self.firing[k]:
                alert["endsAt"] = ended
            batch.append(alert)
        while len(self.fresh) > 50:
            batch.append({"labels": self.fresh.pop(0), "endsAt": ended})
        self.call("post_alerts", "POST", "/api/v2/alerts", json=batch)
        self.sent += len(batch)

    def webhook(self) -> None:
        labels = self.pool[self.rng.randrange(len(self.pool))]
        status = self.rng.choice(["firing", "resolved"])
        body = {
            "version": "4",
            "groupKey": "{}:{}",
            "status": status,
            "receiver": "gpuwarden",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://am:9093",
            "alerts": [{"status": status, "labels": labels, "annotations": {}, "startsAt": "", "endsAt": ""}],
        }
        self.call("webhook", "POST", "/api/v1/webhook/alertmanager", json=body)

    def incident(self) -> str | None:
        return self.rng.choice(self.incidents) if self.incidents else None

    def other(self) -> None:
        """One request of the rest of the mix, drawn by weight."""
        op = self.rng.choices(list(OPS), weights=[w for w, _ in OPS.values()])[0]
        OPS[op][1](self)

    def list_incidents(self) -> None:
        params = self.rng.choice([{"limit": "50"}, {"state": "triggered"}, {"priority": "P1"}, {}])
        response = self.call("list", "GET", "/api/v1/incidents", params=params)
        if response.status_code == 200:
            ids = [i["id"] for i in response.json()]
            self.incidents = ids[:200] or self.incidents

    def show(self, what: str = "") -> None:
        incident = self.incident()
        if incident is not None:
            self.call(f"show{what}", "GET", f"/api/v1/incidents/{incident}{what}")

    def act(self, action: str, body: dict[str, str]) -> None:
        incident = self.incident()
        if incident is not None:
            self.call(action, "POST", f"/api/v1/incidents/{incident}/{action}", json={**body, "by": "soak"})

    def set_silence(self) -> None:
        now = datetime.now(UTC)
        node = self.pool[self.rng.randrange(len(self.pool))]["node"]
        body = {
            "matchers": [{"name": "node", "value": node, "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(seconds=60)).isoformat(),
            "createdBy": "soak",
            "comment": f"soak {self.sent}",
        }
        response = self.call("silence_post", "POST", "/api/v2/silences", json=body)
        if response.status_code == 200:
            self.silences.append(response.json()["silenceID"])

    def expire_silence(self) -> None:
        if len(self.silences) > 5:
            self.call("silence_delete", "DELETE", f"/api/v2/silence/{self.silences.pop(0)}")


OPS: dict[str, tuple[float, Any]] = {
    "list": (4, Traffic.list_incidents),
    "show": (4, Traffic.show),
    "postmortem": (1, lambda t: t.show("/postmortem")),
    "note": (2, lambda t: t.act("notes", {"text": f"looked at it ({t.sent})"})),
    "ack": (1, lambda t: t.act("ack", {})),
    "mitigate": (1, lambda t: t.act("mitigate", {"action": "draining"})),
    "incident_silence": (0.5, lambda t: t.act("silence", {"duration": "1m"})),
    "silence_post": (1, Traffic.set_silence),
    "silence_delete": (1, Traffic.expire_silence),
    "alerts": (2, lambda t: t.call("alerts", "GET", "/api/v2/alerts")),
    "groups": (1, lambda t: t.call("groups", "GET", "/api/v2/alerts/groups")),
    "silences": (1, lambda t: t.call("silences", "GET", "/api/v2/silences")),
    "status": (0.5, lambda t: t.call("status", "GET", "/api/v2/status")),
    "outbox": (1, lambda t: t.call("outbox", "GET", "/api/v1/outbox")),
    "ingest": (1, lambda t: t.call("ingest", "GET", "/api/v1/ingest/status")),
    "webhook": (1, Traffic.webhook),
    "metrics": (2, lambda t: t.call("metrics", "GET", "/metrics")),
    "ready": (2, lambda t: t.call("ready", "GET", "/-/ready", fresh=True)),
    "healthz": (1, lambda t: t.call("healthz", "GET", "/healthz", fresh=True)),
    "unknown": (0.2, lambda t: t.call("unknown", "GET", f"/api/v1/nope{t.rng.randrange(10**6)}")),
}


def _drive(traffic: Traffic, proc: subprocess.Popen[bytes], args: argparse.Namespace) -> list[list[float]]:
    """The mix for ``args.minutes``, in 100 ms steps; ``[seconds, RSS MiB]`` at each sample."""
    samples = [[0.0, _rss_mib(proc.pid)]]
    began = time.monotonic()
    step = began
    next_sample = began + args.sample_seconds
    owed = 0.0
    while (now := time.monotonic()) < began + args.minutes * 60:
        if args.alerts > 0:
            traffic.post_alerts(max(1, args.alerts // 10))
        owed += args.ops / 10
        while owed >= 1:
            traffic.other()
            owed -= 1
        if now >= next_sample:
            if args.probe is not None:
                proc.send_signal(signal.SIGUSR1)
            samples.append([round(now - began), round(_rss_mib(proc.pid), 1)])
            next_sample += args.sample_seconds
        step += 0.1
        time.sleep(max(0.0, step - time.monotonic()))
    samples.append([round(time.monotonic() - began), round(_rss_mib(proc.pid), 1)])
    return samples


def _slope(samples: list[list[float]], share: float) -> float:
    """MiB a minute over the last ``share`` of the run (least squares)."""
    tail = [s for s in samples if s[0] >= samples[-1][0] * (1 - share)]
    if len(tail) < 2:
        return 0.0
    mx = sum(s[0] for s in tail) / len(tail)
    my = sum(s[1] for s in tail) / len(tail)
    den = sum((s[0] - mx) ** 2 for s in tail)
    return 60 * sum((s[0] - mx) * (s[1] - my) for s in tail) / den if den else 0.0


def _probed(folder: Path) -> list[dict[str, float]]:
    """The hook's lines, sizes in MiB."""
    lines = (json.loads(line) for line in (folder / "stats.jsonl").read_text().splitlines())
    return [
        {k: v if k in ("threads", "gc_objects") else round(v / 2**20, 1) for k, v in s.items()} for s in lines
    ]


def main(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="bench-serve-traffic-") as tmp,
        SlackRecorder(port=free_port()) as recorder,
    ):
        work = Path(tmp)
        port = free_port()
        argv = [GPUWARDEN]
        if args.probe is not None:
            args.probe.mkdir(parents=True, exist_ok=True)
            trace = "trace" if args.tracemalloc else "-"
            argv = [sys.executable, "-c", PROBE_HOOK, str(args.probe), trace]
        argv += ["serve", "--config", str(_config(work, recorder, args)), "--port", str(port)]
        argv += ["--db", str(work / "gw.db")]
        env = {**os.environ, "GPUWARDEN_API_TOKEN": TOKEN, SLACK_TOKEN_ENV: recorder.token}
        with (work / "serve.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        traffic = Traffic(f"http://127.0.0.1:{port}", args)
        try:
            wait_until(lambda: ready(port), proc, "serve", timeout=600)
            samples = _drive(traffic, proc, args)
        finally:
            traffic.client.close()
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:  # under tracemalloc a stop can take longer
                proc.kill()
                proc.wait()
        slack = len(recorder.calls)
        hooks = len(recorder.hook_posts(HOOK))
    probed = _probed(args.probe) if args.probe is not None else []
    print(
        json.dumps(
            {
                "bench": "serve_traffic",
                "minutes": args.minutes,
                "tick_seconds": args.tick_seconds,
                "alerts_sent": traffic.sent,
                "fresh_alerts": traffic.fresh_count,
                "requests": sum(traffic.answers.values()),
                "answers": dict(sorted(traffic.answers.items())),
                "slack_calls": slack,
                "webhook_posts": hooks,
                "rss_mib": samples,
                "mib_per_minute_last_half": round(_slope(samples, 0.5), 3),
                "probe_mib": probed,
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)
