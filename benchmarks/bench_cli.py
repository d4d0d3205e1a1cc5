"""How fast the ``gpuwarden`` CLI answers: one JSON line.

Wall time of whole processes, as an operator sees them, each run 5 times after one untimed run (which warms
the page cache): ``gpuwarden --help``; ``gpuwarden incidents list --output json`` against a real ``gpuwarden
serve`` (started here on a free port with a temporary SQLite database and one incident in it);
``gpuwarden config validate deploy/gpuwarden.example.yaml`` (its secret references set to dummy values).
Also ``import gpuwarden.cli`` as ``python -X importtime`` reports it, and the bare interpreter's start
(``python -c pass``), which no change to gpuwarden can remove. Each figure: median and best, in seconds
(import in milliseconds).

``--incidents N`` (N > 1) stores N incidents instead (one NodeDown each, on clusters of their own, posted in
batches of 1,000) and times only ``incidents list --limit 0``, as a table and as JSON, written to a pipe.
``--compare-pythonpath DIR`` times the same listings with ``PYTHONPATH=DIR`` too (another checkout: the
code before a change), alternating with this tree's run by run on the one serve, as a loaded machine needs;
``--runs`` sets how many runs each; ``--port`` serve's port (a free one by default).
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
    """The command line, read before the heavy imports below (httpx, ``bench_incidents``'s): ``--help`` and
    an unknown option answer at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=1, help="incidents to list (default 1)")
    parser.add_argument("--compare-pythonpath", default="", help="another checkout to time, alternately")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command (default 5)")
    parser.add_argument("--port", type=int, default=0, help="serve's port (default: a free one)")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

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
def serve(work: Path, env: dict[str, str], incidents: int = 1, port: int = 0) -> Iterator[str]:
    """A ``gpuwarden serve`` on ``port`` (a free one for 0) with ``incidents`` incidents stored (a NodeDown
    each, on clusters of their own); yields its base URL."""
    port = port or bench.free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [GPUWARDEN, "serve", "--port", str(port), "--db", str(work / "gw.db")]
    with bench.process(argv, f"{url}/healthz", work / "serve.log", env):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        alerts = [ALERT] if incidents == 1 else [_down(i) for i in range(incidents)]
        for i in range(0, len(alerts), 1000):
            batch = alerts[i : i + 1000]
            httpx.post(f"{url}/api/v2/alerts", json=batch, headers=auth, timeout=600).raise_for_status()
        deadline = time.monotonic() + 30 + incidents / 100
        while int(_stored(url)) < incidents:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gpuwarden serve stored fewer than {incidents} incidents in time")
            time.sleep(0.5)
        yield url


def _down(i: int) -> dict[str, dict[str, str]]:
    """A NodeDown alone on its own cluster: an incident of its own."""
    return {"labels": {**ALERT["labels"], "cluster": f"c{i:05d}"}}


def _stored(url: str) -> str:
    """How many incidents serve lists (its ``X-Total-Count``)."""
    answer = httpx.get(f"{url}/api/v1/incidents", params={"limit": 1}, timeout=60)
    return answer.headers.get("X-Total-Count", str(len(answer.json())))


def listings(url: str, env: dict[str, str], runs: int, before: str) -> dict[str, object]:
    """``incidents list --limit 0`` as a table and as JSON, written to a pipe; with ``before`` (a checkout's
    folder) the same with ``PYTHONPATH=before``, run for run in turn with this tree's."""
    trees = {"after": env, **({"before": {**env, "PYTHONPATH": before}} if before else {})}
    samples: dict[str, list[float]] = {}
    printed: dict[str, set[bytes]] = {}
    for i in range(runs + 1):
        for output in ("table", "json"):
            argv = [GPUWARDEN, "incidents", "list", "--url", url, "--limit", "0", "--output", output]
            for name, tree_env in trees.items():
                start = time.perf_counter()
                proc = subprocess.run(argv, capture_output=True, env=tree_env, check=True)
                if i > 0:
                    samples.setdefault(f"{output}_{name}", []).append(time.perf_counter() - start)
                printed.setdefault(output, set()).add(proc.stdout)
    same = {f"{output}_same_output": len(outs) == 1 for output, outs in printed.items()}
    return {**{key: summary(values) for key, values in sorted(samples.items())}, **same}


def main(incidents: int = 1, before: str = "", runs: int = RUNS, port: int = 0) -> None:
    env = {**os.environ, **SECRETS}
    if incidents > 1:
        with (
            tempfile.TemporaryDirectory(prefix="gpuwarden-bench-cli-") as tmp,
            serve(Path(tmp), env, incidents, port) as url,
        ):
            listed = listings(url, env, runs, before)
        print(json.dumps({"benchmark": "cli_listing", "incidents": incidents, "runs": runs, **listed}))
        return
    result: dict[str, object] = {"benchmark": "cli", "runs": RUNS, "unit": "seconds (import_ms: ms)"}
    result["python_startup"] = wall_times([sys.executable, "-c", "pass"], env)
    result["import_ms"] = import_ms(env)
    result["help"] = wall_times([GPUWARDEN, "--help"], env)
    with (
        tempfile.TemporaryDirectory(prefix="gpuwarden-bench-cli-") as tmp,
        serve(Path(tmp), env, port=port) as url,
    ):
        result["incidents_list"] = wall_times(
            [GPUWARDEN, "incidents", "list", "--url", url, "--output", "json"], env
        )
    # The example's store is the deployment's /var/lib/gpuwarden, which config validate checks exists here.
    example_env = {**env, "GPUWARDEN_API__DB": os.path.join(tempfile.gettempdir(), "gpuwarden-example.db")}
    result["config_validate"] = wall_times([GPUWARDEN, "config", "validate", str(EXAMPLE)], example_env)
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS.incidents, OPTIONS.compare_pythonpath, OPTIONS.runs, OPTIONS.port)
