"""A scrape of ``anomaly run``'s ``/metrics`` on a large fleet: one JSON line.

``bench_anomaly.py``'s fleet (``--gpus`` GPUs, default 10,000, x 25 series, in 16-GPU Slurm jobs) scored by
every built-in detector for 4 ticks (the multivariate model fitted after the third), then ``/metrics``' body
made as the HTTP handler makes it (``gpuwarden.cli.anomaly_http.metrics_body``: the scores and bands written
by ``AnomalyCollector.render_bands``, then the service's own families), for Prometheus' scrape ``Accept``
header (OpenMetrics) and for a plain one (the text format):

* ``scrape_seconds`` / ``scrape_text_seconds``: the first scrape of the tick in each format (rendered);
* ``scrape_again_seconds``: a second scrape of the same tick (an HA pair's other Prometheus), from the cache;
* ``scrape_gzip_seconds``: then one asking for gzip as Prometheus does (the cached bands compressed, once a
  tick), ``scrape_gzip_again_seconds`` a second such, ``gzip_bytes`` its body;
* ``library_seconds``: what ``/metrics`` cost before: prometheus_client's encoder over the collector's samples
  (``collect()``), for the same header; ``identical``: whether both wrote the same bytes (left out, null,
  with ``--skip-library``: 13.5 s at 10,000 GPUs);
* ``scrape_peak_rss_growth_mb``: how far the first scrape raised the process' peak RSS (MiB; 0 where
  scoring had peaked higher);
* ``samples`` and ``bytes`` of the OpenMetrics body.
"""

from __future__ import annotations

import argparse


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer at once
    rather than after seconds of imports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpus", type=int, default=10_000, help="GPUs of the fleet (25 series each)")
    parser.add_argument("--skip-library", action="store_true", help="do not time prometheus_client's encoder")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_anomaly import FleetCollector  # noqa: E402 - first: it sets numpy to one thread before importing it
from prometheus_client import CollectorRegistry  # noqa: E402
from prometheus_client.exposition import choose_encoder  # noqa: E402

from anomaly.service import AnomalyService  # noqa: E402
from anomaly.sources import CollectorSource  # noqa: E402
from gpuwarden.cli.anomaly_http import metrics_body  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config_anomaly import AnomalyConfig  # noqa: E402

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def scored_service(gpus: int) -> AnomalyService:
    """The fleet scored for 4 ticks, every built-in detector on every series."""
    clock = FakeClock()
    exporter = FleetCollector(jobs=True, gpus=gpus)
    cfg = AnomalyConfig(adaptive_metrics=["*"], fleet_queries=exporter.names[:5])
    service = AnomalyService(cfg, [CollectorSource([exporter], clock)], clock)
    for tick in range(4):
        clock.advance(30)
        service.infer()
        if tick == 2:
            service.fit()
    return service


def _timed(
    accept: str, service: AnomalyService, registry: CollectorRegistry, encoding: str = ""
) -> tuple[float, bytes]:
    start = time.perf_counter()
    chunks, _, _ = metrics_body(service, registry, accept, encoding)  # the handler writes them in turn
    return time.perf_counter() - start, b"".join(chunks)


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    service = scored_service(args.gpus)
    status = CollectorRegistry()
    status.register(service.collector.status)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    first, body = _timed(PROMETHEUS_ACCEPT, service, status)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # KiB on Linux
    again, _ = _timed(PROMETHEUS_ACCEPT, service, status)
    zipped, gz_body = _timed(PROMETHEUS_ACCEPT, service, status, "gzip")
    zipped_again, _ = _timed(PROMETHEUS_ACCEPT, service, status, "gzip")
    text, _ = _timed("", service, status)
    library: float | None = None
    identical: bool | None = None
    if not args.skip_library:
        whole = CollectorRegistry()
        whole.register(service.collector)
        encoder, _ = choose_encoder(PROMETHEUS_ACCEPT)
        start = time.perf_counter()
        before = encoder(whole)
        library = round(time.perf_counter() - start, 3)
        identical = before == body
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    print(
        json.dumps(
            {
                "benchmark": "scrape",
                "gpus": args.gpus,
                "scrape_seconds": round(first, 3),
                "scrape_text_seconds": round(text, 3),
                "scrape_again_seconds": round(again, 4),
                "scrape_peak_rss_growth_mb": round(grown, 1),
                "scrape_gzip_seconds": round(zipped, 3),
                "scrape_gzip_again_seconds": round(zipped_again, 4),
                "gzip_bytes": len(gz_body),
                "library_seconds": library,
                "identical": identical,
                "samples": samples,
                "bytes": len(body),
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)
