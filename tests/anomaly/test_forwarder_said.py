"""What the alert forwarder says of the resolutions a restart takes up from its state file."""

from __future__ import annotations

import logging

import httpx
import pytest

from anomaly.forwarder import STATE_COMPONENT, AlertForwarder
from anomaly.snapshot import Snapshot
from gpuwarden.clock import FakeClock
from gpuwarden.model import AlertStatus
from tests.anomaly.forwarder_serve import Serve, _xid


def _forwarder(serve: Serve, clock: FakeClock) -> AlertForwarder:
    client = httpx.Client(transport=httpx.MockTransport(serve.handle))
    return AlertForwarder("http://serve:9700/", "t0ken", clock, resend_seconds=30, client=client)


@pytest.mark.parametrize(
    ("gpus", "said"),
    [
        (["3"], "1 resolution serve:9700 had not received before the restart is posted again"),
        (["3", "7"], "2 resolutions serve:9700 had not received before the restart are posted again"),
    ],
    ids=["one", "two"],
)
def test_the_resolutions_a_restart_posts_again_are_counted_in_words(
    caplog: pytest.LogCaptureFixture, gpus: list[str], said: str
) -> None:
    """One was said as "1 resolution(s) ... are posted again"."""
    clock, serve = FakeClock(), Serve()
    before = _forwarder(serve, clock)
    serve.answers = [httpx.ConnectError("connection refused")] * 4
    for gpu in gpus:
        before.on_alert(_xid(gpu, clock))
    assert not before.flush()
    clock.advance(30)
    for gpu in gpus:
        before.on_alert(_xid(gpu, clock, AlertStatus.RESOLVED))
    assert not before.flush()
    saved = Snapshot(0.0, 0.0, {}, {}, {"k": 1}, {STATE_COMPONENT: before.state()})
    with caplog.at_level(logging.INFO, logger="anomaly.forwarder"):
        _forwarder(serve, clock).take_up(saved)
    assert said in caplog.text
