"""Messages for a notifier removed from the configuration: out of the backlog, kept, back with it."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from alerting.outbox import Outbox
from alerting.outbox_metrics import OutboxCollector
from alerting.outbox_orphans import OrphanReport, reconcile_orphans
from alerting.outbox_tables import DISCARDED, FAILED, ORPHANED, PENDING, SENT
from alerting.store import NotFound
from gpuwarden.clock import FakeClock
from gpuwarden.errors import InputError
from tests.alerting.notifiers.incidents import lifecycle
from tests.alerting.outbox_destinations import CLOCK, NOW, Destination, queued_for


def depth(outbox: Outbox, notifier: str, status: str) -> float | None:
    registry = CollectorRegistry()
    registry.register(OutboxCollector(outbox))
    return registry.get_sample_value("gpuwarden_outbox_messages", {"notifier": notifier, "status": status})


def test_waiting_messages_of_a_removed_notifier_are_set_aside_reported_once_and_leave_the_backlog(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    queued_for(sql, Destination("slack"), Destination("webhook:gone", mode="down"))

    report = reconcile_orphans(sql, ["slack"], now=NOW)
    assert report == OrphanReport(set_aside={"webhook:gone": 5})
    [line] = [r.getMessage() for r in caplog.records if r.name == "alerting.outbox_orphans"]
    assert "5 messages for notifier webhook:gone" in line and "no longer configured" in line
    assert reconcile_orphans(sql, ["slack"], now=NOW) == OrphanReport(), "reported once"
    assert len([r for r in caplog.records if r.name == "alerting.outbox_orphans"]) == 1

    restarted = Outbox(sql, [Destination("slack")], CLOCK)
    assert depth(restarted, "webhook:gone", PENDING) == 0
    assert depth(restarted, "webhook:gone", ORPHANED) == 5
    assert depth(restarted, "slack", SENT) == 5
    kept = restarted.messages(ORPHANED)
    assert [m.notifier for m in kept] == ["webhook:gone"] * 5
    assert kept[0].attempts == 1 and kept[0].last_error == "webhook:gone: down", (
        "kept as they were, for inspection"
    )


def test_a_notifier_configured_again_takes_back_its_messages_in_order_before_new_ones(sql: Engine) -> None:
    queued_for(sql, Destination("slack"), Destination("webhook:ops", mode="down"))
    reconcile_orphans(sql, ["slack"], now=NOW)

    assert reconcile_orphans(sql, ["slack", "webhook:ops"], now=NOW) == OrphanReport(
        resumed={"webhook:ops": 5}
    )
    back = Destination("webhook:ops")
    outbox = Outbox(sql, [Destination("slack"), back], CLOCK)
    assert outbox.dispatch_due() == 5
    # The first one had been tried (it may have arrived): sent as a retry; the others for the first time.
    assert back.delivered == [
        ("opened", True),
        ("priority_changed", False),
        ("acknowledged", False),
        ("mitigating", False),
        ("resolved", False),
    ]
    assert outbox.counts() == {SENT: 10}


def test_failed_messages_of_a_removed_notifier_stay_failed_and_retry_leaves_them(sql: Engine) -> None:
    queued_for(sql, Destination("slack"), Destination("webhook:gone", mode="refused"))
    assert reconcile_orphans(sql, ["slack"], now=NOW) == OrphanReport()
    outbox = Outbox(sql, [Destination("slack")], CLOCK)
    # Queued again, nothing would ever send them: they would wait in the backlog for good.
    assert outbox.requeue_failed() == (0, 0)
    assert outbox.counts() == {SENT: 5, FAILED: 5}


def test_a_store_without_any_notifier_waiting_has_nothing_to_report(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    queued_for(sql, Destination("slack"))
    assert reconcile_orphans(sql, [], now=NOW) == OrphanReport()
    assert [r for r in caplog.records if r.name == "alerting.outbox_orphans"] == []


def test_discarding_drops_orphaned_messages_for_good_and_records_who_and_when(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    queued_for(sql, Destination("slack"), Destination("webhook:gone", mode="down"))
    reconcile_orphans(sql, ["slack"], now=NOW)
    outbox = Outbox(sql, [Destination("slack")], CLOCK)

    planned = outbox.discard("webhook:gone", [ORPHANED], by="alice", dry_run=True).counts
    assert planned == {ORPHANED: 5} and outbox.counts() == {SENT: 5, ORPHANED: 5}, "a dry run changes nothing"
    assert outbox.discard("webhook:gone", [ORPHANED], by="alice", dry_run=False).counts == {ORPHANED: 5}
    assert outbox.counts() == {SENT: 5, DISCARDED: 5}
    assert depth(outbox, "webhook:gone", DISCARDED) == 5 and depth(outbox, "webhook:gone", ORPHANED) == 0
    first = outbox.messages(DISCARDED)[0]
    assert first.last_error == (
        "discarded by alice at 2026-01-01T00:00:00Z (was orphaned; last error: webhook:gone: down)"
    )
    [line] = [r.getMessage() for r in caplog.records if "discarded by" in r.getMessage()]
    assert "5 messages for notifier webhook:gone discarded by alice (orphaned 5)" in line
    # Configured again, the name takes back nothing that was dropped on purpose.
    assert reconcile_orphans(sql, ["slack", "webhook:gone"], now=NOW) == OrphanReport()
    assert outbox.discard("webhook:gone", [ORPHANED], by="alice", dry_run=False).counts == {ORPHANED: 0}


def test_discarding_touches_failed_messages_only_when_asked_and_never_the_backlog(sql: Engine) -> None:
    queued_for(sql, Destination("slack"), Destination("webhook:ops", mode="refused"))
    waiting = Outbox(sql, [Destination("webhook:late", mode="down")], CLOCK)
    for change in lifecycle():
        waiting(change)
    outbox = Outbox(sql, [Destination("slack"), Destination("webhook:ops")], CLOCK)

    assert outbox.discard("webhook:ops", [ORPHANED], by="bob", dry_run=False).counts == {ORPHANED: 0}
    assert outbox.counts() == {SENT: 5, FAILED: 5, PENDING: 5}
    assert outbox.discard("webhook:ops", [ORPHANED, FAILED], by="bob", dry_run=False).counts == {
        ORPHANED: 0,
        FAILED: 5,
    }
    assert outbox.counts() == {SENT: 5, DISCARDED: 5, PENDING: 5}
    for statuses in ([PENDING], [SENT], [FAILED, "sending"], []):
        with pytest.raises(InputError) as refused:
            outbox.discard("webhook:late", statuses, by="bob", dry_run=False)
        assert refused.value.field == "statuses" and "only orphaned and failed" in str(refused.value)
    with pytest.raises(NotFound) as typo:
        outbox.discard("webhook:osp", [ORPHANED], by="bob", dry_run=False)
    assert typo.value.field == "notifier" and "no message of notifier 'webhook:osp'" in str(typo.value)
    assert outbox.counts() == {SENT: 5, DISCARDED: 5, PENDING: 5}


def test_when_a_message_was_discarded_is_said_to_the_second_as_every_time_people_read(sql: Engine) -> None:
    # `outbox list` showed "discarded by alice at 2026-01-01T00:00:05.250000Z" in its last-error column, the
    # clock's fraction, where every other time it prints reads 2026-01-01T00:00:05Z.
    queued_for(sql, Destination("slack"), Destination("webhook:gone", mode="down"))
    reconcile_orphans(sql, ["slack"], now=NOW)
    outbox = Outbox(sql, [Destination("slack")], FakeClock(NOW + 5.25))
    outbox.discard("webhook:gone", [ORPHANED], by="alice", dry_run=False)
    said = outbox.messages(DISCARDED)[0].last_error or ""
    assert said.startswith("discarded by alice at 2026-01-01T00:00:05Z (was orphaned"), said
