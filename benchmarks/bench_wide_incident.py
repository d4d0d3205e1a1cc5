"""One incident that grows to ten thousand alerts, in process: one JSON line.

A driver or firmware fault raising the same XID on every GPU of a 1,250-node cluster (10,000 alerts, posted
in batches of 64 as Prometheus' rule evaluations would) becomes one incident. Each new alert asks that
incident whether it explains it; the cost of that question must not grow with the incident, or replaying a
backlog into a large incident takes minutes (ninth session: 9 s per thousand alerts at ten thousand).

Alerts per second overall and for the last thousand, and the number of incidents (1 expected). ``--racks N``
(125, ten nodes each) makes it smaller, for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

RACKS, NODES_PER_RACK, GPUS = 125, 10, 8
BATCH = 64


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below (the alerting stage): ``--help`` and an
    unknown option answer at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--racks", type=int, default=RACKS, help=f"racks of the cluster (default {RACKS})")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.db import make_engine  # noqa: E402 - imported after the command line is read
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.inventory import NodeInfo, StaticInventory  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert  # noqa: E402


def main(racks: int = RACKS) -> None:
    nodes = [
        NodeInfo(f"n{r:03d}-{i:02d}", "big", f"r{r:03d}", GPUS)
        for r in range(racks)
        for i in range(NODES_PER_RACK)
    ]
    db = str(Path(tempfile.mkdtemp(prefix="bench-wide-")) / "gw.db")
    upgrade(make_engine(db))
    engine = IncidentEngine(make_engine(db), FakeClock(), AlertingConfig(), StaticInventory(nodes, [], {}))
    alerts = [
        Alert({"alertname": "GPUXid", "cluster": "big", "Hostname": n.name, "gpu": str(g), "xid": "13"})
        for n in nodes
        for g in range(GPUS)
    ]
    start = time.perf_counter()
    last_thousand_from = start
    for i in range(0, len(alerts), BATCH):
        if i <= len(alerts) - 1000 < i + BATCH:
            last_thousand_from = time.perf_counter()
        engine.ingest(alerts[i : i + BATCH])
    end = time.perf_counter()
    last = len(alerts) - (len(alerts) - 1000) // BATCH * BATCH
    print(
        json.dumps(
            {
                "benchmark": "wide_incident",
                "alerts": len(alerts),
                "incidents": len(engine.store.list_rows()),
                "alerts_per_second": round(len(alerts) / (end - start)),
                "last_thousand_per_second": round(last / (end - last_thousand_from)),
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS.racks)
