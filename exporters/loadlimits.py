"""The bounds of a load generator run: ``LoadPlan`` enforces them and ``gpuwarden loadgen --help`` shows
them, without importing the HTTP client that ``exporters.loadgen`` needs."""

from __future__ import annotations

MAX_REQUESTS = 1_000_000
MAX_DURATION_SECONDS = 3600.0
MAX_CONCURRENCY = 1024
MAX_TOKENS = 4096
