"""How fast the ``gpuwarden`` CLI answers: one JSON line.

Wall time of whole processes, as an operator sees them, each run 5 times after one untimed run (which warms
the page cache): ``gpuwarden --help``; ``gpuwarden incidents list --output json`` against a real ``gpuwarden
serve`` (started here on a free port with a temporary SQLite database and one incident in it);
``gpuwarden config validate deploy/gpuwarden.example.yaml`` (its secret references set to dummy values).
Also ``import gpuwarden.cli`` as ``python -X importtime`` reports it, and the bare interpreter's start
(``python -c pass``), which no change to gpuwarden can remove. Each figure: median and best, in seconds
(import in milliseconds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def _options() -> argparse.Namespace:
    """The command line (no option), read before the heavy imports below (httpx, ``bench_incidents``'s):
    ``--help`` and an unknown option answer at once rather than after seconds of imports."""
    return argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()


if __name__ == "__main__":
    _options()

import httpx  # noqa: E402 - imported after the command line is read

sys.path.insert(0, str(Path(__file__).parent))

import bench_incidents as bench  # noqa: E402 - its server start-up and free port

RUNS = 5
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "gpuwarden.example.yaml"
GPUWARDEN = str(Path(sys.executable).with_name("gpuwarden"))
TOKEN = "bench-token"
SECRETS = {"GPUWARDEN_API_TOKEN": TOKEN, "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": "bench"}
ALERT = {"labels": {"alertname": "NodeDown", "cluster": "c1", "rack": "r01", "node": "r01-n01"}}


def summary(samples: Sequence[float], digits: int = 3) -> dict[str, float]:
    return {"median": round(statistics.median(samples), digits), "best": round(min(samples), digits)}


def wall_times(argv: Sequence[str], env: dict[str, str]) -> dict[str, float]:
    """Median and best wall time of ``argv`` over RUNS runs; each run must exit 0."""
    samples = []
    for i in range(RUNS + 1):
        start = time.perf_counter()
        proc = subprocess.run(list(argv), capture_output=True, env=env, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
        if i > 0:
            samples.append(elapsed)
    return summary(samples)


def import_ms(env: dict[str, str]) -> dict[str, float]:
    """Cumulative ``import gpuwarden.cli`` time from ``-X importtime`` (its last line), median and best."""
    samples = []
    for _ in range(RUNS + 1):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import gpuwarden.cli"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        last = proc.stderr.strip().splitlines()[-1]  # "import time: self | cumulative | gpuwarden.cli"
        samples.append(int(last.split("|")[1]) / 1000)
    return summary(samples[1:], 1)


@contextmanager
def serve(work: Path, env: dict[str, str]) -> Iterator[str]:
    """A ``gpuwarden serve`` on a free port with one incident stored; yields its base URL."""
    port = bench.free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [GPUWARDEN, "serve", "--port", str(port), "--db", str(work / "gw.db")]
    with bench.process(argv, f"{url}/healthz", work / "serve.log", env):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        httpx.post(f"{url}/api/v2/alerts", json=[ALERT], headers=auth, timeout=10).raise_for_status()
        deadline = time.monotonic() + 30
        while not httpx.get(f"{url}/api/v1/incidents", timeout=1).json():
            if time.monotonic() > deadline:
                raise RuntimeError("gpuwarden serve stored no incident in 30 s")
            time.sleep(0.1)
        yield url


def main() -> None:
    env = {**os.environ, **SECRETS}
    result: dict[str, object] = {"benchmark": "cli", "runs": RUNS, "unit": "seconds (import_ms: ms)"}
    result["python_startup"] = wall_times([sys.executable, "-c", "pass"], env)
    result["import_ms"] = import_ms(env)
    result["help"] = wall_times([GPUWARDEN, "--help"], env)
    with tempfile.TemporaryDirectory(prefix="gpuwarden-bench-cli-") as tmp, serve(Path(tmp), env) as url:
        result["incidents_list"] = wall_times(
            [GPUWARDEN, "incidents", "list", "--url", url, "--output", "json"], env
        )
    # The example's store is the deployment's /var/lib/gpuwarden, which config validate checks exists here.
    example_env = {**env, "GPUWARDEN_API__DB": os.path.join(tempfile.gettempdir(), "gpuwarden-example.db")}
    result["config_validate"] = wall_times([GPUWARDEN, "config", "validate", str(EXAMPLE)], example_env)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
