"""The anomaly service's alerts reach `gpuwarden serve` as Prometheus' rule alerts do, through its outages."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry

from alerting.ingest import parse_json, parse_postable_alerts
from anomaly import forwarder as forwarder_module
from anomaly.forwarder import STATE_COMPONENT, AlertForwarder, alert_identity
from anomaly.service import AnomalyService
from anomaly.snapshot import Snapshot, load_snapshot, read_snapshot, save_snapshot
from gpuwarden.clock import FakeClock, rfc3339
from gpuwarden.config import ApiConfig
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import Alert, AlertStatus, RecommendedAction
from tests.anomaly.forwarder_serve import Serve, _resolved, _xid


def _forwarder(serve: Serve, clock: FakeClock, **kwargs: int) -> AlertForwarder:
    client = httpx.Client(transport=httpx.MockTransport(serve.handle))
    return AlertForwarder("http://serve:9700/", "t0ken", clock, resend_seconds=30, client=client, **kwargs)


def test_firing_alerts_are_reposted_every_tick_with_their_score_and_action() -> None:
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock)
    forwarder.on_alert(_xid("3", clock))
    assert forwarder.flush()
    clock.advance(30)
    assert forwarder.flush()
    assert len(serve.bodies) == 2  # Prometheus' semantics: a firing alert is sent again at each evaluation
    (item,) = serve.bodies[1]
    # four resends ahead, a resend being at least Prometheus' one minute: 4 x max(60, 30) s
    assert item["endsAt"] == (clock.now() + timedelta(seconds=240)).isoformat().replace("+00:00", "Z")
    (alert,) = parse_postable_alerts(serve.bodies[1])
    assert alert.score == 12.5 and alert.recommended_action is RecommendedAction.DRAIN_AND_RESET
    assert alert.labels["gpu"] == "3"


def test_serve_down_loses_no_resolution_and_posts_it_once_when_back() -> None:
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock)
    forwarder.on_alert(_xid("3", clock))
    forwarder.on_alert(_xid("5", clock))
    assert forwarder.flush()
    forwarder.on_alert(_xid("3", clock, AlertStatus.RESOLVED))
    serve.answers = [httpx.ConnectError("connection refused"), 503, 401]
    for _ in range(3):
        assert not forwarder.flush()
    assert forwarder.failures == 3 and len(forwarder.unsent_resolved) == 1
    assert forwarder.last_error is not None and forwarder.last_error.startswith("HTTP 401")
    assert forwarder.flush()  # serve is back
    assert forwarder.flush()
    resolved = [
        item
        for body in serve.bodies
        for item in body
        if item["labels"]["gpu"] == "3"  # type: ignore[index]
    ]
    assert len(resolved) == 2  # fired once, resolved once: the resolution is not sent again
    assert resolved[1]["endsAt"] == clock.now().isoformat().replace("+00:00", "Z")
    assert [item["labels"]["gpu"] for item in serve.bodies[-1]] == ["5"]  # type: ignore[index]


def test_an_alert_raised_and_cleared_while_serve_is_down_still_opens_an_incident_then_ends() -> None:
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock)
    raised = _xid("7", clock)
    forwarder.on_alert(raised)
    serve.answers = [httpx.ConnectError("connection refused")] * 5
    for _ in range(4):
        assert not forwarder.flush()
        clock.advance(30)
    cleared = _xid("7", clock, AlertStatus.RESOLVED)
    cleared = replace(cleared, starts_at=raised.starts_at)
    forwarder.on_alert(cleared)
    assert not forwarder.flush()
    clock.advance(30)
    assert forwarder.flush()  # serve is back
    (body,) = serve.bodies
    assert [item["labels"]["gpu"] for item in body] == ["7", "7"]  # type: ignore[index]
    # serve stores a first-seen resolved alert without opening an incident: it must see it fire first
    firing, resolved = parse_postable_alerts(body)
    now = clock.now()
    assert firing.ends_at is not None and firing.ends_at > now
    assert firing.starts_at == cleared.starts_at
    assert resolved.ends_at == cleared.ends_at and resolved.ends_at is not None and resolved.ends_at <= now
    assert forwarder.unsent_resolved == {}
    assert forwarder.flush()
    assert len(serve.bodies) == 1  # delivered once: nothing goes again


def test_resolutions_serve_never_received_outlive_a_restart_through_the_state_file(tmp_path) -> None:
    # Kept in memory only: an alert that fired and cleared while serve was down, `anomaly run` then restarted
    # (a graceful stop, its state saved), left no trace in serve, a hard fault forgotten.
    clock, serve = FakeClock(), Serve()
    before = _forwarder(serve, clock)
    before.on_alert(_xid("3", clock))
    assert before.flush()  # GPU 3's alert reached serve firing; GPU 7's never did
    serve.answers = [httpx.ConnectError("connection refused")] * 2
    before.on_alert(_xid("7", clock))
    assert not before.flush()
    clock.advance(30)
    before.on_alert(_xid("3", clock, AlertStatus.RESOLVED))
    before.on_alert(_xid("7", clock, AlertStatus.RESOLVED))
    assert not before.flush()
    saved = Snapshot(0.0, 0.0, {}, {}, {"k": 1}, {STATE_COMPONENT: before.state()})
    assert save_snapshot(tmp_path / "s.npz", saved)
    clock.advance(30)
    after = _forwarder(serve, clock)  # the restarted process, serve back
    after.take_up(read_snapshot(tmp_path / "s.npz", {"k": 1}))
    assert after.flush()
    posted = [(item["labels"]["gpu"], item["endsAt"] <= rfc3339(clock.now())) for item in serve.bodies[-1]]
    assert posted == [("3", True), ("7", False), ("7", True)]  # 7 fires, then ends; 3 only ends
    assert after.unsent_resolved == {} and after.flush() and len(serve.bodies) == 2  # nothing again


def test_the_services_snapshot_keeps_what_its_forwarder_has_not_delivered(tmp_path) -> None:
    # `anomaly run` hands the forwarder's state to the service (`kept_with`), whose saves keep it beside
    # what the detectors learnt; the next process's forwarder takes it up from the file.
    clock, serve = FakeClock(), Serve()
    cfg = AnomalyConfig(detectors=["signatures"])
    service = AnomalyService(cfg, [], clock)
    forwarder = _forwarder(serve, clock)
    service.kept_with[STATE_COMPONENT] = forwarder.state
    forwarder.on_alert(_resolved(_xid("2", clock), clock))
    assert save_snapshot(tmp_path / "s.npz", service.snapshot())
    later = _forwarder(serve, clock)
    later.take_up(load_snapshot(tmp_path / "s.npz", cfg))
    assert list(later.unsent_resolved.values()) == list(forwarder.unsent_resolved.values())


def test_a_resolution_of_an_alert_serve_saw_firing_goes_alone() -> None:
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock)
    forwarder.on_alert(_xid("7", clock))
    assert forwarder.flush()
    forwarder.on_alert(_xid("7", clock, AlertStatus.RESOLVED))
    serve.answers = [503]
    assert not forwarder.flush()
    assert forwarder.flush()
    assert len(serve.bodies[-1]) == 1
    (alert,) = parse_postable_alerts(serve.bodies[-1])
    assert alert.ends_at == clock.now()


def test_pairs_are_not_split_across_batches() -> None:
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock)
    for gpu in range(499):
        forwarder.on_alert(_xid(str(gpu), clock))
    forwarder.on_alert(_xid("x", clock, AlertStatus.RESOLVED))
    assert forwarder.flush()
    assert [len(body) for body in serve.bodies] == [499, 2]


def test_a_resolution_accepted_before_a_later_batch_failed_is_not_posted_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Posted again, it would reach serve as a firing copy then a resolution: an alert that fired twice.
    monkeypatch.setattr(forwarder_module, "BATCH", 2)
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock)
    forwarder.on_alert(_xid("0", clock, AlertStatus.RESOLVED))  # raised and cleared in a tick: one pair
    forwarder.on_alert(_xid("1", clock, AlertStatus.RESOLVED))
    serve.answers = [200, 503]  # gpu 0's pair is accepted, gpu 1's fails
    assert not forwarder.flush()
    assert [b["labels"]["gpu"] for b in serve.bodies[0]] == ["0", "0"]
    serve.bodies.clear()
    assert forwarder.flush()
    assert [b["labels"]["gpu"] for body in serve.bodies for b in body] == ["1", "1"]
    assert forwarder.flush()
    assert [len(body) for body in serve.bodies] == [2]


@pytest.mark.parametrize(
    "disconnected",
    [
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.WriteError("[Errno 32] Broken pipe"),
    ],
    ids=["closed", "reset", "broken-pipe"],
)
def test_a_post_the_server_dropped_without_answering_is_sent_again_at_once_once(
    disconnected: httpx.TransportError,
) -> None:
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock)
    registry = CollectorRegistry()
    registry.register(forwarder)
    forwarder.on_alert(_xid("3", clock))
    serve.answers = [disconnected]
    assert forwarder.flush()  # the keep-alive race: the second try on a new connection goes through
    assert len(serve.bodies) == 1 and forwarder.failures == 0
    assert registry.get_sample_value("gpuwarden_anomaly_alert_forward_retries_total") == 1
    serve.answers = [disconnected, disconnected]
    assert not forwarder.flush()  # twice in a row: not the race; the next tick tries again
    assert forwarder.failures == 1 and len(serve.bodies) == 1
    serve.answers = [httpx.ConnectError("connection refused"), 200]
    assert not forwarder.flush()  # serve down: not retried at once
    assert forwarder.failures == 2 and serve.answers == [200]


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += conn.recv(65536)


@contextmanager
def _server_resetting_its_second_request() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 whose first connection answers one request, then resets (RST) at the next
    one, as a server closing an idle keep-alive connection with that request unread does; later connections
    answer. The base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def run() -> None:
        first, _ = listener.accept()
        _read_request(first)
        first.sendall(ok)
        _read_request(first)
        first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        first.close()
        second, _ = listener.accept()
        with second:
            _read_request(second)
            second.sendall(ok[: -len(b"{}")].replace(b"OK\r\n", b"OK\r\nConnection: close\r\n") + b"{}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=10)


def test_a_reused_connection_reset_before_the_answer_is_posted_again_at_once() -> None:
    # The soak's one lost tick: "ReadError: [Errno 104] Connection reset by peer". serve closed the idle
    # keep-alive connection (api.keep_alive_seconds) as the tick's post arrived on it: the kernel answers
    # the unread request with a reset. Posting alerts is idempotent, so the post goes again on a new one.
    clock = FakeClock()
    with _server_resetting_its_second_request() as url:
        forwarder = AlertForwarder(url, "t0ken", clock, resend_seconds=5)
        forwarder.on_alert(_xid("3", clock))
        assert forwarder.flush()
        assert forwarder.flush(), forwarder.last_error  # on the kept connection, reset, then a new one
        forwarder.close()
    assert forwarder.retries == 1 and forwarder.failures == 0 and forwarder.posted == 2


def test_a_pooled_connection_expires_before_serve_could_close_it_idle() -> None:
    # serve closes a connection idle for api.keep_alive_seconds (at least 1 s); a client that reuses one
    # idle about as long races that close (4 of 600 posts failed with both at 0.1 s and a post every 0.1 s).
    shortest = next(m.ge for m in ApiConfig.model_fields["keep_alive_seconds"].metadata if hasattr(m, "ge"))
    assert shortest / 2 >= forwarder_module.KEEPALIVE_SECONDS


def test_an_alert_firing_again_before_its_resolution_was_sent_is_not_resolved() -> None:
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock)
    forwarder.on_alert(_xid("3", clock, AlertStatus.RESOLVED))
    forwarder.on_alert(_xid("3", clock))
    assert forwarder.unsent_resolved == {} and len(forwarder.firing) == 1


def test_a_re_raised_alert_reaches_serve_as_its_resolution_then_its_new_activity() -> None:
    # The anomaly service re-raises an open alert when a new fault begins under it: the old activity ends
    # where the new one starts. Posted as one firing alert, serve would take it for the same one, and no one
    # would hear of the new fault.
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock)
    first = _xid("3", clock)
    forwarder.on_alert(first)
    assert forwarder.flush()
    clock.advance(600)
    forwarder.on_alert(replace(_xid("3", clock, AlertStatus.RESOLVED), starts_at=first.starts_at))
    forwarder.on_alert(replace(first, starts_at=clock.now()))
    assert forwarder.flush()
    ended, again = parse_postable_alerts(serve.bodies[-1])
    assert ended.starts_at == first.starts_at and ended.ends_at == clock.now()
    assert again.starts_at == clock.now() and again.ends_at is not None and again.ends_at > clock.now()
    assert forwarder.unsent_resolved == {} and forwarder.flush()
    (still,) = parse_postable_alerts(serve.bodies[-1])  # then the new activity alone, firing
    assert still.starts_at == clock.now()


def test_a_body_serve_refuses_is_logged_not_retried_forever(caplog: pytest.LogCaptureFixture) -> None:
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock)
    forwarder.on_alert(_xid("3", clock, AlertStatus.RESOLVED))
    serve.answers = [400]
    assert forwarder.flush()
    assert forwarder.unsent_resolved == {}
    # It named "gpuwarden serve" whatever anomaly.alert_url is (an Alertmanager refuses bodies too).
    assert "alert forward to http://serve:9700/api/v2/alerts refused a batch, not retried" in caplog.text


def test_resolutions_past_the_limit_are_dropped_oldest_first_and_counted() -> None:
    clock, serve = FakeClock(), Serve()
    forwarder = _forwarder(serve, clock, max_unsent=2)
    for gpu in ("1", "2", "3"):
        forwarder.on_alert(_xid(gpu, clock, AlertStatus.RESOLVED))
    assert [a.labels["gpu"] for a in forwarder.unsent_resolved.values()] == ["2", "3"]
    registry = CollectorRegistry()
    registry.register(forwarder)
    assert registry.get_sample_value("gpuwarden_anomaly_alerts_dropped_total") == 1
    assert registry.get_sample_value("gpuwarden_anomaly_alerts_unsent") == 2
    assert forwarder.flush()
    # each goes firing then resolved: serve never saw them fire
    assert registry.get_sample_value("gpuwarden_anomaly_alerts_forwarded_total") == 4


def test_alerts_go_in_batches_with_the_bearer_token() -> None:
    clock, seen = FakeClock(), []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(
            (request.url.path, request.headers.get("authorization"), len(json.loads(request.content)))
        )
        return httpx.Response(200, json={})

    client = httpx.Client(transport=httpx.MockTransport(handle))  # no headers: the token is the forwarder's
    forwarder = AlertForwarder("http://serve:9700", "t0ken", clock, resend_seconds=30, client=client)
    for gpu in range(1200):
        forwarder.on_alert(_xid(str(gpu), clock))
    assert forwarder.flush()
    assert seen == [("/api/v2/alerts", "Bearer t0ken", n) for n in (500, 500, 200)]


def test_a_failed_forward_logs_the_url_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    clock, serve = FakeClock(), Serve()
    client = httpx.Client(transport=httpx.MockTransport(serve.handle))
    forwarder = AlertForwarder(
        "http://gw:S3cretPW@serve:9700/", "t0ken", clock, resend_seconds=30, client=client
    )
    forwarder.on_alert(_xid("3", clock))
    serve.answers = [503]
    assert not forwarder.flush()
    assert "alert forward to http://gw:***@serve:9700/api/v2/alerts failed" in caplog.text
    assert "S3cretPW" not in caplog.text


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(503, text="down"), httpx.Response(200, text="<html>"), httpx.Response(200, json=[{}])],
    ids=["error", "not_json", "not_alerts"],
)
def test_what_serve_holds_is_listed_by_fingerprint_or_none_when_it_cannot_say(
    answer: httpx.Response, caplog: pytest.LogCaptureFixture
) -> None:
    # A restarted `anomaly run` recalls only what serve still holds, each alert until its endsAt.
    clock = FakeClock()
    alert = _xid("3", clock)
    ends = clock.now() + timedelta(seconds=90)
    listed = [{"labels": dict(alert.labels), "endsAt": ends.isoformat().replace("+00:00", "Z")}]
    asked: list[httpx.Request] = []

    def listing(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json=listed)

    client = httpx.Client(transport=httpx.MockTransport(listing))
    forwarder = AlertForwarder("http://serve:9700/", "t0ken", clock, resend_seconds=30, client=client)
    assert forwarder.held() == {alert_identity(alert.labels): ends} == {alert.fingerprint: ends}
    assert [(r.method, r.url.path, r.headers["Authorization"]) for r in asked] == [
        ("GET", "/api/v2/alerts", "Bearer t0ken")
    ]
    client = httpx.Client(transport=httpx.MockTransport(lambda request: answer))
    assert (
        AlertForwarder("http://u:pw@serve:9700/", None, clock, resend_seconds=30, client=client).held()
        is None
    )
    assert "cannot list the alerts http://u:***@serve:9700/api/v2/alerts holds" in caplog.text
    assert "pw" not in caplog.text


def test_an_alert_serve_holds_without_an_informational_label_is_posted_on_under_the_labels_it_holds() -> None:
    # Thermal alerts gained deviation="up": one firing across that upgrade, posted with it, was a second
    # alert at serve (which fingerprints every label). Until it resolves it goes on under serve's labels;
    # raised after serve let it end (its endsAt passed), or after that activity resolved, it is new.
    clock = FakeClock()
    before = _xid("3", clock)
    upgraded = replace(before, labels={**before.labels, "deviation": "up"})
    ends = clock.now() + timedelta(seconds=90)
    listed = [{"labels": dict(before.labels), "endsAt": ends.isoformat()}]
    posted: list[list[dict[str, object]]] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=listed)
        posted.append(json.loads(request.content))
        return httpx.Response(200, json={})

    def started() -> AlertForwarder:
        client = httpx.Client(transport=httpx.MockTransport(receiver))
        forwarder = AlertForwarder("http://serve:9700/", None, clock, resend_seconds=30, client=client)
        assert forwarder.held() == {alert_identity(upgraded.labels): ends}
        return forwarder

    forwarder = started()
    forwarder.on_alert(upgraded)
    forwarder.on_alert(_resolved(upgraded, clock))
    forwarder.on_alert(replace(upgraded, starts_at=clock.now()))
    assert forwarder.flush()
    now = rfc3339(clock.now())
    old = [a["endsAt"] for body in posted for a in body if a["labels"] == before.labels]
    new = [a["endsAt"] for body in posted for a in body if a["labels"] == upgraded.labels]
    assert old[-1] == now, "the activity serve held ended under its labels"
    assert len(new) == 1 and new[0] > now, "the next one raised under its own"
    posted.clear()
    forwarder = started()
    clock.advance(91)
    forwarder.on_alert(upgraded)
    assert forwarder.flush()
    assert [a["labels"] for a in posted[0]] == [upgraded.labels]


def test_a_resolution_of_an_alert_serve_holds_under_other_labels_ends_that_alert() -> None:
    # Restarted from a snapshot after an upgrade, the ticks missed replay the end of an alert serve holds
    # without deviation (posted so since the upgrade): sent under its own labels, serve got a new alert
    # firing, then its end, while the one it held ran on to its endsAt.
    clock = FakeClock()
    before = _xid("3", clock)
    upgraded = replace(before, labels={**before.labels, "deviation": "up"})
    listed = [{"labels": dict(before.labels), "endsAt": (clock.now() + timedelta(seconds=90)).isoformat()}]
    posted: list[dict[str, object]] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=listed)
        posted.extend(json.loads(request.content))
        return httpx.Response(200, json={})

    client = httpx.Client(transport=httpx.MockTransport(receiver))
    forwarder = AlertForwarder("http://serve:9700/", None, clock, resend_seconds=30, client=client)
    assert forwarder.held()
    forwarder.on_alert(_resolved(upgraded, clock))
    assert forwarder.flush()
    assert {tuple(sorted(a["labels"].items())) for a in posted} == {tuple(sorted(before.labels.items()))}
    assert posted[-1]["endsAt"] == rfc3339(clock.now())


def test_a_label_serve_holds_without_only_for_its_empty_value_keeps_a_re_escalation_in_order() -> None:
    # serve drops empty-valued labels (as Alertmanager does) before it fingerprints, so an alert posted with
    # pod="" is held as the same alert without it. Taken for one held "under other labels", it was posted on
    # under serve's labels, and its re-escalation's resolution then went under those and the new activity
    # under its own: two fingerprints to the forwarder, one to serve, so the new activity was posted firing
    # before the old one's end and serve ended the alert while the fault went on.
    clock = FakeClock()
    own = _xid("3", clock)
    own = replace(own, labels={**own.labels, "pod": ""})
    held = {k: v for k, v in own.labels.items() if v}
    listed = [{"labels": held, "endsAt": (clock.now() + timedelta(seconds=90)).isoformat()}]
    posted: list[Alert] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=listed)
        posted.extend(parse_postable_alerts(parse_json(request.content), clock.now()))
        return httpx.Response(200, json={})

    client = httpx.Client(transport=httpx.MockTransport(receiver))
    forwarder = AlertForwarder("http://serve:9700/", None, clock, resend_seconds=30, client=client)
    assert forwarder.held()
    forwarder.on_alert(own)
    assert forwarder.flush()
    clock.advance(30)
    forwarder.on_alert(_resolved(own, clock))  # a re-escalation: the activity ends, a new one is raised
    forwarder.on_alert(replace(own, starts_at=clock.now()))
    assert forwarder.flush()
    assert {a.fingerprint for a in posted} == {alert_identity(own.labels)}, "one alert to serve"
    assert posted[-1].ends_at is not None and posted[-1].ends_at > clock.now(), "serve's last word: firing"
