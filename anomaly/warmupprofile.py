"""Per-series settings of the default detector, chosen from what each series showed in its first samples.

Opt-in and off by default (``benchmarks/nab_adaptive.py`` cross-validates it on NAB). A series' first
``ProfileRule.samples`` values (by default the adaptive thresholds' warm-up, 30 samples, which they spend
learning anyway) are summarised by ``warmup_profile``; ``ProfileRule.settings_for`` maps that summary to the
settings the rest of the series is scored with, through one declared rule: a warm-up that looks like noise
(first differences about as spread as the values themselves or more: ``roughness`` at least
``ProfileRule.roughness``; white noise gives about 1.41, a smooth or trending series well under 1) gets a
slower re-arm of the adaptive alerts (``resolve_after``), so a noisy series' excursions that come and go
raise once rather than every time they return.

Not in the default: cross-validated on NAB it scored 71.7 (a category left out) and 72.05 (five folds) against
the default's 71.95, and the rule frozen on tune lowered held-out 64.7 -> 62.4 (``benchmarks/README.md``).

Causality: ``score_profiled`` scores every series with the base settings and, for a series whose profile
chose other settings, also with those from its first sample; the output is the base's before the profile is
complete and the chosen settings' from then on. A streaming service would run both side by side for the
profile's samples, then keep the chosen one: a sample's alert depends only on the samples up to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from anomaly.thresholds import MAD_TO_SIGMA, FloatArray
from anomaly.univariate import ScoredSeries, Series, Settings, score_together

WHITE_NOISE_ROUGHNESS = float(np.sqrt(2.0))
"""``roughness`` of Gaussian white noise: the difference of two independent draws is sqrt(2) times as wide."""


@dataclass(frozen=True, slots=True)
class WarmupProfile:
    """What a series' first samples showed; every statistic is 0 where it is undefined (too few samples, a
    constant stretch)."""

    samples: int
    kurtosis: float
    """Excess kurtosis of the values (0 for a Gaussian; large for rare, big spikes)."""
    beyond: float
    """Share of the values more than 3 robust standard deviations (1.4826 MADs) from their median."""
    lag1: float
    """Lag-1 autocorrelation of the values."""
    roughness: float
    """MAD of the first differences over the MAD of the values; 0 when the values' MAD is 0 (most values
    equal: a flat stretch with steps or spikes, about whose noise the differences say nothing)."""


def warmup_profile(values: FloatArray) -> WarmupProfile:
    """The profile of ``values`` (gaps, non-finite values, are left out)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 3:
        return WarmupProfile(samples=int(x.size), kurtosis=0.0, beyond=0.0, lag1=0.0, roughness=0.0)
    centred = x - x.mean()
    var = float(np.mean(centred**2))
    kurtosis = float(np.mean(centred**4) / var**2 - 3.0) if var > 0 else 0.0
    median = float(np.median(x))
    mad = float(np.median(np.abs(x - median)))
    beyond = float(np.mean(np.abs(x - median) > 3.0 * MAD_TO_SIGMA * mad)) if mad > 0 else 0.0
    lag1 = float(np.sum(centred[:-1] * centred[1:]) / (var * x.size)) if var > 0 else 0.0
    diffs = np.diff(x)
    roughness = float(np.median(np.abs(diffs - np.median(diffs))) / mad) if mad > 0 else 0.0
    return WarmupProfile(
        samples=int(x.size), kurtosis=kurtosis, beyond=beyond, lag1=lag1, roughness=roughness
    )


@dataclass(frozen=True, slots=True)
class ProfileRule:
    """A noisy warm-up (``roughness`` at least ``roughness``) re-arms adaptive alerts after
    ``resolve_after`` quiet samples instead of the base's; other series keep the base settings. The defaults
    are the best of ``benchmarks/nab_adaptive.py``'s grid on NAB's tune split."""

    samples: int = 30
    """How many first samples the profile reads (30: the adaptive thresholds' default warm-up)."""
    roughness: float = 1.2
    resolve_after: int = 200

    def __post_init__(self) -> None:
        if self.samples < 3:
            raise ValueError(f"samples must be at least 3, got {self.samples}")
        if self.resolve_after < 1:
            raise ValueError(f"resolve_after must be at least 1, got {self.resolve_after}")

    def settings_for(self, profile: WarmupProfile, base: Settings) -> Settings:
        """The settings a series with ``profile`` is scored with after its profile (``base`` unless noisy)."""
        if profile.roughness >= self.roughness:
            return replace(base, resolve_after=self.resolve_after)
        return base


def choose_settings(series: list[Series], rule: ProfileRule, base: Settings) -> list[Settings]:
    """Each series' settings from its first ``rule.samples`` values only."""
    return [rule.settings_for(warmup_profile(s.values[: rule.samples]), base) for s in series]


def score_profiled(
    series: list[Series], rule: ProfileRule, base: Settings | None = None
) -> list[ScoredSeries]:
    """Score ``series`` with per-series settings chosen by ``rule`` (see the module docstring): the base
    settings' output until each profile is complete, the chosen settings' from then on."""
    base = base or Settings()
    chosen = choose_settings(series, rule, base)
    out = score_together(series, base)
    for settings in dict.fromkeys(chosen):  # each distinct choice once, in order
        if settings == base:
            continue
        members = [j for j, c in enumerate(chosen) if c == settings]
        for j, scored in zip(members, score_together([series[j] for j in members], settings), strict=True):
            score, raised = out[j].score.copy(), out[j].raised.copy()
            score[rule.samples :] = scored.score[rule.samples :]
            raised[rule.samples :] = scored.raised[rule.samples :]
            out[j] = ScoredSeries(series=series[j], score=score, raised=raised)
    return out
