"""Cost of the whole-call deadline (``alerting.notifiers.deadline``): each Slack call and webhook POST runs
on a thread of its own. Measures a no-op call directly and through ``DeadlineCaller``, and
``chat.postMessage`` to the local Slack stand-in without and with it (alternated rounds). One JSON line.

    python benchmarks/bench_call_deadline.py [--calls 2000] [--posts 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.notifiers.deadline import DeadlineCaller  # noqa: E402 - imported after the command line is read
from alerting.notifiers.recorder import SlackRecorder  # noqa: E402
from alerting.notifiers.slack import make_client  # noqa: E402


def per_call_us(n: int, call: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def main(args: argparse.Namespace) -> None:
    caller = DeadlineCaller(30.0, name="bench")
    noop: Callable[[], object] = lambda: None  # noqa: E731
    results: dict[str, list[float]] = {
        "noop_direct": [],
        "noop_deadline": [],
        "post_direct": [],
        "post_deadline": [],
    }
    with SlackRecorder() as recorder:
        client = make_client(recorder.token, base_url=recorder.base_url)

        def post() -> object:
            return client.chat_postMessage(channel="C0123456789", text="bench")

        for _ in range(args.rounds):
            results["noop_direct"].append(per_call_us(args.calls, noop))
            results["noop_deadline"].append(per_call_us(args.calls, lambda: caller.call("noop", noop)))
            results["post_direct"].append(per_call_us(args.posts, post))
            results["post_deadline"].append(per_call_us(args.posts, lambda: caller.call("post", post)))
    print(json.dumps({k + "_us_median": round(statistics.median(v), 1) for k, v in results.items()}))


if __name__ == "__main__":
    main(OPTIONS)
