"""``gpuwarden config validate`` with a bad value set aside: its section's other problems still listed, and
no later check run on the value's default instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.cli.config_problems import problem_lines
from tests.gpuwarden.startable import startable

runner = BuiltCliRunner()


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param(
            "anomaly:\n  detectors: [adaptive]\n  infer_every_seconds: 30s\n  queries:\n"
            "    - {name: up, expr: 'sum(up'}\n",
            [3, 5],
            id="bad-value-and-unbalanced-query",
        ),
        pytest.param(
            "api:\n  token: {env: TEST_UNSET_API_TOKEN}\n  db: /nonexistent/gpuwarden/x.db\n",
            [2, 3],
            id="unset-token-and-store-directory",
        ),
    ],
)
def test_config_validate_lists_a_second_problem_of_a_section_with_a_bad_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, lines: list[int]
) -> None:
    """A section with one bad value was left out of every later check, so its other problems (an unclosed
    query, a store directory that does not exist) showed only once the first was fixed."""
    monkeypatch.delenv("TEST_UNSET_API_TOKEN", raising=False)
    path = tmp_path / "two.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == lines, result.stderr


def test_a_check_reading_a_bad_value_is_left_out_rather_than_run_on_its_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query's step check reads infer_every_seconds: run on its default (30) it would warn that a step
    of 45 is longer than the tick, which the file (60, written as 60s) does not say."""
    path = tmp_path / "one.yaml"
    path.write_text(
        startable(monkeypatch, "anomaly:\n  infer_every_seconds: 60s\n")
        .replace("anomaly:\n  detectors", "  detectors")
        .replace("expr: up}", "expr: up, step_seconds: 45}")
    )
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [2], result.stderr
    assert "warning" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("sim", "line"),
    [
        pytest.param("  clusters: x\n  nodes_per_rack: 2\n", 2, id="clusters"),
        pytest.param("  clusters: 2\n  racks_per_cluster: -1\n  nodes_per_rack: 1\n", 3, id="racks"),
    ],
)
def test_a_bad_sim_size_is_not_compared_with_the_exporters_fleet_on_its_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: str, line: int
) -> None:
    """One bad size of ``sim:`` stood in by its default (clusters 1) and was checked against
    ``exporter.simulate``: "2 nodes ... (clusters 1 x ...)" though the file says no such fleet."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")  # serve's: the file is about its sim section
    path = tmp_path / "sim.yaml"
    path.write_text(f"sim:\n{sim}exporter:\n  simulate: 4x8\nalerting:\n  sim_inventory: true\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [line], result.stderr


@pytest.mark.parametrize("journal", ["[1]", '"a\\0b"'], ids=["not-a-string", "nul"])
def test_a_bad_journal_dir_does_not_check_the_journal_beside_the_store_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: str
) -> None:
    """With alerting.journal_dir set aside, the journal was checked where it goes without one (beside the
    SQLite file) and a problem of that place was said at api.db's line, which the file does not put there."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    (tmp_path / "afile").write_text("")
    path = tmp_path / "journal.yaml"
    path.write_text(f"api:\n  db: {tmp_path}/afile/x.db\nalerting:\n  journal_dir: {journal}\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [2, 4], result.stderr


@pytest.mark.parametrize(
    ("setting", "detector"),
    [
        pytest.param("presence_queries", "presence", id="presence"),
        pytest.param("fleet_queries", "fleet", id="fleet"),
        pytest.param("fleet_load_query", "fleet", id="fleet-load"),
        pytest.param("multivariate_queries", "multivariate", id="multivariate"),
    ],
)
def test_a_detectors_bad_query_list_is_not_warned_of_with_its_default_names(
    tmp_path: Path, setting: str, detector: str
) -> None:
    """With the detector's own list of queries set aside (``presence_queries: 5``), its default names were
    said to be missing from anomaly.queries: the file names none of them. Another detector's true warning
    (thermal's) is still given."""
    path = tmp_path / "anomaly.yaml"
    path.write_text(
        f"anomaly:\n  source: prometheus\n  detectors: [{detector}, thermal]\n  {setting}: {{x: 1}}\n"
        "  queries:\n    - {name: foo, expr: foo}\n"
    )
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [4], result.stderr
    assert f"detector {detector!r}" not in result.stderr, result.stderr
    assert "detector 'thermal'" in result.stderr, result.stderr


@pytest.mark.parametrize("setting", ["direction: sideways", "guard: maybe", "adaptive: maybe"])
def test_a_querys_bad_setting_is_not_range_guard_warned_of_on_its_default(
    tmp_path: Path, setting: str
) -> None:
    """With a query's direction, guard or adaptive set aside, the range-guard warning ran on its default
    (direction both, no guard, adaptive by name) and told a drop the query's own setting may rule out."""
    path = tmp_path / "guard.yaml"
    path.write_text(
        "anomaly:\n  source: prometheus\n  detectors: [adaptive]\n  adaptive_metrics: [reqs]\n  queries:\n"
        f"    - name: reqs\n      expr: sum by (pod) (rate(http_requests_total[5m]))\n      {setting}\n"
    )
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [8], result.stderr
    assert "warning" not in result.stderr, result.stderr


def test_a_bad_kubernetes_context_does_not_load_the_kubeconfig_with_its_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With alerting.kubernetes_inventory.context set aside, the kubeconfig was loaded with its current
    context instead, and one without ``current-context`` was refused at kubeconfig's line: a second, false
    problem."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")  # serve's: the file is about its inventory
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c1\n  cluster: {server: 'https://127.0.0.1:6443'}\n"
        "users:\n- name: u1\n  user: {token: abc}\n"
        "contexts:\n- name: ctx1\n  context: {cluster: c1, user: u1}\n"
    )
    path = tmp_path / "kube.yaml"
    inventory = f"alerting:\n  kubernetes_inventory:\n    cluster: k1\n    kubeconfig: {kubeconfig}\n"
    path.write_text(f"{inventory}    context: ctx1\n")
    assert runner.invoke(app, ["config", "validate", str(path)]).exit_code == 0  # the context is the fix
    path.write_text(f"{inventory}    context: [ctx1]\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [5], result.stderr
