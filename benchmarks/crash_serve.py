"""One ``gpuwarden serve`` of the crash fuzz (``crash_fuzz.py``), restartable, and the steps done against it.

``Serve`` starts a real ``serve`` process on one store (a SQLite file or a PostgreSQL URL) with the Slack
stand-in as its Slack Web API and its ``/hooks/crash`` as a webhook, and starts it again after each kill.
``do`` does a step until serve answers it (a POST that got no answer is sent again, a silence first looked
up by its comment), ``ticked`` waits until serve applied it and ticked ``TICKS`` times after, ``settle``
until the journal is applied and the outbox is done.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from crash_storm import Step
from crash_view import DONE, HOOK

from alerting.notifiers.recorder import SlackRecorder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: its tests package
from tests.integration.gpuwarden_server import AUTH, TOKEN, gpuwarden_binary
from tests.integration.servers import READY_SECONDS, free_port, stop, wait_http_ok

CHANNEL = "C0CRASHFUZZ"  # a channel id: the notifier's lookup after a crash is exact with one
TICK_SECONDS = 0.1
"""serve's tick interval here."""
TICKS = 2
"""After each step the harness waits until its alerts are applied and then for this many ticks begun after
that (serve counts them: ``ticks`` in ``GET /api/v1/ingest/status``), so that both runs tick between the same
steps: a tick applies what time decides (a resolution after the quiet period, alerts a silence's expiry
unmuted, an announcement), and a tick that came before or after the next step's alerts in one run only made
the two runs differ with no crash at all."""
SLACK_TOKEN_ENV = "CRASH_FUZZ_SLACK_TOKEN"
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)
"""A connection per request: a kept one that serve closes as it idles out could drop the next request, which
the fuzz would report (``exits``)."""
EDIT_INTERVAL = 5.0
"""The webhook's ``edit_interval_seconds`` here (300 by default in serve): a held update is released, or
replaced, within a run."""
SLOW_START_SECONDS = 60.0
"""A start that took longer than this to be ready is ``slow`` (``Serve.slow``, counted apart, no finding):
a start-up took 10-15 s on a loaded machine, past a minute at load 10-20 on 2 cores."""
START_SECONDS_PER_LOAD = 60.0
"""The bound on one start's wait for ``/-/ready``: this many seconds per unit of the load average per core
(``start_bound``), never less than ``READY_SECONDS`` (120 s): a fixed bound stopped the fuzz under load."""


class StartTimeout(RuntimeError):
    """serve, still running and never killed, did not get ready within ``start_bound``: the run stops
    there (its seed counted as ``unfinished``, not as a finding)."""


def start_bound(load: float | None = None, cores: int | None = None) -> float:
    """How long one start may take to be ready: ``START_SECONDS_PER_LOAD`` per unit of the 1-minute load
    average (``load``, read now by default) per core (``cores``), at least ``READY_SECONDS``."""
    if load is None:
        load = os.getloadavg()[0]
    per_core = load / max(1, cores or os.cpu_count() or 1)
    return max(READY_SECONDS, START_SECONDS_PER_LOAD * per_core)


# --- one serve, restartable ----------------------------------------------------------------------------


def _config(folder: Path, recorder: SlackRecorder, channel: str, edit_interval: float) -> Path:
    config = folder / "gpuwarden.yaml"
    config.write_text(
        f"alerting:\n  journal_dir: {folder / 'journal'}\n  tick_interval_seconds: {TICK_SECONDS}\n"
        "  quiet_period_seconds: 0\n"
        "  announce_delay_seconds: 0\n  priority_settle_seconds: 0\n"
        f"slack:\n  bot_token: {{env: {SLACK_TOKEN_ENV}}}\n  channel: '{channel}'\n"
        f"  base_url: {recorder.base_url}\n  charts: false\n"
        f"webhooks:\n  - name: {HOOK}\n    url: {recorder.root_url}/hooks/{HOOK}\n"
        f"    edit_interval_seconds: {edit_interval}\n"
    )
    return config


@dataclass
class Serve:
    """``gpuwarden serve`` on one store (a SQLite file or a PostgreSQL URL), started again after each kill;
    its journal, configuration and logs in ``folder``."""

    folder: Path
    recorder: SlackRecorder
    db: str
    channel: str = CHANNEL
    edit_interval: float = EDIT_INTERVAL
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    starts: int = 0
    kills: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)  # what went wrong with no kill: exits, dropped requests
    unlanded: list[str] = field(default_factory=list)  # kills drawn that found no moment to land
    launches: list[float] = field(default_factory=list)  # wall-clock time of each start
    ready: list[float | None] = field(default_factory=list)  # and when it was ready (None: never)
    slow: list[float] = field(default_factory=list)  # seconds to ready of starts past SLOW_START_SECONDS
    killed: bool = False
    http: httpx.Client = field(default_factory=lambda: httpx.Client(limits=NO_KEEPALIVE))
    """Every request to serve, of every start: a new client per request (``httpx.get``) built an SSL context
    each time, 60 ms of CPU, and the waits poll every 25-50 ms."""

    def start(self) -> float:
        """Start serve and wait until it is ready (its journal's backlog applied), ``start_bound`` at most
        (``StartTimeout`` past it); again when a kill armed for a POST (``_arm``) landed while it started.
        The seconds it took, which the waits on serve do not count against their own bounds."""
        began = time.monotonic()
        while True:
            self.launch()
            assert self.proc is not None
            bound = start_bound()
            try:
                wait_http_ok(f"{self.url}/-/ready", self.proc, timeout=bound)
            except RuntimeError as exc:
                if self.killed:
                    continue
                if self.proc.poll() is None:
                    raise StartTimeout(f"start {self.starts}: not ready within {bound:.0f} s") from exc
                raise
            self.ready[-1] = time.time()
            took = self.ready[-1] - self.launches[-1]
            if took > SLOW_START_SECONDS:
                self.slow.append(round(took, 1))
            return time.monotonic() - began

    def launch(self) -> None:
        """Start serve, not waiting for it."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [gpuwarden_binary(), "serve", "--port", str(port), "--db", self.db]
        argv += ["--config", str(_config(self.folder, self.recorder, self.channel, self.edit_interval))]
        env = {**os.environ, "GPUWARDEN_API_TOKEN": TOKEN, SLACK_TOKEN_ENV: self.recorder.token}
        self.starts += 1
        self.killed = False
        self.launches.append(time.time())
        self.ready.append(None)
        log = (self.folder / f"serve{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    def kill(self, how: str) -> None:
        """SIGKILL, once per start (a kill armed for a send may race one of a step)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.killed = True  # before the signal: a request it breaks, in another thread, is a kill's
            self.kills.append(how)
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def gone(self, exc: httpx.HTTPError) -> bool:
        """Whether serve is gone after a request it did not answer (``exc``): killed, or exited by itself,
        which ``exits`` notes with its log's end, as it does a request dropped by a serve still running."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.exits.append(f"start {self.starts}: request dropped while running: {exc!r}")
            return False
        if not self.killed:
            log = (self.folder / f"serve{self.starts}.log").read_text(errors="replace")[-600:]
            self.exits.append(f"start {self.starts}: exited {code} unkilled: {log}")
        return True

    def dead(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def ensure(self) -> float:
        """Start again when it was killed; the seconds that took (0 when it runs)."""
        return self.start() if self.dead() else 0.0

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def close(self) -> None:
        """Stop serve and close the client."""
        self.stop()
        self.http.close()


# --- the steps, against one serve ------------------------------------------------------------------


def _postable(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    ended = (now - timedelta(seconds=1)).isoformat()
    return [
        {
            "labels": a["labels"],
            **({"endsAt": ended} if a["resolved"] else {}),
            **({"annotations": {"recommended_action": a["advice"]}} if "advice" in a else {}),
        }
        for a in alerts
    ]


def _silence_body(comment: str, node: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    matchers = [{"name": "Hostname", "value": node, "isRegex": False, "isEqual": True}]
    return {
        "matchers": matchers,
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=2)).isoformat(),
        "createdBy": "crash-fuzz",
        "comment": comment,
    }


def _silence_id(serve: Serve, comment: str) -> str | None:
    listed = serve.http.get(f"{serve.url}/api/v2/silences", headers=AUTH, timeout=30).json()
    return next((s["id"] for s in listed if s["comment"] == comment), None)


def do_once(serve: Serve, step: Step, ids: dict[str, str]) -> None:
    """Do one step; ``httpx.HTTPError`` when serve died under it."""
    kind, args = step
    if kind == "post":
        response = serve.http.post(
            f"{serve.url}/api/v2/alerts", json=_postable(args["alerts"]), headers=AUTH, timeout=30
        )
    elif kind == "silence":
        found = _silence_id(serve, args["comment"])  # set before a crash that ate its answer
        if found is not None:
            ids[args["comment"]] = found
            return
        body = _silence_body(args["comment"], args["node"])
        response = serve.http.post(f"{serve.url}/api/v2/silences", json=body, headers=AUTH, timeout=30)
        if response.status_code == 200:
            ids[args["comment"]] = response.json()["silenceID"]
    elif kind == "isilence":
        response = _silence_incident(serve, args["name"], args["labels"], ids)
    elif kind == "iexpire":
        response = _expire_incident_silence(serve, ids.get(args["name"]))
    else:
        silence_id = ids[args["comment"]]
        response = serve.http.delete(f"{serve.url}/api/v2/silence/{silence_id}", headers=AUTH, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"{kind} answered {response.status_code}: {response.text}")


def _incident_of(serve: Serve, labels: dict[str, str]) -> str | None:
    """The open incident that holds the alert with ``labels``; None when none does (resolved since)."""
    listed = serve.http.get(f"{serve.url}/api/v1/incidents", headers=AUTH, timeout=30).json()
    for incident in listed:
        if incident["state"] == "resolved":
            continue
        detail = serve.http.get(f"{serve.url}/api/v1/incidents/{incident['id']}", headers=AUTH, timeout=30)
        if any(alert["labels"] == labels for alert in detail.json()["alerts"]):
            return str(incident["id"])
    return None


def _silence_incident(serve: Serve, name: str, labels: dict[str, str], ids: dict[str, str]) -> httpx.Response:
    """Silence the incident of the alert with ``labels`` for an hour (a repeat after a crash that ate the
    answer changes nothing: ``changed`` false); noted in ``ids`` under ``name``. One resolved meanwhile
    (409), or none found, is nothing to silence: alike in both runs, as the incidents are."""
    incident_id = _incident_of(serve, labels)
    if incident_id is None:
        return httpx.Response(200)
    ids[name] = incident_id
    body = {"duration": "1h", "by": "crash-fuzz"}
    url = f"{serve.url}/api/v1/incidents/{incident_id}/silence"
    response = serve.http.post(url, json=body, headers=AUTH, timeout=30)
    return httpx.Response(200) if response.status_code == 409 else response


def _expire_incident_silence(serve: Serve, incident_id: str | None) -> httpx.Response:
    """Expire the incident silences of ``incident_id`` still active (none: nothing to do, as after a crash
    that ate the answer). They are the incident's ``silence_ids``: ``GET /api/v2/silences`` lists none of
    them (no matchers), so the step read there expired nothing."""
    if incident_id is None:
        return httpx.Response(200)
    detail = serve.http.get(f"{serve.url}/api/v1/incidents/{incident_id}", headers=AUTH, timeout=30)
    for silence_id in detail.json().get("silence_ids", []):
        state = serve.http.get(f"{serve.url}/api/v2/silence/{silence_id}", headers=AUTH, timeout=30)
        if state.status_code == 200 and state.json()["status"]["state"] == "active":
            response = serve.http.delete(f"{serve.url}/api/v2/silence/{silence_id}", headers=AUTH, timeout=30)
            if response.status_code != 200:
                return response
    return httpx.Response(200)


def do(serve: Serve, step: Step, ids: dict[str, str]) -> None:
    """Do one step until serve answers it, starting serve again whenever it died."""
    while True:
        serve.ensure()
        try:
            do_once(serve, step, ids)
            return
        except httpx.HTTPError as exc:
            serve.gone(exc)  # started again, or the request made again
            if len(serve.exits) > 10:
                raise RuntimeError(f"serve keeps failing: {serve.exits}") from exc


def _status(serve: Serve) -> dict[str, Any]:
    """serve's ``GET /api/v1/ingest/status``: the journal's lag and the engine ticks done."""
    status: dict[str, Any] = serve.http.get(f"{serve.url}/api/v1/ingest/status", timeout=10).json()
    return status


def ticked(serve: Serve, timeout: float = 60.0) -> None:
    """Wait until serve applied what it accepted and then ticked ``TICKS`` times (ticks begun after the
    apply, ended: ``ticks`` read with no lag, plus one for the tick maybe under way then); on a kill under
    it, start serve again and wait there, ``timeout`` not counting the start (``Serve.start`` bounds it)."""
    deadline = time.monotonic() + timeout
    mark: tuple[int, int] | None = None  # (start, ticks read with no lag)
    while time.monotonic() < deadline:
        deadline += serve.ensure()
        try:
            status = _status(serve)
        except httpx.HTTPError as exc:
            serve.gone(exc)
            continue
        if mark is None or mark[0] != serve.starts:
            mark = (serve.starts, status["ticks"]) if status["lag_bytes"] == 0 else None
        elif status["ticks"] > mark[1] + TICKS:
            return
        time.sleep(TICK_SECONDS / 4)
    raise RuntimeError(f"serve did not apply its journal and tick within {timeout} s")


def settle(serve: Serve, killed: threading.Event | None = None) -> None:
    """Wait until the journal is applied and every outbox message is done, alike after ``TICKS`` more
    ticks (one may have more to tell), or until ``killed`` is set (a send kill landed); a minute at most
    beyond the webhook's hold (an update held at the end goes then)."""
    timeout = 60.0 + serve.edit_interval
    deadline = time.monotonic() + timeout
    last: tuple[int, dict[str, int]] | None = None  # ticks when it was last quiet, with the outbox's counts
    while time.monotonic() < deadline:
        try:
            status = _status(serve)
            counts = serve.http.get(f"{serve.url}/api/v1/outbox", headers=AUTH, timeout=10).json()["counts"]
        except httpx.HTTPError:
            if killed is not None and (killed.is_set() or serve.killed):  # ``killed`` is set once it is dead
                return
            raise
        if killed is not None and killed.is_set():
            return
        if not settled(status["lag_bytes"], counts):
            last = None
        elif last is None or last[1] != counts:
            last = (status["ticks"], counts)
        elif status["ticks"] > last[0] + TICKS:
            return
        time.sleep(TICK_SECONDS / 2)
    raise RuntimeError(f"serve not quiet within {timeout} s: {last}")


def settled(lag: int, counts: dict[str, int]) -> bool:
    """Whether serve applied its journal (``lag`` bytes behind) and its outbox (``counts`` by status) is
    done."""
    return lag == 0 and set(counts) <= DONE
