"""The write-back's four families (``anomaly.writeback``) as a scrape's encoder writes them, without
building a prometheus_client sample per series.

A 10,000-GPU fleet writes about 320,000 series back, a million samples over the four families: built as
prometheus_client samples and encoded by its exposition, one scrape took 16 s of CPU, past Prometheus' default
10 s scrape timeout. ``render`` writes the same bytes itself: the family headers, the sample's name and each
label name as read from the encoder writing one sample, a ``str.format`` template per label shape, each
findings' numbers formatted at once, in chunks (``benchmarks/bench_scrape.py``: 1.5 s, and 225 MB more peak
memory rather than 590 MB).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, cast

import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from anomaly.detectors import Findings
from anomaly.thresholds import FloatArray

Encoder = Callable[[Any], bytes]
"""An exposition encoder as ``prometheus_client.exposition.choose_encoder`` gives it: anything with
``collect()`` in, the exposition's bytes out."""

_BATCH = 20_000  # rows whose lines are encoded at once: 4 MB of text a family at most, not 170 MB

Chunks = tuple[bytes, ...]
"""An exposition in parts, written one after the other (never joined: 170 MB at 10,000 GPUs)."""

_go = cast(Callable[[float], str], floatToGoString)  # a value as expositions write it (untyped upstream)

Row = tuple[float, Findings, int, "_Shape", tuple[str, ...]]
"""A row exported: its score, its findings and index there, its output labels' shape and the values of its
input labels in that shape's order."""


@dataclass(frozen=True, slots=True)
class _Shape:
    """The output labels of a findings' rows whose input labels come in one order: their names sorted (as
    expositions write them), and for each the input label it takes (None: ``for`` or the detector's)."""

    query: str
    detector: str
    names: tuple[str, ...]
    sources: tuple[str | None, ...]
    take: Callable[[Mapping[str, str]], tuple[str, ...]]  # the input-sourced values, in ``names``' order
    # Where its names hold ``model_alias``, which of ``model`` and ``model_alias`` is the detector's depends
    # on the input (``{model="llama"}`` or ``{model_alias="llama"}``): every output value, in ``names``'
    # order, from the input-sourced ones. None: the names tell where each comes from.
    full: Callable[[tuple[str, ...]], tuple[str, ...]] | None

    @classmethod
    def of(cls, keys: tuple[str, ...], query: str, detector: str) -> _Shape:
        """As ``output_labels`` makes them."""
        model = "model_alias" if "model" in keys else "model"
        named = {k: k for k in keys if k != "__name__"}
        named["for"], named[model] = None, None  # type: ignore[assignment]
        names = tuple(sorted(named))
        sources = tuple(named[k] for k in names)
        inputs = [k for k in sources if k is not None]
        take: Callable[[Mapping[str, str]], tuple[str, ...]]
        if len(inputs) > 1:
            take = itemgetter(*inputs)
        elif inputs:
            one = inputs[0]
            take = lambda labels: (labels[one],)  # noqa: E731 - itemgetter of one name gives no tuple
        else:
            take = lambda labels: ()  # noqa: E731
        full = None
        if "model_alias" in names:
            # The input values, then the two constants: each name's place in that.
            places = iter(range(len(inputs)))
            order = [
                next(places) if k is not None else len(inputs) + (name != "for")
                for name, k in zip(names, sources, strict=True)
            ]
            pick = itemgetter(*order)  # names hold for, model and model_alias: never one name
            constants = (query, detector)
            full = lambda values: pick(values + constants)  # noqa: E731
        return cls(query, detector, names, sources, take, full)

    def constant(self, name: str) -> str:
        """What the shape writes for a label of its own (``for``, or the detector's)."""
        return self.query if name == "for" else self.detector


def chosen(findings: Sequence[Findings]) -> list[Row]:
    """The rows exported. Series that differ only by ``__name__`` (a query over several metrics), that a
    source repeats, or whose input's ``model`` or ``model_alias`` meets another detector's (``_Shape.full``)
    would be one output series twice, which Prometheus keeps only one of: the most anomalous is kept, in the
    place of the first. Each row's output labels are told by its shape and values, not made: a dict and its
    sorted items per series were most of the work at 270,000 series."""
    kept: dict[tuple[object, ...], Row] = {}
    for f in findings:
        scores = f.score.tolist()
        shapes: dict[tuple[str, ...], _Shape] = {}
        for i, lab in enumerate(f.labels):
            keys = tuple(lab)
            shape = shapes.get(keys)
            if shape is None:
                shape = shapes[keys] = _Shape.of(keys, f.query, f.detector)
            values = shape.take(lab)
            full = shape.full
            key = (f.query, f.detector, shape.names, values) if full is None else (shape.names, full(values))
            value = float(scores[i])
            held = kept.get(key)
            if held is None or value > held[0] or held[0] != held[0]:  # a NaN held: any value replaces it
                kept[key] = (value, f, i, shape, values)
    return list(kept.values())


class _Families:
    """Families to hand an encoder (it asks for ``collect()``)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _probe(encoder: Encoder, name: str, doc: str, label: str = "a") -> tuple[str, str, str]:
    """How ``encoder`` writes a gauge family ``name`` of one sample labelled ``label``: its header lines, the
    sample's text before its labels, and ``label`` as it writes it."""
    family = Metric(name, doc, "gauge")
    family.add_sample(name, {label: ""}, 0.0)
    # Lines end at "\n" only: a quoted UTF-8 label name may hold a "\r" or "\u2028" (splitlines' ends).
    lines = [line + "\n" for line in encoder(_Families([family])).decode().split("\n")[:-1]]
    at = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    sample = lines[at]
    start = sample.index("{")
    return "".join(lines[:at]), sample[:start], sample[start + 1 : sample.rindex('=""}')]


def _escaped(value: str) -> str:
    """A label value as both formats write it (backslash, newline and double quote escaped)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def gzip_member(chunks: Chunks) -> Chunks:
    """``chunks`` as one gzip member, compressed at level 1 as they come."""
    member = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    return (b"".join([*map(member.compress, chunks), member.flush()]),)


def _braced(text: str) -> str:
    """``text`` as a literal part of a ``str.format`` template."""
    return text.replace("{", "{{").replace("}", "}}")


def _go_strings(values: FloatArray | None, cap: float | None = None) -> list[str | None] | None:
    """Each value as expositions write it (``floatToGoString``), None where not finite if ``cap`` is None
    (a band left out), capped at ``cap`` otherwise (a score, NaN kept); ``repr`` for all but the few that
    Go writes otherwise (infinities, NaN, 1e6 to 1e16)."""
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if cap is not None:
        arr = np.where(arr > cap, cap, arr)
    out: list[str | None] = list(map(repr, arr.tolist()))
    finite = np.isfinite(arr)
    for i in np.flatnonzero(~finite | ((arr >= 1e6) & (arr < 1e16))).tolist():
        out[i] = _go(float(arr[i])) if cap is not None or finite[i] else None
    return out


def render(encoder: Encoder, rows: list[Row], bands: Sequence[tuple[str, str]], cap: float) -> Chunks:
    """``bands`` (name and help of each family, the score's first, capped at ``cap``) of ``rows`` as
    ``encoder`` writes them, without its closing ``# EOF``, in chunks of ``_BATCH`` rows' lines encoded as
    they come (a 10,000-GPU fleet's lines are 220 MB of strings, its body 170 MB: joined whole, text and
    bytes at once, the render peaked 590 MB over the service)."""
    probes = [_probe(encoder, name, doc) for name, doc in bands]
    names: dict[str, str] = {}  # label names as the encoder writes them
    templates: dict[int, str] = {}  # by shape: its labels' text, "{}" where an input's value goes
    strings: dict[int, tuple[list[str | None] | None, ...]] = {}  # by findings: its values as written
    lines: list[list[str]] = [[] for _ in bands]
    score_at, yhat_at, lower_at, upper_at = (prefix for _, prefix, _ in probes)
    score_lines, yhat_lines, lower_lines, upper_lines = lines
    encoded: list[list[bytes]] = [[header.encode()] for header, _, _ in probes]
    for n, (_, f, i, shape, values) in enumerate(rows, 1):
        if not n % _BATCH:
            _flush(lines, encoded)
        template = templates.get(id(shape))
        if template is None:
            parts = []
            for name, source in zip(shape.names, shape.sources, strict=True):
                written = names.get(name)
                if written is None:
                    written = names[name] = _probe(encoder, bands[0][0], "", name)[2]
                text = "{}" if source is not None else _braced(_escaped(shape.constant(name)))
                parts.append(f'{_braced(written)}="{text}"')
            template = templates[id(shape)] = "{{" + ",".join(parts) + "}}"  # rows keep their shapes alive
        joined = "".join(values)
        plain = not ("\\" in joined or "\n" in joined or '"' in joined)
        labels = template.format(*(values if plain else map(_escaped, values)))
        written_values = strings.get(id(f))
        if written_values is None:
            written_values = strings[id(f)] = (
                _go_strings(f.score, cap),
                _go_strings(f.yhat),
                _go_strings(f.lower),
                _go_strings(f.upper),
            )
        score, yhat, lower, upper = written_values
        score_lines.append(f"{score_at}{labels} {score[i]}\n")  # type: ignore[index]
        if yhat is not None and yhat[i] is not None:
            yhat_lines.append(f"{yhat_at}{labels} {yhat[i]}\n")
        if lower is not None and lower[i] is not None:
            lower_lines.append(f"{lower_at}{labels} {lower[i]}\n")
        if upper is not None and upper[i] is not None:
            upper_lines.append(f"{upper_at}{labels} {upper[i]}\n")
    _flush(lines, encoded)
    return tuple(chunk for family in encoded for chunk in family)


def _flush(lines: list[list[str]], encoded: list[list[bytes]]) -> None:
    """Each family's lines so far encoded onto its chunks, and let go."""
    for family, chunks in zip(lines, encoded, strict=True):
        if family:
            chunks.append("".join(family).encode())
            family.clear()
