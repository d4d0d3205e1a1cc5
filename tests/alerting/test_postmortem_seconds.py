"""The postmortem's figures agree with the times it shows, to the second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerting.postmortem import render_postmortem
from gpuwarden.model import FaultKind, GpuRef, Incident, IncidentState, Priority, RootCause, TimelineEvent

T0 = datetime(2026, 12, 6, 22, 57, 14, 999000, tzinfo=UTC)  # a Prometheus startsAt, in milliseconds


def _metrics(md: str) -> dict[str, str]:
    section = md.split("## Metrics\n\n", 1)[1].split("\n\n", 1)[0]
    return dict(line.removeprefix("- ").split(": ", 1) for line in section.splitlines())


def test_mttd_time_to_acknowledge_and_mttr_are_the_differences_of_the_times_shown() -> None:
    # Seen on serve: "First onset: 22:57:14Z", "Opened: 22:57:44Z" and "MTTD: 0m 29s" (14.999 to 44.915);
    # "Opened: 22:57:29Z", "acknowledged" at 22:57:51Z and "Time to acknowledge: 0m 21s" (29.23 to 51.06).
    opened = T0 + timedelta(seconds=29.916)  # 22:57:44.915
    acked = opened + timedelta(seconds=21.83)  # 22:58:06.745
    recovered = T0 + timedelta(seconds=95.002)  # 22:58:50.001
    incident = Incident(
        id="inc-1",
        title="gpu n31/2 double-bit ECC error",
        priority=Priority.P2,
        state=IncidentState.RESOLVED,
        root_cause=RootCause(FaultKind.ECC_DBE, GpuRef("n31", 2)),
        opened_at=opened,
        timeline=[
            TimelineEvent(opened, "opened", "incident opened"),
            TimelineEvent(acked, "acknowledged", "acknowledged by alice", {"by": "alice"}),
        ],
        resolved_at=recovered + timedelta(seconds=300),
    )
    md = render_postmortem(incident, T0, ["GpuEccDbe"], recovered)
    assert "- Opened: 2026-12-06T22:57:44Z" in md
    assert "- 2026-12-06T22:58:06Z — acknowledged by alice" in md
    metrics = _metrics(md)
    assert metrics["First onset"].startswith("2026-12-06T22:57:14Z")
    assert metrics["Recovered"].startswith("2026-12-06T22:58:50Z")
    assert metrics["MTTD (first onset to incident opened)"] == "0m 30s"  # 14 to 44
    assert metrics["Time to acknowledge"] == "0m 22s"  # 44 to 06
    assert metrics["MTTR (first onset to recovery)"] == "1m 36s"  # 22:57:14 to 22:58:50
