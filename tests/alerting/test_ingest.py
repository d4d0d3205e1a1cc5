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
