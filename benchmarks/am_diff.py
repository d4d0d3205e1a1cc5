"""Differential probe of gpuwarden's Alertmanager API v2 against a real Alertmanager 0.25 and amtool: one
JSON line. The comparison and the known differences are in ``tests/integration/am_diff.py``, the steps in
``am_diff_alerts.py``, ``am_diff_silences.py`` and ``am_diff_odd.py`` beside it.

``steps``: requests (and amtool calls) sent to both servers in the same order; ``same``: those whose
answers agree (status class, and for listings the alerts or silences); ``known``: differing steps that are
documented or harmless, with the reason; ``unexpected``: the others. ``--verbose`` adds both answers of every
differing step. Run from the repository root with ``GPUWARDEN_TEST_PORTS`` set to the ports it may use.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def _options() -> argparse.Namespace:
    """The command line, read before the probe (its servers' modules) is imported: ``--help`` and an unknown
    option answer at once."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verbose", action="store_true", help="print every step's answers")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: its tests package, when
# run as `python benchmarks/am_diff.py` without PYTHONPATH (`tests` is no installed package)
from tests.integration.am_diff import Probe, alertmanager_and_gpuwarden, summary  # noqa: E402


def main(verbose: bool) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="am-diff-") as work,
        alertmanager_and_gpuwarden(Path(work)) as (am, gw),
    ):
        outcomes = Probe(am, gw).run()
    result: dict[str, Any] = {"benchmark": "am_diff", **summary(outcomes)}
    if verbose:
        result["details"] = {o.step: [o.alertmanager, o.gpuwarden] for o in outcomes if not o.same}
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main(OPTIONS.verbose)
