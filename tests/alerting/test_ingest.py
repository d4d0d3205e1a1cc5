"""What the alert parsers read besides labels: the ``score`` and ``recommended_action`` annotations."""

from __future__ import annotations

import pytest

from alerting.ingest import parse_postable_alerts
from gpuwarden.model import RecommendedAction


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
