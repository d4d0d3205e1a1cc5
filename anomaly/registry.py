"""The built-in detectors, listed in one place (STYLE: one registry per extension point)."""

from __future__ import annotations

from anomaly.adaptive import AdaptiveDetector
from anomaly.changepoint import LevelShiftDetector
from anomaly.detectors import DetectorRegistry
from anomaly.fleet import FleetDetector
from anomaly.multivariate import MultivariateDetector
from anomaly.presence import PresenceDetector
from anomaly.signatures import SignatureDetector
from anomaly.thermal import ThermalDetector
from gpuwarden.config_anomaly import AnomalyConfig


def builtin_registry(cfg: AnomalyConfig) -> DetectorRegistry:
    """The built-in detectors, listed in one place."""
    registry = DetectorRegistry()
    registry.register("adaptive", lambda: AdaptiveDetector(cfg))
    registry.register("level_shift", lambda: LevelShiftDetector(cfg.level_shift_queries))
    registry.register(
        "multivariate",
        lambda: MultivariateDetector(
            cfg.multivariate_queries, trees=cfg.multivariate_trees, history=cfg.multivariate_history
        ),
    )
    registry.register(
        "fleet",
        lambda: FleetDetector(
            cfg.fleet_queries,
            cfg.fleet_peer_labels,
            k=cfg.fleet_k,
            min_deviation=cfg.fleet_min_deviation_by_metric,
            k_exit=cfg.fleet_k_exit,
            hold_ticks=cfg.fleet_hold_ticks,
            rearm_ticks=cfg.fleet_rearm_ticks,
            load_query=cfg.fleet_load_query,
            load_adjusted=cfg.fleet_load_adjusted,
        ),
    )
    registry.register("signatures", lambda: SignatureDetector(lost_memory_seconds=cfg.absent_forget_seconds))
    registry.register(
        "thermal",
        lambda: ThermalDetector(
            lag_seconds=cfg.thermal_lag_seconds,
            alpha=cfg.thermal_alpha,
            k=cfg.thermal_k,
            min_deviation=cfg.thermal_min_deviation,
            ridge_watts=cfg.thermal_ridge_watts,
            warmup=cfg.thermal_warmup,
            hold_seconds=cfg.thermal_hold_seconds,
            peer_labels=cfg.thermal_peer_labels,
            min_peers=cfg.thermal_min_peers,
            peer_tolerance=cfg.thermal_peer_tolerance,
            settle_seconds=cfg.thermal_settle_seconds,
        ),
    )
    registry.register(
        "presence",
        lambda: PresenceDetector(
            cfg.presence_queries,
            absent_after=cfg.absent_after_seconds,
            forget_after=cfg.absent_forget_seconds,
        ),
    )
    return registry
