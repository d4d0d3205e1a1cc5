"""Decoding large JSON documents (an inventory source's listings, a Prometheus answer of 100,000 series)
without the cyclic garbage collector.

Decoding allocates a dict, list or string per value, none of them in a reference cycle, and each burst of
allocations set off full collections that walked every live object of the process: for the inventory
benchmark's 42,500 Kubernetes pods, three quarters of the read (benchmarks/bench_inventory.py); for a
PromQL answer of 100,000 one-step series, 0.3 s of a 0.45 s decode, and as much again building the series'
label sets from it (benchmarks/bench_promql_read.py). Reference counting still frees everything; the
collector is back on as soon as the work is done.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (for work that makes many objects and no cycles), on
    again after it if it was on before (another thread's pause ending first turns it on early: harmless)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def loads_without_gc(data: str | bytes) -> Any:
    """``json.loads`` with the cyclic garbage collector paused for its duration. (orjson decodes a quarter
    faster once the collector is paused, but reads an integer past 64 bits as a float: another answer.)"""
    with collector_paused():
        return json.loads(data)
