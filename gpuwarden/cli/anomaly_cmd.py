"""``gpuwarden anomaly``: score a CSV, evaluate on NAB, run on Prometheus, look up an XID.

The group and its commands, registered here in one place; each command lives in a module of its own:
``score`` and ``evaluate nab`` in ``gpuwarden.cli.anomaly_score``, ``run`` in ``gpuwarden.cli.anomaly_run``
(its ticks in ``gpuwarden.cli.anomaly_ticks``); ``xid`` is here. The anomaly stage (numpy, pandas,
scikit-learn) and the configuration model are imported inside each command: the rest of the CLI, ``--help``
included, must start without them.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer
from rich.markup import escape

from gpuwarden.cli.anomaly_run import _state_path, run
from gpuwarden.cli.anomaly_score import evaluate_nab, score
from gpuwarden.cli.anomaly_ticks import TickLog
from gpuwarden.cli.consoles import err_console
from gpuwarden.cli.incidents_cmd import TEXT_OUTPUTS, output_option
from gpuwarden.cli.numbers import whole_number_argument

# What the tests import from here, wherever it is defined.
__all__ = ["TickLog", "_state_path", "anomaly_app", "evaluate_app", "logger", "register"]

anomaly_app = typer.Typer(help="Anomaly detection: score series, evaluate detectors.", no_args_is_help=True)
logger = logging.getLogger(__name__)
evaluate_app = typer.Typer(help="Evaluate the default detector on a benchmark.", no_args_is_help=True)
anomaly_app.add_typer(evaluate_app, name="evaluate")

anomaly_app.command("score")(score)
evaluate_app.command("nab")(evaluate_nab)
anomaly_app.command("run")(run)


@anomaly_app.command("xid")
def xid(
    code: Annotated[int, whole_number_argument("code", 1, help="XID code.")],
    output: Annotated[str, output_option(TEXT_OUTPUTS, "text or json (one JSON document).")] = "text",
) -> None:
    """What an XID means and what gpuwarden recommends doing about it."""
    from anomaly.xidsignatures import load_xid_catalog  # noqa: PLC0415
    from gpuwarden.xid import xid_action, xid_catalog_file  # noqa: PLC0415

    catalog = load_xid_catalog()
    entry = catalog.get(code)
    if entry is None:  # not found, as `incidents show` of an unknown id: exit 1, naming where to look
        err_console.print(
            f"[red]error:[/red] XID {code} is not in the catalog (NVIDIA's XID catalog: {len(catalog)} codes"
            f" from {min(catalog)} to {max(catalog)}, listed in {escape(xid_catalog_file())}); check the"
            " code: the number after the PCI address in the kernel's 'NVRM: Xid' line",
            soft_wrap=True,  # a path cut across two lines cannot be copied
        )
        raise typer.Exit(1)
    if output == "json":  # for a script or a hook: the same fields as the text
        document = {
            "xid": entry.xid,
            "mnemonic": entry.mnemonic,
            "description": entry.description,
            "immediate_action": entry.immediate_action,
            "recommended_action": xid_action(entry).value,
            "investigatory_action": entry.investigatory_action,
        }
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(f"XID {entry.xid} {entry.mnemonic}: {entry.description}")
    typer.echo(f"immediate: {entry.immediate_action} -> {xid_action(entry).value}")
    typer.echo(f"investigate: {entry.investigatory_action}")


def register(app: typer.Typer) -> None:
    """Add the ``anomaly`` group to the root app."""
    app.add_typer(anomaly_app, name="anomaly")
