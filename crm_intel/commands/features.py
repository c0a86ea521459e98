"""``crm-intel features …``: build feature tables, apply Feast, materialise, read online."""

from __future__ import annotations

import json
import math
import time
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
)

app = typer.Typer(
    help="Feature store: raw CRM tables → point-in-time features → Feast offline and online.",
    no_args_is_help=True,
)


def _errors() -> tuple[type[BaseException], ...]:
    from crm.contract import ContractError
    from features.duplicates import DedupeInputError
    from features.pipeline import FeatureInputError
    from features.redis_store import OnlineStoreUnreachableError
    from features.spark_session import SparkUnavailableError
    from features.store import FeatureStoreNotReadyError, UnknownEntityError

    return (
        FeatureInputError,
        FeatureStoreNotReadyError,
        OnlineStoreUnreachableError,
        UnknownEntityError,
        ContractError,
        FileNotFoundError,
        DedupeInputError,
        SparkUnavailableError,
    )


@app.command()
def build(
    merge_duplicates: Annotated[
        Path | None,
        typer.Option(
            "--merge-duplicates",
            metavar="FILE",
            help="Merge each duplicate lead's touches and deals onto its surviving lead (at "
            "their own times) before building, from this `dedupe leads` output, so leads are "
            "scored per person (default: the setting merge_duplicate_leads; unset, no merging).",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="duckdb (in-process, out-of-core) or spark (Apache Spark at the setting "
            "spark_master: local[N] or a cluster's URL). Default: the setting engine (duckdb).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Build lead, account and content feature tables (and labels) from DATA_DIR/raw."""
    from features.store import build as run

    settings = settings_for(data_dir)
    if merge_duplicates is not None:
        settings = settings.model_copy(update={"merge_duplicate_leads": merge_duplicates})
    if engine is not None:
        if engine not in ("duckdb", "spark"):
            raise fail(f"--engine {engine!r}: expected duckdb or spark")
        settings = settings.model_copy(update={"engine": engine})
    steps = 7 + (settings.merge_duplicate_leads is not None)
    started = time.perf_counter()
    try:
        with progress("features build", total=steps) as advance:
            counts = run(settings, progress=advance)
    except _errors() as err:
        raise fail(f"{err} (previous feature tables left unchanged)") from None
    seconds = time.perf_counter() - started
    table = Table(title=f"Feature tables → {settings.features_dir}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(f"built in {seconds:.1f}s on {settings.engine}")
    if json_:
        emit_json(
            {
                "rows": counts,
                "engine": settings.engine,
                "seconds": round(seconds, 3),
                "features_dir": str(settings.features_dir),
            }
        )


@app.command()
def apply(data_dir: DataDirOption = None, json_: JsonOption = False) -> None:
    """Register entities, feature views and versioned feature services in the Feast registry."""
    from features.store import apply as run

    settings = settings_for(data_dir)
    try:
        names = run(settings)
    except _errors() as err:
        raise fail(str(err)) from None
    console.print(f"applied {len(names)} Feast objects: {', '.join(names)}")
    if json_:
        emit_json({"applied": names, "registry": str(settings.feast_dir / "registry.db")})


@app.command()
def materialize(
    data_dir: DataDirOption = None,
    entity: Annotated[
        list[str] | None,
        typer.Option(help="Entity to materialise (lead, account, content); repeatable."),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Write each entity's latest feature row into the online store: the SQLite file (swapped in
    whole), or the Redis server with CRM_INTEL_ONLINE_STORE=redis (each entity's row replaced)."""
    from features.store import materialize as run

    settings = settings_for(data_dir)
    entities = entity or ["lead", "account", "content"]
    try:
        with progress("features materialize", total=len(entities)) as advance:
            result = run(settings, entities_=entities, progress=advance)
    except _errors() as err:
        kept = (
            "online store left unchanged"
            if settings.online_store == "sqlite"
            else "entities written before the failure have their new rows: run it again"
        )
        raise fail(f"{err} ({kept})") from None
    for name, rows in result.rows.items():
        console.print(f"{name}: {rows:,} rows")
    console.print(
        f"{sum(result.rows.values()):,} rows in {result.seconds:.2f}s "
        f"({result.rows_per_second:,.0f} rows/s)"
    )
    if json_:
        emit_json(
            {
                "rows": result.rows,
                "seconds": round(result.seconds, 3),
                "rows_per_second": round(result.rows_per_second, 1),
            }
        )


def _jsonable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


@app.command()
def online(
    entity: Annotated[str, typer.Option(help="lead, account or content.")],
    id_: Annotated[list[str], typer.Option("--id", help="Entity id; repeatable.")],
    data_dir: DataDirOption = None,
) -> None:
    """Print the online feature vector(s) as JSON (the read the scoring service uses)."""
    from features.store import online_reader

    settings = settings_for(data_dir)
    try:
        rows = online_reader(settings).rows(entity, id_)
    except _errors() as err:
        raise fail(str(err)) from None
    payload = [{k: _jsonable(v) for k, v in row.items()} for row in rows]
    for row in payload:
        if not row["found"]:
            console.print(
                f"[yellow]{entity} {row[next(iter(row))]!r} is not in the online store[/]"
            )
    typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, sort_keys=False))
