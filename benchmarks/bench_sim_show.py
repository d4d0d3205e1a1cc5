"""What a large simulated fleet's topology costs: ``sim show`` and serve's ``alerting.sim_inventory``, one
JSON line.

Wall time of ``gpuwarden sim show --simulate NxG`` as a table and as JSON, written to a pipe, and of building
serve's inventory of ``alerting.sim_inventory`` for a fleet of ``--inventory-nodes`` 8-GPU nodes
(``prepare_inventories``, in a process of its own, its imports included). Each figure: median and best of
``--runs`` runs after one untimed one. ``--compare-pythonpath DIR`` times the same with ``PYTHONPATH=DIR``
(another checkout: the code before a change), in turn with this tree's run by run, as a loaded machine
needs; ``*_same_output`` says whether both printed the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

GPUWARDEN = str(Path(sys.executable).with_name("gpuwarden"))
INVENTORY = """
import sys
from gpuwarden.cli.inventories import prepare_inventories
from gpuwarden.config import load_config
from pathlib import Path
inventories = prepare_inventories(load_config(Path(sys.argv[1])))
(static, _), *_ = inventories.fixed
print(len(static.node_list), len(static.workload_list), sorted(static.spare.items()))
inventories.close()
"""


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--simulate", default="1024x8", help="sim show's fleet (default 1024x8)")
    parser.add_argument("--inventory-nodes", type=int, default=2048, help="sim_inventory's nodes (2048)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--compare-pythonpath", default="", help="another checkout to time, alternately")
    return parser.parse_args()


def main(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="gpuwarden-bench-sim-show-") as tmp:
        config = Path(tmp) / "gpuwarden.yaml"
        config.write_text(
            f"alerting:\n  sim_inventory: true\nexporter:\n  simulate: {options.inventory_nodes}x8\n"
        )
        commands = {
            "show_table": [GPUWARDEN, "sim", "show", "--simulate", options.simulate],
            "show_json": [GPUWARDEN, "sim", "show", "--simulate", options.simulate, "--output", "json"],
            "sim_inventory": [sys.executable, "-c", INVENTORY, str(config)],
        }
        trees = {"after": dict(os.environ)}
        if options.compare_pythonpath:
            trees["before"] = {**os.environ, "PYTHONPATH": options.compare_pythonpath}
        samples: dict[str, list[float]] = {}
        printed: dict[str, set[bytes]] = {}
        for i in range(options.runs + 1):
            for what, argv in commands.items():
                for tree, env in trees.items():
                    start = perf_counter()
                    proc = subprocess.run(argv, capture_output=True, env=env, check=True)
                    if i > 0:
                        samples.setdefault(f"{what}_{tree}", []).append(perf_counter() - start)
                    printed.setdefault(what, set()).add(proc.stdout)
    result: dict[str, object] = {
        "benchmark": "sim_show",
        "simulate": options.simulate,
        "inventory_nodes": options.inventory_nodes,
        "runs": options.runs,
        "unit": "seconds",
    }
    for key, values in sorted(samples.items()):
        result[key] = {"median": round(statistics.median(values), 2), "best": round(min(values), 2)}
    result.update({f"{what}_same_output": len(outs) == 1 for what, outs in printed.items()})
    print(json.dumps(result))


if __name__ == "__main__":
    main(_options())
