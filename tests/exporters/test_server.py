"""The HTTP app: content negotiation, cached scrapes, health, and fault routes only when simulating."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from exporters.collection import CollectionLoop
from exporters.nvml_collector import NvmlCollector
from exporters.server import accepts_gzip, create_app, wants_openmetrics
from exporters.xid import XidLedger, XidWatcher
from gpuwarden.clock import FakeClock
from gpuwarden.sim import SimNvml, parse_fault
from tests.exporters.asgi_client import AsgiClient

from .collection_loops import loop_for
from .conftest import NODE

PROMETHEUS_ACCEPT = (  # what Prometheus 2.x sends
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


def test_metrics_serves_the_text_format_to_prometheus_so_dcgm_counters_stay_counters(
    nvml: SimNvml, clock: FakeClock
) -> None:
    # Through OpenMetrics, which Prometheus prefers, NVIDIA's counter names (no _total) can only be typed
    # unknown; Prometheus then stored all 15 DCGM counters as unknown. dcgm-exporter serves text only.
    client = AsgiClient(create_app(loop_for(nvml, clock)))
    for accept in ("", PROMETHEUS_ACCEPT, "text/plain;version=0.0.4"):
        reply = client.get("/metrics", headers={"Accept": accept})
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n" in reply.text
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.text.endswith("# EOF\n")


def test_an_openmetrics_version_other_than_1_0_0_gets_text(nvml: SimNvml, clock: FakeClock) -> None:
    client = AsgiClient(create_app(loop_for(nvml, clock)))
    reply = client.get("/metrics", headers={"Accept": "application/openmetrics-text;version=0.0.1;q=0.5"})
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_a_scrape_serves_the_cache_without_calling_nvml(nvml: SimNvml, clock: FakeClock) -> None:
    loop = loop_for(nvml, clock)
    client = AsgiClient(create_app(loop))
    first = client.get("/metrics").content
    nvml.fail("nvmlDeviceGetCount", RuntimeError)  # any NVML call now would blow up
    assert client.get("/metrics").content == first


def test_gzip_is_served_when_asked(nvml: SimNvml, clock: FakeClock) -> None:
    client = AsgiClient(create_app(loop_for(nvml, clock)))
    raw = client.get("/metrics", headers={"Accept-Encoding": "identity"}).content
    zipped = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == raw  # httpx decodes it
    assert zipped.headers["vary"] == "Accept, Accept-Encoding"  # no cache hands it to a plain scraper
    assert len(gzip.compress(raw)) < len(raw)


def test_healthz_reports_stale_hosts(nvml: SimNvml, clock: FakeClock) -> None:
    # The deadline is real time: 30 s for the collection that must finish (not waited out), 0.2 s for the
    # one over the hung call (late however fast the machine): 0.2 s for both could mark the first stale.
    loop = CollectionLoop([NvmlCollector(nvml, hostname=NODE)], clock=clock, interval=5, deadline=30)
    loop.run_once()
    client = AsgiClient(create_app(loop))
    assert client.get("/healthz").json()["status"] == "ok"
    nvml.hang("nvmlDeviceGetTemperature", 60)
    loop.deadline = 0.2
    try:
        loop.run_once()
        reply = client.get("/healthz")
        assert reply.status_code == 503  # a probe and an alert see it
        body = reply.json()
        assert body["status"] == "stale" and body["stale_hosts"] == [NODE] and body["ticks"] == 2
        assert NODE in body["reasons"][0]
        scrape = client.get("/metrics")  # answers from the cache while the NVML call hangs
        assert (
            scrape.status_code == 200 and f'gpuwarden_exporter_stale{{Hostname="{NODE}"}} 1\n' in scrape.text
        )
    finally:
        nvml.release_hangs()


def test_sim_fault_routes_exist_only_when_mounted(nvml: SimNvml, clock: FakeClock) -> None:
    loop = loop_for(nvml, clock)
    plain = AsgiClient(create_app(loop))
    assert plain.post("/sim/faults", json={"kind": "xid"}).status_code in (404, 405)

    async def faults(request: object) -> PlainTextResponse:
        return PlainTextResponse("mounted", status_code=201)

    simulated = AsgiClient(create_app(loop, extra_routes=[Route("/sim/faults", faults, methods=["POST"])]))
    assert simulated.post("/sim/faults", json={}).status_code == 201


def test_accept_header_parsing() -> None:
    assert wants_openmetrics("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert wants_openmetrics("application/openmetrics-text")
    assert wants_openmetrics("application/openmetrics-text, text/plain;q=0")
    assert not wants_openmetrics("application/openmetrics-text;q=0, text/plain")
    assert not wants_openmetrics(PROMETHEUS_ACCEPT)
    assert not wants_openmetrics("application/openmetrics-text;version=0.0.1")
    assert not wants_openmetrics("application/openmetrics-text;version=2.0.0, text/plain;version=1.0.0")
    assert not wants_openmetrics("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert not wants_openmetrics("")


@pytest.mark.parametrize(
    ("header", "gzip"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("*", True),
        ("gzip;q=0, identity", False),
        ("gzip;q=0.0", False),
        ("*;q=0", False),
        ("gzip;q=0.5, *;q=0", True),
        ("identity", False),
        ("", False),
        ("xgzip", False),
    ],
)
def test_gzip_is_chosen_by_its_q_value_not_by_a_substring(header: str, gzip: bool) -> None:
    assert accepts_gzip(header) is gzip


def test_gzip_q_zero_gets_an_uncompressed_body(nvml: SimNvml, clock: FakeClock) -> None:
    client = AsgiClient(create_app(loop_for(nvml, clock)))
    reply = client.get("/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in reply.headers


def test_healthz_shows_each_xid_watcher_and_degrades_without_one(nvml: SimNvml, clock: FakeClock) -> None:
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    loop = CollectionLoop([collector], clock=clock, interval=5, deadline=30)
    loop.run_once()
    client = AsgiClient(create_app(loop, xid_watchers={NODE: watcher}))
    body = client.get("/healthz").json()
    assert body["status"] == "degraded"  # never started: no event set, XIDs are not seen
    assert body["xid_watchers"][NODE]["watching"] is False
    watcher.register()
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["xid_watchers"][NODE] == {"watching": True, "gpus": 8, "errors": 0, "last_error": ""}


def test_healthz_fails_when_nvml_answers_nothing_and_recovers(
    nvml: SimNvml, fleet: Any, clock: FakeClock
) -> None:
    loop = loop_for(nvml, clock)
    client = AsgiClient(create_app(loop))
    fleet.inject(parse_fault({"kind": "node_down", "node": NODE}))
    clock.advance(5)
    loop.run_once()
    reply = client.get("/healthz")
    assert reply.status_code == 503 and reply.json()["status"] == "nvml_unavailable"
    fleet.reboot_node(NODE)
    clock.advance(5)
    loop.run_once()
    assert client.get("/healthz").status_code == 200


def test_healthz_fails_when_the_collection_loop_stops_ticking(nvml: SimNvml, clock: FakeClock) -> None:
    loop = loop_for(nvml, clock)
    loop.deadline = 5  # interval 5, deadline 5: stalled past 3 intervals plus a deadline (fake clock)
    client = AsgiClient(create_app(loop))
    clock.advance(15)
    assert client.get("/healthz").status_code == 200  # late, within three intervals plus a deadline
    clock.advance(10)
    reply = client.get("/healthz")
    assert reply.status_code == 503 and reply.json()["status"] == "stalled"


@pytest.mark.parametrize("accept", ["text/plain", "application/openmetrics-text; version=1.0.0"])
def test_a_scrape_s_compression_runs_off_the_event_loop(
    nvml: SimNvml, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, accept: str
) -> None:
    """gzip of a large exposition (163 ms for 32x8 simulated GPUs) ran on the event loop on the first scrape
    after each collection, holding every other scrape and /healthz for as long."""
    on_loop: list[bool] = []
    compress = gzip.compress

    def watched(data: bytes, compresslevel: int = 9) -> bytes:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return compress(data, compresslevel=compresslevel)

    monkeypatch.setattr("exporters.exposition.gzip.compress", watched)
    client = AsgiClient(create_app(loop_for(nvml, clock)))
    reply = client.get("/metrics", headers={"Accept-Encoding": "gzip", "Accept": accept})
    assert reply.headers["content-encoding"] == "gzip"
    assert reply.content.startswith(b"# HELP")
    assert on_loop == [False]


@pytest.mark.parametrize(("path", "location"), [("/metrics/", "../metrics"), ("/healthz/", "../healthz")])
def test_a_trailing_slash_is_redirected_relative_so_a_proxy_s_prefix_and_https_are_kept(
    nvml: SimNvml, clock: FakeClock, path: str, location: str
) -> None:
    # Starlette's Location was absolute, from Host: behind a proxy serving the exporter under /exporter,
    # /exporter/metrics/ was sent to http://proxy/metrics, outside the prefix (the proxy's 404).
    client = AsgiClient(create_app(loop_for(nvml, clock)))
    reply = client.get(path, headers={"Host": "proxy.example"})
    assert (reply.status_code, reply.headers["location"]) == (307, location)
    missing = client.get("/nothing/")
    assert (missing.status_code, missing.text) == (404, "Not Found")
