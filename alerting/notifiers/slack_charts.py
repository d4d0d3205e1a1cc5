"""The Slack notifier's chart: attached once to an incident's thread (``files_upload_v2``), looked for first
by a retry (a crash between Slack's answer to the upload and the save of ``chart_posted`` attached it twice).
In a channel that takes no thread replies it is shared as a file of the channel (``slack_unthreaded``).

``SlackCharts`` is a base of ``alerting.notifiers.slack.SlackNotifier``, which sets the state below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from alerting.notifiers.base import ChartSeries, Notification, ThreadSaver, ThreadState
from alerting.notifiers.blocks import escape
from alerting.notifiers.charts import SeriesSource, chart_filename, chart_series, chart_upload, shares_file
from alerting.notifiers.slack_lookups import SlackLookups
from alerting.notifiers.slack_unthreaded import NON_THREADABLE, UnthreadedChannels
from gpuwarden.errors import BackendError

logger = logging.getLogger("alerting.notifiers.slack")  # logged as the notifier's, as before the split


class SlackCharts:
    """Attaches an incident's chart to its thread once; a base of ``SlackNotifier``, which sets the state."""

    _client: WebClient
    _lookups: SlackLookups
    _series: SeriesSource | None
    _unthreaded: UnthreadedChannels

    def _call(
        self, method: str, call: Callable[[], SlackResponse], channel: str | None = None
    ) -> SlackResponse:
        raise NotImplementedError  # the notifier's: its deadline, its per-method limits, errors translated

    def _chart_in_thread(self, n: Notification, channel: str, ts: str) -> bool:
        """Whether the thread already holds the incident's chart (a file share of ``_attach_chart``'s
        filename): attached before a crash that came before ``chart_posted`` was saved."""
        filename = chart_filename(n)
        return self._lookups.in_thread(
            channel, ts, n.event_at.timestamp(), f"chart {filename}", shares_file(filename)
        )

    def _chart_once(self, n: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver) -> None:
        """Attach the incident's chart to its thread and save that it is there; a retry looks first, as a
        crash between Slack's answer to the upload and the save attached it twice."""
        assert thread.channel is not None and thread.ts is not None
        if retry and self._chart_in_thread(n, thread.channel, thread.ts):
            logger.info("slack chart already attached incident_id=%s", n.incident_id)
            save(replace(thread, chart_posted=True))
            return
        series = chart_series(n, self._series)
        if not series:
            return
        try:
            self._attach_chart(n, series, thread.channel, thread.ts, retry=retry)
        except BackendError as exc:  # a chart is optional: it must not hold back the event
            logger.warning("chart not attached incident_id=%s error=%s", n.incident_id, exc)
        save(replace(thread, chart_posted=True))

    def _attach_chart(
        self, n: Notification, series: Sequence[ChartSeries], channel: str, ts: str, *, retry: bool
    ) -> None:
        """Upload the chart to the thread; where the channel takes no thread replies (Slack refuses the file's
        share there too), as a file of the channel that says which incident it is of, which a retry looks
        for in the channel's history first."""
        upload = chart_upload(n, series)
        if upload is None:
            return
        if channel not in self._unthreaded:
            try:
                self._call(
                    "files_upload_v2",
                    lambda: self._client.files_upload_v2(channel=channel, thread_ts=ts, **upload),
                    channel,  # an error about the channel names this one, not slack.channel
                )
                return
            except BackendError as exc:
                if exc.code != NON_THREADABLE or exc.retryable:
                    raise
            self._unthreaded.refused(channel, n.incident_id)
        filename = chart_filename(n)
        since = n.event_at.timestamp()
        if retry and self._lookups.in_channel(channel, since, f"chart {filename}", shares_file(filename)):
            logger.info("slack chart already shared in the channel incident_id=%s", n.incident_id)
            return
        upload["initial_comment"] = escape(
            f"Incident {n.incident_id} ({n.title}), its chart: this channel takes no thread replies, so it"
            f" follows here, after its message {ts}"
        )
        self._call(
            "files_upload_v2", lambda: self._client.files_upload_v2(channel=channel, **upload), channel
        )
