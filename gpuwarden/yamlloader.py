"""The YAML loader of the configuration and inventory files: PyYAML's safe loader (libyaml's when PyYAML was
built with it), reading numbers as gpuwarden reads them everywhere else."""

from __future__ import annotations

import re
from typing import Any

import yaml

_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DECIMAL_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")


class NumbersAsWrittenLoader(_BASE_LOADER):  # type: ignore[misc]  # PyYAML's loaders are untyped
    """PyYAML's safe loader, but a number is read only as gpuwarden reads one everywhere else
    (``gpuwarden.numerals``: decimal digits, as Prometheus' and kubectl's flags): YAML 1.1's other ways to
    write one (``0x1F90`` hex, ``01234`` octal, ``9_400``, ``1:30`` base 60, ``0b1``) are kept as the text
    written, which the setting then reads as the command line would (``01234`` is 1234) or refuses naming
    it. YAML read ``port: 01234`` as 668 and ``announce_delay_seconds: 1:30`` as 90, silently, where the
    same text quoted was refused."""


def _int_as_written(loader: Any, node: yaml.ScalarNode) -> int | str:
    text = loader.construct_scalar(node)
    return int(text) if _DECIMAL_INT.fullmatch(text) else text


def _float_as_written(loader: Any, node: yaml.ScalarNode) -> float | str:
    text = loader.construct_scalar(node)
    return text if "_" in text or ":" in text else float(loader.construct_yaml_float(node))


NumbersAsWrittenLoader.add_constructor("tag:yaml.org,2002:int", _int_as_written)
NumbersAsWrittenLoader.add_constructor("tag:yaml.org,2002:float", _float_as_written)
