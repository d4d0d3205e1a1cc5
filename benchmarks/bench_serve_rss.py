"""Does a long ``gpuwarden serve`` grow under a steady alert stream? One JSON line.

One ``serve`` on a fresh SQLite store; ``--rate`` alerts a second (default 200) are POSTed to
``/api/v2/alerts`` in batches every 100 ms for ``--minutes`` (default 15). The alerts come from a fixed
pool (``--pool`` label sets: node, GPU and XID alerts over 8 racks), each batch drawn at random and each
alert in it flipping between firing and resolved, so incidents open, go quiet, resolve (a short quiet period:
``--quiet-seconds``, default 60) and reopen all the time, with a bounded set of alerts. Its resident set
(``VmRSS``) is sampled every minute: with a bounded pool it should level off, not grow.

Figures: RSS in MiB at each minute, the growth from the first full minute to the end, alerts sent.
Ports come from ``GPUWARDEN_TEST_PORTS=LOW-HIGH`` when set.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--pool", type=int, default=4000)
    parser.add_argument("--quiet-seconds", type=float, default=60)
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import httpx  # noqa: E402 - imported after the command line is read
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from bench_handover import AUTH, GPUWARDEN, TOKEN, free_port, ready, wait_until  # noqa: E402


def _pool(size: int) -> list[dict[str, str]]:
    """``size`` alert label sets on nodes of 8 racks: nodes down, GPUs lost, XIDs."""
    pool = []
    for k in range(size):
        node = {"cluster": "c1", "rack": f"r{k % 8}", "node": f"n{k // 4:04d}"}
        kind = k % 4
        if kind == 0:
            pool.append({"alertname": "NodeDown", **node})
        elif kind == 1:
            pool.append({"alertname": "GPULost", **node, "gpu": str(k % 8)})
        else:
            pool.append(
                {"alertname": "GPUXid", **node, "gpu": str(k % 8), "xid": "79" if kind == 2 else "13"}
            )
    return pool


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _stream(port: int, proc: subprocess.Popen[bytes], args: argparse.Namespace) -> tuple[list[float], int]:
    """POST the stream for ``args.minutes``; the RSS at the start and after each minute, and alerts sent."""
    rng = random.Random(7)
    pool = _pool(args.pool)
    firing = [False] * len(pool)
    per_batch = max(1, args.rate // 10)
    samples = [_rss_mib(proc.pid)]
    sent = 0
    began = time.monotonic()
    next_sample = began + 60
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=30) as client:
        tick = began
        while (now := time.monotonic()) < began + args.minutes * 60:
            batch = []
            for k in rng.sample(range(len(pool)), per_batch):
                firing[k] = not firing[k]
                alert: dict[str, object] = {"labels": pool[k]}
                if not firing[k]:
                    alert["endsAt"] = "2020-01-01T00:00:00Z"  # in the past: resolved
                batch.append(alert)
            client.post("/api/v2/alerts", json=batch).raise_for_status()
            sent += len(batch)
            if now >= next_sample:
                samples.append(_rss_mib(proc.pid))
                next_sample += 60
            tick += 0.1
            time.sleep(max(0.0, tick - time.monotonic()))
    samples.append(_rss_mib(proc.pid))
    return samples, sent


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-serve-rss-") as tmp:
        work = Path(tmp)
        config = work / "gw.yml"
        config.write_text(yaml.safe_dump({"alerting": {"quiet_period_seconds": args.quiet_seconds}}))
        port = free_port()
        env = {**os.environ, "GPUWARDEN_API_TOKEN": TOKEN}
        argv = [GPUWARDEN, "serve", "--config", str(config), "--port", str(port), "--db", str(work / "gw.db")]
        with (work / "serve.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until(lambda: ready(port), proc, "serve")
            samples, sent = _stream(port, proc, args)
        finally:
            proc.terminate()
            proc.wait(60)
    first = samples[1] if len(samples) > 2 else samples[0]
    print(
        json.dumps(
            {
                "bench": "serve_rss",
                "minutes": args.minutes,
                "alerts_per_second": args.rate,
                "alerts_sent": sent,
                "pool": args.pool,
                "rss_mib_each_minute": [round(s, 1) for s in samples],
                "growth_after_first_minute_mib": round(samples[-1] - first, 1),
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)
