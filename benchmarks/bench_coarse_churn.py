"""Memory of ``CoarseSteps`` under label churn: one JSON line.

One query read one step (``--step``, 30 s) at a time, as ``anomaly run`` reads it at each tick, for
``--hours`` (``--only`` one of the two loads): ``pods``: 2,000 pods answering every step, 5 % of them
replaced every 3 minutes; ``one_scrape``: 2,000 pods answering every step and 1,000 fresh label sets at
every read, each answering once (pods that lived one scrape). For each: the label sets the query's state
holds at the end, the hashes of series answered once that it keeps instead (at most ``ONCE_MOST`` since
fix/anom6), and the bytes it holds (``tracemalloc``, the label sets it keeps included).
Runs against whatever tree ``PYTHONPATH`` names first.
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc

STEP = 30.0


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument(
        "--step", type=float, default=STEP, help="seconds between two reads (the query's step)"
    )
    parser.add_argument("--only", choices=("pods", "one_scrape"), help="run one of the two loads only")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read

from anomaly.coarsesteps import CoarseSteps  # noqa: E402
from anomaly.sources import Frame  # noqa: E402

REPLACED_EVERY = 180.0  # seconds between two replacements of 5 % of the pods


def pod(name: str) -> dict[str, str]:
    """A pod's label set as a parsed answer holds it."""
    return {
        "__name__": "DCGM_FI_DEV_GPU_UTIL",
        "namespace": "training",
        "pod": name,
        "container": "main",
        "Hostname": f"node-{hash(name) % 500:03d}",
        "gpu": str(hash(name) % 8),
    }


def run(reads: int, one_scrape: bool, step: float = STEP) -> tuple[int, int, int]:
    coarse = CoarseSteps("prometheus")
    names = [f"job-{i}" for i in range(2000)]
    born = len(names)
    gc.collect()
    tracemalloc.start()
    every = max(1, round(REPLACED_EVERY / step))
    for k in range(reads):
        if k and k % every == 0:  # every 3 minutes, 5 % of the pods replaced
            for i in range(0, len(names), 20):
                names[i], born = f"job-{born}", born + 1
        lab = [pod(n) for n in names]
        if one_scrape:
            lab += [pod(f"once-{k}-{i}") for i in range(1000)]
        coarse.keep(Frame("q", lab, np.array([step * k]), np.ones((len(lab), 1))), step)
        del lab
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # Label sets held by slot, and (since fix/coarse5) hashes of those answered once, let go of.
    series = sum(len(s._slots) for s in coarse._series.values())
    hashes = sum(len(getattr(s, "_once", ())) for s in coarse._series.values())
    del coarse
    return series, hashes, held


def main(args: argparse.Namespace) -> None:
    reads = round(args.hours * 3600 / args.step)
    out: dict[str, object] = {"benchmark": "coarse_churn", "step": args.step, "reads": reads}
    for name, once in (("pods", False), ("one_scrape", True)):
        if args.only not in (None, name):
            continue
        series, hashes, held = run(reads, once, args.step)
        out[f"{name}_series"] = series
        out[f"{name}_hashes"] = hashes
        out[f"{name}_mib"] = round(held / 2**20, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main(OPTIONS)
