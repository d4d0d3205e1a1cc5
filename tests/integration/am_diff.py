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
reason.
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


@dataclass(frozen=True)
class Step:
    """One request sent to both servers; ``compare`` says what of the answers must agree."""

    name: str
    method: str = "GET"
    path: str = "/api/v2/alerts"
    body: Any = None
    params: Sequence[tuple[str, str]] = ()
    compare: str = "status"  # status (its class) | code (the status) | error | redirect | shape | alerts |
    # silences | amtool-...
    save: str = ""  # keep the silenceID answered under this name
    amtool: Sequence[str] = ()  # run amtool with these arguments instead of an HTTP request
    wait: float = 0.0  # seconds to wait before the step (an endsAt to pass)
    content_type: str | None = ""  # the body's declared Content-Type, if not application/json; None: none
    raw: str | None = None  # a body sent as written, not JSON-encoded (a JSON null, a key given twice)
    headers: Sequence[tuple[str, str]] = ()  # more request headers (a browser's Origin)


def _post(name: str, *alerts: dict[str, Any]) -> Step:
    return Step(name, "POST", "/api/v2/alerts", list(alerts))


def _declared(name: str, content_type: str | None, path: str, body: Any) -> Step:
    """A POST of a JSON body declared as ``content_type`` (``curl -d`` declares a form; None: no header)."""
    return Step(name, "POST", path, body, content_type=content_type)


def _query(name: str, *params: tuple[str, str]) -> Step:
    return Step(name, params=params, compare="alerts")


def _silence(name: str, matchers: list[dict[str, Any]], save: str = "", **fields: Any) -> Step:
    body = {
        "matchers": matchers,
        "startsAt": "@+0",
        "endsAt": "@+3600",
        "createdBy": "probe",
        "comment": name,
    }
    return Step(name, "POST", "/api/v2/silences", {**body, **fields}, save=save)


def _m(name: str, value: str, regex: bool = False, equal: bool = True) -> dict[str, Any]:
    return {"name": name, "value": value, "isRegex": regex, "isEqual": equal}


def _shape_of_silence(**fields: Any) -> dict[str, Any]:
    """A silence body with ``fields`` changed; a field given None is left out (absent)."""
    body = {
        "matchers": [_m("zz", "shape")],
        "startsAt": "@+0",
        "endsAt": "@+60",
        "createdBy": "p",
        "comment": "c",
    }
    return {k: v for k, v in {**body, **fields}.items() if v is not None}


def _silences(name: str, *filters: str) -> Step:
    return Step(name, path="/api/v2/silences", params=[("filter", f) for f in filters], compare="silences")


STEPS: list[Step] = [
    Step("healthy", path="/-/healthy"),
    Step("ready", path="/-/ready"),
    Step("receivers", path="/api/v2/receivers"),
    Step("status", path="/api/v2/status"),
    # Alerts: single, batches, odd labels, missing annotations, resolved ones, re-posts.
    _post("post-one", {"labels": {"alertname": "A", "node": "n1"}, "startsAt": "@-60", "endsAt": "@+600"}),
    _post("post-empty-batch"),
    Step("post-not-an-array", "POST", "/api/v2/alerts", {}),
    _post("post-no-labels", {"annotations": {"a": "b"}}),
    _post("post-empty-labels", {"labels": {}}),
    _post("post-empty-value-dropped", {"labels": {"alertname": "B", "x": ""}}),
    _post("post-ends-before-start", {"labels": {"alertname": "C"}, "startsAt": "@+10", "endsAt": "@+5"}),
    _post("post-bad-time", {"labels": {"alertname": "C"}, "startsAt": "garbage"}),
    # ISO 8601 forms beyond RFC 3339 that Python reads and Alertmanager refuses.
    _post("post-time-basic-format", {"labels": {"alertname": "C"}, "startsAt": "20261201T100000Z"}),
    _post("post-time-week-date", {"labels": {"alertname": "C"}, "startsAt": "2026-W48-2T10:00:00Z"}),
    _post("post-time-offset-no-colon", {"labels": {"alertname": "C"}, "endsAt": "2026-12-01T10:00:00+0100"}),
    _post("post-number-label", {"labels": {"alertname": 1}}),
    Step(
        "post-generator-not-uri",
        "POST",
        body=[{"labels": {"alertname": "G"}, "generatorURL": "x"}],
        compare="error",
    ),
    Step("post-no-labels-code", "POST", body=[{"annotations": {"a": "b"}}], compare="error"),
    _post(
        "post-generator-url",
        {"labels": {"alertname": "G"}, "generatorURL": "http://prom-0:9090/graph?g0.expr=up"},
    ),
    _post("post-resolved", {"labels": {"alertname": "E"}, "endsAt": "@-30"}),
    _post(
        "post-odd-values",
        {"labels": {"alertname": "O", "v": 'a"b\\c\n', "__x": "1", "u": "ÿ✓"}, "annotations": {}},
    ),
    _post(
        "post-batch",
        {"labels": {"alertname": "NodeDown", "node": "n1"}},
        {"labels": {"alertname": "GpuHot", "node": "n1", "severity": "warning"}},
        {"labels": {"alertname": "GpuHot", "node": "n2", "severity": "warning"}},
        {"labels": {"alertname": "Other", "severity": "critical"}},
        {"labels": {"alertname": "P1", "sev": "page", "svc": "s"}},
        {"labels": {"alertname": "T", "sev": "ticket", "svc": "s"}},
    ),
    _declared("post-text-plain", "text/plain", "/api/v2/alerts", [{"labels": {"alertname": "Plain"}}]),
    _declared(
        "post-json-charset",
        "application/json; charset=utf-8",
        "/api/v2/alerts",
        [{"labels": {"alertname": "Charset"}}],
    ),
    _declared("post-no-content-type", None, "/api/v2/alerts", [{"labels": {"alertname": "NoType"}}]),
    _declared("post-content-type-garbage", "garbage;;", "/api/v2/alerts", [{"labels": {"alertname": "G"}}]),
    _declared(
        "post-content-type-no-name", "application/json;;", "/api/v2/alerts", [{"labels": {"alertname": "G"}}]
    ),
    _declared(
        "post-content-type-trailing-semicolon",
        "application/json; charset=utf-8;",
        "/api/v2/alerts",
        [{"labels": {"alertname": "Semi"}}],
    ),
    _post("post-gettable-status", {"labels": {"alertname": "Copy"}, "status": {"state": "active"}}),
    _post("post-status-word", {"labels": {"alertname": "Word"}, "status": "resolved"}),
    _post("resolve-then", {"labels": {"alertname": "R"}, "startsAt": "@-100", "endsAt": "@-10"}),
    _post("refire-later-start", {"labels": {"alertname": "R"}, "startsAt": "@-5", "endsAt": "@+300"}),
    _post(
        "repost-annotations",
        {"labels": {"alertname": "R"}, "startsAt": "@-5", "endsAt": "@+300", "annotations": {"s": "2"}},
    ),
    _post("ends-soon", {"labels": {"alertname": "Short"}, "startsAt": "@-10", "endsAt": "@+1"}),
    # An HA Prometheus pair: replica B saw HA start 15 s after replica A and posts first; A's post ends soon
    # (evaluated earlier). HA2: the same startsAt, the second post ending sooner. Both stay firing, each
    # from its earliest startsAt to its later endsAt.
    _post(
        "ha-replica-b",
        {"labels": {"alertname": "HA"}, "startsAt": "@-30", "endsAt": "@+240"},
        {"labels": {"alertname": "HA2"}, "startsAt": "@-30", "endsAt": "@+240"},
    ),
    _post(
        "ha-replica-a-ends-sooner",
        {"labels": {"alertname": "HA"}, "startsAt": "@-45", "endsAt": "@+1"},
        {"labels": {"alertname": "HA2"}, "startsAt": "@-30", "endsAt": "@+1"},
    ),
    # A post without endsAt ends at the resolve timeout, a mark (Alertmanager's ``Timeout``) that lets the
    # sender's own endsAt posted next stand though it is earlier; a later explicit end is kept over a
    # timeout posted after it, which an explicit end then overrides again.
    _post("timeout-first", {"labels": {"alertname": "TO"}, "startsAt": "@-10"}),
    _post(
        "timeout-then-explicit-earlier", {"labels": {"alertname": "TO"}, "startsAt": "@-10", "endsAt": "@+60"}
    ),
    _query("timeout-explicit-end-stands", ("filter", 'alertname="TO"')),
    _post("explicit-first", {"labels": {"alertname": "TO2"}, "startsAt": "@-10", "endsAt": "@+900"}),
    _post("explicit-then-timeout", {"labels": {"alertname": "TO2"}, "startsAt": "@-10"}),
    _query("explicit-later-end-kept", ("filter", 'alertname="TO2"')),
    _post("timeout-then-explicit", {"labels": {"alertname": "TO2"}, "startsAt": "@-10", "endsAt": "@+120"}),
    _query("explicit-after-merged-timeout-stands", ("filter", 'alertname="TO2"')),
    # Only endsAt: Alertmanager takes it as the start too (a start in the future); gpuwarden starts it now.
    _post("ends-only", {"labels": {"alertname": "EndsOnly"}, "endsAt": "@+600"}),
    _query("ends-only-start", ("filter", 'alertname="EndsOnly"')),
    _post("ends-only-resolved", {"labels": {"alertname": "EndsOnly"}, "startsAt": "@-10", "endsAt": "@-1"}),
    # A re-post takes the newer post's generatorURL and annotations (repeat and changed annotations alike).
    _post(
        "repost-generator-url",
        {"labels": {"alertname": "G"}, "generatorURL": "http://prom-1:9090/graph?g0.expr=up"},
    ),
    _query("generator-url-newest", ("filter", 'alertname="G"')),
    _post(
        "repost-generator-url-annotations",
        {"labels": {"alertname": "G"}, "generatorURL": "http://prom-2:9090/graph", "annotations": {"s": "3"}},
    ),
    _query("generator-url-annotations-newest", ("filter", 'alertname="G"')),
    # Every alert but Short, whose endsAt (1 s after its post) may pass between the two servers' answers on a
    # loaded machine: one lists it and the other not (CI, 2026-12-02). alerts-short-ended checks it.
    _query("alerts-all", ("filter", 'alertname!="Short"')),
    Step("alerts-short-ended", params=[("filter", 'alertname="Short"')], compare="alerts", wait=2.0),
    _query("ha-earliest-start-later-end", ("filter", 'alertname=~"HA2?"')),
    _query("filter-eq", ("filter", 'alertname="A"')),
    _query("filter-unquoted", ("filter", "node=n1")),
    _query("filter-ne", ("filter", 'alertname!="A"')),
    _query("filter-re", ("filter", 'alertname=~"A|B|R"')),
    _query("filter-nre", ("filter", 'alertname!~"A|B"')),
    _query("filter-re-anchored", ("filter", 'alertname=~"Gpu"')),
    _query("filter-empty-eq", ("filter", 'node=""')),
    _query("filter-empty-re", ("filter", 'node=~""')),
    _query("filter-two", ("filter", 'alertname="GpuHot"'), ("filter", 'node="n1"')),
    _query("filter-bad", ("filter", "bad")),
    _query("filter-bad-regex", ("filter", 'a=~"("')),
    _query("inhibited-false", ("inhibited", "false")),
    _query("active-false", ("active", "false")),
    _query("active-yes", ("active", "yes")),
    _query("active-off", ("active", "off")),
    _query("unprocessed-false", ("unprocessed", "false")),
    _query("receiver-ours", ("receiver", "gpu.*")),
    _query("receiver-other", ("receiver", "other")),
    _query("receiver-unanchored", ("receiver", "gpu")),
    _query("receiver-bad", ("receiver", "(")),
    _query("active-silenced-false", ("active", "false"), ("silenced", "false")),
    _query("filter-re-not-inhibited", ("filter", 'alertname=~"A|R|GpuHot"'), ("inhibited", "false")),
    Step("groups", path="/api/v2/alerts/groups"),
    Step("groups-bad-filter", path="/api/v2/alerts/groups", params=[("filter", "bad")]),
    Step("groups-bad-receiver", path="/api/v2/alerts/groups", params=[("receiver", "(")]),
    # Silences.
    _silence("silence-eq", [_m("alertname", "A")], save="s_eq"),
    _silence("silence-re", [_m("alertname", "A|B", regex=True)], save="s_re"),
    _silence("silence-ne", [_m("alertname", "Watchdog", equal=False)], save="s_ne"),
    _silence("silence-nre", [_m("alertname", "A", regex=True, equal=False)], save="s_nre"),
    _silence("silence-pending", [_m("node", "n2")], startsAt="@+600", endsAt="@+1200", save="s_pending"),
    _silence("silence-started-before", [_m("node", "n3")], startsAt="@-600"),  # Alertmanager: starts now
    _silence("silence-mutes-all", [_m("alertname", "")]),
    _silence("silence-mutes-all-re", [_m("alertname", ".*", regex=True)]),
    _silence("silence-no-matchers", []),
    _silence("silence-bad-regex", [_m("alertname", "(", regex=True)]),
    _silence("silence-empty-name", [_m("", "x")]),
    Step(
        "silence-no-is-regex",
        "POST",
        "/api/v2/silences",
        {
            "matchers": [{"name": "node", "value": "n.*"}],
            "startsAt": "@+0",
            "endsAt": "@+60",
            "createdBy": "p",
            "comment": "c",
        },
        compare="error",
    ),
    _silence("silence-ended", [_m("alertname", "A")], startsAt="@-7200", endsAt="@-3600"),
    _silence("silence-reversed", [_m("alertname", "A")], startsAt="@+100", endsAt="@+50"),
    _silence("silence-no-start", [_m("alertname", "A")], startsAt=None),
    _silence("silence-time-basic-format", [_m("alertname", "A")], endsAt="20361201T100000Z"),
    # "" and Go's zero time: a start before now (it starts now); no end.
    _silence("silence-start-empty", [_m("node", "z1")], startsAt=""),
    _silence("silence-start-zero", [_m("node", "z2")], startsAt="0001-01-01T00:00:00Z"),
    _silence("silence-end-empty", [_m("node", "z3")], endsAt=""),
    _silence("silence-end-zero", [_m("node", "z4")], endsAt="0001-01-01T00:00:00Z"),
    _silence("silence-times-empty", [_m("node", "z5")], startsAt="", endsAt=""),
    _silences("silences-zero-start", 'node="z2"'),
    _declared(
        "silence-form-encoded",
        "application/x-www-form-urlencoded",
        "/api/v2/silences",
        {
            "matchers": [_m("alertname", "A")],
            "startsAt": "@+0",
            "endsAt": "@+60",
            "createdBy": "probe",
            "comment": "form",
        },
    ),
    Step("silence-get", path="/api/v2/silence/{s_eq}"),
    _silences("silences-all"),
    _silences("silences-filter-eq", 'alertname="A"'),
    _silences("silences-filter-unquoted", "alertname=A"),
    _silences("silences-filter-re", 'alertname=~"A|B"'),
    _silences("silences-filter-re-other", 'alertname=~"A.*"'),
    _silences("silences-filter-ne", 'alertname!="Watchdog"'),
    _silences("silences-filter-ne-other", 'alertname!="A"'),
    _silences("silences-filter-empty", 'x=""'),
    _silences("silences-filter-bad", "bad"),
    _query("alerts-silenced", ("filter", 'alertname="A"')),
    _query("alerts-not-silenced", ("silenced", "false")),
    Step(
        "silence-update-in-place",
        "POST",
        "/api/v2/silences",
        {
            "id": "{s_pending}",
            "matchers": [_m("node", "n2")],
            "startsAt": "@+600",
            "endsAt": "@+1800",
            "createdBy": "probe",
            "comment": "updated",
        },
        save="s_pending2",
    ),
    Step(
        "silence-update-matchers",
        "POST",
        "/api/v2/silences",
        {
            "id": "{s_eq}",
            "matchers": [_m("alertname", "R")],
            "startsAt": "@+0",
            "endsAt": "@+3600",
            "createdBy": "probe",
            "comment": "moved",
        },
        save="s_moved",
    ),
    _silences("silences-after-updates"),
    Step("silence-expire", "DELETE", "/api/v2/silence/{s_moved}"),
    Step("silence-expire-again", "DELETE", "/api/v2/silence/{s_moved}"),
    _silences("silences-after-expire"),
    # An expired silence updated by its id: a new silence takes over (the expired one stays expired).
    Step(
        "silence-update-expired",
        "POST",
        "/api/v2/silences",
        {
            "id": "{s_moved}",
            "matchers": [_m("alertname", "R")],
            "startsAt": "@+0",
            "endsAt": "@+600",
            "createdBy": "probe",
            "comment": "revived",
        },
    ),
    _silences("silences-after-update-expired", 'alertname="R"'),
    Step("silence-get-not-uuid", path="/api/v2/silence/nope"),
    Step("silence-expire-unknown", "DELETE", "/api/v2/silence/00000000-0000-0000-0000-000000000000"),
    _query("alerts-after-expire", ("filter", 'alertname=~"A|R"')),
    # amtool against both.
    Step("amtool-alert-query", amtool=("alert", "query", "-o", "json"), compare="amtool-alerts"),
    Step(
        "amtool-alert-query-silenced",
        amtool=("alert", "query", "-s", "-o", "json", "alertname=A"),
        compare="amtool-alerts",
    ),
    Step(
        "amtool-silence-add",
        amtool=("silence", "add", "node=n9", "-c", "amtool", "-d", "1h"),
        save="s_amtool",
    ),
    Step(
        "amtool-silence-query",
        amtool=("silence", "query", "-o", "json", "alertname=A"),
        compare="amtool-silences",
    ),
    Step(
        "amtool-silence-query-node",
        amtool=("silence", "query", "-o", "json", "node=n9"),
        compare="amtool-silences",
    ),
    Step("amtool-silence-query-quiet", amtool=("silence", "query", "-q", "node=n9")),
    Step("amtool-silence-expire", amtool=("silence", "expire", "{s_amtool}")),
    Step(
        "amtool-silence-query-expired",
        amtool=("silence", "query", "--expired", "-o", "json", "node=n9"),
        compare="amtool-silences",
    ),
    Step(
        "amtool-alert-query-active",
        amtool=("alert", "query", "--active", "-o", "json"),
        compare="amtool-alerts",
    ),
    Step(
        "amtool-alert-query-silenced-only",
        amtool=("alert", "query", "--silenced", "-o", "json"),
        compare="amtool-alerts",
    ),
    Step(
        "amtool-alert-query-inhibited",
        amtool=("alert", "query", "--inhibited", "-o", "json"),
        compare="amtool-alerts",
    ),
    Step(
        "amtool-alert-query-regex",
        amtool=("alert", "query", "-o", "json", 'alertname=~"Gpu.*"'),
        compare="amtool-alerts",
    ),
    Step(
        "amtool-alert-query-not-equal",
        amtool=("alert", "query", "-o", "json", 'alertname!="A"'),
        compare="amtool-alerts",
    ),
    Step(
        "amtool-alert-query-not-regex",
        amtool=("alert", "query", "-o", "json", 'alertname!~"A|B"'),
        compare="amtool-alerts",
    ),
    Step(
        "amtool-alert-query-receiver",
        amtool=("alert", "query", "-o", "json", "--receiver", "gpu.*"),
        compare="amtool-alerts",
    ),
    Step(
        "amtool-alert-query-bare-name",
        amtool=("alert", "query", "-o", "json", "GpuHot"),
        compare="amtool-alerts",
    ),
    Step(
        "amtool-silence-query-regex",
        amtool=("silence", "query", "-o", "json", 'alertname=~"A|B"'),
        compare="amtool-silences",
    ),
    Step("amtool-config-show", amtool=("config", "show")),
    Step("amtool-config-routes", amtool=("config", "routes")),
    Step("amtool-cluster-show", amtool=("cluster", "show")),
    # Fifth round: paths and methods as tooling calls them, odd posts, filters and silences. Also measured,
    # agreeing, and left out to keep the probe short: a trailing slash on groups, receivers and silences
    # (/-/healthy/ redirects on both: a step below); POST /api/v2/status (405); an empty body and a 20 kB
    # label value; filters with spaces, braces, two matchers in one, "", a UTF-8 regex; silences with a
    # != "" matcher, comment "", id "", a posted status, a regex matching "" alone (refused), one name twice;
    # GET of an unknown id (404); DELETE of a non-UUID (4xx); silence filters with a bad regex or !~.
    Step("status-fields", path="/api/v2/status", compare="shape"),
    Step("post-trailing-slash", "POST", "/api/v2/alerts/", [{"labels": {"alertname": "Slash"}}]),
    Step(
        "alerts-trailing-slash",
        path="/api/v2/alerts/",
        params=[("filter", 'alertname="Slash"')],
        compare="alerts",
    ),
    Step("status-trailing-slash", path="/api/v2/status/"),
    Step("alerts-wrong-method", "PUT", "/api/v2/alerts", compare="error"),
    Step("unknown-api-path", path="/api/v2/nope", compare="error"),
    Step(
        "cors-preflight",
        "OPTIONS",
        "/api/v2/alerts",
        headers=[("Origin", "http://dashboard:3000"), ("Access-Control-Request-Method", "POST")],
    ),
    Step("post-null-body", "POST", "/api/v2/alerts", raw="null"),
    Step(
        "post-duplicate-label",
        "POST",
        "/api/v2/alerts",
        raw='[{"labels": {"alertname": "Dup", "x": "1", "x": "2"}}]',
    ),
    _query("duplicate-label-last-wins", ("filter", 'alertname="Dup"')),
    _post("post-future-start", {"labels": {"alertname": "Future"}, "startsAt": "@+600", "endsAt": "@+1200"}),
    _query("future-start", ("filter", 'alertname="Future"')),
    _query("filter-escaped-value", ("filter", r'v="a\"b\\c\n"')),
    _query("filter-ne-empty", ("filter", 'node!=""')),
    _query("filter-trailing-comma", ("filter", 'alertname="A",')),
    _silence("silence-matches-nothing", [_m("zz", "q")], save="s_nothing"),
    _silence("silence-matches-nothing-again", [_m("zz", "q")]),
    _silences("silences-identical-two", 'zz="q"'),
    _silence("silence-created-by-empty", [_m("zz", "b")], createdBy=""),
    Step(
        "silence-post-trailing-slash",
        "POST",
        "/api/v2/silences/",
        {**_silence("", [_m("zz", "slash")]).body, "comment": "slash"},
        save="s_slash",
    ),
    Step("silence-get-trailing-slash", path="/api/v2/silence/{s_nothing}/"),
    Step("silence-expire-trailing-slash", "DELETE", "/api/v2/silence/{s_slash}/"),
    _silences("silences-slash-expired", 'zz="slash"'),
    # JSON nulls go as written (a body's None is left out): null is as absent to both servers.
    Step(
        "post-null-fields",
        "POST",
        "/api/v2/alerts",
        raw='[{"labels": {"alertname": "P"}, "annotations": null, "generatorURL": null, "startsAt": null,'
        ' "endsAt": null}]',
    ),
    _query("null-fields", ("filter", 'alertname="P"')),
    _post("post-label-name-not-classic", {"labels": {"alertname": "P", "1a": "x"}}),
    _post(
        "post-annotation-name-not-classic", {"labels": {"alertname": "P"}, "annotations": {"run-book": "x"}}
    ),
    Step("post-lone-surrogate", "POST", "/api/v2/alerts", raw='[{"labels": {"alertname": "\\ud800"}}]'),
    Step(
        "silence-id-and-is-equal-null",
        "POST",
        "/api/v2/silences",
        raw='{"id": null, "matchers": [{"name": "zz", "value": "e", "isRegex": false, "isEqual": null}],'
        ' "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z", "createdBy": "p",'
        ' "comment": "nulls"}',
    ),
    _silences("silences-is-equal-null", 'zz="e"'),
    _silence("silence-ends-year-9999", [_m("zz", "y")], endsAt="9999-01-01T00:00:00Z"),
    _silence("silence-ends-last-second", [_m("zz", "y")], endsAt="9999-12-31T23:59:59Z"),
    _query("filter-unquoted-operator", ("filter", "alertname==A")),
    _query("filter-unquoted-space", ("filter", "alertname=A B")),
    _query("filter-quoted-name", ("filter", '"alertname"="A"')),
    # Sixth round: what an error answer is (a JSON string, or go-openapi's {"code", "message"} and its code)
    # for a silence missing what Alertmanager requires, a body that is not an array, a bad filter; and where
    # a trailing slash on a probe path redirects to (a relative Location, kept behind a TLS proxy).
    Step(
        "silence-matchers-absent",
        "POST",
        "/api/v2/silences",
        _shape_of_silence(matchers=None),
        compare="error",
    ),
    Step(
        "silence-matchers-empty", "POST", "/api/v2/silences", _shape_of_silence(matchers=[]), compare="error"
    ),
    Step("silence-ends-absent", "POST", "/api/v2/silences", _shape_of_silence(endsAt=None), compare="error"),
    Step(
        "silence-starts-null",
        "POST",
        "/api/v2/silences",
        raw='{"matchers": [{"name": "zz", "value": "n", "isRegex": false}], "startsAt": null,'
        ' "endsAt": "2099-01-01T00:00:00Z", "createdBy": "p", "comment": "c"}',
        compare="error",
    ),
    Step("post-not-an-array-error", "POST", "/api/v2/alerts", {}, compare="error"),
    Step("filter-bad-error", params=[("filter", "bad")], compare="error"),
    Step("healthy-trailing-slash", path="/-/healthy/", compare="redirect"),
    Step("ready-trailing-slash", path="/-/ready/", compare="redirect"),
]

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
