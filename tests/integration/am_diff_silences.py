"""The differential probe's silence steps (``am_diff.py``): silences posted (matchers, times, odd bodies),
listed with their filters, the alerts they mute, updated in place or by a new silence, expired; then
``amtool``'s alert and silence queries, a silence added and expired, its config and cluster commands."""

from __future__ import annotations

from tests.integration.am_diff_step import Step, _declared, _m, _query, _silence, _silences

SILENCE_STEPS: list[Step] = [
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
]

AMTOOL_STEPS: list[Step] = [
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
]
