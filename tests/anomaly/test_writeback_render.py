"""``/metrics``' scores and bands written by ``AnomalyCollector.render_bands``: byte for byte what
prometheus_client's encoders write of ``collect()``, in every format and escaping a scrape may ask for."""

from __future__ import annotations

import gzip
import math
import random
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from anomaly import exposition
from anomaly.detectors import Findings
from anomaly.sources import QueryHealth, SourceHealth
from anomaly.writeback import AnomalyCollector, TickStats, output_labels
from gpuwarden.cli.anomaly_http import metrics_body

ACCEPTS = [
    "",
    "text/plain;version=0.0.4",
    "text/plain; version=1.0.0; escaping=underscores",
    "text/plain; version=1.0.0; escaping=allow-utf-8",
    "text/plain; version=1.0.0; escaping=dots",
    "text/plain; version=1.0.0; escaping=values",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0",
    "application/openmetrics-text; version=1.0.0; escaping=allow-utf-8",
    "application/openmetrics-text; version=1.0.0; escaping=dots",
    "application/openmetrics-text; version=1.0.0; escaping=values",
    # Prometheus 2.x's scrape header: OpenMetrics preferred, the text format after it
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
]
NAMES = [
    "Hostname",
    "gpu",
    "UUID",
    "job",
    "instance",
    "model",
    "model_alias",
    "for",
    "k8s.pod",
    "lé",
    "_x",
    "a1",
    "__name__",
    "a\u2028b",  # a UTF-8 name holding a line separator: allow-utf-8 writes it quoted, as it is
    "c\rd",
]
TEXTS = ["n1", "0", 'say "hi"', "back\\slash", "new\nline", "ünï", "", "GPU-1f2e", "a,b=c}", "0.5"]
NUMBERS = [0.0, -0.0, 1.0, 0.1, 2.5, 1e-7, 123456789.0, 1e22, -3.25, math.inf, -math.inf, math.nan, 42.0, 1e6]


def _array(rng: random.Random, n: int) -> np.ndarray | None:
    return None if rng.random() < 0.25 else np.array([rng.choice(NUMBERS) for _ in range(n)])


def _findings(rng: random.Random) -> list[Findings]:
    out = []
    for k in range(rng.randint(1, 4)):
        n = rng.randint(0, 12)
        labels = [
            {name: rng.choice(TEXTS) for name in rng.sample(NAMES, rng.randint(0, 5))} for _ in range(n)
        ]
        if labels and rng.random() < 0.5:  # series the same but for __name__, or repeated: one output series
            labels.append({**labels[0], "__name__": "other"})
            labels.append(dict(labels[-1]))
        n = len(labels)
        out.append(
            Findings(
                detector=rng.choice(["adaptive", "fleet", "thermal"]),
                query=rng.choice(["q", "DCGM_FI_DEV_GPU_TEMP", f"q{k}"]),
                labels=labels,
                score=np.array([rng.choice([*NUMBERS, 20.0, 0.9]) for _ in range(n)]),
                value=np.zeros(n),
                yhat=_array(rng, n),
                lower=_array(rng, n),
                upper=_array(rng, n),
            )
        )
    return out


def _collector(seed: int) -> AnomalyCollector:
    rng = random.Random(seed)
    health = SourceHealth(name="prometheus", up=True, series=12)
    health.queries["q"] = QueryHealth(up=False, errors_total=2)
    collector = AnomalyCollector()
    collector.update(_findings(rng), [health], TickStats(series=12, alerts_firing=1, tick_seconds=0.25))
    return collector


def _served(seed):
    """A tick's collector, a service holding it (what ``metrics_body`` reads) and its status registry."""
    collector = _collector(seed)
    status = CollectorRegistry()
    status.register(collector.status)
    return collector, SimpleNamespace(collector=collector), status


def _body(service, registry, accept):
    chunks, content_type, _ = metrics_body(service, registry, accept)
    return b"".join(chunks), content_type


@pytest.mark.parametrize("seed", range(40))
def test_the_bands_are_written_as_the_encoder_writes_the_collected_samples(seed, monkeypatch):
    monkeypatch.setattr(exposition, "_BATCH", 1 + seed % 7)  # lines encoded in batches across the rows
    collector = _collector(seed)
    whole, status = CollectorRegistry(), CollectorRegistry()
    whole.register(collector)
    status.register(collector.status)
    for accept in ACCEPTS:
        encoder, content_type = choose_encoder(accept)
        rendered = b"".join(collector.render_bands(encoder, content_type)) + encoder(status)
        assert rendered.decode() == encoder(whole).decode(), accept


@pytest.mark.parametrize("seed", range(40))
def test_every_output_series_is_written_once_at_its_highest_score(seed):
    # Series that differ by __name__, repeat, or whose input model or model_alias meets another detector's
    # (`{model="llama"}` beside `{model_alias="llama"}`: two series; adaptive's `{model="fleet"}` beside the
    # fleet detector's `{model_alias="adaptive"}`: one) were told apart by their input values only.
    rng = random.Random(seed)
    findings = _findings(rng)
    for f in findings[: rng.randint(0, len(findings))]:
        if f.labels:
            f.labels[0] = {
                "gpu": "0",
                rng.choice(["model", "model_alias"]): rng.choice(["fleet", "adaptive"]),
            }
    best: dict[frozenset[tuple[str, str]], float] = {}
    for f in findings:
        for i, labels in enumerate(f.labels):
            key = frozenset(output_labels(labels, f.query, f.detector).items())
            score = float(f.score[i])
            held = best.setdefault(key, score)
            if score > held or held != held:
                best[key] = score
    rows = exposition.chosen(findings)
    written = [frozenset(output_labels(f.labels[i], f.query, f.detector).items()) for _, f, i, _, _ in rows]
    assert len(written) == len(set(written)) and set(written) == set(best)
    for score, f, i, _, _ in rows:
        want = best[frozenset(output_labels(f.labels[i], f.query, f.detector).items())]
        assert score == want or (math.isnan(score) and math.isnan(want))


def test_the_bands_are_rendered_once_a_tick_per_content_type():
    collector, service, status = _served(7)
    first, kind = _body(service, status, "")
    again, _ = _body(service, status, "")
    om, om_kind = _body(service, status, "application/openmetrics-text;version=1.0.0")
    assert kind != om_kind and first == again and om.endswith(b"# EOF\n") and not first.endswith(b"# EOF\n")
    encoder, content_type = choose_encoder("")
    assert collector.render_bands(encoder, content_type) is collector.render_bands(encoder, content_type)
    before = collector.render_bands(encoder, content_type)
    collector.update([], [], TickStats())
    assert collector.render_bands(encoder, content_type) != before  # a new tick: rendered again


def test_a_tick_ending_while_a_scrape_renders_is_not_held_by_it_nor_served_the_old_body(monkeypatch):
    started, release = threading.Event(), threading.Event()
    real = exposition.render

    def slow(*args):
        started.set()
        release.wait(10)
        return real(*args)

    monkeypatch.setattr(exposition, "render", slow)
    collector = _collector(3)
    encoder, content_type = choose_encoder("")
    bodies = []
    scrape = threading.Thread(target=lambda: bodies.append(collector.render_bands(encoder, content_type)))
    scrape.start()
    assert started.wait(10)
    tick = threading.Thread(target=collector.update, args=([], [], TickStats()))
    tick.start()
    tick.join(5)
    tick_waited = tick.is_alive()
    release.set()
    scrape.join(10)
    tick.join(10)
    assert not tick_waited  # the tick's update did not wait for the render
    monkeypatch.setattr(exposition, "render", real)
    assert b"gpuwarden_anomaly_score{" in b"".join(bodies[0])  # the scrape got the tick it began with
    new = b"".join(collector.render_bands(encoder, content_type))
    assert b"gpuwarden_anomaly_score{" not in new  # not kept for the new one


@pytest.mark.parametrize("accept", ["", ACCEPTS[-1]])
def test_a_scrape_that_takes_gzip_gets_the_same_exposition_gzipped(accept):
    _, service, status = _served(11)
    plain, kind, plain_zipped = metrics_body(service, status, accept)
    zipped, zipped_kind, is_zipped = metrics_body(service, status, accept, "gzip, deflate")
    again, _, _ = metrics_body(service, status, accept, "gzip")
    plain, zipped, again = b"".join(plain), b"".join(zipped), b"".join(again)
    assert (plain_zipped, is_zipped, zipped_kind) == (False, True, kind)
    assert gzip.decompress(zipped) == plain == gzip.decompress(again)
    assert zipped[:2] == b"\x1f\x8b" and len(zipped) < len(plain)
