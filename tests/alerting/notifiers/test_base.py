"""Notification snapshots, idempotency keys and the notifier registry."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from alerting.notifiers.base import (
    Notification,
    NotifierRegistry,
    ThreadSaver,
    ThreadState,
    build_notification,
    builtin_registry,
    idempotency_key,
    runbook_linker,
)
from alerting.notifiers.slack import SlackNotifier
from alerting.notifiers.webhook import WebhookNotifier
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.config import SlackConfig
from gpuwarden.config_notify import WebhookConfig
from gpuwarden.errors import ConfigError
from gpuwarden.model import FaultKind, RackRef, RootCause
from tests.alerting.notifiers.incidents import change, gpu_temperature, lifecycle, make_incident


class NullNotifier:
    def __init__(self, name: str = "null") -> None:
        self.name = name

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> None:
        return None


def test_the_same_change_has_the_same_key_and_other_changes_differ() -> None:
    changes = lifecycle()
    keys = [idempotency_key(c) for c in changes]
    assert len(set(keys)) == len(keys)
    again = IncidentChange(changes[0].kind, make_incident(), changes[0].event)
    assert idempotency_key(again) == keys[0]
    other_incident = IncidentChange(changes[0].kind, make_incident("inc-other"), changes[0].event)
    assert idempotency_key(other_incident) != keys[0]


def test_notification_snapshots_what_the_message_shows() -> None:
    n = build_notification(lifecycle()[3], runbook=runbook_linker("https://runbooks.example/gpu"))
    assert n.priority == "P1"
    assert n.state == "mitigating"
    assert n.root_cause_target == "rack/r07"
    assert n.root_cause_fields == {"rack": "r07", "cluster": "c1"}
    assert n.affected_targets == ("rack/r07", "training_job/research/llm-70b")
    assert (n.nodes_affected, n.gpus_affected) == (8, 64)
    assert n.runbook_url == "https://runbooks.example/gpu/rack_down.yaml"
    assert n.actions_taken == ("drain_node n0701 succeeded", "drain_node node/n0701: succeeded (drained)")
    assert n.event_message == "drain_node n0701 succeeded"


def test_notification_survives_a_json_round_trip_with_its_series() -> None:
    n = build_notification(
        change(make_incident(), ChangeKind.OPENED, 0, "opened"), series=[gpu_temperature()]
    )
    assert Notification.model_validate_json(n.model_dump_json()) == n


def test_there_is_no_runbook_link_without_a_base_url() -> None:
    assert runbook_linker(None)(make_incident()) == ""  # not runbooks/rack_down.yaml, which does not exist


def test_builtin_registry_lists_slack_and_webhook_and_builds_them() -> None:
    registry = builtin_registry()
    assert registry.kinds() == ["slack", "webhook"]
    slack: Any = registry.create("slack", config=SlackConfig(bot_token="xoxb-1", channel="C1"))  # type: ignore[arg-type]
    assert isinstance(slack, SlackNotifier)
    hook: Any = registry.create("webhook", config=WebhookConfig(name="x", url="http://127.0.0.1:9/x"))
    assert isinstance(hook, WebhookNotifier)
    assert hook.name == "webhook:x"
    hook.close()


def test_a_duplicate_kind_is_an_error() -> None:
    registry = NotifierRegistry({"null": NullNotifier})
    with pytest.raises(ConfigError, match="registered twice"):
        registry.register("null", NullNotifier)


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown notifier kind 'pager'; known: null"):
        NotifierRegistry({"null": NullNotifier}).create("pager")


def test_a_change_told_once_keeps_the_key_the_previous_release_gave_it() -> None:
    # An outbox row enqueued before an upgrade, its change told again after it (a crash between the enqueue
    # and forgetting the change), must find its row: a new key would send it twice.
    keys = [idempotency_key(c) for c in lifecycle()[:2]]
    assert keys == ["b0d18422c566d52e3e82a8c78010d762", "2baf273bc6037ee8e71d92182af6ffec"]


def test_an_unclassified_fault_links_no_runbook() -> None:
    # A fault gpuwarden could not classify (an alert name it does not know, the anomaly service's own stale
    # source) linked <base>/unknown.yaml: a runbook for "unknown" is for no failure class, and a base URL
    # of one runbook per fault kind has none there.
    unclassified = replace(make_incident(), root_cause=RootCause(FaultKind.UNKNOWN, RackRef("c1", "r07")))
    assert runbook_linker("https://runbooks.example/gpu")(unclassified) == ""
