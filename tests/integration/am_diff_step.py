"""A step of the Alertmanager differential probe (``am_diff.py``): one request, or one ``amtool`` call, sent
to both servers, and the builders the step lists (``am_diff_alerts.py``, ``am_diff_silences.py``,
``am_diff_odd.py``) write their steps with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


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
