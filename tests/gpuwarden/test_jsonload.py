"""Large JSON decoded with the cyclic garbage collector paused: the same answers as ``json.loads``."""

from __future__ import annotations

import codecs
import gc
import json
import math

import pytest

from gpuwarden import jsonload
from gpuwarden.jsonload import collector_paused, loads_without_gc

PROM = (
    b'{"status":"success","data":{"resultType":"matrix",'
    b'"result":[{"metric":{"gpu":"0"},"values":[[1.5,"NaN"]]}]}}'
)


@pytest.mark.parametrize(
    "document",
    [
        PROM,
        PROM.decode(),
        codecs.BOM_UTF8 + PROM,
        PROM.decode().encode("utf-16"),
        b'{"n": 123456789012345678901234567890}',  # past 64 bits: orjson would read a float
    ],
    ids=["bytes", "str", "bom", "utf-16", "big-int"],
)
def test_it_reads_what_json_loads_reads(document):
    assert loads_without_gc(document) == json.loads(document)


def test_a_nan_literal_is_read_as_json_loads_reads_it():
    assert math.isnan(loads_without_gc(b'{"v": NaN}')["v"])


@pytest.mark.parametrize("document", [b"<html>504 Gateway Time-out</html>", b'{"a": ', b"\xff\xfe\xfa", b""])
def test_what_json_loads_refuses_is_a_value_error_and_the_collector_is_on_again(document):
    with pytest.raises(ValueError):
        json.loads(document)
    with pytest.raises(ValueError):
        loads_without_gc(document)
    assert gc.isenabled()


def test_the_collector_is_off_while_decoding_and_on_again_after(monkeypatch):
    seen = []
    real = jsonload.json.loads

    def spy(data):
        seen.append(gc.isenabled())
        return real(data)

    monkeypatch.setattr(jsonload.json, "loads", spy)
    assert loads_without_gc(b"[1]") == [1]
    assert seen == [False]
    assert gc.isenabled()


def test_a_pause_leaves_a_collector_that_was_off_off():
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_pause_ended_by_an_error_turns_the_collector_on_again():
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
