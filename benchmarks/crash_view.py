"""What users saw of crash fuzz runs (``crash_fuzz.py``), and how a crashed run differs from a straight one.

Per incident (keyed by its root and members: ids are random per run) it reads, from the store, its state,
priority and whether it was announced; from the Slack stand-in, its message as posted and as each edit left
it, and its thread's replies (text, broadcast or not) in order; from the webhook receiver, each change's first
delivery (change, event, message, whether it pages, the incident's state and priority) in order. Times and
incident ids in those texts are written alike (``plain``). Each sequence is compared with the straight run's:
an item more often than there is a ``duplicate`` (a change told twice: what "never repeats a page" forbids),
less often ``lost`` (never allowed), the same items in another order ``divergent``. Within each run alone,
too: a webhook change first delivered after a later change of its incident is ``disordered`` (compared as
divergent), and a webhook update the outbox set aside with no later message of its incident sent is lost.

What a crash may change, left out of the comparison: an edit that rewrote what the message already showed (the
outbox sends again a message a crash left ``sending``; Slack's ``chat.update`` of the stored message is
idempotent; ``edits_repeated`` counts the edits that sent the call before them again byte for byte, which a
retry does and, now and then, two changes alike with no crash), and a webhook POST of a key already delivered
with the same body (a receiver drops it by its ``Idempotency-Key``; counted as ``redelivered``). And what
differs with no crash at all: for an incident one of whose ``reassessed`` edits the outbox discarded in either
run (``superseded``: a later message of its incident was waiting, which depends on when the dispatcher ran),
only the message as it ends counts, not the edits on the way, and its webhook deliveries are compared without
``reassessed`` ones.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting.db import make_engine
from alerting.journal import AcceptJournal, applied_offset
from alerting.notifiers.base import Notification
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.webhook import posted
from alerting.outbox_tables import DISCARDED, SENT, OutboxMessage
from alerting.store_models import AlertRow, IncidentRow

HOOK = "crash"
DONE = frozenset((SENT, DISCARDED))
"""Outbox statuses with nothing left to do: sent, or discarded (an edit a later message of its incident
shows, superseded with no crash at all; nobody discards by hand here)."""
REASSESSED = "/reassessed "
"""How a webhook delivery of a ``reassessed`` change (an edit only) reads in ``Seen.deliveries``."""
_VARYING = (
    (re.compile(r"<!date\^\d+\^[^|>]*\|[^>]*>"), "<date>"),  # Slack's date tokens: when it happened
    (re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)"), "<time>"),
    (re.compile(r"inc-[0-9a-f]{12}"), "inc-?"),  # random per run
)

Sequences = dict[str, list[str]]


def plain(value: Any) -> str:
    """``value`` as JSON, its times and incident ids written alike in every run."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    for pattern, alike in _VARYING:
        text = pattern.sub(alike, text)
    return text


@dataclass
class Seen:
    """One run's outcome: incidents and what was told of each by incident key, and what went wrong inside."""

    incidents: dict[str, tuple[str, str, bool]]  # key: (state, priority, announced)
    edits: Sequences  # key: its Slack message as posted ("post ...") and as each edit changed it ("edit ...")
    replies: Sequences  # key: its Slack thread's replies, in order
    deliveries: Sequences  # key: webhook changes, each idempotency key's first delivery, in order
    duplicates: list[str]
    lost: list[str]  # outbox messages to the webhook that never reached it
    half_written: list[str]
    superseded: set[str] = field(default_factory=set)  # keys with an edit the outbox discarded unsent
    disordered: list[str] = field(default_factory=list)  # webhook changes delivered out of their order
    redelivered: int = 0  # webhook POSTs of a key already delivered, same body: a receiver drops them
    edits_repeated: int = 0  # chat.update calls that sent the call before them again, byte for byte
    held: int = 0  # webhook messages held back (a silenced incident's change): taken as sent, not POSTed
    times: dict[str, tuple[float, float]] = field(default_factory=dict)  # webhook key: (stored, sent)

    def counts(self) -> dict[str, int]:
        """How much this run told: incidents, Slack parents, edits and replies, webhook openings and
        deliveries, and of those the ``reassessed`` updates (which the webhook held first)."""
        edits = [item for items in self.edits.values() for item in items]
        deliveries = [item for items in self.deliveries.values() for item in items]
        return {
            "incidents": len(self.incidents),
            "slack_parents": sum(item.startswith("post ") for item in edits),
            "slack_edits": sum(item.startswith("edit ") for item in edits),
            "slack_replies": sum(len(items) for items in self.replies.values()),
            "webhook_openings": sum(item.startswith("opened/") for item in deliveries),
            "webhook_deliveries": len(deliveries),
            "webhook_updates": sum(REASSESSED in item for item in deliveries),  # held first, then sent
            "webhook_held": self.held,  # silenced: not POSTed
        }


# --- the store ---------------------------------------------------------------------------------------


def _incident_keys(session: Session, incidents: list[IncidentRow]) -> dict[str, str]:
    """Each incident's id to a key alike in both runs: its root and its members' fingerprints."""
    members: dict[str, list[str]] = {}
    for fingerprint, incident_id in session.execute(select(AlertRow.fingerprint, AlertRow.incident_id)):
        if incident_id is not None:
            members.setdefault(incident_id, []).append(fingerprint)
    keys = {}
    for row in incidents:
        root = json.dumps([row.root_kind, row.root_target], sort_keys=True)
        keys[row.id] = f"{root} {sorted(members.get(row.id, []))} merged={row.merged_into is not None}"
    return keys


@dataclass
class StoreView:
    """What one run's store and journal hold."""

    keys: dict[str, str]  # incident id: key
    incidents: dict[str, tuple[str, str, bool]]
    hook_keys: set[str]  # idempotency keys of the webhook's messages the outbox took as sent and POSTed
    superseded: set[str]  # incident keys with a message discarded as superseded
    half_written: list[str]
    hook_order: dict[str, int] = field(default_factory=dict)  # webhook message key: its outbox id
    unreplaced: list[str] = field(default_factory=list)  # webhook messages set aside, none sent after them
    held: int = 0  # webhook messages taken as sent and held back (a silenced incident's change)
    times: dict[str, tuple[float, float]] = field(default_factory=dict)  # key: (stored, sent), no update


def store_view(db: str, journal_dir: Path) -> StoreView:
    """Incidents, the webhook's sent outbox keys, and what is half written in the store or the journal."""
    sql = make_engine(db)
    try:
        with Session(sql) as session:
            incident_rows = list(session.scalars(select(IncidentRow)))  # read once: keys and states
            keys = _incident_keys(session, incident_rows)
            incidents = {keys[r.id]: (r.state, r.priority, r.announced_at is not None) for r in incident_rows}
            rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        statuses = Counter(row.status for row in rows)
        half = [f"outbox {status}: {n}" for status, n in statuses.items() if status not in DONE]
        hook_rows = [row for row in rows if row.notifier == f"webhook:{HOOK}"]
        superseded = {keys.get(row.incident_id, "?") for row in rows if row.status == DISCARDED}
        journal = AcceptJournal(journal_dir, lambda jid: applied_offset(sql, jid))
        behind = journal.end - applied_offset(sql, journal.journal_id)
        journal.close()
        if behind:
            half.append(f"journal: {behind} bytes not applied")
    finally:
        sql.dispose()
    order = {row.idempotency_key: row.id for row in hook_rows}
    view = StoreView(keys, incidents, set(), superseded, half, order, _unreplaced(hook_rows))
    _read_posts(view, hook_rows)
    return view


def _read_posts(view: StoreView, rows: Iterable[OutboxMessage]) -> None:
    """Which of the webhook's messages taken as sent it POSTed (``hook_keys``), held back (``held``: a
    silenced incident's change, ``webhook.posted``) or not, and when each POSTed change that is no
    ``reassessed`` update was stored and sent (``times``), read in order (a receiver told of an incident
    hears its resolution under a silence)."""
    told: set[str] = set()  # incidents the receiver heard of
    for row in rows:
        if row.status != SENT:
            continue
        notification = Notification.model_validate_json(row.payload)
        if not posted(notification, told=row.incident_id in told):
            view.held += 1
            continue
        told.add(row.incident_id)
        view.hook_keys.add(row.idempotency_key)
        if not notification.edit_only and row.sent_at is not None:
            view.times[row.idempotency_key] = (row.created_at, row.sent_at)


def _unreplaced(rows: Iterable[Any]) -> list[str]:
    """The webhook's messages set aside (an update a later message stands in for) with no message of their
    incident sent after them: what they told never reached the receiver."""
    last_sent: dict[str, int] = {}
    for row in rows:
        if row.status == SENT:
            last_sent[row.incident_id] = max(row.id, last_sent.get(row.incident_id, 0))
    return [
        f"webhook message {row.idempotency_key} set aside, and no later message of its incident sent"
        for row in rows
        if row.status == DISCARDED and last_sent.get(row.incident_id, 0) < row.id
    ]


def disordered(bodies: Iterable[dict[str, Any]], order: dict[str, int], keys: dict[str, str]) -> list[str]:
    """Webhook changes whose first delivery came after that of a later change of their incident (by outbox
    id, ``order``): a resolution before an update it followed, a held update released after a later one. A
    key delivered again (a receiver drops it) is left out."""
    newest: dict[str, int] = {}  # incident id: the latest outbox id delivered of it
    seen: set[str] = set()
    out = []
    for body in bodies:
        key, incident = body["idempotency_key"], body["incident"]["id"]
        at = order.get(key)
        if at is None or key in seen:
            continue
        seen.add(key)
        if at < newest.get(incident, 0):
            out.append(f"webhook {keys.get(incident, '?')}: {key} delivered after a later change of it")
        newest[incident] = max(at, newest.get(incident, 0))
    return out


# --- Slack and the webhook -----------------------------------------------------------------------------


def _incident_of(params: dict[str, Any], keys: dict[str, str]) -> str:
    payload = (params.get("metadata") or {}).get("event_payload") or {}
    return keys.get(str(payload.get("incident_id")), "?")


def slack_edits(recorder: SlackRecorder, keys: dict[str, str]) -> tuple[Sequences, int]:
    """Each incident's Slack message as posted and as each ``chat.update`` that changed it left it, and how
    many edits sent again the very call before them to the message, byte for byte (a retry does)."""
    edits: Sequences = {}
    shown: dict[str, str] = {}  # ts: what the message shows now
    sent: dict[str, str] = {}  # ts: the last call's text and attachments as sent
    repeated = 0
    owner: dict[str, str] = {}  # ts: incident key
    for call in recorder.calls:
        if call.response.get("ok") is not True:
            continue
        params = call.params
        if call.method == "chat.postMessage" and not params.get("thread_ts"):
            ts, key, how = str(call.response["ts"]), _incident_of(params, keys), "post"
            owner[ts] = key
        elif call.method == "chat.update":
            ts, how = str(params["ts"]), "edit"
            key = owner.get(ts, "?")
        else:
            continue
        raw = json.dumps([params.get("text"), params.get("attachments")], sort_keys=True)
        repeated += sent.get(ts) == raw
        sent[ts], content = raw, plain({"text": params.get("text"), "attachments": params.get("attachments")})
        if how == "edit" and shown.get(ts) == content:
            continue  # rewrote what it showed: a retried edit, or a change that shows nothing new
        shown[ts] = content
        edits.setdefault(key, []).append(f"{how} {content}")
    return edits, repeated


def slack_replies(state: dict[str, Any], keys: dict[str, str]) -> tuple[Sequences, Counter[str]]:
    """Each incident's thread replies in order, and every Slack message by idempotency key."""
    replies: Sequences = {}
    told: Counter[str] = Counter()
    for message in state["messages"]:
        told[f"slack {(message.get('metadata') or {}).get('event_payload', {}).get('key')}"] += 1
        if message["thread_ts"] is not None:
            broadcast = " (broadcast)" if message["reply_broadcast"] else ""
            key = _incident_of(message, keys)
            replies.setdefault(key, []).append(plain(message["text"]) + broadcast)
    return replies, told


def _delivery(body: dict[str, Any]) -> str:
    event, incident = body["event"], body["incident"]
    told = (
        f"{body['change']}/{event['kind']} pages={event['pages']} {incident['state']} {incident['priority']}"
    )
    return f"{told}: {plain(event['message'])}"


def webhook_deliveries(
    bodies: Iterable[dict[str, Any]], keys: dict[str, str]
) -> tuple[Sequences, Counter[str], int]:
    """Each incident's webhook changes (first delivery of each key) in order, keys delivered with another
    body, and how many POSTs repeated a key with its body (a receiver drops them)."""
    deliveries: Sequences = {}
    told: Counter[str] = Counter()
    first: dict[str, str] = {}
    repeated = 0
    for body in bodies:
        key, whole = body["idempotency_key"], json.dumps(body, sort_keys=True)
        if key not in first:
            first[key] = whole
            deliveries.setdefault(keys.get(body["incident"]["id"], "?"), []).append(_delivery(body))
        elif first[key] == whole:
            repeated += 1
        else:
            told[f"webhook {key} (another body)"] += 2
    return deliveries, told, repeated


def observe(recorder: SlackRecorder, db: str, journal_dir: Path) -> Seen:
    """What a stopped run left: in its store, its journal, Slack and the webhook."""
    view = store_view(db, journal_dir)
    replies, told = slack_replies(recorder.state(), view.keys)
    posts = recorder.hook_posts(HOOK)
    deliveries, changed, repeated = webhook_deliveries(posts, view.keys)
    told.update(changed)
    duplicates = [f"{key} x{n}" for key, n in told.items() if n > 1]
    delivered = {body["idempotency_key"] for body in posts}
    lost = [f"webhook message {key} never delivered" for key in sorted(view.hook_keys - delivered)]
    lost += view.unreplaced
    edits, edits_repeated = slack_edits(recorder, view.keys)
    return Seen(
        view.incidents,
        edits,
        replies,
        deliveries,
        duplicates,
        lost,
        view.half_written,
        view.superseded,
        disordered(posts, view.hook_order, view.keys),
        repeated,
        edits_repeated,
        view.held,
        view.times,
    )


# --- the comparison ----------------------------------------------------------------------------------


def _as_it_ends(edits: list[str]) -> list[str]:
    return edits[-1:]


def _unless_reassessed(deliveries: list[str]) -> list[str]:
    return [item for item in deliveries if REASSESSED not in item]


def _alike(what: Sequences, superseded: set[str], normal: Callable[[list[str]], list[str]]) -> Sequences:
    """``what`` with ``normal`` applied to the incidents whose edits the outbox discarded in either run."""
    return {key: normal(items) if key in superseded else items for key, items in what.items()}


def _sequence(what: str, one: list[str], other: list[str], found: dict[str, list[str]]) -> None:
    """Tell how ``other`` (the crashed run's) differs from ``one`` (the straight run's)."""
    straight, crashed = Counter(one), Counter(other)
    for item in crashed - straight:
        found["duplicates"].append(f"{what}: {item} x{crashed[item]} (straight {straight[item]})")
    for item in straight - crashed:
        found["lost"].append(f"{what}: {item} x{crashed[item]} (straight {straight[item]})")
    if straight == crashed and one != other:
        found["divergent"].append(f"{what}: in another order: {other} (straight {one})")


def compare(straight: Seen, crashed: Seen) -> dict[str, list[str]]:
    """How the crashed run differs from the straight one, by kind."""
    found: dict[str, list[str]] = {
        "divergent": [
            f"{key}: {straight.incidents.get(key)} != {crashed.incidents.get(key)}"
            for key in sorted(set(straight.incidents) | set(crashed.incidents))
            if straight.incidents.get(key) != crashed.incidents.get(key)
        ]
        + crashed.disordered
        + straight.disordered,
        "duplicates": crashed.duplicates + straight.duplicates,
        "lost": crashed.lost + straight.lost,
        "half_written": crashed.half_written + straight.half_written,
    }
    superseded = straight.superseded | crashed.superseded
    for what, pick, normal in (
        ("slack message", lambda seen: seen.edits, _as_it_ends),
        ("slack reply", lambda seen: seen.replies, lambda items: items),
        ("webhook", lambda seen: seen.deliveries, _unless_reassessed),
    ):
        one, other = (_alike(pick(seen), superseded, normal) for seen in (straight, crashed))
        for key in sorted(set(one) | set(other)):
            _sequence(f"{what} {key}", one.get(key, []), other.get(key, []), found)
    return found
