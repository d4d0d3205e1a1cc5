"""Exporters: NVML collector with DCGM-compatible names, XID watcher, inference tracing, training metrics."""
