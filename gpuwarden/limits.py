"""Bounds on numbers a person gives (configuration fields, command options), in a module of their own: the
commands that check an option against one (``exporter --interval``, ``inference-server --simulate``) import
these without ``gpuwarden.config_rules``, whose pydantic models cost every command ~0.2 s at start."""

from __future__ import annotations

DAY = 86_400.0
MAX_INTERVAL_SECONDS = 7 * DAY
"""How often something runs or how long one call may wait: at most a week. Without a bound, 1e308 passed
validation and then broke the timers (``Event.wait``, ``socket.settimeout``: OverflowError)."""
MIN_COLLECT_INTERVAL_SECONDS = 0.1
"""The shortest time between two of the exporter's collections (``exporter.collect_interval_seconds``,
``exporter --interval``): 100 ms, the finest period dcgm-exporter is run at (``-c 100``, in ms) and DCGM's
watches refresh at; NVML's utilisation counters are themselves averages over 1/6 s to 1 s, so a faster pass
reads the same values again. Without a floor, 1e-300 was taken and the collection loop spun a core."""
MAX_WINDOW_SECONDS = 366 * DAY
"""How far back or ahead something looks (correlation, quiet, reopen windows; resolve_timeout; lookbacks):
at most a year, like the longest silence. Beyond that, ``now - window`` leaves the datetime range."""
MAX_RETENTION_DAYS = 36_525  # a hundred years; "keep forever" is 0
MAX_BODY_BYTES = 1 << 30
MAX_SIM_NODES = 2048
"""Nodes of a simulated fleet: beyond this one process spends seconds just stepping the fleet, and building
one of 100,000 GPUs for the inventory took minutes (``sim.*``, ``exporter --simulate``)."""
MAX_GPUS_PER_NODE = 16
