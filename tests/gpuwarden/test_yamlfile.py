import os
import time
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from gpuwarden import yamlfile
from gpuwarden.cli import app
from gpuwarden.errors import ConfigError
from gpuwarden.yamlfile import read_yaml

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)  # nine lines that expand to 10^9 values


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("1: 2\n", 1, "the key 1 is not a string (YAML reads it as int); quote it"),
        ("api:\n  port: 1\n  true: 2\n", 3, "the key true is not a string"),
        ("api:\n  port: 1\napi:\n  db: x\n", 3, "duplicate key 'api' (first at line 1)"),
        ("api:\n  port: 9700\n  port: 9701\n", 3, "duplicate key 'port' (first at line 2)"),
        ("a: &a [*a]\n", 1, "a recursive alias"),
        ("x: 1\nb: &b {c: [*b]}\n", 2, "a recursive alias"),
        (BOMB, 6, "its aliases expand to 1,111,111 values"),
        ("a: " + "[" * 101 + "]" * 101 + "\n", 1, "nested deeper than 100 levels"),
    ],
    ids=[
        "int-key",
        "bool-key",
        "duplicate-section",
        "duplicate-field",
        "alias-in-itself",
        "alias-cycle",
        "bomb",
        "deep",
    ],
)
def test_yaml_no_reader_can_take_is_refused_at_its_line_before_it_is_built(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert time.monotonic() - started < 2  # the bomb is measured, not expanded
    assert (info.value.path, info.value.line) == (str(path), line) and words in str(info.value)


def test_config_validate_names_the_file_and_line_of_a_key_that_is_not_a_string(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("1: 2\n")
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:1: invalid YAML: the key 1 is not a string" in " ".join(result.output.split())


def test_merge_keys_override_without_counting_as_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nmore: *b\n")
    data, positions = read_yaml(path)
    assert data["other"] == {"x": 1, "y": 3} and data["more"] == {"x": 1, "y": 2}
    assert positions["other", "y"] == 4 and positions["more",] == 5


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_or_fifo_is_refused_without_reading_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would wait for a writer
    for path in (Path("/dev/zero"), fifo):
        with pytest.raises(ConfigError, match="not a regular file"):
            read_yaml(path)


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlfile, "MAX_FILE_BYTES", 1024)
    path = tmp_path / "c.yaml"
    path.write_text("a: " + "x" * 1024 + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        read_yaml(path)
    path.write_text("a: " + "x" * 1000 + "\n")
    assert read_yaml(path)[0] == {"a": "x" * 1000}


class Bounded(BaseModel):
    name: Annotated[str, Field(min_length=1)] = "n"
    code: Annotated[str, Field(min_length=3, max_length=5)] = "abc"
    labels: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    matchers: list[str] = Field(["a=b"], min_length=1, max_length=2)
    spare: dict[Annotated[str, Field(min_length=1)], Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict
    )
    days: float = Field(1, gt=0, le=36525.0)
    ratio: float = Field(0.5, lt=1)


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("name: ''", "name", "empty; write a value"),
        ("labels: [a, '']", "labels[1]", "empty; write a value or remove the item"),
        ("spare: {'': 3}", "spare", "key '': empty; write a name"),
        ("spare: {c: -3}", "spare.c", "-3 is less than 0, the least allowed; write 0 or more"),
        ("code: ab", "code", "'ab' is shorter than 3 characters; write at least 3"),
        ("code: abcdef", "code", "longer than 5 characters; shorten it"),
        ("matchers: []", "matchers", "empty; list at least 1"),
        ("matchers: [a, b, c]", "matchers", "3 items, more than 2; remove 1"),
        ("days: 0", "days", "0 is not more than 0; write more than 0"),
        ("days: 36600", "days", "36600 is more than 36525, the most allowed; write 36525 or less"),
        ("ratio: 1.5", "ratio", "1.5 is not less than 1; write less than 1"),
    ],
    ids=[
        *("empty-string", "empty-list-item", "empty-key", "below-ge", "too-few-characters"),
        *("too-many-characters", "empty-list", "too-many-items", "not-above-gt", "past-le", "not-below-lt"),
    ],
)
def test_a_broken_constraint_says_what_to_write_at_the_path_every_error_uses(
    tmp_path: Path, text: str, field: str, message: str
) -> None:
    path = tmp_path / "data.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        yamlfile.load_yaml_model(path, Bounded)
    assert (info.value.field, info.value.message, info.value.line) == (field, message, 1)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("api:\n  token: {ENV: X}\n", "api.token: is a mapping, not text; a secret from the environment is"),
        ("api:\n  token: {env: X, default: hunter2}\n", "api.token: is a mapping, not text; a secret"),
        ("api:\n  listen_address: [1, 2]\n", "api.listen_address: is [1, 2], a list, not text; write one"),
    ],
    ids=["env-in-capitals", "env-with-a-default", "list"],
)
def test_a_mapping_or_list_where_text_belongs_says_what_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, said: str
) -> None:
    # pydantic's "Input should be a valid string" said neither what was wrong nor how a secret is written.
    monkeypatch.setenv("X", "x")
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and said in output, output
    assert "hunter2" not in output  # a mapping is not shown: it may hold the secret


def test_a_second_yaml_document_is_named_with_what_to_do(tmp_path: Path) -> None:
    # libyaml's "but found another document" alone said neither what nor what to write.
    path = tmp_path / "c.yaml"
    path.write_text("api: {port: 9000}\n---\napi: {port: 9001}\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert info.value.line == 2 and "a second document (after a `---` line)" in str(info.value)
    assert "remove the `---`" in str(info.value)
    path.write_text("---\napi: {port: 9000}\n")  # one document, marked: read
    assert read_yaml(path)[0] == {"api": {"port": 9000}}


@pytest.mark.parametrize(
    "text", ["api:\n\tport: 8080\n", "api:\n  port: 8080\n\tdb: x.db\n"], ids=["first-key", "later-key"]
)
def test_a_line_indented_with_a_tab_is_named_as_such(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert "indented with a tab" in str(info.value) and "spaces" in str(info.value), str(info.value)
    assert info.value.line == text.count("\n", 0, text.index("\t")) + 1


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [
        (
            "api:\n  port: 8080\n  allowed_hosts: [localhost\n",
            3,
            "did not find expected ',' or ']' (while parsing a flow sequence that starts at line 3)",
        ),
        (
            'api:\n  db: "gw.db\n  port: 8080\n',
            2,
            "found unexpected end of stream (while scanning a quoted scalar that starts at line 2)",
        ),
        (
            "api: {port: 8080\nalerting:\n  retention_days: 1\n",
            2,
            "did not find expected ',' or '}' (while parsing a flow mapping that starts at line 1)",
        ),
    ],
    ids=["unclosed-bracket", "unclosed-quote", "unclosed-brace"],
)
def test_an_unclosed_bracket_or_quote_is_named_where_it_opens_not_past_the_files_end(
    tmp_path: Path, text: str, line: int, said: str
) -> None:
    # Found missing at the end of the file, it was said at a line past the last (c.yaml:4 of a 3-line file),
    # without the line where the `[` or the quote opened.
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert info.value.line == line and f"invalid YAML: {said}" in str(info.value), str(info.value)


@pytest.mark.parametrize(("text", "data"), [("null\n", None), ("~\n", None), ("hello\n", "hello")], ids=str)
def test_a_document_that_is_one_scalar_reads_as_that_value(tmp_path: Path, text: str, data: object) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)  # the readers then say what they expected instead (a mapping); no traceback
    assert read_yaml(path)[0] == data


def test_an_unreadable_file_is_said_with_what_its_caller_takes_and_a_config_file_by_its_reason_alone(
    tmp_path: Path,
) -> None:
    """``anomaly evaluate nab --windows`` said why the file could not be read but not what to give; the hint
    is the caller's, so a configuration file's refusal (``config validate``, ``serve``) stays as it was."""
    missing = tmp_path / "w.json"
    with pytest.raises(ConfigError) as config:
        read_yaml(missing)
    assert str(config.value) == f"{missing}: cannot read file: No such file or directory"
    with pytest.raises(ConfigError) as given:
        yamlfile.read_text_file(missing, give="give the windows file")
    assert given.value.message == "cannot read file: No such file or directory; give the windows file"


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [
        ("api:\n  port: 1\x00\n", 2, "character U+0000 at column 10"),
        (
            "api:\n  port: 1\n# é é é é\nalerting:\n  quiet_period_seconds: 5\x01\n",
            5,
            "character U+0001 at column 26",
        ),
    ],
    ids=["nul", "after-non-ascii"],
)
def test_a_control_character_is_named_at_its_line_not_at_a_position(
    tmp_path: Path, text: str, line: int, said: str
) -> None:
    # A control character (a corrupted file, a paste) was said `in "<unicode string>", position 50`, no
    # line; libyaml counts that position in bytes, so a line from it was off after non-ASCII text.
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert info.value.line == line
    assert f"invalid YAML: {said}: control characters are not allowed; remove it" in str(info.value)
    assert "unicode string" not in str(info.value)
