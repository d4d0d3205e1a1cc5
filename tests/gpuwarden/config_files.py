"""What the config tests share: a config file written from YAML text."""

from pathlib import Path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(text)
    return path
