"""What a listing command says on stderr when it lists nothing (kubectl's ``No resources found``, not an empty
table), and when ``--limit`` cut it short."""

from __future__ import annotations

from gpuwarden.cli.consoles import err_console
from gpuwarden.printable import escape_controls


def say_none_found(what: str, filters: dict[str, object | None]) -> None:
    """``No incidents found (state triggered, priority P1).`` on stderr: stdout stays empty for a script,
    and a person sees which listing came back empty and under which filters (the given ones only)."""
    given = [f"{name} {escape_controls(str(value))}" for name, value in filters.items() if value is not None]
    where = f" ({', '.join(given)})" if given else ""
    err_console.print(f"No {what} found{where}.", markup=False, highlight=False, soft_wrap=True)


def say_cut_off(shown: int, total: int) -> None:
    """``showing the newest 50 of 240; --limit 0 lists all`` on stderr when ``total`` match and only
    ``shown`` are listed, whatever ``-o``: a JSON list cannot carry the count without changing its shape, and
    a script's log showed 50 incidents where 240 matched without a word."""
    if total > shown:
        err_console.print(f"showing the newest {shown} of {total}; --limit 0 lists all", soft_wrap=True)


def say_next_page(
    token: str | None, continued: bool, said: dict[str, object | None], shown: int, total: int
) -> None:
    """Below ``incidents list``' table (or its JSON), on stderr: as ``say_cut_off`` and, where serve gave a
    token (``X-Continue``), the command of the next page, the filters ``said`` again (``next page: gpuwarden
    incidents list --state resolved --continue TOKEN``). ``continued``: this page came from a token, so it
    shows those after an earlier page, not the newest."""
    if not continued:
        say_cut_off(shown, total)
    elif total > shown:
        err_console.print(f"showing {shown} more of {total}", soft_wrap=True, markup=False, highlight=False)
    if token is not None:
        options = "".join(f" {name} {value}" for name, value in said.items() if value is not None)
        line = f"next page: gpuwarden incidents list{options} --continue {escape_controls(token)}"
        err_console.print(line, soft_wrap=True, markup=False, highlight=False)
