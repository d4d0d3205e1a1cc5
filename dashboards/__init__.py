"""Dashboards: grafanalib sources and Prometheus rules, built into JSON/YAML."""
