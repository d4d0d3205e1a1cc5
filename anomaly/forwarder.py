"""Deliver the anomaly service's alerts to ``gpuwarden serve`` as Prometheus delivers rule alerts.

After every tick each firing alert is posted again (``POST /api/v2/alerts``) with ``endsAt`` four ticks (and
at least four minutes) ahead, so the incident engine resolves it by itself if this service stops; a resolved
alert is posted with its end. The score and the recommended action travel as the annotations ``score`` and
``recommended_action``, which the engine reads back.

``gpuwarden serve`` down, refusing the token, or answering 429/5xx loses nothing: firing alerts are re-posted
at the next tick anyway, and resolutions wait (oldest dropped past ``max_unsent``, counted) until a post
succeeds. A resolution of an alert serve never accepted as firing (it fired and cleared while serve was
down, or within one tick) goes as the firing alert, then its resolution, in one batch in that order: serve
stores a first-seen resolved alert but opens no incident for it, so a hard fault would leave no trace. A post
that fails before any answer on a pooled connection the server had closed (``RemoteProtocolError``, or a
reset: ``ReadError``/``WriteError``; the keep-alive race) is sent again at once, once: posting alerts is
idempotent; past that it waits for the tick. Pooled connections expire after ``KEEPALIVE_SECONDS`` idle,
below the shortest keep-alive serve takes (1 s), so a tick's post rarely meets that race at all.

A 400 means this service built a body the server refuses; it is logged with the server's message and the
batch is not retried (it would be refused forever).

At a start, ``held`` lists what serve holds (``GET /api/v2/alerts``): an alert it holds under other labels
than this release raises it by is posted on under those (``_as_served``). Where serve could not list it then
(unreachable, 429/5xx), the listing is asked again before each flush, and nothing is posted until it answers
or the hold from that start has passed (``_listed``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from anomaly.snapshot import Snapshot, State, alert_state, restored_alert
from gpuwarden.clock import Clock, rfc3339
from gpuwarden.model import Alert, AlertStatus, label_fingerprint
from gpuwarden.redaction import hidden_password, shown_host

logger = logging.getLogger(__name__)

RESEND_FLOOR_SECONDS = 60.0  # Prometheus' --rules.alert.resend-delay
BATCH = 500  # alerts per POST; Prometheus sends at most 64, gpuwarden serve takes bodies up to 1 MiB
KEEPALIVE_SECONDS = 0.5
"""How long an idle pooled connection is kept. serve closes one idle for ``api.keep_alive_seconds`` (5 s by
default, 1 s at least); httpx kept one 5 s, so with a 5 s tick a post went out on a connection as serve
closed it (one lost tick in a 35-minute soak). The batches of one flush still share a connection."""

STATE_COMPONENT = "forwarder"
"""The forwarder's component of the service's snapshot (``AnomalyService.kept_with``)."""

# Errors of a post that went out on a connection the server was closing: it never answered it.
_CLOSED_UNDER_IT = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def postable(alert: Alert, ends_at: datetime) -> dict[str, Any]:
    """Alertmanager's ``postableAlert`` of an anomaly alert, score and action as annotations."""
    annotations = dict(alert.annotations)
    if alert.score is not None:
        annotations["score"] = f"{alert.score:.3f}"
    annotations["recommended_action"] = alert.recommended_action.value
    body: dict[str, Any] = {
        "labels": dict(alert.labels),
        "annotations": annotations,
        "endsAt": rfc3339(ends_at),
    }
    if alert.starts_at is not None:
        body["startsAt"] = rfc3339(alert.starts_at)
    if alert.generator_url:
        body["generatorURL"] = alert.generator_url
    return body


# Labels that describe an alert without naming it: which side of its band it raised on. An alert is the
# same one whatever they read (the service keys its firing alerts without them), but serve and Alertmanager
# fingerprint every label: thermal alerts gained ``deviation="up"``, so one firing across that upgrade was
# posted as a second alert for the same GPU and condition.
INFORMATIONAL_LABELS = frozenset({"deviation"})


def alert_identity(labels: Mapping[str, str]) -> str:
    """What names an alert across releases: the fingerprint of its labels less the informational ones and
    the empty ones (which Alertmanager and serve drop before they fingerprint)."""
    return label_fingerprint({k: v for k, v in labels.items() if v and k not in INFORMATIONAL_LABELS})


def held_seconds(resend_seconds: float) -> float:
    """How far ahead a firing alert's ``endsAt`` goes: how long serve holds it once posts stop. As
    Prometheus: four resends ahead, resends a minute apart at least (a slow refit delays one)."""
    return 4 * max(RESEND_FLOOR_SECONDS, resend_seconds)


def _ended_before(resolved: Alert, firing: Alert) -> bool:
    """Whether ``firing`` starts once ``resolved`` had ended: a new activity of the alert (the anomaly
    service re-raised it), not the same one that fired again before its resolution was sent."""
    return (
        resolved.ends_at is not None and firing.starts_at is not None and firing.starts_at >= resolved.ends_at
    )


def _valued(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` as serve holds them: empty values dropped."""
    return {k: v for k, v in labels.items() if v}


def _contradicts(held: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` give an informational label another value than ``held``, both valued: another
    activity (a fall of what rose), not the one ``held`` names under a release's other labels."""
    sides = ((held.get(k, ""), labels.get(k, "")) for k in INFORMATIONAL_LABELS)
    return any(was and now and was != now for was, now in sides)


def _ends(held: tuple[dict[str, str], datetime]) -> datetime:
    return held[1]


def _instant(text: str) -> datetime:
    """An RFC 3339 time, its offset required: a naive one, compared with the clock's, raised TypeError in
    ``on_alert`` mid-tick, and the warm-up read it as local time."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"no UTC offset in {text!r}")
    return at


@dataclass(frozen=True, slots=True)
class _Unlisted:
    """Why the receiver did not list what it holds; ``retry``: it may at a later ask (it was unreachable, or
    answered 408, 429 or 5xx: down, starting, overloaded, its store down)."""

    error: str
    retry: bool


class AlertForwarder(Collector):
    """Keeps what the service fires and resolves; ``flush`` posts it to ``gpuwarden serve``."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        clock: Clock,
        *,
        resend_seconds: float,
        client: httpx.Client | None = None,
        max_unsent: int = 10_000,
    ) -> None:
        """``resend_seconds``: how often ``flush`` runs (a tick); firing alerts end four of those (a minute at
        least) ahead."""
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self._shown_url = hidden_password(self.url)  # what the log names: a password in the URL stays out
        # Where the alerts go, as the tick line names it: serve, an Alertmanager or any receiver of the API.
        self.receiver = shown_host(self.url)
        # A receiver that cannot be reached must not hold the scoring tick past its interval (ticks were
        # skipped); one that answers slowly gets its 10 s, since a post that timed out is sent again.
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(10.0, connect=min(10.0, max(1.0, resend_seconds / 2))),
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS),
        )
        if token:
            self._client.headers["Authorization"] = f"Bearer {token}"
        self._clock = clock
        self._hold = timedelta(seconds=held_seconds(resend_seconds))
        self.max_unsent = max_unsent
        self.firing: dict[str, Alert] = {}
        self.unsent_resolved: dict[str, Alert] = {}
        # Fingerprints serve accepted as firing and not yet as resolved: the others' resolutions go as a pair.
        self.delivered: set[str] = set()
        self.posted = 0
        self.failures = 0
        self.retries = 0
        self.dropped = 0
        self.last_error: str | None = None
        # What serve held firing at the start (``held``), by identity: each alert's labels there and endsAt.
        self._serving: dict[str, tuple[dict[str, str], datetime]] = {}
        # The activities serve held under other labels that this one posts on under those (``_as_served``).
        self._renamed: dict[str, dict[str, str]] = {}
        # Until when ``flush`` asks serve again for what it holds, where it could not say at the start
        # (``held``), and the alerts told meanwhile, in order: renamed once it lists them (``_listed``).
        self._list_until: datetime | None = None
        self._told: list[Alert] = []

    def on_alert(self, alert: Alert) -> None:
        """The service's callback: an alert raised or resolved this tick."""
        if self._list_until is not None:
            self._told.append(alert)  # which labels it goes under waits on serve's listing (``_listed``)
            return
        alert = self._as_served(alert)
        fp = alert.fingerprint
        if alert.status is AlertStatus.FIRING:
            self.firing[fp] = alert
            ended = self.unsent_resolved.get(fp)
            if ended is None or not _ended_before(ended, alert):
                self.unsent_resolved.pop(fp, None)  # the same activity: it never ended
            return
        self.firing.pop(fp, None)
        self.unsent_resolved[fp] = alert
        while len(self.unsent_resolved) > self.max_unsent:
            oldest = next(iter(self.unsent_resolved))
            del self.unsent_resolved[oldest]
            self.delivered.discard(oldest)
            self.dropped += 1

    def _as_served(self, alert: Alert) -> Alert:
        """``alert`` under the labels serve holds it by, where they differ only in informational labels
        (``INFORMATIONAL_LABELS``): the activity serve held firing at the start (``held``) goes on, or ends
        (a restart's replay of the ticks it missed), under those. Raised once serve let it end (its endsAt
        passed), it is new: its own labels."""
        if not self._serving and not self._renamed:
            return alert
        identity = alert_identity(alert.labels)
        served = self._serving.pop(identity, None)
        # Empty values alone are no other labels: serve drops them, so posted with them it is the alert serve
        # holds, under the forwarder's one fingerprint for it (a re-escalation's end and raise, told apart
        # by fingerprint, went out new raise first: serve ended the alert while the fault went on).
        # Nor is another side: raised as a fall of what serve holds as a rise, it is a new activity (the one
        # that rose ended, its resolution lost with the process that found it), and serve reads the side: a
        # temperature posted on as "up" was a thermal fault of a cold GPU. serve lets the rise end at its
        # endsAt, as it would have had no process started after the one that died. A rise still firing
        # whose reads turned to a fall comes here as the rise: the warm-up recalled it, re-escalation on or
        # off, and raises it again on its side (``anomaly.alertupdate._as_recalled``).
        if (
            served is not None
            and self._clock.now() <= served[1]
            and served[0] != _valued(alert.labels)
            and not _contradicts(served[0], alert.labels)
        ):
            self._renamed[identity] = served[0]
        labels = self._renamed.get(identity)
        if alert.status is AlertStatus.RESOLVED:
            self._renamed.pop(identity, None)
        return alert if labels is None else replace(alert, labels=dict(labels))

    def flush(self) -> bool:
        """Post every firing alert and every resolution not yet accepted; True when all were accepted.

        A resolution of an alert serve never accepted as firing is preceded by that alert firing (its
        ``startsAt``, ``endsAt`` ahead), so serve opens the incident, then records its end. Nothing is posted
        while serve's listing is awaited (``_listed``).
        """
        if self._list_until is not None and not self._listed(self._list_until):
            return False
        now = self._clock.now()
        resolved = list(self.unsent_resolved.items())
        sent = dict(resolved)
        # (fingerprint, delivers it as firing, body) in the order serve must see them: the end of an activity
        # before the new one of the same alert (a re-escalation), which serve then takes as a refire.
        items = self._ends([(fp, a) for fp, a in resolved if fp in self.firing], now)
        items += [(fp, True, postable(a, now + self._hold)) for fp, a in self.firing.items()]
        items += self._ends([(fp, a) for fp, a in resolved if fp not in self.firing], now)
        start = 0
        while start < len(items):
            end = min(start + BATCH, len(items))
            if end < len(items) and items[end - 1][1] and items[end][0] == items[end - 1][0]:
                end -= 1  # a pair stays in one batch: a lost second post must not leave it firing
            chunk = items[start:end]
            if not self._post([body for _, _, body in chunk]):
                return False
            for fp, firing, _ in chunk:
                if firing:
                    self.delivered.add(fp)
                    continue
                self.delivered.discard(fp)
                # Accepted: drop it now, or a later batch's failure leaves it to be posted again (as a firing
                # copy and a resolution, since it is no longer delivered: an alert that fired twice).
                if self.unsent_resolved.get(fp) is sent[fp]:
                    del self.unsent_resolved[fp]
            start = end
        return True

    def state(self) -> State:
        """The resolutions serve has not accepted, oldest first, each with whether it accepted the alert
        firing, for the state file: an alert that fired and cleared while serve was down, the process then
        restarted, left no trace (``take_up`` reads them back)."""
        unsent = [
            {"alert": alert_state(alert), "delivered": fp in self.delivered}
            for fp, alert in self.unsent_resolved.items()
        ]
        return State({"unsent_resolved": unsent})

    def take_up(self, snapshot: Snapshot | None) -> None:
        """Go on posting the resolutions a snapshot's process had not got accepted (``state``), before the
        warm-up replays the history after it. One that does not fit is said and left out."""
        kept = None if snapshot is None else snapshot.components.get(STATE_COMPONENT)
        if kept is None:
            return
        try:
            items = [
                (restored_alert(item["alert"]), bool(item["delivered"]))
                for item in kept.meta["unsent_resolved"]
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            logger.warning(
                "anomaly state snapshot %s: the resolutions serve had not received are not taken up (%s: %s)",
                snapshot.origin if snapshot is not None else "",
                type(exc).__name__,
                exc,
            )
            return
        taken = 0
        for alert, delivered in items:
            fp = alert.fingerprint
            if fp in self.unsent_resolved or alert.status is not AlertStatus.RESOLVED:
                continue
            self.unsent_resolved[fp] = alert
            taken += 1
            if delivered:
                self.delivered.add(fp)
        if taken:  # those left out (already held, or not a resolution) are not counted
            logger.info(
                "%s %s had not received before the restart %s posted again",
                "1 resolution" if taken == 1 else f"{taken} resolutions",
                self.receiver,
                "is" if taken == 1 else "are",
            )

    def _ends(
        self, resolved: list[tuple[str, Alert]], now: datetime
    ) -> list[tuple[str, bool, dict[str, Any]]]:
        """The posts of resolutions, each preceded by its alert firing where serve never accepted it so."""
        items = []
        for fp, alert in resolved:
            if fp not in self.delivered:
                items.append((fp, True, postable(alert, now + self._hold)))
            items.append((fp, False, postable(alert, alert.ends_at or now)))
        return items

    def held(self) -> dict[str, datetime] | None:
        """The alerts the receiver holds firing now (``GET /api/v2/alerts``), by identity
        (``alert_identity``), each with the ``endsAt`` it lets it end at once posts stop: what a restarted
        service may recall (``AnomalyService.warm_up``). Kept too: the labels each is held under, which
        ``on_alert`` posts it on under (``_as_served``).

        None where it cannot say (not reachable, an error, a body not such a list), logged. Where it may say
        later (``_Unlisted.retry``), ``flush`` asks again, and posts nothing until it answers, for the hold
        from now at most (``_listed``)."""
        listed = self._list()
        if isinstance(listed, _Unlisted):
            if listed.retry:
                self._list_until = self._clock.now() + self._hold
            self._unlisted(listed)
            return None
        self._serving = listed
        return {identity: ends for identity, (_, ends) in listed.items()}

    def _list(self) -> dict[str, tuple[dict[str, str], datetime]] | _Unlisted:
        """What the receiver holds firing, by identity (of two held under one, the one held longer)."""
        try:
            response = self._client.get(self.url)
        except httpx.HTTPError as exc:
            return _Unlisted(f"{type(exc).__name__}: {exc}", retry=True)
        status = response.status_code
        if status != 200:
            return _Unlisted(
                f"HTTP {status}: {response.text[:300]}", retry=status in (408, 429) or status >= 500
            )
        try:
            listed = [({**a["labels"]}, _instant(a["endsAt"])) for a in response.json()]
            return {alert_identity(labels): (labels, ends) for labels, ends in sorted(listed, key=_ends)}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _Unlisted(f"not a list of alerts: {type(exc).__name__}: {exc}", retry=False)

    def _unlisted(self, unlisted: _Unlisted) -> None:
        """Log why ``held`` cannot say, and what is done without it: the warm-up recalls what its history
        leaves firing (re-escalation on or off) for the hold from now."""
        hold = self._hold.total_seconds()
        if unlisted.retry:
            then = (
                f"asking again before each post, for {hold:.0f} s at most, and posting nothing until it"
                " answers: an alert it holds under other labels (a release before's) goes on under those"
                " if it answers by then, else as a second"
            )
        else:
            then = (
                "not asking again: an alert it holds under other labels (a release before's) goes as a second"
            )
        then += (
            "; unless a state snapshot resumes, the alerts the warm-up's history leaves firing are"
            f" recalled for {hold:.0f} s from now"
        )
        logger.warning(
            "alert forward: cannot list the alerts %s holds (%s); %s", self._shown_url, unlisted.error, then
        )

    def _listed(self, until: datetime) -> bool:
        """Ask the receiver again for what it holds (``held`` could not say), until ``until``: whether what
        was told since may be posted. It answered: each alert is renamed as at a start, in the order told.
        It will not say, or ``until`` passed (what it held from the process before has ended by then, and
        alerts must not wait for ever): each goes under its own labels."""
        asked = self._clock.now() < until
        listed = self._list() if asked else _Unlisted(f"no answer by {rfc3339(until)}", retry=False)
        if isinstance(listed, _Unlisted):
            error = f"cannot list its alerts: {listed.error}"
            if listed.retry:
                return self._failed(error)  # a failed forward: the tick's line and the failures say so
            logger.warning("alert forward: %s; posting the alerts under their own labels", error)
        else:
            self._serving = listed
        self._list_until = None
        told, self._told = self._told, []
        for alert in told:
            self.on_alert(alert)
        return True

    def _post(self, batch: list[dict[str, Any]]) -> bool:
        try:
            response = self._send(batch)
        except httpx.HTTPError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        if response.status_code == 200:
            self.posted += len(batch)
            self.last_error = None
            return True
        message = f"HTTP {response.status_code}: {response.text[:300]}"
        if response.status_code == 400:
            logger.error("alert forward to %s refused a batch, not retried: %s", self._shown_url, message)
            self.failures += 1
            self.last_error = message
            return True
        return self._failed(message)

    def _send(self, batch: list[dict[str, Any]]) -> httpx.Response:
        try:
            return self._client.post(self.url, json=batch)
        except _CLOSED_UNDER_IT as exc:
            # "Server disconnected without sending a response", or "Connection reset by peer" when the post
            # reached serve's socket before it closed it: serve closed an idle keep-alive connection as
            # this post went out on it. A fresh connection usually works; a second failure is real.
            logger.debug("alert forward: %s: %s; posting again at once", type(exc).__name__, exc)
            self.retries += 1
            return self._client.post(self.url, json=batch)

    def _failed(self, error: str) -> bool:
        self.failures += 1
        if error != self.last_error:
            logger.warning(
                "alert forward to %s failed, will retry at the next tick: %s", self._shown_url, error
            )
        self.last_error = error
        return False

    def describe(self) -> Iterable[Metric]:
        """Families this collector renders (registering does not post anything)."""
        return list(self.collect())

    def collect(self) -> Iterable[Metric]:
        """Forwarding counters and what waits to be delivered."""
        posted = CounterMetricFamily(
            "gpuwarden_anomaly_alerts_forwarded", "Alerts posted to anomaly.alert_url and accepted."
        )
        posted.add_metric([], self.posted)
        failed = CounterMetricFamily(
            "gpuwarden_anomaly_alert_forward_failures",
            "Posts to anomaly.alert_url that failed, or were held back while it could not list its alerts"
            " after a start (retried).",
        )
        failed.add_metric([], self.failures)
        retried = CounterMetricFamily(
            "gpuwarden_anomaly_alert_forward_retries",
            "Posts sent again at once after the server closed or reset the connection without answering.",
        )
        retried.add_metric([], self.retries)
        dropped = CounterMetricFamily(
            "gpuwarden_anomaly_alerts_dropped", "Resolutions dropped, oldest first, past the unsent limit."
        )
        dropped.add_metric([], self.dropped)
        waiting = GaugeMetricFamily(
            "gpuwarden_anomaly_alerts_unsent", "Resolutions not yet accepted at anomaly.alert_url."
        )
        told = sum(a.status is AlertStatus.RESOLVED for a in self._told)
        waiting.add_metric([], len(self.unsent_resolved) + told)
        return [posted, failed, retried, dropped, waiting]

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
