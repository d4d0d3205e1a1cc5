"""A storm of incidents told to Slack under Slack's rate limits, in process: one JSON line.

``--incidents`` (200) incidents open at once (one tick), then each is acknowledged (an edit and a reply),
all queued in the outbox before the first is sent, and delivered through the real SlackNotifier
(slack-sdk) to the local Slack stand-in with its rate limits on (``alerting.notifiers.ratelimits``:
``chat.postMessage`` about one a second per channel, short bursts; ``chat.update`` Tier 3). gpuwarden
posts to one channel (``slack.channel``), so every post waits on that channel's limit. Prints how long
until every incident's message (its page) is posted and until all is told, the calls Slack answered 429,
by method, the outbox's own rate-limit pauses, and whether each thread kept its incident's order (it must).
``seconds_until_last_first_message`` is when the last incident's first (top-level) message was posted (the
moment every page is out), and ``replies_before_last_first_message`` how many thread replies went before it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

INCIDENTS = 200


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=INCIDENTS, help=f"(default {INCIDENTS})")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.db import make_engine  # noqa: E402 - imported after the command line is read
from alerting.migrate import upgrade  # noqa: E402
from alerting.notifiers.pacing import POSTS_PER_SECOND  # noqa: E402
from alerting.notifiers.recorder import SlackRecorder  # noqa: E402
from alerting.notifiers.slack import SlackNotifier, make_client  # noqa: E402
from alerting.outbox import Outbox  # noqa: E402
from alerting.outbox_tables import SENT  # noqa: E402
from alerting.subscriptions import ChangeKind  # noqa: E402
from gpuwarden.clock import SystemClock  # noqa: E402
from gpuwarden.model import IncidentState  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: its tests package, when
# run as `python benchmarks/X.py` without PYTHONPATH (as CI's harness tests and `make bench` run it)
from tests.alerting.notifiers.incidents import change, make_incident  # noqa: E402

CHANNEL = "C0STORM0001"


def main(count: int = INCIDENTS) -> None:
    db = str(Path(tempfile.mkdtemp(prefix="bench-slack-storm-")) / "gw.db")
    engine = make_engine(db)
    upgrade(engine)
    clock = SystemClock()
    with SlackRecorder(rate_limits=True, channels=[CHANNEL]) as recorder:
        client = make_client(recorder.token, base_url=recorder.base_url)
        notifier = SlackNotifier(
            client, CHANNEL, charts=False, clock=clock, posts_per_second=POSTS_PER_SECOND
        )
        outbox = Outbox(engine, [notifier], clock)
        incidents = [make_incident(f"inc-{i:04d}", title=f"node n{i:04d} lost a GPU") for i in range(count)]
        for incident in incidents:  # one tick opens them all; people acknowledge them after
            outbox(change(incident, ChangeKind.OPENED, 0, "incident opened"))
        for incident in incidents:
            incident.state = IncidentState.ACKNOWLEDGED
            outbox(change(incident, ChangeKind.ACKNOWLEDGED, 1, "acknowledged by alice"))
        start, started_at = time.monotonic(), time.time()
        pauses = 0
        while any(m.status != SENT for m in outbox.messages()):
            outbox.dispatch_due()
            if outbox.pause_left("slack") > 0:
                pauses += 1
                time.sleep(outbox.pause_left("slack"))
            else:
                time.sleep(0.05)
        took = time.monotonic() - start
        parents = recorder.channel_messages(CHANNEL)
        last_first = max(float(p.ts) for p in parents)  # the stand-in stamps them with time()
        replies = [r for p in parents for r in recorder.replies(p.ts)]
        early_replies = sum(1 for r in replies if float(r.ts) < last_first)
        in_order = all(
            [r.event for r in recorder.replies(p.ts)] == ["opened", "acknowledged"] for p in parents
        )
        limits = recorder.limits
        assert limits is not None
        posts = len(recorder.calls_to("chat.postMessage"))
    print(
        json.dumps(
            {
                "benchmark": "slack_storm",
                "incidents": count,
                "channels": 1,
                "parents": len(parents),
                "posts": posts,
                "updates": len(recorder.calls_to("chat.update")),
                "seconds_until_every_page": round(last_first - started_at, 1),
                "seconds_until_last_first_message": round(last_first - started_at, 1),
                "replies_before_last_first_message": early_replies,
                "seconds_until_all_told": round(took, 1),
                "posts_per_second": round(posts / took, 2),
                "answered_429_by_method": limits.refused,
                "outbox_pauses": pauses,
                "every_thread_in_order": in_order,
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS.incidents)
