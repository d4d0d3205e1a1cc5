"""What a ``serve --standby`` answers while another serve holds the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from alerting.instance_lock import InstanceBusy
from gpuwarden.cli import app
from gpuwarden.standby_api import StandbyState, standby_app
from tests.gpuwarden.api_client import route_httpx
from tests.gpuwarden.cli.built_runner import BuiltCliRunner

HOLDER = "pid 4242 on node-a, started 2026-01-01T00:00:00+00:00"


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    state = StandbyState()
    state.waiting(InstanceBusy(f"store {tmp_path / 'gw.db'}", HOLDER))
    return TestClient(standby_app(state))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/incidents"),
        ("POST", "/api/v1/incidents/inc-1/ack"),
        ("GET", "/api/v1/ingest/status"),
        ("GET", "/no/such/path"),
        ("GET", "/"),
    ],
    ids=["list", "ack", "ingest-status", "unknown-path", "root"],
)
def test_every_api_request_is_refused_naming_the_active_server(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    said = response.json()["error"]
    assert said.startswith("this serve is a standby and takes no requests")
    assert HOLDER in said and "send requests to the active one" in said


def test_an_alert_post_is_refused_as_alertmanager_answers_so_amtool_and_prometheus_print_it(
    client: TestClient,
) -> None:
    response = client.post("/api/v2/alerts", json=[{"labels": {"alertname": "NodeDown"}}])
    assert response.status_code == 503
    assert isinstance(response.json(), str) and HOLDER in response.json()


def test_a_standby_is_alive_but_not_ready(client: TestClient) -> None:
    for path in ("/healthz", "/-/healthy"):
        assert client.get(path).status_code == 200
        assert client.head(path).status_code == 200
    ready = client.get("/-/ready")
    assert ready.status_code == 503
    assert ready.text.startswith("not ready: this serve is a standby") and HOLDER in ready.text


def test_a_standby_says_so_on_metrics(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "gpuwarden_serve_standby 1.0" in response.text.splitlines()


def test_a_standby_that_cannot_reach_the_store_says_why(tmp_path: Path) -> None:
    state = StandbyState()
    state.waiting(OSError("connection refused\nsecond line"))
    said = TestClient(standby_app(state)).get("/api/v1/incidents").json()["error"]
    assert "standby" in said and "connection refused" in said and "second line" not in said


def test_a_standby_whose_store_refuses_it_names_the_setting_and_sends_nobody_to_an_active_one() -> None:
    """A wrong password in the configuration both replicas share keeps both waiting as standbys: neither is
    active, yet each told every request to go to "the active one"."""
    state = StandbyState()
    state.waiting(
        OperationalError(
            "SELECT pg_try_advisory_lock(1)",
            {},
            Exception(
                'connection to server at "db.internal", port 5432 failed: FATAL:  password'
                ' authentication failed for user "gw"'
            ),
        )
    )
    client = TestClient(standby_app(state))
    for said in (client.get("/-/ready").text, client.get("/api/v1/incidents").json()["error"]):
        assert "password authentication failed" in said and "takes no requests" in said, said
        assert "cannot ask the store for its lock" in said and "(api.db)" in said, said
        assert "send requests to the active one" not in said, said
    state.waiting(InstanceBusy("store postgresql+psycopg://gw:***@db.internal:5432/gw", HOLDER))
    assert "send requests to the active one" in client.get("/api/v1/incidents").json()["error"]


@pytest.mark.parametrize(
    ("path", "location", "status"),
    [("/-/healthy/", "../healthy", 200), ("/healthz/", "../healthz", 200), ("/-/ready/", "../ready", 503)],
    ids=["healthy", "healthz", "ready"],
)
def test_a_probe_with_a_trailing_slash_is_redirected_as_the_active_server_does_not_refused(
    client: TestClient, path: str, location: str, status: int
) -> None:
    """The active ``serve`` answers ``/-/healthy/`` with a 307 to ``../healthy`` (a success to a Kubernetes
    probe); the standby's catch-all answered it 503, so a liveness probe written with a trailing slash
    restarted every standby."""
    for method in ("GET", "HEAD"):
        redirected = client.request(method, path, follow_redirects=False)
        assert (redirected.status_code, redirected.headers.get("location")) == (307, location), method
    assert client.get(path).status_code == status


@pytest.mark.parametrize(
    "reason",
    [
        InstanceBusy("store postgresql+psycopg://gw_admin:***@db.internal:5432/gw", HOLDER),
        OperationalError(
            "SELECT pg_advisory_lock(1)",
            {},
            Exception(
                'connection to server at "db.internal" (10.20.30.40), port 5432 failed: timeout expired'
            ),
        ),
    ],
    ids=["lock-held", "store-unreachable"],
)
def test_a_standby_names_no_host_or_user_of_the_store_to_requests_without_a_token(reason: Exception) -> None:
    # Its readiness and every refused request said the store URL's user and host, or the driver's error
    # naming the host and the address it resolved to; its log says them (instance lock: standby, waiting).
    state = StandbyState()
    state.waiting(reason)
    client = TestClient(standby_app(state))
    for said in (client.get("/-/ready").text, client.get("/api/v1/incidents").json()["error"]):
        assert not [name for name in ("db.internal", "10.20.30.40", "gw_admin") if name in said], said
        assert "names hidden: serve's log has them" in said and "takes no requests" in said, said
    if isinstance(reason, InstanceBusy):  # who holds the lock is what tells where the active one is
        assert HOLDER in client.get("/-/ready").text


@pytest.mark.parametrize(
    ("reason", "told", "standby_said"),
    [
        (
            InstanceBusy("store /var/lib/gpuwarden/gw.db", HOLDER),
            "{} is a standby serve: give --url, or GPUWARDEN_URL, the active serve's address, or the one"
            " address in front of both",
            HOLDER,  # who is active
        ),
        (
            OperationalError("SELECT pg_advisory_lock(1)", {}, Exception("password authentication failed")),
            "{} is a standby serve that cannot ask the store: its log, the lines `instance lock: standby,"
            " waiting: ...`, names the store's host and user and the store's error",
            "check the store's address and credentials (api.db)",  # what to check
        ),
    ],
    ids=["another-serve-active", "store-unanswered"],
)
def test_the_cli_says_which_serve_is_the_standby_and_what_to_do_not_that_its_log_says_more(
    monkeypatch: pytest.MonkeyPatch, reason: Exception, told: str, standby_said: str
) -> None:
    # `incidents list --url <standby>` added "(from serve at URL; its log says more)": the standby's log said
    # what its answer said, and nothing told that URL was a standby to move --url away from.
    state = StandbyState()
    state.waiting(reason)
    url = "http://gw-standby:8080"
    with TestClient(standby_app(state)) as client:
        route_httpx(client, url, monkeypatch)
        result = BuiltCliRunner().invoke(app, ["incidents", "list", "--url", url])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, said
    assert "HTTP 503: this serve is a standby" in said and standby_said in said, said
    assert told.format(url) in said and "its log says more" not in said, said
