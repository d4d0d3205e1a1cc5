"""``gpuwarden demo | head -2``: seconds from the reader leaving to the demo's exit, and its exit status.

The reader reads the demo's first ``--lines`` lines (the warm-up's, which then says nothing for about 40 s)
and closes the pipe. Prints one JSON line with each run's seconds and exit status.
Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_demo_reader_gone.py [--runs 3] [--output json]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def reader_gone_seconds(lines: int, output: str) -> tuple[float, int, str]:
    """Run the demo, read ``lines`` lines (none with ``-o json``) and leave; seconds to its exit, its status
    and its stderr."""
    argv = [sys.executable, "-m", "gpuwarden", "demo", "-o", output]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as demo:
        assert demo.stdout is not None and demo.stderr is not None
        for _ in range(lines if output == "text" else 0):
            demo.stdout.readline()
        if output == "json":
            time.sleep(5)  # into the run: its imports and the pipeline's start
        demo.stdout.close()
        left = time.monotonic()
        code = demo.wait()
        seconds = time.monotonic() - left
        return seconds, code, demo.stderr.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lines", type=int, default=2)
    parser.add_argument("--output", choices=["text", "json"], default="text")
    options = parser.parse_args()
    runs = [reader_gone_seconds(options.lines, options.output) for _ in range(options.runs)]
    print(
        json.dumps(
            {
                "bench": "demo_reader_gone",
                "output": options.output,
                "seconds_to_exit": [round(s, 2) for s, _, _ in runs],
                "exit_codes": [code for _, code, _ in runs],
                "stderr_bytes": [len(err) for _, _, err in runs],
            }
        )
    )


if __name__ == "__main__":
    main()
