"""PNG charts of the anomalous series."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from matplotlib.image import imread

from alerting.notifiers.base import ChartSeries
from alerting.notifiers.charts import ANOMALY_COLOUR, render_chart
from tests.alerting.notifiers.incidents import T0, gpu_temperature


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def anomaly_pixels(png: bytes) -> int:
    rgb = imread(io.BytesIO(png), format="png")[:, :, :3]
    target = np.array([int(ANOMALY_COLOUR[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=2) < 0.03).sum())


def test_chart_is_a_png_of_the_requested_size() -> None:
    assert png_size(render_chart([gpu_temperature()], "P2 GPU 3 hot")) == (800, 350)


def test_points_outside_the_expected_band_are_drawn_in_red() -> None:
    assert anomaly_pixels(render_chart([gpu_temperature(anomalous=True)], "hot")) > 50
    assert anomaly_pixels(render_chart([gpu_temperature(anomalous=False)], "normal")) == 0


def test_several_series_share_one_chart() -> None:
    other = gpu_temperature().model_copy(update={"name": "DCGM_FI_DEV_POWER_USAGE", "unit": "W"})
    png = render_chart([gpu_temperature(), other], "two")
    assert png != render_chart([gpu_temperature()], "two")


@pytest.mark.parametrize(
    "series",
    [
        ChartSeries(name="x", times=(T0,), values=(1.0, 2.0)),
        ChartSeries(name="x", times=(), values=()),
        ChartSeries(name="x", times=(T0,), values=(1.0,), lower=(0.0, 1.0), upper=(2.0,)),
    ],
    ids=["lengths-differ", "empty", "band-length"],
)
def test_malformed_series_are_refused(series: ChartSeries) -> None:
    with pytest.raises(ValueError, match="series 'x'"):
        render_chart([series], "bad")


def test_nothing_to_draw_is_refused() -> None:
    with pytest.raises(ValueError, match="no series"):
        render_chart([], "empty")


def test_no_band_at_a_point_is_not_an_anomaly_there() -> None:
    """NaN in the band: the anomaly service had not scored that point yet."""
    series = gpu_temperature(anomalous=False)
    nan_band = tuple(float("nan") for _ in series.values)
    hidden = series.model_copy(update={"values": tuple(v + 100 for v in series.values), "lower": nan_band})
    assert anomaly_pixels(render_chart([hidden.model_copy(update={"upper": nan_band})], "no band")) == 0


def test_dollars_in_titles_names_and_units_are_drawn_as_they_are_not_as_math() -> None:
    # As mathtext "$\nope$" is an unknown symbol: the chart failed (a job named "cost-$\nope$", a label).
    odd = gpu_temperature().model_copy(update={"name": r"gpu{job='$\nope$'}", "unit": r"$\nope$"})
    assert png_size(render_chart([odd], r"P1 training job cost-$\nope$ stopped")) == (800, 350)


def test_a_title_longer_than_the_chart_is_cut_rather_than_squeezing_the_axes_away() -> None:
    # With pytest's warnings as errors, matplotlib's "axes sizes collapsed to zero" fails this.
    assert png_size(render_chart([gpu_temperature()], "P0 " + "inference service svc-0001, " * 12)) == (
        800,
        350,
    )
