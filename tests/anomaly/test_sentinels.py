from __future__ import annotations

import math

import numpy as np
import pytest

from anomaly.sentinels import blank_not_available
from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.sources import Frame

# As a Prometheus answer spells them; each parses to the float64 the exporter's integer became.
NOT_AVAILABLE = {
    "nvml uint32 -1": "4294967295",
    "nvml uint64 -1": "18446744073709551615",
    "dcgm int32 blank": "2147483632",
    "dcgm int32 not supported": "2147483634",
    "dcgm int64 blank": "9223372036854775792",
    "dcgm int64 not supported": "9223372036854775794",
    "dcgm fp64 blank": "140737488355328",
    "dcgm fp64 not found": "1.40737488355329e+14",
    # Prometheus' spelling of infinite samples (a division by 0, an exporter's float('inf')): no reading.
    "plus infinity": "+Inf",
    "minus infinity": "-Inf",
}
REAL = {
    "just under uint32 -1": "4294967294",
    "just under the int32 blank": "2147483631",
    "a large counter": "1e19",
    "just under the fp64 blank": "140737488355327.5",
    "negative": "-4294967295",
}


@pytest.mark.parametrize("text", NOT_AVAILABLE.values(), ids=NOT_AVAILABLE.keys())
def test_an_nvml_or_dcgm_not_available_value_becomes_a_gap(text):
    values = np.array([[1.0, float(text), 3.0]])
    out, count = blank_not_available(values)
    assert count == 1
    assert math.isnan(out[0, 1]) and out[0, 0] == 1.0 and out[0, 2] == 3.0
    assert values[0, 1] == float(text)  # the source's frame is not changed


@pytest.mark.parametrize("text", REAL.values(), ids=REAL.keys())
def test_a_real_value_next_to_a_not_available_one_is_kept(text):
    values = np.array([[float(text), 5.0]])
    out, count = blank_not_available(values)
    assert count == 0
    assert out[0, 0] == float(text)


def test_a_counter_reading_uint32_minus_one_once_is_a_gap_not_a_jump_and_a_reset():
    index, counters = SeriesIndex(), CounterRates()
    labels = [{"gpu": "0"}]
    rates = []
    for i, value in enumerate([100.0, 130.0, float(0xFFFFFFFF), 190.0, 220.0]):
        at = 30.0 * (i + 1)
        frame = Frame(
            "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", labels, np.array([at]), np.array([[value]])
        )
        view = build_view(
            [Frame(frame.query, labels, frame.timestamps, frame.values, "counter")], index, counters, at
        )
        rates.append(float(view.steps[0].value[0]))
        assert view.not_available == ({frame.query: 1} if i == 2 else {})
    assert math.isnan(rates[0]) and math.isnan(rates[2])
    assert rates[1] == pytest.approx(1.0) and rates[4] == pytest.approx(1.0)
    assert rates[3] == pytest.approx(1.0)  # 190 - 130 over the 60 s since the last real sample
