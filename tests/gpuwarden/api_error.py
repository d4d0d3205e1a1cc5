"""What a refused request says, on either API."""

from __future__ import annotations

from typing import Any

from gpuwarden.headers import FIELD_HEADER


def error_field(response: Any) -> str:
    """The field a refusal names: in the body on gpuwarden's API, in a header and the message's start on
    Alertmanager's (``/api/v2``), whose errors are JSON strings as amtool reads them or go-openapi's
    ``{"code", "message"}``."""
    body = response.json()
    if isinstance(body, str) or "message" in body:
        message = body if isinstance(body, str) else body["message"]
        field = str(response.headers.get(FIELD_HEADER, ""))
        field = field.encode().decode("unicode_escape")  # escaped to ASCII for the header, if need be
        assert message.startswith(f"{field}: ") if field else message, message
        return field
    return str(body.get("field", ""))


def error_text(response: Any) -> str:
    """The message of a refusal on either API."""
    body = response.json()
    if isinstance(body, str):
        return body
    return str(body["message"] if "message" in body else body.get("error", ""))
