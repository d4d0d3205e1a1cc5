"""A differential probe: the same requests, in the same order, to a real Alertmanager 0.25 and to ``gpuwarden
serve``, and a comparison of what each answers (``benchmarks/am_diff.py`` prints it as one JSON line,
``tests/integration/test_am_diff.py`` asserts that nothing differs that is not known).

Both servers get the same inhibition rules. A step is an HTTP request (or an ``amtool`` call) sent to both;
what is compared is what a client acts on: the status class (2xx, 4xx, 5xx), for errors the status and
the body's shape (a JSON string or go-openapi's ``{"code", "message"}`` and its code), for redirects that
``Location`` is relative, and for alert and silence
listings the alerts (labels, annotations, ``generatorURL``, state, how many silences mute it, which alerts
inhibit it, ``startsAt`` and ``endsAt`` within a second) or the silences (matchers, state, creator, comment,
and within a second ``startsAt`` and ``updatedAt``, when each was last set, updated in place or expired).
Silence ids differ between the two servers by nature: a step can save the id each one answered under a name
that later paths and ``amtool`` arguments use (``{name}``). Times in a body are written ``@+600`` (now plus
600 s). Differences that are documented (README "Known gaps") or harmless are listed in ``KNOWN`` with the
reason. The steps are written in ``am_diff_alerts.py``, ``am_diff_silences.py`` and ``am_diff_odd.py``
(``Step`` and its builders in ``am_diff_step.py``).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.integration import http_probe
from tests.integration.am_diff_alerts import ALERT_STEPS
from tests.integration.am_diff_odd import ODD_STEPS
from tests.integration.am_diff_silences import AMTOOL_STEPS, SILENCE_STEPS
from tests.integration.am_diff_step import Step
from tests.integration.gpuwarden_server import AUTH, TOKEN, gpuwarden_serve
from tests.integration.servers import free_port, require_binary, running

INHIBIT_RULES = [
    {
        "source_matchers": ['alertname="NodeDown"'],
        "target_matchers": ['severity=~"warning|critical"'],
        "equal": ["node"],
    },
    {"source_matchers": ['sev="page"'], "target_matchers": ['sev=~"page|ticket"'], "equal": ["svc"]},
]


# Sent in this order: later steps use the alerts earlier ones posted and the silence ids they saved.
STEPS: list[Step] = [*ALERT_STEPS, *SILENCE_STEPS, *AMTOOL_STEPS, *ODD_STEPS]

# Differences that are on purpose (README "Known gaps" and the Alertmanager API paragraph) or harmless,
# with the reason. Most steps avoid the documented gaps, whose answers differ by design.
KNOWN: dict[str, str] = {
    "ends-only-start": "an alert posted with endsAt and no startsAt starts when received; Alertmanager "
    "shows its endsAt as its startsAt, a start in the future (README, Known gaps)",
    "silence-expire-unknown": "expiring an unknown silence is a 404 naming it; Alertmanager answers 500",
    "cors-preflight": "no CORS: a browser's preflight (OPTIONS) is a 405 and no Access-Control-Allow-Origin "
    "is sent, where Alertmanager allows every origin; reads need no token, so that would let any web page an "
    "operator opens read the alerts (README, Known gaps)",
    "post-null-body": "a JSON null is not an array of alerts: 400; Alertmanager takes it as an empty post "
    "(README, Known gaps)",
    "silence-created-by-empty": 'a silence with createdBy "" is refused 400 naming it; Alertmanager takes '
    "it (README, Known gaps)",
    "post-label-name-not-classic": "label names outside Prometheus' classic set are taken, as newer "
    "Prometheus and Alertmanager (UTF-8 names) do; Alertmanager 0.25 refuses them (README, Known gaps)",
    "post-annotation-name-not-classic": "annotation names likewise (README, Known gaps)",
    "post-lone-surrogate": "a JSON string with a lone UTF-16 surrogate is not text: 400; Alertmanager "
    "reads it as U+FFFD (README, Known gaps)",
    "filter-unquoted-operator": "an operator character in an unquoted value (alertname==A) is refused 400 "
    'as a typo, saying to quote it; Alertmanager 0.25 reads the value "=A" (README, Known gaps)',
    "filter-unquoted-space": "an unquoted value with a space is refused 400 (quote it); Alertmanager 0.25 "
    "reads it up to the end (README, Known gaps)",
    "filter-quoted-name": 'a quoted name ("alertname"="A") is read, as newer Alertmanager (UTF-8 names) '
    "reads it; Alertmanager 0.25 refuses it (README, Known gaps)",
    "post-not-an-array-error": "a 400 is a JSON string, as Alertmanager's OpenAPI spec declares its 400s "
    "and amtool's generated client decodes them; Alertmanager answers a body it cannot parse with "
    'go-openapi\'s {"code": 400, "message"} object, which amtool fails to decode (README, Known gaps)',
    "silence-ends-last-second": "a silence ending at 9999-12-31T23:59:59Z is taken; Alertmanager refuses "
    '"after 10000-01-01" (an end in 9999 before that both take) (README, Known gaps)',
}


@dataclass
class Target:
    """One server: its URL, headers, and the silence ids it answered by name."""

    name: str
    url: str
    headers: dict[str, str]
    http_config: Path
    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one step found."""

    step: str
    same: bool
    alertmanager: Any
    gpuwarden: Any


def _times(value: Any, now: datetime) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return (now + timedelta(seconds=float(value[1:]))).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _times(v, now) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_times(v, now) for v in value]
    return value


def _ids(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
        return ids[value[1:-1]]
    if isinstance(value, str) and "{" in value and "=" not in value:
        return value.format_map(_Missing(ids))
    if isinstance(value, dict):
        return {k: _ids(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_ids(v, ids) for v in value]
    return value


class _Missing(dict[str, str]):
    """The ids a target answered; a name it never answered (its POST was refused) reads "missing"."""

    def __missing__(self, key: str) -> str:
        return "missing"


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _alerts(items: list[dict[str, Any]], fingerprints: dict[str, str]) -> list[Any]:
    out = []
    for a in items:
        status = a["status"]
        out.append(
            (
                json.dumps(a["labels"], sort_keys=True),
                json.dumps(a.get("annotations") or {}, sort_keys=True),
                a.get("generatorURL") or "",
                status["state"],
                len(status.get("silencedBy") or []),
                sorted(fingerprints.get(f, f) for f in status.get("inhibitedBy") or []),
                a["startsAt"],
                a["endsAt"],
            )
        )
    return sorted(out)


def _same_alerts(am: list[Any], gw: list[Any]) -> bool:
    if len(am) != len(gw):
        return False
    for x, y in zip(am, gw, strict=True):
        if x[:-2] != y[:-2]:
            return False
        if abs(_epoch(x[-2]) - _epoch(y[-2])) > 1.0 or abs(_epoch(x[-1]) - _epoch(y[-1])) > 1.0:
            return False
    return True


def _shape(status: dict[str, Any]) -> list[Any]:
    """What Grafana's Alertmanager data source and Karma read of ``/api/v2/status``: its fields, the cluster's
    state, the version's fields, and that ``config.original`` and ``uptime`` are strings."""
    return [
        sorted(status),
        status["cluster"]["status"],
        sorted(status["versionInfo"]),
        isinstance(status["config"]["original"], str),
        isinstance(status["uptime"], str),
    ]


def _error_shape(code: int, body: Any) -> tuple[Any, ...]:
    """What a client parsing an error answer reads: the status, and the body's shape: a JSON string (what
    Alertmanager's spec declares for 400 and 500, and amtool decodes), or go-openapi's ``{"code",
    "message"}`` with its code (602: a required field missing); an empty body reads as a string."""
    if isinstance(body, dict):
        return code, sorted(body), body.get("code")
    return code, type(body).__name__


def _relative_redirect(code: int, body: Any) -> bool:
    """A redirect whose Location is relative (no scheme, no host): a client resolves it against the URL it
    asked, so behind a TLS-terminating proxy it stays on https."""
    location = str(body.get("location", "")) if isinstance(body, dict) else ""
    parts = urlsplit(location)
    return code // 100 == 3 and bool(location) and not parts.scheme and not parts.netloc


def _silence_list(items: list[dict[str, Any]]) -> list[Any]:
    return sorted(
        (
            json.dumps(
                sorted((m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in s["matchers"])
            ),
            s["status"]["state"],
            s.get("createdBy"),
            s.get("comment"),
            s["startsAt"],
            s["updatedAt"],
        )
        for s in items
    )


def _same_silences(am: list[Any], gw: list[Any]) -> bool:
    """The same silences, each starting (``startsAt``) and last set, updated or expired (``updatedAt``)
    within a second of the other's."""
    return len(am) == len(gw) and all(
        x[:-2] == y[:-2]
        and all(abs(_epoch(a) - _epoch(b)) <= 1.0 for a, b in zip(x[-2:], y[-2:], strict=True))
        for x, y in zip(am, gw, strict=True)
    )


class Probe:
    """Runs the steps against both targets and keeps what each step found."""

    def __init__(self, alertmanager: Target, gpuwarden: Target) -> None:
        self.targets = (alertmanager, gpuwarden)
        self.outcomes: list[Outcome] = []

    def run(self, steps: Sequence[Step] = STEPS) -> list[Outcome]:
        for step in steps:
            if step.wait:
                time.sleep(step.wait)
            answers = [self._send(step, t) for t in self.targets]
            same, shown = self._compare(step, answers)
            self.outcomes.append(Outcome(step.name, same, *shown))
        return self.outcomes

    def _send(self, step: Step, target: Target) -> tuple[int, Any]:
        now = datetime.now(UTC)
        if step.amtool:
            args = [str(_ids(a, target.ids)) for a in step.amtool]
            argv = [
                require_binary("amtool"),
                f"--alertmanager.url={target.url}",
                f"--http.config.file={target.http_config}",
                *args,
            ]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            if step.save and done.returncode == 0:
                target.ids[step.save] = done.stdout.strip()
            return (
                200 if done.returncode == 0 else 400
            ), done.stdout if done.returncode == 0 else done.stderr
        body = _ids(_times(step.body, now), target.ids) if step.body is not None else None
        path = _ids(step.path, target.ids)
        headers = {**dict(step.headers), **target.headers}
        if step.content_type is not None:
            headers = {"Content-Type": step.content_type or "application/json", **headers}
        content = step.raw.encode() if step.raw is not None else None
        if body is not None:
            content = json.dumps(body).encode()
        response = http_probe.request(  # with bytes and no Content-Type given, httpx declares none
            step.method,
            target.url + path,
            content=content,
            params=list(step.params),
            headers=headers,
            timeout=30,
        )
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        if response.is_redirect:
            payload = {"location": response.headers.get("location", "")}
        if step.save and response.status_code == 200 and isinstance(payload, dict):
            target.ids[step.save] = str(payload.get("silenceID"))
        return response.status_code, payload

    def _compare(self, step: Step, answers: list[tuple[int, Any]]) -> tuple[bool, list[Any]]:
        (am_code, am), (gw_code, gw) = answers
        if step.compare == "code":
            return am_code == gw_code, [(am_code, am), (gw_code, gw)]
        if step.compare == "error":
            return _error_shape(am_code, am) == _error_shape(gw_code, gw), [(am_code, am), (gw_code, gw)]
        if step.compare == "redirect":
            return _relative_redirect(am_code, am) and _relative_redirect(gw_code, gw), [am, gw]
        if step.compare == "shape" and am_code == gw_code == 200:
            a, g = _shape(am), _shape(gw)
            return a == g, [a, g]
        if am_code // 100 != gw_code // 100 or am_code // 100 != 2 or step.compare == "status":
            return am_code // 100 == gw_code // 100, [(am_code, am), (gw_code, gw)]
        if step.compare.startswith("amtool"):
            am, gw = json.loads(am or "[]"), json.loads(gw or "[]")
        if step.compare.endswith("silences"):
            a, g = _silence_list(am), _silence_list(gw)
            return _same_silences(a, g), [a, g]
        fps = {x["fingerprint"]: x["labels"].get("alertname", "") for x in am + gw}
        a, g = _alerts(am, fps), _alerts(gw, fps)
        return _same_alerts(a, g), [a, g]


def summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Counts, and the steps that differ: known (with the reason) or not."""
    differ = [o for o in outcomes if not o.same]
    return {
        "steps": len(outcomes),
        "same": len(outcomes) - len(differ),
        "known": {o.step: KNOWN[o.step] for o in differ if o.step in KNOWN},
        "unexpected": [o.step for o in differ if o.step not in KNOWN],
    }


@contextmanager
def alertmanager_and_gpuwarden(tmp_path: Path) -> Iterator[tuple[Target, Target]]:
    """A real Alertmanager and a ``gpuwarden serve`` with the same inhibition rules, each a fresh store.
    gpuwarden ticks once a minute: what its API answers must not wait for a tick, as Alertmanager's does
    not."""
    am_config = tmp_path / "am.yml"
    am_config.write_text(
        yaml.safe_dump(
            {
                "route": {"receiver": "gpuwarden", "group_wait": "1s", "group_interval": "1s"},
                "receivers": [{"name": "gpuwarden"}],
                "inhibit_rules": INHIBIT_RULES,
            }
        )
    )
    gw_config = tmp_path / "gw.yml"
    gw_config.write_text(
        yaml.safe_dump({"alerting": {"inhibit_rules": INHIBIT_RULES, "tick_interval_seconds": 60}})
    )
    http_config = tmp_path / "http.yml"
    http_config.write_text(yaml.safe_dump({"authorization": {"type": "Bearer", "credentials": TOKEN}}))
    port = free_port()
    am_url = f"http://127.0.0.1:{port}"
    argv = [
        require_binary("prometheus-alertmanager"),
        f"--config.file={am_config}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with (
        running(argv, f"{am_url}/-/ready", tmp_path / "am.log"),
        gpuwarden_serve(tmp_path, str(tmp_path / "gw.db"), extra_args=["--config", str(gw_config)]) as (
            gw_url,
            _,
        ),
    ):
        yield (
            Target("alertmanager", am_url, {}, http_config),
            Target("gpuwarden", gw_url, dict(AUTH), http_config),
        )
