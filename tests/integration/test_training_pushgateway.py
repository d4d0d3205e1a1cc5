"""A simulated training job pushes per-rank metrics to a real Pushgateway scraped by a real Prometheus:
a straggler shows up as one slow rank, a hung rank as a job whose progress stops. The same happens when
``gpuwarden exporter --simulate`` runs the fleet with ``tracing.pushgateway_url`` set, and a rank served
for scraping carries the labels its pushed group has."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporters.training import TrainingMetrics
from exporters.training_sim import SimTrainingAdapter
from gpuwarden.clock import FakeClock
from gpuwarden.sim import FaultSpec, build_fleet
from tests.integration import http_probe
from tests.integration.gpuwarden_server import gpuwarden_argv
from tests.integration.servers import free_port, prometheus_argv, require_binary, running

pytestmark = pytest.mark.integration


def query(prom: str, expr: str) -> dict[str, float]:
    """Instant query; the result keyed by the ``rank`` label."""
    r = http_probe.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    return {s["metric"].get("rank", ""): float(s["value"][1]) for s in r.json()["data"]["result"]}


def wait_until(prom: str, expr: str, check: object, timeout: float = 20.0) -> dict[str, float]:
    """Poll ``expr`` until ``check(result)`` holds (Prometheus scrapes the gateway every second)."""
    deadline = time.monotonic() + timeout
    result: dict[str, float] = {}
    while time.monotonic() < deadline:
        result = query(prom, expr)
        if callable(check) and check(result):
            return result
        time.sleep(0.3)
    raise AssertionError(f"{expr} never satisfied the check; last result {result}")


def scraping_the_gateway(tmp_path: Path, gateway: str) -> Path:
    """A Prometheus configuration that scrapes the Pushgateway at ``gateway`` every second, labels kept."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: pushgateway\n    honor_labels: true\n"
        f"    static_configs: [{{targets: ['{gateway}']}}]\n"
    )
    return config


def test_simulated_job_metrics_reach_prometheus_through_the_pushgateway(tmp_path: Path) -> None:
    pg_port, prom_port = free_port(), free_port()
    gateway = f"127.0.0.1:{pg_port}"
    prom = f"http://127.0.0.1:{prom_port}"
    config = scraping_the_gateway(tmp_path, gateway)
    pushgateway = [
        require_binary("prometheus-pushgateway"),
        f"--web.listen-address={gateway}",
        f"--persistence.file={tmp_path / 'pushgateway.db'}",
    ]
    prometheus = [
        require_binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    clock = FakeClock(time.time())
    fleet = build_fleet(2, 4, seed=5, clock=clock)
    [job] = fleet.training_jobs()
    slow_rank, slow_gpu = next(iter(job.ranks.items()))
    hung_rank, hung_gpu = list(job.ranks.items())[-1]
    adapter = SimTrainingAdapter(fleet, pushgateway=gateway)
    selector = f'{{job="{job.name}",namespace="{job.namespace}"}}'

    with (
        running(pushgateway, f"http://{gateway}/-/ready", tmp_path / "pushgateway.log"),
        running(prometheus, f"{prom}/-/ready", tmp_path / "prometheus.log"),
    ):
        fleet.inject(FaultSpec("straggler", slow_gpu.node, slow_gpu.index, params={"factor": 0.5}))
        clock.advance(30.0)
        adapter.sync()
        assert adapter.push()
        ranks = {str(r) for r in job.ranks}
        steps = wait_until(prom, f"gpuwarden_training_steps_total{selector}", lambda r: set(r) == ranks)
        assert set(steps.values()) == {float(job.steps_completed)}
        slowest = query(prom, f"topk(1, gpuwarden_training_compute_seconds{selector})")
        assert list(slowest) == [str(slow_rank)]
        buckets = f"gpuwarden_training_step_duration_seconds_bucket{selector}"
        [step_p50] = query(prom, f"histogram_quantile(0.5, sum by (le) ({buckets}))").values()
        assert step_p50 > job.base_step_seconds  # the straggler slows every step

        fleet.inject(FaultSpec("hung", hung_gpu.node, hung_gpu.index))
        clock.advance(2.0)
        adapter.sync()
        stalled_at = job.last_progress_time(0)
        clock.advance(300.0)
        adapter.sync()
        assert adapter.push()
        hung = wait_until(
            prom,
            f"gpuwarden_training_compute_seconds{selector} == +Inf",
            lambda r: list(r) == [str(hung_rank)],
        )
        assert hung
        stalled = query(
            prom, f"{clock.time()} - gpuwarden_training_last_progress_timestamp_seconds{selector}"
        )
        assert set(stalled) == ranks
        assert all(v >= 300.0 for v in stalled.values())
        progress = query(prom, f"gpuwarden_training_last_progress_timestamp_seconds{selector}")
        assert set(progress.values()) == {stalled_at}


def pushgateway(tmp_path: Path) -> tuple[list[str], str]:
    """The argv of a real Pushgateway on a free port, and its address."""
    address = f"127.0.0.1:{free_port()}"
    argv = [
        require_binary("prometheus-pushgateway"),
        f"--web.listen-address={address}",
        f"--persistence.file={tmp_path / 'pushgateway.db'}",
    ]
    return argv, address


def gateway_samples(address: str, job: str) -> dict[str, dict[str, float]]:
    """What the Pushgateway exposes for ``job``: metric name -> rank -> value."""
    body = http_probe.get(f"http://{address}/metrics", timeout=5).text
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.labels.get("job") == job and "rank" in sample.labels:
                found.setdefault(sample.name, {})[sample.labels["rank"]] = sample.value
    return found


def wait_for_gateway(
    address: str, job: str, check: Callable[[dict[str, dict[str, float]]], bool], what: str
) -> dict[str, dict[str, float]]:
    """Poll the Pushgateway until ``check`` holds on the job's samples (it is fed every 0.5 s)."""
    deadline = time.monotonic() + 60.0
    seen: dict[str, dict[str, float]] = {}
    while time.monotonic() < deadline:
        seen = gateway_samples(address, job)
        if check(seen):
            return seen
        time.sleep(0.25)
    raise AssertionError(f"the Pushgateway never showed {what}; last: {seen}")


def test_exporter_simulate_pushes_its_training_jobs_when_a_pushgateway_is_configured(tmp_path: Path) -> None:
    gateway_argv, gateway = pushgateway(tmp_path)
    port = free_port()
    exporter = f"http://127.0.0.1:{port}"
    config = tmp_path / "gpuwarden.yaml"
    config.write_text(f"tracing:\n  pushgateway_url: http://{gateway}/\n  push_interval_seconds: 0.5\n")
    exporter_argv = [
        *gpuwarden_argv(), "exporter", "--simulate", "2x4", "--port", str(port),
        "--listen-address", "127.0.0.1", "--config", str(config),
    ]  # fmt: skip
    [job] = build_fleet(2, 4, seed=0, clock=FakeClock()).training_jobs()  # the exporter's placement
    ranks = {str(r) for r in job.ranks}
    slow_rank, slow_gpu = next(iter(job.ranks.items()))
    hung_rank, hung_gpu = list(job.ranks.items())[-1]

    def inject(kind: str, node: str, gpu: int, **params: float) -> None:
        fault = {"kind": kind, "node": node, "gpu": gpu, "params": params}
        http_probe.post(f"{exporter}/sim/faults", json=fault, timeout=5).raise_for_status()

    with (
        running(gateway_argv, f"http://{gateway}/-/ready", tmp_path / "pushgateway.log"),
        running(exporter_argv, f"{exporter}/healthz", tmp_path / "exporter.log"),
    ):
        steps = "gpuwarden_training_steps_total"
        wait_for_gateway(
            gateway,
            job.name,
            lambda s: set(s.get(steps, {})) == ranks and min(s[steps].values()) >= 1,
            "steps",
        )
        inject("straggler", slow_gpu.node, slow_gpu.index, factor=0.5)
        compute = "gpuwarden_training_compute_seconds"

        def one_slow_rank(s: dict[str, dict[str, float]]) -> bool:
            by_rank = s.get(compute, {})
            others = [v for r, v in by_rank.items() if r != str(slow_rank)]
            return set(by_rank) == ranks and by_rank[str(slow_rank)] > 1.5 * max(others)

        wait_for_gateway(gateway, job.name, one_slow_rank, "one slow rank")

        inject("hung", hung_gpu.node, hung_gpu.index)
        hung = wait_for_gateway(
            gateway,
            job.name,
            lambda s: math.isinf(s.get(compute, {}).get(str(hung_rank), 0.0)),
            "a hung rank",
        )
        assert [r for r, v in hung[compute].items() if math.isinf(v)] == [str(hung_rank)]
        progress = "gpuwarden_training_last_progress_timestamp_seconds"
        pushed = "push_time_seconds"
        stalled_at = hung[progress]
        later = wait_for_gateway(  # two more pushes of every rank: the job stays stalled
            gateway,
            job.name,
            lambda s: all(s[pushed][r] > hung[pushed][r] + 0.9 for r in ranks),
            "later pushes",
        )
        assert later[progress] == stalled_at
        assert later[steps] == hung[steps]
        assert len(set(stalled_at.values())) == 1  # every rank stopped at the same moment
        started = later["gpuwarden_training_step_started_timestamp_seconds"]
        assert set(started) == ranks and all(time.time() - v > 1.0 for v in started.values())


def test_a_served_rank_has_the_labels_of_its_pushed_group(tmp_path: Path) -> None:
    gateway_argv, gateway = pushgateway(tmp_path)
    with running(gateway_argv, f"http://{gateway}/-/ready", tmp_path / "pushgateway.log"):
        metrics = TrainingMetrics("labels-job", namespace="research", pushgateway=gateway)
        with metrics.step_timer(rank=2):
            metrics.report(samples=4)
        assert metrics.flush(timeout=30)
        port = metrics.serve(2, 0)
        try:
            served = http_probe.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            metrics.close()
        body = http_probe.get(f"http://{gateway}/metrics", timeout=5).text

    def labels(text: str) -> dict[str, str]:
        [sample] = [
            s
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "gpuwarden_training_steps_total" and s.labels.get("job") == "labels-job"
        ]
        return {k: v for k, v in sample.labels.items() if v}  # the gateway's instance="" is no label

    assert labels(served) == labels(body) == {"job": "labels-job", "namespace": "research", "rank": "2"}


def test_a_pushgateway_behind_a_route_prefix_takes_pushes_to_its_base_url_with_the_prefix(
    tmp_path: Path,
) -> None:
    """A path in tracing.pushgateway_url is a prefix (--web.route-prefix, reverse proxy), not a push path."""
    port = free_port()
    pushgateway = [
        require_binary("prometheus-pushgateway"),
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.route-prefix=/pgw",
        f"--persistence.file={tmp_path / 'pushgateway.db'}",
    ]
    with running(pushgateway, f"http://127.0.0.1:{port}/pgw/-/ready", tmp_path / "pushgateway.log"):
        metrics = TrainingMetrics("prefixed", rank=0, pushgateway=f"http://127.0.0.1:{port}/pgw/")
        with metrics.step_timer():
            pass
        assert metrics.flush(timeout=30)
        metrics.close()
        text = http_probe.get(f"http://127.0.0.1:{port}/pgw/metrics", timeout=5).text
        steps = [
            s
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "gpuwarden_training_steps_total"
        ]
        assert [(s.labels["job"], s.labels["rank"], s.value) for s in steps] == [("prefixed", "0", 1.0)]


# bcrypt (cost 4) of "s3cr@t:pw", as the Pushgateway's --web.config.file wants it (made with Python's crypt
# module, METHOD_BLOWFISH): the password has an @ and a :, written %40 and %3A in the URL.
TRAINER_HASH = "$2b$04$HySHZGpChUW6dS8BWe15dOagzzV9NK3N.uSmy3kmBxxnrC1Fq8waq"


def test_a_pushgateway_behind_basic_auth_takes_pushes_with_the_credentials_of_its_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """urllib (push_to_gateway) took ``user:password@host`` for the host's name: every push failed."""
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  trainer: {TRAINER_HASH}\n")
    address = f"127.0.0.1:{free_port()}"
    argv = [
        require_binary("prometheus-pushgateway"),
        f"--web.listen-address={address}",
        f"--web.config.file={web}",
        f"--persistence.file={tmp_path / 'pushgateway.db'}",
    ]
    authed = f"http://trainer:s3cr%40t%3Apw@{address}"
    with running(argv, f"{authed}/-/ready", tmp_path / "pushgateway.log"):
        assert http_probe.get(f"http://{address}/metrics", timeout=5).status_code == 401  # it does check
        metrics = TrainingMetrics("authed", rank=0, pushgateway=f"{authed}/")
        with metrics.step_timer():
            pass
        with caplog.at_level(logging.WARNING, logger="exporters.training_export"):
            assert metrics.flush(timeout=30), caplog.text
        metrics.close()
        text = http_probe.get(f"{authed}/metrics", timeout=5).text
    steps = [
        (s.labels["job"], s.labels["rank"], s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gpuwarden_training_steps_total"
    ]
    assert steps == [("authed", "0", 1.0)]
    assert metrics.pushgateway == f"http://{address}"  # what it pushes to: the password is not in it


# The README's hung-step and stalled-job queries, at a threshold of 0 s: what they would say 600 s on.
FINISHED = "unless on (job, namespace, rank) gpuwarden_training_finished_timestamp_seconds"
HUNG = f"time() - gpuwarden_training_step_started_timestamp_seconds > 0 {FINISHED}"
STALLED = (
    f"time() - max by (job, namespace) (gpuwarden_training_last_progress_timestamp_seconds {FINISHED}) > 0"
)


def test_a_run_that_finished_is_neither_hung_nor_stalled_while_its_groups_stay_on_the_pushgateway(
    tmp_path: Path,
) -> None:
    """The Pushgateway keeps a group after its job ends: a finished run's last progress read as a stall."""
    gateway_argv, gateway = pushgateway(tmp_path)
    prom_port = free_port()
    prom = f"http://127.0.0.1:{prom_port}"
    config = scraping_the_gateway(tmp_path, gateway)

    def run(job: str, crash: bool) -> None:
        with (
            pytest.raises(RuntimeError) if crash else contextlib.nullcontext(),
            TrainingMetrics(job, namespace="research", pushgateway=gateway) as metrics,
        ):
            for rank in (0, 1):
                with metrics.step_timer(rank=rank) as step:
                    step.compute_done()
                    metrics.report(samples=8, loss=1.0)
            if crash:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def jobs(expr: str) -> set[tuple[str, str]]:
        r = http_probe.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
        r.raise_for_status()
        return {(s["metric"]["job"], s["metric"].get("rank", "")) for s in r.json()["data"]["result"]}

    with (
        running(gateway_argv, f"http://{gateway}/-/ready", tmp_path / "pushgateway.log"),
        running(prometheus_argv(config, prom_port), f"{prom}/-/ready", tmp_path / "prometheus.log"),
    ):
        run("finished", crash=False)
        run("crashed", crash=True)
        deadline = time.monotonic() + 20.0
        while len(jobs('gpuwarden_training_steps_total{job=~"finished|crashed"}')) < 4:
            assert time.monotonic() < deadline, "Prometheus never scraped both jobs' ranks"
            time.sleep(0.3)
        assert jobs(HUNG) == {("crashed", "0"), ("crashed", "1")}
        assert jobs(STALLED) == {("crashed", "")}


def test_pushes_failed_while_the_gateway_was_down_raise_the_readmes_alert_once_it_is_back(
    tmp_path: Path,
) -> None:
    """The README's alert on failed pushes, ``increase(gpuwarden_training_push_failures_total[15m]) > 0``:
    the failures are counted in the process and reach Prometheus with the first push after the outage."""
    gateway_argv, gateway = pushgateway(tmp_path)
    prom_port = free_port()
    prom = f"http://127.0.0.1:{prom_port}"
    config = scraping_the_gateway(tmp_path, gateway)
    failures = "gpuwarden_training_push_failures_total"
    metrics = TrainingMetrics(
        "failing-pushes", namespace="research", rank=0, pushgateway=gateway, push_timeout=1
    )
    with running(prometheus_argv(config, prom_port), f"{prom}/-/ready", tmp_path / "prometheus.log"):
        with running(gateway_argv, f"http://{gateway}/-/ready", tmp_path / "pushgateway.log"):
            with metrics.step_timer():
                metrics.report(samples=8)
            assert metrics.flush(timeout=30)
            assert wait_until(prom, failures, lambda r: r == {"0": 0.0})
        for _ in range(3):  # the gateway is down: every push fails, and is counted
            with metrics.step_timer():
                metrics.report(samples=8)
            assert metrics.flush(timeout=30) is False
        assert metrics.push_failures >= 3
        with running(gateway_argv, f"http://{gateway}/-/ready", tmp_path / "pushgateway-again.log"):
            assert metrics.flush(timeout=30)
            alert = wait_until(prom, f"increase({failures}[15m]) > 0", lambda r: list(r) == ["0"])
            assert alert["0"] >= 3
            metrics.close()
