"""PNG charts of an incident's anomalous series, drawn with matplotlib's Agg canvas (no display, no pyplot).

Figures are built with ``matplotlib.figure.Figure`` and ``FigureCanvasAgg`` directly, so there is no global
pyplot state and charts can be rendered from the dispatcher thread.

Every text drawn (title, legend, unit) comes from incidents and labels, so it is drawn literally: with neither
mathtext nor TeX, ``$x$`` is not typeset as math, and ``$\nope$`` does not fail the chart.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alerting.notifiers.base import ChartSeries, Notification
from alerting.notifiers.blocks import escape, truncate

logger = logging.getLogger("alerting.notifiers.slack")  # logged as the notifier's, as before the move

LINE_COLOURS = ("#1f77b4", "#9467bd", "#2ca02c", "#8c564b", "#17becf")
ANOMALY_COLOUR = "#d62728"
BAND_COLOUR = "#7f7f7f"
TITLE_MAX = 110  # characters a title keeps: a longer one collapsed the 8-inch chart's axes to nothing


def chart_filename(n: Notification) -> str:
    """The name of the incident's chart in Slack: a retry looks for it in the thread."""
    return f"{n.incident_id}.png"


class SeriesSource(Protocol):
    """Finds the series that show an incident's anomaly (a PromQL range, ...); asked at delivery time."""

    def series_for(self, notification: Notification) -> Sequence[ChartSeries]:
        """The series to chart; empty when there is nothing to draw."""
        ...


def _outside_band(s: ChartSeries) -> list[int]:
    """Indices of points outside the expected band (the anomalous points)."""
    if s.lower is None and s.upper is None:
        return []
    out = []
    for i, value in enumerate(s.values):
        low = s.lower[i] if s.lower is not None else -math.inf
        high = s.upper[i] if s.upper is not None else math.inf
        # NaN: no band at that point (the anomaly service had not scored it yet), so nothing to be outside of.
        if (not math.isnan(low) and value < low) or (not math.isnan(high) and value > high):
            out.append(i)
    return out


def _days(times: Sequence[datetime]) -> list[float]:
    """Matplotlib's date numbers: days since its default epoch, 1970-01-01 UTC."""
    return [t.timestamp() / 86400.0 for t in times]


def render_chart(
    series: Sequence[ChartSeries], title: str, *, width: float = 8.0, height: float = 3.5
) -> bytes:
    """Draw the series (with expected band and anomalous points in red) as a PNG."""
    if not series:
        raise ValueError("nothing to draw: no series")
    for s in series:
        if len(s.times) != len(s.values) or not s.times:
            raise ValueError(f"series {s.name!r}: times and values must be non-empty and of equal length")
        for band in (s.lower, s.upper):
            if band is not None and len(band) != len(s.values):
                raise ValueError(f"series {s.name!r}: band length differs from values")
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, s in enumerate(series):
        line_colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        x = _days(s.times)
        if s.lower is not None and s.upper is not None:
            ax.fill_between(x, s.lower, s.upper, color=BAND_COLOUR, alpha=0.2, linewidth=0)
        ax.plot(x, s.values, color=line_colour, linewidth=1.5, label=s.name)
        anomalous = _outside_band(s)
        if anomalous:
            ax.scatter(
                [x[j] for j in anomalous],
                [s.values[j] for j in anomalous],
                color=ANOMALY_COLOUR,
                s=18,
                zorder=3,
            )
    ax.xaxis_date(tz=UTC)
    units = {s.unit for s in series if s.unit}
    if len(units) == 1:
        ax.set_ylabel(units.pop(), parse_math=False, usetex=False)
    short = title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"
    ax.set_title(short, fontsize=10, loc="left", parse_math=False, usetex=False)
    ax.grid(True, alpha=0.3)
    for text in ax.legend(loc="upper left", fontsize=8).get_texts():
        text.set_parse_math(False)
        text.set_usetex(False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def chart_series(n: Notification, source: SeriesSource | None) -> Sequence[ChartSeries]:
    """Series carried by the notification, else read from ``source`` (never raises)."""
    if n.series or source is None:
        return n.series
    try:
        return source.series_for(n)
    except Exception:  # a chart is optional: a broken source must not block the message
        logger.exception("chart series lookup failed incident_id=%s", n.incident_id)
        return ()


def shares_file(filename: str) -> Callable[[Any], bool]:
    """Whether a message Slack returned is a file share of ``filename`` (a chart attached before)."""

    def shares(message: Any) -> bool:
        files = message.get("files") if isinstance(message, dict) else None
        return isinstance(files, list) and any(
            isinstance(f, dict) and f.get("name") == filename for f in files
        )

    return shares


def chart_upload(n: Notification, series: Sequence[ChartSeries]) -> dict[str, Any] | None:
    """The incident's chart as ``files_upload_v2``'s arguments but where (its content, filename, title and
    alternative text); None when it cannot be drawn (logged)."""
    try:
        png = render_chart(series, f"{n.priority} {n.title}")
    except ValueError as exc:
        logger.warning("chart not drawn incident_id=%s error=%s", n.incident_id, exc)
        return None
    names = ", ".join(s.name for s in series)
    return {
        "content": png,
        "filename": chart_filename(n),
        "title": truncate(escape(f"Anomalous series: {names}"), 250),
        "alt_txt": f"Chart of {names} for incident {n.incident_id}"[:1000],
    }
