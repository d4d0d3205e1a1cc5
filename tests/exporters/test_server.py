"""The HTTP app: content negotiation, cached scrapes, health, and fault routes only when simulating."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from exporters.collection import CollectionLoop
from exporters.nvml_collector import NvmlCollector
from exporters.server import create_app, wants_openmetrics
from exporters.xid import XidLedger, XidWatcher
from gpuwarden.clock import FakeClock
from gpuwarden.sim import SimNvml, parse_fault

from .conftest import NODE


class AsgiClient:
    """A synchronous client over httpx's ASGI transport (no server, no network)."""

    def __init__(self, app: Starlette) -> None:
        self._app = app

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._request("POST", url, **kwargs)


def loop_for(nvml: SimNvml, clock: FakeClock) -> CollectionLoop:
    loop = CollectionLoop([NvmlCollector(nvml, hostname=NODE)], clock=clock, interval=5, deadline=5)
    loop.run_once()
    return loop


def test_metrics_negotiates_openmetrics_and_falls_back_to_text(nvml: SimNvml, clock: FakeClock) -> None:
    client = AsgiClient(create_app(loop_for(nvml, clock)))
    text = client.get("/metrics")
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "DCGM_FI_DEV_GPU_UTIL{" in text.text
    om = client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"}
    )
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")


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
    assert len(gzip.compress(raw)) < len(raw)


def test_healthz_reports_stale_hosts(nvml: SimNvml, clock: FakeClock) -> None:
    loop = CollectionLoop([NvmlCollector(nvml, hostname=NODE)], clock=clock, interval=5, deadline=0.2)
    loop.run_once()
    client = AsgiClient(create_app(loop))
    assert client.get("/healthz").json()["status"] == "ok"
    nvml.hang("nvmlDeviceGetTemperature", 60)
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
    assert not wants_openmetrics("application/openmetrics-text;q=0, text/plain")
    assert not wants_openmetrics("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert not wants_openmetrics("")


def test_healthz_shows_each_xid_watcher_and_degrades_without_one(nvml: SimNvml, clock: FakeClock) -> None:
    ledger = XidLedger()
    watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
    collector = NvmlCollector(nvml, hostname=NODE, xids=ledger, watcher=watcher)
    loop = CollectionLoop([collector], clock=clock, interval=5, deadline=5)
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
    loop = loop_for(nvml, clock)  # interval 5, deadline 5
    client = AsgiClient(create_app(loop))
    clock.advance(15)
    assert client.get("/healthz").status_code == 200  # late, within three intervals plus a deadline
    clock.advance(10)
    reply = client.get("/healthz")
    assert reply.status_code == 503 and reply.json()["status"] == "stalled"
