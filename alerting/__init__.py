"""Alerting: ingest, dedup, silences, inhibition, correlation, priority, incidents, store, notifiers."""
