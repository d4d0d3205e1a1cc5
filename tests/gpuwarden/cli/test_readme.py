"""README.md against the CLI and the configuration model: what it tells an operator to type must parse.

Drift a new operator met: commands, options and settings the README kept after the code changed. These
tests read the README itself, so a command line or configuration example that stops matching fails here.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from gpuwarden.cli import app
from gpuwarden.config import GpuwardenConfig
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.startable import startable

runner = BuiltCliRunner()

README = Path(__file__).resolve().parents[3] / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"^```([a-z]*)\n(.*?)^```", TEXT, re.S | re.M)
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*\s+")
# Backticked names that look like settings but are not: Prometheus' own configuration block, and the
# placeholder README uses for "the field of a webhook item".
NOT_SETTINGS = {"alerting.alertmanagers", "webhooks[k].field"}
PACKAGES = ("alerting", "anomaly", "exporters", "gpuwarden")  # `alerting.notifiers.recorder` is a module


def readme_command_lines() -> list[str]:
    """Every ``gpuwarden ...`` line of the README's code blocks, without its comment, redirection or the
    shell commands chained after it; ``a | b | c`` alternatives of one group become one line each, and
    optional ``[...]`` parts are kept (their contents must parse too)."""
    lines = []
    for _, block in BLOCKS:
        for raw in block.splitlines():
            line = ENV_ASSIGNMENT.sub("", raw.split(" #")[0].strip())
            if not line.startswith("gpuwarden "):
                continue
            line = re.split(r"\s(?:>|&&|\|\|)\s", line)[0].replace("[", "").replace("]", "")
            first, *others = (part.strip() for part in line.split(" | "))
            group = " ".join(first.split()[:2])  # gpuwarden incidents: the alternatives are its commands
            lines.append(first)
            lines.extend(f"{group} {other}" for other in others)
    return lines


COMMANDS = readme_command_lines()


def test_the_readme_shows_command_lines_to_check() -> None:
    assert len(COMMANDS) >= 20 and "gpuwarden incidents show ID -o json" in COMMANDS


@pytest.mark.parametrize("line", COMMANDS, ids=COMMANDS)
def test_every_command_line_in_the_readme_parses(line: str) -> None:
    """Subcommands and option names as the README writes them; ``--help`` stops before values are used."""
    args = shlex.split(line)[1:]
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"{line}: {result.output}"


def _settings() -> set[str]:
    names: set[str] = set()

    def walk(prefix: str, model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            path = f"{prefix}{name}"
            names.add(path)
            for arg in (field.annotation, *typing.get_args(field.annotation)):
                for kind in (arg, *typing.get_args(arg)):
                    if isinstance(kind, type) and issubclass(kind, BaseModel):
                        walk(f"{path}.", kind)

    walk("", GpuwardenConfig)
    return names


SECTIONS = "|".join(GpuwardenConfig.model_fields)
MENTIONED = sorted(set(re.findall(rf"`((?:{SECTIONS})(?:\[k\])?\.[a-z_]+(?:\.[a-z_]+)*)`", TEXT)))


@pytest.mark.parametrize("name", MENTIONED, ids=MENTIONED)
def test_every_setting_the_readme_names_exists(name: str) -> None:
    path = name.replace("[k]", "")
    if name in NOT_SETTINGS or path in _settings():
        return
    assert path.startswith(PACKAGES) and importlib.util.find_spec(path) is not None, (
        f"README names `{name}`, which is no setting of gpuwarden's configuration"
    )


CONFIG_BLOCKS = [
    block
    for lang, block in BLOCKS
    if lang == "yaml"
    and isinstance(data := yaml.safe_load(block), dict)
    and set(data) <= set(GpuwardenConfig.model_fields)
]


def test_the_readme_has_configuration_examples() -> None:
    assert CONFIG_BLOCKS  # the webhooks example at least


@pytest.mark.parametrize("block", CONFIG_BLOCKS)
def test_every_configuration_example_in_the_readme_validates(
    block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in re.findall(r"\{env: ([A-Z_][A-Z0-9_]*)\}", block):
        monkeypatch.setenv(name, f"secret-{name.lower()}")
    path = tmp_path / "gpuwarden.yaml"
    # An example shows one section: the rest of a file serve and anomaly run start with comes from elsewhere.
    path.write_text(block if "anomaly" in yaml.safe_load(block) else startable(monkeypatch, block))
    monkeypatch.chdir(tmp_path)  # api.db and its journal, if the example leaves them default
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0 and "warning" not in result.output, result.output


def _anchors(markdown: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, blanks as ``-``,
    a repeated heading's ``-1``, ``-2``... (a ``#`` line inside a code block is no heading)."""
    text = re.sub(r"^```.*?^```", "", markdown.read_text(), flags=re.S | re.M)
    anchors: set[str] = set()
    repeats: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        repeats[slug] = repeats.get(slug, -1) + 1
        anchors.add(f"{slug}-{repeats[slug]}" if repeats[slug] else slug)
    return anchors


LINKS = sorted(set(re.findall(r"\]\(([^)\s]+)\)", TEXT)) - {""})


@pytest.mark.parametrize("link", [link for link in LINKS if not link.startswith(("http://", "https://"))])
def test_every_link_of_the_readme_leads_to_a_file_and_heading(link: str) -> None:
    """A link to another file of the repository names one that exists, and an anchor a heading of it: the
    Measured list's links named a heading benchmarks/README.md no longer had."""
    path, _, anchor = link.partition("#")
    target = README.parent / path if path else README
    assert target.exists(), f"README links {link}: there is no {path}"
    assert not anchor or anchor in _anchors(target), f"README links {link}: {target.name} has no such heading"
