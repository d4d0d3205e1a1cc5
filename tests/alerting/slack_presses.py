"""What the Slack button tests share: the signing secret and path, incident actions that remember their
calls, a button press's body and its signed headers."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from alerting.outcomes import ActionOutcome
from alerting.slack_interactions import slack_signature
from gpuwarden.errors import InputError
from gpuwarden.model import Incident
from tests.alerting.notifiers.incidents import make_incident

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PATH = "/slack/interactions"


class RecordingActions:
    """IncidentActions that remember calls; incident ``inc-gone`` does not exist."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, float | None]] = []

    def _incident(self, incident_id: str) -> Incident:
        if incident_id == "inc-gone":
            raise KeyError(incident_id)
        if incident_id == "inc-closed":
            raise InputError("incident is resolved", field="incident_id")
        return make_incident(incident_id)

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        self.calls.append(("acknowledge", incident_id, by, None))
        return self._incident(incident_id)

    def approve_remediation(self, incident_id: str, by: str) -> Incident:
        self.calls.append(("approve_remediation", incident_id, by, None))
        return self._incident(incident_id)

    def acknowledge_outcome(self, incident_id: str, by: str) -> ActionOutcome:
        return ActionOutcome(self.acknowledge(incident_id, by))

    def approve_remediation_outcome(
        self, incident_id: str, by: str, root: str | None = None
    ) -> ActionOutcome:
        return ActionOutcome(self.approve_remediation(incident_id, by))

    def silence_incident(self, incident_id: str, duration_seconds: float, by: str) -> Incident:
        self.calls.append(("silence_incident", incident_id, by, duration_seconds))
        return self._incident(incident_id)

    def silence_incident_outcome(self, incident_id: str, duration_seconds: float, by: str) -> ActionOutcome:
        return ActionOutcome(self.silence_incident(incident_id, duration_seconds, by))


def button_body(action_id: str, incident_id: str = "inc-r07", user: str = "alice", **more: object) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": "U123", "username": user},
        "actions": [{"action_id": action_id, "value": incident_id, "type": "button"}],
        **more,
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": slack_signature(secret, str(timestamp), body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
