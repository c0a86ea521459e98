"""``crm-intel train lead|churn`` and ``crm-intel models list|promote|rollback``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from crm_intel.commands.common import (
    DataDirOption,
    JsonOption,
    console,
    emit_json,
    fail,
    progress,
    settings_for,
    status,
)

train_app = typer.Typer(
    help="Train a model, log it to MLflow and apply the promotion gate.", no_args_is_help=True
)
models_app = typer.Typer(
    help="Show and move the registry aliases champion and challenger.", no_args_is_help=True
)

TableOption = Annotated[
    Path | None,
    typer.Option(
        "--table",
        help="Train on this one-row-per-entity export (CSV, Parquet or Excel) instead "
        "of the feature store.",
        exists=True,
        dir_okay=False,
    ),
]
IdOption = Annotated[str | None, typer.Option("--id", help="Entity id column of --table.")]
LabelOption = Annotated[str | None, typer.Option("--label", help="Outcome column of --table.")]
PositiveOption = Annotated[
    str | None,
    typer.Option(
        "--positive", help="Label value meaning converted/churned (default: inferred, e.g. Yes/1)."
    ),
]
TimestampOption = Annotated[
    str | None,
    typer.Option(
        "--timestamp",
        help="Column of --table to split on by time; without it, stratified 5-fold "
        "cross-validation.",
    ),
]
DropOption = Annotated[
    str | None,
    typer.Option(
        "--drop", help="Comma-separated columns of --table to leave out (e.g. post-contact fields)."
    ),
]
NameOption = Annotated[
    str | None,
    typer.Option(
        "--name",
        help="Registered model name of a --table model (default: table_<file name>); never "
        "lead_conversion or churn_risk, whose champions the service scores with.",
    ),
]
GridOption = Annotated[
    str,
    typer.Option(
        "--grid",
        help="Candidates a --table run tunes by nested cross-validation: full (LightGBM "
        "tree-size grid and logistic penalties) or small (untuned and shallow LightGBM, "
        "logistic regression; quick runs).",
    ),
]
TimeLimitOption = Annotated[
    float,
    typer.Option(
        "--time-limit",
        min=0,
        help="Seconds for a --table run's search; when they run short no further candidate is "
        "tried, and the notes say which were left out.",
    ),
]
RegisterOption = Annotated[
    bool,
    typer.Option("--register/--no-register", help="Register the model and run the promotion gate."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed of every estimator.")]
SegmentByOption = Annotated[
    str | None,
    typer.Option(
        "--segment-by",
        help="Also train a lead model per value of this categorical feature (e.g. source, "
        "account_region), kept only for segments with enough data where a back-test before the "
        "test period beats the global model; 'none' turns off CRM_INTEL_LEAD_SEGMENT_BY.",
    ),
]


def _run(
    model_name: str,
    data_dir: Path | None,
    table: Path | None,
    id_col: str | None,
    label: str | None,
    positive: str | None,
    timestamp: str | None,
    drop: str | None,
    register: bool,
    seed: int,
    json_: bool,
    name: str | None = None,
    grid: str = "full",
    time_limit: float = 600.0,  # training.tables.DEFAULT_TIME_LIMIT
    segment_by: str | None = None,
) -> None:
    import dataclasses

    from training.data import NotEnoughData
    from training.pipeline import SPECS
    from training.tracking import log_training_run

    settings = settings_for(data_dir)
    spec = SPECS[model_name]
    if name is not None and table is None:
        raise fail(f"--name names a --table model; without --table this trains {model_name}")
    if grid not in ("full", "small"):
        raise fail(f"--grid {grid!r}: use full or small")
    segment_by = segment_by or (
        settings.lead_segment_by if model_name == "lead_conversion" else None
    )
    segment_by = None if segment_by in (None, "", "none") else segment_by
    if segment_by and table is not None:
        raise fail("--segment-by segments the lead model of the feature store; not with --table")
    try:
        if table is not None:
            from training.table import prepare_table, read_any
            from training.tables import table_model_name, train_table

            if not id_col or not label:
                raise fail("--table needs --id and --label")
            registered = table_model_name(table, name)
            drops = tuple(c.strip() for c in (drop or "").split(",") if c.strip())
            prepared = prepare_table(read_any(table), id_col, label, positive, timestamp, drops)
            spec = dataclasses.replace(
                spec,
                name=registered,
                kind=model_name,
                entity_key=id_col,
                feature_service=f"table:{table.name}",
            )
            console.print(
                f"[bold]{table.name}[/] → model [bold]{registered}[/]: {len(prepared.frame):,} "
                f"rows, {len(prepared.numeric)} numeric and {len(prepared.categorical)} "
                f"categorical features; positive = {prepared.positive!r}"
            )
            for col, why in prepared.dropped.items():
                console.print(f"  left out [cyan]{col}[/]: {why}")
            how = "training (time split)" if timestamp else "nested cross-validation"
            with status(how) as update:
                result = train_table(
                    prepared.frame,
                    spec,
                    prepared.has_timestamp,
                    random_state=seed,
                    grid=grid,
                    time_limit=time_limit,
                    progress=update,
                )
            extra: dict[str, Any] = {
                "dropped_columns": prepared.dropped,
                "table": str(table),
                "selection": result.selection,
                "time_limit_seconds": time_limit,
            }
        else:
            result = _native(settings, spec, seed, segment_by)
            extra = {"segments": result.segments} if result.segments else {}
    except NotEnoughData as err:
        raise fail(str(err)) from None
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    logging = "logging to MLflow" + (", registering and the promotion gate" if register else "")
    if table is None:
        stages = native_stages(segment_by)
        logging = f"step {stages}/{stages}: {logging}"
    with status(logging):
        record = log_training_run(
            result, settings.tracking_uri(), settings.promotion_margin, register=register
        )
    summary = result.summary()
    if result.segments:
        _print_segments(result.segments)
    _print_summary(result.metrics, summary, record)
    if json_:
        emit_json(
            {
                **summary,
                **extra,
                "run_id": record["run_id"],
                "model_version": record["model_version"],
                "promotion": record["decision"],
                "tracking_uri": settings.tracking_uri(),
            }
        )


def protocol_for(settings: Any, model_name: str) -> Any:
    """The purged protocol with the label window the settings give this model."""
    from training.protocol import Protocol

    window = (
        settings.churn_window_days
        if model_name == "churn_risk"
        else settings.conversion_window_days
    )
    return Protocol(label_window_days=window)


def _native(settings: Any, spec: Any, seed: int, segment_by: str | None = None) -> Any:
    from training.snapshots import train_time_split

    try:
        from features.training import training_set
    except ImportError as err:  # pragma: no cover - the feature store ships with the package
        raise fail(f"feature store unavailable: {err}") from None
    stages = native_stages(segment_by)
    with status(f"step 1/{stages}: loading the training set {spec.feature_service}"):
        try:
            frame = training_set(settings, spec.name)
        except Exception as err:  # noqa: BLE001 - the store reports why it is not ready
            raise fail(f"no training set for {spec.name}: {err}") from None
    if segment_by:
        from training.pipeline import feature_columns
        from training.segment_backtest import check_segment_column

        try:
            check_segment_column(frame[feature_columns(frame, spec.entity_key)], segment_by)
        except ValueError as err:
            raise fail(f"--segment-by {segment_by}: {err}") from None
    from simulator.truth import read_probability_truth

    truth = read_probability_truth(settings.truth_dir, spec.truth_table)
    protocol = protocol_for(settings, spec.name)
    # one call of the training package selects the candidates, fits and calibrates the winner
    # and tests it on the held-out period; it reports no steps of its own
    with status(
        f"step 2/{stages}: selecting, fitting, calibrating and testing candidates ({protocol.name})"
    ):
        result = train_time_split(frame, spec, protocol, truth=truth, random_state=seed)
    if segment_by:
        from training.segments import add_segment_models

        with status(f"step 3/{stages}: segment models by {segment_by} (back-test)") as update:
            try:
                result = add_segment_models(
                    result, frame, spec, protocol, segment_by, random_state=seed, progress=update
                )
            except ValueError as err:
                raise fail(f"--segment-by {segment_by}: {err}") from None
    if result.metrics and settings.train_backtest_cutoffs:
        _short_backtest(
            result, frame, spec, protocol, truth, seed, settings.train_backtest_cutoffs, stages
        )
    elif result.metrics:
        result.notes.append("no short back-test: CRM_INTEL_TRAIN_BACKTEST_CUTOFFS is 0")
    return result


# loading, training, short back-test, registering (the --table path has its own lines)
NATIVE_STAGES = 4


def native_stages(segment_by: str | None) -> int:
    """The native path's stages: one more when segment models are tried."""
    return NATIVE_STAGES + (1 if segment_by else 0)


def _short_backtest(
    result: Any,
    frame: Any,
    spec: Any,
    protocol: Any,
    truth: Any,
    seed: int,
    cutoffs: int,
    stages: int = NATIVE_STAGES,
) -> None:
    """Back-test the winning configuration at a few earlier cutoffs before it is registered;
    the registry tags carry the summary (of the global configuration, segment models aside)."""
    from training.backtest import backtest
    from training.selection import candidate_from_record

    champion = candidate_from_record(result.candidate)
    described = f"step {stages - 1}/{stages}: short back-test"
    with progress(described, total=cutoffs) as advance:
        try:
            done = backtest(frame, spec, protocol, cutoffs, truth, seed, champion, advance)
        except ValueError as err:
            result.notes.append(f"no short back-test: {err}")
            return
    result.backtest = {"summary": done.summary, "rows": done.rows.to_dict("records")}


def _figure(value: Any, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _print_segments(segments: dict[str, Any]) -> None:
    """The keep/drop table: per segment its data, the back-test figures of the global and the
    segment model, and the verdict; then the test period's figures with and without them."""
    table = Table(
        title=f"Segment models by {segments['segment_by']} · decided as of {segments['cutoff']}"
    )
    table.add_column("segment")
    for what in ("rows", "positives", "log loss global", "log loss segment", "ROC AUC global"):
        table.add_column(what, justify="right")
    table.add_column("ROC AUC segment", justify="right")
    table.add_column("verdict")
    for d in segments["decisions"]:
        table.add_row(
            str(d["segment"]),
            f"{d['rows']:,}",
            f"{d['positives']:,}",
            _figure(d["global_log_loss"]),
            _figure(d["segment_log_loss"]),
            _figure(d["global_roc_auc"]),
            _figure(d["segment_roc_auc"]),
            "[green]kept[/]" if d["kept"] else ("dropped" if d["folds"] else "too few"),
        )
    console.print(table)
    console.print(
        "rows and positives: labelled snapshots closed by the cutoff; log loss and ROC AUC: "
        "means over the back-test's folds on the segment's rows",
        soft_wrap=True,
    )
    for d in segments["decisions"]:
        console.print(f"  {d['segment']}: {d['reason']}", soft_wrap=True, markup=False)
    console.print(f"[bold]protocol:[/] {segments['protocol']}", soft_wrap=True)
    figures = segments["test_metrics"]
    names = {
        "global": "global model only",
        "segmented": "with the kept segment models",
        "every_eligible_segment": "with every segment model that had enough data",
    }
    console.print("test period (the snapshots after the cutoff):")
    for key, label in names.items():
        m = figures[key]
        console.print(f"  {label}: ROC AUC {m['roc_auc']:.4f}, log loss {m['log_loss']:.4f}")


def _print_summary(
    metrics: dict[str, dict[str, float]], summary: dict[str, Any], record: dict[str, Any]
) -> None:
    table = Table(
        title=f"{summary['model']} · {summary['protocol']} · {summary['feature_service']}"
    )
    table.add_column("")
    for what in (
        "ROC AUC",
        "PR AUC",
        "Brier",
        "log loss",
        "ECE",
        "top-10% precision",
        "top-10% lift",
    ):
        table.add_column(what, justify="right")
    if summary.get("data_verdict_text"):
        console.print(f"[bold]data:[/] {summary['data_verdict_text']}", soft_wrap=True)
    names = {
        "model": f"champion: {summary.get('candidate') or summary.get('family')}",
        "logistic": "logistic regression",
        "rules": "rule-based points",
        "oracle": "oracle (true probability)",
    }
    for key, label in names.items():
        if key not in metrics:
            continue
        m = metrics[key]
        table.add_row(
            label,
            *(
                f"{m[k]:.4f}"
                for k in ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "top_decile_precision")
            ),
            f"{m['top_decile_lift']:.2f}",
        )
    console.print(table)
    for note in summary.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    decision = record.get("decision")
    if decision:
        verdict = (
            "[green]promoted to champion[/]"
            if decision["promoted"]
            else "[yellow]kept as challenger[/]"
        )
        console.print(f"version {record['model_version']}: {verdict} — {decision['reason']}")
    console.print(f"MLflow run {record['run_id']}")


@train_app.command("lead")
def train_lead(
    table: TableOption = None,
    id_col: IdOption = None,
    label: LabelOption = None,
    positive: PositiveOption = None,
    timestamp: TimestampOption = None,
    drop: DropOption = None,
    name: NameOption = None,
    grid: GridOption = "full",
    time_limit: TimeLimitOption = 600.0,
    register: RegisterOption = True,
    seed: SeedOption = 0,
    segment_by: SegmentByOption = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Train the lead conversion model (feature service lead_conversion_v1), or a lead model on
    --table, registered under its own --name."""
    _run(
        "lead_conversion",
        data_dir,
        table,
        id_col,
        label,
        positive,
        timestamp,
        drop,
        register,
        seed,
        json_,
        name,
        grid,
        time_limit,
        segment_by,
    )


@train_app.command("churn")
def train_churn(
    table: TableOption = None,
    id_col: IdOption = None,
    label: LabelOption = None,
    positive: PositiveOption = None,
    timestamp: TimestampOption = None,
    drop: DropOption = None,
    name: NameOption = None,
    grid: GridOption = "full",
    time_limit: TimeLimitOption = 600.0,
    register: RegisterOption = True,
    seed: SeedOption = 0,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Train the churn risk model (feature service churn_risk_v1), or a churn model on --table,
    registered under its own --name."""
    _run(
        "churn_risk",
        data_dir,
        table,
        id_col,
        label,
        positive,
        timestamp,
        drop,
        register,
        seed,
        json_,
        name,
        grid,
        time_limit,
    )


def _model_name(name: str) -> str:
    aliases = {
        "lead": "lead_conversion",
        "churn": "churn_risk",
        "attribution": "content_attribution",
    }
    return aliases.get(name, name)


@models_app.command("list")
def models_list(data_dir: DataDirOption = None, json_: JsonOption = False) -> None:
    """Every registered version with its aliases and held-out ROC AUC."""
    from training.registry import list_versions

    uri = settings_for(data_dir).tracking_uri()
    rows = list_versions(uri)
    table = Table(title=f"Registered models ({uri})")
    for col in ("model", "version", "aliases", "ROC AUC", "ECE", "trained on", "protocol"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["model"],
            r["version"],
            ", ".join(r["aliases"]),
            "" if r["roc_auc"] is None else f"{r['roc_auc']:.4f}",
            "" if r["ece"] is None else f"{r['ece']:.4f}",
            r["feature_service"] or "",
            r["protocol"] or "",
        )
    console.print(table)
    if json_:
        emit_json({"versions": rows})


@models_app.command("promote")
def models_promote(
    model: Annotated[
        str,
        typer.Argument(
            help="lead_conversion (lead), churn_risk (churn) or content_attribution (attribution)."
        ),
    ],
    version: Annotated[str, typer.Argument(help="Registered version to make champion.")],
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Make VERSION the champion of MODEL (the previous champion can be restored by rollback)."""
    from mlflow.exceptions import MlflowException

    from training.registry import NotRegistered, promote

    try:
        out = promote(
            settings_for(data_dir).tracking_uri(),
            _model_name(model),
            version,
            "promoted by hand (crm-intel models promote)",
        )
    except NotRegistered as err:
        raise fail(str(err)) from None
    except MlflowException as err:
        raise fail(f"cannot promote {model} v{version}: {err.message}") from None
    from crm_intel.commands.privacy import record_cli_event

    record_cli_event(settings_for(data_dir), "promote", f"{out['model']} v{out['champion']}", out)
    console.print(
        f"{out['model']}: champion is now v{out['champion']} "
        f"(was {out['previous_champion'] or 'none'})"
    )
    if json_:
        emit_json(out)


@models_app.command("rollback")
def models_rollback(
    model: Annotated[
        str,
        typer.Argument(
            help="lead_conversion (lead), churn_risk (churn) or content_attribution (attribution)."
        ),
    ],
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Give champion back to the version that held it before the current one."""
    from mlflow.exceptions import MlflowException

    from training.registry import NoChampion, NotRegistered, rollback

    try:
        out = rollback(settings_for(data_dir).tracking_uri(), _model_name(model))
    except (NoChampion, NotRegistered, MlflowException) as err:
        raise fail(str(err)) from None
    from crm_intel.commands.privacy import record_cli_event

    record_cli_event(settings_for(data_dir), "rollback", f"{out['model']} v{out['champion']}", out)
    console.print(f"{out['model']}: champion is now v{out['champion']} (v{out['demoted']} demoted)")
    if json_:
        emit_json(out)
