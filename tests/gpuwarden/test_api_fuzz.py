"""Generated payloads against the ingest endpoints as ``gpuwarden serve`` runs them (with its accept journal).

Whatever arrives, the answer is 200, 400 naming the field, or 413; never a 5xx. A refused body changes nothing
stored, an accepted one is applied without a quarantined record, and the read API keeps answering.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from starlette.exceptions import StarletteDeprecationWarning

from alerting import scenarios
from alerting.applier import JournalApplier
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.journal import AcceptJournal, applied_offset
from alerting.migrate import upgrade
from gpuwarden.api import READ_BARRIER_SECONDS, create_app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.gpuwarden.api_error import error_field, error_text

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "fuzz-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
LABEL_NAMES = [
    "alertname",
    "node",
    "gpu",
    "cluster",
    "rack",
    "Hostname",
    "UUID",
    "slurm_job",
    "service",
    "xid",
]
VALID_TIMES = [
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:05:00+14:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:01Z",
    "9999-12-31T23:59:59Z",
]
BAD_TIMES = ["2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "yesterday", "9999-12-31T23:00:00-05:00"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
anything = st.one_of(
    scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=5), scalars, max_size=2)
)
valid_alerts = st.fixed_dictionaries(
    {"labels": st.dictionaries(st.sampled_from(LABEL_NAMES), st.text(max_size=12), min_size=1, max_size=6)},
    optional={
        "annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=20), max_size=3),
        "startsAt": st.sampled_from(VALID_TIMES),
        "endsAt": st.sampled_from(VALID_TIMES),
        "generatorURL": st.text(max_size=20),
        "status": st.sampled_from(["firing", "resolved"]),
        "unknownField": anything,
    },
)
FIELDS = ["labels", "annotations", "startsAt", "endsAt", "generatorURL", "status", "labels.value"]


def _corrupt(alert: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    """One field of a valid alert replaced by something else (which may still be valid)."""
    out = {**alert, "labels": dict(alert["labels"])}
    if field == "labels.value":
        out["labels"][next(iter(out["labels"]))] = value
    elif field in ("startsAt", "endsAt") and isinstance(value, bool):
        out[field] = BAD_TIMES[int(value)]
    else:
        out[field] = value
    return out


@st.composite
def alert_lists(draw: st.DrawFn) -> list[Any]:
    """Valid alerts, and in about half the lists one field of one alert replaced by anything."""
    items: list[Any] = draw(st.lists(valid_alerts, min_size=1, max_size=4))
    if draw(st.booleans()):
        i = draw(st.integers(0, len(items) - 1))
        items[i] = _corrupt(items[i], draw(st.sampled_from(FIELDS)), draw(anything))
    return items


postable = st.one_of(alert_lists(), alert_lists(), alert_lists(), anything, valid_alerts)
webhooks = st.fixed_dictionaries(
    {
        "version": st.sampled_from(["4", "4", "4", "3", 4, None]),
        "alerts": st.one_of(alert_lists(), alert_lists(), anything),
    },
    optional={"groupKey": anything, "status": anything, "receiver": anything, "truncatedAlerts": anything},
)


def _labelled(items: Any) -> bool:
    """An independent check of the core rule: a list of objects whose labels map names to strings."""
    return isinstance(items, list) and all(
        isinstance(i, dict)
        and isinstance(i.get("labels"), dict)
        and i["labels"]
        and all(isinstance(v, str) for v in i["labels"].values())
        for i in items
    )


def _post_and_check(client: TestClient, applier: JournalApplier, path: str, payload: Any) -> None:
    engine = applier.engine
    # Everything accepted before is applied (the read barrier's wait, without a listing of every incident:
    # the last example's listing below already waited for its own POST).
    assert applier.wait_applied(applier.journal.end, READ_BARRIER_SECONDS)
    before = engine.store.alert_count()
    response = client.post(path, content=json.dumps(payload).encode(), headers=HEADERS)
    assert response.status_code in (200, 400, 413, 422), (response.status_code, response.text, payload)
    listing = client.get("/api/v1/incidents")
    assert listing.status_code == 200
    if response.status_code in (400, 422):  # 422: a required field absent or null, as Alertmanager answers
        assert error_field(response) and error_text(response)
    if response.status_code != 200:
        assert engine.store.alert_count() == before, payload
    elif path.endswith("/alertmanager"):
        assert payload["version"] == "4" and _labelled(payload["alerts"]), payload
    else:
        assert _labelled(payload), payload
    assert applier.status()["records_quarantined"] == 0, payload


def _client(tmp_path: Path) -> tuple[TestClient, JournalApplier]:
    sql = make_engine(str(tmp_path / "fuzz.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    applier = JournalApplier(
        AcceptJournal(tmp_path / "journal", lambda jid: applied_offset(sql, jid)), engine
    )
    app = create_app(engine, ApiConfig(token=SecretStr(TOKEN), max_body_bytes=8192), applier=applier)
    return TestClient(app, raise_server_exceptions=False), applier


FUZZ = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_generated_postable_alerts_get_200_or_a_4xx_naming_the_field_and_never_corrupt_the_store(
    tmp_path: Path,
) -> None:
    client, applier = _client(tmp_path)
    with client:

        @FUZZ
        @given(postable)
        def check(payload: Any) -> None:
            _post_and_check(client, applier, "/api/v2/alerts", payload)

        check()
        assert applier.engine.store.alert_count() > 0  # the generator also produces valid alerts


def test_generated_webhook_payloads_get_200_or_a_4xx_naming_the_field_and_never_corrupt_the_store(
    tmp_path: Path,
) -> None:
    client, applier = _client(tmp_path)
    with client:

        @FUZZ
        @given(webhooks)
        def check(payload: Any) -> None:
            _post_and_check(client, applier, "/api/v1/webhook/alertmanager", payload)

        check()


matchers = st.fixed_dictionaries(
    {
        "name": st.one_of(st.sampled_from([*LABEL_NAMES, "", "1x"]), anything),
        "value": st.one_of(st.sampled_from(["(", "[a-", ".*", "a|b", "\\", "", "n1"]), st.text(max_size=6)),
        "isRegex": st.one_of(st.booleans(), st.booleans(), anything),  # required: absent or null is a 422
    },
    optional={"isEqual": st.one_of(st.booleans(), anything)},
)
silences = st.fixed_dictionaries(
    {
        "matchers": st.one_of(st.lists(matchers, min_size=1, max_size=3), anything),
        "startsAt": st.sampled_from([*VALID_TIMES, *BAD_TIMES]),
        "endsAt": st.sampled_from([*VALID_TIMES, "2027-01-01T00:00:00Z"]),
    },
    optional={"createdBy": st.text(max_size=5), "comment": st.text(max_size=5), "maintenance": st.booleans()},
)


def test_generated_silences_get_200_or_a_4xx_naming_the_field_and_alerts_keep_flowing(tmp_path: Path) -> None:
    client, applier = _client(tmp_path)
    probe = json.dumps([{"labels": {"alertname": "Probe", "node": "n1"}}]).encode()
    with client:

        @FUZZ
        @given(silences)
        def check(payload: Any) -> None:
            response = client.post("/api/v2/silences", content=json.dumps(payload).encode(), headers=HEADERS)
            assert response.status_code in (200, 400, 422), (response.status_code, response.text, payload)
            if response.status_code != 200:
                assert error_field(response), response.text
            assert client.get("/api/v2/silences").status_code == 200
            assert client.post("/api/v2/alerts", content=probe, headers=HEADERS).status_code == 200
            assert client.get("/api/v1/incidents").status_code == 200
            assert applier.status()["records_quarantined"] == 0

        check()
