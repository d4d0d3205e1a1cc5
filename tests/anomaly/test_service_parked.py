"""A GPU's series forgotten while its node was down (unseen past ``forget_after_seconds``) and back under a
new series takes up the adaptive band it had: judged at once, not warmed up anew at what its job ran at."""

from __future__ import annotations

from anomaly.adaptive import AdaptiveDetector
from anomaly.needs import POWER
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import TableCollector
from tests.anomaly.service_ticks import GPUS, tick

AWAY = 3
# Its series forgotten after 10 reads away; the warm-up is 30 reads.
FORGETFUL = AnomalyConfig(adaptive_metrics=[POWER], forget_after_seconds=300)


def _raised_on_away_gpu(labels: dict[int, dict[str, str]] | None = None) -> list[tuple[int, float]]:
    """Each alert raised on GPU 3 (read number, its value): 4 GPUs of a job at 300 W (a little noise) for 100
    reads, GPU 3's node down in reads 100-111 (its series forgotten), back while a fault elsewhere holds the
    job at 200 W until read 160 (past the warm-up), then at 300 W again. ``labels``: GPUs' own, by index."""
    clock = FakeClock()
    col = TableCollector()
    service = AnomalyService(FORGETFUL, [CollectorSource([col], clock)], clock, [AdaptiveDetector(FORGETFUL)])
    gpus = [(labels or {}).get(i, g) for i, g in enumerate(GPUS[:4])]
    raised = []
    for n in range(200):
        level = 200.0 if 112 <= n < 160 else 300.0
        rows = [(g, level + (n % 3) * 2.0 + i * 0.5) for i, g in enumerate(gpus)]
        col.set(POWER, [r for i, r in enumerate(rows) if i != AWAY or not 100 <= n < 112])
        for alert in tick(clock, service).raised:
            if alert.labels.get("gpu") == str(AWAY):
                raised.append((n, rows[AWAY][1]))
    return raised


def test_a_gpu_back_from_a_long_outage_keeps_its_band_and_no_alert_comes_when_its_job_recovers():
    # Warmed up anew while the job was held down, its band was learnt at 200 W: the job back at 300 W after
    # the fault raised an alert on a GPU with nothing wrong. Kept, the band reads the held-down job low
    # on the GPU's return (the fault's, as on its peers) and its recovery raises nothing.
    raised = _raised_on_away_gpu()
    assert [n for n, _ in raised if n >= 160] == []
    assert raised and all(112 <= n < 160 and value < 300.0 for n, value in raised)


def test_a_gpu_without_a_uuid_keeps_its_band_by_its_node_and_index():
    # An empty UUID: the GPU is its node and index (``anomaly.relabels.gpu_identity``), which another GPU
    # with an empty UUID does not share. Before, it warmed up anew and alerted when its job recovered.
    raised = _raised_on_away_gpu({AWAY: {**GPUS[AWAY], "UUID": ""}})
    assert [n for n, _ in raised if n >= 160] == []
    assert raised and all(112 <= n < 160 and value < 300.0 for n, value in raised)


def test_a_gpu_without_a_uuid_or_a_node_is_warmed_up_anew_not_handed_another_gpus_band():
    # No key to park it by: an empty UUID and no node name no GPU (another such GPU would take its band).
    nameless = {AWAY: {"gpu": str(AWAY), "UUID": "", "modelName": "H100"}}
    raised = _raised_on_away_gpu(nameless)
    assert [n for n, _ in raised if n < 160] == []
    assert [n for n, _ in raised if n >= 160]
