"""What a listing command says when it lists nothing: kubectl's ``No resources found``, not an empty table."""

from __future__ import annotations

from gpuwarden.cli.consoles import err_console
from gpuwarden.printable import escape_controls


def say_none_found(what: str, filters: dict[str, object | None]) -> None:
    """``No incidents found (state triggered, priority P1).`` on stderr: stdout stays empty for a script,
    and a person sees which listing came back empty and under which filters (the given ones only)."""
    given = [f"{name} {escape_controls(str(value))}" for name, value in filters.items() if value is not None]
    where = f" ({', '.join(given)})" if given else ""
    err_console.print(f"No {what} found{where}.", markup=False, highlight=False, soft_wrap=True)
