"""``outbox retry`` and ``outbox discard --status failed`` at the same moment, on any store (the SQLite tests
and PostgreSQL's integration tests share it)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event

from alerting.outbox import Outbox
from alerting.outbox_tables import DISCARDED, FAILED, PENDING, SENT
from tests.alerting.outbox_destinations import CLOCK, Destination, queued_for


def one_inside_the_other(sql: Engine, first: str) -> tuple[int, int, dict[str, int]]:
    """Five failed messages; ``first`` (``retry`` or ``discard``) reads them, and before it writes the other
    runs on another thread (given a second to finish). Returns (requeued, discarded, the counts per status
    once both are done)."""
    queued_for(sql, Destination("slack"), Destination("webhook:ops", mode="refused"))
    outbox = Outbox(sql, [Destination("slack"), Destination("webhook:ops")], CLOCK)
    assert outbox.counts() == {SENT: 5, FAILED: 5}
    answers: dict[str, int] = {}

    def retry() -> None:
        answers["retry"], _ = outbox.requeue_failed()

    def discard() -> None:
        answers["discard"] = outbox.discard("webhook:ops", [FAILED], by="bob", dry_run=False).counts[FAILED]

    actions: dict[str, Callable[[], None]] = {"retry": retry, "discard": discard}
    [second] = [name for name in actions if name != first]
    inside: list[threading.Thread] = []

    def meanwhile(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The first read the failed messages and is about to write them: the second comes now.
        writes = statement.lstrip().upper().startswith("UPDATE NOTIFICATION_OUTBOX")
        if writes and threading.current_thread() is threading.main_thread() and not inside:
            inside.append(threading.Thread(target=actions[second]))
            inside[0].start()
            inside[0].join(1.0)  # with the rows locked, it waits for the first one's commit

    event.listen(sql, "before_cursor_execute", meanwhile)
    try:
        actions[first]()
    finally:
        event.remove(sql, "before_cursor_execute", meanwhile)
    assert inside, f"the {first} wrote nothing"
    inside[0].join(30)
    assert not inside[0].is_alive()
    return answers["retry"], answers["discard"], outbox.counts()


def assert_each_message_went_one_way(
    first: str, requeued: int, discarded: int, counts: dict[str, int]
) -> None:
    """Each failed message was queued again or discarded, never both; the first took them all, the second
    waited for it and found none; each is what its answer said."""
    assert (requeued, discarded) == ((5, 0) if first == "retry" else (0, 5)), (
        f"requeued {requeued} and discarded {discarded} of 5 failed messages"
    )
    expected = {SENT: 5, PENDING: requeued, DISCARDED: discarded}
    assert counts == {status: n for status, n in expected.items() if n}
