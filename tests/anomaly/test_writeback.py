from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from anomaly.detectors import Findings
from anomaly.writeback import SCORE, AnomalyCollector, TickStats, output_labels


def test_series_that_differ_only_by_metric_name_are_one_output_series_the_most_anomalous() -> None:
    labels = [
        {"__name__": "A", "Hostname": "n1", "gpu": "0"},
        {"__name__": "B", "Hostname": "n1", "gpu": "0"},  # the same output labels once __name__ goes
        {"__name__": "A", "Hostname": "n1", "gpu": "1"},
    ]
    findings = Findings(
        detector="adaptive",
        query="q",
        labels=labels,
        score=np.array([0.4, 2.5, 0.1]),
        value=np.zeros(3),
        yhat=np.array([10.0, 20.0, 30.0]),
    )
    collector = AnomalyCollector()
    collector.update([findings], [], TickStats())
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    scores = [line for line in text.splitlines() if line.startswith(SCORE + "{")]
    assert len(scores) == 2  # not three, two of them the same series
    assert any('gpu="0"' in line and line.endswith(" 2.5") for line in scores)
    yhat = [
        line for line in text.splitlines() if line.startswith("gpuwarden_anomaly_yhat{") and 'gpu="0"' in line
    ]
    assert len(yhat) == 1 and yhat[0].endswith(" 20.0")  # the band of the series whose score was kept


def test_an_input_model_label_is_kept_and_the_detector_goes_to_model_alias() -> None:
    labels = [{"__name__": "lat", "model": "llama-70b"}, {"__name__": "lat", "model": "mistral-7b"}]
    findings = Findings(
        detector="adaptive", query="p99_latency", labels=labels, score=np.array([0.2, 3.0]), value=np.zeros(2)
    )
    collector = AnomalyCollector()
    collector.update([findings], [], TickStats())
    registry = CollectorRegistry()
    registry.register(collector)
    for model, score in (("llama-70b", 0.2), ("mistral-7b", 3.0)):
        out = {"model": model, "model_alias": "adaptive", "for": "p99_latency"}
        assert registry.get_sample_value(SCORE, out) == score
    assert output_labels({"gpu": "0"}, "temp", "adaptive") == {"gpu": "0", "for": "temp", "model": "adaptive"}


def test_a_series_whose_first_score_is_nan_is_exported_with_the_next_one() -> None:
    labels = [{"__name__": "A", "gpu": "0"}, {"__name__": "B", "gpu": "0"}, {"__name__": "C", "gpu": "0"}]
    findings = Findings(
        detector="adaptive",
        query="q",
        labels=labels,
        score=np.array([np.nan, 0.5, 0.25]),  # NaN held: 0.5 replaces it; 0.25 does not replace 0.5
        value=np.zeros(3),
    )
    collector = AnomalyCollector()
    collector.update([findings], [], TickStats())
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert [line for line in text.splitlines() if line.startswith(SCORE + "{")] == [
        f'{SCORE}{{for="q",gpu="0",model="adaptive"}} 0.5'
    ]
