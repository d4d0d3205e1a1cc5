"""Rules the configuration's values follow beyond their types: what a secret may look like.

Kept out of ``gpuwarden.config`` (the models) so that the CLI applies the same rules to values that come
from elsewhere (``GPUWARDEN_API_TOKEN``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, SecretStr


def secret_problem(text: str) -> str | None:
    """Why a secret cannot work, or None: an empty one would let every request through (an empty bearer
    token matches an empty header), and one with spaces or a newline around it matches no request (clients
    and the HTTP stack strip them) and no Slack token."""
    if not text.strip():
        return "is empty; give the secret's value"
    if text != text.strip():
        return "begins or ends with a space or a newline, which no client sends; remove it"
    return None


def _usable_secret(value: SecretStr | None) -> SecretStr | None:
    problem = None if value is None else secret_problem(value.get_secret_value())
    if problem is not None:
        raise ValueError(problem)
    return value


Secret = Annotated[SecretStr | None, AfterValidator(_usable_secret)]
"""An optional secret setting: absent, or a value that can work (see ``secret_problem``)."""
