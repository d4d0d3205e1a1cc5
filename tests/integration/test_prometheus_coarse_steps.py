"""A query answered on a coarser step than asked, read from a real Prometheus (``anomaly.coarsesteps``).

GPU up/down samples every 60 s are backfilled (``promtool tsdb create-blocks-from openmetrics``) into a
Prometheus started on them, so no scrape is waited for. Read at step 30 s through ``last_over_time(x[30s])``
(what a short ``--query.lookback-delta`` does to every query) every other step of the answer is empty; read
as a plain selector, Prometheus' default 5-minute lookback fills every step, as ``last_over_time(x[60s])``
(the lookback the warning advises) does. A second metric holds the same GPUs scraped from two hosts 30 s
apart (n1's at 7 s past each minute, n2's at 37 s): read that way, every step answers one host's series and
each series is absent from every other step.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator

import pytest

from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from gpuwarden.model import AlertStatus
from tests.integration.servers import free_port, prometheus_argv, require_binary, running

pytestmark = pytest.mark.integration

UP = "gpuwarden_gpu_up"
STEP = 30.0
START = FakeClock().time() - 7200  # the backfilled samples: two hours, one a minute, 7 s past the minute
LOST, BACK = START + 3600, START + 4800  # GPU-2 reads 0 from its sample after LOST to its last before BACK
PHASED = "gpuwarden_gpu_up_phased"  # another name: the module's other reads keep their four series
READS = {
    "every step filled": UP,  # the default 5-minute lookback carries each sample over the next steps
    "every other step empty": f"last_over_time({UP}[30s])",  # a sample seen only at the step after it
    "the lookback the warning advises": f"last_over_time({UP}[60s])",
}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus holding the backfilled samples, for the module's tests."""
    folder = tmp_path_factory.mktemp("coarse")
    lines = [f"# TYPE {UP} gauge"]
    for t in range(int(START) + 7, int(START) + 7200, 60):
        for gpu in range(4):
            up = 0 if gpu == 2 and LOST <= t < BACK else 1
            lines.append(f'{UP}{{UUID="GPU-{gpu}",Hostname="n1",gpu="{gpu}"}} {up} {t}')
    lines.append(f"# TYPE {PHASED} gauge")
    for t in range(int(START) + 7, int(START) + 7200, 30):
        host = 1 + (t - int(START)) % 60 // 30  # n1 at 7 s past the minute, n2 at 37 s
        for gpu in range(2 * host - 2, 2 * host):
            up = 0 if gpu == 2 and LOST <= t < BACK else 1
            lines.append(f'{PHASED}{{UUID="GPU-{gpu}",Hostname="n{host}",gpu="{gpu}"}} {up} {t}')
    (folder / "samples.om").write_text("\n".join([*lines, "# EOF", ""]))
    promtool = require_binary("promtool")
    argv = [promtool, "tsdb", "create-blocks-from", "openmetrics", "samples.om", "tsdb"]
    subprocess.run(argv, cwd=folder, check=True, capture_output=True, timeout=60)
    (folder / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")  # nothing to scrape
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = prometheus_argv(folder / "prometheus.yml", port)
    with running(argv, f"{url}/-/ready", folder / "prometheus.log"):
        yield url


def lost_and_back(url: str, expr: str) -> tuple[list[tuple[str, str, AlertStatus, float]], PromQLSource]:
    """GpuLost raised and resolved reading ``expr`` as gpu_up, and the source that read it: warmed up on the
    hour before the loss, then read every 30 s until 20 minutes after the GPU is back."""
    clock = FakeClock(LOST - 60)
    config = AnomalyConfig(
        infer_every_seconds=STEP,
        queries=[AnomalyQueryConfig(name=UP, expr=expr, step_seconds=STEP)],
        detectors=["signatures"],
        immediate_resolve_after=1,
    )
    source = PromQLSource(url, [PromQuery(UP, expr, STEP)], clock)
    service = AnomalyService(config, [source], clock)
    events = []
    try:
        service.warm_up()
        while clock.time() < BACK + 1200:
            clock.advance(STEP)
            result = service.infer()
            for alert in (*result.raised, *result.resolved):
                events.append((alert.labels["alertname"], alert.labels["UUID"], alert.status, clock.time()))
    finally:
        source.close()
    return events, source


@pytest.mark.parametrize("expr", READS.values(), ids=READS.keys())
def test_a_lost_gpu_read_from_prometheus_fires_once_and_resolves_once(prometheus, expr, caplog):
    # Warmed up on the hour before the loss, then read every 30 s until 20 minutes after the GPU is back.
    # Read every other step empty, before anomaly.coarsesteps, GpuLost (immediate_resolve_after 1) resolved
    # at each empty step and fired again at the next one.
    caplog.set_level(logging.WARNING, logger="anomaly")
    events, source = lost_and_back(prometheus, expr)
    # Each sample, 7 s past its minute, is first read at the step 23 s later, in both reads: GpuLost fires
    # there and resolves at the first read of the GPU back, with nothing between.
    assert events == [
        ("GpuLost", "GPU-2", AlertStatus.FIRING, LOST + 30),
        ("GpuLost", "GPU-2", AlertStatus.RESOLVED, BACK + 30),
    ]
    coarse = expr == READS["every other step empty"]
    assert source.coarse.seen == ({UP: 60.0} if coarse else {})
    told = [r.getMessage() for r in caplog.records if "answers on a" in r.getMessage()]
    assert len(told) == coarse
    if coarse:  # it advises a lookback, not the step seen: read at step 60 this answers nothing at all
        assert told[0].startswith(f"promql: query {UP} answers on a 60s step, not the 30s asked")
        assert "look back at least 60s (last_over_time(...[60s])" in told[0]


def test_a_lost_gpu_whose_host_is_scraped_at_the_other_phase_fires_once_and_resolves_once(prometheus, caplog):
    # Read at step 30 with a 30 s lookback, n1's series answer at the half minutes and n2's on the minutes:
    # no step of the query is empty, so nothing was seen as coarse, and GpuLost on n2 resolved at each half
    # minute and fired again at each minute, 20 times over the 20 minutes the GPU was lost.
    expr = f"last_over_time({PHASED}[30s])"
    caplog.set_level(logging.WARNING, logger="anomaly")
    events, source = lost_and_back(prometheus, expr)
    # GPU-2's samples, 37 s past the minute, are read at the next minute; between, at its last answer.
    assert events == [
        ("GpuLost", "GPU-2", AlertStatus.FIRING, LOST + 60),
        ("GpuLost", "GPU-2", AlertStatus.RESOLVED, BACK + 60),
    ]
    assert (source.coarse.seen, source.coarse.series_seen) == ({}, {UP: 60.0})
    told = [r.getMessage() for r in caplog.records if "answer on a 60s step" in r.getMessage()]
    assert len(told) == 1
