"""A stand-in serve the forwarder posts to (one that lists what it holds too), a forwarder wired as `anomaly
run` wires it, and the alerts the forwarder tests post."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import httpx

from alerting.engine import IncidentEngine
from alerting.ingest import parse_json, parse_postable_alerts
from anomaly.forwarder import AlertForwarder
from anomaly.service import AnomalyService
from gpuwarden.alertmanager_api import gettable_alert
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertSource, AlertStatus, RecommendedAction


class Serve:
    """Stands in for `gpuwarden serve`'s POST /api/v2/alerts: records bodies, answers as scripted."""

    def __init__(self) -> None:
        self.bodies: list[list[dict[str, object]]] = []
        self.answers: list[int | Exception] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        if answer == 200:
            body = json.loads(request.content)
            parse_postable_alerts(parse_json(request.content))  # what serve would refuse, this test refuses
            self.bodies.append(body)
        return httpx.Response(answer, json={"error": "scripted"} if answer != 200 else {})


def _xid(gpu: str, clock: FakeClock, status: AlertStatus = AlertStatus.FIRING) -> Alert:
    return Alert(
        {"alertname": "GpuXid", "Hostname": "node-01", "gpu": gpu, "xid": "79"},
        status=status,
        starts_at=clock.now() - timedelta(seconds=30),
        ends_at=clock.now() if status is AlertStatus.RESOLVED else None,
        annotations={"summary": "XID 79: GPU has fallen off the bus"},
        source=AlertSource.ANOMALY,
        score=12.5,
        recommended_action=RecommendedAction.DRAIN_AND_RESET,
    )


def _resolved(alert: Alert, clock: FakeClock) -> Alert:
    return replace(alert, status=AlertStatus.RESOLVED, ends_at=clock.now())


def forwarding(
    service: AnomalyService, handler: Callable[[httpx.Request], httpx.Response], clock: FakeClock
) -> AlertForwarder:
    """A forwarder posting ``service``'s alerts to ``handler`` (serve's API, in process), wired as `anomaly
    run` wires it."""
    client = httpx.Client(transport=httpx.MockTransport(handler))
    forwarder = AlertForwarder("http://serve:9700", None, clock, resend_seconds=30, client=client)
    service.on_alert = forwarder.on_alert
    return forwarder


def deliver(serve: Serve, forwarder: AlertForwarder, engine: IncidentEngine) -> None:
    """After a tick of ``anomaly run``: the forwarder posts what it raised and resolved, and serve ingests
    each post and ticks, as over HTTP."""
    posted = len(serve.bodies)
    assert forwarder.flush()
    for body in serve.bodies[posted:]:
        engine.ingest(parse_postable_alerts(body))
    engine.tick()


class Listing(Serve):
    """``Serve`` that also lists what ``engine`` holds firing, as serve's ``GET /api/v2/alerts`` does."""

    def __init__(self, engine: IncidentEngine) -> None:
        super().__init__()
        self.engine = engine

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            return super().handle(request)
        now = self.engine.clock.now()
        rows = [r for r in self.engine.store.firing_alerts() if r.ends_at is None or r.ends_at > now]
        return httpx.Response(200, json=[gettable_alert(r, [], [], now) for r in rows])
