"""Block Kit rendering: what a person sees in Slack, and that Slack would accept it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.notifiers.base import Notification, build_notification, runbook_linker
from alerting.notifiers.blockkit import validate_attachments, validate_blocks
from alerting.notifiers.blocks import (
    ACTION_ACKNOWLEDGE,
    ACTION_APPROVE,
    ACTION_SILENCE_1H,
    PRIORITY_COLOURS,
    escape,
    incident_message,
    minimal_message,
    minimal_reply,
    timeline_reply,
    truncate,
)
from alerting.notifiers.workspace import mentions_in
from alerting.scenarios import fleet_inventory
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, IncidentState, Priority, WorkloadKind, WorkloadRef
from tests.alerting.notifiers.incidents import (
    LONG_NODE,
    T0,
    change,
    hostile_notification,
    huge_notification,
    lifecycle,
    make_incident,
)


@pytest.mark.parametrize(
    ("priority", "emoji", "colour"),
    [
        (Priority.P0, ":rotating_light:", "#d50200"),
        (Priority.P1, ":red_circle:", "#ff7b00"),
        (Priority.P2, ":large_orange_circle:", "#f2c744"),
        (Priority.P3, ":information_source:", "#439fe0"),
    ],
    ids=["P0", "P1", "P2", "P3"],
)
def test_priority_sets_colour_emoji_and_meaning(priority: Priority, emoji: str, colour: str) -> None:
    inc = make_incident(priority=priority)
    message = incident_message(build_notification(change(inc, ChangeKind.OPENED, 0, "opened")))
    [attachment] = message.attachments
    assert attachment["color"] == colour == PRIORITY_COLOURS[priority.value]
    assert attachment["blocks"][0]["text"]["text"].startswith(f"{emoji} {priority.value} ")
    meanings = {"P0": "urgent", "P1": "severe", "P2": "warning", "P3": "info"}
    assert f"{priority.value} {meanings[priority.value]}" in str(attachment["blocks"][1])
    assert message.text.startswith(f"{priority.value} rack r07")


@pytest.mark.parametrize("index", range(5), ids=[c.kind.value for c in lifecycle()])
def test_every_rendered_message_is_valid_block_kit(index: int) -> None:
    n = build_notification(lifecycle()[index])
    message = incident_message(n)
    assert validate_attachments(message.attachments) == []
    assert validate_blocks(timeline_reply(n).blocks) == []


def test_buttons_follow_the_state() -> None:
    triggered = incident_message(build_notification(lifecycle()[0]))
    acknowledged = incident_message(build_notification(lifecycle()[2]))
    resolved = incident_message(build_notification(lifecycle()[4]))

    def buttons(message: object) -> list[str]:
        blocks = message.attachments[0]["blocks"]  # type: ignore[attr-defined]
        return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]

    assert buttons(triggered) == [ACTION_ACKNOWLEDGE, ACTION_APPROVE, ACTION_SILENCE_1H]
    assert buttons(acknowledged) == [ACTION_APPROVE, ACTION_SILENCE_1H]
    assert buttons(resolved) == []


def test_approve_asks_for_confirmation() -> None:
    blocks = incident_message(build_notification(lifecycle()[0])).attachments[0]["blocks"]
    approve = next(
        e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == ACTION_APPROVE
    )
    assert approve["style"] == "primary"
    assert "rack down" in approve["confirm"]["text"]["text"]


def test_user_text_is_escaped_so_it_cannot_inject_mentions_or_links() -> None:
    inc = make_incident(title="<!channel> & <http://evil|click>")
    n = build_notification(change(inc, ChangeKind.OPENED, 0, "<@U1> says hi"))
    reply = timeline_reply(n).blocks[0]["text"]["text"]
    assert "<@U1>" not in reply
    assert "&lt;@U1&gt;" in reply
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_long_titles_and_target_lists_are_cut_to_slack_limits() -> None:
    inc = make_incident(title="x" * 400)
    workloads = tuple(WorkloadRef(WorkloadKind.POD, "ns", f"pod-{i}") for i in range(30))
    inc.impact = type(inc.impact)(workloads=workloads, gpus_affected=30, nodes_affected=4)
    n = build_notification(change(inc, ChangeKind.OPENED, 0, "opened"))
    message = incident_message(n)
    assert validate_attachments(message.attachments) == []
    header = message.attachments[0]["blocks"][0]["text"]["text"]
    assert len(header) == 150
    targets = next(b for b in message.attachments[0]["blocks"] if b.get("block_id") == "targets")["text"][
        "text"
    ]
    assert "…and 21 more" in targets


def test_resolution_reply_says_how_long_it_took() -> None:
    n = build_notification(lifecycle()[4])
    assert n.state == IncidentState.RESOLVED.value
    assert "Resolved* after 1 h 35 min" in timeline_reply(n).blocks[0]["text"]["text"]


@pytest.mark.parametrize(
    ("open_for", "said"),
    [(timedelta(seconds=40), "after 40 s"), (timedelta(minutes=4, seconds=59), "after 4 min")],
    ids=["under-a-minute", "minutes"],
)
def test_a_short_resolution_says_how_long_it_took_not_zero_minutes(open_for: timedelta, said: str) -> None:
    n = build_notification(lifecycle()[4])
    assert n.resolved_at is not None
    n = n.model_copy(update={"opened_at": n.resolved_at - open_for})
    text = timeline_reply(n).blocks[0]["text"]["text"]
    assert f"Resolved* {said}:" in text


def test_a_reopened_incident_s_resolution_counts_from_its_reopening() -> None:
    # Opened a day ago and resolved then; reopened 10 minutes before this resolution: it lasted 10 minutes
    # this time, not "24 h 10 min" (it was resolved in between).
    n = build_notification(lifecycle()[4])
    assert n.resolved_at is not None
    update = {
        "opened_at": n.resolved_at - timedelta(days=1),
        "reopened_at": n.resolved_at - timedelta(minutes=10),
    }
    text = timeline_reply(n.model_copy(update=update)).blocks[0]["text"]["text"]
    assert "Resolved* after 10 min" in text


def test_a_reply_does_not_repeat_the_kind_its_message_starts_with() -> None:
    resolved = make_incident(state=IncidentState.RESOLVED)
    event = change(
        resolved, ChangeKind.RESOLVED, 95, "resolved: all alerts quiet for the quiet period", "resolved"
    )
    reply = timeline_reply(build_notification(event))
    assert reply.text == "resolved: all alerts quiet for the quiet period"
    assert "resolved: resolved" not in str(reply.blocks)


@pytest.mark.parametrize(
    ("kind", "message", "shown", "text"),
    [
        ("note", "note by bob: PSU 2 was loose", "*note* by bob: PSU 2 was loose", None),
        ("acknowledged", "acknowledged by alice", "*acknowledged* by alice", None),
        (
            "priority",
            "priority P2: thermal/power throttling",
            "*priority* P2: thermal/power throttling",
            None,
        ),
        ("opened", "incident opened", "incident opened", None),  # it says what happened: said once
        ("silence_ended", "silence ended: nothing happened while silenced", None, None),
        ("root_cause_changed", "root cause is now node down on node r07-n01", None, None),
        # Kinds read as words, before a message that does not say what happened.
        (
            "alert_added",
            "GPUXid on r07-n01",
            "*alert added*: GPUXid on r07-n01",
            "alert added: GPUXid on r07-n01",
        ),
    ],
    ids=["note", "acknowledged", "priority", "opened", "silence-ended", "root-cause", "other"],
)
def test_a_reply_says_its_kind_once(kind: str, message: str, shown: str | None, text: str | None) -> None:
    event = change(make_incident(), ChangeKind.UPDATED, 10, message, kind)
    reply = timeline_reply(build_notification(event))
    assert reply.blocks[0]["text"]["text"] == (shown or message)
    assert reply.text == (text or message)  # the fallback text (notifications, search) too


def test_a_resolution_by_hand_says_resolved_once() -> None:
    resolved = make_incident(state=IncidentState.RESOLVED)
    reply = timeline_reply(
        build_notification(change(resolved, ChangeKind.RESOLVED, 95, "resolved by alice", "resolved"))
    )
    assert reply.text == "resolved by alice"
    assert reply.blocks[0]["text"]["text"] == ":white_check_mark: *Resolved* by alice"


@pytest.mark.parametrize(
    ("kind", "event_kind", "message", "said"),
    [
        (
            ChangeKind.MITIGATING,
            "mitigating",
            "mitigating: draining node gpu-a1",
            "draining node gpu-a1 (by dave)",
        ),
        (ChangeKind.ACKNOWLEDGED, "acknowledged", "acknowledged by dave", "* by dave"),
        (ChangeKind.UPDATED, "note", "note by dave: vendor ticket 12", "* by dave: vendor ticket 12"),
    ],
    ids=["mitigating-names-them", "ack-names-them-once", "note-names-them-once"],
)
def test_a_reply_of_a_persons_change_says_who_made_it_once(
    kind: ChangeKind, event_kind: str, message: str, said: str
) -> None:
    # Probe walk: `incidents mitigate --action "draining node gpu-a1" --by dave` was replied as "mitigating:
    # draining node gpu-a1": the thread never said who; the others name them in their message already.
    told = change(make_incident(), kind, 5, message, event_kind, {"by": "dave"})
    reply = timeline_reply(build_notification(told))
    assert reply.blocks[0]["text"]["text"].endswith(said)
    assert reply.text.count("dave") == 1


def test_the_recommended_actions_are_shown_in_words_when_there_are_any() -> None:
    inc = make_incident()
    opened = change(inc, ChangeKind.OPENED, 0, "opened")
    plain = incident_message(build_notification(opened)).attachments[0]["blocks"]
    assert "recommended" not in [b.get("block_id") for b in plain]
    advised = replace(opened, recommended=("restart_node", "made_up_action"))
    message = incident_message(build_notification(advised))
    [block] = [b for b in message.attachments[0]["blocks"] if b.get("block_id") == "recommended"]
    assert (
        block["text"]["text"]
        == "*Recommended*\n• cordon and drain the node, then reboot it\n• made_up_action"
    )
    assert validate_attachments(message.attachments) == []


def test_the_message_of_a_silenced_incident_says_until_when_until_it_resolves() -> None:
    opened, *_, resolved = lifecycle()
    until = opened.event.at + timedelta(hours=1)
    silenced = incident_message(build_notification(replace(opened, silenced_until=until)))
    meta = next(b for b in silenced.attachments[0]["blocks"] if b.get("block_id") == "meta")
    assert f"silenced until <!date^{int(until.timestamp())}^" in meta["elements"][0]["text"]
    assert validate_attachments(silenced.attachments) == []
    assert "silenced" not in str(incident_message(build_notification(opened)).attachments)
    done = incident_message(build_notification(replace(resolved, silenced_until=until)))
    assert "silenced" not in str(done.attachments)  # resolved is what matters then


def _action_ids(attachments: list[dict[str, object]]) -> list[str]:
    blocks = attachments[0]["blocks"]
    assert isinstance(blocks, list)
    return [e["action_id"] for b in blocks if b.get("type") == "actions" for e in b["elements"]]


def test_a_silenced_incident_offers_no_silence_button_until_its_silences_last_half_hour() -> None:
    """Slack walk-through: the message kept "Silence 1 h" while the incident was silenced; a press did
    nothing but answer "already silenced". Its silence is shown instead; in its last half hour, when a press
    extends it, "Extend silence 1 h" is offered; the button is back once it ends."""
    opened = change(make_incident(), ChangeKind.OPENED, 0, "opened")
    until = opened.event.at + timedelta(hours=1)
    silenced = build_notification(replace(opened, silenced_until=until))
    assert _action_ids(incident_message(silenced).attachments) == [ACTION_ACKNOWLEDGE, ACTION_APPROVE]
    assert ACTION_SILENCE_1H in _action_ids(incident_message(build_notification(opened)).attachments)
    ending = incident_message(
        build_notification(replace(opened, silenced_until=until - timedelta(minutes=31)))
    )
    assert _action_ids(ending.attachments) == [ACTION_ACKNOWLEDGE, ACTION_APPROVE, ACTION_SILENCE_1H]
    assert "Extend silence 1 h" in str(ending.attachments) and validate_attachments(ending.attachments) == []
    acked = change(make_incident(state=IncidentState.ACKNOWLEDGED), ChangeKind.ACKNOWLEDGED, 1, "ack")
    minimal = minimal_message(build_notification(replace(acked, silenced_until=until)))
    assert _action_ids(minimal.attachments) == []  # no empty actions block: Slack refuses one
    assert validate_attachments(minimal.attachments) == []
    assert validate_attachments(incident_message(silenced).attachments) == []


def test_an_incident_merged_into_another_is_shown_merged_not_resolved() -> None:
    folded = make_incident("inc-gpu", state=IncidentState.RESOLVED, title="gpu r02-n1/2 thermal")
    n = build_notification(change(folded, ChangeKind.RESOLVED, 5, "merged into inc-rack", "merged"))
    message = incident_message(n)
    [attachment] = message.attachments
    assert attachment["color"] == "#808080" and ":white_check_mark:" not in str(attachment["blocks"])
    assert "merged into inc-rack" in str(attachment["blocks"]) and "(merged into inc-rack)" in message.text
    reply = timeline_reply(n)
    assert "Resolved" not in reply.text + str(reply.blocks) and "goes on there" in str(reply.blocks)
    validate_attachments(message.attachments)


def test_an_incident_that_took_no_capacity_says_so_rather_than_an_unknown_impact() -> None:
    n = build_notification(
        change(make_incident(title="gpu r02-n1/2 thermal"), ChangeKind.OPENED, 0, "opened")
    )
    n = n.model_copy(update={"impact_summary": "", "gpus_affected": 2, "nodes_affected": 1})
    assert "no capacity lost; 2 GPUs degraded" in str(incident_message(n).attachments[0]["blocks"])


def test_a_degraded_gpu_is_counted_as_one_gpu_not_as_zero_nodes() -> None:
    """Slack walk-through: a throttling GPU's message said "0 node(s), 1 GPU(s)" (no node is lost)."""
    n = build_notification(
        change(make_incident(title="gpu r02-n1/2 thermal"), ChangeKind.OPENED, 0, "opened")
    )
    n = n.model_copy(update={"impact_summary": "", "gpus_affected": 1, "nodes_affected": 0})
    blocks = {b.get("block_id"): b for b in incident_message(n).attachments[0]["blocks"]}
    assert blocks["targets"]["text"]["text"].endswith("\n1 GPU")
    assert blocks["impact"]["text"]["text"] == "*Impact*\nno capacity lost; 1 GPU degraded"


def test_the_runbook_field_links_the_configured_runbook_and_is_left_out_without_one() -> None:
    incident_change = lifecycle()[0]
    linked = build_notification(incident_change, runbook=runbook_linker("https://runbooks.example/gpu/"))
    blocks = incident_message(linked).attachments[0]["blocks"]
    (field,) = [b for b in blocks if b.get("block_id") == "runbook"]
    assert field["text"]["text"] == "*Runbook*\n<https://runbooks.example/gpu/rack_down.yaml|rack_down.yaml>"
    unlinked = incident_message(build_notification(incident_change)).attachments[0]["blocks"]
    assert "runbook" not in {b.get("block_id") for b in unlinked}
    assert validate_blocks(unlinked) == []


def test_text_and_fallback_are_escaped_so_a_workload_name_cannot_notify_the_channel() -> None:
    n = hostile_notification()
    message, reply = incident_message(n), timeline_reply(n)
    payloads = [
        {"text": message.text, "attachments": message.attachments},
        {"text": reply.text, "blocks": reply.blocks},
        {"text": minimal_message(n).text, "attachments": minimal_message(n).attachments},
        {"text": minimal_reply(n).text, "blocks": minimal_reply(n).blocks},
    ]
    assert [mentions_in(p) for p in payloads] == [[], [], [], []]
    assert message.text == message.attachments[0]["fallback"]
    assert "training job &lt;!channel&gt; ping-everyone stopped" in message.text
    assert reply.text == "note by &lt;@U0BOB&gt;: see &lt;!subteam^S1&gt;"
    # The header is plain_text: Slack shows it as it is and notifies nobody, so it is not escaped.
    assert "<!channel> ping-everyone" in message.attachments[0]["blocks"][0]["text"]["text"]


def test_huge_incidents_fit_every_limit_slack_documents() -> None:
    n = huge_notification()
    message = incident_message(n)
    assert validate_attachments(message.attachments) == []
    assert validate_blocks(timeline_reply(n).blocks) == []
    assert len(message.text) <= 4000 and len(timeline_reply(n).text) <= 4000
    blocks = {b.get("block_id"): b for b in message.attachments[0]["blocks"]}
    cause = blocks["summary"]["fields"][2]["text"]
    assert cause == f"*Root cause*\nrack down on `{LONG_NODE}`"  # 256 characters fit a field whole
    [*_, approve, _] = blocks["incident_actions"]["elements"]
    confirm = approve["confirm"]["text"]["text"]
    assert confirm.startswith(f"Approve remediating *rack down* on `{LONG_NODE[:60]}")
    assert "…`: gpuwarden records your approval" in confirm  # the target is cut, the sentence is not
    impact = blocks["impact"]["text"]["text"]
    assert impact.startswith("*Impact*\n1 node, 8 GPUs, inference service svc-0000 100% of replicas lost")
    *named, more = impact.removeprefix("*Impact*\n").split(", ")
    assert more.startswith("…and ") and int(more.split()[1]) == 1002 - len(named)  # counted, not cut
    assert named[-1].endswith("100% of replicas lost")
    targets = blocks["targets"]["text"]["text"]
    assert f"• `{'h' * 247}…`\n" in targets  # a 2,500-character target is cut, the nine after it shown
    assert targets.endswith("• `inference_service/prod/svc-0008`\n…and 991 more\n8 nodes, 64 GPUs")


@pytest.mark.parametrize(
    "text",
    ["a" * 2998 + "&amp;b", "a" * 2990 + "<https://x.example|link>", "a" * 2999 + "&lt;"],
    ids=["escape", "link", "escape-at-the-end"],
)
def test_text_is_never_cut_inside_an_escape_or_a_link(text: str) -> None:
    cut = truncate(text, 3000)
    assert len(cut) <= 3000 and cut.endswith("a…")


def test_the_minimal_message_is_valid_and_says_what_matters() -> None:
    n = huge_notification().model_copy(update={"runbook_url": "https://runbooks.example/gpu/rack_down.yaml"})
    message = minimal_message(n)
    assert validate_attachments(message.attachments) == []
    [section, buttons] = message.attachments[0]["blocks"]
    text = section["text"]["text"]
    assert text.startswith(":rotating_light: *P0 urgent* node hhh") and len(text) < 600
    assert "incident `inc-r07`" in text and "<https://runbooks.example/gpu/rack_down.yaml|runbook>" in text
    assert [e["action_id"] for e in buttons["elements"]] == [ACTION_ACKNOWLEDGE, ACTION_SILENCE_1H]
    assert validate_blocks(minimal_reply(n).blocks) == []


def test_the_impact_counts_a_workload_whose_name_holds_a_comma_once() -> None:
    # 1,000 jobs, each named "etl, shard N": Slack's impact names the first ones and counts the rest as
    # jobs, not as twice as many pieces of names.
    jobs = tuple(f"training job etl, shard {i:04d} stopped" for i in range(1000))
    n = build_notification(change(make_incident(), ChangeKind.OPENED, 0, "opened"))
    n = n.model_copy(update={"impact_summary": ", ".join(jobs), "impact_parts": jobs})
    impact = str(incident_message(n).attachments[0]["blocks"])
    shown = impact.count("training job etl, shard ")
    assert 0 < shown < 1000
    assert f"…and {1000 - shown} more" in impact


def test_a_reopened_incident_says_since_when_it_is_open_again() -> None:
    # "Opened" gave only the first opening: an incident resolved yesterday and reopened now read as open
    # for a day to the on-call, who needs to know since when it burns this time.
    incident = make_incident()
    incident.last_opened_at = incident.opened_at + timedelta(hours=20)
    reopened = build_notification(change(incident, ChangeKind.REOPENED, 20 * 60, "GPULost fired again"))
    [summary] = [b for b in incident_message(reopened).attachments[0]["blocks"] if b["block_id"] == "summary"]
    opened = next(f["text"] for f in summary["fields"] if f["text"].startswith("*Opened*"))
    first, again = int(incident.opened_at.timestamp()), int(incident.last_opened_at.timestamp())
    assert f"<!date^{first}^" in opened and f"reopened <!date^{again}^" in opened
    never = build_notification(lifecycle()[0])
    assert "reopened" not in str(incident_message(never).attachments)
    assert validate_attachments(incident_message(reopened).attachments) == []


def test_an_incident_whose_alerts_all_ended_says_so_in_its_state_until_one_fires_again() -> None:
    # Probe walk: an incident announced during its quiet period (its alerts ended before the announce
    # delay) read "triggered" like a live fault; nothing said its alerts had ended.
    inc = make_incident()
    change(inc, ChangeKind.OPENED, 0, "incident opened", "opened")
    quiet = change(inc, ChangeKind.UPDATED, 1, "all alerts resolved; waiting for the quiet period", "quiet")
    assert "quiet: all its alerts ended" in _state_field(build_notification(quiet))
    again = change(inc, ChangeKind.UPDATED, 2, "alert NodeDown (r07-n01) firing", "alert_firing")
    assert "quiet" not in _state_field(build_notification(again))


def _state_field(n: Notification) -> str:
    (attachment,) = incident_message(n).attachments or []
    fields = [f["text"] for b in attachment["blocks"] for f in b.get("fields", ())]
    (state,) = [f for f in fields if f.startswith("*State*")]
    return str(state)


def test_investigate_does_not_say_no_remedy_is_known_beside_an_alert_that_names_one() -> None:
    """The demo's thermal incident read "investigate (no known remedy)" beside its alert's "the GPU runs
    hotter than its power draw explains (cooling failing?)": the cooling is the remedy to look at."""
    opened = change(make_incident(), ChangeKind.OPENED, 0, "opened")
    message = incident_message(build_notification(replace(opened, recommended=("investigate",))))
    [block] = [b for b in message.attachments[0]["blocks"] if b.get("block_id") == "recommended"]
    assert "no known remedy" not in block["text"]["text"]
    assert "the alerts say what to check" in block["text"]["text"]


def _error_ratio_opening(tmp_path: Path, ratio: str) -> tuple[IncidentChange, str, str]:
    """The opening of an incident of service chat answering ``ratio`` of its requests with errors, the
    Impact its Slack message shows and why it has its priority (``incidents show``)."""
    sql = make_engine(str(tmp_path / "incidents.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, FakeClock(), AlertingConfig(announce_delay_seconds=0), fleet_inventory())
    heard: list[IncidentChange] = []
    engine.subscribe(heard.append)
    labels = {
        "alertname": "InferenceErrorRateHigh",
        "cluster": "c1",
        "service": "chat",
        "namespace": "serving",
    }
    engine.ingest([Alert(labels, annotations={"error_ratio": ratio})])
    opened = next(c for c in heard if c.kind is ChangeKind.OPENED)
    blocks = incident_message(build_notification(opened)).attachments[0]["blocks"]
    ((row, _),) = engine.store.list_rows()
    impact = next(b for b in blocks if b.get("block_id") == "impact")["text"]["text"]
    return opened, impact, row.impact["priority_reason"]


def test_an_incident_that_took_no_capacity_says_why_it_has_its_priority_not_unknown(tmp_path: Path) -> None:
    # An inference service answering 62% errors is P0, but no GPU or replica is lost: the message read
    # "P0 urgent" with Impact "_unknown_" (the error ratio that made it P0 was on the timeline only).
    opened, impact, _ = _error_ratio_opening(tmp_path, "0.62")
    assert (opened.incident.priority, impact) == (Priority.P0, "*Impact*\nerror ratio 62%")


@pytest.mark.parametrize(
    ("ratio", "shown"),
    [("0.004", "0.4%"), ("0.0004", "<0.1%"), ("0.012", "1%")],
    ids=["0.4%", "0.04%", "1.2%"],
)
def test_a_small_error_ratio_is_not_shown_as_0_percent(tmp_path: Path, ratio: str, shown: str) -> None:
    # A service failing 0.4% of its requests is P2 ("some requests fail"), but its Impact read "error ratio
    # 0%", and why it is P2 "error ratio 0%: some requests fail".
    opened, impact, why = _error_ratio_opening(tmp_path, ratio)
    assert (opened.incident.priority, impact) == (Priority.P2, f"*Impact*\nerror ratio {shown}")
    assert why == f"error ratio {shown}: some requests fail"


def test_a_service_some_requests_still_reach_is_not_shown_failing_100_percent(tmp_path: Path) -> None:
    # 99.6% of requests failing read "error ratio 100%" and "error ratio 100% > 50%": none answered, as if the
    # endpoint were gone, where 0.4% of them still got through.
    opened, impact, why = _error_ratio_opening(tmp_path, "0.996")
    assert (opened.incident.priority, impact) == (Priority.P0, "*Impact*\nerror ratio 99.6%")
    assert why == "error ratio 99.6% > 50%"


def test_the_opened_time_falls_back_to_the_one_format_gpuwarden_writes_times_in() -> None:
    # Slack shows `<!date^...|fallback>` in each reader's zone; the fallback (notification text, clients that
    # cannot render dates) was ISO with +00:00 and the clock's fraction, where the CLI, the API's messages
    # and the postmortem write 2026-01-01T12:00:05Z.
    opened = change(make_incident(), ChangeKind.OPENED, 0, "opened")
    n = build_notification(opened).model_copy(update={"opened_at": T0 + timedelta(seconds=5.25)})
    text = json.dumps(incident_message(n).attachments)
    assert "^{date_short_pretty} {time}|2026-01-01T12:00:05Z>" in text, text
