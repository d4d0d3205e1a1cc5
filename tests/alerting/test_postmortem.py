"""The postmortem draft: the priority an incident reached at its worst stays visible after it recovers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerting.postmortem import peak_priority, render_postmortem
from gpuwarden.model import FaultKind, GpuRef, Incident, IncidentState, Priority, RootCause, TimelineEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def incident(priorities: list[tuple[str, str]]) -> Incident:
    timeline = [TimelineEvent(T0, "opened", "incident opened")]
    timeline += [
        TimelineEvent(T0 + timedelta(minutes=i), "priority", f"priority {p}", {"to": p, "reason": why})
        for i, (p, why) in enumerate(priorities)
    ]
    return Incident(
        id="inc-1",
        title="gpu node-02/3 lost",
        priority=Priority(priorities[-1][0]),
        state=IncidentState.RESOLVED,
        root_cause=RootCause(FaultKind.GPU_LOST, GpuRef("node-02", 3)),
        opened_at=T0,
        timeline=timeline,
        resolved_at=T0 + timedelta(minutes=40),
    )


def test_an_incident_that_fell_from_p1_to_p3_reports_p1_at_its_worst_and_why() -> None:
    inc = incident([("P1", "training job stalled by a fatal fault"), ("P3", "potential problem")])
    assert peak_priority(inc) == (Priority.P1, "training job stalled by a fatal fault")
    md = render_postmortem(inc, T0, ["GpuLost"])
    assert "- Priority: **P1** at its worst (training job stalled by a fatal fault); P3 at the end" in md


def test_an_incident_whose_priority_never_changed_shows_it_once() -> None:
    inc = incident([("P2", "degraded")])
    assert peak_priority(inc)[0] == Priority.P2
    assert "- Priority: **P2**\n" in render_postmortem(inc, T0, ["GpuClockSlowdown"])


def test_a_note_of_several_lines_stays_inside_its_timeline_item() -> None:
    inc = incident([("P2", "degraded")])
    text = "PSU swapped\n```\nunclosed fence\n# Heading\n````"
    inc.timeline.append(TimelineEvent(T0 + timedelta(minutes=5), "note", f"note by bob: {text}"))
    md = render_postmortem(inc, T0, ["GpuLost"])
    lines = md.splitlines()
    start = lines.index("- 2026-01-01 00:05:00 UTC — note by bob: PSU swapped")
    assert lines[start + 1 : start + 6] == [
        "  `````text",
        "  ```",
        "  unclosed fence",
        "  # Heading",
        "  ````",
    ]
    assert lines[start + 6] == "  `````"  # closed, longer than any fence inside: the rest stays Markdown
    assert "\n# Heading" not in md and "## Follow-ups" in md
