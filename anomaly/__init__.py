"""Anomaly detection: sources, detectors, adaptive thresholds, fault signatures, scoring, evaluation."""
