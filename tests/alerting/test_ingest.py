"""What the alert parsers read besides labels: the ``score`` and ``recommended_action`` annotations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from alerting.ingest import parse_postable_alerts, parse_webhook
from alerting.journal import KIND_POSTABLE, KIND_WEBHOOK, JournalRecord
from gpuwarden.errors import UNPROCESSABLE, InputError
from gpuwarden.model import AlertStatus, RecommendedAction


@pytest.mark.parametrize(
    ("annotations", "score", "action"),
    [
        ({"score": "7.25", "recommended_action": "reset_gpu"}, 7.25, RecommendedAction.RESET_GPU),
        ({"score": "high", "recommended_action": "reboot it"}, None, RecommendedAction.NONE),
        ({"score": "nan"}, None, RecommendedAction.NONE),
        ({"summary": "no score"}, None, RecommendedAction.NONE),
    ],
    ids=["both", "neither-parses", "nan", "absent"],
)
def test_score_and_recommended_action_annotations_are_read_when_they_parse(
    annotations: dict[str, str], score: float | None, action: RecommendedAction
) -> None:
    (alert,) = parse_postable_alerts([{"labels": {"alertname": "GpuXid"}, "annotations": annotations}])
    assert (alert.score, alert.recommended_action) == (score, action)
    assert dict(alert.annotations) == annotations  # kept as posted


@pytest.mark.parametrize(
    ("labels", "annotations", "action"),
    [
        ({"xid": "79"}, {}, RecommendedAction.RESTART_NODE),  # fell off the bus: RESTART_BM
        ({"xid_code": "13"}, {}, RecommendedAction.RESTART_APP),
        ({"xid": "63"}, {}, RecommendedAction.IGNORE),
        ({"xid": "99999"}, {}, RecommendedAction.INVESTIGATE),  # not in the catalog
        ({"xid": "seventy-nine"}, {}, RecommendedAction.NONE),
        ({"xid": "\u00b2"}, {}, RecommendedAction.NONE),  # a digit to str.isdigit, not to int()
        ({"xid": "79"}, {"recommended_action": "drain_and_reset"}, RecommendedAction.DRAIN_AND_RESET),
        ({"code": "500"}, {}, RecommendedAction.NONE),  # `code` is an HTTP status as often as an XID
    ],
    ids=[
        "79",
        "xid_code",
        "informational",
        "unknown-xid",
        "not-a-number",
        "superscript-two",
        "annotation-wins",
        "code-label",
    ],
)
def test_an_alert_carrying_an_xid_gets_the_catalogs_action(
    labels: dict[str, str], annotations: dict[str, str], action: RecommendedAction
) -> None:
    (alert,) = parse_postable_alerts(
        [{"labels": {"alertname": "GpuXid", **labels}, "annotations": annotations}]
    )
    assert alert.recommended_action is action


def test_an_alert_without_ends_at_ends_the_resolve_timeout_after_it_was_received() -> None:
    received, timeout = datetime(2026, 3, 1, 12, 0, tzinfo=UTC), timedelta(minutes=5)
    soon = {"labels": {"alertname": "A"}, "startsAt": "2026-03-01T12:02:00Z"}  # a sender's clock 2 min ahead
    (alert,) = parse_postable_alerts([soon], received, timeout)
    assert alert.ends_at == received + timeout
    for starts in ("2026-03-01T14:00:00Z", "9999-12-31T23:59:59Z"):
        late = {"labels": {"alertname": "A"}, "startsAt": starts}
        with pytest.raises(InputError) as info:
            parse_postable_alerts([soon, late], received, timeout)
        assert info.value.field == "[1].startsAt"
    ended = {**soon, "startsAt": "2026-03-01T14:00:00Z", "endsAt": "2026-03-01T15:00:00Z"}
    assert parse_postable_alerts([ended], received, timeout)[0].ends_at == datetime(
        2026, 3, 1, 15, tzinfo=UTC
    )


def test_a_refused_late_start_says_when_the_alert_would_end_as_every_time_people_read() -> None:
    # The 400 said "is after 2026-03-01T12:05:00.250000+00:00": the receiving clock's fraction and +00:00,
    # where the API's other messages write 2026-03-01T12:05:00Z.
    received, timeout = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC), timedelta(minutes=5)
    late = {"labels": {"alertname": "A"}, "startsAt": "2026-03-01T14:00:00Z"}
    with pytest.raises(InputError) as info:
        parse_postable_alerts([late], received, timeout)
    assert info.value.message.startswith("is after 2026-03-01T12:05:00Z, when"), info.value.message


def test_an_empty_label_name_is_refused() -> None:
    with pytest.raises(InputError) as info:
        parse_postable_alerts([{"labels": {"alertname": "A"}}, {"labels": {"alertname": "B", "": "x"}}])
    assert info.value.field == "[1].labels"


@pytest.mark.parametrize(
    "status",
    [{"state": "active", "silencedBy": [], "inhibitedBy": []}, "active", "resolved", None],
    ids=["gettable-alert-status", "unknown-word", "resolved-word", "null"],
)
def test_a_posted_alerts_status_field_is_ignored_as_alertmanager_ignores_it(status: object) -> None:
    """``postableAlert`` has no ``status``: Alertmanager stores such an alert and resolves it by ``endsAt``
    only. Refusing the field refused its whole batch (Prometheus does not retry a 400), e.g. alerts a relay
    copied from ``GET /api/v2/alerts``, where ``status`` is an object."""
    firing = {"labels": {"alertname": "A"}, "status": status}
    ended = {"labels": {"alertname": "B"}, "status": status, "endsAt": "2026-03-01T12:00:00Z"}
    a, b = parse_postable_alerts([firing, ended])
    assert (a.status, a.ends_at) == (AlertStatus.FIRING, None)
    assert b.ends_at == datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_a_webhook_alerts_status_is_read() -> None:
    payload = {"version": "4", "alerts": [{"labels": {"alertname": "A"}, "status": "resolved"}]}
    assert [a.status for a in parse_webhook(payload)] == [AlertStatus.RESOLVED]
    with pytest.raises(InputError) as info:
        parse_webhook({**payload, "alerts": [{"labels": {"alertname": "A"}, "status": "active"}]})
    assert info.value.field == "alerts[0].status"


# Measured against Alertmanager 0.25 (POST /api/v2/alerts): it answers 400 to each of these, which Python's
# fromisoformat reads; and 200 to each of the accepted ones.
AM_REFUSES = [
    "20261201T100000Z",  # ISO 8601 basic format
    "2026-W48-2T10:00:00Z",  # a week date
    "2026-12-01T10Z",  # an hour alone
    "2026-12-01 10:00Z",  # a space, and no seconds
    "2026-12-01T10:00:00+0100",  # an offset without its colon, no decimals
    "2026-12-01T10:00:00.5+0100",
    "2026-12-01T10:00:00.Z",
]
AM_TAKES = [
    "2026-12-01T10:00:00Z",
    "2026-12-01T10:00:00.123456789Z",
    "2026-12-01T10:00:00.5+01:00",
    "2026-12-01T10:00:00-00:00",
    "2026-12-01T10:00:00,5Z",
    "2026-12-01T10:00Z",
    "2026-12-01T10:00:00.123+0100",
    "2026-12-01T10:00:00.123456+0100",
]


@pytest.mark.parametrize("field", ["startsAt", "endsAt"])
@pytest.mark.parametrize("text", AM_REFUSES)
def test_a_time_alertmanager_refuses_is_refused_naming_the_field(text: str, field: str) -> None:
    item = {"labels": {"alertname": "A"}, field: text}
    with pytest.raises(InputError) as posted:
        parse_postable_alerts([item])
    assert posted.value.field == f"[0].{field}" and "RFC 3339" in posted.value.message
    with pytest.raises(InputError) as hooked:
        parse_webhook({"version": "4", "alerts": [item]})
    assert hooked.value.field == f"alerts[0].{field}"


@pytest.mark.parametrize("text", AM_TAKES)
def test_a_time_alertmanager_takes_is_taken(text: str) -> None:
    (alert,) = parse_postable_alerts([{"labels": {"alertname": "A"}, "startsAt": text}])
    assert alert.starts_at == datetime.fromisoformat(text.replace(",", ".")).astimezone(UTC)


@pytest.mark.parametrize("text", AM_REFUSES)
def test_the_journal_still_replays_a_time_an_older_release_accepted(text: str) -> None:
    """Strict at the API's edge only: a record acknowledged before is read as it was then, not lost."""
    item = {"labels": {"alertname": "A"}, "startsAt": text, "endsAt": "2026-12-02T10:00:00Z"}
    posted = JournalRecord(KIND_POSTABLE, 1.0, orjson.dumps([item]), 0)
    hooked = JournalRecord(KIND_WEBHOOK, 1.0, orjson.dumps({"version": "4", "alerts": [item]}), 0)
    for record in (posted, hooked):
        (alert,) = record.alerts(timedelta(minutes=5))
        assert alert.starts_at is not None and alert.starts_at.tzinfo is not None


# Measured against Alertmanager 0.25 (POST /api/v2/alerts, format ``uri``): 422 for each refused one, 200 for
# each taken one; 3,400 generated texts more agreed with ``request_uri_problem`` (none differed).
URI_REFUSED = [
    "prometheus",
    "prom-1.example",
    "graph?g0.expr=up",
    "x/y",
    "%zz",
    "/a%zz",
    "http://[::1",
    "::",
    "a\tb",
]
URI_TAKEN = [
    "http://prometheus-0:9090/graph?g0.expr=up%3D%3D0&g0.tab=1",
    "/graph?g0.expr=up",
    "http://h/a b",
    "h:9090",
    "mailto:x@y",
    "//h/x",
    "http://h:99999/",
    "",
]


@pytest.mark.parametrize("url", URI_REFUSED)
def test_a_generator_url_that_is_no_uri_is_unprocessable_as_in_alertmanager(url: str) -> None:
    with pytest.raises(InputError) as posted:
        parse_postable_alerts([{"labels": {"alertname": "A"}, "generatorURL": url}])
    assert (posted.value.field, posted.value.status) == ("[0].generatorURL", UNPROCESSABLE)


@pytest.mark.parametrize("url", URI_TAKEN)
def test_a_generator_url_alertmanager_takes_is_kept(url: str) -> None:
    (alert,) = parse_postable_alerts([{"labels": {"alertname": "A"}, "generatorURL": url}])
    assert alert.generator_url == url


def test_a_webhook_and_the_journal_keep_a_generator_url_that_is_no_uri() -> None:
    """Only Alertmanager's API refuses it: a webhook carries what an Alertmanager took, and a record
    acknowledged before is replayed as it was accepted."""
    item = {"labels": {"alertname": "A"}, "generatorURL": "prometheus"}
    (hooked,) = parse_webhook({"version": "4", "alerts": [item]})
    posted = JournalRecord(KIND_POSTABLE, 1.0, orjson.dumps([item]), 0)
    assert [hooked.generator_url, *(a.generator_url for a in posted.alerts(None))] == ["prometheus"] * 2


@pytest.mark.parametrize("labels", [{}, {"labels": None}], ids=["absent", "null"])
def test_an_alert_without_labels_is_unprocessable_as_in_alertmanager(labels: dict[str, object]) -> None:
    with pytest.raises(InputError) as posted:
        parse_postable_alerts([{"annotations": {}, **labels}])
    assert (posted.value.field, posted.value.status) == ("[0].labels", UNPROCESSABLE)
