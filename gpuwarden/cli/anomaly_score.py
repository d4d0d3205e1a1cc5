"""``gpuwarden anomaly score`` and ``gpuwarden anomaly evaluate nab``: the default detector on a CSV series or
on the NAB corpus, offline, with the thresholds of ``--config``.

The anomaly stage (numpy, pandas, scikit-learn) and the configuration model are imported inside each
command: the rest of the CLI, ``--help`` included, must start without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gpuwarden.cli.consoles import console, err_console, folded, option_said, print_error, refuse_option
from gpuwarden.cli.incidents_cmd import TEXT_OUTPUTS, output_option
from gpuwarden.cli.output_file import STDOUT, cannot_write, check_writable, write_whole, writes_stdout
from gpuwarden.cli.progress import StepProgress
from gpuwarden.cli.stopping import stopped_as_interrupted
from gpuwarden.errors import ConfigError, InputError

if TYPE_CHECKING:
    from anomaly.univariate import ScoredSeries
    from gpuwarden.config_anomaly import AnomalyThresholdConfig

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML configuration (anomaly.thresholds).")
]


def _thresholds(config: Path | None) -> AnomalyThresholdConfig:
    from gpuwarden.config import load_config  # noqa: PLC0415
    from gpuwarden.config_anomaly import AnomalyThresholdConfig  # noqa: PLC0415

    if config is None:
        return AnomalyThresholdConfig()
    return load_config(config, secrets_for={"anomaly"}).anomaly.thresholds


def score(
    input_path: Annotated[
        Path, typer.Option("--input", help="CSV timestamp,value; a time, or Unix seconds or milliseconds.")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", help="Where to write timestamp,value,anomaly_score,label; - for stdout (a pipeline)."
        ),
    ],
    config: ConfigOption = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress bar on stderr (there is none unless a terminal)."),
    ] = False,
    keep_repeated: Annotated[
        bool,
        typer.Option(
            "--keep-repeated-timestamps",
            help="Score rows that repeat the time above them, in file order (local times at a clock change).",
        ),
    ] = False,
) -> None:
    """Score a univariate CSV with the default configuration; label 1 where an alert would be raised.

    At a terminal, stderr shows a progress bar while it reads, scores and writes (a million rows take
    under a minute).
    """
    from anomaly.thresholds import ThresholdParams  # noqa: PLC0415
    from anomaly.univariate import read_series_csv, score_many  # noqa: PLC0415

    if str(input_path) == STDOUT:  # read as a file named `-`: "No such file", while --output - is stdout
        refuse_option(f"--input '-': standard input is not read; {_GIVE_INPUT} (save it to a file first)")
    _not_a_format(output)
    to_stdout = writes_stdout(output)
    try:
        if to_stdout and sys.stdout is None:  # `>&-`: said before the scoring, not an AttributeError after it
            raise cannot_write(output, "--output", "standard output is closed")
        if str(output) != STDOUT:
            _not_the_input(output, input_path)
            check_writable(output, "--output")
        cfg = _thresholds(config)
        # SIGTERM too ends it by the clean-up: its default action left the temporary output file behind.
        left = (
            "the rows on stdout stop short"
            if to_stdout
            else f"nothing written to {output} (a file there is as it was)"
        )
        with stopped_as_interrupted(left), StepProgress(err_console, quiet=quiet) as progress:
            progress.phase(f"reading {input_path.name}")
            series = read_series_csv(input_path, repeated_times=keep_repeated, give=_GIVE_INPUT)
            rows = len(series.values)
            progress.phase("scoring", total=rows)
            params = ThresholdParams.from_config(cfg)
            scored = score_many([series], params, cfg.resolve_after, progress=progress.advance)[0]
            progress.phase(f"writing {'stdout' if to_stdout else output.name}")
            _write_scores(scored, output, to_stdout=to_stdout)
    except (InputError, ConfigError) as exc:
        _print_refusal(exc, {field: ("--input", input_path) for field in _SERIES_FIELDS})
        raise typer.Exit(1) from exc
    # Only the CSV on stdout when it carries the CSV: `... --output - | next-tool` reads rows, nothing else.
    where = "stdout" if str(output) == STDOUT else str(output)
    alerts = int(scored.raised.sum())
    said = f"{rows} row{'' if rows == 1 else 's'}, {alerts} alert{'' if alerts == 1 else 's'}"
    typer.echo(f"{where}: {said}", err=to_stdout)


# The formats the other commands' --output (-o) takes: here the option names the file to write.
_FORMAT_WORDS = frozenset({"json", "yaml", "table", "text", "csv", "markdown", "wide"})


def _not_a_format(output: Path) -> None:
    """Refuse ``--output json`` (a format, as every other command's ``--output`` takes): it wrote the CSV to
    a file named ``json`` in the working directory. Its whole path writes that file (``./json`` is read as
    ``json``)."""
    if str(output).casefold() in _FORMAT_WORDS:
        refuse_option(
            escape(
                option_said(
                    "--output",
                    str(output),
                    "anomaly score's --output is the file to write, always CSV (- for stdout), not a format;"
                    f" to write a file of that name, give its whole path ({Path.cwd() / output})",
                )
            )
        )


_GIVE_INPUT = "give a CSV file with the header timestamp,value"  # what --input takes, said when unreadable
# The fields of a refusal of a series file (``read_series_csv``), and of a NAB corpus' data folder.
_SERIES_FIELDS = ("input", "timestamp", "value")
_DATA_FIELDS = ("data", *_SERIES_FIELDS)


def _print_refusal(exc: InputError | ConfigError, options: dict[str, tuple[str, Path]]) -> None:
    """``exc`` on stderr; a file's problem as every bad option is said, ``--input 'in.csv': line 3: ...``
    (``options``: the option and its value for each field that names a file's problem); a --config with
    several problems: each named, not "(and 1 more problem)"."""
    option = options.get(exc.field) if isinstance(exc, InputError) else None
    if option is None:
        print_error(exc)
        return
    err_console.print(f"[red]error:[/red] {escape(option_said(option[0], str(option[1]), exc.message))}")


def _write_scores(scored: ScoredSeries, output: Path, *, to_stdout: bool) -> None:
    """The scores to ``output`` whole (``write_whole``), or to stdout when ``output`` names it: through
    ``sys.stdout``, not by reopening a path to a file, a pipe or a deleted capture file."""
    from anomaly import univariate  # noqa: PLC0415 (looked up at the call: tests replace its writer)
    from anomaly.scored_csv import write_scored_rows  # noqa: PLC0415

    if not to_stdout:
        write_whole(output, lambda path: univariate.write_scored_csv(scored, path), "--output")
        return
    sys.stdout.flush()
    try:
        write_scored_rows(scored, sys.stdout.buffer)
        sys.stdout.flush()
    except BrokenPipeError as exc:  # the reader stopped early (`| head`): as `cat` does, no traceback
        _stdout_to_devnull()
        raise typer.Exit(1) from exc
    except OSError as exc:  # `--output - > out.csv` on a full disk: said as --output FILE's is, no traceback
        _stdout_to_devnull()
        raise cannot_write(output, "--output", exc.strerror or exc) from exc


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null: the flush of what is left, at exit, would fail again with a traceback."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _one_format(ctx: typer.Context, output: str, *, as_json: bool) -> None:
    """Refuse ``--json`` with another format given to ``-o`` (exit 2), as the CLI refuses options that
    contradict each other: ``--json -o text`` printed JSON, the ``-o`` given left unsaid."""
    source = ctx.get_parameter_source("output")
    if as_json and output != "json" and source is not None and source.name != "DEFAULT":
        refuse_option(
            f"--output {escape(repr(output))}: --json asks for json; give --json or -o {output}, not both"
        )


def _not_the_input(output: Path, input_path: Path) -> None:
    """Refuse an ``--output`` that is the ``--input`` file (by another name or link too): writing the scores
    replaced the series they came from."""
    try:
        same = output.samefile(input_path)
    except OSError:  # no output yet (or no input, which reading it says): not the same file
        return
    if same:
        raise cannot_write(output, "--output", "the --input file; write the scores to another file", of="")


def evaluate_nab(
    ctx: typer.Context,
    *,
    data: Annotated[Path, typer.Option("--data", help="NAB data folder (category/file.csv).")],
    windows: Annotated[Path, typer.Option("--windows", help="NAB combined_windows.json.")],
    output: Annotated[str, output_option(TEXT_OUTPUTS, "text or json (one JSON document).")] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="The same as -o json.")] = False,
    tune_only: Annotated[
        bool, typer.Option("--tune-only", help="Score only the tuning split (for development).")
    ] = False,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Score the files --data holds when it lacks some --windows names (said on stderr and in"
            " the JSON's missing_files); refused otherwise.",
        ),
    ] = False,
    config: ConfigOption = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress bar on stderr (there is none unless a terminal)."),
    ] = False,
) -> None:
    """NAB scores (standard, reward_low_FP_rate, reward_low_FN_rate) and window F1, per file and overall.

    At a terminal, stderr shows a progress bar while it reads and scores the corpus (tens of seconds)."""
    from anomaly import nab  # noqa: PLC0415
    from anomaly.thresholds import ThresholdParams  # noqa: PLC0415

    _one_format(ctx, output, as_json=as_json)
    as_json = as_json or output == "json"
    try:
        cfg = _thresholds(config)
        # SIGTERM too stops it with a line, as Ctrl-C: its default action killed it with nothing said.
        with (
            stopped_as_interrupted("no score is printed"),
            StepProgress(err_console, quiet=quiet) as progress,
        ):
            progress.phase(f"reading {data.name}")
            files, missing = nab.read_corpus(data, windows)
            if tune_only:  # the held-out files are left out on purpose: one missing changes nothing here
                files = nab.tuning_files(files)
                missing = [name for name in missing if nab.is_tuning_file(name)]
            which = f"{len(files) + len(missing)} {'tuning ' if tune_only else ''}files"
            if missing and not allow_missing:  # a partial corpus' score read as the whole corpus'
                raise InputError(
                    f"lacks {len(missing)} of the {which} {windows} names ({nab.first_names(missing)});"
                    f" give the whole corpus, or --allow-missing to score the {len(files)} it holds",
                    field="data",
                )
            progress.phase(
                f"scoring {len(files)} file{'' if len(files) == 1 else 's'}",
                total=max((len(f.series.values) for f in files), default=0),
            )
            params = ThresholdParams.from_config(cfg)
            report = nab.evaluate(files, params, cfg.resolve_after, progress=progress.advance)
            report.missing_files = missing
    except (InputError, ConfigError) as exc:  # a data file's problem names the folder it is in
        _print_refusal(
            exc, {"windows": ("--windows", windows)} | dict.fromkeys(_DATA_FIELDS, ("--data", data))
        )
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        _say_missing(len(files), which, missing)
        return
    # Folded, never cut: at 80 columns every file read `artificialNoAnomaly…`.
    files_table = Table(*folded("file", "split", "windows", "detected", "alerts", "raw standard"))
    for name, parts in report.per_file.items():
        s = parts["standard"]
        split = "tune" if nab.is_tuning_file(name) else "held-out"
        files_table.add_row(name, split, str(s.windows), str(s.detected), str(s.alerts), f"{s.raw:.3f}")
    console.print(files_table, markup=False)
    summary_table = Table(*folded("set", "files", "windows", *nab.PROFILES, "window F1"))
    rows = [(f"split:{k}", v) for k, v in report.splits.items()] + list(report.categories.items())
    rows += [(f"{split}:{c}", v) for split, cats in report.split_categories.items() for c, v in cats.items()]
    for label, summary in rows:
        cells = [f"{v:.1f}" if v is not None else "n/a" for v in summary.scores.values()]
        summary_table.add_row(label, str(summary.files), str(summary.windows), *cells, f"{summary.f1:.3f}")
    console.print(summary_table, markup=False)
    console.print("held-out = files never used to choose the defaults (anomaly.nab.is_tuning_file)")
    _say_missing(len(files), which, missing)


def _say_missing(scored: int, which: str, missing: list[str]) -> None:
    """``scored 55 of 58 files; --data lacks ...`` on stderr, whatever ``-o``, where ``--allow-missing`` let
    files be missing: the scores are not the whole corpus'."""
    if missing:
        from anomaly.nab import first_names  # noqa: PLC0415 (imported already by the evaluation)

        text = f"scored {scored} of {which}; --data lacks {first_names(missing)}"
        err_console.print(text, markup=False, highlight=False, soft_wrap=True)
