"""Cross-validated NAB score of a bound on what one sample adds to the adaptive thresholds' fast error.

Issue 4's glitch: one sample of 4294967295 (NVML's 0xFFFFFFFF) on a GPU's metrics kept adaptive alerts open
for about 1.5 hours. The fast error (``fast_dev``, an EWMA with weight ``fast_alpha`` 0.1 of the absolute
error) took the raw error uncapped, so one sample 10^9 bands out decayed below the volatility floor only
after ~175 samples, while every other part of the state is winsorised. Capping it at the baselines' error
cap (``err_cap``) cost NAB points (tune 78.77 -> 66.21), as did 10 volatility floors (all files 71.95 ->
68.89): at 10 floors one sample alone can no longer make the volatility part fire.

The candidate (``ThresholdParams(fast_cap=c)``, ``anomaly.thresholds``; off by default) caps the error one
sample adds at ``c`` volatility floors once warmed up. A sample at ``c`` floors raises the volatility score
to ``fast_alpha * c`` and it falls below 1 after ``ln(fast_alpha * c) / -ln(1 - fast_alpha)`` samples: 7,
13, 27, 40, 53 samples for the grid's 20, 40, 160, 640 and 2,560 floors (against 175 for the glitch, 400
for 0xFFFFFFFFFFFFFFFF). The grid was declared and committed before the first run of this harness, with no
look at any NAB file: ``fast_cap`` 20 / 40 / 160 / 640 / 2,560. Cross-validation as ``nab_rebaseline.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nab_inputs import corpus_parser  # light: the anomaly stage only once a corpus is read

# The command line (and its parser, which refuses a missing corpus), read before the heavy imports below
# (numpy, the anomaly stage): ``--help`` and an unknown option answer at once.
if __name__ == "__main__":
    PARSER = corpus_parser(__doc__)
    OPTIONS = PARSER.parse_args()

from nab_rebaseline import report_grid

from anomaly.thresholds import ThresholdParams

CAPS = (20.0, 40.0, 160.0, 640.0, 2560.0)


def grid() -> dict[str, ThresholdParams | None]:
    """The declared grid, plus the default alone (``off``)."""
    out: dict[str, ThresholdParams | None] = {"off": None}
    for cap in CAPS:
        out[f"fast_cap={cap:g}"] = ThresholdParams.from_config(fast_cap=cap)
    return out


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    report_grid(parser, args, grid(), "nab_fastcap")


if __name__ == "__main__":
    main(PARSER, OPTIONS)
