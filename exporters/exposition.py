"""Render metric families to the Prometheus text format (0.0.4) and to OpenMetrics 1.0.

A scrape only returns bytes rendered here after a collection, so it never waits on NVML. The renderer
is our own because dcgm-exporter's counters (``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``) have no ``_total``
suffix: the text format keeps them as counters under NVIDIA's exact names, while OpenMetrics, which
requires ``_total`` on counter samples, declares them ``unknown`` with the same sample names.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import Metric
from prometheus_client.utils import floatToGoString

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


LabelKey = tuple[tuple[str, str], ...]


class LabelTexts:
    """The label texts of the last text render, for the next one to reuse.

    Formatting label sets was most of a render's cost, and they rarely change between collections. A label
    dict the collector kept from the last collection (a GPU's NVLink and clock-reason label sets, see
    ``Gpu.label_sets``) is found by identity; a new dict with the same contents (a GPU's labels, rebuilt each
    collection) by its contents. Only the label sets the last render used are kept, so the memory follows
    the fleet, not its history."""

    def __init__(self) -> None:
        self.last: dict[LabelKey, str] = {}
        self.last_by_id: dict[int, tuple[Mapping[str, str], str]] = {}


class _LabelCache:
    """Formats each label dict once per render, taking the text from the last render where it can."""

    def __init__(self, texts: LabelTexts | None) -> None:
        self._last = texts.last if texts is not None else {}
        self._last_by_id = texts.last_by_id if texts is not None else {}
        self.by_id: dict[int, tuple[Mapping[str, str], str]] = {}
        self.used: dict[LabelKey, str] = {}

    def format(self, labels: Mapping[str, str]) -> str:
        hit = self.by_id.get(id(labels))
        if hit is not None and hit[0] is labels:
            return hit[1]
        hit = self._last_by_id.get(id(labels))
        if hit is not None and hit[0] is labels:
            text = hit[1]
        else:
            key = tuple(labels.items())
            text = self._last.get(key) or _format(labels)
            self.used[key] = text
        self.by_id[id(labels)] = (labels, text)
        return text


def _format(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in labels.items()) + "}"


def _value(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _header_name(metric: Metric, openmetrics: bool) -> tuple[str, str]:
    """(name on HELP/TYPE lines, type) for one family in the chosen format."""
    name, typ = metric.name, metric.type
    if typ == "counter":
        suffixed = bool(metric.samples) and metric.samples[0].name == name + "_total"
        if openmetrics:
            return (name, "counter") if suffixed else (name, "unknown")
        return (name + "_total", typ) if suffixed else (name, typ)
    return name, typ


def render(
    families: Iterable[Metric], *, openmetrics: bool = False, texts: LabelTexts | None = None
) -> bytes:
    """Render families (those without samples are left out) in the text format or in OpenMetrics; with
    ``texts``, label texts of the last text render are reused, and this one's are kept if it is one."""
    labels = _LabelCache(texts)
    out: list[str] = []
    append = out.append
    for metric in families:
        if not metric.samples:
            continue
        name, typ = _header_name(metric, openmetrics)
        append(f"# HELP {name} {_escape_help(metric.documentation)}\n# TYPE {name} {typ}\n")
        for sample in metric.samples:
            append(f"{sample.name}{labels.format(sample.labels)} {_value(float(sample.value))}\n")
    if openmetrics:
        append("# EOF\n")
    elif texts is not None:  # a reader of the old tables still finds right texts in them
        texts.last, texts.last_by_id = labels.used, labels.by_id
    return "".join(out).encode("utf-8")


def merge(batches: Sequence[Sequence[Metric]]) -> list[Metric]:
    """Merge families of the same name from several collectors (one per host) into one family each."""
    if len(batches) == 1:
        return list(batches[0])
    merged: dict[str, Metric] = {}
    for batch in batches:
        for metric in batch:
            into = merged.get(metric.name)
            if into is None:
                into = Metric(metric.name, metric.documentation, metric.type)
                merged[metric.name] = into
            into.samples.extend(metric.samples)
    return list(merged.values())


@dataclass
class Exposition:
    """One rendered snapshot: text bytes now, OpenMetrics bytes on first request."""

    families: list[Metric]
    text: bytes
    _openmetrics: bytes | None = None
    _gzipped: dict[bool, bytes] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    texts: LabelTexts = field(default_factory=LabelTexts, repr=False)

    @classmethod
    def build(cls, families: list[Metric], texts: LabelTexts | None = None) -> Exposition:
        """Render the text format at once (the common scrape), reusing ``texts`` from the last build."""
        texts = texts if texts is not None else LabelTexts()
        return cls(families, render(families, texts=texts), texts=texts)

    @property
    def openmetrics(self) -> bytes:
        """OpenMetrics bytes, rendered once."""
        with self._lock:
            if self._openmetrics is None:
                self._openmetrics = render(self.families, openmetrics=True, texts=self.texts)
            return self._openmetrics

    def ready(self, *, openmetrics: bool, gzipped: bool) -> bytes | None:
        """The body in that format if it is already made, else None (``body`` makes it)."""
        if gzipped:
            return self._gzipped.get(openmetrics)
        return self._openmetrics if openmetrics else self.text

    def body(self, *, openmetrics: bool, gzipped: bool) -> bytes:
        """The body in that format, made once per snapshot (off the event loop: it may take a while)."""
        if gzipped:
            return self.gzipped(openmetrics=openmetrics)
        return self.openmetrics if openmetrics else self.text

    def gzipped(self, *, openmetrics: bool = False) -> bytes:
        """The chosen format gzip-compressed, compressed once per snapshot."""
        body = self.openmetrics if openmetrics else self.text
        with self._lock:
            if openmetrics not in self._gzipped:
                self._gzipped[openmetrics] = gzip.compress(body, compresslevel=6)
            return self._gzipped[openmetrics]


EMPTY = Exposition([], b"")
