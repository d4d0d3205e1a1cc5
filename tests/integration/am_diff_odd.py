"""The differential probe's last steps (``am_diff.py``): paths and methods as tooling calls them (trailing
slashes, wrong methods, unknown paths, a browser's CORS preflight), ``/api/v2/status``'s fields, odd bodies,
filters and silences, JSON nulls, what an error answer is and where a redirect points."""

from __future__ import annotations

from tests.integration.am_diff_step import Step, _m, _post, _query, _shape_of_silence, _silence, _silences

ODD_STEPS: list[Step] = [
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
