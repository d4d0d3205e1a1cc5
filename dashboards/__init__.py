"""Dashboards: grafanalib sources and Prometheus rules, built into JSON/YAML. Not built yet: the package holds
nothing else (README, "What `make demo` shows": not built yet)."""
