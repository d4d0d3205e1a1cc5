"""Secret references in configuration data: ``{env: NAME}`` mappings, which name the environment variable
that holds a secret (a token, a password) rather than writing it in the file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuwarden.errors import ConfigError

UNRESOLVED = object()
"""What ``resolve_secret_refs`` leaves where a reference's variable is unset, when it collects problems."""


def resolve_secret_refs(
    data: Any,
    environ: Mapping[str, str],
    path: str,
    trail: str = "",
    *,
    unresolved: list[tuple[tuple[str | int, ...], ConfigError]] | None = None,
    loc: tuple[str | int, ...] = (),
) -> Any:
    """Replace ``{env: NAME}`` mappings by the variable's value; a missing variable is a config error,
    raised, or (``unresolved`` given) appended there with its key path and left as ``UNRESOLVED``."""
    if isinstance(data, dict):
        if set(data) == {"env"} and isinstance(data["env"], str):
            name = data["env"]
            if environ.get(name, "").strip():
                return environ[name]
            # An empty token would let every request through.
            said = "is not set; export it" if name not in environ else "is empty; export its value"
            error = ConfigError(
                f"secret reference names environment variable {name!r}, which {said}", path=path, field=trail
            )
            if unresolved is None:
                raise error
            unresolved.append((loc, error))
            return UNRESOLVED
        return {
            k: resolve_secret_refs(
                v, environ, path, f"{trail}.{k}" if trail else str(k), unresolved=unresolved, loc=(*loc, k)
            )
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [
            resolve_secret_refs(v, environ, path, f"{trail}[{i}]", unresolved=unresolved, loc=(*loc, i))
            for i, v in enumerate(data)
        ]
    return data


def secret_ref_names(data: Any) -> set[str]:
    """The environment variables that ``{env: NAME}`` mappings in ``data`` name."""
    if isinstance(data, dict):
        if set(data) == {"env"} and isinstance(data["env"], str):
            return {data["env"]}
        return {name for value in data.values() for name in secret_ref_names(value)}
    if isinstance(data, list):
        return {name for value in data for name in secret_ref_names(value)}
    return set()
