"""Differential probe of gpuwarden's Alertmanager API v2 against a real Alertmanager 0.25 and amtool: one
JSON line. The steps, the comparison and the known differences are in ``tests/integration/am_diff.py``.

``steps``: requests (and amtool calls) sent to both servers in the same order; ``same``: those whose
answers agree (status class, and for listings the alerts or silences); ``known``: differing steps that are
documented or harmless, with the reason; ``unexpected``: the others. ``--verbose`` adds both answers of every
differing step. Run from the repository root with ``GPUWARDEN_TEST_PORTS`` set to the ports it may use.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.integration.am_diff import Probe, alertmanager_and_gpuwarden, summary


def main() -> None:
    verbose = "--verbose" in sys.argv[1:]
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
    main()
