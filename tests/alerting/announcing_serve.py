"""An engine whose outbox announces to Slack (the recorder) and a webhook receiver, as ``serve`` wires them:
shared by the announcing tests and the member tests that read what was announced."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alerting import scenarios as sc
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Outbox
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert
from tests.alerting.arrival_streams import _onset
from tests.migrated_store import migrated_sqlite


@contextmanager
def _served(
    tmp_path: Path, alerts: list[Alert], broadcast_resolutions: bool = False
) -> Iterator[tuple[IncidentEngine, Outbox, SlackRecorder, WebhookNotifier]]:
    """An engine with no announce delay at the alerts' last onset, its outbox sending to Slack (the
    recorder) and to the webhook ``oncall``, as ``serve`` wires them."""
    path = str(tmp_path / "s.db")
    migrated_sqlite(Path(path)).dispose()
    clock = FakeClock(max(_onset(a) for a in alerts).timestamp())
    engine = IncidentEngine(
        make_engine(path), clock, AlertingConfig(announce_delay_seconds=0), sc.fleet_inventory()
    )
    with SlackRecorder() as recorder:
        slack = SlackNotifier(
            make_client(recorder.token, base_url=recorder.base_url),
            "#gpu-incidents",
            broadcast_resolutions=broadcast_resolutions,
        )
        hook = WebhookNotifier(f"{recorder.root_url}/hooks/oncall", name="webhook:oncall")
        outbox = Outbox(make_engine(path), [slack, hook], clock)
        engine.subscribe(outbox)
        yield engine, outbox, recorder, hook
