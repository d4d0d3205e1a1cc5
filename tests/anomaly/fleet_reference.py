"""The fleet detector's peer-group scoring as it was before fix/fleetfast: a Python loop over the peer groups,
``np.median`` and ``np.mean`` of each alone. ``tests/anomaly/test_fleet_groups.py`` holds the array version in
``anomaly.fleet`` to it, score for score and load moment for load moment, to the bit."""

from __future__ import annotations

import numpy as np

from anomaly.fleet import FleetDetector
from anomaly.series import Step
from anomaly.thresholds import MAD_TO_SIGMA, BoolArray, FloatArray


class GroupByGroupFleet(FleetDetector):
    """``FleetDetector`` scoring one peer group at a time (main at e9d922d7, ``robust_z`` and its helpers
    copied unchanged)."""

    def robust_z(self, step: Step, load: FloatArray | None = None) -> FloatArray:
        group = self._groups(step)
        x = step.value
        inside = ~step.outside if step.outside is not None else np.ones(x.size, np.bool_)
        z = np.full(x.size, np.nan)
        ok = np.flatnonzero(np.isfinite(x) & (group >= 0))
        order = ok[np.lexsort((x[ok], group[ok]))]
        bounds = np.flatnonzero(np.diff(group[order])) + 1
        for members in np.split(order, bounds):
            peer = inside[members]
            if members.size < self.min_peers or not peer.any():
                continue
            vals = x[members]
            centre = float(np.median(vals[peer]))
            level = abs(centre)
            if load is not None:
                vals, centre = self._net_of_load_one(
                    step.query, int(group[members[0]]), vals, load[members], peer
                )
            spread = MAD_TO_SIGMA * float(np.median(np.abs(vals[peer] - centre)))
            spread = max(spread, self.min_relative_spread * level, self._floor(step.query) / self.k, 1e-9)
            z[members] = (vals - centre) / spread
            if load is not None:
                kept = members[peer]
                self._learn_load_one(step.query, int(group[members[0]]), x[kept], load[kept], z[kept])
        return z

    def _net_of_load_one(
        self, query: str, code: int, vals: FloatArray, load: FloatArray, peer: BoolArray
    ) -> tuple[FloatArray, float]:
        moments = self._load_moments.get((query, self._group_keys[query][code]))
        if moments is None:
            return vals, float(np.median(vals[peer]))
        slope = moments[0] / (moments[1] + self.load_ridge)
        known = np.isfinite(load)
        if known.sum() < self.min_peers:
            return vals, float(np.median(vals[peer]))
        net = vals - slope * np.where(known, load - float(np.median(load[known])), 0.0)
        return net, float(np.median(net[peer]))

    def _learn_load_one(
        self, query: str, code: int, vals: FloatArray, load: FloatArray, z: FloatArray
    ) -> None:
        normal = np.isfinite(load) & (np.abs(z) < self.k_exit)
        if normal.sum() < self.min_peers:
            return
        dx = load[normal] - float(np.median(load[normal]))
        dy = vals[normal] - float(np.median(vals[normal]))
        key = (query, self._group_keys[query][code])
        tick = (float(np.mean(dx * dy)), float(np.mean(dx * dx)))
        moments = self._load_moments.get(key)
        if moments is None:
            self._load_moments[key] = list(tick)
            return
        a = self.load_alpha
        moments[0] += a * (tick[0] - moments[0])
        moments[1] += a * (tick[1] - moments[1])
